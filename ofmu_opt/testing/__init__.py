"""The common solver/oracle harness (:mod:`ofmu_opt.testing.harness`) and hypothesis strategies
(:mod:`ofmu_opt.testing.strategies`, needs the dev extra)."""

from .harness import (
    COMPARISON_CASES,
    SOLVER_CASES,
    STOCHASTIC_CASES,
    HarnessFailure,
    check_deterministic,
    check_feasible,
    check_oracles_fd,
    check_run_equals_manual_loop,
    check_solves_reference,
    check_state_structure,
    check_stop_iteration,
)

__all__ = [
    "COMPARISON_CASES",
    "SOLVER_CASES",
    "STOCHASTIC_CASES",
    "HarnessFailure",
    "check_deterministic",
    "check_feasible",
    "check_oracles_fd",
    "check_run_equals_manual_loop",
    "check_solves_reference",
    "check_state_structure",
    "check_stop_iteration",
]

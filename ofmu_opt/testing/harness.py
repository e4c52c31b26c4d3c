"""The common harness every solver and oracle passes (adding a solver = one row in :data:`SOLVER_CASES`).

Each ``check_*`` function raises :class:`HarnessFailure` with a message saying what went wrong, so a
test is one call per (solver, problem) pair, and a user can run the same checks on their own solver.

Examples:
    >>> from ofmu_opt.reference import get_reference
    >>> check_state_structure(SOLVER_CASES["gpbgd"](get_reference("P3")), get_reference("P3"))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.comparison import Bome, F2sa, ImplicitDiff
from ..core.result import Status
from ..core.solver import PenaltySolver, gpbgd, vpbgd
from ..core.stochastic import Saba, Soba, VarianceReduced
from ..problem.checks import check_gradient, check_hvp
from ..problem.constraints import feasibility
from ..problem.oracles import has_hvp
from ..reference.problems import ReferenceProblem
from ..reference.solvers import solver_for_reference

__all__ = [
    "COMPARISON_CASES",
    "STOCHASTIC_CASES",
    "SOLVER_CASES",
    "HarnessFailure",
    "check_deterministic",
    "check_feasible",
    "check_oracles_fd",
    "check_run_equals_manual_loop",
    "check_solves_reference",
    "check_state_structure",
    "check_stop_iteration",
]


class HarnessFailure(AssertionError):
    """A harness check failed; the message says which and how."""


SOLVER_CASES: dict[str, Callable[[ReferenceProblem], PenaltySolver]] = {
    "ofmu": lambda ref: solver_for_reference("ofmu", ref, options={"beta": 0.0}),
    "ofmu_beta": lambda ref: solver_for_reference("ofmu", ref, options={"beta": 0.5, "hvp": "exact"}),
    "gpbgd": lambda ref: solver_for_reference("gpbgd", ref),
    "vpbgd": lambda ref: solver_for_reference("vpbgd", ref),
    "scalarized": lambda ref: solver_for_reference("scalarized", ref),
}
"""Solver rows: name -> factory of the solver configured for a reference problem."""


def _lip(ref: ReferenceProblem) -> float:
    return 1.0 / float(ref.hints.get("inner_lr", 0.1))


COMPARISON_CASES: dict[str, Callable[[ReferenceProblem], Any]] = {
    "implicit_diff": lambda ref: ImplicitDiff(lr=0.2, inner_lr=1.0 / _lip(ref), outer_rule="nesterov"),
    "bome": lambda ref: Bome(lr=0.05, inner_lr=1.0 / _lip(ref)),
    "f2sa": lambda ref: F2sa(lr=0.05, inner_lr=1.0 / _lip(ref)),
}
"""Comparison solvers (issue-7 baselines) as harness rows: structure, loop, stop and determinism checks."""


def _sizes(ref: ReferenceProblem) -> tuple[int, int]:
    return int(ref.data["n_inner"]), int(ref.data["n_outer"])


STOCHASTIC_CASES: dict[str, Callable[[ReferenceProblem], Any]] = {
    "saba": lambda ref: Saba(step=0.3, inner_samples=_sizes(ref)[0], outer_samples=_sizes(ref)[1], batch_size=16,
                             tol=1e-8, maxiter=20_000),
    "soba": lambda ref: Soba(step=0.3, inner_samples=_sizes(ref)[0], outer_samples=_sizes(ref)[1], batch_size=8,
                             maxiter=2000),
    "gpbgd_saga": lambda ref: VarianceReduced(
        gpbgd(strategy="paper", penalty=10.0, outer_lr=0.05, maxiter=3000, tol=1e-10), *_sizes(ref), batch_size=16),
    "vpbgd_saga": lambda ref: VarianceReduced(
        vpbgd(strategy="paper", penalty=10.0, outer_lr=0.05, inner_lr=0.25 * float(ref.hints["inner_lr"]),
              maxiter=3000, tol=1e-10), *_sizes(ref), batch_size=16),
}
"""Stochastic rows (finite-sum references, e.g. ``FSQ``): SABA and SOBA (Dagréou et al. 2022) and the penalty
presets on SAGA variance-reduced mini-batch oracles. The variance-reduced penalty rows use fixed steps sized for
the worst batch (their inner step is a quarter of ``1/L`` of the mean)."""


def _replace(solver: Any, **changes: Any) -> Any:
    if isinstance(solver, VarianceReduced):
        return solver.replace(**changes)
    return dataclasses.replace(solver, **changes)


def _leaf_signature(v: Any, nested: bool = False) -> Any:
    if v is None:
        # inside a step rule's state, an absent history (None) and a variable-length one (a tuple, e.g. L-BFGS
        # pairs) are the same bookkeeping slot
        return ("history",) if nested else None
    if isinstance(v, np.ndarray):
        return ("array", v.shape)
    if isinstance(v, tuple) and hasattr(v, "_fields"):
        return (type(v).__name__, tuple(_leaf_signature(getattr(v, f), True) for f in v._fields))
    if isinstance(v, tuple):
        return ("history",) if nested else ("tuple",)  # variable-length bookkeeping (extrapolation rows) may grow
    return type(v).__name__


def check_state_structure(solver: Any, ref: ReferenceProblem, rounds: int = 4) -> None:
    """The state keeps its type, fields and leaf shapes across rounds."""
    st = solver.init_state(ref.problem, ref.x0, ref.y0)
    kind = type(st)
    names = [f for f in ("x", "y", "z", "outer_rule", "inner_rule", "prev") if f in st._fields]
    sig0 = {f: _leaf_signature(getattr(st, f)) for f in names}
    for k in range(rounds):
        st = solver.update(ref.problem, st)
        sig = {f: _leaf_signature(getattr(st, f)) for f in sig0}
        if type(st) is not kind or sig != sig0:
            raise HarnessFailure(f"state structure changed at round {k + 1}: {sig0} -> {sig}")


def check_run_equals_manual_loop(solver: Any, ref: ReferenceProblem, rounds: int = 6) -> None:
    """``run`` with ``maxiter=rounds`` returns exactly what a hand-written init_state + update loop gives."""
    s = _replace(solver, maxiter=rounds, tol=1e-300)
    res = s.run(ref.problem, ref.x0, ref.y0)
    st = s.init_state(ref.problem, ref.x0, ref.y0)
    for _ in range(rounds):
        st = s.update(ref.problem, st)
    x, y = s.point(st)
    if not np.array_equal(np.asarray(res.y), np.asarray(y)) or (
        x is not None and not np.array_equal(np.asarray(res.x), np.asarray(x))
    ):
        raise HarnessFailure("run() and the manual init_state/update loop disagree")
    if res.nit != rounds:
        raise HarnessFailure(f"run() reported nit={res.nit}, expected {rounds}")


def check_stop_iteration(solver: Any, ref: ReferenceProblem, stop_at: int = 3) -> None:
    """A callback raising StopIteration at round ``stop_at`` ends the run there with CALLBACK_STOP."""
    def cb(r: Any) -> None:
        if r.nit >= stop_at:
            raise StopIteration

    res = _replace(solver, tol=1e-300).run(ref.problem, ref.x0, ref.y0, callback=cb)
    if res.status is not Status.CALLBACK_STOP or res.nit != stop_at or res.success:
        raise HarnessFailure(f"StopIteration not honoured: status={res.status}, nit={res.nit}")


def check_deterministic(solver: Any, ref: ReferenceProblem, rounds: int = 20) -> None:
    """Two runs give bit-identical results."""
    s = _replace(solver, maxiter=rounds)
    a = s.run(ref.problem, ref.x0, ref.y0)
    b = s.run(ref.problem, ref.x0, ref.y0)
    if not np.array_equal(np.asarray(a.y), np.asarray(b.y)) or a.counts != b.counts:
        raise HarnessFailure("two identical runs differ")


def check_oracles_fd(ref: ReferenceProblem, rtol: float = 1e-6) -> None:
    """Every oracle's gradient (and HVP, if any) agrees with central finite differences."""
    sp = ref.problem.space
    rng = np.random.default_rng(0)
    y = ref.y0 + rng.standard_normal(ref.y0.shape)
    x = None if ref.x0 is None else ref.x0 + rng.standard_normal(ref.x0.shape)
    for label, obj in (("outer", ref.problem.outer), ("inner", ref.problem.inner)):
        rep = check_gradient(sp, obj, x, y, rtol=rtol)
        if not rep.ok:
            raise HarnessFailure(f"{ref.id} {label}.grad disagrees with finite differences: {rep}")
        if has_hvp(obj):
            rep = check_hvp(sp, obj, x, y, rtol=rtol)
            if not rep.ok:
                raise HarnessFailure(f"{ref.id} {label}.hvp disagrees with finite differences: {rep}")


def check_solves_reference(solver: Any, ref: ReferenceProblem) -> float:
    """The solver converges (for a ``"penalized"`` target: stops at the penalized problem's stationary point; on a
    problem with local minima: stops at a stationary point) and lands within the reference's tolerance (and, for a
    constrained problem, within ``ref.tol`` of feasibility for every constraint); returns the distance."""
    res = solver.run(ref.problem, ref.x0, ref.y0)
    d = ref.distance(res.x, res.y)
    # a "penalized" target (P9) is the minimizer at a fixed penalty: stopping there (PENALIZED) solves it; a
    # stationary point (a problem that does not declare local_is_global) solves it when the distance to the known
    # global solution verifies it (checked below)
    solved = res.success or (ref.target == "penalized" and res.status is Status.PENALIZED) or (
        ref.target == "bilevel" and res.status is Status.STATIONARY)
    if not solved or not math.isfinite(d) or d > ref.tol:
        raise HarnessFailure(
            f"{ref.id}: status={res.status.value}, distance={d:.3e} > tol={ref.tol:.1e} after {res.nit} rounds"
        )
    if ref.constrained:
        check_feasible(ref, res.x, res.y)
    return d


def check_feasible(ref: ReferenceProblem, x: Any, y: Any, tol: float | None = None) -> dict[str, float]:
    """Every constraint of ``ref.problem`` holds at ``(x, y)`` up to ``tol`` (default ``ref.tol``); returns the
    violations by kind."""
    viol = feasibility(ref.problem, x, y)
    limit = ref.tol if tol is None else tol
    bad = {k: v for k, v in viol.items() if not v <= limit}
    if bad:
        raise HarnessFailure(f"{ref.id}: infeasible point, violations {bad} > {limit:.1e}")
    return viol

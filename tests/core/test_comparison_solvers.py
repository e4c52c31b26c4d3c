"""BOME, F2SA and implicit differentiation: harness rows and what each is known to achieve."""

import numpy as np
import pytest

from ofmu_opt.core import Bome, F2sa, ImplicitDiff
from ofmu_opt.errors import ConfigError, ProblemSpecError
from ofmu_opt.reference import get_reference
from ofmu_opt.testing import (
    COMPARISON_CASES,
    check_deterministic,
    check_run_equals_manual_loop,
    check_state_structure,
    check_stop_iteration,
)


@pytest.mark.parametrize("case", list(COMPARISON_CASES))
def test_comparison_rows_pass_the_harness(case):
    ref = get_reference("P3")
    s = COMPARISON_CASES[case](ref)
    check_state_structure(s, ref)
    check_run_equals_manual_loop(s, ref)
    check_stop_iteration(s, ref)
    check_deterministic(s, ref)


def _p3_constants(ref):
    Q, C, H = ref.data["Q"], ref.data["C"], ref.data["H"]
    J = -np.linalg.solve(Q, C.T)
    return 1.0 / np.linalg.eigvalsh(Q).max(), 1.0 / np.linalg.eigvalsh(J.T @ J + H).max()


def test_implicit_diff_is_the_accuracy_reference_on_p3():
    ref = get_reference("P3")
    lr_in, lr_out = _p3_constants(ref)
    res = ImplicitDiff(lr=lr_out, inner_lr=lr_in, outer_rule="nesterov", tol=1e-10).run(ref.problem, ref.x0, ref.y0)
    assert res.success and ref.distance(res.x, res.y) < 1e-8


def test_f2sa_bias_shrinks_with_the_multiplier():
    ref = get_reference("P3")
    lr_in, _ = _p3_constants(ref)
    d = []
    for lam_max in (10.0, 100.0):
        s = F2sa(lr=0.05, inner_lr=lr_in, lam=lam_max, lam_step=0.0, lam_max=lam_max, maxiter=4000, tol=1e-9)
        res = s.run(ref.problem, ref.x0, ref.y0)
        d.append(ref.distance(res.x, res.y))
    assert d[1] < 0.2 * d[0]  # Θ(1/λ) bias


def test_bome_decreases_distance_and_constraint():
    ref = get_reference("P3")
    lr_in, _ = _p3_constants(ref)
    res = Bome(lr=0.05, inner_lr=lr_in, maxiter=2000).run(ref.problem, ref.x0, ref.y0)
    assert ref.distance(res.x, res.y) < 0.2 * ref.distance(ref.x0, ref.y0)
    assert res.residuals["inner"] < 0.05  # the value-function constraint q is small


def test_comparison_solver_input_errors():
    with pytest.raises(ConfigError, match="lr: expected a value > 0.0"):
        Bome(lr=0.0)
    with pytest.raises(ConfigError, match="lam_max: expected a value >= 5.0"):
        F2sa(lam=5.0, lam_max=1.0)
    with pytest.raises(ConfigError, match="outer_rule"):
        ImplicitDiff(outer_rule="adam")
    q = get_reference("QOFMU")
    with pytest.raises(ProblemSpecError, match="no outer variable x"):
        ImplicitDiff().run(q.problem, None, q.y0)

"""The solver on constrained bi-level problems with closed-form solutions: projections on x and y, lower-level
inequality constraints (value-function penalty with primal-dual multipliers), upper-level constraints."""

from __future__ import annotations

import numpy as np
import pytest

import ofmu_opt as oo
from ofmu_opt.core import Status
from ofmu_opt.problem import BilevelProblem, FunctionObjective

SP = oo.NumpySpace()


def _quad(cx: float, cy: float, *, coupled: bool = False) -> FunctionObjective:
    """½(x − cx)² + ½(y − cy)², or ½(y − x)² when ``coupled`` (then cx, cy are unused)."""
    if coupled:
        return FunctionObjective(lambda x, y, b: float(0.5 * (y - x) @ (y - x)), lambda x, y, b: (x - y, y - x),
                                 hvp_fn=lambda x, y, v, b: (-v, v.copy()), quadratic=True)
    return FunctionObjective(
        lambda x, y, b: float(0.5 * (x - cx) @ (x - cx) + 0.5 * (y - cy) @ (y - cy)),
        lambda x, y, b: (x - cx, y - cy), hvp_fn=lambda x, y, v, b: (0 * x, v.copy()), quadratic=True)


def _ll_target(c: float) -> FunctionObjective:
    """½(y − c)², independent of x."""
    return FunctionObjective(lambda x, y, b: float(0.5 * (y - c) @ (y - c)), lambda x, y, b: (0 * x, y - c),
                             hvp_fn=lambda x, y, v, b: (0 * v, v.copy()), quadratic=True)


Y_LE_X = oo.LinearConstraints(a_y=np.array([[1.0]]), b=np.array([0.0]), a_x=np.array([[-1.0]]))  # y − x ≤ 0
X_PLUS_Y_LE_2 = oo.LinearConstraints(a_y=np.array([[1.0]]), b=np.array([2.0]), a_x=np.array([[1.0]]))

# each h(x) = f(x, y*(x)) below has a single local minimum: the problems declare local_is_global=True
CASES = {
    # min ½(x−2)² + ½(y−2)²  s.t.  y ∈ argmin_{y ∈ [0,1]} ½(y − x)²          -> (2, 1), the box active
    "y_box": (BilevelProblem(_quad(2.0, 2.0), _quad(0, 0, coupled=True), SP, y_set=oo.Box(0.0, 1.0),
                             local_is_global=True), (2.0, 1.0), {}),
    # min ½(x−1)² + ½(y−2)²  s.t.  y ∈ argmin_{y ≤ x} ½(y − 3)²              -> (1.5, 1.5), μ = 1.5
    "coupled": (BilevelProblem(_quad(1.0, 2.0), _ll_target(3.0), SP, inner_constraints=Y_LE_X,
                                local_is_global=True), (1.5, 1.5),
                {"inner": 1.5}),
    # min ½(x−3)² + ½(y−3)²  s.t.  x + y ≤ 2,  y ∈ argmin ½(y − x)²          -> (1, 1), λ = 2
    "upper": (BilevelProblem(_quad(3.0, 3.0), _quad(0, 0, coupled=True), SP, outer_constraints=X_PLUS_Y_LE_2,
                             local_is_global=True),
              (1.0, 1.0), {"outer": 2.0}),
    # the coupled problem with x ∈ [0, 0.5]                                  -> (0.5, 0.5), μ = 2.5
    "x_box": (BilevelProblem(_quad(1.0, 2.0), _ll_target(3.0), SP, inner_constraints=Y_LE_X,
                             x_set=oo.Box(0.0, 0.5), local_is_global=True), (0.5, 0.5), {"inner": 2.5}),
}


@pytest.mark.parametrize(
    "case, preset",
    [(c, "ofmu") for c in sorted(CASES)] + [("y_box", "gpbgd"), ("x_box", "gpbgd"), ("coupled", "vpbgd"),
                                            ("upper", "vpbgd")],
)
def test_presets_solve_constrained_problems_and_report_feasibility_and_multipliers(case: str, preset: str) -> None:
    prob, sol, mults = CASES[case]
    solver = {"gpbgd": oo.gpbgd(tol=1e-5), "vpbgd": oo.vpbgd(tol=1e-5), "ofmu": oo.ofmu(beta=0.0, tol=1e-5)}[preset]
    res = solver.run(prob, np.zeros(1), np.zeros(1))
    assert res.status is Status.CONVERGED, res.message
    np.testing.assert_allclose([res.x[0], res.y[0]], sol, atol=1e-5)
    assert set(res.feasibility) and max(res.feasibility.values()) <= 1e-7
    for key, value in mults.items():
        assert res.multipliers[key][0] == pytest.approx(value, abs=1e-4)


def test_stationarity_presets_switch_to_the_value_gap_on_a_constrained_lower_level() -> None:
    prob = CASES["coupled"][0]
    assert oo.gpbgd().effective_penalty_type(prob) == "value_gap"
    assert oo.gpbgd().effective_penalty_type(CASES["upper"][0]) == "stationarity"  # only the upper level constrained
    with pytest.raises(oo.ConfigError, match="constrained lower level"):
        oo.gpbgd(strategy="paper", base="inner", allow_inner_base_with_x=True).init_state(prob, np.zeros(1),
                                                                                          np.zeros(1))


def test_iterates_stay_in_the_sets_every_round() -> None:
    prob = BilevelProblem(_quad(2.0, 2.0), _quad(0, 0, coupled=True), SP, y_set=oo.Box(0.0, 1.0),
                          x_set=oo.Box(-1.0, 1.5), local_is_global=True)
    seen: list[tuple[float, float]] = []
    res = oo.gpbgd().run(prob, np.array([5.0]), np.array([5.0]),
                         callback=lambda r: seen.append((float(r.x[0]), float(r.y[0]))))
    assert res.status is Status.CONVERGED
    assert all(-1.0 <= x <= 1.5 and 0.0 <= y <= 1.0 for x, y in seen)
    np.testing.assert_allclose([res.x[0], res.y[0]], [1.5, 1.0], atol=1e-6)


def test_paper_variant_on_a_constrained_problem_says_penalized() -> None:
    prob, sol, _ = CASES["coupled"]
    res = oo.vpbgd(strategy="paper", maxiter=5000).run(prob, np.zeros(1), np.zeros(1))
    assert res.status in (Status.PENALIZED, Status.MAXITER) and not res.success
    assert "Θ(1/penalty)" in res.message
    assert np.all(np.isfinite(res.y)) and "inner_constraints" in res.feasibility


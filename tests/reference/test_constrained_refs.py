"""The constrained references' optima, checked independently of the hand derivation that stores them:
KKT active-set enumeration with cvxpy (the global optimum), the lower level solved by cvxpy at x*, and an
exhaustive grid over x (coarse here; the fine grid is a slow test)."""

import numpy as np
import pytest

cp = pytest.importorskip("cvxpy")

from ofmu_opt.reference import REFERENCES, get_reference  # noqa: E402
from ofmu_opt.reference.constrained import CONSTRAINED_DATA  # noqa: E402
from ofmu_opt.reference.constrained_verify import (  # noqa: E402
    grid_check,
    grid_local_minima,
    kkt_enumeration,
    lower_level_solution,
)

NAMES = list(CONSTRAINED_DATA)
COARSE = {1: 41, 2: 11, 3: 5}


def test_at_least_eight_constrained_literature_problems_are_registered():
    lit = [n for n in NAMES if n != "P5"]
    assert len(lit) >= 8
    for name in NAMES:
        ref = get_reference(name)
        assert name in REFERENCES and ref.constrained and ref.traps
        p = ref.problem
        assert any(c is not None for c in (p.x_set, p.y_set, p.inner_constraints, p.outer_constraints))


@pytest.mark.parametrize("name", NAMES)
def test_kkt_enumeration_finds_the_stored_optimum(name):
    d = CONSTRAINED_DATA[name]()
    e = kkt_enumeration(d)
    assert e.F == pytest.approx(d.F_star, abs=1e-6)
    np.testing.assert_allclose(e.x, d.x_star, atol=2e-5)
    np.testing.assert_allclose(e.y, d.y_star, atol=2e-5)
    # the stored point is feasible at both levels and attains F*
    assert np.all(d.ll_slack(d.x_star, d.y_star) >= -1e-9)
    assert np.all(d.ul_slack(d.x_star, d.y_star) >= -1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_lower_level_by_cvxpy_at_x_star_returns_y_star(name):
    d = CONSTRAINED_DATA[name]()
    y = lower_level_solution(d, d.x_star)
    np.testing.assert_allclose(y, d.y_star, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_coarse_grid_over_x_finds_nothing_better(name):
    d = CONSTRAINED_DATA[name]()
    g = grid_check(d, COARSE[d.nx])
    assert g.F >= d.F_star - 1e-7  # no grid point beats the optimum
    assert np.all(np.abs(g.x - d.x_star) <= g.spacing + 1e-9)  # the best grid point is next to x*


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_fine_grid_over_x(name):
    d = CONSTRAINED_DATA[name]()
    g = grid_check(d, {1: 2001, 2: 61, 3: 13}[d.nx])
    assert g.F >= d.F_star - 1e-7
    assert np.all(np.abs(g.x - d.x_star) <= g.spacing + 1e-9)


ONE_D = [n for n in NAMES if CONSTRAINED_DATA[n]().nx == 1]


def _check_declaration(name, points):
    d = CONSTRAINED_DATA[name]()
    minima = grid_local_minima(d, points)
    assert get_reference(name).problem.local_is_global is d.local_is_global
    if d.local_is_global:  # declared: a single local minimum, next to x*
        assert len(minima) == 1, minima
        spacing = np.array([(hi - lo) / (points - 1) for lo, hi in d.x_range])
        assert np.all(np.abs(minima[0][0] - d.x_star) <= spacing + 1e-9)
    else:  # a trap: the global minimum and at least one other local minimum
        assert len(minima) >= 2, minima
        assert min(h for _, h in minima) == pytest.approx(d.F_star, abs=1e-2)  # to the grid spacing


@pytest.mark.parametrize("name", ONE_D)
def test_local_is_global_declarations_match_the_grid_over_x(name):
    """Problems that declare local_is_global have one grid local minimum of h(x); the traps have several."""
    _check_declaration(name, 101)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n not in ONE_D])
def test_local_is_global_declarations_match_the_grid_over_x_multi_d(name):
    _check_declaration(name, 21 if CONSTRAINED_DATA[name]().nx == 2 else 9)


def test_bard_1988_local_minimum_trap():
    d = CONSTRAINED_DATA["Bard1988Ex1"]()
    y5 = lower_level_solution(d, np.array([5.0]))
    assert y5[0] == pytest.approx(2.0, abs=1e-6) and d.F(np.array([5.0]), y5) == pytest.approx(25.0, abs=1e-5)
    # the library start x0 = 4 lies in that basin: h decreases from x = 4 to x = 5
    h = [d.F(np.array([x]), lower_level_solution(d, np.array([x]))) for x in (4.0, 4.5, 5.0)]
    assert h[0] > h[1] > h[2] > d.F_star


def test_falk_liu_listed_value_is_not_the_optimum():
    d = CONSTRAINED_DATA["FalkLiu1995"]()
    s = np.sqrt(3) / 2
    assert d.F([s, s], [s, s]) == pytest.approx(d.f_star_listed, abs=1e-4)  # the library's point
    assert d.F_star == pytest.approx(-2.25) and d.F_star < d.f_star_listed - 0.05


def _h(d, x):
    return d.F([x], lower_level_solution(d, np.array([x])))


def test_clark_westerberg_local_minimum_traps():
    d = CONSTRAINED_DATA["ClarkWesterberg1990a"]()
    for x, value in ((3.0, 9.0), (4.4, 9.8)):
        assert _h(d, x) == pytest.approx(value, abs=1e-6)
        assert _h(d, x - 0.05) > value and _h(d, x + 0.05) > value  # a strict local minimum of h
    assert _h(d, 1.0) == pytest.approx(5.0, abs=1e-6)


def test_lampariello_sagratella_35_local_minimum_trap():
    d = CONSTRAINED_DATA["LamparielloSagratella2017Ex35"]()
    assert _h(d, 0.0) == pytest.approx(1.0, abs=1e-6)
    assert _h(d, -0.05) > 1.0 and _h(d, 0.05) > 1.0
    assert _h(d, 0.8) == pytest.approx(0.8, abs=1e-6)


def test_anandalingam_white_local_minimum_trap():
    d = CONSTRAINED_DATA["AnandalinghamWhite1990"]()
    assert _h(d, 0.0) == pytest.approx(-15.0, abs=1e-6)
    assert _h(d, 0.1) > -15.0 and _h(d, 16.0) == pytest.approx(-49.0, abs=1e-6)


def test_lower_level_solution_set_is_not_a_singleton_for_ls33():
    # at x* the lower level min y1 over {x + y1 + y2 ≥ 1, y ≥ 0} has the ray y1 = 0, y2 ≥ 1/2 as solutions:
    # the optimistic selection picks y2 = 1/2
    d = CONSTRAINED_DATA["LamparielloSagratella2017Ex33"]()
    for y2 in (0.5, 1.0, 3.0):
        y = np.array([0.0, y2])
        assert d.f(d.x_star, y) == pytest.approx(0.0) and np.all(d.ll_slack(d.x_star, y) >= 0)
    np.testing.assert_allclose(lower_level_solution(d, d.x_star), [0.0, 0.5], atol=1e-6)


def test_reference_problem_encodes_the_data():
    ref = get_reference("ShimizuAiyoshi1981Ex1")
    p = ref.problem
    x, y = ref.x_star, ref.y_star
    assert p.outer.value(x, y) == pytest.approx(100.0)
    np.testing.assert_allclose(p.x_set.project(np.array([20.0])), [15.0])
    np.testing.assert_allclose(p.y_set.project(np.array([-1.0])), [0.0])
    assert p.inner_constraints.count == 1 and p.outer_constraints.count == 1
    assert np.all(p.inner_constraints.value(x, y) <= 1e-12) and np.all(p.outer_constraints.value(x, y) <= 1e-12)


@pytest.mark.parametrize("case", ["ofmu", "gpbgd", "vpbgd"])
def test_harness_structure_loop_stop_determinism_on_a_constrained_problem(case):
    from ofmu_opt.testing import (
        SOLVER_CASES,
        check_deterministic,
        check_run_equals_manual_loop,
        check_state_structure,
        check_stop_iteration,
    )

    ref = get_reference("ShimizuAiyoshi1981Ex1")  # x box, y box, coupled lower- and upper-level constraints
    s = SOLVER_CASES[case](ref)
    check_state_structure(s, ref)
    check_run_equals_manual_loop(s, ref)
    check_stop_iteration(s, ref)
    check_deterministic(s, ref)


def test_check_feasible_reports_and_rejects_violations():
    from ofmu_opt.testing import HarnessFailure, check_feasible

    ref = get_reference("ShimizuAiyoshi1981Ex1")
    assert max(check_feasible(ref, ref.x_star, ref.y_star).values()) <= 1e-12
    with pytest.raises(HarnessFailure, match="infeasible"):
        check_feasible(ref, np.array([10.0]), np.array([12.0]))  # y > x and x + y > 20

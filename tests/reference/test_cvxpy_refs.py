"""cvxpy and the closed forms agree to 1e-8 on every reference; the user-facing helper works and fails clearly."""

import numpy as np
import pytest

cp = pytest.importorskip("cvxpy")

from ofmu_opt.errors import ProblemSpecError  # noqa: E402
from ofmu_opt.reference import REFERENCES, get_reference  # noqa: E402
from ofmu_opt.reference.cvxpy_refs import (  # noqa: E402
    cvxpy_solution,
    least_squares_inner_reference,
    p6_lexicographic,
    quadratic_inner_reference,
)
from ofmu_opt.reference.solvers import solver_for_reference  # noqa: E402


@pytest.mark.parametrize("pid", [p for p in REFERENCES if not get_reference(p).constrained or p == "P5"])
def test_cvxpy_agrees_with_closed_form(pid):
    # the other constrained references are checked (same enumeration) in test_constrained_refs.py
    ref = get_reference(pid)
    sol = cvxpy_solution(pid)
    # constrained problems: interior-point accuracy on degenerate active sets (zero multipliers) is ~1e-6
    tol = 2e-5 if ref.constrained else 1e-8
    assert np.max(np.abs(sol.y - ref.y_star)) < tol
    if ref.x_star is not None:
        assert np.max(np.abs(sol.x - ref.x_star)) < tol
    if ref.target == "bilevel":
        assert sol.f == pytest.approx(ref.f_star, abs=1e-7 if ref.constrained else 1e-8)


def test_p6_lexicographic_lp():
    sol = p6_lexicographic()
    np.testing.assert_allclose(sol.y, [1.0, 0.0, 1.0], atol=1e-8)
    assert sol.f == pytest.approx(-1.0, abs=1e-8)


def test_user_helper_validates_a_solver_on_a_users_own_problem():
    # a user's problem: inner ½yᵀQy + xᵀCy + aᵀy with singular Q (a non-unique inner solution set), convex outer
    rng = np.random.default_rng(4)
    U = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    Q = U @ np.diag([2.0, 1.0, 0.0, 0.0]) @ U.T
    C = rng.standard_normal((2, 4)) @ Q  # coupling within range(Q) keeps the inner problem bounded
    a = Q @ rng.standard_normal(4)
    t = rng.standard_normal(4)
    sol = quadratic_inner_reference(
        lambda x, y: 0.5 * cp.sum_squares(y - t) + 0.5 * cp.sum_squares(x), Q=Q, a=a, C=C
    )
    assert np.linalg.norm(Q @ sol.y + C.T @ sol.x + a) < 1e-9  # on the inner solution set
    # the reference agrees with P3's closed form when used on P3's data
    ref = get_reference("P3")
    d = ref.data
    sol3 = quadratic_inner_reference(
        lambda x, y: 0.5 * cp.sum_squares(y - d["t"]) + 0.5 * cp.quad_form(x, d["H"]), Q=d["Q"], a=d["a"], C=d["C"]
    )
    np.testing.assert_allclose(sol3.x, ref.x_star, atol=1e-8)
    # and the package's solver agrees with the cvxpy reference
    res = solver_for_reference("gpbgd", ref, tol=1e-6).run(ref.problem, ref.x0, ref.y0)
    assert np.linalg.norm(res.x - sol3.x) / max(1, np.linalg.norm(sol3.x)) < 1e-5


def test_helper_errors():
    with pytest.raises(ProblemSpecError, match="positive semi-definite"):
        quadratic_inner_reference(lambda x, y: cp.sum_squares(y), Q=-np.eye(2), a=np.zeros(2))
    with pytest.raises(ProblemSpecError, match=r"expected shapes \(n, n\) and \(n,\)"):
        quadratic_inner_reference(lambda x, y: cp.sum_squares(y), Q=np.eye(2), a=np.zeros(3))
    with pytest.raises(ProblemSpecError, match=r"A, b: expected shapes"):
        least_squares_inner_reference(lambda x, y: cp.sum_squares(y), A=np.eye(2), b=np.zeros(3))
    with pytest.raises(ProblemSpecError, match="not solved"):  # a outside range(Q): unbounded inner problem
        quadratic_inner_reference(lambda x, y: cp.sum_squares(y), Q=np.diag([1.0, 0.0]), a=np.array([0.0, 1.0]))

"""Each closed-form solution satisfies its problem's optimality conditions (checked independently of the
formula that produced it)."""

import numpy as np
import pytest
from hypothesis import given

from ofmu_opt.core import gpbgd, with_continuation
from ofmu_opt.reference import REFERENCES, get_reference, list_references
from ofmu_opt.testing.strategies import p3_instances

TOL = 4 * np.sqrt(np.finfo(np.float64).eps)


def _null(M, tol=1e-9):
    _, s, Vt = np.linalg.svd(M)
    rank = int(np.sum(s > tol * s.max()))
    return Vt[rank:].T


def test_p1b_optimality():
    r = get_reference("P1b")
    A, b, c, y = r.data["A"], r.data["b"], r.data["c"], r.y_star
    assert np.linalg.norm(A.T @ (A @ y - b)) < TOL * 10  # y is a least-squares solution
    assert np.linalg.norm(_null(A).T @ (y - c)) < TOL * 10  # and the closest one to c
    assert np.linalg.norm(A @ np.linalg.lstsq(A, b, rcond=None)[0] - b) > 1e-3  # b really is inconsistent


def test_p2_optimality():
    r = get_reference("P2")
    At, bt, Av, bv, y = r.data["At"], r.data["bt"], r.data["Av"], r.data["bv"], r.y_star
    assert np.linalg.norm(At @ y - bt) < TOL * 10
    assert np.linalg.norm(_null(At).T @ Av.T @ (Av @ y - bv)) < TOL * 100


def test_p3_optimality_inner_and_hypergradient():
    r = get_reference("P3")
    Q, C, a, t, H = (r.data[k] for k in "QCatH")
    x, y = r.x_star, r.y_star
    assert np.linalg.norm(Q @ y + C.T @ x + a) < TOL * 10  # inner stationarity
    # hypergradient of h(x) = f(x, y*(x)) by finite differences of the implicit function
    def h(xx):
        yy = np.linalg.solve(Q, -(C.T @ xx + a))
        return 0.5 * np.sum((yy - t) ** 2) + 0.5 * xx @ H @ xx
    eps = 1e-6
    g = np.array([(h(x + eps * e) - h(x - eps * e)) / (2 * eps) for e in np.eye(x.size)])
    assert np.linalg.norm(g) < 1e-7


def test_p4_p5_known_values():
    r4 = get_reference("P4")
    assert r4.f_star == 0.0 and r4.problem.outer.value(r4.x_star, r4.y_star) == 0.0
    r5 = get_reference("P5")
    np.testing.assert_allclose(r5.x_star, [1.0, 0.0, 0.2])
    np.testing.assert_allclose(r5.y_star, np.maximum(r5.x_star, 0))


def test_p9_is_the_stationary_point_of_the_value_gap_penalty():
    r = get_reference("P9")
    Q, C, a, t, H = (r.data[k] for k in "QCatH")
    rho = r.penalty

    def F(z):
        x, y = z[:3], z[3:]
        v = -0.5 * (C.T @ x + a) @ np.linalg.solve(Q, C.T @ x + a)
        g = 0.5 * y @ Q @ y + x @ C @ y + a @ y
        return 0.5 * np.sum((y - t) ** 2) + 0.5 * x @ H @ x + rho * (g - v)

    z = np.concatenate([r.x_star, r.y_star])
    eps = 1e-6
    grad = np.array([(F(z + eps * e) - F(z - eps * e)) / (2 * eps) for e in np.eye(z.size)])
    assert np.linalg.norm(grad) < 1e-6
    assert get_reference("P3").distance(r.x_star, r.y_star) > 1e-3  # a real penalty bias


def test_qofmu_optimality_over_the_affine_inner_set():
    r = get_reference("QOFMU")
    A, d, B, b = (r.data[k] for k in ("A", "d", "B", "b"))
    y = r.y_star
    assert np.linalg.matrix_rank(A) == 3
    assert np.linalg.norm(A @ y - d) < TOL * 10  # y maximizes L_f
    assert np.linalg.norm(_null(A).T @ B @ (y - b)) < TOL * 10  # and minimizes L_r over that set


def test_distance_validates_shapes():
    from ofmu_opt.errors import ProblemSpecError

    r = get_reference("P3")
    with pytest.raises(ProblemSpecError, match=r"y: expected shape \(5,\), received \(4,\)"):
        r.distance(r.x_star, np.zeros(4))


def test_registry_listing():
    rows = list_references()
    assert [row["id"] for row in rows] == list(REFERENCES)
    assert all(row["description"] and row["source"] for row in rows)


@given(p3_instances())
def test_random_p3_instances_are_solved(inst):
    s = with_continuation(gpbgd(inner_lr=1.0 / np.linalg.eigvalsh(inst["Q"]).max()), tol=1e-5)
    res = s.run(inst["problem"], inst["x0"], inst["y0"])
    z = np.concatenate([res.x, res.y])
    zs = np.concatenate([inst["x_star"], inst["y_star"]])
    assert res.success and np.linalg.norm(z - zs) / max(1.0, np.linalg.norm(zs)) < 1e-4

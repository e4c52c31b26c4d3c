"""Closed-form penalized minimizers and their Θ(1/ρ) bias (REFERENCE_PROBLEMS.md Q-OFMU, P3, P9)."""

from __future__ import annotations

import numpy as np
import pytest

from theory.closed_forms import (
    P3_PENALTIES,
    p3_base_inner_gradient,
    p3_bias_coefficient,
    p3_bias_coefficient_np,
    p3_limit,
    p3_penalized_minimizer,
    p3_penalized_minimizer_np,
    p3_quadratic_data,
    p3_solution_np,
    qofmu_bias_coefficient,
    qofmu_bias_coefficient_np,
    qofmu_limit,
    qofmu_penalized_minimizer,
    qofmu_penalized_minimizer_np,
    qofmu_solution_np,
    quadratic_penalty_bias,
    quadratic_penalty_bias_np,
)

RTOL = 4 * np.sqrt(np.finfo(np.float64).eps)
RHOS = np.logspace(3, 6, 7)


def _spd(rng: np.random.Generator, n: int, mu: float) -> np.ndarray:
    M = rng.standard_normal((n, n))
    return M @ M.T / n + mu * np.eye(n)


def _sqrtm(S: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(S)
    return V @ np.diag(np.sqrt(w)) @ V.T


def _qofmu_lstsq(A, B, a, b, rho):
    """Independent: θ(ρ) = argmin ½‖B^½(θ − b)‖² + ρ‖A(θ − a)‖² as one stacked least-squares problem."""
    Bh = _sqrtm(B)
    M = np.vstack([Bh, np.sqrt(2 * rho) * A])
    return np.linalg.lstsq(M, np.concatenate([Bh @ b, np.sqrt(2 * rho) * A @ a]), rcond=None)[0]


def _p3_lstsq(Q, C, a, t, H, rho, penalty):
    """Independent: P3's penalized objective written as a stacked least-squares problem in z = (x, y)."""
    n, m = C.shape
    Hh = _sqrtm(H)
    rows = [np.hstack([Hh, np.zeros((n, m))]), np.hstack([np.zeros((m, n)), np.eye(m)])]
    rhs = [np.zeros(n), t]
    if penalty == "stationarity":  # ρ‖Qy + Cᵀx + a‖²
        rows.append(np.sqrt(2 * rho) * np.hstack([C.T, Q]))
        rhs.append(-np.sqrt(2 * rho) * a)
    else:  # ρ(g − min g) = (ρ/2)‖Q^½(y − y*(x))‖², y*(x) = −Q⁻¹(Cᵀx + a)
        Qh = _sqrtm(Q)
        Qi = np.linalg.inv(Q)
        rows.append(np.sqrt(rho) * Qh @ np.hstack([Qi @ C.T, np.eye(m)]))
        rhs.append(-np.sqrt(rho) * Qh @ Qi @ a)
    z = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
    return z[:n], z[n:]


def _p3_data(seed: int, n: int = 3, m: int = 4):
    rng = np.random.default_rng(seed)
    return (_spd(rng, m, 1.0), rng.standard_normal((n, m)), rng.standard_normal(m), rng.standard_normal(m),
            _spd(rng, n, 0.5))


def _slope(rhos: np.ndarray, errs: np.ndarray) -> float:
    return float(np.polyfit(np.log(rhos), np.log(errs), 1)[0])


# ----------------------------------------------------------------------------------------- symbolic


@pytest.mark.parametrize("dim", [1, 2])
def test_qofmu_minimizer_identity(dim, assert_zero):
    """Solving ∇F = 0 gives θ(ρ) = (B + 2ρA²)⁻¹(Bb + 2ρA²a)."""
    assert_zero(*qofmu_penalized_minimizer(dim).identity())


@pytest.mark.parametrize("dim", [1, 2])
def test_qofmu_limit_identity(dim, assert_zero):
    """lim_{ρ→∞} θ(ρ) = a, the unique inner maximizer."""
    assert_zero(*qofmu_limit(dim).identity())


@pytest.mark.parametrize("dim", [1, 2])
def test_qofmu_bias_coefficient_identity(dim, assert_zero):
    """θ(ρ) = a + ½A⁻²B(b − a)/ρ + O(1/ρ²)."""
    assert_zero(*qofmu_bias_coefficient(dim).identity())


@pytest.mark.parametrize("penalty", P3_PENALTIES)
def test_p3_minimizer_identity(penalty, assert_zero):
    """Solving ∇F = 0 gives (P + ρGᵀWG)⁻¹(−q + ρGᵀWr) with the instance's data."""
    assert_zero(*p3_penalized_minimizer(penalty).identity())


@pytest.mark.parametrize("penalty", P3_PENALTIES)
def test_p3_limit_identity(penalty, assert_zero):
    """Both penalties converge to the bi-level solution x* = −P⁻¹q, y* = Jx* + c."""
    assert_zero(*p3_limit(penalty).identity())


@pytest.mark.parametrize("penalty", P3_PENALTIES)
def test_p3_bias_coefficient_identity(penalty, assert_zero):
    """The 1/ρ Taylor coefficient equals the KKT formula."""
    assert_zero(*p3_bias_coefficient(penalty).identity())


def test_general_quadratic_penalty_bias_identity(assert_zero):
    """General 2-D quadratic with one affine constraint: the 1/ρ coefficient equals the KKT formula."""
    assert_zero(*quadratic_penalty_bias().identity())


def test_base_inner_gradient_identity(assert_zero):
    """At y = y*(x), ∂_x F_stationarity = Hx: the hyper-gradient term is lost (base='inner' with x)."""
    assert_zero(*p3_base_inner_gradient().identity())


# ------------------------------------------------------------------------------------------ numeric


def test_qofmu_lambdified_matches_lstsq():
    """The lambdified 2-D θ(ρ) equals an independent least-squares solve."""
    rng = np.random.default_rng(0)
    A, B = _spd(rng, 2, 0.5), _spd(rng, 2, 0.5)
    a, b = rng.standard_normal(2), rng.standard_normal(2)
    d = qofmu_penalized_minimizer(2)
    for rho in (0.1, 1.0, 30.0):
        want = _qofmu_lstsq(A, B, a, b, rho)
        np.testing.assert_allclose(d.numeric(A, B, a, b, rho), want, rtol=RTOL, atol=RTOL)
        np.testing.assert_allclose(d.numeric_rhs(A, B, a, b, rho), want, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("singular", [False, True])
def test_qofmu_general_matches_lstsq(singular):
    """qofmu_penalized_minimizer_np in R^6 (A ≻ 0, or rank 3) equals an independent least-squares solve."""
    rng = np.random.default_rng(1)
    A = _spd(rng, 6, 0.5)
    if singular:
        w, V = np.linalg.eigh(A)
        A = V[:, 3:] @ np.diag(w[3:]) @ V[:, 3:].T
    B = _spd(rng, 6, 0.5)
    a, b = rng.standard_normal(6), rng.standard_normal(6)
    for rho in (0.5, 10.0):
        np.testing.assert_allclose(qofmu_penalized_minimizer_np(A, B, a, b, rho), _qofmu_lstsq(A, B, a, b, rho),
                                   rtol=RTOL, atol=RTOL)


def test_qofmu_bias_lambdified_matches_general():
    """The symbolic 2-D bias coefficient equals ½A⁻²B(b − a) from the general numpy function."""
    rng = np.random.default_rng(2)
    A, B = _spd(rng, 2, 0.5), _spd(rng, 2, 0.5)
    a, b = rng.standard_normal(2), rng.standard_normal(2)
    want = 0.5 * np.linalg.solve(A @ A, B @ (b - a))
    np.testing.assert_allclose(qofmu_bias_coefficient(2).numeric(A, B, a, b), want, rtol=RTOL)
    np.testing.assert_allclose(qofmu_bias_coefficient_np(A, B, a, b), want, rtol=RTOL)


@pytest.mark.parametrize("singular", [False, True])
def test_qofmu_bias_slope_is_minus_one(singular):
    """‖θ(ρ) − θ*‖ against ρ ∈ [1e3, 1e6] has log-log slope −1 ± 0.05 (A ≻ 0, and A of rank 3 in R^6)."""
    rng = np.random.default_rng(3)
    A = _spd(rng, 6, 0.5)
    if singular:
        w, V = np.linalg.eigh(A)
        A = V[:, 3:] @ np.diag(w[3:]) @ V[:, 3:].T
    B = _spd(rng, 6, 0.5)
    a, b = rng.standard_normal(6), rng.standard_normal(6)
    star = qofmu_solution_np(A, B, a, b)
    if not singular:
        np.testing.assert_allclose(star, a, rtol=RTOL, atol=RTOL)
    errs = np.array([np.linalg.norm(qofmu_penalized_minimizer_np(A, B, a, b, r) - star) for r in RHOS])
    assert abs(_slope(RHOS, errs) + 1.0) <= 0.05


def test_qofmu_bias_coefficient_predicts_the_error():
    """ρ(θ(ρ) − θ*) → w with error O(1/ρ) (singular A: the general KKT coefficient)."""
    rng = np.random.default_rng(4)
    A = _spd(rng, 5, 0.5)
    w_, V = np.linalg.eigh(A)
    A = V[:, 2:] @ np.diag(w_[2:]) @ V[:, 2:].T
    B = _spd(rng, 5, 0.5)
    a, b = rng.standard_normal(5), rng.standard_normal(5)
    star, w = qofmu_solution_np(A, B, a, b), qofmu_bias_coefficient_np(A, B, a, b)
    gaps = [np.linalg.norm(r * (qofmu_penalized_minimizer_np(A, B, a, b, r) - star) - w) for r in (1e3, 1e4)]
    assert gaps[1] <= 0.2 * gaps[0]  # O(1/ρ): a tenfold ρ shrinks the gap about tenfold
    assert gaps[1] <= 1e-2 * np.linalg.norm(w)


@pytest.mark.parametrize("penalty", P3_PENALTIES)
def test_p3_general_matches_lstsq(penalty):
    """p3_penalized_minimizer_np equals an independent least-squares solve of the penalized objective."""
    Q, C, a, t, H = _p3_data(5)
    for rho in (0.3, 20.0):
        x, y = p3_penalized_minimizer_np(Q, C, a, t, H, rho, penalty)
        xw, yw = _p3_lstsq(Q, C, a, t, H, rho, penalty)
        np.testing.assert_allclose(np.concatenate([x, y]), np.concatenate([xw, yw]), rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("penalty", P3_PENALTIES)
def test_p3_lambdified_scalar_matches_general(penalty):
    """The scalar symbolic forms equal the general numpy functions on 1 x 1 data."""
    Q, C, a, t, H = np.array([[1.7]]), np.array([[-0.6]]), np.array([0.4]), np.array([1.2]), np.array([[0.8]])
    for rho in (0.5, 5.0):
        x, y = p3_penalized_minimizer_np(Q, C, a, t, H, rho, penalty)
        np.testing.assert_allclose(p3_penalized_minimizer(penalty).numeric(Q, C, a, t, H, rho),
                                   np.concatenate([x, y]), rtol=RTOL)
    np.testing.assert_allclose(p3_limit(penalty).numeric(Q, C, a, t, H), np.concatenate(p3_solution_np(Q, C, a, t, H)),
                               rtol=RTOL)
    np.testing.assert_allclose(p3_bias_coefficient(penalty).numeric(Q, C, a, t, H),
                               np.concatenate(p3_bias_coefficient_np(Q, C, a, t, H, penalty)), rtol=RTOL)


@pytest.mark.parametrize("penalty", P3_PENALTIES)
def test_p3_bias_slope_is_minus_one(penalty):
    """‖(x, y)(ρ) − (x*, y*)‖ has log-log slope −1 ± 0.05 over ρ ∈ [1e3, 1e6] (n = 3, m = 4)."""
    Q, C, a, t, H = _p3_data(6)
    star = np.concatenate(p3_solution_np(Q, C, a, t, H))
    errs = np.array([
        np.linalg.norm(np.concatenate(p3_penalized_minimizer_np(Q, C, a, t, H, r, penalty)) - star) for r in RHOS
    ])
    assert abs(_slope(RHOS, errs) + 1.0) <= 0.05


def test_general_bias_formula_matches_random_problem():
    """quadratic_penalty_bias: lambdified 2-D formula equals the general numpy KKT solve, and both predict
    ρ(z(ρ) − z*) at ρ = 1e5 to O(1/ρ)."""
    P, q, g, r, W = np.array([[2.0, 0.3], [0.3, 1.0]]), np.array([0.5, -1.0]), np.array([1.0, 2.0]), 0.7, 3.0
    G = g[None, :]
    w = quadratic_penalty_bias_np(P, q, G, [r], [[W]])
    np.testing.assert_allclose(quadratic_penalty_bias().numeric(2.0, 0.3, 1.0, 0.5, -1.0, 1.0, 2.0, r, W), w,
                               rtol=RTOL)
    rho = 1e5
    z_rho = np.linalg.solve(P + rho * W * np.outer(g, g), -q + rho * W * r * g)
    K = np.block([[P, g[:, None]], [g[None, :], np.zeros((1, 1))]])
    z_star = np.linalg.solve(K, np.concatenate([-q, [r]]))[:2]
    np.testing.assert_allclose(rho * (z_rho - z_star), w, rtol=1e-3)


def test_base_inner_drives_x_to_zero_not_to_x_star():
    """With y reset to y*(x), ∂_x F = Hx (numpy, n = 3, m = 4), so the outer fixed point is x = 0 while
    x* ≠ 0; the true hyper-gradient at x = 0 is nonzero."""
    Q, C, a, t, H = _p3_data(7)
    x = np.array([0.3, -0.5, 1.0])
    y_star = -np.linalg.solve(Q, C.T @ x + a)
    rho = 10.0
    grad_x = H @ x + 2 * rho * C @ (Q @ y_star + C.T @ x + a)
    np.testing.assert_allclose(grad_x, H @ x, rtol=RTOL, atol=RTOL)
    x_star, _ = p3_solution_np(Q, C, a, t, H)
    assert np.linalg.norm(x_star) > 0.1
    J, c = -np.linalg.solve(Q, C.T), -np.linalg.solve(Q, a)
    hypergrad_at_0 = J.T @ (c - t)
    assert np.linalg.norm(hypergrad_at_0) > 0.1


def test_quadratic_data_rejects_unknown_penalty():
    Q, C, a, t, H = _p3_data(8)
    with pytest.raises(ValueError, match="penalty"):
        p3_quadratic_data(Q, C, a, t, H, "augmented")
    with pytest.raises(ValueError, match="dim"):
        qofmu_penalized_minimizer(3)

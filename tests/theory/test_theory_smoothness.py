"""The smoothness of the penalized objective grows like ρ (OFMU_SPEC.md §2, §3)."""

from __future__ import annotations

import numpy as np
import pytest

from theory.closed_forms import p3_quadratic_data
from theory.smoothness import lambda_max_2x2, penalized_smoothness_np, qofmu_penalized_hessian, smoothness_growth

RTOL = 4 * np.sqrt(np.finfo(np.float64).eps)


def _spd(rng: np.random.Generator, n: int, mu: float) -> np.ndarray:
    M = rng.standard_normal((n, n))
    return M @ M.T / n + mu * np.eye(n)


def test_lambda_max_formula_is_an_eigenvalue(assert_zero):
    """det(S − λ_max I) = 0 for the 2 x 2 formula."""
    assert_zero(*lambda_max_2x2().identity())


@pytest.mark.parametrize("dim", [1, 2])
def test_qofmu_hessian_identity(dim, assert_zero):
    """∇²F = B + 2ρA² for Q-OFMU."""
    assert_zero(*qofmu_penalized_hessian(dim).identity())


def test_smoothness_over_rho_limit_identity(assert_zero):
    """lim L_ρ/ρ = 2λ_max(M), independent of H_out."""
    assert_zero(*smoothness_growth().identity())


def test_lambdified_smoothness_matches_eigvalsh():
    """The closed-form 2 x 2 L_ρ equals numpy's largest eigenvalue."""
    rng = np.random.default_rng(0)
    Hm, M = _spd(rng, 2, 0.1), _spd(rng, 2, 0.0)
    d = smoothness_growth()
    for rho in (0.01, 1.0, 1e3):
        got = d.numeric(Hm[0, 0], Hm[0, 1], Hm[1, 1], M[0, 0], M[0, 1], M[1, 1], rho)
        np.testing.assert_allclose(got, penalized_smoothness_np(Hm, M, rho), rtol=RTOL)
    np.testing.assert_allclose(d.numeric_rhs(M[0, 0], M[0, 1], M[1, 1]), 2 * np.linalg.eigvalsh(M).max(), rtol=RTOL)


def _check_growth(H_out: np.ndarray, M: np.ndarray) -> None:
    lmax_m = np.linalg.eigvalsh(M).max()
    lo, hi = np.linalg.eigvalsh(H_out)[[0, -1]]
    norm_h = max(abs(lo), abs(hi))
    for rho in np.logspace(0, 6, 7):
        L = penalized_smoothness_np(H_out, M, rho)
        # Weyl: 2ρλ_max(M) + λ_min(H) ≤ L_ρ ≤ 2ρλ_max(M) + λ_max(H)
        assert 2 * rho * lmax_m + lo - RTOL * L <= L <= 2 * rho * lmax_m + hi + RTOL * L
        assert abs(L / rho - 2 * lmax_m) <= norm_h / rho + RTOL * L / rho


def test_qofmu_smoothness_grows_like_rho():
    """Q-OFMU in R^6 with a rank-3 A: H_out = B, M = A²; L_ρ/ρ → 2λ_max(A²) within ‖B‖/ρ."""
    rng = np.random.default_rng(1)
    A = _spd(rng, 6, 0.5)
    w, V = np.linalg.eigh(A)
    A = V[:, 3:] @ np.diag(w[3:]) @ V[:, 3:].T
    _check_growth(_spd(rng, 6, 0.5), A @ A)


def test_p3_smoothness_grows_like_rho():
    """P3 stationarity penalty in z = (x, y): H_out = diag(H, I), M = GᵀG with G = [Cᵀ Q]."""
    rng = np.random.default_rng(2)
    Q, C, a, t, H = _spd(rng, 4, 1.0), rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal(4), \
        _spd(rng, 3, 0.5)
    P, _, G, _, W = p3_quadratic_data(Q, C, a, t, H, "stationarity")
    _check_growth(P, G.T @ (W / 2) @ G)


def test_next_order_term_is_rayleigh_quotient():
    """L_ρ − 2ρλ_max(M) → vᵀH_out v (v the top eigenvector of M, simple eigenvalue), error O(1/ρ)."""
    rng = np.random.default_rng(3)
    Hm, M = _spd(rng, 4, 0.2), _spd(rng, 4, 0.0)
    lam, V = np.linalg.eigh(M)
    v = V[:, -1]
    gaps = [abs(penalized_smoothness_np(Hm, M, r) - 2 * r * lam[-1] - v @ Hm @ v) for r in (1e2, 1e3)]
    assert gaps[1] <= 0.2 * gaps[0]


def test_qofmu_hessian_matches_finite_differences():
    """The lambdified Hessian equals central differences of the hand-written gradient B(θ−b) + 2ρA²(θ−a)."""
    rng = np.random.default_rng(4)
    A, B = _spd(rng, 2, 0.5), _spd(rng, 2, 0.5)
    a, b, theta, rho = rng.standard_normal(2), rng.standard_normal(2), rng.standard_normal(2), 3.0

    def grad(th):
        return B @ (th - b) + 2 * rho * A @ A @ (th - a)

    fd = np.column_stack([(grad(theta + 1e-4 * e) - grad(theta - 1e-4 * e)) / 2e-4 for e in np.eye(2)])
    got = qofmu_penalized_hessian(2).numeric(A[0, 0], A[0, 1], A[1, 1], B[0, 0], B[0, 1], B[1, 1], rho)
    np.testing.assert_allclose(got, fd, rtol=1e-9)  # the gradient is affine: differences are exact up to rounding

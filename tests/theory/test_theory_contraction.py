"""T inner gradient steps with step 1/L contract the error by (1 − μ/L)^T (OFMU_SPEC.md §3)."""

from __future__ import annotations

import numpy as np
import sympy as sp

from theory.contraction import LAM, MU, L, contraction_factor, gd_error_after_steps, gd_error_np, gd_step_map

RTOL = 4 * np.sqrt(np.finfo(np.float64).eps)


def _spd_spectrum(rng: np.random.Generator, eigs: np.ndarray) -> np.ndarray:
    U = np.linalg.qr(rng.standard_normal((eigs.size, eigs.size)))[0]
    return U @ np.diag(eigs) @ U.T


def test_step_map_identity(assert_zero):
    """The Jacobian of z ↦ z − ∇q(z)/L is I − A/L."""
    assert_zero(*gd_step_map().identity())


def test_error_after_T_steps_identity(assert_zero):
    """(I − A/L)^T e0 = ((1−μ/L)^T e1, (1−λ/L)^T e2, 0) in the eigenbasis, T symbolic."""
    assert_zero(*gd_error_after_steps().identity())


def test_bound_is_exact_along_mu_direction(assert_zero):
    """For e0 = (e1, 0, 0): ‖e_T‖² = (1 − μ/L)^{2T} e1² (the bound is attained)."""
    d = gd_error_after_steps()
    e1, e2, e3 = d.args[3]
    e_t = d.expr.subs({e2: 0, e3: 0})
    assert_zero(e_t.dot(e_t), contraction_factor().expr ** 2 * e1**2)


def test_intermediate_factor_is_dominated():
    """0 ≤ 1 − λ/L ≤ 1 − μ/L for μ ≤ λ ≤ L: the gap (1−μ/L) − (1−λ/L) simplifies to (λ − μ)/L."""
    assert sp.simplify((1 - MU / L) - (1 - LAM / L) - (LAM - MU) / L) == 0


def test_lambdified_error_matches_iteration():
    """The symbolic e_T (lambdified) equals T explicit gradient steps on diag(μ, λ, L)."""
    d = gd_error_after_steps()
    e0 = np.array([1.0, -2.0, 0.5])
    for steps in (1, 5, 17):
        np.testing.assert_allclose(d.numeric(0.3, 1.1, 4.0, e0, steps),
                                   gd_error_np(np.diag([0.3, 1.1, 4.0]), e0, 4.0, steps), rtol=RTOL * steps, atol=0)


def test_quadratic_error_bounded_and_attained():
    """Random SPD A in R^6 (μ = 0.2, L = 5): ‖e_T‖ ≤ (1 − μ/L)^T‖e0‖ for T ≤ 60, with equality (to rounding)
    along the μ-eigenvector."""
    rng = np.random.default_rng(0)
    eigs = np.array([0.2, 0.7, 1.3, 2.2, 3.9, 5.0])
    A = _spd_spectrum(rng, eigs)
    mu, Ls = eigs[0], eigs[-1]
    factor = contraction_factor().numeric
    v_mu = np.linalg.eigh(A)[1][:, 0]
    e0 = rng.standard_normal(6)
    for steps in (0, 1, 10, 60):
        bound = factor(mu, Ls, steps)
        assert np.linalg.norm(gd_error_np(A, e0, Ls, steps)) <= bound * np.linalg.norm(e0) * (1 + RTOL * (steps + 1))
        np.testing.assert_allclose(np.linalg.norm(gd_error_np(A, v_mu, Ls, steps)), bound, rtol=RTOL * (steps + 1))


def test_non_quadratic_strongly_convex_contracts():
    """C² objective ½zᵀAz + Σ log cosh(z − c), μ = λ_min(A), L = λ_max(A) + 1 (sech² ≤ 1): GD with step 1/L
    contracts the distance to the minimizer by at least (1 − μ/L) per step (assumption A10)."""
    rng = np.random.default_rng(1)
    A = _spd_spectrum(rng, np.array([0.5, 1.0, 2.0, 3.0]))
    c = rng.standard_normal(4)
    mu, Ls = 0.5, 3.0 + 1.0

    def grad(z):
        return A @ z + np.tanh(z - c)

    z_star = np.zeros(4)
    for _ in range(50):  # Newton's method to the float floor
        z_star = z_star - np.linalg.solve(A + np.diag(1 / np.cosh(z_star - c) ** 2), grad(z_star))
    assert np.linalg.norm(grad(z_star)) < 1e-13
    z = rng.standard_normal(4) * 3
    d0 = np.linalg.norm(z - z_star)
    for steps in range(1, 41):
        z = z - grad(z) / Ls
        assert np.linalg.norm(z - z_star) <= contraction_factor().numeric(mu, Ls, steps) * d0 + 1e-13

"""The paper's rate bounds and Eq. 35 (OFMU_SPEC.md §3)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import minimize_scalar

from theory.bounds import (
    C1,
    C2,
    K,
    T,
    convex_bound_in_budget,
    convex_bound_minimum,
    convex_bound_optimal_K,
    eq35_bound,
    eq35_sides_np,
    eq35_slack,
    nonconvex_bound,
    nonconvex_bound_in_budget,
    parallelogram_slack,
)
from theory.closed_forms import qofmu_penalized_minimizer_np

RTOL = 4 * np.sqrt(np.finfo(np.float64).eps)


@pytest.mark.parametrize(
    "fn",
    [convex_bound_optimal_K, convex_bound_minimum, convex_bound_in_budget, nonconvex_bound,
     nonconvex_bound_in_budget, parallelogram_slack, eq35_slack],
)
def test_identity(fn, assert_zero):
    """K* = T·sqrt(C1/C2); E(K*) = 2sqrt(C1C2)/T; 2C1^¾C2^¼/sqrt(N); floor C3σ²; 2sqrt(C1C2/N) + C3σ²;
    2‖a‖² + 2‖b‖² − ‖a+b‖² = ‖a−b‖²; Eq. 35's slack = ‖g − 2ρv‖²."""
    assert_zero(*fn().identity())


def test_optimal_K_is_a_minimum():
    """∂²E/∂K² = 2C1/K³ > 0 at K* (positive symbols): K* is the global minimizer on K > 0."""
    E = C1 / K + C2 * K / T**2
    second = sp.simplify(sp.diff(E, K, 2).subs(K, convex_bound_optimal_K().expr))
    assert second.is_positive


def test_optimal_K_matches_numeric_minimization():
    """K* and E(K*) agree with a bounded scalar minimization, and K* doubles when T doubles (K* ∝ T)."""
    c1, c2 = 3.0, 0.7
    kstar = convex_bound_optimal_K().numeric
    for t in (10.0, 100.0):
        res = minimize_scalar(lambda k, t=t: c1 / k + c2 * k / t**2, bounds=(1e-3, 1e5), method="bounded",
                              options={"xatol": 1e-10})
        np.testing.assert_allclose(kstar(c1, c2, t), res.x, rtol=1e-6)  # the optimizer's own tolerance
        np.testing.assert_allclose(convex_bound_minimum().numeric(c1, c2, t), res.fun, rtol=1e-10)
    np.testing.assert_allclose(kstar(c1, c2, 20.0), 2 * kstar(c1, c2, 10.0), rtol=RTOL)


def test_budget_form_matches_direct_evaluation():
    """With N = K*·T inner steps, the minimal convex bound is 2C1^¾C2^¼/sqrt(N)."""
    c1, c2, t = 2.0, 0.5, 40.0
    n = convex_bound_optimal_K().numeric(c1, c2, t) * t
    np.testing.assert_allclose(convex_bound_in_budget().numeric(c1, c2, n), convex_bound_minimum().numeric(c1, c2, t),
                               rtol=RTOL)


def test_nonconvex_bound_has_a_floor():
    """The non-convex bound stays above C3σ² for every K, T."""
    b = nonconvex_bound().numeric
    for k, t in ((10, 10), (1e6, 1e6)):
        assert b(1.0, 1.0, 2.0, 0.1, k, t) > 0.2
    np.testing.assert_allclose(b(1.0, 1.0, 2.0, 0.1, 1e12, 1e12), 0.2, rtol=1e-10)


def test_eq35_chain_holds_at_random_points():
    """lhs ≤ middle ≤ rhs at random (∇L_r, symmetric ∇²Φ, ∇Φ, ρ), with the default (tightest) bounds."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        g, gp = rng.standard_normal(5), rng.standard_normal(5)
        M = rng.standard_normal((5, 5))
        s = eq35_sides_np(g, M + M.T, gp, float(rng.uniform(0.01, 100)))
        assert s.lhs <= s.middle * (1 + RTOL)
        assert s.middle <= s.rhs * (1 + RTOL)


def test_eq35_first_step_is_tight_when_terms_agree():
    """Equality in ‖a+b‖² ≤ 2‖a‖² + 2‖b‖² iff a = b: with ∇L_r = 2ρ∇²Φ∇Φ, lhs = middle."""
    Hm, gp, rho = np.diag([2.0, 1.0]), np.array([0.5, -1.0]), 3.0
    s = eq35_sides_np(2 * rho * Hm @ gp, Hm, gp, rho)
    np.testing.assert_allclose(s.lhs, s.middle, rtol=RTOL)


def test_eq35_symbolic_rhs_matches_numeric_checker():
    """eq35_bound's lambdified 2G_r² + 8ρ²H²‖∇Φ‖² equals the checker's rhs."""
    g, Hm, gp = np.array([1.0, -2.0]), np.array([[1.0, 0.5], [0.5, 3.0]]), np.array([0.2, 0.1])
    s = eq35_sides_np(g, Hm, gp, 4.0, G_r=3.0, H=5.0)
    np.testing.assert_allclose(eq35_bound().numeric(3.0, 5.0, 4.0, np.linalg.norm(gp)), s.rhs, rtol=RTOL)


def test_eq35_rejects_bounds_below_the_point_values():
    with pytest.raises(ValueError, match="G_r"):
        eq35_sides_np(np.array([3.0, 4.0]), np.eye(2), np.ones(2), 1.0, G_r=1.0)


def test_eq35_floor_does_not_vanish():
    """On Q-OFMU (A ≻ 0) at the penalized minimizer θ(ρ), ∇F = 0 (lhs ≈ 0), while Eq. 35's rhs tends to
    2‖B(a − b)‖² + 2H²‖A⁻¹B(b − a)‖² > 0 (both terms stay Θ(1): ρ‖∇Φ‖ → ½‖A⁻¹B(b − a)‖)."""
    rng = np.random.default_rng(1)
    n = 4
    M1, M2 = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    A, B = M1 @ M1.T / n + 0.5 * np.eye(n), M2 @ M2.T / n + 0.5 * np.eye(n)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    Hn = np.linalg.norm(A, 2)
    limit = 2 * np.sum((B @ (a - b)) ** 2) + 2 * Hn**2 * np.sum(np.linalg.solve(A, B @ (b - a)) ** 2)
    for rho in (1e2, 1e4, 1e6):
        th = qofmu_penalized_minimizer_np(A, B, a, b, rho)
        grad_lr, grad_phi = B @ (th - b), -A @ (th - a)
        s = eq35_sides_np(grad_lr, -A, grad_phi, rho)
        # ∇F(θ(ρ)) = 0 up to the residual of a backward-stable solve with ‖B + 2ρA²‖ = O(ρ): O(ρ·eps)
        assert np.sqrt(s.lhs) <= 1e3 * rho * np.finfo(np.float64).eps * max(1.0, np.sqrt(s.rhs))
        assert s.rhs >= 0.5 * limit
    np.testing.assert_allclose(s.rhs, limit, rtol=1e-4)  # O(1/ρ) convergence at ρ = 1e6

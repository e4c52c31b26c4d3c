"""∇F = ∇L_r + 2ρ∇²Φ∇Φ and ∇²F (OFMU_SPEC.md §1, paper Eq. 7)."""

from __future__ import annotations

import numpy as np
import pytest

from theory.penalty import (
    PENALTY_KINDS,
    penalized_hessian_generic,
    penalized_objective,
    penalty_gradient,
    penalty_gradient_generic,
)

RTOL = 4 * np.sqrt(np.finfo(np.float64).eps)
H = 1e-6
FD_TOL = 1e-6  # central differences of F (values up to ~1e2 at ρ = 2): rounding ~1e2·eps/H ≈ 2e-8


def test_generic_gradient_identity(assert_zero):
    """For undefined smooth Φ, L_r of θ ∈ R²: ∇(L_r + ρ‖∇Φ‖²) = ∇L_r + 2ρ∇²Φ∇Φ."""
    assert_zero(*penalty_gradient_generic().identity())


def test_generic_hessian_identity(assert_zero):
    """∇²F = ∇²L_r + 2ρ(∇²Φ)² + 2ρ∇³Φ[∇Φ] for undefined smooth Φ, L_r."""
    assert_zero(*penalized_hessian_generic().identity())


def test_concrete_gradient_identity_polynomial(assert_zero):
    """The identity on the polynomial example losses (Φ = L_f, the β = 0 ablation)."""
    assert_zero(*penalty_gradient("none").identity())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["signed", "abs", "squared"])
def test_concrete_gradient_identity_with_similarity(kind, assert_zero, slow_enabled):
    """The identity with Φ = L_f − β·sim (5–20 s each)."""
    assert_zero(*penalty_gradient(kind).identity())


@pytest.mark.parametrize("kind", ["none", "signed"])
def test_gradient_matches_finite_differences(kind):
    """The lambdified ∇L_r + 2ρ∇²Φ∇Φ matches central differences of the lambdified F."""
    grad, obj = penalty_gradient(kind), penalized_objective(kind)
    for theta in (np.array([0.3, -0.2]), np.array([-0.8, 1.1])):
        for beta, rho in ((0.5, 2.0), (1.5, 0.1)):
            fd = np.array([
                (obj.numeric(theta + H * e, beta, rho) - obj.numeric(theta - H * e, beta, rho)) / (2 * H)
                for e in np.eye(2)
            ])
            np.testing.assert_allclose(grad.numeric_rhs(theta, beta, rho), fd, rtol=0, atol=FD_TOL)
            np.testing.assert_allclose(grad.numeric(theta, beta, rho), grad.numeric_rhs(theta, beta, rho),
                                       rtol=RTOL, atol=RTOL)


def test_gradient_is_affine_in_rho():
    """∇F is affine in ρ: ∇F(ρ) − ∇L_r = ρ·(∇F(1) − ∇L_r) (the penalty enters linearly)."""
    d = penalty_gradient("none")
    theta = np.array([0.5, 0.25])
    base = d.numeric(theta, 0.0, 0.0)
    np.testing.assert_allclose(d.numeric(theta, 0.0, 7.0) - base, 7.0 * (d.numeric(theta, 0.0, 1.0) - base),
                               rtol=RTOL)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind"):
        penalty_gradient("cos")
    assert "none" in PENALTY_KINDS

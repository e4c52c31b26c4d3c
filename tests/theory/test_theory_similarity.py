"""Similarity-term derivatives (OFMU_SPEC.md §1): symbolic identities, finite differences, closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from theory.similarity import (
    KINDS,
    cosine_theta_gradient,
    similarity_hessian,
    similarity_partials,
    similarity_value,
)

RTOL = 4 * np.sqrt(np.finfo(np.float64).eps)
# Central differences with step H: truncation O(H²·|f'''|) ≈ 1e-12, rounding O(eps/H) ≈ 2e-10 for O(1) values;
# FD_TOL leaves three orders of margin.
H = 1e-6
FD_TOL = 1e-7


def _sim_np(kind: str, a: np.ndarray, b: np.ndarray, eps: float) -> float:
    c = float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b) + eps)
    return {"signed": c, "abs": abs(c), "squared": c * c}[kind]


def _fd_grad(f, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = H
        out[i] = (f(x + e) - f(x - e)) / (2 * H)
    return out


def _example_grads_np(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """∇L_f, ∇L_r of theory.similarity.example_losses, typed by hand (independent of sympy)."""
    t1, t2 = theta
    return np.array([2 * t1 + t2, t1 - 2 + t2]), np.array([t1 - 1 + t2, t1 + t2**2])


@pytest.mark.parametrize("kind", KINDS)
def test_partials_identity_symbolic(kind, assert_zero):
    """sympy.diff of s(a, b) equals the closed form φ'(c)(b/D − p‖b‖a/(‖a‖D²); ...) with eps symbolic."""
    assert_zero(*similarity_partials(kind, 2).identity())


def test_partials_identity_symbolic_dim3_signed(assert_zero):
    """The same identity in dimension 3 for the paper's kind."""
    assert_zero(*similarity_partials("signed", 3).identity())


@pytest.mark.parametrize("eps", [0.0, 0.3])
@pytest.mark.parametrize("kind", KINDS)
def test_partials_match_finite_differences(kind, eps):
    """The lambdified ∂s/∂(a, b) matches central differences of an independent numpy similarity."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(3), rng.standard_normal(3)
    got = similarity_partials(kind, 3).numeric(a, b, eps)
    z = np.concatenate([a, b])
    want = _fd_grad(lambda v: _sim_np(kind, v[:3], v[3:], eps), z)
    np.testing.assert_allclose(got, want, rtol=0, atol=FD_TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_closed_form_any_dimension_matches_lambdified(kind):
    """The dimension-free closed form (numeric_rhs) equals the lambdified sympy derivative (dim 3)."""
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(3), rng.standard_normal(3)
    d = similarity_partials(kind, 3)
    ga, gb = d.numeric_rhs(a, b, 0.05)
    np.testing.assert_allclose(np.concatenate([ga, gb]), d.numeric(a, b, 0.05), rtol=RTOL, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_closed_form_dimension_7_matches_finite_differences(kind):
    """In dimension 7 (no symbolic form) the closed form still matches central differences."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(7), rng.standard_normal(7)
    ga, gb = similarity_partials(kind, 2).numeric_rhs(a, b, 1e-3)
    want = _fd_grad(lambda v: _sim_np(kind, v[:7], v[7:], 1e-3), np.concatenate([a, b]))
    np.testing.assert_allclose(np.concatenate([ga, gb]), want, rtol=0, atol=FD_TOL)


def test_value_matches_numpy():
    """similarity_value's lambdified form equals the numpy similarity for every kind."""
    a, b = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.4, -1.0])
    for kind in KINDS:
        got = similarity_value(kind, 3).numeric(a, b, 0.1)
        np.testing.assert_allclose(got, _sim_np(kind, a, b, 0.1), rtol=RTOL)


@pytest.mark.parametrize("kind", KINDS)
def test_hessian_matches_finite_differences_of_partials(kind):
    """similarity_hessian is the Jacobian of the closed-form partials and is symmetric."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(2), rng.standard_normal(2)
    hess = similarity_hessian(kind, 2).numeric(a, b, 0.2)
    closed = similarity_partials(kind, 2).numeric_rhs

    def partials(v):
        ga, gb = closed(v[:2], v[2:], 0.2)
        return np.concatenate([ga, gb])

    z = np.concatenate([a, b])
    fd = np.column_stack([(partials(z + H * e) - partials(z - H * e)) / (2 * H) for e in np.eye(4)])
    np.testing.assert_allclose(hess, fd, rtol=0, atol=FD_TOL)
    np.testing.assert_allclose(hess, hess.T, rtol=RTOL, atol=RTOL)


def test_theta_gradient_identity_spec_form(assert_zero):
    """∇_θ c = H_f u_f + H_r u_r with u_f = (ĝ_r − c ĝ_f)/‖g_f‖, u_r = (ĝ_f − c ĝ_r)/‖g_r‖ (eps = 0)."""
    assert_zero(*cosine_theta_gradient("signed", "zero").identity())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "eps"),
    [("signed", "symbolic"), ("abs", "zero"), ("abs", "symbolic"), ("squared", "zero"), ("squared", "symbolic")],
)
def test_theta_gradient_identity_other_kinds(kind, eps, assert_zero, slow_enabled):
    """∇_θ φ(c) = φ'(c)(H_f ∂c/∂a + H_r ∂c/∂b) for every kind and eps mode (2–4 s each; the default run
    covers them through the (a, b)-level identities plus the chain-rule check above)."""
    assert_zero(*cosine_theta_gradient(kind, eps).identity())


@pytest.mark.parametrize("kind", KINDS)
def test_theta_gradient_matches_finite_differences(kind):
    """The spec's formula φ'(c)(H_f u_f + H_r u_r), lambdified, matches central differences of
    θ ↦ s(∇L_f(θ), ∇L_r(θ)) computed with hand-written numpy gradients."""
    d = cosine_theta_gradient(kind, "zero")
    for theta in (np.array([0.3, -0.2]), np.array([-1.1, 0.7]), np.array([2.0, 1.5])):
        want = _fd_grad(lambda t: _sim_np(kind, *_example_grads_np(t), 0.0), theta)
        np.testing.assert_allclose(d.numeric_rhs(theta), want, rtol=0, atol=FD_TOL)
        np.testing.assert_allclose(d.numeric(theta), d.numeric_rhs(theta), rtol=RTOL, atol=RTOL)


def test_theta_gradient_eps_form_matches_finite_differences():
    """With eps > 0 the chain-rule form (eps partials) matches central differences."""
    d = cosine_theta_gradient("signed", "symbolic")
    theta = np.array([0.4, -0.9])
    want = _fd_grad(lambda t: _sim_np("signed", *_example_grads_np(t), 0.25), theta)
    np.testing.assert_allclose(d.numeric_rhs(theta, 0.25), want, rtol=0, atol=FD_TOL)


def test_abs_partials_are_sign_times_signed():
    """∂|c| = sign(c)·∂c numerically, for both signs of c."""
    signed, absd = similarity_partials("signed", 3), similarity_partials("abs", 3)
    a = np.array([1.0, 0.5, -0.2])
    for b in (np.array([0.7, 0.1, 0.3]), np.array([-0.7, -0.1, 0.3])):
        c = _sim_np("signed", a, b, 0.0)
        np.testing.assert_allclose(absd.numeric(a, b, 0.0), np.sign(c) * signed.numeric(a, b, 0.0), rtol=RTOL)


def test_signed_cosine_partials_vanish_only_at_antialignment_or_alignment():
    """For kind signed, ∂c/∂a = 0 exactly when a ∥ b (c = ±1): maximizing −c ends at anti-alignment, not
    orthogonality; for squared, the partials also vanish at c = 0 (orthogonality is stationary)."""
    b = np.array([1.0, 2.0, -1.0])
    signed, squared = similarity_partials("signed", 3), similarity_partials("squared", 3)
    assert np.max(np.abs(signed.numeric(-2.0 * b, b, 0.0))) < 1e-15
    orth = np.array([2.0, -1.0, 0.0])
    assert abs(orth @ b) == 0.0
    assert np.max(np.abs(signed.numeric(orth, b, 0.0))) > 0.1
    assert np.max(np.abs(squared.numeric(orth, b, 0.0))) == 0.0


def test_unknown_kind_raises():
    """Eager validation names the argument."""
    with pytest.raises(ValueError, match="kind"):
        similarity_partials("cosine", 2)
    with pytest.raises(ValueError, match="eps"):
        cosine_theta_gradient("signed", "tiny")

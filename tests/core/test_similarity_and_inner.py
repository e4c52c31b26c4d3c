"""The similarity term and the composed inner objective against finite differences."""

import numpy as np
import pytest

from ofmu_opt.backends import NumpySpace
from ofmu_opt.core import ComposedInner, InnerSpec, similarity_and_grad, similarity_jvp
from ofmu_opt.errors import ConfigError
from ofmu_opt.problem import BilevelProblem, FunctionObjective
from ofmu_opt.reference import get_reference

SP = NumpySpace()
KINDS = ["signed", "abs", "squared"]
EPS64 = np.finfo(np.float64).eps


def _fd_grad(fun, v, h=1e-6):
    g = np.zeros_like(v)
    for i in range(v.size):
        e = np.zeros_like(v)
        e[i] = h
        g[i] = (fun(v + e) - fun(v - e)) / (2 * h)
    return g


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_similarity_gradient_matches_finite_differences(kind, eps):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(4), rng.standard_normal(4)
    _, ga, gb = similarity_and_grad(SP, a, b, kind, eps)
    np.testing.assert_allclose(ga, _fd_grad(lambda v: similarity_and_grad(SP, v, b, kind, eps)[0], a), atol=1e-8)
    np.testing.assert_allclose(gb, _fd_grad(lambda v: similarity_and_grad(SP, a, v, kind, eps)[0], b), atol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_similarity_jvp_matches_finite_differences_of_the_gradient(kind):
    rng = np.random.default_rng(2)
    a, b, da, db = (rng.standard_normal(4) for _ in range(4))
    h = 1e-6
    jva, jvb = similarity_jvp(SP, a, b, da, db, kind, 1e-4)
    _, pa, pb = similarity_and_grad(SP, a + h * da, b + h * db, kind, 1e-4)
    _, ma, mb = similarity_and_grad(SP, a - h * da, b - h * db, kind, 1e-4)
    np.testing.assert_allclose(jva, (pa - ma) / (2 * h), atol=1e-7)
    np.testing.assert_allclose(jvb, (pb - mb) / (2 * h), atol=1e-7)


def test_closed_form_identity_unit_vectors():
    # c(a, b) with eps = 0 equals the cosine, and the gradient equals (b̂ - c â)/|a|
    a, b = np.array([3.0, 4.0, 0.0]), np.array([1.0, 0.0, 1.0])
    c, ga, _ = similarity_and_grad(SP, a, b, "signed", 0.0)
    ah, bh = a / np.linalg.norm(a), b / np.linalg.norm(b)
    assert c == pytest.approx(ah @ bh, rel=4 * np.sqrt(EPS64))
    np.testing.assert_allclose(ga, (bh - c * ah) / np.linalg.norm(a), rtol=4 * np.sqrt(EPS64))


@pytest.mark.parametrize("kind", KINDS)
def test_zero_gradient_is_safe(kind):
    z, b = np.zeros(3), np.array([1.0, 2.0, 3.0])
    for args in ((z, b), (b, z), (z, z)):
        s, ga, gb = similarity_and_grad(SP, *args, kind, 1e-8)
        assert np.isfinite(s) and np.all(np.isfinite(ga)) and np.all(np.isfinite(gb))
        jva, jvb = similarity_jvp(SP, *args, b, b, kind, 1e-8)
        assert np.all(np.isfinite(jva)) and np.all(np.isfinite(jvb))


def _cubic_problem():
    """A non-quadratic problem with third derivatives, to test the exact HVP's tvp terms."""
    rng = np.random.default_rng(5)
    A = rng.standard_normal((3, 3))
    w = rng.standard_normal(3)

    def g_val(x, y, _b):
        return float(-0.5 * np.sum((A @ y) ** 2) + (w @ y) ** 3 / 6 + np.sum(np.sin(y)))

    def g_grad(x, y, _b):
        return None, -A.T @ A @ y + 0.5 * (w @ y) ** 2 * w + np.cos(y)

    def g_hvp(x, y, v, _b):
        return None, -A.T @ A @ v + (w @ y) * (w @ v) * w - np.sin(y) * v

    def g_tvp(x, y, u, v, _b):  # ∇_y (uᵀ H(y) v)
        return None, (w @ u) * (w @ v) * w - np.cos(y) * u * v

    B = np.diag([1.0, 2.0, 3.0])
    t = np.array([0.3, -0.2, 0.5])
    f = FunctionObjective(
        lambda x, y, _b: float(0.5 * (y - t) @ B @ (y - t) + np.sum(y**4) / 12),
        lambda x, y, _b: (None, B @ (y - t) + y**3 / 3),
        lambda x, y, v, _b: (None, B @ v + y**2 * v),
        lambda x, y, u, v, _b: (None, 2 * y * u * v),
    )
    g = FunctionObjective(g_val, g_grad, g_hvp, g_tvp)
    return BilevelProblem(f, g, SP, "max", has_x=False, name="cubic")


@pytest.mark.parametrize("kind", KINDS)
def test_inner_gradient_and_exact_hvp_match_finite_differences(kind):
    prob = _cubic_problem()
    inner = ComposedInner(prob, InnerSpec(kind, 0.7, 1e-8, "exact", 1e-6, prob.sign))
    y = np.array([0.4, -0.3, 0.8])
    _, gy = inner.grad(None, y)
    np.testing.assert_allclose(gy, _fd_grad(lambda v: inner.value(None, v), y), rtol=1e-6, atol=1e-7)
    v = np.array([0.2, 0.5, -0.1])
    _, hv = inner.hvp(None, y, v)
    h = 1e-5
    fd = (inner.grad(None, y + h * v)[1] - inner.grad(None, y - h * v)[1]) / (2 * h)
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-7)
    fd_mode = ComposedInner(prob, InnerSpec(kind, 0.7, 1e-8, "finite_difference", 1e-6, prob.sign))
    np.testing.assert_allclose(fd_mode.hvp(None, y, v)[1], hv, rtol=1e-5, atol=1e-6)


def test_forget_hessian_mode_drops_the_similarity_curvature():
    prob = _cubic_problem()
    inner = ComposedInner(prob, InnerSpec("signed", 0.7, 1e-8, "forget_hessian", 1e-6, prob.sign))
    y, v = np.array([0.4, -0.3, 0.8]), np.array([0.2, 0.5, -0.1])
    np.testing.assert_allclose(inner.hvp(None, y, v)[1], -prob.inner.hvp(None, y, v)[1])


def test_exact_hvp_without_third_derivatives_is_a_config_error():
    f = FunctionObjective(lambda x, y, b: float(y @ y), lambda x, y, b: (None, 2 * y))
    prob = BilevelProblem(f, f, SP, "max", has_x=False)
    with pytest.raises(ConfigError, match="third derivatives"):
        ComposedInner(prob, InnerSpec("signed", 0.5, 1e-8, "exact", 1e-6, -1.0))


def test_inner_with_x_matches_finite_differences_in_both_blocks():
    ref = get_reference("P3")
    inner = ComposedInner(ref.problem, InnerSpec("squared", 0.4, 1e-8, "exact", 1e-6, 1.0))
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal(3), rng.standard_normal(5)
    gx, gy = inner.grad(x, y)
    np.testing.assert_allclose(gx, _fd_grad(lambda v: inner.value(v, y), x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gy, _fd_grad(lambda v: inner.value(x, v), y), rtol=1e-6, atol=1e-7)
    v = rng.standard_normal(5)
    hx, hy = inner.hvp(x, y, v)
    h = 1e-5
    gp, gm = inner.grad(x, y + h * v), inner.grad(x, y - h * v)
    np.testing.assert_allclose(hx, (gp[0] - gm[0]) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(hy, (gp[1] - gm[1]) / (2 * h), rtol=1e-6, atol=1e-7)

"""The package's numerics against the symbolic derivations (STYLE.md convention 13)."""

from __future__ import annotations

import numpy as np
import pytest

from theory.closed_forms import p3_penalized_minimizer_np, p3_solution_np, qofmu_solution_np
from theory.similarity import KINDS, similarity_hessian, similarity_partials, similarity_value

RTOL = 4 * np.sqrt(np.finfo(np.float64).eps)

similarity = pytest.importorskip("ofmu_opt.core.similarity")
numpy_backend = pytest.importorskip("ofmu_opt.backends.numpy_backend")


@pytest.mark.parametrize("eps", [0.0, 1e-3])
@pytest.mark.parametrize("kind", KINDS)
def test_similarity_value_and_grad_match_symbolic(kind, eps):
    """ofmu_opt.core.similarity.similarity_and_grad equals the lambdified sympy value and ∂s/∂(a, b)."""
    space = numpy_backend.NumpySpace()
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.standard_normal(3), rng.standard_normal(3)
        s, ga, gb = similarity.similarity_and_grad(space, a, b, kind, eps)
        np.testing.assert_allclose(s, similarity_value(kind, 3).numeric(a, b, eps), rtol=RTOL, atol=0)
        want = similarity_partials(kind, 3).numeric(a, b, eps)
        np.testing.assert_allclose(np.concatenate([ga, gb]), want, rtol=RTOL, atol=RTOL * np.abs(want).max())


@pytest.mark.parametrize("kind", KINDS)
def test_similarity_jvp_matches_symbolic_hessian(kind):
    """ofmu_opt.core.similarity.similarity_jvp equals the sympy Hessian of s in (a, b) times (da, db)."""
    space = numpy_backend.NumpySpace()
    rng = np.random.default_rng(1)
    for eps in (0.0, 0.05):
        a, b, da, db = (rng.standard_normal(2) for _ in range(4))
        ja, jb = similarity.similarity_jvp(space, a, b, da, db, kind, eps)
        want = similarity_hessian(kind, 2).numeric(a, b, eps) @ np.concatenate([da, db])
        np.testing.assert_allclose(np.concatenate([ja, jb]), want, rtol=RTOL, atol=RTOL * np.abs(want).max())


def test_reference_qofmu_solution_matches_closed_form():
    """ofmu_opt.reference's QOFMU y* (L_f = −½θᵀAθ + dᵀθ, A rank 3) equals θ* = argmin L_r over a + null(A)
    with a = A⁺d."""
    problems = pytest.importorskip("ofmu_opt.reference.problems")
    ref = problems.get_reference("QOFMU")
    A, d, B, b = (ref.data[k] for k in ("A", "d", "B", "b"))
    got = qofmu_solution_np(A, B, np.linalg.pinv(A) @ d, b)
    np.testing.assert_allclose(got, ref.y_star, rtol=RTOL, atol=RTOL * np.linalg.norm(ref.y_star))


def test_reference_p3_and_p9_match_closed_forms():
    """ofmu_opt.reference's P3 solution and P9 (value-gap penalized minimizer at its ρ) equal the closed forms."""
    problems = pytest.importorskip("ofmu_opt.reference.problems")
    p3 = problems.get_reference("P3")
    Q, C, a, t, H = (p3.data[k] for k in ("Q", "C", "a", "t", "H"))
    x, y = p3_solution_np(Q, C, a, t, H)
    np.testing.assert_allclose(np.concatenate([x, y]), np.concatenate([p3.x_star, p3.y_star]), rtol=RTOL, atol=RTOL)
    p9 = problems.get_reference("P9")
    Q, C, a, t, H = (p9.data[k] for k in ("Q", "C", "a", "t", "H"))
    x, y = p3_penalized_minimizer_np(Q, C, a, t, H, p9.penalty, "value_gap")
    np.testing.assert_allclose(np.concatenate([x, y]), np.concatenate([p9.x_star, p9.y_star]), rtol=RTOL, atol=RTOL)

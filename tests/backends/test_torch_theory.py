"""Torch autodiff against the sympy derivations of theory/: ∇ of the similarity term through θ and the
exact outer gradient ∇F = ∇L_r + 2ρ∇²Φ∇Φ on the concrete losses of theory.similarity.example_losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ofmu_opt.backends.torch_autodiff import AutodiffInner
from ofmu_opt.core.inner import InnerSpec

theory_sim = pytest.importorskip("theory.similarity")
theory_pen = pytest.importorskip("theory.penalty")

D = torch.float64
RTOL = 4 * np.sqrt(np.finfo(np.float64).eps)


def l_f(x: object, th: torch.Tensor, b: object) -> torch.Tensor:  # the same formulas as example_losses()
    t1, t2 = th[0], th[1]
    return t1**2 + t1 * t2 - 2 * t2 + t2**2 / 2


def l_r(x: object, th: torch.Tensor, b: object) -> torch.Tensor:
    t1, t2 = th[0], th[1]
    return (t1 - 1) ** 2 / 2 + t1 * t2 + t2**3 / 3


def _grad_lr(t: torch.Tensor) -> torch.Tensor:
    return torch.func.grad(lambda z: l_r(None, z, None))(t)


THETAS = [np.array([0.3, -0.2]), np.array([-0.7, 1.1]), np.array([1.5, 0.4])]


@pytest.mark.parametrize("kind", ["signed", "abs", "squared"])
@pytest.mark.parametrize("autodiff", ["double_backward", "forward_over_reverse"])
def test_similarity_gradient_through_theta_matches_theory(kind: str, autodiff: str) -> None:
    d = theory_sim.cosine_theta_gradient(kind, "symbolic")
    eps = 1e-3
    # minimization form with sense "max": φ = −L_f + β·sim(∇L_f, ∇L_r); with β = 1, ∇sim = ∇φ + ∇L_f
    phi = AutodiffInner(l_r, l_f, InnerSpec(kind, 1.0, eps, "exact", 1e-6, -1.0), has_x=False, autodiff=autodiff)
    for th in THETAS:
        t = torch.tensor(th, dtype=D)
        got = phi.grad(None, t)[1] + phi.g.grad(None, t)[1]
        np.testing.assert_allclose(got.numpy(), np.asarray(d.numeric(th, eps), dtype=float).ravel(), rtol=RTOL,
                                   atol=1e-12)


@pytest.mark.parametrize("kind", ["none", "signed"])
def test_exact_outer_gradient_matches_theory(kind: str) -> None:
    d = theory_pen.penalty_gradient(kind)
    beta, rho = 0.5, 3.0
    phi = AutodiffInner(l_r, l_f, InnerSpec("signed" if kind == "none" else kind, 0.0 if kind == "none" else beta,
                                            0.0, "exact", 1e-6, -1.0), has_x=False)
    for th in THETAS:
        t = torch.tensor(th, dtype=D)
        v = phi.grad(None, t)[1]
        # ∇F = ∇L_r + 2ρ∇²φ∇φ (φ = −Φ in minimization form, so ∇²φ∇φ = ∇²Φ∇Φ)
        grad_f = phi.g.space.axpy(2 * rho, phi.hvp(None, t, v)[1], phi.phi.space.zeros_like(t) + _grad_lr(t))
        want = np.asarray(d.numeric(th, beta, rho), dtype=float).ravel()
        np.testing.assert_allclose(grad_f.numpy(), want, rtol=RTOL, atol=1e-12)

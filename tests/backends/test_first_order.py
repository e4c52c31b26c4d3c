"""The first-order φ (``module_problem(first_order=True)``): ∇φ and the outer step's HVP from plain
gradients only, converging to the exact (autodiff) ones; the closed-form cosine weights; β = 0 paths."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ofmu_opt.backends.torch_autodiff import AutodiffInner, similarity_value, similarity_weight
from ofmu_opt.backends.torch_module import ModuleBatch, module_problem
from ofmu_opt.core.inner import InnerSpec
from ofmu_opt.errors import ConfigError

D = torch.float64



class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.ln, self.b = nn.Linear(3, 6), nn.LayerNorm(6), nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(torch.tanh(self.ln(self.a(x))))


def _problem(**kw: Any) -> tuple[Any, tuple[Tensor, ...], ModuleBatch]:
    torch.manual_seed(0)
    model = _Net().double()
    for p in model.parameters():
        nn.init.normal_(p, std=0.8)
    g = torch.Generator().manual_seed(5)
    xf, xr = torch.randn(6, 3, dtype=D, generator=g), torch.randn(6, 3, dtype=D, generator=g)
    tf, tr = torch.randint(0, 2, (6,), generator=g), torch.randint(0, 2, (6,), generator=g)
    batch = ModuleBatch((xf, tf), (xr, tr))
    mp = module_problem(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), None, None, default_batch=batch, **kw)
    return mp.problem, mp.y0, batch


def _rel(a: Any, b: Any) -> float:
    fa, fb = torch.cat([t.reshape(-1) for t in a]), torch.cat([t.reshape(-1) for t in b])
    return float((fa - fb).norm() / fb.norm())


def _spec(hvp: str, step: float = 1e-6, beta: float = 1.0) -> InnerSpec:
    return InnerSpec("signed", beta, 1e-8, hvp, step, -1.0)


class _NoCreateGraph:
    """Counts reverse passes and fails on any ``create_graph=True`` while active."""

    def __init__(self) -> None:
        self.calls = 0

    def __enter__(self) -> _NoCreateGraph:
        self._orig = torch.autograd.grad

        def grad(*a: Any, **k: Any) -> Any:
            assert not k.get("create_graph", False), "a second-order graph was built"
            self.calls += 1
            return self._orig(*a, **k)

        torch.autograd.grad = grad  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: Any) -> None:
        torch.autograd.grad = self._orig  # type: ignore[assignment]


def test_first_order_gradient_converges_to_the_exact_one() -> None:
    prob, y, batch = _problem()
    exact = prob.inner_factory(_spec("exact")).grad(None, y, batch=batch)[1]
    errs = []
    for step in (1e-4, 1e-6):
        fo, _, _ = _problem(first_order=True, cosine_fd_step=step)
        errs.append(_rel(fo.inner_factory(_spec("finite_difference", step)).grad(None, y, batch=batch)[1], exact))
    assert errs[1] < 1e-5 and errs[1] < errs[0] / 10, errs  # O(h): 100× smaller step, ~100× smaller error


def test_first_order_outer_step_takes_only_plain_gradients_and_matches_the_exact_hvp() -> None:
    prob, y, batch = _problem()
    (_, g_ex), (_, h_ex) = prob.inner_factory(_spec("exact")).grad_and_hvp(None, y, batch=batch)
    fo, _, _ = _problem(first_order=True, fd_scheme="forward", share_outer_grad=False)
    phi = fo.inner_factory(_spec("finite_difference"))
    with _NoCreateGraph() as n:
        (_, g), (_, h) = phi.grad_and_hvp(None, y, batch=batch)
    # ∇φ(y): ∇g, ∇f, ∇g and ∇f at shifted points; the same again at y + h∇φ
    assert n.calls == 8
    assert _rel(g, g_ex) < 1e-5 and _rel(h, h_ex) < 1e-4


def test_first_order_reuses_the_outer_gradient_values() -> None:
    fo, y, batch = _problem(first_order=True, fd_scheme="forward")
    ref, _, _ = _problem(first_order=True, fd_scheme="forward", share_outer_grad=False)
    spec = _spec("finite_difference")
    phi, phi_ref = fo.inner_factory(spec), ref.inner_factory(spec)
    phi.grad_and_hvp(None, y, batch=batch)  # enables the sharing (values, no graph)
    with _NoCreateGraph():
        fo.outer.grad(None, y, batch=batch)  # the outer step's ∇L_r: kept as values for φ
        with _NoCreateGraph() as n:
            (_, g), (_, h) = phi.grad_and_hvp(None, y, batch=batch)
    assert fo.outer.shared.hits == 1 and n.calls == 7  # one ∇f fewer
    (_, g2), (_, h2) = phi_ref.grad_and_hvp(None, y, batch=batch)
    for a, b in zip(g + h, g2 + h2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_first_order_refuses_an_exact_hvp_and_micro_batches() -> None:
    fo, y, batch = _problem(first_order=True)
    with pytest.raises(ConfigError, match="first_order"):
        fo.inner_factory(_spec("exact"))
    with pytest.raises(ConfigError, match="accumulation"):
        _problem(first_order=True, accumulation=2)
    fo.inner_factory(_spec("exact", beta=0.0))  # no cosine: nothing to difference, allowed


def _vectors(seed: int, zero: str | None) -> Iterator[list[Tensor]]:
    g = torch.Generator().manual_seed(seed)
    for name in ("a", "b"):
        v = [torch.randn(3, 4, dtype=D, generator=g), torch.randn(5, dtype=D, generator=g)]
        yield [torch.zeros_like(t) for t in v] if zero == name else v


@pytest.mark.parametrize("kind", ["signed", "abs", "squared"])
@pytest.mark.parametrize("zero", [None, "a", "b"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_similarity_weight_is_the_gradient_of_similarity_value(kind: str, zero: str | None, sign: float) -> None:
    a, b = _vectors(3, zero)
    for eps in (1e-8, 0.0):
        ga, gb = torch.func.grad(lambda x, z, e=eps: similarity_value(tuple(sign * t for t in x), z, kind, e),
                                 argnums=(0, 1))(tuple(a), tuple(b))
        ua = similarity_weight(a, b, kind, eps, 0, a_sign=sign)  # ∂/∂(σa) = σ ∂/∂a
        ub = similarity_weight(a, b, kind, eps, 1, a_sign=sign)
        for u, r in zip(ua, ga, strict=True):
            torch.testing.assert_close(sign * u, r, rtol=1e-12, atol=1e-12)
        for u, r in zip(ub, gb, strict=True):
            torch.testing.assert_close(u, r, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- β = 0
def test_beta0_exact_outer_step_is_one_graph_and_takes_nothing_from_the_outer_gradient() -> None:
    prob, y, batch = _problem()
    phi = prob.inner_factory(_spec("exact", beta=0.0))
    assert isinstance(phi, AutodiffInner)
    (_, g), (_, h) = phi.grad_and_hvp(None, y, batch=batch)
    assert prob.outer.shared is not None and not prob.outer.shared.enabled  # φ = s·g has no ∇f: keep no graph
    _, gl = prob.outer.grad(None, y, batch=batch)
    assert not any(t.requires_grad for t in gl)
    torch.testing.assert_close(h, phi.hvp(None, y, g, batch=batch)[1], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g, tuple(-t for t in prob.inner.grad(None, y, batch=batch)[1]), rtol=0, atol=0)


@pytest.mark.parametrize("scheme", ["forward", "central"])
def test_beta0_finite_difference_is_a_difference_not_the_exact_product(scheme: str) -> None:
    prob, y, batch = _problem(fd_scheme=scheme)
    (_, _), (_, h_ex) = prob.inner_factory(_spec("exact", beta=0.0)).grad_and_hvp(None, y, batch=batch)
    with _NoCreateGraph():
        (_, _), (_, h) = prob.inner_factory(_spec("finite_difference", 1e-6, beta=0.0)).grad_and_hvp(
            None, y, batch=batch)
    err = _rel(h, h_ex)
    assert 0.0 < err < 1e-4


def test_first_order_forget_hessian_takes_five_plain_gradients() -> None:
    prob, y, batch = _problem()
    fo, _, _ = _problem(first_order=True, share_outer_grad=False)
    phi = fo.inner_factory(_spec("forget_hessian"))
    with _NoCreateGraph() as n:
        (_, g), (_, h) = phi.grad_and_hvp(None, y, batch=batch)
    assert n.calls == 5
    # s∇²g·∇φ by autodiff along the same ∇φ (the approximation's definition), up to the difference's O(h)
    ref = prob.inner_factory(_spec("forget_hessian")).hvp(None, y, g, batch=batch)[1]
    assert _rel(h, ref) < 1e-4

"""Composite normalization layers: same values and running statistics as torch's fused kernels, and
correct derivatives up to third order (the fused kernels' third derivatives are wrong in torch 2.13,
pytorch/pytorch#175754 / #186256); the oracles that take third derivatives use them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import gradgradcheck

from ofmu_opt.backends.torch_autodiff import TorchObjective, composite_norms
from ofmu_opt.backends.torch_module import ModuleBatch, module_problem
from ofmu_opt.core.inner import InnerSpec

D = torch.float64



def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _third_order_ok(f: Callable[..., Tensor], *xs: Tensor, composite: bool) -> bool:
    """gradgradcheck of the gradient of ⟨f, w⟩: checks f's derivatives up to third order."""
    xs = tuple(x.detach().clone().requires_grad_(True) for x in xs)
    w = torch.randn(f(*xs).shape, dtype=D, generator=_gen(7))

    def grad_of(*a: Tensor) -> tuple[Tensor, ...]:
        if composite:
            with composite_norms():
                return torch.autograd.grad((f(*a) * w).sum(), a, create_graph=True)
        return torch.autograd.grad((f(*a) * w).sum(), a, create_graph=True)

    return bool(gradgradcheck(grad_of, xs, atol=1e-6, rtol=1e-5, raise_exception=False))


X3 = torch.randn(3, 4, 6, dtype=D, generator=_gen(1))
X4 = torch.randn(4, 6, 3, 2, dtype=D, generator=_gen(2))
W6 = torch.randn(6, dtype=D, generator=_gen(3))
B6 = torch.randn(6, dtype=D, generator=_gen(4))

CASES: dict[str, tuple[Callable[..., Tensor], tuple[Tensor, ...]]] = {
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (6,), w, b, 1e-5), (X3, W6, B6)),
    "layer_norm 2 dims": (lambda x: F.layer_norm(x, (4, 6)), (X3,)),
    "group_norm": (lambda x, w: F.group_norm(x, 3, w, None, 1e-5), (X4, W6)),
    "batch_norm (batch statistics)": (lambda x, b: F.batch_norm(x, None, None, W6, b, True), (X4, B6)),
    "instance_norm": (lambda x: F.instance_norm(x, weight=W6, bias=B6), (X4,)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_composite_norms_have_correct_third_derivatives(name: str) -> None:
    f, xs = CASES[name]
    assert _third_order_ok(f, *xs, composite=True)


def test_the_fused_layer_norm_third_derivative_is_what_the_composite_fixes() -> None:
    # the control: this torch's fused kernel fails the same check (if this starts failing, torch has fixed
    # pytorch/pytorch#175754 and composite_norms could be retired for new enough torch versions)
    f, xs = CASES["layer_norm"]
    assert not _third_order_ok(f, *xs, composite=False)


@pytest.mark.parametrize("kind", ["ln", "gn", "bn", "in", "bn_eval"])
def test_composite_norms_match_the_fused_values_and_running_statistics(kind: str) -> None:
    def make() -> nn.Module:
        torch.manual_seed(0)
        m: nn.Module = {
            "ln": lambda: nn.LayerNorm(2),
            "gn": lambda: nn.GroupNorm(3, 6),
            "bn": lambda: nn.BatchNorm2d(6),
            "in": lambda: nn.InstanceNorm2d(6, affine=True, track_running_stats=True),
            "bn_eval": lambda: nn.BatchNorm2d(6),
        }[kind]().double()
        for p in m.parameters():
            nn.init.normal_(p)
        if kind == "bn_eval":
            m(X4 * 2.0 + 1.0)
            m.eval()
        return m

    fused, comp = make(), make()
    for _ in range(2):
        a = fused(X4)
        with composite_norms():
            b = comp(X4)
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    for name, buf in fused.named_buffers():
        torch.testing.assert_close(dict(comp.named_buffers())[name], buf, rtol=1e-12, atol=1e-14)


def test_composite_layer_norm_rounds_like_the_fused_kernel_in_bfloat16() -> None:
    x, w, b = X3.bfloat16(), W6.bfloat16(), B6.bfloat16()
    with composite_norms():
        out = F.layer_norm(x, (6,), w, b)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, F.layer_norm(x, (6,), w, b), rtol=0.0, atol=0.0)


def test_the_mode_is_scoped() -> None:
    x = X3.clone().requires_grad_(True)
    with composite_norms():
        inside = type(F.layer_norm(x, (6,)).grad_fn).__name__
    outside = type(F.layer_norm(x, (6,)).grad_fn).__name__
    assert "Native" not in inside and "NativeLayerNorm" in outside  # fused again after the block


# ---------------------------------------------------------------------- the oracles use it
class _LNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.ln, self.b = nn.Linear(3, 6), nn.LayerNorm(6), nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(torch.tanh(self.ln(self.a(x))))


def _ln_problem(autodiff: str, share: bool) -> tuple[Any, tuple[Tensor, ...], ModuleBatch]:
    torch.manual_seed(0)
    model = _LNNet().double()
    for p in model.parameters():  # an LN weight of ones hides part of the error
        nn.init.normal_(p, std=0.8)
    g = _gen(5)
    xf, xr = torch.randn(6, 3, dtype=D, generator=g), torch.randn(6, 3, dtype=D, generator=g)
    tf, tr = torch.randint(0, 2, (6,), generator=g), torch.randint(0, 2, (6,), generator=g)
    batch = ModuleBatch((xf, tf), (xr, tr))
    mp = module_problem(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), None, None, default_batch=batch,
                        autodiff=autodiff, share_outer_grad=share)
    return mp.problem, mp.y0, batch


def _rel(a: tuple[Tensor, ...], b: tuple[Tensor, ...]) -> float:
    fa, fb = torch.cat([t.reshape(-1) for t in a]), torch.cat([t.reshape(-1) for t in b])
    return float((fa - fb).norm() / fb.norm())


@pytest.mark.parametrize(("autodiff", "share"), [("double_backward", False), ("double_backward", True),
                                                 ("forward_over_reverse", False)])
def test_exact_phi_hvp_through_layer_norm_matches_a_converged_difference(autodiff: str, share: bool) -> None:
    prob, y, batch = _ln_problem(autodiff, share)
    spec = InnerSpec("signed", 1.0, 1e-8, "exact", 1e-6, -1.0)
    phi = prob.inner_factory(spec)
    if share:
        phi.grad_and_hvp(None, y, batch=batch)  # enables sharing; the outer gradient then leaves its graph
        prob.outer.grad(None, y, batch=batch)
    (_, gphi), (_, hv) = phi.grad_and_hvp(None, y, batch=batch)
    if share:
        assert prob.outer.shared.hits == 1
    fd = prob.inner_factory(InnerSpec("signed", 1.0, 1e-8, "finite_difference", 1e-7, -1.0))
    err = _rel(hv, fd.hvp(None, y, gphi, batch=batch)[1])
    err_coarse = _rel(hv, prob.inner_factory(InnerSpec("signed", 1.0, 1e-8, "finite_difference", 1e-5, -1.0))
                      .hvp(None, y, gphi, batch=batch)[1])
    assert err < 1e-7 and err < err_coarse  # the difference converges to the exact product
    # and the plain hvp() of φ agrees with grad_and_hvp's
    assert _rel(phi.hvp(None, y, gphi, batch=batch)[1], hv) < 1e-10


@pytest.mark.parametrize("mode", ["double_backward", "forward_over_reverse"])
def test_tvp_through_layer_norm_matches_a_difference_of_hvps(mode: str) -> None:
    ln = nn.LayerNorm(6).double()
    g = _gen(6)
    xin = torch.randn(5, 6, dtype=D, generator=g)
    w = torch.randn(5, 6, dtype=D, generator=g)

    def fn(x: Any, y: Any, b: Any) -> Tensor:
        out = torch.func.functional_call(ln, {"weight": y[0], "bias": y[1]}, (xin * y[2],))
        return (torch.tanh(out) * w).sum()

    y = (torch.randn(6, dtype=D, generator=g), torch.randn(6, dtype=D, generator=g),
         torch.randn(6, dtype=D, generator=g))
    u = tuple(torch.randn(6, dtype=D, generator=g) for _ in range(3))
    v = tuple(torch.randn(6, dtype=D, generator=g) for _ in range(3))
    obj = TorchObjective(fn, has_x=False, hvp_mode=mode)
    t = obj.tvp(None, y, u, v)[1]
    h = 1e-5
    hp = obj.hvp(None, tuple(a + h * b for a, b in zip(y, v, strict=True)), u)[1]
    hm = obj.hvp(None, tuple(a - h * b for a, b in zip(y, v, strict=True)), u)[1]
    assert _rel(t, tuple((p - m) / (2 * h) for p, m in zip(hp, hm, strict=True))) < 1e-8

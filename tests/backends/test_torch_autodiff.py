"""Autodiff oracles: gradients, the three HVP modes, third-order products and the inner objective φ
against central finite differences and against the composed reference implementation (ComposedInner),
on random small networks (tanh MLPs, parameters as a tuple of tensors) and on the quadratic families."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from ofmu_opt.backends.torch_autodiff import (
    AUTODIFF_MODES,
    AutodiffInner,
    TorchObjective,
    autodiff_inner_factory,
    similarity_value,
)
from ofmu_opt.backends.torch_backend import TorchSpace
from ofmu_opt.core.inner import ComposedInner, InnerSpec
from ofmu_opt.errors import ConfigError, OracleError
from ofmu_opt.problem.bilevel import BilevelProblem
from ofmu_opt.reference import get_reference
from ofmu_opt.reference.torch_refs import torch_reference

torch.set_num_threads(1)
D = torch.float64
SP = TorchSpace()


# ---------------------------------------------------------------------- a random small network
def _net(seed: int, has_x: bool) -> dict[str, Any]:
    """Two tanh-MLP losses (forget / retain data) of shared weights y = (W1, b1, W2); x scales the inputs."""
    g = torch.Generator().manual_seed(seed)
    n, d, h = 7, 3, 4
    Xf, Xr = torch.randn(n, d, generator=g, dtype=D), torch.randn(n, d, generator=g, dtype=D)
    tf, tr = torch.randn(n, generator=g, dtype=D), torch.randn(n, generator=g, dtype=D)
    y = (torch.randn(h, d, generator=g, dtype=D) * 0.7, torch.randn(h, generator=g, dtype=D) * 0.3,
         torch.randn(h, generator=g, dtype=D) * 0.7)
    x = torch.randn(d, generator=g, dtype=D) * 0.5 if has_x else None

    def loss(X: torch.Tensor, t: torch.Tensor) -> Any:
        def fn(x: Any, y: Any, batch: Any) -> torch.Tensor:
            W1, b1, W2 = y
            Z = X * (1.0 + x) if x is not None else X
            out = torch.tanh(Z @ W1.T + b1) @ W2
            reg = 0.05 * (x * x).sum() if x is not None else 0.0
            return 0.5 * ((out - t) ** 2).mean() + reg

        return fn

    return {"f": loss(Xr, tr), "g": loss(Xf, tf), "x": x, "y": y}


def _rand_like(v: Any, seed: int) -> Any:
    g = torch.Generator().manual_seed(seed)
    if isinstance(v, torch.Tensor):
        return torch.randn(v.shape, generator=g, dtype=v.dtype)
    return tuple(torch.randn(t.shape, generator=g, dtype=t.dtype) for t in v)


def _host(p: Any) -> np.ndarray:
    parts = [] if p[0] is None else [np.asarray(SP.to_host(p[0]))]
    return np.concatenate([*parts, np.asarray(SP.to_host(p[1]))])


def _fd_grad(obj: Any, x: Any, y: Any, v: Any, h: float = 1e-5) -> float:
    """Central difference of the value along (0, v): the directional derivative <∇_y h, v>."""
    return (SP.to_float(obj.value(x, SP.axpy(h, v, y))) - SP.to_float(obj.value(x, SP.axpy(-h, v, y)))) / (2 * h)


def _fd_grad_x(obj: Any, x: Any, y: Any, w: Any, h: float = 1e-5) -> float:
    return (SP.to_float(obj.value(SP.axpy(h, w, x), y)) - SP.to_float(obj.value(SP.axpy(-h, w, x), y))) / (2 * h)


def _fd_of(fun: Any, x: Any, y: Any, v: Any, h: float = 1e-5) -> np.ndarray:
    """Central difference of a pair-valued function of y along v."""
    return (_host(fun(x, SP.axpy(h, v, y))) - _host(fun(x, SP.axpy(-h, v, y)))) / (2 * h)


@pytest.mark.parametrize("has_x", [False, True])
@pytest.mark.parametrize("mode", AUTODIFF_MODES)
def test_gradient_hvp_tvp_match_finite_differences_on_a_network(mode: str, has_x: bool) -> None:
    net = _net(1, has_x)
    obj = TorchObjective(net["g"], has_x=has_x, hvp_mode=mode)
    x, y = net["x"], net["y"]
    u, v = _rand_like(y, 2), _rand_like(y, 3)
    gx, gy = obj.grad(x, y)
    assert SP.to_float(SP.dot(gy, v)) == pytest.approx(_fd_grad(obj, x, y, v), rel=1e-7, abs=1e-9)
    if has_x:
        w = _rand_like(x, 4)
        assert SP.to_float(SP.dot(gx, w)) == pytest.approx(_fd_grad_x(obj, x, y, w), rel=1e-7, abs=1e-9)
    hv = obj.hvp(x, y, v)
    fd = _fd_of(lambda xx, yy: obj.grad(xx, yy), x, y, v)
    rtol = 1e-6 if mode == "finite_difference" else 1e-7
    np.testing.assert_allclose(_host(hv), fd, rtol=rtol, atol=1e-8)
    tv = obj.tvp(x, y, u, v)
    exact = TorchObjective(net["g"], has_x=has_x, hvp_mode="double_backward")
    fd3 = _fd_of(lambda xx, yy: exact.hvp(xx, yy, u), x, y, v)
    np.testing.assert_allclose(_host(tv), fd3, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("has_x", [False, True])
def test_the_three_hvp_modes_agree(has_x: bool) -> None:
    net = _net(5, has_x)
    x, y, v = net["x"], net["y"], _rand_like(net["y"], 6)
    outs = {m: _host(TorchObjective(net["f"], has_x=has_x, hvp_mode=m).hvp(x, y, v)) for m in AUTODIFF_MODES}
    tol = 4 * math.sqrt(np.finfo(np.float64).eps)
    np.testing.assert_allclose(outs["forward_over_reverse"], outs["double_backward"], rtol=tol, atol=1e-14)
    np.testing.assert_allclose(outs["finite_difference"], outs["double_backward"], rtol=1e-6, atol=1e-9)


def _spec(sim: str, hvp: str, sign: float, beta: float = 0.3, eps: float = 1e-8) -> InnerSpec:
    return InnerSpec(sim, beta, eps, hvp, 1e-6, sign)


@pytest.mark.parametrize("sim", ["signed", "abs", "squared"])
@pytest.mark.parametrize("has_x", [False, True])
@pytest.mark.parametrize("autodiff", ["forward_over_reverse", "double_backward"])
def test_inner_objective_matches_composed_and_finite_differences_on_a_network(
    sim: str, has_x: bool, autodiff: str
) -> None:
    net = _net(11, has_x)
    x, y, v = net["x"], net["y"], _rand_like(net["y"], 12)
    sign = -1.0  # unlearning: the forget loss is maximized
    f_obj = TorchObjective(net["f"], has_x=has_x, hvp_mode="double_backward")
    g_obj = TorchObjective(net["g"], has_x=has_x, hvp_mode="double_backward")
    prob = BilevelProblem(f_obj, g_obj, SP, "max", has_x=has_x)
    tol = 1e-10  # composition vs direct autodiff: float64 round-off only
    for hvp in ("exact", "finite_difference", "forget_hessian"):
        spec = _spec(sim, hvp, sign)
        ref = ComposedInner(prob, spec)
        phi = AutodiffInner(net["f"], net["g"], spec, has_x=has_x, autodiff=autodiff)
        assert SP.to_float(phi.value(x, y)) == pytest.approx(SP.to_float(ref.value(x, y)), rel=tol, abs=tol)
        np.testing.assert_allclose(_host(phi.grad(x, y)), _host(ref.grad(x, y)), rtol=tol, atol=tol)
        hvp_tol = 1e-6 if hvp == "finite_difference" else tol
        np.testing.assert_allclose(_host(phi.hvp(x, y, v)), _host(ref.hvp(x, y, v)), rtol=hvp_tol, atol=hvp_tol)
    # and against finite differences of the value and of the gradient
    phi = AutodiffInner(net["f"], net["g"], _spec(sim, "exact", sign), has_x=has_x, autodiff=autodiff)
    assert SP.to_float(SP.dot(phi.grad(x, y)[1], v)) == pytest.approx(_fd_grad(phi, x, y, v), rel=1e-6, abs=1e-9)
    np.testing.assert_allclose(
        _host(phi.hvp(x, y, v)), _fd_of(lambda xx, yy: phi.grad(xx, yy), x, y, v), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("rid", ["P1b", "P2", "P3", "P4", "QOFMU", "QOFMU-orth"])
def test_inner_objective_matches_composed_numpy_on_the_quadratic_families(rid: str) -> None:
    ref = get_reference(rid)
    tref = torch_reference(ref)
    rng = np.random.default_rng(3)

    def T(a: Any) -> Any:
        return None if a is None else torch.tensor(a, dtype=D)

    worst = 0.0
    for sim in ("signed", "abs", "squared", "none"):
        for hvp in ("exact", "finite_difference", "forget_hessian"):
            spec = _spec(sim, hvp, ref.problem.sign)
            ci, ti = ComposedInner(ref.problem, spec), tref.problem.inner_factory(spec)
            x = None if ref.x0 is None else rng.standard_normal(ref.x0.shape)
            y, v = rng.standard_normal(ref.y0.shape), rng.standard_normal(ref.y0.shape)
            assert float(ti.value(T(x), T(y))) == pytest.approx(float(ci.value(x, y)), rel=1e-12, abs=1e-12)

            def np_pair(p: Any) -> np.ndarray:
                return np.concatenate([[] if p[0] is None else p[0], p[1]])

            err = np.abs(_host(ti.grad(T(x), T(y))) - np_pair(ci.grad(x, y))).max()
            herr = np.abs(_host(ti.hvp(T(x), T(y), T(v))) - np_pair(ci.hvp(x, y, v))).max()
            assert err < 1e-12
            assert herr < (1e-7 if hvp == "finite_difference" else 1e-12)
            worst = max(worst, err, herr if hvp != "finite_difference" else 0.0)
    assert worst < 1e-12


def test_similarity_value_kinds_and_zero_gradient_guard() -> None:
    a, b = torch.tensor([1.0, 0.0], dtype=D), torch.tensor([1.0, 1.0], dtype=D)
    c = 1 / math.sqrt(2)
    assert float(similarity_value(a, b, "signed", 0.0)) == pytest.approx(c)
    assert float(similarity_value(-a, b, "abs", 0.0)) == pytest.approx(c)
    assert float(similarity_value(a, b, "squared", 0.0)) == pytest.approx(0.5)
    assert float(similarity_value(torch.zeros(2, dtype=D), b, "signed", 0.0)) == 0.0
    with pytest.raises(ConfigError):
        similarity_value(a, b, "cosine", 0.0)


def test_validation_errors() -> None:
    with pytest.raises(ConfigError, match="hvp_mode"):
        TorchObjective(lambda x, y, b: y.sum(), has_x=False, hvp_mode="exact")
    obj = TorchObjective(lambda x, y, b: y * 2, has_x=False)
    with pytest.raises(OracleError, match=r"objective: expected a one-element floating tensor, .* shape \(3,\)"):
        obj.grad(None, torch.ones(3, dtype=D))
    with pytest.raises(ConfigError, match="autodiff"):
        autodiff_inner_factory(lambda x, y, b: y.sum(), lambda x, y, b: y.sum(), has_x=False, autodiff="fd")


def test_forward_over_reverse_runs_fewer_reverse_passes_than_double_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative cost property (no timing): reverse-mode sweeps launched by one HVP in each mode."""
    net = _net(2, False)
    y, v = net["y"], _rand_like(net["y"], 1)
    counts = {}
    orig = torch.autograd.grad
    for mode in ("forward_over_reverse", "double_backward", "finite_difference"):
        n = [0]

        def counting_grad(*args: Any, _n: list[int] = n, **kw: Any) -> Any:
            _n[0] += 1
            return orig(*args, **kw)

        monkeypatch.setattr(torch.autograd, "grad", counting_grad)
        TorchObjective(net["g"], has_x=False, hvp_mode=mode).hvp(None, y, v)
        monkeypatch.setattr(torch.autograd, "grad", orig)
        counts[mode] = n[0]
    # forward-over-reverse: one reverse sweep (inside torch.func.grad) carried out in dual numbers;
    # double backward: two sweeps, the second through the first's graph; finite differences: two gradients
    assert counts == {"forward_over_reverse": 1, "double_backward": 2, "finite_difference": 2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inner_objective_in_low_precision_keeps_dtype_and_modes_agree(dtype: torch.dtype) -> None:
    """Regression: a Python-float ε made forward-mode emit float64 tangents for float32 inputs."""
    net = _net(4, False)
    y = tuple(t.to(dtype) for t in net["y"])
    v = tuple(t.to(dtype) for t in _rand_like(net["y"], 9))

    def cast(fn: Any) -> Any:
        return lambda x, yy, b: fn(None, tuple(t.double() for t in yy), b).to(dtype)

    out = {}
    for autodiff in ("forward_over_reverse", "double_backward"):
        phi = AutodiffInner(cast(net["f"]), cast(net["g"]), _spec("signed", "exact", -1.0), has_x=False,
                            autodiff=autodiff)
        h = phi.hvp(None, y, v)[1]
        assert all(t.dtype == dtype for t in h)
        out[autodiff] = np.concatenate([t.double().reshape(-1).numpy() for t in h])
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    np.testing.assert_allclose(out["forward_over_reverse"], out["double_backward"], rtol=tol, atol=tol)


@pytest.mark.parametrize("sim", ["signed", "abs", "squared"])
@pytest.mark.parametrize("has_x", [False, True])
def test_sync_free_composition_matches_the_core_composition(sim: str, has_x: bool) -> None:
    from ofmu_opt.backends.torch_autodiff import ComposedTorchInner

    net = _net(21, has_x)
    x, y, v = net["x"], net["y"], _rand_like(net["y"], 22)
    f_obj = TorchObjective(net["f"], has_x=has_x, hvp_mode="double_backward")
    g_obj = TorchObjective(net["g"], has_x=has_x, hvp_mode="double_backward")
    prob = BilevelProblem(f_obj, g_obj, SP, "max", has_x=has_x)
    for hvp in ("exact", "finite_difference", "forget_hessian"):
        spec = _spec(sim, hvp, -1.0)
        ref, got = ComposedInner(prob, spec), ComposedTorchInner(f_obj, g_obj, spec, space=SP)
        assert SP.to_float(got.value(x, y)) == pytest.approx(SP.to_float(ref.value(x, y)), rel=1e-12)
        np.testing.assert_allclose(_host(got.grad(x, y)), _host(ref.grad(x, y)), rtol=1e-11, atol=1e-12)
        tol = 1e-6 if hvp == "finite_difference" else 1e-10
        np.testing.assert_allclose(_host(got.hvp(x, y, v)), _host(ref.hvp(x, y, v)), rtol=tol, atol=tol)

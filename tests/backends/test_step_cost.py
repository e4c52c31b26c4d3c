"""Step cost of the torch backend, checked by properties that do not depend on machine load: counts of
reverse passes of the autograd engine, host synchronisation in the inner loop, and the step-cost
benchmark's output shape. No absolute (or relative) wall time is asserted here."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.autograd as autograd
from torch import nn

from ofmu_opt.backends.torch_module import ModuleBatch, module_problem
from ofmu_opt.core import solver as S
from ofmu_opt.core.inner import InnerSpec


def _ofmu(**kw: Any) -> S.PenaltySolver:
    """The OFMU preset as one plain round per update (no line search, the paper's penalty schedule): the
    reverse-pass counts below are those of one outer step."""
    kw.setdefault("outer_rule", "adam")  # OfmuConfig's default optimizer (the preset's own may differ)
    solver = S.ofmu(**kw)
    return solver.replace(line_search=False, strategy="paper")


def _loss(m: nn.Module, b: Any) -> torch.Tensor:
    return nn.functional.cross_entropy(m(b[0]), b[1])


def _setup(autodiff: str) -> tuple[Any, tuple[torch.Tensor, ...], list[ModuleBatch]]:
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    batches = []
    for _ in range(4):
        x = torch.randn(16, 4, dtype=torch.float64, generator=g)
        y = torch.randint(0, 3, (16,), generator=g)
        batches.append(ModuleBatch((x, y), (x.flip(0), y.flip(0))))
    mp = module_problem(model, _loss, None, None, autodiff=autodiff, default_batch=batches[-1])
    return mp.problem, mp.y0, batches


@contextlib.contextmanager
def _count_reverse_passes() -> Iterator[list[int]]:
    """Count runs of the autograd engine (each ``torch.autograd.grad``/``backward``, also inside torch.func)."""
    real = autograd._engine_run_backward  # type: ignore[attr-defined]
    n = [0]

    def counting(*a: Any, **k: Any) -> Any:
        n[0] += 1
        return real(*a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(autograd, "_engine_run_backward", counting)
        yield n


def _passes(autodiff: str, what: str) -> int:
    p, y, batches = _setup(autodiff)
    v = tuple(torch.randn_like(t) for t in y)
    phi = p.inner_factory(InnerSpec("signed", 0.1, 1e-8, "exact", 1e-3, -1.0))
    with _count_reverse_passes() as n:
        if what == "hvp_Lf":
            p.inner.hvp(None, y, v, batch=batches[0])
        elif what == "hvp_phi":
            phi.hvp(None, y, v, batch=batches[0])
        else:
            phi.grad(None, y, batch=batches[0])
    return n[0]


@pytest.mark.parametrize("what", ["hvp_Lf", "hvp_phi"])
def test_forward_over_reverse_takes_fewer_reverse_passes_than_double_backward(what: str) -> None:
    # L_f: jvp of one reverse pass (1) against two reverse passes (2); Φ (with the cosine): 3 against 4
    assert _passes("forward_over_reverse", what) < _passes("double_backward", what)
    assert _passes("forward_over_reverse", "hvp_Lf") == 1


def test_inner_gradient_reverse_passes_do_not_depend_on_the_autodiff_mode() -> None:
    # ∇Φ = two inner gradients kept as graphs plus one reverse pass through them, in both modes
    assert _passes("forward_over_reverse", "grad_phi") == _passes("double_backward", "grad_phi") == 3


@contextlib.contextmanager
def _no_host_sync() -> Iterator[None]:
    def refuse(self: torch.Tensor, *a: Any, **k: Any) -> Any:
        raise AssertionError("host synchronisation (item/float/bool/int/tolist) inside the inner loop")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("item", "__float__", "__bool__", "__int__", "tolist"):
            mp.setattr(torch.Tensor, name, refuse)
        yield


@pytest.mark.parametrize("autodiff", ["forward_over_reverse", "double_backward"])
@pytest.mark.parametrize("hvp", ["exact", "finite_difference"])
def test_inner_loop_issues_no_host_sync(autodiff: str, hvp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p, y, batches = _setup(autodiff)
    solver = _ofmu(inner_steps=3, inner_lr=1e-2, outer_lr=1e-2, hvp=hvp, maxiter=2)
    inner_loop = S.PenaltySolver._inner_loop
    calls = [0]

    def guarded(self: S.PenaltySolver, *a: Any, **k: Any) -> Any:
        calls[0] += 1
        with _no_host_sync():
            return inner_loop(self, *a, **k)

    monkeypatch.setattr(S.PenaltySolver, "_inner_loop", guarded)  # the solver is a frozen dataclass
    state = solver.init_state(p, None, y)
    rb = S.RoundBatches(inner=tuple(batches[:3]), outer=batches[3])
    new = solver.update(p, state, batch=rb)
    assert calls[0] == 1 and new.terminal == ""
    # the guard itself works: a host read inside it fails
    with pytest.raises(AssertionError, match="host synchronisation"), _no_host_sync():
        torch.ones(1).item()


def test_cpu_peak_memory_orders_allocations() -> None:
    from benchmarks.bench_step_cost import cpu_peak_bytes

    def one() -> torch.Tensor:
        return torch.ones(250_000)  # 1 MB

    def two() -> torch.Tensor:
        a = torch.ones(250_000)
        b = torch.ones(250_000)
        return a + b

    p1, p2 = cpu_peak_bytes(one), cpu_peak_bytes(two)
    assert p1 >= 1_000_000 and p2 >= 3_000_000 and p2 > p1


def test_step_cost_benchmark_writes_ratios(tmp_path: Path) -> None:
    from benchmarks.bench_step_cost import main

    modes = ["exact_db", "forget_hessian", "first_order", "exact_db_beta0", "exact_db_acc2"]
    code = main(["--out", str(tmp_path), "--models", "digits_cnn", "--modes", ",".join(modes),
                 "--repeats", "1", "--inner-steps", "1", "--digits-batch", "8"])
    assert code == 0
    data = json.loads((tmp_path / "step_cost.json").read_text())
    assert {"machine", "settings", "rows"} <= set(data)
    rows = {r["hvp mode"]: r for r in data["rows"]}
    assert set(rows) == set(modes)
    for r in rows.values():
        assert r["status"] == "ok"
        assert r["outer/graddiff"] > 0 and r["mem outer/graddiff"] > 0 and r["inner/graddiff"] > 0
    assert rows["exact_db"]["hvp_rel_err"] == 0.0 and rows["exact_db_beta0"]["hvp_rel_err"] == 0.0
    # an approximation of the exact product (on this ReLU network a poor one: docs/performance.md, Run D)
    assert math.isfinite(rows["first_order"]["hvp_rel_err"]) and rows["first_order"]["hvp_rel_err"] > 0.0
    # gradient accumulation composes the same exact product from micro-batches (float32 round-off only)
    assert rows["exact_db_acc2"]["hvp_rel_err"] < 1e-5
    cases = set(data["results"][0]["median_s"])
    assert {"inner[double_backward]", "inner[first_order]", "inner[beta0]"} <= cases
    assert (tmp_path / "step_cost.md").read_text().startswith("# step_cost")


@pytest.mark.parametrize("autodiff", ["forward_over_reverse", "double_backward"])
def test_joint_grad_and_hvp_equals_separate_calls(autodiff: str) -> None:
    p, y, batches = _setup(autodiff)
    phi = p.inner_factory(InnerSpec("signed", 0.1, 1e-8, "exact", 1e-3, -1.0))
    (_, g), (_, h) = phi.grad_and_hvp(None, y, batch=batches[0])
    _, g_ref = phi.grad(None, y, batch=batches[0])
    _, h_ref = phi.hvp(None, y, g_ref, batch=batches[0])
    for a, b in zip(g + h, g_ref + h_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_exact_outer_step_shares_one_graph_for_grad_and_hvp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Double backward: ∇φ and ∇²φ∇φ from one graph take 4 reverse passes, against 3 + 4 when ∇φ is
    recomputed for the HVP: 3 passes fewer per outer step, and the same iterate."""
    from ofmu_opt.backends.torch_autodiff import AutodiffInner

    p, y, batches = _setup_with(share_outer_grad=False)[1:]
    solver = _ofmu(inner_steps=0, outer_lr=1e-2, hvp="exact", maxiter=2)
    rb = S.RoundBatches(inner=(), outer=batches[3])
    with _count_reverse_passes() as n:
        shared = solver.update(p, solver.init_state(p, None, y), batch=rb)
    joint_passes = n[0]
    monkeypatch.setattr(AutodiffInner, "grad_and_hvp", None)  # the solver falls back to grad, then hvp
    with _count_reverse_passes() as n:
        separate = solver.update(p, solver.init_state(p, None, y), batch=rb)
    assert n[0] - joint_passes == 3
    for a, b in zip(shared.y, separate.y, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def _setup_with(**kw: Any) -> tuple[Any, Any, tuple[torch.Tensor, ...], list[ModuleBatch]]:
    p, y, batches = _setup(kw.pop("autodiff", "double_backward"))
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        for dst, src in zip(model.parameters(), y, strict=True):
            dst.copy_(src)
    mp = module_problem(model, _loss, None, None, default_batch=batches[-1], **kw)
    return mp, mp.problem, mp.y0, batches


def test_outer_step_reuses_the_retain_gradient_graph() -> None:
    """From the second outer step on, ∇L_r's graph taken by the outer objective is reused inside ∇φ:
    one reverse pass fewer per outer step, the same iterates."""
    solver = _ofmu(inner_steps=1, inner_lr=1e-2, outer_lr=1e-2, hvp="exact", maxiter=4)
    runs = {}
    for share in (True, False):
        mp, p, y, batches = _setup_with(share_outer_grad=share)
        st = solver.init_state(p, None, y)
        passes = []
        for k in range(3):
            rb = S.RoundBatches(inner=(batches[k],), outer=batches[3 - k])
            with _count_reverse_passes() as n:
                st = solver.update(p, st, batch=rb)
            passes.append(n[0])
        runs[share] = (st, passes, p.outer.shared)
    (st_s, passes_s, shared), (st_n, passes_n, none) = runs[True], runs[False]
    assert none is None and shared is not None and shared.hits == 2
    assert passes_s[0] == passes_n[0] and [b - a for a, b in zip(passes_s[1:], passes_n[1:])] == [1, 1]
    for a, b in zip(st_s.y, st_n.y, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_shared_gradient_is_not_used_for_another_point_or_batch() -> None:
    from ofmu_opt.backends.torch_autodiff import SharedGradient

    _, p, y, batches = _setup_with()
    phi = p.inner_factory(InnerSpec("signed", 0.1, 1e-8, "exact", 1e-3, -1.0))
    sh: SharedGradient = p.outer.shared
    phi.grad_and_hvp(None, y, batch=batches[0])  # enables the sharing
    assert sh.enabled
    p.outer.grad(None, y, batch=batches[1])
    (_, g), (_, h) = phi.grad_and_hvp(None, y, batch=batches[0])  # another batch: recomputed
    assert sh.hits == 0
    y2 = tuple(t.clone() for t in y)
    p.outer.grad(None, y2, batch=batches[0])
    y2[0].add_(1.0)  # changed in place after the outer gradient: the version check refuses it
    phi.grad_and_hvp(None, y2, batch=batches[0])
    assert sh.hits == 0
    p.outer.grad(None, y, batch=batches[0])
    (_, g2), (_, h2) = phi.grad_and_hvp(None, y, batch=batches[0])
    assert sh.hits == 1
    for a, b in zip(g + h, g2 + h2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_forward_difference_hvp_takes_one_extra_gradient_and_is_close() -> None:
    spec = InnerSpec("signed", 0.1, 1e-8, "finite_difference", 1e-7, -1.0)
    exact = InnerSpec("signed", 0.1, 1e-8, "exact", 1e-7, -1.0)
    _, p, y, batches = _setup_with(fd_scheme="forward")
    _, pc, _, _ = _setup_with(fd_scheme="central")
    fwd, cen = p.inner_factory(spec), pc.inner_factory(spec)
    with _count_reverse_passes() as n:
        (_, g), (_, h_fwd) = fwd.grad_and_hvp(None, y, batch=batches[0])
    n_fwd = n[0]
    with _count_reverse_passes() as n:
        (_, _), (_, h_cen) = cen.grad_and_hvp(None, y, batch=batches[0])
    n_cen = n[0]
    assert n_fwd == 2 * 3 and n_cen == 3 * 3  # ∇φ takes 3 reverse passes: 2 of them against 3
    (_, _), (_, h_ex) = p.inner_factory(exact).grad_and_hvp(None, y, batch=batches[0])

    def rel(a: tuple[torch.Tensor, ...]) -> float:
        num = sum(float(((u - w) ** 2).sum()) for u, w in zip(a, h_ex, strict=True))
        return (num / sum(float((w**2).sum()) for w in h_ex)) ** 0.5

    assert rel(h_fwd) < 1e-4 and rel(h_cen) < 1e-6  # float64: O(h) against O(h^2)
    with pytest.raises(Exception, match="fd_scheme"):
        _setup_with(fd_scheme="backward")


def test_autocast_option() -> None:
    from ofmu_opt.errors import ConfigError

    with pytest.raises(ConfigError, match="autocast"):
        _setup_with(autocast="float16")
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(16, 4, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    b = ModuleBatch((x, t), (x, t))
    grads = []
    for ac in (None, "bfloat16"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))  # float32: autocast applies
        mp = module_problem(model, _loss, None, None, default_batch=b, autocast=ac)
        grads.append(mp.problem.outer.grad(None, mp.y0, batch=b)[1])
    assert all(a.dtype == torch.float32 for a in grads[1])  # parameters keep their dtype; matmuls ran in bf16
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=0.05, atol=0.02)
    assert not torch.equal(grads[1][0], grads[0][0])


def test_gradient_checkpointing_is_refused_by_the_functional_oracles() -> None:
    """Recomputation in the backward pass runs outside functional_call, i.e. with the module's weights
    instead of the iterate: the derivatives would be wrong, so such a model is refused."""
    pytest.importorskip("transformers")
    from ofmu_opt.errors import ConfigError
    from ofmu_opt.unlearning.models.hf import TinyGPT2Config, build_tiny_gpt2
    from ofmu_opt.unlearning.models.hf import train_tokenizer as tt

    tok = tt(["alpha beta gamma delta", "one two three"], vocab_size=300)
    model = build_tiny_gpt2(tok, TinyGPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=32), seed=0)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with pytest.raises(ConfigError, match="gradient checkpointing"):
        module_problem(model, lambda m, b: m(b).logits.mean(), None, None)
    model.gradient_checkpointing_disable()
    module_problem(model, lambda m, b: m(b).logits.mean(), None, None)


def test_forward_difference_reuses_the_retain_gradient_graph() -> None:
    spec = InnerSpec("signed", 0.1, 1e-8, "finite_difference", 1e-7, -1.0)
    _, p, y, batches = _setup_with(fd_scheme="forward")
    phi = p.inner_factory(spec)
    (_, g0), (_, h0) = phi.grad_and_hvp(None, y, batch=batches[0])  # no outer gradient taken: no reuse
    p.outer.grad(None, y, batch=batches[0])
    with _count_reverse_passes() as n:
        (_, g1), (_, h1) = phi.grad_and_hvp(None, y, batch=batches[0])
    assert p.outer.shared.hits == 1 and n[0] == 2 * 3 - 1  # ∇f's backward pass came from the outer gradient
    for a, b in zip(g0 + h0, g1 + h1, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)

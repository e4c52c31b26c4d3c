"""Step cost of the torch backend, checked by properties that do not depend on machine load: counts of
reverse passes of the autograd engine, host synchronisation in the inner loop, and the step-cost
benchmark's output shape. No absolute (or relative) wall time is asserted here."""

from __future__ import annotations

import contextlib
import json
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


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    solver = S.ofmu(inner_steps=3, inner_lr=1e-2, outer_lr=1e-2, hvp=hvp, maxiter=2)
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

    code = main(["--out", str(tmp_path), "--models", "digits_cnn", "--modes", "exact_db,forget_hessian",
                 "--repeats", "1", "--inner-steps", "1", "--digits-batch", "8"])
    assert code == 0
    data = json.loads((tmp_path / "step_cost.json").read_text())
    assert {"machine", "settings", "rows"} <= set(data)
    rows = {r["hvp mode"]: r for r in data["rows"]}
    assert set(rows) == {"exact_db", "forget_hessian"}
    for r in rows.values():
        assert r["status"] == "ok"
        assert r["outer/graddiff"] > 0 and r["mem outer/graddiff"] > 0
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

    p, y, batches = _setup("double_backward")
    solver = S.ofmu(inner_steps=0, outer_lr=1e-2, hvp="exact", maxiter=2)
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

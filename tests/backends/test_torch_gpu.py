"""GPU checks of the torch backend (marked ``gpu``; skipped without CUDA). Run by scripts/gpu_check.sh."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ofmu_opt.backends.torch_backend import TorchSpace
from ofmu_opt.core import solver as S
from ofmu_opt.errors import BackendError
from ofmu_opt.reference import get_reference
from ofmu_opt.reference.torch_refs import torch_reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_space_keeps_device_and_dtype_and_refuses_cpu_operands() -> None:
    sp = TorchSpace()
    a = tuple(torch.randn(s, device="cuda", dtype=torch.bfloat16) for s in ((64, 32), (32,)))
    out = sp.axpy(sp.norm(a), a, a)
    assert all(t.device.type == "cuda" and t.dtype == torch.bfloat16 for t in out)
    assert sp.norm(a).device.type == "cuda" and sp.norm(a).dtype == torch.float32
    with pytest.raises(BackendError, match="different devices"):
        sp.add(a, tuple(t.cpu() for t in a))
    with pytest.raises(BackendError, match="different devices"):
        sp.scale(a, torch.tensor(2.0))  # a CPU 0-d scalar would be moved silently by torch


@pytest.mark.parametrize("autodiff", ["double_backward", "forward_over_reverse"])
@pytest.mark.parametrize(("rid", "preset"), [("P3", "gpbgd"), ("QOFMU", "ofmu"), ("P2", "vpbgd")])
def test_cuda_float64_agrees_with_numpy(rid: str, preset: str, autodiff: str) -> None:
    ref = get_reference(rid)
    tref = torch_reference(ref, device="cuda", autodiff=autodiff)
    s = S.with_continuation(getattr(S, preset)().replace(**ref.hints), tol=1e-4).replace(maxiter=4)
    rn = s.run(ref.problem, ref.x0, ref.y0)
    rt = s.run(tref.problem, tref.x0, tref.y0)
    assert rt.y.device.type == "cuda" and rt.nit == rn.nit
    assert float(np.abs(rt.y.cpu().numpy() - rn.y).max()) < 1e-8


def test_module_problem_on_cuda_runs_ofmu_rounds() -> None:
    from torch import nn

    from ofmu_opt.backends.torch_module import module_problem

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).cuda()
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(32, 8, generator=g).cuda(), torch.randint(0, 3, (32,), generator=g).cuda())
    mp = module_problem(model, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), data, data, batch_size=16)
    solver = S.ofmu(inner_steps=2, outer_rule="adam", outer_lr=1e-2)
    state = solver.init_state(mp.problem, None, mp.y0)
    for k in range(3):
        state = solver.update(mp.problem, state, batch=mp.round_batches(k, 2))
    assert state.terminal == "" and all(t.device.type == "cuda" for t in state.y)


@pytest.mark.parametrize("accumulation", [1, 2])  # 2: phi composed from accumulated oracles
@pytest.mark.parametrize("hvp", ["exact", "finite_difference", "forget_hessian"])
def test_inner_steps_and_hvps_never_synchronise_with_the_host(hvp: str, accumulation: int) -> None:
    """No `.item()`/host sync inside the inner loop: CUDA's sync debug mode turns any sync into an error."""
    from torch import nn

    from ofmu_opt.backends.torch_module import module_problem
    from ofmu_opt.core.inner import InnerSpec

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).cuda()
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(32, 8, generator=g).cuda(), torch.randint(0, 3, (32,), generator=g).cuda())
    mp = module_problem(model, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), data, data, batch_size=16,
                        accumulation=accumulation)
    rb = mp.round_batches(0, 3)
    phi = mp.problem.inner_factory(InnerSpec("signed", 0.1, 1e-8, hvp, 1e-3, -1.0))
    sp, y = mp.problem.space, mp.y0
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for b in rb.inner:
            _, gy = phi.grad(None, y, batch=b)
            y = sp.axpy(-0.01, gy, y)
        _, v = phi.grad(None, y, batch=rb.outer)
        hv = phi.hvp(None, y, v, batch=rb.outer)[1]
        pen = sp.dot(v, v)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(pen) and all(t.is_cuda for t in hv)

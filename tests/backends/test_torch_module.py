"""Module oracles: parameter selection, seeded batches, gradient accumulation, and φ of a module."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ofmu_opt.backends.torch_module import ModuleBatch, SeededBatches, module_problem, select_params, split_batch
from ofmu_opt.core.inner import ComposedInner, InnerSpec
from ofmu_opt.errors import ConfigError, OracleError

torch.set_num_threads(1)
D = torch.float64


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _data(seed: int, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=D), torch.randint(0, 3, (n,), generator=g)


def _ce(m: nn.Module, b: Any) -> torch.Tensor:
    return nn.functional.cross_entropy(m(b[0]), b[1])


def _flat(p: Any) -> np.ndarray:
    return np.concatenate([t.detach().reshape(-1).numpy() for t in p[1]])


def test_parameter_selection() -> None:
    m = _model()
    assert select_params(m, "all")[0] == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert select_params(m, r"re:^2\.")[0] == ("2.weight", "2.bias")
    m[0].weight.requires_grad_(False)
    assert select_params(m, "requires_grad")[0] == ("0.bias", "2.weight", "2.bias")
    assert select_params(m, ["2.bias"])[0] == ("2.bias",)
    with pytest.raises(ConfigError, match="selects no parameter"):
        select_params(m, "re:nothing")
    with pytest.raises(ConfigError, match="unknown parameter"):
        select_params(m, ["3.weight"])
    with pytest.raises(ConfigError, match="expected"):
        select_params(m, "some")


def test_only_the_selected_parameters_move_and_the_model_is_untouched() -> None:
    m = _model()
    before = [p.detach().clone() for p in m.parameters()]
    mp = module_problem(m, _ce, _data(1), _data(2), params=r"re:^2\.")
    gx, gy = mp.problem.inner.grad(None, mp.y0)
    assert gx is None and len(gy) == 2 and gy[0].shape == (3, 6)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))
    mp.write_back(tuple(t + 1 for t in mp.y0))
    assert torch.equal(m[2].bias.detach(), before[3] + 1) and torch.equal(m[0].bias.detach(), before[1])


def test_seeded_batches_are_reproducible_and_independent_of_draw_order() -> None:
    s = SeededBatches(_data(1), batch_size=4, seed=3)
    a = s.draw(5, 1)
    s.draw(0, 0)
    b = s.draw(5, 1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(s.draw(5, 2)[0], a[0])
    with pytest.raises(ConfigError, match="batch_size"):
        SeededBatches(_data(1), batch_size=13, seed=0)


@pytest.mark.parametrize("autodiff", ["double_backward", "forward_over_reverse"])
def test_accumulation_equals_the_full_batch(autodiff: str) -> None:
    m = _model()
    full = module_problem(m, _ce, _data(1), _data(2), autodiff=autodiff)
    acc = module_problem(m, _ce, _data(1), _data(2), accumulation=3, autodiff=autodiff)
    y, v, u = full.y0, tuple(torch.randn_like(t) for t in full.y0), tuple(torch.randn_like(t) for t in full.y0)
    for a, b in ((full.problem.inner, acc.problem.inner), (full.problem.outer, acc.problem.outer)):
        assert float(b.value(None, y)) == pytest.approx(float(a.value(None, y)), rel=1e-13)
        np.testing.assert_allclose(_flat(b.grad(None, y)), _flat(a.grad(None, y)), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(_flat(b.hvp(None, y, v)), _flat(a.hvp(None, y, v)), rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(_flat(b.tvp(None, y, u, v)), _flat(a.tvp(None, y, u, v)), rtol=1e-10, atol=1e-12)
    # φ: autodiff (no accumulation) against the core's composition of the accumulated oracles
    spec = InnerSpec("signed", 0.4, 1e-8, "exact", 1e-6, -1.0)
    phi = full.problem.inner_factory(spec)
    comp = acc.problem.inner_factory(spec)
    assert type(comp).__name__ == "ComposedTorchInner"
    core = ComposedInner(acc.problem, spec)  # the core's composition of the same oracles
    np.testing.assert_allclose(_flat(comp.hvp(None, y, v)), _flat(core.hvp(None, y, v)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_flat(phi.grad(None, y)), _flat(comp.grad(None, y)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_flat(phi.hvp(None, y, v)), _flat(comp.hvp(None, y, v)), rtol=1e-9, atol=1e-11)


def test_uneven_accumulation_and_bad_batches_raise() -> None:
    with pytest.raises(OracleError, match="divisible"):
        split_batch(torch.ones(5, 2), 2)
    mp = module_problem(_model(), _ce, None, None)
    with pytest.raises(OracleError, match="ModuleBatch"):
        mp.problem.inner.grad(None, mp.y0)
    with pytest.raises(OracleError, match="ModuleBatch"):
        mp.problem.inner.grad(None, mp.y0, batch=_data(1))
    assert mp.problem.inner.grad(None, mp.y0, batch=ModuleBatch(_data(1), _data(2)))[1][0].shape == (6, 4)
    with pytest.raises(ConfigError, match="accumulation"):
        module_problem(_model(), _ce, None, None, accumulation=0)


def test_ofmu_rounds_in_bfloat16_keep_the_dtype_and_stay_finite() -> None:
    from ofmu_opt.core import solver as S

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(torch.bfloat16)
    X, y = _data(1)
    data = (X.to(torch.bfloat16), y)

    def ce(mm: nn.Module, b: Any) -> torch.Tensor:
        return nn.functional.cross_entropy(mm(b[0]).float(), b[1])

    mp = module_problem(m, ce, data, data, batch_size=6)
    solver = S.ofmu(inner_steps=2, outer_rule="adam", outer_lr=1e-2)
    state = solver.init_state(mp.problem, None, mp.y0)
    for k in range(2):
        state = solver.update(mp.problem, state, batch=mp.round_batches(k, 2))
    assert state.terminal == "" and all(t.dtype == torch.bfloat16 for t in state.y)
    assert mp.problem.space.all_finite(state.y)
    assert not all(torch.equal(a, b) for a, b in zip(state.y, mp.y0, strict=True))


def test_batch_norm_in_training_mode_works_with_double_backward_and_is_refused_clearly_otherwise() -> None:
    from ofmu_opt.errors import BackendError

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double().train()
    before = m[1].running_mean.clone()
    mp = module_problem(m, _ce, _data(1), _data(2), batch_size=6)
    v = tuple(torch.randn_like(t) for t in mp.y0)
    assert mp.problem.inner.hvp(None, mp.y0, v)[1][0].shape == (6, 4)
    assert not torch.equal(before, m[1].running_mean)  # buffers updated in place, as in training
    fo = module_problem(m, _ce, _data(1), _data(2), batch_size=6, autodiff="forward_over_reverse")
    with pytest.raises(BackendError, match="double_backward"):
        fo.problem.inner.hvp(None, fo.y0, v)

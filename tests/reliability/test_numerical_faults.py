"""Numerical faults: NaN/Inf from a torch oracle, diverging gradient ascent, zero forget gradients."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from ofmu_opt.backends.torch_autodiff import TorchObjective, similarity_value
from ofmu_opt.backends.torch_backend import TorchSpace
from ofmu_opt.core import Status, gpbgd, ofmu
from ofmu_opt.problem import BilevelProblem
from ofmu_opt.unlearning.data.common import BatchStream
from ofmu_opt.unlearning.methods.base import StepRecord, UnlearnContext, nll_gradient_diagnostics
from ofmu_opt.unlearning.methods.ofmu import OfmuConfig, OfmuMethod
from ofmu_opt.unlearning.methods.registry import make_method
from ofmu_opt.unlearning.models.vision import ClassifierAdapter

SP = TorchSpace()


def _vec(*vals: float) -> tuple[torch.Tensor, ...]:
    return (torch.tensor(vals, dtype=torch.float64),)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_torch_oracle_turning_non_finite_ends_with_numerical_error_and_keeps_the_last_finite_iterate(
    bad: float,
) -> None:
    calls = {"n": 0}

    def outer(x: object, y: tuple[torch.Tensor, ...], b: object) -> torch.Tensor:
        calls["n"] += 1
        scale = 1.0 if calls["n"] < 12 else bad  # the oracle breaks after a few rounds
        return scale * 0.5 * ((y[0] - 1.0) ** 2).sum()

    def inner(x: object, y: tuple[torch.Tensor, ...], b: object) -> torch.Tensor:
        return 0.5 * (y[0] ** 2).sum()

    prob = BilevelProblem(
        TorchObjective(outer, has_x=False), TorchObjective(inner, has_x=False), SP, "min", has_x=False
    )
    seen: list[torch.Tensor] = []
    res = gpbgd(maxiter=200).run(prob, None, _vec(0.0, 0.0, 0.0), callback=lambda r: seen.append(r.y[0].clone()))
    assert res.status is Status.NUMERICAL_ERROR and not res.success
    assert "non-finite" in res.message
    assert len(seen) >= 1 and bool(torch.isfinite(res.y[0]).all())
    assert torch.equal(res.y[0], seen[-1])  # the last finite iterate, not a NaN/Inf one


# ------------------------------------------------------------------------------ diverging ascent


def _data(n: int = 24, d: int = 4, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def _ctx(model: nn.Module, forget: tuple[torch.Tensor, torch.Tensor], retain: tuple[torch.Tensor, torch.Tensor],
         records: list[StepRecord] | None = None) -> UnlearnContext:
    return UnlearnContext(
        model=model,
        reference=copy.deepcopy(model).eval(),
        adapter=ClassifierAdapter(3),
        forget=BatchStream(*forget, 8, seed=1),
        retain=BatchStream(*retain, 8, seed=2),
        diagnostics=None if records is None else records.append,
    )


def test_diverging_gradient_ascent_stops_with_status_non_finite() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    method = make_method("ga", {"steps": 400, "lr": 1e6, "optimizer": "sgd"})
    res = method.run(_ctx(model, _data(seed=1), _data(seed=2)))
    assert res.status == "non_finite"
    assert 0 < res.steps < 400  # detected, and the loop stopped there instead of running on NaNs


def test_cli_reports_a_diverged_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from ofmu_opt.cli import main

    monkeypatch.setenv("OFMU_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "ga"
    code = main([
        "unlearn", "--benchmark", "digits", "--method", "ga", "--quick", "-q", "--out", str(out),
        "--option", "lr=1e9", "--option", "optimizer=sgd", "--option", "steps=60",
        "--option", "experiment.train_steps=50", "--option", "experiment.hidden=16",
    ])
    text = capsys.readouterr().out
    assert code == 1
    assert "status: non_finite" in text and "diverged" in text
    assert json.loads((out / "run.json").read_text())["status"] == "non_finite"


# ------------------------------------------------------------------------------ zero gradients


def test_cosine_of_a_zero_gradient_is_finite_and_zero() -> None:
    z, g = _vec(0.0, 0.0), _vec(1.0, 2.0)
    for kind in ("signed", "abs", "squared"):
        s = similarity_value(z, g, kind, 1e-8)
        assert bool(torch.isfinite(s)) and float(s) == 0.0
    cos, nf, nr = nll_gradient_diagnostics(
        nn.Linear(2, 3, bias=False), ClassifierAdapter(3),
        _batch(torch.zeros(4, 2), torch.tensor([0, 1, 2, 0])), _batch(torch.ones(4, 2), torch.tensor([0, 1, 2, 0])),
    )
    assert (cos, nf) == (0.0, 0.0) and nr > 0


def _batch(x: torch.Tensor, y: torch.Tensor) -> object:
    from ofmu_opt.unlearning.data.common import LabeledBatch

    return LabeledBatch(x, y, torch.arange(y.numel()))


@pytest.mark.parametrize("hvp", ["exact", "finite_difference"])
def test_ofmu_on_a_model_whose_forget_gradient_is_exactly_zero(hvp: str) -> None:
    """Forget inputs are all zero and the model has no bias: ∇L_f = (p − e_y) xᵀ = 0 exactly."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3, bias=False).double()
    xf, yf = torch.zeros(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    xr, yr = _data(seed=3)
    records: list[StepRecord] = []
    ctx = _ctx(model, (xf, yf), (xr.double(), yr), records)
    before = model.weight.detach().clone()
    res = OfmuMethod(OfmuConfig(steps=4, inner_steps=2, beta=0.5, hvp=hvp, lr=1e-2)).run(ctx)
    assert res.status == "completed" and res.steps == 4
    assert bool(torch.isfinite(model.weight).all()) and not torch.equal(model.weight, before)  # retain still moves
    assert [r.grad_forget_norm for r in records] == [0.0] * 4
    assert all(r.cos == 0.0 and math.isfinite(r.loss) for r in records)


def test_core_solver_with_a_zero_forget_gradient_stays_finite() -> None:
    """Torch backend, OFMU preset: the forget objective is constant (gradient exactly zero everywhere)."""

    def forget(x: object, y: tuple[torch.Tensor, ...], b: object) -> torch.Tensor:
        return 0.0 * (y[0] ** 2).sum() + 3.0

    def retain(x: object, y: tuple[torch.Tensor, ...], b: object) -> torch.Tensor:
        return 0.5 * ((y[0] - 2.0) ** 2).sum()

    prob = BilevelProblem(
        TorchObjective(retain, has_x=False, hvp_mode="double_backward"),
        TorchObjective(forget, has_x=False, hvp_mode="double_backward"),
        SP, "max", has_x=False,
    )
    res = ofmu(beta=1.0, maxiter=30, inner_steps=2).run(prob, None, _vec(0.0, 1.0))
    assert res.status is not Status.NUMERICAL_ERROR
    assert bool(torch.isfinite(res.y[0]).all()) and math.isfinite(res.fun)

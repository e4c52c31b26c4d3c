"""Method configurations on one base: pinned per-step losses of every baseline, and the shared fields.

``PINNED`` holds the per-step losses and the final parameter sum of each baseline on a tiny random
classifier, recorded on the tree before the configurations were merged onto one base; the refactor must
reproduce them (checked bit-for-bit on the recording machine, here to 1e-6 relative so that another
CPU's floating-point order does not fail the test).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from ofmu_opt.errors import ConfigError
from ofmu_opt.unlearning.data.common import BatchStream, LabeledBatch
from ofmu_opt.unlearning.methods import loop as loop_module
from ofmu_opt.unlearning.methods.ascent import GAConfig, GAMethod, NPOConfig, SimNPOConfig
from ofmu_opt.unlearning.methods.base import (
    ForgetRetainConfig,
    MethodConfig,
    StepRecord,
    UnlearnContext,
    WeightedConfig,
    search_space,
)
from ofmu_opt.unlearning.methods.loop import device_synchronize
from ofmu_opt.unlearning.methods.registry import get_method, list_methods, make_method
from ofmu_opt.unlearning.models.vision import ClassifierAdapter, build_model

torch.set_num_threads(1)

STEPS = 3


class _IdkAdapter(ClassifierAdapter):
    """A classifier adapter whose "idk" answer is class 0 (so IdkDPO runs on the tiny setup)."""

    def relabel(self, batch: LabeledBatch, kind: str, generator: torch.Generator) -> LabeledBatch:
        if kind == "idk":
            return LabeledBatch(batch.x, torch.zeros_like(batch.y), batch.ids)
        return super().relabel(batch, kind, generator)


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=gen), torch.randint(0, 4, (n,), generator=gen)


def _run(name: str, options: dict[str, object]) -> tuple[list[float], float]:
    model = build_model("mlp", (12,), 4, seed=0, hidden=8)
    xf, yf = _data(24, 1)
    xr, yr = _data(48, 2)
    seen: list[StepRecord] = []
    ctx = UnlearnContext(
        model=copy.deepcopy(model),
        reference=copy.deepcopy(model).eval(),
        adapter=_IdkAdapter(4),
        forget=BatchStream(xf, yf, 8, seed=3),
        retain=BatchStream(xr, yr, 8, seed=4),
        seed=5,
        diagnostics=seen.append,
        diagnostics_every=1,
        fresh_model=lambda: build_model("mlp", (12,), 4, seed=9, hidden=8),
    )
    res = make_method(name, {"steps": STEPS, "lr": 1e-2, **options}).run(ctx)
    total = float(sum(p.detach().double().sum() for p in res.model.parameters()))
    return [r.loss for r in seen], total


CASES: dict[str, dict[str, object]] = {
    "retrain": {},
    "ft": {},
    "ga": {},
    "graddiff": {},
    "graddiff_kl": {"retain_loss": "kl"},
    "npo": {},
    "simnpo": {"retain_loss": "kl"},
    "idk_dpo": {},
    "rmu": {"layer": 0},
    "rl": {},
    "salun": {"keep": 0.3, "mask_batches": 2},
    "l1_sparse": {"l1_schedule": "linear", "l1": 1e-3},
    "blur": {},
    "ngdiff": {},
}

PINNED: dict[str, tuple[list[float], float]] = {
    "blur": ([0.1335759162902832, -0.1149144172668457, -0.1667935848236084], -4.104808708652854),
    "ft": ([1.3966870307922363, 1.3585642576217651, 1.2446210384368896], -4.129763361532241),
    "ga": ([-1.2631111145019531, -1.4514447450637817, -1.4117825031280518], -3.7526919941883534),
    "graddiff": ([0.1335759162902832, -0.09735262393951416, -0.15457689762115479], -3.697395077906549),
    "graddiff_kl": ([-1.2631111145019531, -1.451159954071045, -1.411405324935913], -3.7566305929794908),
    "idk_dpo": ([15.25963020324707, 15.169670104980469, 15.01231861114502], -3.740633764769882),
    "l1_sparse": ([1.4305990934371948, 1.3806735277175903, 1.256870150566101], -3.6977457497268915),
    "ngdiff": ([2.6597981452941895, 2.8197638988494873, 2.6657729148864746], -3.754208717495203),
    "npo": ([15.25963020324707, 15.23190975189209, 15.120317459106445], -3.6974555121269077),
    "retrain": ([1.38747239112854, 1.4387562274932861, 1.505428671836853], 0.1671828250400722),
    "rl": ([2.8560233116149902, 2.7521543502807617, 2.5597972869873047], -3.9793144720606506),
    "rmu": ([35.87523651123047, 37.50381088256836, 32.04043197631836], -3.409369930624962),
    "salun": ([2.737269878387451, 2.7889339923858643, 2.6693062782287598], -3.641730414237827),
    "simnpo": ([0.00022973695013206452, 0.000508971163071692, 0.000144826655741781], -3.6690726806409657),
}


def _method_name(case: str) -> str:
    return case.split("_kl")[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_baseline_reproduces_its_pinned_losses(case: str) -> None:
    losses, total = _run(_method_name(case), CASES[case])
    want_losses, want_total = PINNED[case]
    assert len(losses) == STEPS
    assert losses == pytest.approx(want_losses, rel=1e-6, abs=1e-9)
    assert total == pytest.approx(want_total, rel=1e-6, abs=1e-9)


def test_every_baseline_is_pinned() -> None:
    assert {_method_name(c) for c in CASES} == set(list_methods()) - {"ofmu"}


def _ctx(**kw: object) -> UnlearnContext:
    model = build_model("mlp", (12,), 4, seed=0, hidden=8)
    xf, yf = _data(24, 1)
    xr, yr = _data(48, 2)
    return UnlearnContext(
        model=copy.deepcopy(model),
        reference=copy.deepcopy(model).eval(),
        adapter=ClassifierAdapter(4),
        forget=BatchStream(xf, yf, 8, seed=3),
        retain=BatchStream(xr, yr, 8, seed=4),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("name", ["graddiff", "blur"])
def test_the_loss_is_recorded_every_step_without_diagnostics(name: str) -> None:
    seen: list[StepRecord] = []
    res = make_method(name, {"steps": 5}).run(_ctx(diagnostics=seen.append, diagnostics_every=0))
    assert [r.step for r in res.history] == [0, 1, 2, 3, 4]
    assert all(math.isfinite(r.loss) and r.cos is None and r.grad_forget_norm is None for r in res.history)
    assert seen == []  # the diagnostics callback only gets diagnostic steps


def test_diagnostics_every_n_steps_fill_the_gradient_fields_of_those_steps_only() -> None:
    seen: list[StepRecord] = []
    res = make_method("ga", {"steps": 5}).run(_ctx(diagnostics=seen.append, diagnostics_every=2))
    assert [r.step for r in res.history] == [0, 1, 2, 3, 4]
    assert [r.step for r in res.history if r.cos is not None] == [0, 2, 4] == [r.step for r in seen]
    assert [r.loss for r in seen] == [r.loss for r in res.history if r.cos is not None]


def test_the_loss_history_does_not_depend_on_the_diagnostics() -> None:
    with_diag = make_method("npo", {"steps": 4}).run(_ctx(diagnostics=lambda r: None, diagnostics_every=1))
    without = make_method("npo", {"steps": 4}).run(_ctx(diagnostics_every=0))
    assert [r.loss for r in with_diag.history] == [r.loss for r in without.history]


def test_the_clock_is_read_after_a_device_synchronisation(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CUDA device the loop calls torch.cuda.synchronize before each clock read (mocked on CPU)."""
    calls: list[object] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    ctx = _ctx(diagnostics=lambda r: None, diagnostics_every=1, device="cuda:0")  # the model stays on CPU
    res = make_method("ga", {"steps": 3}).run(ctx)
    assert res.steps == 3
    # start, 2 around the optimiser's construction, per step 2 around the diagnostics + 2 around the
    # after-step hooks, finish
    assert len(calls) == 1 + 2 + 3 * 4 + 1
    assert all(torch.device(d) == torch.device("cuda:0") for d in calls)


def test_no_synchronisation_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    make_method("ga", {"steps": 2}).run(_ctx(device="cpu"))
    assert calls == []
    device_synchronize("cpu")
    assert calls == []


def test_the_sync_hook_is_part_of_the_measured_step_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work still queued when the hooks start is charged to the step, not to the hooks' excluded time.

    Without the synchronisation before the hooks' clock read, the 1 s each step queues would be paid
    inside the hook and excluded: the run would measure 0 s instead of 3 s.
    """
    clock = [0.0]
    pending = [0.0]  # "device" seconds queued by the last step, paid at the next synchronisation

    def sync(device: object = None) -> None:
        clock[0] += pending[0]
        pending[0] = 0.0

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", sync)
    monkeypatch.setattr(loop_module.time, "perf_counter", lambda: clock[0])

    def hook(n: int) -> None:  # a hook that waits for the device itself (as a copy to the host does), then 100 s
        sync()
        clock[0] += 100.0

    ctx = _ctx(device="cuda", progress=hook)

    class _Queue:
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __next__(self) -> object:
            pending[0] += 1.0  # each step queues 1 s of device work
            return next(self.inner)  # type: ignore[call-overload]

    ctx.forget = _Queue(ctx.forget)  # type: ignore[assignment]
    make_optimizer = loop_module.make_optimizer

    def slow_optimizer(*a: Any) -> Any:  # a first construction that pays torch's lazy imports: 7 s, excluded
        clock[0] += 7.0
        return make_optimizer(*a)

    monkeypatch.setattr(loop_module, "make_optimizer", slow_optimizer)
    res = make_method("ga", {"steps": 3}).run(ctx)
    assert res.wall_time_s == pytest.approx(3.0)


def test_configs_share_the_weight_fields_and_their_checks() -> None:
    for name in ("graddiff", "npo", "simnpo", "idk_dpo", "rl", "salun"):
        cfg = get_method(name).config_cls
        assert issubclass(cfg, ForgetRetainConfig)
        with pytest.raises(ConfigError, match="alpha"):
            make_method(name, {"alpha": -1})
        with pytest.raises(ConfigError, match="retain_loss"):
            make_method(name, {"retain_loss": "mse"})
    assert issubclass(get_method("rmu").config_cls, WeightedConfig)
    assert not issubclass(get_method("rmu").config_cls, ForgetRetainConfig)
    assert SimNPOConfig().gamma == 0.125 and NPOConfig().gamma == 1.0 and SimNPOConfig().beta == 4.5


def test_methods_name_themselves_and_default_their_config() -> None:
    for name in set(list_methods()) - {"ofmu"}:
        spec = get_method(name)
        m = spec.method_cls()
        assert m.name == name and type(m.config) is spec.config_cls and isinstance(m.config, MethodConfig)
    assert GAMethod(GAConfig(steps=2)).config.steps == 2


def test_search_space_helper() -> None:
    assert search_space(lr=(1e-4, 1e-2), k=("int", 1, 4)) == {"lr": ("log", 1e-4, 1e-2), "k": ("int", 1.0, 4.0)}
    assert WeightedConfig.SEARCH_SPACE["gamma"] == ("log", 0.05, 2.0)


def test_graddiff_with_the_npo_objective_has_npo_s_loss() -> None:
    npo = make_method("npo", {"steps": 3, "lr": 1e-2}).run(_ctx())
    gd = make_method("graddiff", {"steps": 3, "lr": 1e-2, "objective": "npo", "npo_beta": 0.1}).run(_ctx())
    assert [r.loss for r in gd.history] == pytest.approx([r.loss for r in npo.history], rel=1e-6)


@pytest.mark.parametrize("name", ["ga", "graddiff"])
def test_a_bounded_objective_runs_without_consuming_a_forget_batch(name: str) -> None:
    plain_ctx, obj_ctx = _ctx(), _ctx()
    plain = make_method(name, {"steps": 3}).run(plain_ctx)
    other = make_method(name, {"steps": 3, "objective": "other_class"}).run(obj_ctx)
    assert other.status == "completed" and all(math.isfinite(r.loss) for r in other.history)
    assert [r.loss for r in other.history] != [r.loss for r in plain.history]
    assert obj_ctx.forget.state_dict()["pos"] == plain_ctx.forget.state_dict()["pos"]  # type: ignore[attr-defined]


def test_objective_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="objective"):
        make_method("ga", {"objective": "bogus"})
    with pytest.raises(ConfigError, match="npo_beta"):
        make_method("graddiff", {"objective": "npo", "npo_beta": 0})
    with pytest.raises(ConfigError, match="idk"):  # a language-model objective on a classifier
        make_method("ga", {"steps": 1, "objective": "idk"}).run(_ctx())
    with pytest.raises(ConfigError, match="unknown option"):
        make_method("npo", {"objective": "npo"})


if __name__ == "__main__":  # print the table to pin (run on the tree before a refactor)
    for c in sorted(CASES):
        print(f"    {c!r}: {_run(_method_name(c), CASES[c])!r},")

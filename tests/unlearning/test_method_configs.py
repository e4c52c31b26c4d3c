"""Method configurations on one base: pinned per-step losses of every baseline, and the shared fields.

``PINNED`` holds the per-step losses and the final parameter sum of each baseline on a tiny random
classifier, recorded on the tree before the configurations were merged onto one base; the refactor must
reproduce them (checked bit-for-bit on the recording machine, here to 1e-6 relative so that another
CPU's floating-point order does not fail the test).
"""

from __future__ import annotations

import copy

import pytest
import torch

from ofmu_opt.unlearning.data.common import BatchStream, LabeledBatch
from ofmu_opt.unlearning.methods.base import StepRecord, UnlearnContext
from ofmu_opt.unlearning.methods.registry import list_methods, make_method
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


if __name__ == "__main__":  # print the table to pin (run on the tree before a refactor)
    for c in sorted(CASES):
        print(f"    {c!r}: {_run(_method_name(c), CASES[c])!r},")

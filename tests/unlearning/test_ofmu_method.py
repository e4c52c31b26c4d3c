"""The OFMU unlearning method on the method contract: registry, config checks, a digits run, determinism,
and agreement of one method round with the generic solver driven by hand."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ofmu_opt.backends.torch_module import ModuleBatch, module_problem
from ofmu_opt.core.solver import RoundBatches
from ofmu_opt.errors import ConfigError
from ofmu_opt.unlearning.data.common import BatchStream
from ofmu_opt.unlearning.experiment import VisionExperimentConfig, load_data, run_method, train_classifier
from ofmu_opt.unlearning.methods.base import UnlearnContext
from ofmu_opt.unlearning.methods.ofmu import OfmuConfig, OfmuMethod
from ofmu_opt.unlearning.methods.registry import get_method, make_method
from ofmu_opt.unlearning.models.vision import ClassifierAdapter, build_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    cfg = VisionExperimentConfig(hidden=16, train_steps=120, batch_size=16, diagnostics_every=1)
    data = load_data(cfg)
    model = build_model("mlp", (64,), 10, seed=0, hidden=16)
    x = torch.cat([data.x_forget, data.x_retain])
    y = torch.cat([data.y_forget, data.y_retain])
    train_classifier(model, x, y, steps=120, lr=3e-3, batch_size=32, seed=0, device=torch.device("cpu"))
    return cfg, data, model


def _params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_registry_resolves_ofmu() -> None:
    spec = get_method("ofmu")
    assert spec.method_cls is OfmuMethod and spec.config_cls is OfmuConfig
    m = make_method("ofmu", {"steps": "2", "beta": "0.2", "hvp": "forget_hessian", "outer_lr": "none"})
    assert m.config.steps == 2 and m.config.beta == 0.2 and m.config.outer_lr is None


@pytest.mark.parametrize(
    "options,match",
    [({"beta": -1}, "beta"), ({"hvp": "gauss"}, "hvp"), ({"similarity": "cos"}, "similarity"),
     ({"weight_decay": 0.1}, "weight_decay"), ({"penalty_max": 0.5}, "penalty_max"),
     ({"inner_rule": "lbfgs"}, "inner_rule"), ({"params": "some"}, "params"), ({"accumulation": 0}, "accumulation")],
)
def test_config_range_checks(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_method("ofmu", options)


def test_search_space_names_config_fields() -> None:
    fields = set(OfmuConfig.__dataclass_fields__)
    assert set(OfmuConfig.SEARCH_SPACE) <= fields


@pytest.mark.parametrize("hvp", ["exact", "finite_difference", "forget_hessian"])
def test_runs_records_diagnostics_and_raises_the_forget_loss(setup, hvp: str) -> None:
    cfg, data, original = setup
    method = make_method("ofmu", {"steps": 4, "lr": 1e-2, "inner_lr": 0.05, "inner_steps": 2, "hvp": hvp})
    before = _params(original)
    res = run_method(method, original, data, cfg, torch.device("cpu"), seed=0)
    assert res.status == "completed" and res.steps == 4
    assert torch.equal(before, _params(original))
    assert not torch.equal(before, _params(res.model))
    assert [r.step for r in res.history] == [0, 1, 2, 3]
    assert all(-1 <= r.cos <= 1 and r.penalty is not None and r.penalty >= 0 for r in res.history)
    assert all(math.isfinite(r.loss) for r in res.history)
    adapter = ClassifierAdapter(data.splits.num_classes)

    def forget_nll(m: torch.nn.Module) -> float:
        m.eval()
        with torch.no_grad():
            return float(adapter.per_example_nll(m, next(BatchStream(data.x_forget, data.y_forget, 10**6, 0))).mean())

    assert forget_nll(copy.deepcopy(res.model)) > forget_nll(copy.deepcopy(original))


def test_same_seed_same_result(setup) -> None:
    cfg, data, original = setup
    runs = [run_method(make_method("ofmu", {"steps": 3, "inner_steps": 1}), original, data, cfg, "cpu", seed=2)
            for _ in range(2)]
    assert torch.equal(_params(runs[0].model), _params(runs[1].model))


def test_one_method_round_equals_the_generic_solver_by_hand(setup) -> None:
    cfg, data, original = setup
    c = OfmuConfig(steps=1, inner_steps=2, lr=1e-2, inner_lr=0.05, optimizer="sgd")
    adapter = ClassifierAdapter(data.splits.num_classes)

    def streams(seed: int) -> tuple[BatchStream, BatchStream]:
        return (BatchStream(data.x_forget, data.y_forget, 16, seed=seed),
                BatchStream(data.x_retain, data.y_retain, 16, seed=seed + 1))

    model = copy.deepcopy(original)
    f, r = streams(5)
    ctx = UnlearnContext(model=model, reference=copy.deepcopy(original), adapter=adapter, forget=f, retain=r)
    OfmuMethod(c).run(ctx)

    by_hand = copy.deepcopy(original)
    by_hand.train()
    f, r = streams(5)
    inner = tuple(ModuleBatch(next(f), next(r)) for _ in range(2))
    outer = ModuleBatch(next(f), next(r))
    mp = module_problem(by_hand, lambda m, b: adapter.per_example_nll(m, b).mean(), None, None, default_batch=outer)
    solver = c.solver()
    state = solver.init_state(mp.problem, None, mp.y0)
    state = solver.update(mp.problem, state, batch=RoundBatches(inner=inner, outer=outer))
    got = dict(model.named_parameters())
    for name, t in zip(mp.names, state.y, strict=True):
        assert torch.equal(got[name].detach(), t)

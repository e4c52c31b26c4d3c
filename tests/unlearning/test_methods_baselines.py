"""The method contract and every baseline on a tiny digits setup: runs, moves, is deterministic."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ofmu_opt.errors import ConfigError
from ofmu_opt.unlearning.data.common import BatchStream, LabeledBatch
from ofmu_opt.unlearning.experiment import VisionExperimentConfig, load_data, run_method, train_classifier
from ofmu_opt.unlearning.methods.base import (
    MethodConfig,
    StepRecord,
    TaskAdapter,
    UnlearnContext,
    flat_cos,
    nll_gradient_diagnostics,
)
from ofmu_opt.unlearning.methods.projection import _blur_direction, _ngdiff_direction
from ofmu_opt.unlearning.methods.registry import (
    MethodUnavailableError,
    get_method,
    list_methods,
    make_method,
)
from ofmu_opt.unlearning.metrics.vision import accuracy
from ofmu_opt.unlearning.models.vision import ClassifierAdapter, build_model

torch.set_num_threads(1)

CLASSIFIER_METHODS = [m for m in list_methods("classifier") if m != "ofmu"]


@pytest.fixture(scope="module")
def setup():
    cfg = VisionExperimentConfig(hidden=32, train_steps=250, batch_size=32, diagnostics_every=1)
    data = load_data(cfg)
    model = build_model("mlp", (64,), 10, seed=0, hidden=32)
    x = torch.cat([data.x_forget, data.x_retain])
    y = torch.cat([data.y_forget, data.y_retain])
    train_classifier(model, x, y, steps=250, lr=3e-3, batch_size=32, seed=0, device=torch.device("cpu"))
    return cfg, data, model


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_unknown_method_raises_config_error_listing_names():
    with pytest.raises(ConfigError, match="expected one of retrain, ft, ga"):
        get_method("gradascent")


def test_ofmu_is_registered_and_resolves_or_reports_unavailable():
    assert "ofmu" in list_methods()
    try:
        spec = get_method("ofmu")
    except MethodUnavailableError as exc:
        assert "ofmu" in str(exc)
    else:
        assert spec.method_cls.__name__ == "OfmuMethod" and spec.config_cls.__name__ == "OfmuConfig"


def test_idk_dpo_is_lm_only():
    assert "idk_dpo" in list_methods("lm") and "idk_dpo" not in list_methods("classifier")


@pytest.mark.parametrize(
    "name,options,match",
    [
        ("ga", {"lr": 0}, "lr"),
        ("ga", {"steps": 0}, "steps"),
        ("graddiff", {"gamma": -1}, "gamma"),
        ("graddiff", {"retain_loss": "mse"}, "retain_loss"),
        ("npo", {"beta": 0}, "beta"),
        ("salun", {"keep": 1.5}, "keep"),
        ("ft", {"optimizer": "lbfgs"}, "optimizer"),
        ("ft", {"lrr": 1}, "unknown option"),
    ],
)
def test_config_range_checks(name, options, match):
    with pytest.raises(ConfigError, match=match):
        make_method(name, options)


@pytest.mark.parametrize("name", CLASSIFIER_METHODS)
def test_each_method_runs_a_few_steps_and_changes_the_model(setup, name):
    cfg, data, original = setup
    method = make_method(name, {"steps": 4, "lr": 1e-3})
    before = _params(original)
    res = run_method(method, original, data, cfg, torch.device("cpu"), seed=0)
    assert res.status == "completed" and res.steps == 4
    assert torch.equal(before, _params(original)), "the original model must not be modified"
    assert not torch.equal(before, _params(res.model)) or name == "retrain"
    assert res.wall_time_s > 0
    assert [r.step for r in res.history] == [0, 1, 2, 3]
    assert all(-1.0 <= r.cos <= 1.0 and r.grad_forget_norm > 0 for r in res.history)


@pytest.mark.parametrize("name", ["graddiff", "salun", "blur"])
def test_same_seed_gives_identical_results(setup, name):
    cfg, data, original = setup
    runs = [
        run_method(make_method(name, {"steps": 5}), original, data, cfg, torch.device("cpu"), seed=3) for _ in range(2)
    ]
    assert torch.equal(_params(runs[0].model), _params(runs[1].model))
    assert [r.cos for r in runs[0].history] == [r.cos for r in runs[1].history]
    other = run_method(make_method(name, {"steps": 5}), original, data, cfg, torch.device("cpu"), seed=4)
    assert not torch.equal(_params(runs[0].model), _params(other.model))


def test_ga_drives_forget_accuracy_down(setup):
    cfg, data, original = setup
    before = accuracy(original, data.x_forget, data.y_forget)
    res = run_method(make_method("ga", {"steps": 30, "lr": 1e-2}), original, data, cfg, "cpu", seed=0)
    after = accuracy(res.model, data.x_forget, data.y_forget)
    assert before > 95.0
    assert after < before - 50.0


@pytest.mark.parametrize("name", ["npo", "simnpo", "rl"])
def test_forget_terms_raise_the_forget_loss(setup, name):
    cfg, data, original = setup
    adapter = ClassifierAdapter(10)
    batch = LabeledBatch(data.x_forget, data.y_forget, torch.arange(data.y_forget.numel()))
    nll0 = float(adapter.per_example_nll(original, batch).mean().detach())
    res = run_method(make_method(name, {"steps": 20, "lr": 3e-3, "alpha": 0.0}), original, data, cfg, "cpu", seed=0)
    assert float(adapter.per_example_nll(res.model, batch).mean().detach()) > nll0 + 0.1


def test_ft_keeps_retain_accuracy(setup):
    cfg, data, original = setup
    res = run_method(make_method("ft", {"steps": 20}), original, data, cfg, "cpu", seed=0)
    assert accuracy(res.model, data.x_retain, data.y_retain) >= accuracy(original, data.x_retain, data.y_retain) - 2


def test_salun_only_moves_masked_entries(setup):
    cfg, data, original = setup
    res = run_method(make_method("salun", {"steps": 5, "keep": 0.2}), original, data, cfg, "cpu", seed=0)
    moved = (_params(res.model) != _params(original)).float().mean().item()
    assert 0.0 < moved <= 0.2 + 1e-3
    assert abs(res.info["mask_fraction"] - 0.2) < 0.02


def test_retrain_method_needs_a_factory_and_trains_a_new_model(setup):
    cfg, data, original = setup
    res = run_method(make_method("retrain", {"steps": 150, "lr": 3e-3}), original, data, cfg, "cpu", seed=0)
    assert res.model is not original and accuracy(res.model, data.x_retain, data.y_retain) > 80
    ctx = UnlearnContext(
        model=copy.deepcopy(original),
        reference=original,
        adapter=ClassifierAdapter(10),
        forget=BatchStream(data.x_forget, data.y_forget, 8, seed=0),
        retain=BatchStream(data.x_retain, data.y_retain, 8, seed=0),
    )
    with pytest.raises(ConfigError, match="fresh_model"):
        make_method("retrain", {"steps": 1}).run(ctx)


def test_idk_dpo_on_a_classifier_raises_config_error(setup):
    cfg, data, original = setup
    with pytest.raises(ConfigError, match="idk"):
        run_method(make_method("idk_dpo", {"steps": 2}), original, data, cfg, "cpu", seed=0)


def test_blur_direction_removes_the_retain_component_along_the_forget_gradient():
    gen = torch.Generator().manual_seed(0)
    gf = [torch.randn(5, generator=gen), torch.randn(3, generator=gen)]
    gr = [torch.randn(5, generator=gen), torch.randn(3, generator=gen)]
    gamma = 0.3
    d = _blur_direction(gf, gr, gamma)
    # <d, gF>/‖gF‖² = gamma exactly: the retain part is orthogonal to gF
    dot = sum((a * b).sum() for a, b in zip(d, gf))
    nf2 = sum((a * a).sum() for a in gf)
    assert math.isclose(float(dot / nf2), gamma, rel_tol=1e-5)


def test_ngdiff_direction_is_difference_of_unit_vectors():
    gf, gr = [torch.tensor([3.0, 4.0])], [torch.tensor([0.0, 2.0])]
    d = _ngdiff_direction(gf, gr)
    assert torch.allclose(d[0], torch.tensor([0.0, 1.0]) - torch.tensor([0.6, 0.8]))


def test_diagnostics_match_a_direct_computation(setup):
    _, data, original = setup
    adapter = ClassifierAdapter(10)
    fb = LabeledBatch(data.x_forget[:16], data.y_forget[:16], torch.arange(16))
    rb = LabeledBatch(data.x_retain[:16], data.y_retain[:16], torch.arange(16))
    params = list(original.parameters())
    for p in params:
        p.grad = None
    cos, nf, nr = nll_gradient_diagnostics(original, adapter, fb, rb)
    assert all(p.grad is None for p in params), "diagnostics must not leave gradients behind"
    gf = torch.autograd.grad(adapter.per_example_nll(original, fb).mean(), params)
    gr = torch.autograd.grad(adapter.per_example_nll(original, rb).mean(), params)
    assert math.isclose(cos, float(flat_cos(gf, gr)), rel_tol=1e-5, abs_tol=1e-7)


def test_classifier_adapter_satisfies_the_protocol_and_relabels_wrongly():
    adapter = ClassifierAdapter(10)
    assert isinstance(adapter, TaskAdapter)
    b = LabeledBatch(torch.zeros(50, 64), torch.arange(50) % 10, torch.arange(50))
    r = adapter.relabel(b, "random", torch.Generator().manual_seed(0))
    assert (r.y != b.y).all() and r.y.min() >= 0 and r.y.max() <= 9
    with pytest.raises(ConfigError, match="random"):
        adapter.relabel(b, "idk", torch.Generator())
    assert torch.equal(adapter.target_length(b), torch.ones(50))


def test_kl_to_reference_is_zero_for_the_same_model_and_positive_otherwise():
    adapter = ClassifierAdapter(10)
    a, b = build_model("mlp", (64,), 10, seed=0, hidden=8), build_model("mlp", (64,), 10, seed=1, hidden=8)
    batch = LabeledBatch(
        torch.randn(6, 64, generator=torch.Generator().manual_seed(0)),
        torch.zeros(6, dtype=torch.long),
        torch.arange(6),
    )
    assert float(adapter.kl_to_reference(a, a, batch).detach()) == pytest.approx(0.0, abs=1e-6)
    assert float(adapter.kl_to_reference(a, b, batch).detach()) > 0


def test_non_finite_loss_stops_with_status(setup):
    cfg, data, original = setup
    broken = copy.deepcopy(original)
    with torch.no_grad():
        broken.head.bias.fill_(float("nan"))
    res = run_method(make_method("ga", {"steps": 3}), broken, data, cfg, "cpu", seed=0)
    assert res.status == "non_finite" and res.steps == 0


def test_diagnostics_callback_and_checkpoint_hook_are_called(setup):
    _, data, original = setup
    seen: list[StepRecord] = []
    ckpts: list[int] = []
    ctx = UnlearnContext(
        model=copy.deepcopy(original),
        reference=original,
        adapter=ClassifierAdapter(10),
        forget=BatchStream(data.x_forget, data.y_forget, 8, seed=0),
        retain=BatchStream(data.x_retain, data.y_retain, 8, seed=0),
        diagnostics=seen.append,
        diagnostics_every=2,
        checkpoint=lambda step, m: ckpts.append(step),
        checkpoint_every=3,
    )
    res = make_method("graddiff", {"steps": 7}).run(ctx)
    assert [r.step for r in seen] == [0, 2, 4, 6] and ckpts == [3, 6] and res.steps == 7


def test_method_config_defaults():
    c = MethodConfig()
    assert c.optimizer == "adam" and c.steps >= 1 and "lr" in MethodConfig.SEARCH_SPACE

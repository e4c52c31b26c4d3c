"""Experiment runner: model cache, metric sanity properties of Retrain, determinism, metric helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ofmu_opt.errors import CheckpointError, ConfigError
from ofmu_opt.unlearning.experiment import (
    VisionExperimentConfig,
    evaluate,
    load_data,
    load_state,
    reference_models,
    run_method,
    save_state,
)
from ofmu_opt.unlearning.methods.registry import make_method
from ofmu_opt.unlearning.metrics.vision import gaps, mia_efficacy, true_class_confidence
from ofmu_opt.unlearning.models.vision import build_model
from ofmu_opt.unlearning.plots import pareto_front

torch.set_num_threads(1)
CPU = torch.device("cpu")


def _cfg(tmp, scenario="random10", seed=0):
    return VisionExperimentConfig(
        scenario=scenario, hidden=64, train_steps=400, seed=seed, cache_dir=str(tmp), diagnostics_every=0
    )


@pytest.fixture(scope="module")
def random10(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    cfg = _cfg(cache)
    data = load_data(cfg)
    original, retrain, t = reference_models(cfg, data, CPU)
    return cfg, data, original, retrain, t


def _binomial_tol(p: float, n: int) -> float:
    return 100.0 * (3.0 * np.sqrt(max(p * (1 - p), 0.02) / n))


def test_retrain_ua_on_random_forgetting_is_close_to_its_test_error(random10):
    _, data, _, retrain, _ = random10
    m, _ = evaluate(retrain, data, CPU)
    test_err = 100.0 - m["TA"]
    # the forget set is unseen by Retrain, so its error estimates the same generalisation error
    assert abs(m["UA"] - test_err) <= _binomial_tol(test_err / 100, data.y_forget.numel())
    assert m["RA"] > 99.0


def test_retrain_mia_efficacy_is_in_the_band_of_unseen_data(random10):
    _, data, original, retrain, _ = random10
    m_rt, _ = evaluate(retrain, data, CPU)
    m_or, _ = evaluate(original, data, CPU)
    # the same SVC applied to other unseen samples (validation) gives the non-member rate expected for
    # data the model never saw; Retrain's forget set must sit in that band, above the original's
    conf_r = true_class_confidence(retrain, data.x_retain, data.y_retain)
    conf_t = true_class_confidence(retrain, data.x_test, data.y_test)
    conf_v = true_class_confidence(retrain, data.x_val, data.y_val)
    unseen_rate, _ = mia_efficacy(conf_r[data.shadow_test], conf_t, conf_v)
    tol = _binomial_tol(unseen_rate / 100, data.y_forget.numel()) + _binomial_tol(unseen_rate / 100, conf_v.size)
    assert abs(m_rt["MIA"] - unseen_rate) <= tol
    assert 2.0 < m_rt["MIA"] < 60.0
    assert m_rt["MIA"] > m_or["MIA"]
    assert m_or["UA"] < 2.0


def test_class_wise_retrain_never_predicts_the_forgotten_class(tmp_path):
    cfg = _cfg(tmp_path, scenario="class:3")
    data = load_data(cfg)
    _, retrain, _ = reference_models(cfg, data, CPU)
    m, per = evaluate(retrain, data, CPU)
    assert m["UA"] == 100.0 and m["MIA"] > 90.0 and m["TA"] > 90.0
    assert len(per["UA"]) == data.y_forget.numel()


def test_models_are_cached_by_recipe(random10, tmp_path):
    cfg, data, original, _, t = random10
    original2, _, t2 = reference_models(cfg, data, CPU)
    assert t2 == t  # the stored train time: loaded, not retrained
    for a, b in zip(original.parameters(), original2.parameters()):
        assert torch.equal(a, b)
    files = sorted(p.name for p in __import__("pathlib").Path(cfg.cache_dir).iterdir())
    assert sum(f.endswith(".safetensors") for f in files) == 2
    other = VisionExperimentConfig(**{**cfg.__dict__, "train_lr": 2e-3})
    _, _, t3 = reference_models(other, data, CPU)
    files2 = list(__import__("pathlib").Path(cfg.cache_dir).glob("*.safetensors"))
    assert len(files2) == 4 and t3 != t


def test_corrupt_cache_entry_is_retrained(tmp_path):
    cfg = _cfg(tmp_path)
    data = load_data(cfg)
    o1, _, _ = reference_models(cfg, data, CPU)
    for p in tmp_path.glob("original-*.safetensors"):
        p.write_bytes(b"not a safetensors file")
    o2, _, _ = reference_models(cfg, data, CPU)
    for a, b in zip(o1.parameters(), o2.parameters()):
        assert torch.equal(a, b)  # deterministic retraining gives the same weights


def test_load_state_rejects_mismatched_and_corrupt_files(tmp_path):
    m = build_model("mlp", (64,), 10, seed=0, hidden=8)
    save_state(m, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="does not match"):
        load_state(build_model("resnet18", (3, 32, 32), 10, seed=0, hidden=4), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="expected shape"):
        load_state(build_model("mlp", (64,), 10, seed=0, hidden=9), tmp_path / "m.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_state(m, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state(m, tmp_path / "missing.safetensors")


def test_same_seed_same_metrics(random10):
    cfg, data, original, _, _ = random10
    ms = []
    for _ in range(2):
        res = run_method(make_method("npo", {"steps": 10}), original, data, cfg, CPU, seed=1)
        ms.append(evaluate(res.model, data, CPU)[0])
    assert ms[0] == ms[1]


def test_validation_proxy_never_reads_the_test_split(random10):
    _, data, original, _, _ = random10
    poisoned = type(data)(**{**data.__dict__, "x_test": torch.full_like(data.x_test, float("nan"))})
    val, _ = evaluate(original, poisoned, CPU, split="val")
    assert all(np.isfinite(v) for v in val.values())


def test_config_validation():
    with pytest.raises(ConfigError, match="scenario"):
        VisionExperimentConfig(scenario="half")
    with pytest.raises(ConfigError, match="data_path"):
        VisionExperimentConfig(benchmark="cifar10")
    with pytest.raises(ConfigError, match="resnet18"):
        VisionExperimentConfig(model="resnet18")
    with pytest.raises(ConfigError, match="batch_size"):
        VisionExperimentConfig(batch_size=0)


def test_gaps_and_pareto_front():
    rt = {"UA": 5.0, "RA": 100.0, "TA": 96.0, "MIA": 24.0}
    assert gaps(rt, rt)["avg_gap"] == 0.0
    assert gaps({**rt, "UA": 9.0}, rt)["avg_gap"] == 1.0
    assert pareto_front([(0, 0), (1, 2), (2, 1), (1, 1)]) == [1, 2]


def test_mia_efficacy_separates_confident_members_from_unsure_non_members():
    members = np.full(50, 0.999)
    non = np.linspace(0.2, 0.7, 50)
    eff_unseen, _ = mia_efficacy(members, non, np.linspace(0.25, 0.65, 20))
    eff_seen, _ = mia_efficacy(members, non, np.full(20, 0.999))
    assert eff_unseen > 90.0 and eff_seen < 10.0


def test_resnet18_cifar_stem_keeps_resolution_and_runs():
    m = build_model("resnet18", (3, 32, 32), 10, seed=0, hidden=8)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert m(x).shape == (2, 10)
    assert m.blocks[0](x).shape[-1] == 32  # 3×3 stride-1 stem, no max-pool
    assert m.features(x, -1).shape == (2, 64)
    n_params = sum(p.numel() for p in build_model("resnet18", (3, 32, 32), 10, seed=0, hidden=64).parameters())
    assert 11_000_000 < n_params < 11_300_000  # the standard CIFAR ResNet-18 has about 11.17 M


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_a_config_error():
    from ofmu_opt.unlearning.experiment import resolve_device

    with pytest.raises(ConfigError, match="cuda"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_svc_gamma_option_reaches_the_mia_svc(random10):
    """``experiment.svc_gamma`` (CLI: ``--option experiment.svc_gamma=scale``) is the rule the MIA uses."""
    import dataclasses

    cfg, data, original, _, _ = random10
    assert cfg.svc_gamma == "auto" and data.svc_gamma == "auto"
    assert load_data(dataclasses.replace(cfg, svc_gamma="scale")).svc_gamma == "scale"
    conf_r = true_class_confidence(original, data.x_retain, data.y_retain)[data.shadow_test]
    conf_t = true_class_confidence(original, data.x_test, data.y_test)
    conf_f = true_class_confidence(original, data.x_forget, data.y_forget)
    for gamma in ("auto", "scale"):
        m, _ = evaluate(original, dataclasses.replace(data, svc_gamma=gamma), CPU)
        assert m["MIA"] == pytest.approx(mia_efficacy(conf_r, conf_t, conf_f, svc_gamma=gamma)[0])
    with pytest.raises(ConfigError, match="svc_gamma"):
        VisionExperimentConfig(svc_gamma="bogus")

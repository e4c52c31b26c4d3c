"""``ofmu unlearn`` on a CIFAR-10 fixture in the pickle format, and TOML configs on digits."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from ofmu_opt.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OFMU_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "model_cache_cifar"))


def _fixture(root):
    d = root / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 24) for i in range(1, 6)), ("test_batch", 20)]:
        payload = {
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in np.arange(n) % 10],
        }
        (d / name).write_bytes(pickle.dumps(payload, protocol=2))
    return root


def test_unlearn_on_cifar10_fixture(tmp_path, capsys):
    data = _fixture(tmp_path)
    out = tmp_path / "out"
    code = main(
        ["unlearn", "--benchmark", "cifar10", "--data", str(data), "--scenario", "class:2", "--method", "rl",
         "--option", "experiment.model=cnn", "--option", "experiment.hidden=4",
         "--option", "experiment.train_steps=5", "--option", "steps=3", "--out", str(out), "-q"]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "CIFAR10_SUMMARY.json").read_text())
    assert set(summary) >= {"UA", "RA", "TA", "MIA", "RTE", "avg_gap"}
    assert 0.0 <= summary["UA"] <= 100.0
    assert 'model = "cnn"' in (out / "experiment.toml").read_text()


def test_cifar10_without_data_is_a_one_line_error(tmp_path, capsys):
    assert main(["unlearn", "--benchmark", "cifar10", "--method", "ft", "--out", str(tmp_path), "-q"]) == 2
    assert "data_path" in capsys.readouterr().err
    assert main(["unlearn", "--benchmark", "cifar10", "--data", str(tmp_path), "--method", "ft", "-q"]) == 2
    assert "lacks data_batch_1" in capsys.readouterr().err


def test_toml_config_sets_experiment_and_method_options(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        "[experiment]\nhidden = 16\ntrain_steps = 120\n\n[method]\nlr = 0.002\nsteps = 4\ngamma = 0.5\n",
        encoding="utf-8",
    )
    out = tmp_path / "o"
    code = main(["unlearn", "--benchmark", "digits", "--method", "graddiff", "--config", str(cfg),
                 "--option", "alpha=2", "--out", str(out), "-q"])  # fmt: skip
    assert code == 0
    method = (out / "method.toml").read_text()
    assert "lr = 0.002" in method and "gamma = 0.5" in method and "alpha = 2.0" in method
    assert "hidden = 16" in (out / "experiment.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment]\nhiden = 3\n", encoding="utf-8")
    assert main(["unlearn", "--benchmark", "digits", "--method", "ga", "--config", str(bad), "-q"]) == 2

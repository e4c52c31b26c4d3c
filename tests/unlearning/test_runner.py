"""The runner's checks before any work (#17/#18): options, bounds, paths, damaged records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ofmu_opt.cli import main
from ofmu_opt.errors import ConfigError
from ofmu_opt.unlearning.benchmarks import get_benchmark
from ofmu_opt.unlearning.runner import RunConfig, bench, evaluate, unlearn

GA = ["unlearn", "--method", "ga"]
GD = ["unlearn", "--method", "graddiff"]
TT = ["unlearn", "--benchmark", "tinytofu", "--method", "ga"]
QUICK = ["--quick", "-q", "--option", "experiment.train_steps=60", "--option", "experiment.hidden=16"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFMU_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "runner_cache"))
    monkeypatch.setenv("OFMU_CACHE", str(tmp_path_factory.getbasetemp() / "runner_lm_cache"))


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("ofmu: error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "argv, needle",
    [
        ([*GD, "--option", "grad_diff.lr=3"], "valid prefixes: 'experiment.', 'graddiff.'"),
        ([*GD, "--option", "ga.lr=3"], "a known method, but not one this run uses"),
        ([*GA, "--option", "ga.nosuch=3"], "ga has no option 'nosuch'"),
        ([*GA, "--seed", "1" + "0" * 30], "--seed: expected a value <= 4294967295"),
        ([*GA, "--threads", "9" * 25], "--threads: expected a value <= 4096"),
        ([*GA, "--checkpoint-every", "-1"], "--checkpoint_every: expected a value >= 0"),
        ([*GA, "--option", "experiment.hidden=1000000000"], "experiment.hidden: expected a value <= 65536"),
        ([*GA, "--option", "experiment.train_lr=nan"], "experiment.train_lr: expected a finite number"),
        ([*GA, "--split", "forget05"], "--split: not used by 'ofmu unlearn --benchmark digits'"),
        ([*TT, "--model", "/does/not/exist"], "--model: not used"),
        ([*TT, "--option", "experiment.n_embd=0"], "n_embd: expected a value >= 1"),
        (["bench", "--benchmark", "tofu"], "does not support 'bench'"),
        (["eval", "--benchmark", "mcq", "--method", "ga"], "--method: not used"),
        (["bench", "--methods", "ga", "--option", "ft.lr=1"], "unknown prefix 'ft'"),
    ],
)
def test_bad_options_exit_2_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                            needle: str) -> None:
    out = tmp_path / "o"
    assert main([*argv, "--out", str(out), "-q"]) == 2
    assert needle in _err(capsys)
    assert not out.exists()  # nothing written


def test_run_config_is_typed_and_bounded() -> None:
    with pytest.raises(ConfigError, match="seed: expected a value >= 0"):
        RunConfig(seed=-1)
    with pytest.raises(ConfigError, match="device"):
        RunConfig(device="tpu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RunConfig"):
        unlearn({"benchmark": "digits"})  # type: ignore[arg-type]
    assert RunConfig(method="ga", quick=True).set_fields() == {"method", "quick"}


def _dangling(tmp: Path) -> Path:
    link = tmp / "dangling"
    link.symlink_to(tmp / "nowhere")
    return link


def _loop(tmp: Path) -> Path:
    a, b = tmp / "a", tmp / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


@pytest.mark.parametrize("make, needle", [(_dangling, "dangling symbolic link"), (_loop, "symbolic-link loop")])
def test_out_through_a_bad_symlink_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any,
                                              needle: str) -> None:
    out = make(tmp_path) / "run"
    assert main([*GA, "--out", str(out), *QUICK]) == 2
    assert needle in _err(capsys)


def test_a_cache_path_that_is_a_file_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    cache.write_text("not a directory")
    for bench_args in (["--benchmark", "digits"], ["--benchmark", "tinytofu"]):
        assert main(["unlearn", *bench_args, "--method", "ga", "--out", str(tmp_path / "o"),
                     "--option", f"experiment.cache_dir={cache}", "-q"]) == 2  # fmt: skip
        assert "cache directory" in _err(capsys)
    assert not (tmp_path / "o").exists()


def test_lm_out_is_checked_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "file"
    out.write_text("x")
    cache = tmp_path / "lmcache"
    assert main([*TT, "--out", str(out),
                 "--option", f"experiment.cache_dir={cache}", "-q"]) == 2  # fmt: skip
    assert "expected a directory, received a file" in _err(capsys)
    assert not cache.exists()  # no model was trained


@pytest.mark.parametrize("content, needle", [("{", "not valid JSON"), ('{"UA": 1}', "expected the metrics")])
def test_retain_logs_are_read_and_checked_before_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            content: str, needle: str) -> None:
    model = tmp_path / "m"
    assert main([*GA, "--out", str(model), "--option", "steps=2", *QUICK]) == 0
    logs = tmp_path / "logs.json"
    logs.write_text(content)
    capsys.readouterr()
    assert main(["eval", "--model", str(model), "--retain-logs", str(logs), "--out", str(tmp_path / "e"), "-q"]) == 2
    assert needle in _err(capsys)
    assert not (tmp_path / "e").exists()
    assert main(["eval", "--model", str(model), "--retain-logs", str(tmp_path / "none.json"), "-q",
                 "--out", str(tmp_path / "e")]) == 2  # fmt: skip
    assert "does not exist" in _err(capsys)


def test_bench_resume_refuses_a_damaged_run_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b"
    cfg = RunConfig(command="bench", benchmark="digits", methods="ga", seeds=1, budget=1, quick=True, out=str(out),
                    options=("steps=3", "experiment.train_steps=60", "experiment.hidden=16"), quiet=True)
    first = bench(cfg)
    assert first.code == 0 and first.results["budget_spent"]["ga"]["seed_steps"] == 3
    assert first.results["budget_spent"]["ga"]["seed_grad_evals"] >= 3
    per_seed = json.loads((out / "runs" / "ga-seed0" / "DIGITS_EVAL.json").read_text())
    assert per_seed["UA"]["agg_value"] == pytest.approx(first.results["per_seed"]["ga"]["0"]["UA"])
    rec = out / "runs" / "ga-seed0.json"
    data = json.loads(rec.read_text())
    data["row"]["UA"] = 99.0
    rec.write_text(json.dumps(data))
    argv = ["bench", "--methods", "ga", "--seeds", "1", "--budget", "1", "--out", str(out), "--resume",
            "--option", "steps=3", *QUICK]  # fmt: skip
    assert main(argv) == 2
    err = _err(capsys)
    assert "edited or damaged" in err and "ga-seed0.json" in err
    rec.write_text("{ not json")
    assert main(argv) == 2
    assert "not valid JSON" in _err(capsys)


def test_every_benchmark_declares_its_protocol() -> None:
    for name in ("digits", "cifar10", "tinytofu", "tofu", "tinywmdp", "mcq"):
        b = get_benchmark(name)
        assert b.name == name and b.commands and set(b.commands) <= {"unlearn", "bench", "eval"}
        assert "RTE" in {c.key for c in b.columns} and b.headline
        for cmd in b.commands:
            assert {"out", "seed", "device"} <= b.uses(cmd)


def test_second_run_on_the_same_out_is_refused_while_the_first_holds_it(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from ofmu_opt._io import output_lock

    out = tmp_path / "o"
    with output_lock(out, what="--out"):  # another process asks for the same directory meanwhile
        proc = subprocess.run([sys.executable, "-m", "ofmu_opt.cli", "unlearn", "--method", "ga", "--out", str(out),
                               *QUICK], capture_output=True, text=True, timeout=3600, check=False)  # fmt: skip
    assert proc.returncode == 2 and "in use by another ofmu run" in proc.stderr and "Traceback" not in proc.stderr


def test_real_tofu_uses_open_unlearning_generation_settings_unless_quick() -> None:
    tofu = get_benchmark("tofu")
    full = tofu.experiment(RunConfig(command="eval", benchmark="tofu"), 0)
    quick = tofu.experiment(RunConfig(command="eval", benchmark="tofu", quick=True), 0)
    tiny = get_benchmark("tinytofu").experiment(RunConfig(command="eval", benchmark="tinytofu"), 0)
    assert (full.max_new_tokens, full.max_length) == (200, 512)
    assert (quick.max_new_tokens, quick.max_length) == (tiny.max_new_tokens, tiny.max_length) == (32, 96)
    forced = tofu.experiment(RunConfig(command="eval", benchmark="tofu", options=("experiment.max_length=64",)), 0)
    assert forced.max_length == 64


def test_tinytofu_eval_of_a_foreign_model_warns_that_utility_is_meaningless(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from ofmu_opt.unlearning.benchmarks.tofu_setup import tiny_data
    from ofmu_opt.unlearning.models.hf import TinyGPT2Config, build_tiny_gpt2, train_tokenizer

    small = {"n_authors": 20, "n_retain_eval_authors": 2, "n_utility": 4, "max_new_tokens": 2}
    opts = tuple(f"experiment.{k}={v}" for k, v in small.items())
    cfg = RunConfig(command="eval", benchmark="tinytofu", split="forget10", options=opts, quiet=True)
    tiny = tiny_data(get_benchmark("tinytofu").experiment(cfg, 0))
    tok = train_tokenizer([q.question + " " + q.answer for q in tiny.data.qa], vocab_size=400)
    model = build_tiny_gpt2(tok, TinyGPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=96), 0)
    model.save_pretrained(str(tmp_path / "m"))
    tok.save_pretrained(str(tmp_path / "m"))
    logs = tmp_path / "logs.json"
    logs.write_text(json.dumps({"forget_truth_ratio": {"agg_value": 0.5, "value_by_index": {
        str(i): {"score": 0.1 * (i + 1)} for i in range(5)}}}))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="ofmu_opt"):
        out = evaluate(RunConfig(**{**cfg.__dict__, "model": str(tmp_path / "m"), "retain_logs": str(logs),
                                    "out": str(tmp_path / "e")}))  # fmt: skip
    assert out.code == 0 and (tmp_path / "e" / "TOFU_SUMMARY.json").is_file()
    assert any("invented facts" in r.getMessage() for r in caplog.records)


def test_the_cached_original_model_does_not_depend_on_which_scenario_ran_first(tmp_path: Path) -> None:
    opts = ("steps=3", "experiment.train_steps=60", "experiment.hidden=16", f"experiment.cache_dir={tmp_path / 'c'}")

    def ta(scenario: str, cache: str, out: str) -> float:
        o = (*opts[:-1], f"experiment.cache_dir={tmp_path / cache}")
        res = unlearn(RunConfig(scenario=scenario, method="ga", options=o, out=str(tmp_path / out), quiet=True))
        return float(res.results["metrics"]["TA"])

    alone = ta("class:3", "fresh", "a")
    ta("random10", "shared", "b")  # fills the shared cache first
    assert ta("class:3", "shared", "c") == alone


@pytest.mark.parametrize(
    ("benchmark", "setup", "needle"),
    [
        ("digits", lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 7), "not a valid safetensors file"),
        ("digits", lambda d: None, "expected a directory with model.safetensors"),
        ("tinytofu", lambda d: (d / "weights.bin").write_bytes(b"x"), "expected a config.json"),
        ("tinytofu", lambda d: None, "expected a config.json"),
    ],
    ids=["digits-corrupt", "digits-empty", "tinytofu-no-config", "tinytofu-empty"],
)
def test_eval_checks_the_model_files_before_preparing_the_benchmark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    benchmark: str, setup: Any, needle: str,
) -> None:
    """A bad ``--model`` fails before the reference models are trained (``prepare`` never runs)."""
    bench_cls = type(get_benchmark(benchmark))

    def no_work(*a: Any, **k: Any) -> Any:
        raise AssertionError("prepare ran before the model files were checked")

    monkeypatch.setattr(bench_cls, "prepare", no_work)
    d = tmp_path / "m"
    d.mkdir()
    setup(d)
    assert main(["eval", "--benchmark", benchmark, "--model", str(d), "--out", str(tmp_path / "o"), "--quick",
                 "-q"]) == 2
    assert needle in _err(capsys)
    assert not (tmp_path / "o").exists()

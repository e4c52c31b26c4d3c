"""TinyTOFU ``ofmu unlearn`` killed with SIGKILL mid-run resumes exactly (#17): same metrics, same losses.

The timeout mark only guards against a hang; nothing here measures speed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ofmu_opt.unlearning.runner import RunConfig, unlearn

SMALL = {"n_authors": 20, "n_retain_eval_authors": 2, "n_utility": 4, "n_layer": 1, "n_embd": 32, "train_epochs": 20,
         "train_lr": 5e-3, "max_new_tokens": 8}  # fmt: skip
STEPS = 80


def _options(cache: Path) -> tuple[str, ...]:
    exp = {**SMALL, "cache_dir": str(cache)}
    return (*(f"experiment.{k}={v}" for k, v in exp.items()), f"steps={STEPS}", "lr=5e-3")


def _read(out: Path) -> tuple[dict[str, object], list[tuple[int, float]]]:
    summary = json.loads((out / "TOFU_SUMMARY.json").read_text(encoding="utf-8"))
    hist = json.loads((out / "history.json").read_text(encoding="utf-8"))
    return summary, [(h["step"], h["loss"]) for h in hist]


@pytest.mark.timeout(3600)  # a hang guard only
@pytest.mark.parametrize("method", ["npo"])
def test_tinytofu_unlearn_killed_mid_run_resumes_exactly(tmp_path: Path, method: str) -> None:
    opts = _options(tmp_path / "cache")
    cfg = RunConfig(benchmark="tinytofu", split="forget10", method=method, options=opts, checkpoint_every=4, quiet=True)
    ref = unlearn(RunConfig(**{**cfg.__dict__, "out": str(tmp_path / "ref")}))  # also trains the cached models
    assert ref.code == 0
    killed = tmp_path / "killed"
    argv = [sys.executable, "-m", "ofmu_opt.cli", "unlearn", "--benchmark", "tinytofu", "--split", "forget10",
            "--method", method, "--checkpoint-every", "4", "-q", "--out", str(killed)]
    for o in opts:
        argv += ["--option", o]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = killed / "checkpoint" / "manifest.json"
    while not manifest.exists() and proc.poll() is None:  # pytest-timeout (the mark) guards against a hang
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode() if proc.stderr else ""
    assert manifest.exists() and not (killed / "run.json").exists()  # it died mid-run, after a checkpoint
    resumed = unlearn(RunConfig(**{**cfg.__dict__, "out": str(killed), "resume": True}))
    assert resumed.code == 0
    assert not (killed / "checkpoint").exists()  # the finished run supersedes the checkpoint
    (s_ref, h_ref), (s_res, h_res) = _read(tmp_path / "ref"), _read(killed)
    assert s_res == s_ref  # every metric identical
    assert h_res == h_ref and len(h_ref) == STEPS  # the loss of every step identical
    assert resumed.results["steps"] == STEPS

"""``ofmu unlearn`` writes the same metrics as before the runner rewrite (issue 18).

The fixture ``reference_metrics.json`` was recorded on the code *before* the benchmark protocol and
the generic runner replaced ``vision_bench`` / ``lm_bench`` (commit c787d13), with
``python tests/unlearning/test_reference_metrics.py --record``. Each case runs the command line in
process with a fresh model cache and compares UA/RA/TA (digits), every TOFU summary metric
(TinyTOFU) and the per-step loss history at every step the old code recorded, to a tight tolerance.
Other helpers changed numerics outside the runner in the same session (``models/hf.py``: open-unlearning's
pad=eos label masking; the GA objective code on class-wise forgetting), so the fixture was re-recorded on the
old runner files of c787d13 (``lm_bench``, ``vision_bench``, ``wmdp_bench``, ``experiment``, ``benchmarks``,
``_config``, ``data/``, the three CLI commands) combined with every other file at the commit named in the
fixture: it tests that the runner rewrite alone changes no metric. To re-record after a deliberate numeric
change elsewhere, build that combination (``git archive``) and run this file with ``--record`` there.
Each case runs with a fresh model cache: the old vision cache keyed the original model without the
scenario although its weights depend on it, so a shared cache made class:3 depend on the case order.

Not compared: RTE (wall-clock time), and the digits MIA-efficacy and the gaps built from it
(``gap_MIA``, ``avg_gap``): the MIA's SVC default changed after the recording (gamma ``'scale'`` ->
``'auto'``, issue 18); the fixture keeps the old values for information only.

The default suite runs one digits case and one small TinyTOFU case; the full set (``--quick
--seed 0`` as issue 18 states it, 3 methods x {digits random10, digits class:3, TinyTOFU}) is
``@pytest.mark.slow``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

FIXTURE = Path(__file__).with_name("reference_metrics.json")
NOT_COMPARED = {"RTE", "MIA", "gap_MIA", "avg_gap"}
# a small TinyTOFU configuration (seconds, not minutes, to train its target/retain models)
SMALL_TOFU = {
    "n_authors": 20,
    "n_retain_eval_authors": 2,
    "n_utility": 4,
    "n_layer": 1,
    "n_embd": 32,
    "train_epochs": 30,
    "train_lr": 5e-3,
    "unlearn_steps": 4,
    "max_new_tokens": 8,
    "split": "forget10",
}


def _cases() -> dict[str, list[str]]:
    cases: dict[str, list[str]] = {}
    for m in ("ga", "graddiff", "npo"):
        for sc, tag in (("random10", "random10"), ("class:3", "class3")):
            cases[f"digits-{tag}-{m}"] = ["--benchmark", "digits", "--scenario", sc, "--method", m, "--quick"]
        cases[f"tinytofu-{m}"] = ["--benchmark", "tinytofu", "--method", m, "--quick"]
    small = [x for k, v in SMALL_TOFU.items() for x in ("--option", f"experiment.{k}={v}")]
    cases["tinytofu-small-npo"] = ["--benchmark", "tinytofu", "--method", "npo", *small]
    return cases


CASES = _cases()
DEFAULT_CASES = ("digits-random10-graddiff", "tinytofu-small-npo")


def run_case(name: str, work: Path) -> dict[str, Any]:
    """Run one case through ``ofmu unlearn`` (in process) and return its recorded metrics."""
    from ofmu_opt.cli import main

    out = work / name
    code = main(["unlearn", *CASES[name], "--seed", "0", "--threads", "1", "-q", "--out", str(out)])
    prefix = "DIGITS" if name.startswith("digits") else "TOFU"
    summary = json.loads((out / f"{prefix}_SUMMARY.json").read_text(encoding="utf-8"))
    hist = json.loads((out / "history.json").read_text(encoding="utf-8"))
    return {
        "exit_code": code,
        "summary": summary,
        "loss_history": [[int(h["step"]), h["loss"]] for h in hist if h.get("loss") is not None],
    }


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(b == pytest.approx(a, rel=1e-6, abs=1e-9))


def _check(name: str, tmp: Path) -> None:
    want = json.loads(FIXTURE.read_text(encoding="utf-8"))["cases"][name]
    got = run_case(name, tmp)
    assert got["exit_code"] == want["exit_code"]
    keys = set(want["summary"]) - NOT_COMPARED
    assert keys <= set(got["summary"]), f"{name}: metrics missing: {sorted(keys - set(got['summary']))}"
    w, g = want["summary"], got["summary"]
    bad = {k: (w[k], g[k]) for k in sorted(keys) if not _close(w[k], g[k])}
    assert not bad, f"{name}: metrics changed (recorded, now): {bad}"
    now = dict((s, v) for s, v in got["loss_history"])
    assert want["loss_history"], f"{name}: the fixture has no loss history"
    for step, loss in want["loss_history"]:  # every step the old code recorded (newer code records more)
        assert step in now, f"{name}: no loss recorded at step {step}"
        assert _close(loss, now[step]), f"{name}: loss at step {step} changed: {loss} -> {now[step]}"


@pytest.fixture
def _caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OFMU_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OFMU_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("name", DEFAULT_CASES)
def test_reference_metrics_unchanged(name: str, _caches: Path) -> None:
    _check(name, _caches)


@pytest.mark.slow
@pytest.mark.parametrize("name", [c for c in CASES if c not in DEFAULT_CASES])
def test_reference_metrics_unchanged_full_set(name: str, _caches: Path) -> None:
    _check(name, _caches)


def _record() -> None:  # pragma: no cover - run by hand, on the code before a change
    import subprocess

    import torch

    torch.set_num_threads(1)
    rows: dict[str, Any] = {}
    for name in CASES:
        with tempfile.TemporaryDirectory() as d:  # a fresh model cache per case, as the test has
            os.environ["OFMU_CACHE_DIR"] = os.environ["OFMU_CACHE"] = str(Path(d) / "cache")
            rows[name] = run_case(name, Path(d))
        print(name, {k: rows[name]["summary"].get(k) for k in ("UA", "RA", "TA", "forget_quality")}, flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    FIXTURE.write_text(
        json.dumps(
            {
                "recorded_on": commit,
                "note": "ofmu unlearn ... --seed 0 --threads 1 -q; MIA with the SVC default gamma='scale' (old)",
                "cases": rows,
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":  # pragma: no cover
    if "--record" in sys.argv:
        _record()

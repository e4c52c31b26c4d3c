"""Crash safety of ``ofmu unlearn``: SIGKILL at several points, ``--resume``, same final metrics.

The run is killed (1) while the original/Retrain models are being trained (their cache files are
written atomically), (2) right after its first mid-run checkpoint appears, and (3) after a later one;
each restart uses ``--resume``. The final ``DIGITS_SUMMARY.json`` equals that of an uninterrupted run
(every metric but the wall-clock ``RTE``), and while the runs were being killed every JSON file in the
output directory parsed whenever it was read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = 240
EVERY = 20
# small reference models (fast to train) and many cheap unlearning steps (time to kill mid-run)
ARGS = [
    "unlearn", "--benchmark", "digits", "--method", "graddiff", "--quick", "-q",
    "--option", f"steps={STEPS}", "--option", "experiment.train_steps=300", "--option", "experiment.hidden=32",
    "--option", "experiment.diagnostics_every=1", "--checkpoint-every", str(EVERY),
]


def _start(out: Path, cache: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, OFMU_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "ofmu_opt.cli", *ARGS, "--out", str(out), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _check_readable(d: Path) -> None:
    """Every JSON file present parses (atomic writes: a reader never sees a truncated file)."""
    for p in list(d.rglob("*.json")):
        try:
            data = p.read_bytes()
        except FileNotFoundError:  # replaced or removed between listing and reading
            continue
        json.loads(data)  # raises on a truncated file


def _checkpoint_step(out: Path) -> int:
    m = out / "checkpoint" / "manifest.json"
    try:
        return int(json.loads(m.read_bytes())["meta"]["step"])
    except (FileNotFoundError, KeyError):
        return -1


def _kill_when(proc: subprocess.Popen[bytes], out: Path, cond: object) -> bool:
    """SIGKILL ``proc`` as soon as ``cond()`` holds (True), or return False if it finished first. No time
    window: on a loaded machine the run may take long to reach the point; the test's timeout mark is the
    hang guard."""
    while True:
        if out.exists():
            _check_readable(out)
        if cond():  # type: ignore[operator]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)


def _summary(out: Path) -> dict[str, float]:
    s = json.loads((out / "DIGITS_SUMMARY.json").read_text())
    return {k: v for k, v in s.items() if k != "RTE"}


@pytest.mark.timeout(3600)  # hang guard only; nothing here asserts time
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(tmp_path: Path) -> None:
    out, cache = tmp_path / "killed", tmp_path / "cache_killed"
    # (1) killed while training the reference models (the cache directory exists, no checkpoint yet)
    p = _start(out, cache)
    assert _kill_when(p, out, lambda: cache.exists() and any(cache.iterdir()) or _checkpoint_step(out) >= 0)
    assert _checkpoint_step(out) <= EVERY
    # (2) killed right after the first mid-run checkpoint appeared
    p = _start(out, cache, "--resume")
    killed_first = _kill_when(p, out, lambda: _checkpoint_step(out) >= EVERY)
    first = _checkpoint_step(out)
    # (3) killed after a later checkpoint
    p = _start(out, cache, "--resume")
    killed_later = _kill_when(p, out, lambda: _checkpoint_step(out) >= first + 2 * EVERY)
    later = _checkpoint_step(out)
    assert killed_first and killed_later, "a run finished before it could be killed"
    assert EVERY <= first < later < STEPS
    # finish
    p = _start(out, cache, "--resume")
    _, err = p.communicate()
    assert p.returncode == 0, err.decode()
    assert not (out / "checkpoint").exists()
    _check_readable(out)
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(STEPS))

    ref_out = tmp_path / "uninterrupted"
    p = _start(ref_out, tmp_path / "cache_ref", "--checkpoint-every", "0")
    _, err = p.communicate()
    assert p.returncode == 0, err.decode()
    assert _summary(out) == _summary(ref_out)
    assert json.loads((out / "history.json").read_text()) == json.loads((ref_out / "history.json").read_text())
    assert (out / "model.safetensors").read_bytes() == (ref_out / "model.safetensors").read_bytes()


def test_every_file_the_package_writes_goes_through_the_atomic_writers() -> None:
    """AST audit: outside ``ofmu_opt/_io.py`` no module opens a file for writing, or writes with
    ``Path.write_text/write_bytes``, ``json.dump``, ``torch.save``, ``np.save`` or ``pickle.dump``; every
    output (eval JSON, summaries, checkpoints, model caches, plots) goes through ``atomic_write_*``.
    Hugging Face directories are saved into a temporary directory that is then renamed."""
    import ast

    pkg = ROOT / "ofmu_opt"
    banned = {"json.dump", "torch.save", "np.save", "np.savez", "numpy.save", "pickle.dump", "shutil.copy",
              "shutil.copyfile"}
    problems: list[str] = []
    for path in sorted(pkg.rglob("*.py")):
        if path.name == "_io.py" and path.parent == pkg:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = ast.unparse(f)
            where = f"{path.relative_to(ROOT)}:{node.lineno} {name}"
            if name in banned or (isinstance(f, ast.Attribute) and f.attr in ("write_text", "write_bytes")):
                problems.append(where)
            if name in ("open", "os.fdopen") or (isinstance(f, ast.Attribute) and f.attr == "open"):
                modes = [a for a in node.args[1:2]] + [k.value for k in node.keywords if k.arg == "mode"]
                if any(isinstance(m, ast.Constant) and set(str(m.value)) & set("wax+") for m in modes):
                    problems.append(where)
            if isinstance(f, ast.Attribute) and f.attr == "save_pretrained" and "tmp" not in ast.unparse(node.args[0]):
                problems.append(where)
            if isinstance(f, ast.Attribute) and f.attr == "savefig" and "buf" not in ast.unparse(node.args[0]):
                problems.append(where)
    assert problems == []


@pytest.mark.parametrize("name", ["graddiff", "npo", "rl", "salun", "blur", "retrain", "ofmu"])
def test_method_resumed_from_a_saved_snapshot_ends_exactly_like_an_uninterrupted_run(name: str, tmp_path: Path) -> None:
    """In process, through save_checkpoint/load_checkpoint: the snapshot after step 6 of 12, resumed in a
    fresh context, gives bit-identical parameters and history (RL/SalUn also restore their relabelling
    generator; Retrain its fresh model)."""
    import copy

    import torch
    from torch import nn

    from ofmu_opt.backends.checkpoint import load_checkpoint, save_checkpoint
    from ofmu_opt.unlearning.data.common import BatchStream
    from ofmu_opt.unlearning.methods.base import UnlearnContext
    from ofmu_opt.unlearning.methods.registry import make_method
    from ofmu_opt.unlearning.models.vision import ClassifierAdapter

    g = torch.Generator().manual_seed(0)
    xf, yf = torch.randn(20, 5, generator=g), torch.randint(0, 3, (20,), generator=g)
    xr, yr = torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g)
    torch.manual_seed(0)
    original = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))

    def fresh() -> nn.Module:
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))

    def ctx(**kw: object) -> UnlearnContext:
        return UnlearnContext(
            model=copy.deepcopy(original), reference=copy.deepcopy(original).eval(), adapter=ClassifierAdapter(3),
            forget=BatchStream(xf, yf, 8, seed=3), retain=BatchStream(xr, yr, 8, seed=4), seed=5,
            diagnostics=lambda r: None, checkpoint_every=3, fresh_model=fresh, **kw,  # type: ignore[arg-type]
        )

    opts = {"steps": 12, "lr": 1e-2}
    full = make_method(name, opts).run(ctx())
    saved: list[int] = []

    def snap(step: int, tree: dict[str, object]) -> None:
        if step == 6:
            save_checkpoint(tmp_path / "ck", tree, meta={"step": step})
        saved.append(step)

    make_method(name, opts).run(ctx(snapshot=snap))
    assert saved == [3, 6, 9, 12]
    tree, meta = load_checkpoint(tmp_path / "ck")
    assert meta["step"] == 6
    resumed = make_method(name, opts).run(ctx(resume=tree))
    assert resumed.steps == 12 and resumed.status == "completed"
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.history == full.history

"""A catalogue of bad inputs: each gives a specific exception whose message names the offending thing.

Python-API cases call the public function directly. CLI cases run ``python -m ofmu_opt.cli`` in a
subprocess (all of them at once, in parallel, in a module fixture, so the catalogue stays fast) and
check: exit code 2, exactly one line on stderr starting with ``ofmu: error:``, no traceback, and no
file left in the output directory.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ofmu_opt._config import config_from_dict, config_from_toml, load_toml_file
from ofmu_opt._io import atomic_write_json, atomic_write_text, read_json, safe_child
from ofmu_opt.backends import NumpySpace
from ofmu_opt.core import PenaltySolver, gpbgd
from ofmu_opt.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    OfmuError,
    OracleError,
    ProblemSpecError,
    UnsafeFileError,
)
from ofmu_opt.problem import BilevelProblem, FunctionObjective
from ofmu_opt.reference.solvers import parse_options

ROOT = Path(__file__).resolve().parents[2]
SP = NumpySpace()


# ------------------------------------------------------------------------------------------ Python API


def _quad() -> FunctionObjective:
    return FunctionObjective(lambda x, y, b: float(y @ y), lambda x, y, b: (None, 2 * y))


def _api_cases(tmp: Path) -> list[tuple[str, Callable[[], Any], type[OfmuError], str]]:
    """(id, call, expected exception, regex the message must match) for every Python-API case."""
    import torch

    from ofmu_opt.backends.checkpoint import load_checkpoint, save_checkpoint
    from ofmu_opt.unlearning.data.cifar10 import load_cifar10_splits, read_cifar_batch
    from ofmu_opt.unlearning.data.common import BatchStream, ForgetScenario, parse_scenario
    from ofmu_opt.unlearning.experiment import VisionExperimentConfig, load_state, save_state
    from ofmu_opt.unlearning.methods.ascent import GradDiffConfig
    from ofmu_opt.unlearning.methods.ofmu import OfmuConfig

    def write(name: str, data: bytes) -> Path:
        p = tmp / name
        p.write_bytes(data)
        return p

    def bad_shape_run() -> Any:
        bad = FunctionObjective(lambda x, y, b: float(y @ y), lambda x, y, b: (None, np.zeros(y.size + 1)))
        return gpbgd().run(BilevelProblem(_quad(), bad, SP, "min", has_x=False), None, np.ones(3))

    def string_value_run() -> Any:
        bad = FunctionObjective(lambda x, y, b: "zero", lambda x, y, b: (None, 2 * y))
        return gpbgd(maxiter=2).run(BilevelProblem(bad, _quad(), SP, "min", has_x=False), None, np.ones(3))

    def good_ckpt(name: str) -> Path:
        d = tmp / name
        save_checkpoint(d, {"w": torch.ones(4)}, meta={"step": 1})
        return d

    def truncated_tensor_ckpt() -> Any:
        d = good_ckpt("ck_trunc")
        t = next(d.glob("tensors-*.safetensors"))
        t.write_bytes(t.read_bytes()[:-5])
        return load_checkpoint(d)

    def truncated_manifest_ckpt() -> Any:
        d = good_ckpt("ck_manifest")
        m = d / "manifest.json"
        m.write_bytes(m.read_bytes()[:40])
        return load_checkpoint(d)

    def foreign_class_ckpt() -> Any:
        d = good_ckpt("ck_foreign")
        m = d / "manifest.json"
        man = json.loads(m.read_text())
        man["structure"] = {"@": "namedtuple", "cls": "os:system", "fields": {}}
        m.write_text(json.dumps(man))
        return load_checkpoint(d)

    def model() -> torch.nn.Module:
        return torch.nn.Linear(3, 2)

    def shape_mismatch_state() -> Any:
        p = save_state(torch.nn.Linear(4, 2), tmp / "lin42.safetensors")
        return load_state(model(), p)

    def pickle_as_safetensors() -> Any:
        return load_state(model(), write("model.safetensors", pickle.dumps({"weight": [1.0]})))

    class _Exec:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("echo pwned",))

    def tiny_forget(forget: list[int], retain: list[int]) -> Any:
        return ForgetScenario(
            parse_scenario("random10"),
            np.asarray(forget, dtype=np.int64),
            np.asarray(retain, dtype=np.int64),
            np.ones(3, dtype=bool),
            np.ones(3, dtype=bool),
        )

    file_as_parent = write("plainfile", b"x")

    return [
        ("solver-unknown-key", lambda: config_from_dict(PenaltySolver, {"betta": 1}), ConfigError, r"'betta'"),
        ("solver-wrong-type", lambda: config_from_dict(PenaltySolver, {"beta": "lots"}), ConfigError, r"beta"),
        ("solver-out-of-range", lambda: PenaltySolver(maxiter=0), ConfigError, r"maxiter: expected an integer >= 1"),
        ("solver-nan-option", lambda: PenaltySolver(outer_lr=float("nan")), ConfigError, r"outer_lr"),
        ("cli-option-no-equals", lambda: parse_options(["beta"]), ConfigError, r"expected NAME=VALUE.*'beta'"),
        ("oracle-shape-mismatch", bad_shape_run, OracleError, r"inner\.grad: y-gradient has shape \(4,\)"),
        ("oracle-value-not-a-number", string_value_run, OracleError, r"outer\.value.*'zero'|outer\.value.*str"),
        ("problem-bad-sense", lambda: BilevelProblem(_quad(), _quad(), SP, "maximize"), ProblemSpecError, "sense"),
        ("method-negative-lr", lambda: GradDiffConfig(lr=-1.0), ConfigError, r"lr: expected a value > 0"),
        ("method-unknown-key", lambda: config_from_dict(OfmuConfig, {"rho": 2}), ConfigError, r"'rho'"),
        ("method-bool-steps", lambda: config_from_dict(OfmuConfig, {"steps": True}), ConfigError, r"steps"),
        (
            "experiment-bad-scenario",
            lambda: VisionExperimentConfig(scenario="half"),
            ConfigError,
            r"scenario: expected 'random<P>'.*'half'",
        ),
        ("empty-forget-stream", lambda: BatchStream(torch.zeros(0, 2), torch.zeros(0), 4, 0), DataError, "non-empty"),
        ("stream-length-mismatch", lambda: BatchStream(torch.zeros(3, 2), torch.zeros(2), 4, 0), DataError, "3 and 2"),
        ("empty-forget-set", lambda: tiny_forget([], [0, 1, 2]), DataError, r"forget set.*empty"),
        ("empty-retain-set", lambda: tiny_forget([0, 1, 2], []), DataError, r"retain set.*empty"),
        ("forget-overlaps-retain", lambda: tiny_forget([0, 1], [1, 2]), DataError, r"overlap.*\[1\]"),
        ("toml-missing", lambda: load_toml_file(tmp / "nope.toml"), ConfigError, r"nope\.toml.*does not exist"),
        ("toml-directory", lambda: load_toml_file(tmp), ConfigError, r"expected a file, received a directory"),
        ("toml-truncated", lambda: load_toml_file(write("t.toml", b"[experiment]\nseed = ")), ConfigError, "t.toml"),
        ("toml-not-utf8", lambda: load_toml_file(write("u.toml", b"seed = '\xff\xfe'")), ConfigError, "not UTF-8"),
        ("toml-text-unknown-key", lambda: config_from_toml(PenaltySolver, "tol2 = 1e-3"), ConfigError, r"'tol2'"),
        ("json-missing", lambda: read_json(tmp / "none.json"), DataError, r"none\.json.*does not exist"),
        ("json-truncated", lambda: read_json(write("t.json", b'{"UA": {"agg')), DataError, r"t\.json.*not valid JSON"),
        ("json-not-utf8", lambda: read_json(write("b.json", b'{"a": "\xff"}')), DataError, r"b\.json.*not UTF-8"),
        ("json-directory", lambda: read_json(tmp), DataError, "expected a file, received a directory"),
        ("cifar-missing-dir", lambda: load_cifar10_splits(tmp / "cifar"), DataError, r"cifar.*does not exist"),
        ("cifar-truncated-batch", lambda: read_cifar_batch(write("data_batch_1", pickle.dumps({b"data": 1})[:9])),
         DataError, r"data_batch_1.*not a valid pickle"),
        ("cifar-code-payload", lambda: read_cifar_batch(write("test_batch", pickle.dumps(_Exec()))),
         UnsafeFileError, r"posix\.system|os\.system|nt\.system"),
        ("checkpoint-missing", lambda: load_checkpoint(tmp / "ck_none"), CheckpointError, r"ck_none.*manifest"),
        ("checkpoint-truncated-tensors", truncated_tensor_ckpt, CheckpointError, "truncated"),
        ("checkpoint-truncated-manifest", truncated_manifest_ckpt, CheckpointError, "corrupt"),
        ("checkpoint-foreign-class", foreign_class_ckpt, CheckpointError, r"refusing to resolve class 'os:system'"),
        ("weights-missing", lambda: load_state(model(), tmp / "nope.safetensors"), CheckpointError, "does not exist"),
        ("weights-are-a-pickle", pickle_as_safetensors, CheckpointError, "not a valid safetensors file"),
        ("weights-shape-mismatch", shape_mismatch_state, CheckpointError, r"'weight' expected shape \(2, 3\)"),
        ("output-is-a-directory", lambda: atomic_write_text(tmp, "x"), DataError, "received a directory"),
        ("output-parent-is-a-file", lambda: atomic_write_json(file_as_parent / "sub" / "a.json", {}), DataError,
         r"plainfile.*not writable"),
        ("output-name-traversal", lambda: safe_child(tmp, "../../etc/passwd"), UnsafeFileError, r"'\.\./\.\./etc"),
        ("output-name-absolute", lambda: safe_child(tmp, "/etc/passwd"), UnsafeFileError, r"'/etc/passwd'"),
    ]


def _case_ids() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return [c[0] for c in _api_cases(Path(d))]


@pytest.mark.parametrize("case_id", _case_ids())
def test_api_bad_input(case_id: str, tmp_path: Path) -> None:
    cases = {c[0]: c for c in _api_cases(tmp_path)}
    _, call, exc_type, pattern = cases[case_id]
    with pytest.raises(exc_type, match=pattern) as info:
        call()
    assert isinstance(info.value, OfmuError)


# ------------------------------------------------------------------------------------------ CLI


@dataclass
class CliCase:
    """One command line that must fail with exit code 2 and a message matching ``pattern``."""

    args: list[str]
    pattern: str
    setup: Callable[[Path], None] = field(default=lambda d: None)
    out_is_child: bool = True  # the command writes into ``<case dir>/out``


def _write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


UNLEARN = ["unlearn", "--benchmark", "digits", "--method", "graddiff", "--quick", "-q", "--out", "{out}"]

CLI_CASES: dict[str, CliCase] = {
    "unknown-method": CliCase(["unlearn", "--method", "nope", "--out", "{out}"], r"method:.*'nope'"),
    "unknown-benchmark": CliCase(["unlearn", "--benchmark", "mnist", "--method", "ga", "--out", "{out}"], "'mnist'"),
    "method-option-out-of-range": CliCase([*UNLEARN, "--option", "steps=-1"], r"steps: expected an integer >= 1"),
    "method-option-unknown": CliCase([*UNLEARN, "--option", "gamma2=1"], r"'gamma2'"),
    "method-option-wrong-type": CliCase([*UNLEARN, "--option", "alpha=high"], r"alpha: expected a number.*'high'"),
    "experiment-option-unknown": CliCase([*UNLEARN, "--option", "experiment.epochs=3"], r"'epochs'"),
    "scenario-missing-class": CliCase([*UNLEARN, "--scenario", "class:12"], r"scenario: class must be in 0\.\.9"),
    "option-without-equals": CliCase([*UNLEARN, "--option", "steps"], r"--option: expected NAME=VALUE"),
    "threads-zero": CliCase([*UNLEARN, "--threads", "0"], r"--threads: expected (a value )?>= 1"),
    "config-missing": CliCase([*UNLEARN, "--config", "{dir}/missing.toml"], r"missing\.toml.*does not exist"),
    "config-is-directory": CliCase([*UNLEARN, "--config", "{dir}"], r"expected a file, received a directory"),
    "config-truncated": CliCase(
        [*UNLEARN, "--config", "{dir}/c.toml"], r"c\.toml.*not valid TOML", _write("c.toml", "[experiment\nseed=1")
    ),
    "config-not-utf8": CliCase(
        [*UNLEARN, "--config", "{dir}/c.toml"], r"c\.toml.*not UTF-8", _write("c.toml", b"[method]\nx='\xff'")
    ),
    "config-unknown-key": CliCase(
        [*UNLEARN, "--config", "{dir}/c.toml"], r"'hiden'", _write("c.toml", "[experiment]\nhiden = 3\n")
    ),
    "config-wrong-type": CliCase(
        [*UNLEARN, "--config", "{dir}/c.toml"], r"method.*lr|lr: expected a number",
        _write("c.toml", "[method]\nlr = [1, 2]\n"),
    ),
    "output-parent-is-a-file": CliCase(
        ["unlearn", "--benchmark", "digits", "--method", "graddiff", "--quick", "-q", "--out", "{dir}/f/out"],
        r"f/out.*(not writable|not a directory)", _write("f", "x"), out_is_child=False,
    ),
    "output-is-a-file": CliCase(
        ["unlearn", "--benchmark", "digits", "--method", "graddiff", "--quick", "-q", "--out", "{dir}/f"],
        r"--out.*f'.*expected a directory", _write("f", "x"), out_is_child=False,
    ),
    "eval-model-missing": CliCase(["eval", "--model", "{dir}/nomodel", "--out", "{out}"], r"--model.*nomodel"),
    "eval-model-corrupt": CliCase(
        ["eval", "--model", "{dir}/m", "--out", "{out}", "--option", "experiment.hidden=8"],
        r"model\.safetensors.*not a valid safetensors file", _write("m/model.safetensors", b"\x00" * 7),
    ),
    "resume-record-truncated": CliCase(
        [*UNLEARN, "--resume"], r"run\.json.*not valid JSON",
        lambda d: (_write("out/run.json", '{"key": "ab')(d), _write("out/DIGITS_SUMMARY.json", "{}")(d)),
        out_is_child=False,
    ),
    "solve-unknown-problem": CliCase(["solve", "P42"], r"problem id.*'P42'"),
    "solve-unknown-option": CliCase(["solve", "P2", "--option", "rho=3"], r"unknown solver option 'rho'"),
    "solve-option-bad-value": CliCase(["solve", "P2", "--option", "beta=-2"], r"beta: expected a value >= 0"),
    "solve-bad-tol": CliCase(["solve", "P2", "--tol", "5"], r"--tol: expected a relative accuracy"),
    "rates-unknown-experiment": CliCase(["rates", "warp", "--quick", "--out", "{out}"], r"'warp'"),
}


def _run_all(base: Path) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    """Run every CLI case at once (parallel subprocesses; one test, so xdist workers do not repeat them)."""
    env = dict(os.environ, OFMU_CACHE_DIR=str(base / "cache"), PYTHONPATH=str(ROOT))
    procs: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    for name, case in CLI_CASES.items():
        d = base / name
        d.mkdir()
        case.setup(d)
        args = [a.format(dir=d, out=d / "out") for a in case.args]
        p = subprocess.Popen(
            [sys.executable, "-m", "ofmu_opt.cli", *args],
            cwd=d,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs[name] = (p, d)
    out: dict[str, tuple[subprocess.CompletedProcess[str], Path]] = {}
    for name, (p, d) in procs.items():
        so, se = p.communicate()  # no time limit: the test's timeout mark is the hang guard
        out[name] = (subprocess.CompletedProcess(p.args, p.returncode, so, se), d)
    return out


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def _cli_problem(name: str, res: subprocess.CompletedProcess[str], d: Path) -> str | None:
    """Why case ``name`` failed, or None."""
    case = CLI_CASES[name]
    if "Traceback" in res.stderr:
        return f"traceback on stderr:\n{res.stderr}"
    if res.returncode != 2:
        return f"exit code {res.returncode}, expected 2; stderr {res.stderr!r}"
    # one line: a bad input is found before any work that would report progress (stderr is not a terminal
    # here, so such work would print progress lines)
    lines = res.stderr.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("ofmu: error: "):
        return f"expected one 'ofmu: error:' line, received {res.stderr!r}"
    if not re.search(case.pattern, lines[0]):
        return f"message {lines[0]!r} does not match {case.pattern!r}"
    out = d / "out"
    if case.out_is_child:
        if out.exists() and _files(out):
            return f"files left in the output directory: {_files(out)}"
    else:  # only what the setup wrote is there
        before = {"resume-record-truncated": ["out/DIGITS_SUMMARY.json", "out/run.json"]}.get(name, ["f"])
        left = [f for f in _files(d) if not f.startswith("cache")]
        if left != before:
            return f"files {left}, expected only {before}"
    return None


@pytest.mark.timeout(3600)  # hang guard only: ~25 parallel interpreters are slow on a loaded machine
def test_cli_bad_input(tmp_path: Path) -> None:
    """Every CLI case: exit code 2, one ``ofmu: error:`` line naming the bad input, no traceback, no files."""
    results = _run_all(tmp_path)
    problems = {name: _cli_problem(name, res, d) for name, (res, d) in results.items()}
    failed = {k: v for k, v in problems.items() if v is not None}
    assert not failed, "\n".join(f"{k}: {v}" for k, v in failed.items())


def test_catalogue_size() -> None:
    assert len(_case_ids()) + len(CLI_CASES) >= 30

"""Untrusted files never run code: weights load with safetensors, pickles are refused or restricted,
configs are parsed (never evaluated), and output names cannot leave their directory.

Every payload below would create ``marker`` if it ran; each test checks that it did not.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from ofmu_opt._config import config_from_dict, load_toml_file
from ofmu_opt._io import safe_child
from ofmu_opt.errors import CheckpointError, ConfigError, DataError, UnsafeFileError

PKG = Path(__file__).resolve().parents[2] / "ofmu_opt"


class _Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------------------------ source audit


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return "?"


def test_the_package_never_unpickles_or_evaluates_untrusted_input() -> None:
    """AST audit of every module: no eval/exec, no plain pickle/marshal/yaml loads, torch.load only with
    weights_only=True, np.load never with allow_pickle=True, HF models only from safetensors (or from one
    named GGUF file, which is parsed, not unpickled)."""
    problems: list[str] = []
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(PKG.parent)
        gguf_dicts = {
            t.id
            for node in ast.walk(tree)
            if isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict)
            and any(isinstance(k, ast.Constant) and k.value == "gguf_file" for k in node.value.keys)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
        for call in _calls(tree):
            name = _name(call.func)
            kw = {k.arg: k.value for k in call.keywords}
            where = f"{rel}:{call.lineno} {name}"
            if name in ("eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"):
                problems.append(where)
            if name in ("pickle.load", "pickle.loads", "marshal.load", "marshal.loads", "yaml.load",
                        "yaml.unsafe_load", "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads"):
                problems.append(where)
            if name == "torch.load":
                w = kw.get("weights_only")
                if not (isinstance(w, ast.Constant) and w.value is True):
                    problems.append(f"{where} without weights_only=True")
            if name in ("np.load", "numpy.load"):
                a = kw.get("allow_pickle")
                if a is not None and not (isinstance(a, ast.Constant) and a.value is False):
                    problems.append(f"{where} with allow_pickle")
            if name.endswith(".from_pretrained") and "Tokenizer" not in name:
                s = kw.get("use_safetensors")
                # a GGUF file is parsed by the gguf reader, never unpickled: `gguf_file=...` (directly or
                # through a ``**kw`` dict literal of this module) loads that one file
                gguf = "gguf_file" in kw or any(
                    k.arg is None and isinstance(k.value, ast.Name) and k.value.id in gguf_dicts
                    for k in call.keywords
                )
                if not gguf and not (isinstance(s, ast.Constant) and s.value is True):
                    problems.append(f"{where} without use_safetensors=True")
        for node in ast.walk(tree):  # the only Unpickler is the restricted one
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    if _name(base) == "pickle.Unpickler" and node.name != "RestrictedUnpickler":
                        problems.append(f"{rel}:{node.lineno} unpickler {node.name}")
            if isinstance(node, ast.Call) and _name(node.func) == "pickle.Unpickler":
                problems.append(f"{rel}:{node.lineno} plain pickle.Unpickler")
    assert problems == []


# ------------------------------------------------------------------------------ weights and checkpoints


def test_a_torch_pickle_with_a_code_payload_is_refused_as_weights(tmp_path: Path) -> None:
    from ofmu_opt.unlearning.experiment import load_state

    marker = tmp_path / "marker"
    path = tmp_path / "model.safetensors"
    torch.save({"weight": _Payload(marker)}, path)  # a classic malicious .pt renamed
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*not a valid safetensors file"):
        load_state(torch.nn.Linear(2, 2), path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("cls", "match"),
    [
        ("ofmu_opt.cli.__main__:main", "refusing to resolve class"),  # importing it would run the CLI
        ("subprocess:Popen", "refusing to resolve class"),
        ("ofmu_opt.core.steps:os.system", "refusing to resolve class"),
        ("ofmu_opt.core.solver:PenaltySolver", "not a NamedTuple"),
    ],
)
def test_a_checkpoint_cannot_name_a_class_that_runs_code(tmp_path: Path, cls: str, match: str) -> None:
    from ofmu_opt.backends.checkpoint import load_checkpoint, manifest_digest, save_checkpoint

    save_checkpoint(tmp_path, {"w": 2})  # no tensors: the replaced structure references none
    m = tmp_path / "manifest.json"
    man = json.loads(m.read_text())
    man["structure"] = {"@": "namedtuple", "cls": cls, "fields": {}}
    man["digest"] = manifest_digest(man)  # a forger who recomputes the content hash: the next layer holds
    m.write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path)


def test_a_checkpoint_cannot_point_outside_its_directory(tmp_path: Path) -> None:
    from ofmu_opt.backends.checkpoint import load_checkpoint, save_checkpoint

    d = tmp_path / "ck"
    save_checkpoint(d, {"w": torch.ones(2)})
    m = d / "manifest.json"
    man = json.loads(m.read_text())
    man["tensor_file"] = "../tensors-x.safetensors"
    m.write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match=r"bad tensor file name '\.\./tensors-x"):
        load_checkpoint(d)


# ------------------------------------------------------------------------------ data files


def test_cifar_loader_refuses_a_code_executing_batch_file(tmp_path: Path) -> None:
    from ofmu_opt.unlearning.data.cifar10 import load_cifar10_splits

    marker = tmp_path / "marker"
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (d / name).write_bytes(pickle.dumps({b"data": _Payload(marker), b"labels": [0]}))
    with pytest.raises(UnsafeFileError, match=r"pickle global (posix|os|nt)\.system.*data_batch|not allowed"):
        load_cifar10_splits(tmp_path)
    assert not marker.exists()


# ------------------------------------------------------------------------------ configs


def test_config_values_are_parsed_never_evaluated(tmp_path: Path) -> None:
    from ofmu_opt.unlearning.methods.ascent import GradDiffConfig

    marker = tmp_path / "marker"
    code = f"__import__('os').system('touch {marker}')"
    toml = tmp_path / "c.toml"
    toml.write_text(f'[method]\nlr = "{code}"\noptimizer = "{code}"\n', encoding="utf-8")
    data = load_toml_file(toml)
    with pytest.raises(ConfigError, match=r"lr: expected a number, received \"__import__"):
        config_from_dict(GradDiffConfig, data["method"])
    with pytest.raises(ConfigError, match=r"optimizer: expected one of 'adam', 'sgd'"):
        config_from_dict(GradDiffConfig, {"optimizer": code})
    from ofmu_opt.reference.solvers import parse_options

    with pytest.raises(ConfigError, match="beta: expected a number"):
        parse_options([f"beta={code}"])
    assert not marker.exists()


# ------------------------------------------------------------------------------ output names


@pytest.mark.parametrize("name", ["../escape.json", "a/../../escape.json", "/tmp/escape.json", "..", "sub/../.."])
def test_output_names_cannot_escape_the_output_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeFileError, match="escapes the output directory"):
        safe_child(tmp_path / "out", name)
    assert safe_child(tmp_path / "out", "sub/ok.json") == (tmp_path / "out" / "sub" / "ok.json").resolve()


def test_user_controlled_names_that_become_paths_are_checked(tmp_path: Path) -> None:
    """Prefixes of eval files and method/experiment names never reach the file system unchecked."""
    from ofmu_opt.unlearning.methods.registry import get_method
    from ofmu_opt.unlearning.metrics.tofu import write_tofu_eval

    with pytest.raises(UnsafeFileError, match="escapes the output directory"):
        write_tofu_eval(tmp_path / "out", {}, prefix="../../evil")
    assert not (tmp_path / "evil_EVAL.json").exists()
    with pytest.raises(ConfigError, match=r"method: expected one of .*'\.\./ga'"):
        get_method("../ga")  # method names become run-record file names in bench
    from ofmu_opt.rates.experiments import run_experiments

    with pytest.raises((ConfigError, DataError), match=r"\.\./x"):
        run_experiments(["../x"], out=tmp_path / "rates", quick=True)

"""One content hash over a checkpoint's manifest and tensors, verified before use: edited or inconsistent
checkpoints are refused with the way out; malformed manifests give a clear CheckpointError."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from ofmu_opt.backends.checkpoint import (  # noqa: E402
    MAX_DEPTH,
    load_checkpoint,
    manifest_digest,
    save_checkpoint,
)
from ofmu_opt.errors import CheckpointError  # noqa: E402

META = {"key": "abc", "step": 39, "history": [{"step": 1, "loss": 0.75}, {"step": 2, "loss": 0.5}], "elapsed_s": 12.25}


def _save(d: Path) -> dict[str, Any]:
    save_checkpoint(d, {"w": torch.arange(4.0), "b": (torch.zeros(2), 0.125), "rho": float("inf")}, meta=META)
    return json.loads((d / "manifest.json").read_text())


def _write(d: Path, man: dict[str, Any], *, reseal: bool) -> None:
    if reseal:
        man["digest"] = manifest_digest(man)
    (d / "manifest.json").write_text(json.dumps(man))


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "step-39-to-55": lambda m: m["meta"].__setitem__("step", 55),
    "history-loss": lambda m: m["meta"]["history"][1].__setitem__("loss", 0.25),
    "history-dropped": lambda m: m["meta"]["history"].pop(),
    "elapsed-time": lambda m: m["meta"].__setitem__("elapsed_s", 1.0),
    "config-key": lambda m: m["meta"].__setitem__("key", "abd"),
    "scalar-in-tree": lambda m: m["structure"]["items"]["b"]["items"].__setitem__(1, 0.5),
    "inf-to-nan": lambda m: m["structure"]["items"]["rho"].__setitem__("repr", "nan"),
    "tensor-sha": lambda m: m.__setitem__("sha256", "0" * 64),
    "tensor-size": lambda m: m.__setitem__("size", m["size"] + 1),
    "extra-top-level-key": lambda m: m.__setitem__("note", "hi"),
    "device-cpu-to-cpu0": lambda m: m["structure"]["items"]["w"].__setitem__("device", "cpu:0"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_manifest_is_refused_with_the_way_out(tmp_path: Path, edit: str) -> None:
    man = _save(tmp_path)
    EDITS[edit](man)
    _write(tmp_path, man, reseal=False)
    with pytest.raises(CheckpointError, match=r"edited or damaged.*content hash mismatch.*delete .*to start over"):
        load_checkpoint(tmp_path)


def test_an_untouched_checkpoint_and_a_reformatted_manifest_load(tmp_path: Path) -> None:
    man = _save(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(dict(reversed(list(man.items()))), indent=4))
    tree, meta = load_checkpoint(tmp_path)
    assert meta == META and tree["w"].tolist() == [0.0, 1.0, 2.0, 3.0] and tree["rho"] == float("inf")


def test_missing_hash_and_old_format(tmp_path: Path) -> None:
    man = _save(tmp_path)
    del man["digest"]
    _write(tmp_path, man, reseal=False)
    with pytest.raises(CheckpointError, match="no content hash.*delete"):
        load_checkpoint(tmp_path)
    man["format"] = "ofmu_opt.checkpoint/1"
    _write(tmp_path, man, reseal=False)
    with pytest.raises(CheckpointError, match="older ofmu_opt without a content hash"):
        load_checkpoint(tmp_path)


MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown-device": (lambda m: m["structure"]["items"]["w"].__setitem__("device", "tpu:0"), "unknown device 'tpu:0'"),
    "device-not-a-string": (lambda m: m["structure"]["items"]["w"].__setitem__("device", 3), "unknown device 3"),
    "meta-device": (lambda m: m["structure"]["items"]["w"].__setitem__("device", "meta"), "unknown device 'meta'"),
    "bad-float": (lambda m: m["structure"]["items"]["rho"].__setitem__("repr", "1e999x"), "bad float '1e999x'"),
    "float-repr-missing": (lambda m: m["structure"]["items"]["rho"].pop("repr"), "bad float None"),
    "tensor-key-missing": (lambda m: m["structure"]["items"]["w"].pop("key"), "tensor node without a key"),
    "items-missing": (lambda m: m["structure"]["items"]["b"].pop("items"), "tuple node without items"),
    "kind-missing": (lambda m: m["structure"]["items"]["b"].pop("@"), "no kind"),
    "kind-unknown": (lambda m: m["structure"]["items"]["b"].__setitem__("@", "set"), "unknown node kind 'set'"),
    "bare-list": (lambda m: m["structure"]["items"].__setitem__("b", [1]), "bare list"),
    "structure-missing": (lambda m: m.pop("structure"), "key 'structure' is missing"),
    "dict-items-not-dict": (lambda m: m["structure"].__setitem__("items", []), "dict node without items"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("reseal", [False, True], ids=["plain", "resealed"])
def test_malformed_manifest_nodes_give_a_clear_error(tmp_path: Path, case: str, reseal: bool) -> None:
    man = _save(tmp_path)
    edit, message = MALFORMED[case]
    edit(man)
    _write(tmp_path, man, reseal=reseal)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("meta"), "meta, size or sha256 missing"),
        (lambda m: m.__setitem__("size", "16"), "meta, size or sha256 missing"),
        (lambda m: m.__setitem__("tensor_file", 7), "bad tensor file name 7"),
        (lambda m: m["structure"]["items"]["w"].__setitem__("key", "t99"), r"missing \['t99'\]"),
    ],
    ids=["meta-missing", "size-not-int", "tensor-file-not-str", "tensor-not-in-file"],
)
def test_resealed_but_inconsistent_checkpoints_are_refused(tmp_path: Path, edit: Any, message: str) -> None:
    man = _save(tmp_path)
    edit(man)
    _write(tmp_path, man, reseal=True)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path)


def test_a_tensor_file_with_unreferenced_tensors_is_inconsistent(tmp_path: Path) -> None:
    import hashlib

    from safetensors.torch import save as st_save

    man = _save(tmp_path)
    payload = st_save({"t0": torch.arange(4.0), "t1": torch.zeros(2), "t9": torch.ones(1)})
    (tmp_path / man["tensor_file"]).write_bytes(payload)
    man.update(size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    _write(tmp_path, man, reseal=True)
    with pytest.raises(CheckpointError, match=r"inconsistent.*unreferenced \['t9'\]"):
        load_checkpoint(tmp_path)


def test_a_device_that_is_not_available_is_a_clear_error(tmp_path: Path) -> None:
    man = _save(tmp_path)
    man["structure"]["items"]["w"]["device"] = "cuda:999"  # no machine has 1000 GPUs
    _write(tmp_path, man, reseal=True)
    with pytest.raises(CheckpointError, match=r"saved on device 'cuda:999'.*device='cpu'"):
        load_checkpoint(tmp_path)
    tree, _ = load_checkpoint(tmp_path, device="cpu")  # the way out works
    assert tree["w"].device.type == "cpu"


def test_deep_manifests_never_raise_recursion_error(tmp_path: Path) -> None:
    man = _save(tmp_path)
    deep = '{"@": "list", "items": [' * 50_000 + "1" + "]}" * 50_000  # built as text: json.dumps would overflow
    text = json.dumps(man).replace('"structure": ' + json.dumps(man["structure"]), '"structure": ' + deep)
    assert len(text) > 50_000 * 20
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(CheckpointError, match=f"nested more than {MAX_DEPTH} levels"):
        load_checkpoint(tmp_path)
    (tmp_path / "manifest.json").write_text("[" * 10**6)
    with pytest.raises(CheckpointError, match="nested more than"):
        load_checkpoint(tmp_path)


def test_save_refuses_a_tree_too_deep_to_load_back(tmp_path: Path) -> None:
    tree: Any = 1
    for _ in range(MAX_DEPTH):
        tree = [tree]
    with pytest.raises(CheckpointError, match="nested too deeply"):
        save_checkpoint(tmp_path / "ck", tree)
    assert not (tmp_path / "ck").exists()

"""Checkpoint and resume of solver state and model parameters: safetensors for tensors, JSON for the rest.

A checkpoint is a directory holding

- ``tensors-<token>.safetensors``: every tensor (and numpy array) of the saved tree, flat, by key;
- ``manifest.json``: the tree's structure (NamedTuples, tuples, lists, dicts, floats — non-finite ones
  included —, ints, strings, ``None``), a user ``meta`` dict, and the tensor file's name, size and
  SHA-256.

Writes are atomic: the tensor file is written to a temporary name, fsynced and renamed; the manifest is
written last (temp + rename) and names the tensor file, so a reader sees either the previous checkpoint
or the new one, never a mix; an interrupted save leaves the previous checkpoint valid. Loading verifies
size and SHA-256 and raises :class:`~ofmu_opt.errors.CheckpointError` for anything missing, truncated,
corrupt or unknown. NamedTuple classes are resolved only inside the ``ofmu_opt`` package (no arbitrary
imports, nothing is unpickled).

Examples:
    >>> import tempfile, torch
    >>> from ofmu_opt.core.steps import SgdState
    >>> d = tempfile.mkdtemp()
    >>> _ = save_checkpoint(d, {"y": (torch.ones(2),), "rule": SgdState(3), "rho": float("inf")}, meta={"step": 3})
    >>> tree, meta = load_checkpoint(d)
    >>> tree["rule"], tree["rho"], meta["step"], tree["y"][0].tolist()
    (SgdState(step=3), inf, 3, [1.0, 1.0])
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._io import atomic_write_bytes, atomic_write_text
from ..errors import CheckpointError

__all__ = ["FORMAT", "load_checkpoint", "save_checkpoint"]

FORMAT = "ofmu_opt.checkpoint/1"
MANIFEST = "manifest.json"


def _encode(obj: Any, tensors: dict[str, Tensor], memo: dict[int, str] | None = None) -> Any:
    memo = {} if memo is None else memo
    if isinstance(obj, Tensor):
        key = memo.get(id(obj))
        if key is None:  # one copy per tensor object; views get their own storage (safetensors needs that)
            key = f"t{len(tensors)}"
            tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
            memo[id(obj)] = key
        return {"@": "tensor", "key": key, "device": str(obj.device)}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj)).clone()
        return {"@": "ndarray", "key": key}
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"@": "float", "repr": repr(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        cls = type(obj)
        return {"@": "namedtuple", "cls": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f: _encode(getattr(obj, f), tensors, memo) for f in obj._fields}}
    if isinstance(obj, tuple):
        return {"@": "tuple", "items": [_encode(v, tensors, memo) for v in obj]}
    if isinstance(obj, list):
        return {"@": "list", "items": [_encode(v, tensors, memo) for v in obj]}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise CheckpointError("checkpoint: dict keys must be strings")
        return {"@": "dict", "items": {k: _encode(v, tensors, memo) for k, v in obj.items()}}
    raise CheckpointError(f"checkpoint: cannot store a value of type {type(obj).__name__}")


def _namedtuple_class(path: str) -> type:
    mod, _, qual = path.partition(":")
    # dunder modules (``ofmu_opt.cli.__main__``) run code on import: never resolve them
    if (not (mod == "ofmu_opt" or mod.startswith("ofmu_opt.")) or not qual or "." in qual
            or any(part.startswith("__") for part in mod.split("."))):
        raise CheckpointError(f"checkpoint: refusing to resolve class {path!r} (only ofmu_opt NamedTuples)")
    try:
        cls = getattr(importlib.import_module(mod), qual)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint: unknown class {path!r}") from exc
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise CheckpointError(f"checkpoint: {path!r} is not a NamedTuple")
    return cls


def _decode(node: Any, tensors: dict[str, Tensor], device: Any) -> Any:
    if node is None or isinstance(node, bool | int | float | str):
        return node
    if isinstance(node, list):  # not produced by _encode
        raise CheckpointError("checkpoint: malformed manifest (bare list)")
    if not isinstance(node, dict) or "@" not in node:
        raise CheckpointError("checkpoint: malformed manifest node")
    kind = node["@"]
    if kind in ("tensor", "ndarray"):
        key = node.get("key")
        if key not in tensors:
            raise CheckpointError(f"checkpoint: tensor {key!r} missing from the tensor file")
        t = tensors[key]
        if kind == "ndarray":
            return t.numpy().copy()
        return t.to(device if device is not None else node.get("device", "cpu"))
    if kind == "float":
        return float(node["repr"])
    if kind == "namedtuple":
        cls = _namedtuple_class(str(node.get("cls")))
        fields = node.get("fields", {})
        if set(fields) != set(cls._fields):  # type: ignore[attr-defined]
            raise CheckpointError(f"checkpoint: fields of {node.get('cls')} do not match this version")
        return cls(**{f: _decode(v, tensors, device) for f, v in fields.items()})
    if kind == "tuple":
        return tuple(_decode(v, tensors, device) for v in node["items"])
    if kind == "list":
        return [_decode(v, tensors, device) for v in node["items"]]
    if kind == "dict":
        return {k: _decode(v, tensors, device) for k, v in node["items"].items()}
    raise CheckpointError(f"checkpoint: unknown node kind {kind!r}")


def save_checkpoint(directory: str | os.PathLike[str], tree: Any, *, meta: dict[str, Any] | None = None) -> Path:
    """Save ``tree`` (solver state, model parameters, anything built from tensors, arrays, NamedTuples,
    tuples, lists, dicts and scalars) into ``directory`` atomically.

    Args:
        directory: the checkpoint directory (created if missing; a previous checkpoint there is replaced).
        tree: what to save.
        meta: JSON-able extra information (step, config, seed ...).

    Returns:
        The path of the manifest.

    Raises:
        CheckpointError: a value cannot be stored.
    """
    from safetensors.torch import save as st_save

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    structure = _encode(tree, tensors)
    payload = st_save(tensors) if tensors else b""
    name = f"tensors-{secrets.token_hex(6)}.safetensors"
    atomic_write_bytes(d / name, payload)
    manifest = {
        "format": FORMAT, "tensor_file": name, "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(), "structure": structure, "meta": meta or {},
    }
    try:
        text = json.dumps(manifest, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint: meta is not JSON-able: {exc}") from exc
    path = atomic_write_text(d / MANIFEST, text)
    for old in d.glob("tensors-*.safetensors"):  # the manifest no longer names them
        if old.name != name:
            try:
                old.unlink()
            except OSError:
                pass
    return path


def load_checkpoint(directory: str | os.PathLike[str], *, device: Any = None) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint saved by :func:`save_checkpoint`.

    Args:
        directory: the checkpoint directory.
        device: where tensors go (default: the device each was saved from).

    Returns:
        ``(tree, meta)``.

    Raises:
        CheckpointError: missing, truncated or corrupt files, or a manifest of another format.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    d = Path(directory)
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"checkpoint {str(d)!r}: no {MANIFEST} (missing or not a checkpoint)")
    try:
        manifest = json.loads(mpath.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {str(d)!r}: {MANIFEST} is corrupt: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(d)!r}: expected format {FORMAT!r}, received {manifest.get('format')!r}"
                              if isinstance(manifest, dict) else f"checkpoint {str(d)!r}: malformed manifest")
    name = str(manifest.get("tensor_file", ""))
    if "/" in name or "\\" in name or not name.startswith("tensors-"):
        raise CheckpointError(f"checkpoint {str(d)!r}: bad tensor file name {name!r}")
    tpath = d / name
    if not tpath.is_file():
        raise CheckpointError(f"checkpoint {str(d)!r}: tensor file {name} is missing")
    payload = tpath.read_bytes()
    if len(payload) != manifest.get("size"):
        raise CheckpointError(
            f"checkpoint {str(d)!r}: tensor file {name} is truncated or padded "
            f"({len(payload)} bytes, expected {manifest.get('size')})"
        )
    if hashlib.sha256(payload).hexdigest() != manifest.get("sha256"):
        raise CheckpointError(f"checkpoint {str(d)!r}: tensor file {name} is corrupt (SHA-256 mismatch)")
    try:
        tensors = st_load(payload) if payload else {}
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(d)!r}: cannot read {name}: {exc}") from exc
    tree = _decode(manifest.get("structure"), tensors, device)
    meta = manifest.get("meta", {})
    return tree, meta if isinstance(meta, dict) else {}

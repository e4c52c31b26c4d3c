"""Checkpoint and resume of solver state and model parameters: safetensors for tensors, JSON for the rest.

A checkpoint is a directory holding

- ``tensors-<token>.safetensors``: every tensor (and numpy array) of the saved tree, flat, by key;
- ``manifest.json``: the tree's structure (NamedTuples, tuples, lists, dicts, floats — non-finite ones
  included —, ints, strings, ``None``), a user ``meta`` dict, the tensor file's name, size and
  SHA-256, and a ``digest``: the SHA-256 of everything else in the manifest (canonical JSON). Because the
  manifest holds the tensor file's hash, this one content hash covers structure, meta and tensors: an
  edited step, loss history or elapsed time is refused, never resumed from.

Writes are atomic: the tensor file is written to a temporary name, fsynced and renamed; the manifest is
written last (temp + rename) and names the tensor file, so a reader sees either the previous checkpoint
or the new one, never a mix; an interrupted save leaves the previous checkpoint valid. Loading verifies
every node, the content hash, size and SHA-256 before any use and raises
:class:`~ofmu_opt.errors.CheckpointError` for anything missing, truncated, corrupt, edited or unknown.
The hash is not a signature: it detects edits and damage, not an attacker who recomputes it.
NamedTuple classes are resolved only inside the ``ofmu_opt`` package (no arbitrary imports, nothing is
unpickled).

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
import hmac
import importlib
import json
import math
import os
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._io import atomic_write_bytes, atomic_write_text, canonical_json, loads_json, read_bytes_limited, value_depth
from ..errors import CheckpointError

__all__ = ["FORMAT", "MAX_DEPTH", "load_checkpoint", "manifest_digest", "save_checkpoint"]

FORMAT = "ofmu_opt.checkpoint/2"
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


_DEVICE = re.compile(r"(cpu|cuda|mps|xpu)(:[0-9]{1,4})?")
_FLOAT_REPRS = {"inf", "-inf", "nan"}
MAX_DEPTH = 100
"""Nesting limit of a manifest (JSON levels); :func:`save_checkpoint` refuses deeper trees."""


def _check_class_name(path: str) -> tuple[str, str]:
    mod, _, qual = path.partition(":")
    # dunder modules (``ofmu_opt.cli.__main__``) run code on import: never resolve them
    if (not (mod == "ofmu_opt" or mod.startswith("ofmu_opt.")) or not qual or "." in qual
            or any(part.startswith("__") for part in mod.split("."))):
        raise CheckpointError(f"checkpoint: refusing to resolve class {path!r} (only ofmu_opt NamedTuples)")
    return mod, qual


def _namedtuple_class(path: str) -> type:
    mod, qual = _check_class_name(path)
    try:
        cls = getattr(importlib.import_module(mod), qual)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint: unknown class {path!r}") from exc
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise CheckpointError(f"checkpoint: {path!r} is not a NamedTuple")
    return cls


def _validate_structure(root: Any) -> set[str]:
    """Check every node of a manifest's structure without importing or allocating anything; returns the
    tensor keys it references. Iterative (no recursion limit)."""
    keys: set[str] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or isinstance(node, bool | int | str):
            continue
        if isinstance(node, float):
            if not math.isfinite(node):
                raise CheckpointError("checkpoint: malformed manifest (bare non-finite number)")
            continue
        if isinstance(node, list):  # not produced by _encode
            raise CheckpointError("checkpoint: malformed manifest (bare list)")
        if not isinstance(node, dict) or not isinstance(node.get("@"), str):
            raise CheckpointError("checkpoint: malformed manifest node (no kind)")
        kind = node["@"]
        if kind in ("tensor", "ndarray"):
            key = node.get("key")
            if not isinstance(key, str):
                raise CheckpointError(f"checkpoint: malformed manifest ({kind} node without a key)")
            keys.add(key)
            if kind == "tensor":
                dev = node.get("device", "cpu")
                if not isinstance(dev, str) or not _DEVICE.fullmatch(dev):
                    raise CheckpointError(f"checkpoint: tensor {key!r} has an unknown device {dev!r}")
        elif kind == "float":
            rep = node.get("repr")
            if not isinstance(rep, str) or rep not in _FLOAT_REPRS:
                raise CheckpointError(
                    f"checkpoint: bad float {node.get('repr')!r} (expected one of inf, -inf, nan)")
        elif kind == "namedtuple":
            if not isinstance(node.get("cls"), str):
                raise CheckpointError("checkpoint: malformed manifest (namedtuple node without a class)")
            _check_class_name(node["cls"])
            if not isinstance(node.get("fields"), dict):
                raise CheckpointError(f"checkpoint: malformed manifest (fields of {node['cls']!r} missing)")
            stack.extend(node["fields"].values())
        elif kind in ("tuple", "list"):
            if not isinstance(node.get("items"), list):
                raise CheckpointError(f"checkpoint: malformed manifest ({kind} node without items)")
            stack.extend(node["items"])
        elif kind == "dict":
            if not isinstance(node.get("items"), dict):
                raise CheckpointError("checkpoint: malformed manifest (dict node without items)")
            stack.extend(node["items"].values())
        else:
            raise CheckpointError(f"checkpoint: unknown node kind {kind!r}")
    return keys


def _to_device(t: Tensor, dev: Any, key: str) -> Tensor:
    try:
        return t.to(dev)
    except (RuntimeError, AssertionError, ValueError, TypeError) as exc:  # no CUDA build, bad ordinal
        raise CheckpointError(
            f"checkpoint: tensor {key!r} was saved on device {str(dev)!r}, which is not available here "
            f"({' '.join(str(exc).split())[:160]}); load it with device='cpu'"
        ) from exc


def _decode(node: Any, tensors: dict[str, Tensor], device: Any) -> Any:
    """Rebuild a value from a structure that :func:`_validate_structure` accepted."""
    if node is None or isinstance(node, bool | int | float | str):
        return node
    kind = node["@"]
    if kind in ("tensor", "ndarray"):
        key = node["key"]
        t = tensors[key]
        if kind == "ndarray":
            return t.numpy().copy()
        return _to_device(t, device if device is not None else node.get("device", "cpu"), key)
    if kind == "float":
        return float(node["repr"])
    if kind == "namedtuple":
        cls = _namedtuple_class(node["cls"])
        fields = node["fields"]
        if set(fields) != set(cls._fields):  # type: ignore[attr-defined]
            raise CheckpointError(f"checkpoint: fields of {node.get('cls')} do not match this version")
        return cls(**{f: _decode(v, tensors, device) for f, v in fields.items()})
    if kind == "tuple":
        return tuple(_decode(v, tensors, device) for v in node["items"])
    if kind == "list":
        return [_decode(v, tensors, device) for v in node["items"]]
    return {k: _decode(v, tensors, device) for k, v in node["items"].items()}


def _same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def manifest_digest(manifest: dict[str, Any]) -> str:
    """The content hash of a manifest: SHA-256 of its canonical JSON without the ``digest`` entry. The
    manifest holds the tensor file's SHA-256, so this one hash covers structure, meta and tensors."""
    return hashlib.sha256(canonical_json({k: v for k, v in manifest.items() if k != "digest"})).hexdigest()


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
    tensors: dict[str, Tensor] = {}
    structure = _encode(tree, tensors)
    manifest: dict[str, Any] = {"format": FORMAT, "structure": structure, "meta": meta or {}}
    try:
        json.dumps(manifest, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint: meta is not JSON-able: {exc}") from exc
    if value_depth(manifest, MAX_DEPTH) > MAX_DEPTH:
        raise CheckpointError(f"checkpoint: the tree is nested too deeply to store (limit {MAX_DEPTH} levels)")
    d.mkdir(parents=True, exist_ok=True)
    payload = st_save(tensors) if tensors else b""
    name = f"tensors-{secrets.token_hex(6)}.safetensors"
    atomic_write_bytes(d / name, payload)
    manifest.update(tensor_file=name, size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    manifest["digest"] = manifest_digest(manifest)
    path = atomic_write_text(d / MANIFEST, json.dumps(manifest, indent=1, allow_nan=False))
    for old in d.glob("tensors-*.safetensors"):  # the manifest no longer names them
        if old.name != name:
            try:
                old.unlink()
            except OSError:
                pass
    return path


def load_checkpoint(directory: str | os.PathLike[str], *, device: Any = None) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint saved by :func:`save_checkpoint`, verifying it completely before any use.

    Checks, in order: the manifest is JSON of bounded size and depth, of this format, names a tensor file
    that exists in the directory; every node of its structure is well formed (known kinds, devices and
    classes, valid float markers, required keys); its content hash matches (so an edited step, loss
    history, elapsed time or any other byte is refused); the tensor file has the recorded size and
    SHA-256, is readable, and holds exactly the tensors the structure references.

    Args:
        directory: the checkpoint directory.
        device: where tensors go (default: the device each was saved from).

    Returns:
        ``(tree, meta)``.

    Raises:
        CheckpointError: missing, truncated, corrupt, edited or inconsistent files, or a manifest of
            another format; the message says how to get out (delete the checkpoint).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    d = Path(directory)
    where = f"checkpoint {str(d)!r}"
    way_out = f"delete {str(d)!r} (or rerun without --resume) to start over"
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"{where}: no {MANIFEST} (missing or not a checkpoint)")
    raw = read_bytes_limited(mpath, f"{where}: {MANIFEST}", error=CheckpointError)
    try:
        manifest = loads_json(raw, f"{where}: {MANIFEST}", max_depth=MAX_DEPTH, error=CheckpointError)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (corrupt); {way_out}") from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{where}: malformed manifest (not a JSON object); {way_out}")
    if manifest.get("format") == "ofmu_opt.checkpoint/1":
        raise CheckpointError(f"{where} was written by an older ofmu_opt without a content hash; {way_out}")
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{where}: expected format {FORMAT!r}, received {manifest.get('format')!r}")
    name = manifest.get("tensor_file")
    if not isinstance(name, str) or "/" in name or "\\" in name or not name.startswith("tensors-"):
        raise CheckpointError(f"{where}: bad tensor file name {name!r}")
    tpath = d / name
    if not tpath.is_file():
        raise CheckpointError(f"{where}: tensor file {name} is missing; {way_out}")
    if "structure" not in manifest:
        raise CheckpointError(f"{where}: malformed manifest (the key 'structure' is missing); {way_out}")
    try:
        referenced = _validate_structure(manifest["structure"])
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} in {where}; {way_out}") from exc
    digest = manifest.get("digest")
    if not isinstance(digest, str):
        raise CheckpointError(f"{where}: {MANIFEST} carries no content hash; {way_out}")
    if not _same_digest(digest, manifest_digest(manifest)):
        raise CheckpointError(
            f"{where}: {MANIFEST} was edited or damaged after it was written (content hash mismatch); {way_out}"
        )
    meta = manifest.get("meta")
    size = manifest.get("size")
    if not isinstance(meta, dict) or not isinstance(size, int) or not isinstance(manifest.get("sha256"), str):
        raise CheckpointError(f"{where}: malformed manifest (meta, size or sha256 missing); {way_out}")
    try:
        actual = tpath.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{where}: tensor file {name} cannot be read: {exc.strerror}; {way_out}") from exc
    payload = b"" if actual != size else read_bytes_limited(
        tpath, f"{where}: tensor file", max_bytes=size, error=CheckpointError)
    if actual != size or len(payload) != size:
        raise CheckpointError(
            f"{where}: tensor file {name} is truncated or padded ({actual} bytes, expected {size}); {way_out}"
        )
    if not _same_digest(hashlib.sha256(payload).hexdigest(), manifest["sha256"]):
        raise CheckpointError(f"{where}: tensor file {name} is corrupt (SHA-256 mismatch); {way_out}")
    try:
        tensors = st_load(payload) if payload else {}
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: cannot read {name}: {exc}; {way_out}") from exc
    if set(tensors) != referenced:
        missing, extra = sorted(referenced - set(tensors)), sorted(set(tensors) - referenced)
        raise CheckpointError(
            f"{where}: inconsistent: the manifest and the tensor file disagree (missing {missing[:5]}, "
            f"unreferenced {extra[:5]}); {way_out}"
        )
    tree = _decode(manifest["structure"], tensors, device)
    return tree, meta

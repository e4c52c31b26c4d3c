"""Model-directory checks without loading a tensor: guarded JSON, safetensors headers against the file
size, sharded indexes, tokenizer files (untrusted model files never run code)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ....errors import CheckpointError

if TYPE_CHECKING:
    pass

__all__ = [
    "GGUF_MAGIC",
    "read_json_guarded",
    "safetensors_header",
    "validate_model_dir",
    "weight_files",
]

logger = logging.getLogger(__name__)

_JSON_MAX_BYTES = 64 << 20  # config / index / tokenizer-config files: far above any real one
_JSON_MAX_DEPTH = 64
_SAFETENSORS_HEADER_MAX = 100 << 20
_ST_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
GGUF_MAGIC = b"GGUF"


def _json_depth(obj: Any) -> int:
    depth, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        depth = max(depth, d)
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return depth


def read_json_guarded(path: Path, what: str, max_bytes: int = _JSON_MAX_BYTES) -> Any:
    """Parse a JSON file of a model directory with size and nesting limits.

    Raises:
        CheckpointError: missing, too large, not UTF-8, not JSON, or nested deeper than 64 levels.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{what} {str(path)!r}: cannot be read ({exc.strerror or exc})") from exc
    if size > max_bytes:
        raise CheckpointError(f"{what} {str(path)!r}: {size} bytes, expected at most {max_bytes}")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except RecursionError as exc:
        raise CheckpointError(f"{what} {str(path)!r}: JSON nested too deeply") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{what} {str(path)!r}: not valid JSON ({exc})") from exc
    if _json_depth(data) > _JSON_MAX_DEPTH:
        raise CheckpointError(f"{what} {str(path)!r}: JSON nested deeper than {_JSON_MAX_DEPTH} levels")
    return data


def safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor names, dtypes and shapes of a ``.safetensors`` file, checked against the file size.

    Only the header is read. A file cut short (an interrupted copy or download) is detected here, before
    any tensor is loaded: every tensor's byte range must lie inside the file and match its dtype and shape.

    Raises:
        CheckpointError: unreadable, truncated, or a malformed header.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"weights file {str(path)!r}: truncated ({size} bytes, no header)")
            n = int.from_bytes(head, "little")
            if n > min(_SAFETENSORS_HEADER_MAX, size - 8):
                raise CheckpointError(
                    f"weights file {str(path)!r}: header of {n} bytes does not fit in the {size}-byte file "
                    "(truncated or not a safetensors file)"
                )
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"weights file {str(path)!r}: cannot be read ({exc.strerror or exc})") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError as exc:
        raise CheckpointError(f"weights file {str(path)!r}: header JSON nested too deeply") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"weights file {str(path)!r}: malformed header ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"weights file {str(path)!r}: header is not a JSON object")
    body = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = spec["dtype"], tuple(int(d) for d in spec["shape"]), spec["data_offsets"]
            begin, end = int(begin), int(end)
        except (TypeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"weights file {str(path)!r}: malformed entry for tensor {name!r}") from exc
        width = _ST_DTYPE_BYTES.get(str(dtype))
        numel = 1
        for d in shape:
            numel *= d
        if width is None or min(shape, default=0) < 0 or not 0 <= begin <= end or end - begin != numel * width:
            raise CheckpointError(f"weights file {str(path)!r}: inconsistent entry for tensor {name!r}")
        if end > body:
            raise CheckpointError(
                f"weights file {str(path)!r} is truncated: tensor {name!r} needs bytes up to {end} of the data "
                f"section, the file holds {max(body, 0)}"
            )
        out[str(name)] = (str(dtype), shape)
    return out


def _check_config(cfg: Any, where: str) -> None:
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{where}: expected a JSON object, received {type(cfg).__name__}")
    mt = cfg.get("model_type")
    if not isinstance(mt, str) or not mt:
        raise CheckpointError(f"{where}: expected a 'model_type' string (save_pretrained output)")
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "n_embd", "n_layer",
                "n_head", "intermediate_size", "max_position_embeddings", "n_positions"):
        if key in cfg:
            v = cfg[key]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 1 << 31:
                raise CheckpointError(f"{where}: {key!r} must be a positive integer, received {v!r}")
    arch = cfg.get("architectures")
    if arch is not None and not (isinstance(arch, list) and all(isinstance(a, str) for a in arch)):
        raise CheckpointError(f"{where}: 'architectures' must be a list of class names")


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a model directory (single file or a sharded index), validated.

    Raises:
        CheckpointError: no safetensors weights, a malformed index, a missing or truncated shard.
    """
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        idx = read_json_guarded(index, "weights index")
        wm = idx.get("weight_map") if isinstance(idx, dict) else None
        if not isinstance(wm, dict) or not wm or not all(isinstance(v, str) for v in wm.values()):
            raise CheckpointError(f"weights index {str(index)!r}: expected a 'weight_map' object of file names")
        files = []
        for name in sorted(set(wm.values())):
            f = directory / name
            if Path(name).name != name or not f.is_file():
                raise CheckpointError(f"weights index {str(index)!r}: shard {name!r} is missing from the directory")
            files.append(f)
        declared: dict[str, set[str]] = {}
        for tensor, name in wm.items():
            declared.setdefault(name, set()).add(tensor)
        for f in files:
            missing = declared[f.name] - set(safetensors_header(f))
            if missing:
                raise CheckpointError(
                    f"weights shard {str(f)!r}: tensors listed in the index are absent: {sorted(missing)[:5]}"
                )
        return files
    if single.is_file():
        safetensors_header(single)
        return [single]
    if any((directory / n).is_file() for n in ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        raise CheckpointError(
            f"model directory {str(directory)!r}: weights are pickled (pytorch_model.bin), which can run code on "
            "load; convert them to safetensors (model.save_pretrained(dir, safe_serialization=True))"
        )
    raise CheckpointError(f"model directory {str(directory)!r}: no model.safetensors (or sharded index) found")


def validate_model_dir(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a model directory without loading any tensor; returns its ``config.json`` object.

    Checks: ``config.json`` is a sane JSON object (size and nesting limits, a ``model_type``, positive
    sizes); tokenizer files are present; the safetensors weights (single or sharded) exist, their headers
    parse and no file is truncated. Missing tensors are caught at load time by :func:`load_causal_lm`
    (transformers would otherwise fill them with random values silently).

    Raises:
        CheckpointError: anything above fails, with the file and the reason.
    """
    p = Path(path)
    try:
        is_dir = p.is_dir()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise CheckpointError(f"model directory {str(p)!r}: cannot be read ({exc.strerror or exc})") from exc
    if not is_dir:
        raise CheckpointError(f"model directory {str(p)!r} does not exist or is not a directory")
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"model directory {str(p)!r}: expected a config.json (save_pretrained output)")
    cfg = read_json_guarded(cfg_path, "model config", max_bytes=1 << 20)
    _check_config(cfg, f"model config {str(cfg_path)!r}")
    for name in ("tokenizer_config.json", "generation_config.json", "special_tokens_map.json"):
        if (p / name).is_file():
            read_json_guarded(p / name, name.removesuffix(".json").replace("_", " "))
    if not any((p / n).is_file() for n in _TOKENIZER_FILES):
        raise CheckpointError(
            f"model directory {str(p)!r}: no tokenizer files (expected one of {', '.join(_TOKENIZER_FILES)}); "
            "save the tokenizer next to the model (tokenizer.save_pretrained(dir))"
        )
    weight_files(p)
    return dict(cfg)

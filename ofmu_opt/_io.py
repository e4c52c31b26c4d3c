"""Atomic file writes and safe output paths.

Every file the package writes goes through :func:`atomic_write_bytes` (temp file in the same directory,
``fsync``, ``os.replace``), so a reader never sees a truncated file and a crash leaves either the old or
the new content.

Examples:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> p = atomic_write_json(d / "a.json", {"x": 1})
    >>> p.read_text(encoding="utf-8").strip()
    '{\\n  "x": 1\\n}'
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import DataError, UnsafeFileError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_output_dir",
    "read_json",
    "safe_child",
]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename).

    Args:
        path: destination file; its parent directory is created if missing.
        data: the bytes to write.

    Returns:
        The destination as a :class:`~pathlib.Path`.

    Raises:
        DataError: the destination is a directory or its directory is not writable.
    """
    dest = Path(path)
    if dest.is_dir():
        raise DataError(f"output path {str(dest)!r}: expected a file, received a directory")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    except OSError as exc:
        raise DataError(f"output directory {str(dest.parent)!r} is not writable: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would (0666 & ~umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return dest


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):
        return _jsonable(obj.item())
    return obj


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Serialise ``obj`` as indented JSON (NaN as null, arrays as lists) and write it atomically."""
    return atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Read a JSON file, turning every failure into a :class:`DataError` that names the file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} {str(p)!r} does not exist")
    if p.is_dir():
        raise DataError(f"{what} {str(p)!r}: expected a file, received a directory")
    try:
        return json.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} {str(p)!r} is not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} {str(p)!r} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc


def safe_child(directory: str | os.PathLike[str], name: str) -> Path:
    """Return ``directory / name`` after checking that it stays inside ``directory``.

    Raises:
        UnsafeFileError: ``name`` is absolute or climbs out with ``..``.
    """
    base = Path(directory).resolve()
    candidate = (base / name).resolve()
    if Path(name).is_absolute() or (candidate != base and base not in candidate.parents):
        raise UnsafeFileError(f"output name {name!r} escapes the output directory {str(base)!r}")
    return candidate


def check_output_dir(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Check, without creating anything, that ``path`` is (or can be created as) a writable directory.

    Command entry points call this before any work, so a bad output directory fails in a second instead
    of after training, and leaves nothing behind.

    Raises:
        DataError: ``path`` is a file, lies below a file, or its nearest existing ancestor is not writable.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DataError(f"{what} {str(p)!r}: expected a directory, received a file")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise DataError(f"{what} {str(p)!r} is not writable: {str(probe)!r} is not a directory")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise DataError(f"{what} {str(p)!r} is not writable: no write permission on {str(probe)!r}")
    return p

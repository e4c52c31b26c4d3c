"""Every path of a run checked before any work: output, cache, config, model, data, retain logs.

A bad path fails in a second with one clear message instead of after training: a file where a
directory is expected (or the reverse), a missing input, a dangling symbolic link, a symbolic-link
loop, a directory that cannot be written. Nothing is created here.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import check_output_dir
from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    from .runner import RunConfig

__all__ = ["check_input", "check_paths", "check_writable_dir"]


def _links(path: Path, what: str) -> None:
    """Refuse a dangling link or a link loop anywhere along ``path``."""
    parts = path.parts
    for i in range(1, len(parts) + 1):
        p = Path(*parts[:i])
        if not p.is_symlink():
            continue
        try:
            os.stat(p)
        except FileNotFoundError:
            raise DataError(f"{what} {str(path)!r}: {str(p)!r} is a dangling symbolic link "
                            f"(it points to {os.readlink(p)!r}, which does not exist)") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise DataError(f"{what} {str(path)!r}: {str(p)!r} is a symbolic-link loop") from None
            raise DataError(f"{what} {str(path)!r}: {str(p)!r} cannot be read: {exc.strerror}") from None


def _name_ok(path: Path, what: str) -> None:
    for part in path.parts:
        if len(part.encode("utf-8", "surrogateescape")) > 255:
            raise ConfigError(f"{what}: a path component is longer than 255 bytes ({part[:40]}...)")
    if "\x00" in str(path):
        raise ConfigError(f"{what}: the path contains a NUL character")


def check_writable_dir(path: Path, what: str) -> Path:
    """``path`` is, or can be created as, a writable directory (no dangling link or loop on the way)."""
    _name_ok(path, what)
    _links(path, what)
    return check_output_dir(path, what)


def check_input(path: Path, what: str, kind: str = "any") -> Path:
    """``path`` exists (``kind``: ``"file"``, ``"dir"`` or ``"any"``) and is readable."""
    _name_ok(path, what)
    _links(path, what)
    if not path.exists():
        raise DataError(f"{what} {str(path)!r} does not exist")
    if kind == "file" and not path.is_file():
        raise DataError(f"{what} {str(path)!r}: expected a file, received a directory")
    if kind == "dir" and not path.is_dir():
        raise DataError(f"{what} {str(path)!r}: expected a directory, received a file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{what} {str(path)!r} is not readable")
    return path


def check_paths(cfg: RunConfig, out: Path) -> Path:
    """Check the output directory and every input path of ``cfg``; returns the output directory."""
    out = check_writable_dir(out, "--out")
    if cfg.config:
        check_input(Path(cfg.config), "--config", "file")
    if cfg.model:
        check_input(Path(cfg.model), "--model")  # a directory, or a file (GGUF) the benchmark accepts
    if cfg.data:
        check_input(Path(cfg.data), "--data")
    if cfg.retain_logs:
        check_input(Path(cfg.retain_logs), "--retain-logs", "file")
    return out

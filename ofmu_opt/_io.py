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

import contextlib
import json
import logging
import math
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DataError, OutputLockedError, UnsafeFileError

__all__ = [
    "LOCK_NAME",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_output_dir",
    "lock_holder",
    "output_lock",
    "read_json",
    "safe_child",
]

log = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------------------------------------
# one run per output directory: an advisory lock

LOCK_NAME = ".ofmu.lock"
_held: dict[str, int] = {}  # resolved directory -> nesting depth of output_lock in this process
_held_guard = threading.Lock()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def lock_holder(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the lock file of ``directory`` says about its holder (``pid``, ``host``, ``started``,
    ``command``), or ``None`` when there is no readable lock file. Advisory information only: whether the
    lock is held is decided by the lock itself, not by this record."""
    try:
        raw = (Path(directory) / LOCK_NAME).read_bytes()[:4096]
        info = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _holder_text(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process (holder unknown)"
    pid = info.get("pid")
    parts = [f"pid {pid}" if isinstance(pid, int) else "an unknown pid"]
    if isinstance(info.get("host"), str) and info["host"] != socket.gethostname():
        parts.append(f"on host {info['host']}")
    if isinstance(info.get("started"), str):
        parts.append(f"since {info['started']}")
    if isinstance(info.get("command"), str):
        parts.append(f"running {info['command'][:120]!r}")
    return " ".join(parts)


def _lock_record() -> bytes:
    info = {
        "pid": os.getpid(), "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:400],
    }
    return (json.dumps(info) + "\n").encode("utf-8")


def _refuse(d: Path, what: str, info: dict[str, Any] | None) -> OutputLockedError:
    return OutputLockedError(
        f"{what} {str(d)!r} is in use by another ofmu run ({_holder_text(info)}); wait for it to finish, "
        f"or choose another {what}"
    )


def _acquire_flock(d: Path, what: str) -> int | None:
    """Take the ``flock`` on ``d/LOCK_NAME``; returns the open descriptor, or ``None`` when the file
    system does not support ``flock`` (the caller then falls back to a pid file)."""
    import fcntl

    path = d / LOCK_NAME
    for _ in range(50):  # retries only when a releasing holder unlinked the file under us
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise DataError(f"{what} {str(d)!r}: cannot create the lock file: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _refuse(d, what, lock_holder(d)) from None
        except OSError:  # ENOLCK / EOPNOTSUPP (some network file systems)
            os.close(fd)
            return None
        # the holder before us may have unlinked the file between our open and our flock: then we hold a
        # lock on an orphaned inode, and a third process could lock a fresh file; start again
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _lock_record(), 0)
            return fd
        os.close(fd)
    raise _refuse(d, what, lock_holder(d))


def _acquire_pidfile(d: Path, what: str) -> None:
    """Fallback without ``flock``: an exclusively created pid file; a file left by a dead process on this
    host is stale and is removed."""
    path = d / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            info = lock_holder(d)
            pid = info.get("pid") if info else None
            stale = (info is not None and isinstance(pid, int) and info.get("host") == socket.gethostname()
                     and not _pid_alive(pid))
            if not stale:
                raise _refuse(d, what, info) from None
            log.warning("removing the stale lock of dead process %s in %s", pid, d)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        except OSError as exc:
            raise DataError(f"{what} {str(d)!r}: cannot create the lock file: {exc.strerror}") from exc
        try:
            os.write(fd, _lock_record())
        finally:
            os.close(fd)
        return
    raise _refuse(d, what, lock_holder(d))


@contextlib.contextmanager
def output_lock(directory: str | os.PathLike[str], *, what: str = "--out") -> Iterator[Path]:
    """Hold an advisory lock on an output directory for the duration of a ``with`` block.

    A second run (another process) that asks for the same directory is refused at once with
    :class:`~ofmu_opt.errors.OutputLockedError` naming the holder's pid; it never waits and never
    touches the directory. The directory is created if missing. On POSIX the lock is an ``flock`` on
    ``<directory>/.ofmu.lock``, which the kernel releases when its holder dies (SIGKILL included), so a
    lock left by a dead process never blocks a later run; where ``flock`` is unavailable a pid file is used
    and a pid file of a dead process on this host is removed as stale. The lock file is removed on
    release. Nested use on the same directory in one process is allowed (re-entrant).

    Args:
        directory: the output directory.
        what: how error messages name the directory (the CLI option).

    Yields:
        The directory as a :class:`~pathlib.Path`.

    Raises:
        OutputLockedError: another live process holds the lock.
        DataError: the directory cannot be created or the lock file cannot be written.

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> with output_lock(d) as out:
        ...     (out / ".ofmu.lock").exists()
        True
        >>> (out / ".ofmu.lock").exists()
        False
    """
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise DataError(f"{what} {str(d)!r}: expected a directory, received a file")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{what} {str(d)!r} cannot be created: {exc.strerror}") from exc
    key = str(d.resolve())
    with _held_guard:
        if key in _held:
            _held[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield d
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    fd: int | None = None
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - not POSIX
        use_flock = False
    else:
        use_flock = True
    if use_flock:
        fd = _acquire_flock(d, what)
    if fd is None:
        _acquire_pidfile(d, what)
    with _held_guard:
        _held[key] = 1
    try:
        yield d
    finally:
        with _held_guard:
            _held.pop(key, None)
        # unlink while still holding the lock, so nobody can lock the old inode after we let go
        with contextlib.suppress(OSError):
            (d / LOCK_NAME).unlink()
        if fd is not None:
            os.close(fd)

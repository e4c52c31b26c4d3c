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
import hashlib
import hmac
import json
import logging
import math
import os
import re
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DataError, IntegrityError, OfmuError, OutputLockedError, UnsafeFileError

__all__ = [
    "DIGEST_KEY",
    "LOCK_NAME",
    "MAX_BYTES",
    "MAX_DEPTH",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_record",
    "atomic_write_text",
    "canonical_json",
    "check_output_dir",
    "check_path_text",
    "loads_json",
    "loads_toml",
    "lock_holder",
    "output_lock",
    "read_bytes_limited",
    "read_json",
    "read_record",
    "read_toml",
    "record_digest",
    "safe_child",
    "value_depth",
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
    dest = check_path_text(path, "output path")
    if dest.is_dir():
        raise DataError(f"output path {str(dest)!r}: expected a file, received a directory")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # the temporary name stays short even when the destination's name is near the 255-byte limit
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name[:64]}.", suffix=".tmp")
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
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):  # disk full, quota, read-only file system, name too long ...
            raise DataError(f"cannot write {str(dest)!r}: {exc.strerror or exc}") from exc
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


# --------------------------------------------------------------------------------------------------------
# safe loading of structured files (JSON, TOML): size and depth limits, every failure a DataError

MAX_DEPTH = 64
"""Default nesting limit of every structured file the package reads (arrays/objects/tables)."""
MAX_BYTES = 256 * 1024 * 1024
"""Default size limit (bytes) of a structured file."""

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


_BRACKET_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def _json_text_depth(raw: bytes, max_depth: int) -> int:
    """Bracket nesting of JSON bytes (strings skipped), without parsing, so deep input is refused before
    the recursive decoder sees it. Exact for balanced input; unbalanced openers count fully. Only
    distinguishes depths up to ``max_depth + 1``."""
    opens = raw.count(b"[") + raw.count(b"{")
    if opens <= max_depth:
        return opens
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    depth = 0
    while brackets and depth <= max_depth:
        reduced = _BRACKET_PAIR.sub(b"", brackets)  # peel one level of innermost pairs
        if reduced == brackets:
            break
        brackets, depth = reduced, depth + 1
    return depth + brackets.count(b"[") + brackets.count(b"{")


def value_depth(obj: Any, limit: int | None = None) -> int:
    """Nesting depth of a parsed value (lists, tuples, dicts; a scalar has depth 0), computed without
    recursion; stops counting once ``limit`` is exceeded."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if limit is not None and deepest > limit:
            return deepest
        stack.extend((c, depth) for c in children)
    return deepest


def _too_deep(what: str, max_depth: int, error: type[OfmuError]) -> OfmuError:
    return error(f"{what} is nested more than {max_depth} levels deep; refusing to read it")


def loads_json(
    data: str | bytes, what: str = "JSON text", *, max_depth: int = MAX_DEPTH,
    error: type[OfmuError] = DataError,
) -> Any:
    """Parse JSON with a nesting limit; every failure (syntax, deep nesting, huge integers, bad UTF-8)
    raises ``error`` (default :class:`~ofmu_opt.errors.DataError`) naming ``what``, never
    ``RecursionError`` or a bare ``ValueError``.

    Examples:
        >>> loads_json('{"a": [1, 2]}')
        {'a': [1, 2]}
        >>> loads_json("[" * 100 + "]" * 100)
        Traceback (most recent call last):
        ofmu_opt.errors.DataError: JSON text is nested more than 64 levels deep; refusing to read it
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if _json_text_depth(raw, max_depth) > max_depth:
        raise _too_deep(what, max_depth, error)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 text (invalid byte at offset {exc.start})") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise _too_deep(what, max_depth, error) from exc
    except ValueError as exc:  # e.g. an integer literal beyond the int-conversion digit limit
        raise error(f"{what} is not valid JSON: {exc}") from exc
    if value_depth(value, max_depth) > max_depth:
        raise _too_deep(what, max_depth, error)
    return value


def loads_toml(
    text: str | bytes, what: str = "TOML text", *, max_depth: int = MAX_DEPTH,
    error: type[OfmuError] = DataError,
) -> dict[str, Any]:
    """Parse TOML with a nesting limit (inline arrays/tables and dotted keys alike); every failure raises
    ``error`` naming ``what``.

    Examples:
        >>> loads_toml("a = 1\\n[b]\\nc = [1, 2]\\n")
        {'a': 1, 'b': {'c': [1, 2]}}
    """
    import tomllib

    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{what} is not UTF-8 text (invalid byte at offset {exc.start})") from exc
    try:
        value = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} is not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise _too_deep(what, max_depth, error) from exc
    except ValueError as exc:  # huge integer literals
        raise error(f"{what} is not valid TOML: {exc}") from exc
    if value_depth(value, max_depth) > max_depth:
        raise _too_deep(what, max_depth, error)
    return value


def read_bytes_limited(
    path: str | os.PathLike[str], what: str = "file", *, max_bytes: int = MAX_BYTES,
    error: type[OfmuError] = DataError,
) -> bytes:
    """Read a whole regular file of at most ``max_bytes``; a missing file, a directory, a FIFO/device,
    a file too large or unreadable raises ``error`` naming the file."""
    try:
        p = check_path_text(path, what)
    except DataError as exc:
        raise error(str(exc)) from None
    try:
        st = p.stat()
    except FileNotFoundError:
        raise error(f"{what} {str(p)!r} does not exist") from None
    except OSError as exc:
        raise error(f"{what} {str(p)!r} cannot be read: {exc.strerror}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {str(p)!r}: expected a file, received a directory")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {str(p)!r}: expected a regular file")
    if st.st_size > max_bytes:
        raise error(f"{what} {str(p)!r} is {st.st_size} bytes, more than the limit of {max_bytes}")
    try:
        with p.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{what} {str(p)!r} cannot be read: {exc.strerror}") from exc
    if len(raw) > max_bytes:  # grew while we read it
        raise error(f"{what} {str(p)!r} is more than the limit of {max_bytes} bytes")
    return raw


def read_json(
    path: str | os.PathLike[str], what: str = "JSON file", *, max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH, error: type[OfmuError] = DataError,
) -> Any:
    """Read a JSON file with size and depth limits, turning every failure into ``error`` (default
    :class:`DataError`) that names the file."""
    raw = read_bytes_limited(path, what, max_bytes=max_bytes, error=error)
    return loads_json(raw, f"{what} {str(Path(path))!r}", max_depth=max_depth, error=error)


def read_toml(
    path: str | os.PathLike[str], what: str = "TOML file", *, max_bytes: int = 16 * 1024 * 1024,
    max_depth: int = MAX_DEPTH, error: type[OfmuError] = DataError,
) -> dict[str, Any]:
    """Read a TOML file with size and depth limits; every failure raises ``error`` naming the file."""
    raw = read_bytes_limited(path, what, max_bytes=max_bytes, error=error)
    return loads_toml(raw, f"{what} {str(Path(path))!r}", max_depth=max_depth, error=error)


# --------------------------------------------------------------------------------------------------------
# run records with a content hash

DIGEST_KEY = "sha256"


def canonical_json(obj: Any) -> bytes:
    """The canonical JSON bytes of ``obj`` (as :func:`atomic_write_json` would store it: NaN as null,
    arrays as lists), with sorted keys and no whitespace: the input of every content hash."""
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=True).encode("ascii")


def record_digest(record: dict[str, Any]) -> str:
    """SHA-256 (hex) of a record's canonical JSON, its own ``"sha256"`` entry excluded."""
    return hashlib.sha256(canonical_json({k: v for k, v in record.items() if k != DIGEST_KEY})).hexdigest()


def atomic_write_record(path: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write a JSON object atomically together with a ``"sha256"`` entry over its content, so that
    :func:`read_record` can tell an edited or damaged record from the one written.

    Examples:
        >>> import tempfile, pathlib
        >>> p = atomic_write_record(pathlib.Path(tempfile.mkdtemp()) / "run.json", {"step": 39})
        >>> read_record(p)["step"]
        39
        >>> _ = p.write_text(p.read_text().replace("39", "55"))
        >>> try:
        ...     read_record(p, "run record", hint="delete it or rerun without --resume")
        ... except IntegrityError as exc:
        ...     print(str(exc).split("; ")[-1])
        delete it or rerun without --resume
    """
    if not isinstance(record, dict):
        raise TypeError("atomic_write_record: expected a dict")
    body = _jsonable({k: v for k, v in record.items() if k != DIGEST_KEY})
    return atomic_write_json(path, {**body, DIGEST_KEY: record_digest(body)})


def read_record(
    path: str | os.PathLike[str], what: str = "run record", *, hint: str = "delete it to start over",
    max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
) -> dict[str, Any]:
    """Read a record written by :func:`atomic_write_record` and verify its content hash before use.

    Raises:
        DataError: missing, unreadable, not JSON, too large or too deep.
        IntegrityError: not a JSON object, no hash, or a hash that does not match the content (the
            message ends with ``hint``: the way out).
    """
    p = Path(path)
    rec = read_json(p, what, max_bytes=max_bytes, max_depth=max_depth)
    if not isinstance(rec, dict):
        raise IntegrityError(f"{what} {str(p)!r} is not a JSON object; {hint}")
    digest = rec.get(DIGEST_KEY)
    if not isinstance(digest, str):
        raise IntegrityError(f"{what} {str(p)!r} carries no content hash (written by an older version or "
                             f"by hand); {hint}")
    if not hmac.compare_digest(digest.encode("utf-8", "surrogatepass"), record_digest(rec).encode("ascii")):
        raise IntegrityError(
            f"{what} {str(p)!r} was edited or damaged after it was written (content hash mismatch); {hint}")
    return {k: v for k, v in rec.items() if k != DIGEST_KEY}


def safe_child(directory: str | os.PathLike[str], name: str) -> Path:
    """Return ``directory / name`` after checking that it stays inside ``directory``.

    Raises:
        UnsafeFileError: ``name`` is absolute or climbs out with ``..``.
        DataError: ``name`` is empty, holds a NUL byte or is longer than the file system allows.
    """
    check_path_text(name, "output name")
    base = Path(directory).resolve()
    candidate = (base / name).resolve()
    if Path(name).is_absolute() or (candidate != base and base not in candidate.parents):
        raise UnsafeFileError(f"output name {name!r} escapes the output directory {str(base)!r}")
    return candidate


NAME_MAX = 255
"""Longest file-name component (bytes) accepted; the limit of every common file system."""
PATH_MAX = 4096
"""Longest path (bytes) accepted."""


def check_path_text(path: str | os.PathLike[str], what: str = "path") -> Path:
    """Check a user-given path as text, touching nothing: not empty, no NUL byte, no component longer than
    :data:`NAME_MAX` bytes, at most :data:`PATH_MAX` bytes in all, encodable for the file system.

    Raises:
        DataError: naming ``what`` and the problem (the path is shortened in the message).
    """
    try:
        text = os.fspath(path)
    except TypeError as exc:
        raise DataError(f"{what}: expected a path, received {type(path).__name__}") from exc
    shown = repr(text if len(text) <= 80 else text[:60] + "..." + text[-10:])
    if not text:
        raise DataError(f"{what}: expected a path, received an empty string")
    if "\x00" in text:
        raise DataError(f"{what} {shown} contains a NUL byte")
    try:
        raw = os.fsencode(text)
    except UnicodeError as exc:
        raise DataError(f"{what} {shown} cannot be encoded for the file system") from exc
    if len(raw) > PATH_MAX:
        raise DataError(f"{what} {shown} is {len(raw)} bytes long, more than the limit of {PATH_MAX}")
    for part in raw.split(b"/"):
        if len(part) > NAME_MAX:
            raise DataError(
                f"{what} {shown}: the name {os.fsdecode(part[:40])!r}... is {len(part)} bytes long, more than "
                f"the limit of {NAME_MAX}"
            )
    return Path(text)


def _link_problem(p: Path) -> str | None:
    """Why ``p`` is a symbolic link that leads nowhere (dangling, or a loop), else None."""
    if not os.path.islink(p):
        return None
    try:
        p.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return "a symbolic link loop"
    except OSError as exc:
        import errno

        return "a symbolic link loop" if exc.errno == errno.ELOOP else "a dangling symbolic link"
    return None


def check_output_dir(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Check, without creating anything, that ``path`` is (or can be created as) a writable directory.

    Command entry points call this before any work, so a bad output directory fails in a second instead
    of after training, and leaves nothing behind.

    Raises:
        DataError: ``path`` is empty, contains a NUL byte, has an over-long name, is a file, lies below a
            file, is (or lies below) a dangling symbolic link or a link loop, or its nearest existing
            ancestor is not writable.
    """
    p = check_path_text(path, what)
    try:
        probe = p
        while True:
            problem = _link_problem(probe)
            if problem is not None:
                where = "" if probe == p else f": {str(probe)!r} is {problem}"
                raise DataError(f"{what} {str(p)!r} is {problem}" if probe == p else f"{what} {str(p)!r}{where}")
            if probe.exists() or probe.parent == probe:
                break
            probe = probe.parent
        if p.exists() and not p.is_dir():
            raise DataError(f"{what} {str(p)!r}: expected a directory, received a file")
        if probe.exists() and not probe.is_dir():
            raise DataError(f"{what} {str(p)!r} is not writable: {str(probe)!r} is not a directory")
        if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
            raise DataError(f"{what} {str(p)!r} is not writable: no write permission on {str(probe)!r}")
    except OSError as exc:  # EACCES on a parent, ENAMETOOLONG on a long path ...
        raise DataError(f"{what} {str(p)!r} cannot be used: {exc.strerror or exc}") from exc
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
    touches the directory. The directory is created if missing, and removed again on release if the block
left it empty (a run that failed before writing anything leaves nothing behind). On POSIX the lock is an ``flock`` on
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
    d = check_output_dir(directory, what)
    created = [p for p in (d, *d.parents) if not p.exists()]  # deepest first; removed again if left empty
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
        # a run that failed before writing anything leaves no empty directory behind
        for p in created:
            try:
                p.rmdir()
            except OSError:
                break  # not empty: the run wrote something there (and so into its parents)

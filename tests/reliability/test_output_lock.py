"""One run per output directory: the advisory lock of ``ofmu_opt._io.output_lock``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ofmu_opt import _io
from ofmu_opt._io import LOCK_NAME, lock_holder, output_lock
from ofmu_opt.errors import DataError, OfmuError, OutputLockedError

_HOLDER = (
    "import sys\n"
    "from ofmu_opt._io import output_lock\n"
    "with output_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.readline()\n"
    "print('released', flush=True)\n"
)


def _start_holder(d: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(d)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"  # blocks until the child holds the lock (no timing)
    return proc


def test_second_process_is_refused_with_the_holder_pid(tmp_path: Path) -> None:
    proc = _start_holder(tmp_path / "out")
    try:
        with pytest.raises(OutputLockedError, match=rf"pid {proc.pid}\b") as info:
            with output_lock(tmp_path / "out"):
                pytest.fail("entered a locked directory")
        assert "--out" in str(info.value) and "another ofmu run" in str(info.value)
        assert isinstance(info.value, OfmuError)
        assert lock_holder(tmp_path / "out")["pid"] == proc.pid  # type: ignore[index]
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait() == 0
    assert not (tmp_path / "out" / LOCK_NAME).exists()  # released and removed
    with output_lock(tmp_path / "out"):
        pass


def test_lock_of_a_killed_process_is_recovered(tmp_path: Path) -> None:
    proc = _start_holder(tmp_path / "out")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "out" / LOCK_NAME).exists()  # left behind by the dead holder
    with output_lock(tmp_path / "out") as d:
        assert lock_holder(d)["pid"] == os.getpid()  # type: ignore[index]
    assert not (tmp_path / "out" / LOCK_NAME).exists()


def test_reentrant_in_one_process_and_released_on_error(tmp_path: Path) -> None:
    with output_lock(tmp_path) as d, output_lock(tmp_path / ".") as d2:
        assert d.resolve() == d2.resolve()
    with pytest.raises(RuntimeError, match="boom"):
        with output_lock(tmp_path):
            raise RuntimeError("boom")
    assert not (tmp_path / LOCK_NAME).exists()
    proc = _start_holder(tmp_path)  # another process can take it now
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait() == 0


def test_out_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(DataError, match="expected a directory"):
        with output_lock(f):
            pass


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_pidfile_fallback_stale_and_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_io, "_acquire_flock", lambda d, what: None)  # a file system without flock
    rec = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00Z"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(rec))
    with output_lock(tmp_path):  # stale: its pid is dead
        assert lock_holder(tmp_path)["pid"] == os.getpid()  # type: ignore[index]
    assert not (tmp_path / LOCK_NAME).exists()
    live = {"pid": os.getppid(), "host": socket.gethostname()}
    (tmp_path / LOCK_NAME).write_text(json.dumps(live))
    with pytest.raises(OutputLockedError, match=rf"pid {os.getppid()}\b"):
        with output_lock(tmp_path, what="--cache"):
            pass
    (tmp_path / LOCK_NAME).write_text("garbage")  # unreadable holder: refused, never silently stolen
    with pytest.raises(OutputLockedError, match="holder unknown"):
        with output_lock(tmp_path):
            pass


def test_a_directory_the_lock_created_is_removed_if_left_empty(tmp_path: Path) -> None:
    new = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), output_lock(new):
        raise RuntimeError("the run failed before writing anything")
    assert not (tmp_path / "a").exists()  # both levels it created are gone
    with output_lock(new) as d:
        (d / "result.json").write_text("{}")
    assert (new / "result.json").is_file()  # a directory with output stays
    existing = tmp_path / "mine"
    existing.mkdir()
    with output_lock(existing):
        pass
    assert existing.is_dir()  # a directory the user made is never removed


def test_cli_failure_leaves_no_default_output_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ofmu_opt.cli import main

    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "no_cifar"
    empty.mkdir()
    assert main(["unlearn", "--benchmark", "cifar10", "--data", str(empty), "--method", "ft", "-q"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_cifar"]

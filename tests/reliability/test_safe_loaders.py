"""Size and depth limits of every structured read (``_io.loads_json/read_json/loads_toml/read_toml``)
and the content hash of run records (``_io.atomic_write_record/read_record``)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from ofmu_opt._io import (
    MAX_DEPTH,
    atomic_write_record,
    loads_json,
    loads_toml,
    read_json,
    read_record,
    read_toml,
    record_digest,
    value_depth,
)
from ofmu_opt.errors import DataError, IntegrityError


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # would raise RecursionError in json.loads
        '{"a":' * 5000 + "1" + "}" * 5000,
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),  # just over the limit
        "[" * 100_000,  # deep and truncated
    ],
)
def test_deep_json_is_refused_cleanly(text: str) -> None:
    with pytest.raises(DataError, match="nested more than 64 levels"):
        loads_json(text)


def test_json_at_the_depth_limit_and_brackets_in_strings_are_fine() -> None:
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert value_depth(loads_json(ok)) == MAX_DEPTH
    many = json.dumps({"s": "[[[[{{{{" * 1000, "t": ["]" * 50, '\\"[' * 40]})
    assert loads_json(many)["s"].startswith("[[[[")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"a": 1', "not valid JSON"),
        ("1" * 5000, "not valid JSON"),  # beyond Python's int-conversion digit limit (a bare ValueError)
        (b"\xff\xfe{}", "not UTF-8"),
        ("", "not valid JSON"),
        ("{'a': 1}", "not valid JSON"),
    ],
)
def test_bad_json_is_a_data_error(text: str | bytes, match: str) -> None:
    with pytest.raises(DataError, match=match):
        loads_json(text, "model config")


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 5000 + "]" * 5000,  # recursion inside tomllib
        "a = " + "{b = " * 3000 + "1" + "}" * 3000,
        "a" + ".a" * (MAX_DEPTH + 1) + " = 1",  # dotted keys build depth without recursion
        "".join(f"[{'.'.join(['t'] * (MAX_DEPTH + 2))}]\n"),
    ],
)
def test_deep_toml_is_refused_cleanly(text: str) -> None:
    with pytest.raises(DataError, match="nested more than"):
        loads_toml(text)


@pytest.mark.parametrize(
    ("text", "match"), [("a = ", "not valid TOML"), (b"a = '\xff'", "not UTF-8"), ("a = " + "9" * 5000, "TOML")]
)
def test_bad_toml_is_a_data_error(text: str | bytes, match: str) -> None:
    with pytest.raises(DataError, match=match):
        loads_toml(text)


def test_read_json_limits_and_paths(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 1000 + "0]")
    assert len(read_json(big)) == 1001
    with pytest.raises(DataError, match="more than the limit of 100"):
        read_json(big, "data file", max_bytes=100)
    with pytest.raises(DataError, match="does not exist"):
        read_json(tmp_path / "nope.json")
    with pytest.raises(DataError, match="expected a file, received a directory"):
        read_json(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(DataError, match="regular file"):
        read_json(fifo)
    (tmp_path / "deep.toml").write_text("a = " + "[" * 3000 + "]" * 3000)
    with pytest.raises(DataError, match=r"deep\.toml.*nested"):
        read_toml(tmp_path / "deep.toml", "config file")


def test_record_round_trip_and_every_edit_is_refused(tmp_path: Path) -> None:
    rec = {
        "step": 39,
        "history": [0.5, 0.25, float("nan")],
        "elapsed_s": 12.5,
        "rho": math.inf,
        "nested": {"a": [1, 2]},
    }
    p = atomic_write_record(tmp_path / "run.json", rec)
    back = read_record(p)
    assert back["step"] == 39 and back["history"][:2] == [0.5, 0.25] and back["history"][2] is None
    assert back["rho"] == "inf" and "sha256" not in back
    raw = json.loads(p.read_text())
    for edit in (
        lambda r: r.__setitem__("step", 55),
        lambda r: r["history"].__setitem__(0, 0.4),
        lambda r: r.__setitem__("elapsed_s", 1.0),
        lambda r: r.__setitem__("extra", 1),
        lambda r: r.pop("nested"),
    ):
        edited = json.loads(json.dumps(raw))
        edit(edited)
        p.write_text(json.dumps(edited))
        with pytest.raises(IntegrityError, match="edited or damaged.*rerun without --resume"):
            read_record(p, "bench run record", hint="delete it or rerun without --resume")
    p.write_text(json.dumps({"step": 39}))
    with pytest.raises(IntegrityError, match="no content hash"):
        read_record(p)
    p.write_text("[1, 2]")
    with pytest.raises(IntegrityError, match="not a JSON object"):
        read_record(p)
    # re-serialisation with other whitespace/key order keeps the same content: accepted
    p.write_text(json.dumps(dict(reversed(list(raw.items())))))
    assert read_record(p)["step"] == 39
    assert record_digest(raw) == raw["sha256"]


def test_a_failed_write_is_a_data_error_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from ofmu_opt import _io

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "a.json").write_text('{"old": 1}')
    monkeypatch.setattr(_io.os, "fsync", full)
    with pytest.raises(DataError, match=r"cannot write '.*a\.json': No space left on device"):
        _io.atomic_write_json(tmp_path / "a.json", {"new": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # no temporary file left
    assert json.loads((tmp_path / "a.json").read_text()) == {"old": 1}  # the old content survives


def test_names_near_the_length_limit_are_written(tmp_path: Path) -> None:
    from ofmu_opt._io import atomic_write_text

    assert atomic_write_text(tmp_path / ("n" * 255), "x").read_text() == "x"  # the temp name stays short
    with pytest.raises(DataError, match="limit of 255"):
        atomic_write_text(tmp_path / ("n" * 256), "x")

"""ofmu_opt._progress: bars on a terminal, periodic log lines otherwise, silence under quiet."""

from __future__ import annotations

import io
import logging

import pytest

from ofmu_opt import _progress
from ofmu_opt._progress import configure, get_settings, progress, settings, track


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OFMU_PROGRESS", raising=False)
    # default settings: an in-process CLI call with -q (another test, same worker) leaves quiet=True behind
    monkeypatch.setattr(_progress, "_settings", _progress.ProgressSettings())


def _records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ofmu_opt.progress"]


def test_log_mode_lines_every_percent_and_closing_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ofmu_opt.progress")
    with (settings(mode="log", log_every_s=1e9, log_every_pct=25.0, min_phase_s=0.0),
          progress("train", total=8, unit="step") as bar):
        for i in range(8):
            bar.update(1, loss=1.0 / (i + 1))
    lines = _records(caplog)
    # 25%, 50%, 75% while running (100% is the closing line), then "(done)"
    assert [ln.split(",")[0] for ln in lines] == [
        "train: 2/8 step (25%)", "train: 4/8 step (50%)", "train: 6/8 step (75%)", "train: 8/8 step (100%)"]
    assert lines[-1].endswith("(done)")
    assert "ETA" in lines[0] and "loss=0.5" in lines[0]
    assert bar.n == 8


def test_log_mode_time_interval(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="ofmu_opt.progress")
    clock = [0.0]
    monkeypatch.setattr(_progress.time, "perf_counter", lambda: clock[0])
    with settings(mode="log", log_every_s=10.0, log_every_pct=100.0), progress("eval", total=None) as bar:
        for _ in range(5):
            clock[0] += 4.0  # a line at t=12 (first >= 10 s after start), next due at t>=22
            bar.update(1)
    lines = _records(caplog)
    assert [ln.split(",")[0] for ln in lines] == ["eval: 3 it", "eval: 5 it"]
    assert "elapsed 12.0s" in lines[0]
    assert lines[-1].endswith("(done)")


def test_short_phase_in_log_mode_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ofmu_opt.progress")
    with settings(mode="log", log_every_s=1e9, log_every_pct=100.0):
        assert list(track(range(3), "gen")) == [0, 1, 2]
    assert _records(caplog) == []


def test_quiet_is_silent_and_still_counts(caplog: pytest.LogCaptureFixture,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    with settings(quiet=True, mode="log", log_every_s=1e-9, log_every_pct=1.0), progress("x", total=3) as bar:
        bar(1)
        bar.update(2)
    assert bar.mode == "off" and bar.n == 3
    assert _records(caplog) == []
    assert capsys.readouterr().err == ""


def test_bar_mode_draws_tqdm_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    buf = io.StringIO()
    monkeypatch.setattr(_progress.sys, "stderr", buf)
    with settings(mode="bar"), progress("search", total=4, unit="trial") as bar:
        for _ in range(4):
            bar.update(1, best=0.25)
        bar._bar.refresh()  # tqdm redraws at most every 0.1 s; force the final state onto the stream
    out = buf.getvalue()
    assert "search" in out and "4/4" in out and "trial" in out and "best=0.25" in out


def test_auto_mode_picks_log_lines_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress.sys, "stderr", io.StringIO())  # not a TTY
    with settings(mode="auto"):
        assert progress("a").mode == "log"
    monkeypatch.setenv("OFMU_PROGRESS", "off")
    assert progress("b").mode == "off"


def test_settings_restore_and_validation() -> None:
    before = get_settings()
    with settings(quiet=True, log_every_s=5.0):
        assert get_settings().quiet and get_settings().log_every_s == 5.0
    assert get_settings() == before
    with pytest.raises(ValueError, match="mode"):
        configure(mode="loud")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log_every_s"):
        configure(log_every_s=0)
    with pytest.raises(ValueError, match="min_phase_s"):
        configure(min_phase_s=-1.0)
    with pytest.raises(ValueError, match="total"):
        progress("x", total=-1)
    assert get_settings() == before


def test_track_uses_len_and_closes_on_break(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ofmu_opt.progress")
    with settings(mode="log", log_every_s=1e9, log_every_pct=50.0, min_phase_s=0.0):
        it = track([1, 2, 3, 4], "loop")
        assert next(it) == 1 and next(it) == 2
        next(it)  # the update after item 2 crosses 50%
        it.close()
    lines = _records(caplog)
    assert lines[0].startswith("loop: 2/4 it (50%)")
    assert lines[-1].endswith("(done)")


def test_an_in_process_cli_call_with_quiet_does_not_silence_later_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    import ofmu_opt.cli as cli

    def command(argv: object) -> int:  # what `ofmu unlearn -q` does first
        configure(quiet=True)
        assert get_settings().quiet
        return 0

    monkeypatch.setattr(cli, "_main", command)
    assert not get_settings().quiet
    assert cli.main(["unlearn", "-q"]) == 0
    assert not get_settings().quiet


def test_percent_lines_wait_for_min_phase_s(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sub-second phases (one per metric pass of an evaluation) print nothing; a phase that runs past
    ``min_phase_s`` gets its percent lines from then on and a closing line."""
    caplog.set_level(logging.INFO, logger="ofmu_opt.progress")
    clock = [0.0]
    monkeypatch.setattr(_progress.time, "perf_counter", lambda: clock[0])
    with settings(mode="log", log_every_s=1e9, log_every_pct=25.0, min_phase_s=2.0):
        with progress("fast", total=4) as bar:
            for _ in range(4):
                clock[0] += 0.1
                bar.update(1)
        assert _records(caplog) == []
        with progress("slow", total=8, unit="step") as bar:
            for _ in range(8):
                clock[0] += 0.5  # 25 % at t = 1.0 (too early), 50 % at t = 2.0, 75 % at t = 3.0
                bar.update(1)
    lines = [ln.split(",")[0] for ln in _records(caplog)]
    assert lines == ["slow: 4/8 step (50%)", "slow: 6/8 step (75%)", "slow: 8/8 step (100%)"]


def test_cli_shows_progress_lines_without_verbose_and_restores_the_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off a terminal the command line logs progress at its default verbosity (a batch job is not silent
    for minutes); ``-q`` silences the phases; the logger's level is restored after an in-process call."""
    import ofmu_opt.cli as cli

    seen: list[bool] = []

    def handler(args: object) -> int:
        seen.append(_progress.log.isEnabledFor(logging.INFO) and progress("x").mode == "log")
        return 0

    def parser() -> object:
        import argparse

        p = argparse.ArgumentParser()
        p.add_argument("-v", "--verbose", action="count", default=0)
        p.set_defaults(handler=handler)
        return p

    monkeypatch.setattr(_progress.sys, "stderr", io.StringIO())  # not a TTY
    monkeypatch.setattr(cli, "build_parser", parser)
    before = _progress.log.level
    _progress.log.setLevel(logging.WARNING)
    try:
        assert cli.main([]) == 0
        assert seen == [True]
        assert _progress.log.level == logging.WARNING
    finally:
        _progress.log.setLevel(before)

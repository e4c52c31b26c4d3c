"""Progress reporting for long phases (training, evaluation, generation, search).

One helper for every phase that can run for minutes::

    from ofmu_opt._progress import progress, track

    with progress("unlearn npo", total=steps, unit="step") as bar:
        for step in range(steps):
            ...
            bar.update(1, loss=float(loss))

    for batch in track(batches, "evaluate forget", unit="batch"):
        ...

What it shows depends on where stderr goes and on the global settings (:func:`configure`):

* ``mode="auto"`` (the default): a tqdm bar (count, rate, ETA) on stderr when stderr is a terminal and
  tqdm is installed; otherwise periodic ``logging`` lines on the ``ofmu_opt.progress`` logger at INFO
  level (the ``ofmu`` command line shows them unless ``-q``): at most one line every ``log_every_s``
  seconds, plus one line each time another ``log_every_pct`` percent of a known total is done, and a
  closing line with the elapsed time when anything was logged or the phase took at least ``log_every_s``
  seconds. Percent and closing lines wait until the phase has run ``min_phase_s`` seconds, so the many
  sub-second phases of an evaluation (one per metric pass) print nothing.
* ``mode="bar"`` / ``mode="log"`` force one of the two; ``mode="off"`` (or ``quiet=True``, the CLI's
  ``-q``) is silent.

The environment variable ``OFMU_PROGRESS`` (``auto``, ``bar``, ``log``, ``off``) overrides the mode, so a
batch job can ask for log lines without a code change. Counting works in every mode: :attr:`Progress.n`
and :attr:`Progress.elapsed` are always kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

__all__ = [
    "Progress", "ProgressSettings", "bars_enabled", "configure", "get_settings", "progress", "settings", "track",
]

log = logging.getLogger("ofmu_opt.progress")

Mode = Literal["auto", "bar", "log", "off"]
_MODES = ("auto", "bar", "log", "off")
T = TypeVar("T")


@dataclass(frozen=True)
class ProgressSettings:
    """Global progress settings (see :func:`configure`)."""

    quiet: bool = False
    mode: Mode = "auto"
    log_every_s: float = 30.0
    log_every_pct: float = 25.0
    min_phase_s: float = 2.0


_settings = ProgressSettings()


def get_settings() -> ProgressSettings:
    """The settings now in force."""
    return _settings


def configure(
    *,
    quiet: bool | None = None,
    mode: Mode | None = None,
    log_every_s: float | None = None,
    log_every_pct: float | None = None,
    min_phase_s: float | None = None,
) -> ProgressSettings:
    """Change the global progress settings; returns the previous ones (for restoring).

    ``quiet=True`` silences every phase (the CLI's ``-q``). ``mode`` picks bars, log lines or nothing
    (``"auto"``: a bar on a terminal, log lines otherwise). ``log_every_s`` / ``log_every_pct`` space the
    log lines; ``min_phase_s`` (≥ 0) keeps shorter phases free of percent and closing lines. Arguments left
    ``None`` keep their value.
    """
    global _settings
    previous = _settings
    if mode is not None and mode not in _MODES:
        raise ValueError(f"progress mode: expected one of {', '.join(_MODES)}, received {mode!r}")
    if log_every_s is not None and not log_every_s > 0:
        raise ValueError(f"log_every_s: expected > 0, received {log_every_s!r}")
    if log_every_pct is not None and not 0 < log_every_pct <= 100:
        raise ValueError(f"log_every_pct: expected in (0, 100], received {log_every_pct!r}")
    if min_phase_s is not None and not min_phase_s >= 0:
        raise ValueError(f"min_phase_s: expected >= 0, received {min_phase_s!r}")
    changes: dict[str, Any] = {}
    for key, value in (("quiet", quiet), ("mode", mode), ("log_every_s", log_every_s),
                       ("log_every_pct", log_every_pct), ("min_phase_s", min_phase_s)):
        if value is not None:
            changes[key] = value
    _settings = replace(_settings, **changes)
    return previous


@contextlib.contextmanager
def settings(**kwargs: Any) -> Iterator[ProgressSettings]:
    """Context manager form of :func:`configure`: the previous settings come back on exit."""
    global _settings
    previous = configure(**kwargs)
    try:
        yield _settings
    finally:
        _settings = previous


def _resolve_mode(s: ProgressSettings) -> str:
    if s.quiet:
        return "off"
    env = os.environ.get("OFMU_PROGRESS", "").strip().lower()
    mode: str = env if env in _MODES else s.mode
    if mode == "auto":
        try:
            tty = bool(sys.stderr.isatty())
        except (AttributeError, ValueError):
            tty = False
        if tty and _tqdm_available():
            return "bar"
        return "log"
    if mode == "bar" and not _tqdm_available():
        return "log"
    return mode


def bars_enabled() -> bool:
    """True when a phase started now would draw a tqdm bar (for toggling third-party bars alike)."""
    return _resolve_mode(_settings) == "bar"


def _tqdm_available() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _fmt_seconds(t: float) -> str:
    t = max(0.0, t)
    if t < 60:
        return f"{t:.1f}s"
    m, s = divmod(int(round(t)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class Progress:
    """One long phase: a tqdm bar, periodic log lines, or nothing (see the module docstring).

    Use it as a context manager (``with progress(...) as bar``) and call :meth:`update`; or wrap an
    iterable with :func:`track`. :meth:`update` has the ``Callable[[int], None]`` shape, so it can be
    passed wherever code takes a tick callback.
    """

    def __init__(self, desc: str, total: int | None = None, *, unit: str = "it") -> None:
        if total is not None and total < 0:
            raise ValueError(f"progress total: expected >= 0, received {total}")
        self.desc = desc
        self.total = total
        self.unit = unit
        self.n = 0
        self.postfix: dict[str, Any] = {}
        s = _settings
        self._every_s = s.log_every_s
        self._every_pct = s.log_every_pct
        self._min_s = s.min_phase_s
        self.mode = _resolve_mode(s)
        self._t0 = time.perf_counter()
        self._last_log = self._t0
        self._next_pct = self._every_pct
        self._logged = False
        self._closed = False
        self._bar: Any = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)

    # -- counting --------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Seconds since the phase started."""
        return time.perf_counter() - self._t0

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Count ``n`` more units done; keyword arguments are shown beside the count (e.g. ``loss=``)."""
        self.n += n
        if postfix:
            self.postfix.update(postfix)
        if self.mode == "bar":
            if postfix:
                self._bar.set_postfix({k: _fmt_value(v) for k, v in self.postfix.items()}, refresh=False)
            self._bar.update(n)
        elif self.mode == "log":
            now = time.perf_counter()
            due = now - self._last_log >= self._every_s
            if self.total:
                pct = 100.0 * self.n / self.total
                if pct >= self._next_pct and self.n < self.total and now - self._t0 >= self._min_s:
                    due = True
                    while self._next_pct <= pct:
                        self._next_pct += self._every_pct
            if due:
                self._emit(now)

    def set_postfix(self, **postfix: Any) -> None:
        """Replace the values shown beside the count without counting."""
        self.postfix.update(postfix)
        if self.mode == "bar":
            self._bar.set_postfix({k: _fmt_value(v) for k, v in self.postfix.items()})

    def __call__(self, n: int = 1) -> None:
        self.update(n)

    # -- output ----------------------------------------------------------------------------------
    def status(self) -> str:
        """One line: ``desc: n/total unit (pct%), rate, elapsed, ETA, postfix``."""
        el = self.elapsed
        rate = self.n / el if el > 0 else 0.0
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total is not None else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({100.0 * self.n / self.total:.0f}%)"
        if rate >= 1 or rate == 0:
            parts.append(f"{rate:.2f} {self.unit}/s")
        else:
            parts.append(f"{1.0 / rate:.2f} s/{self.unit}")
        parts.append(f"elapsed {_fmt_seconds(el)}")
        if self.total and 0 < self.n < self.total and rate > 0:
            parts.append(f"ETA {_fmt_seconds((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(" ".join(f"{k}={_fmt_value(v)}" for k, v in self.postfix.items()))
        return ", ".join(parts)

    def _emit(self, now: float) -> None:
        self._last_log = now
        self._logged = True
        log.info("%s", self.status())

    def close(self) -> None:
        """End the phase (idempotent): the bar disappears; in log mode a closing line if it was long."""
        if self._closed:
            return
        self._closed = True
        if self.mode == "bar":
            self._bar.close()
        elif self.mode == "log" and (self._logged or self.elapsed >= self._every_s) and self.elapsed >= self._min_s:
            log.info("%s (done)", self.status())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(desc: str, total: int | None = None, *, unit: str = "it") -> Progress:
    """Start a phase; use as ``with progress("train", total=n, unit="step") as bar: bar.update(1)``."""
    return Progress(desc, total, unit=unit)


def track(iterable: Iterable[T], desc: str, total: int | None = None, *, unit: str = "it") -> Iterator[T]:
    """Yield from ``iterable`` while reporting progress; ``total`` defaults to ``len(iterable)`` if any."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(desc, total, unit=unit) as bar:
        for item in iterable:
            yield item
            bar.update(1)

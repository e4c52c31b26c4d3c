"""Rate records, verdicts, the experiment result, and their JSON and text reports.

A record states one measured quantity: its ``kind`` (``law``: theory predicts the exponent or the log
contraction factor exactly; ``bound``: theory gives an upper bound, checked at every point; ``claim``: a
claim of the paper, tested and reported whichever way it comes out), the ``fitted`` value, the
``expected`` value computed by the package from the problem's constants, R², and the verdict.

Example:
    >>> r = law_record("demo", "error vs k", fitted=-0.97, expected=-1.0, r2=0.999, measure="exponent")
    >>> r.verdict, r.summary()["kind"]
    ('holds', 'law')
    >>> law_record("demo", "error vs k", fitted=0.5, expected=0.6, r2=0.99, measure="ratio").verdict
    'fails'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import atomic_write_json, safe_child
from ..errors import ConfigError
from .fit import exponent_agrees, log_factor_agrees, ratio_log_error

__all__ = [
    "EXPONENT_TOL",
    "KINDS",
    "R2_MIN",
    "RATIO_REL_TOL",
    "ExperimentResult",
    "Panel",
    "RateRecord",
    "Series",
    "bound_record",
    "claim_record",
    "format_table",
    "law_record",
    "write_experiment",
    "write_summary",
]

KINDS = ("law", "bound", "claim")
VERDICTS = ("holds", "fails")
EXPONENT_TOL = 0.15
RATIO_REL_TOL = 0.15
R2_MIN = 0.95


@dataclass(frozen=True)
class RateRecord:
    """One measured rate, bound or claim with its verdict."""

    experiment: str
    quantity: str
    kind: str
    fitted: float
    expected: float
    r2: float
    verdict: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind: expected one of {', '.join(KINDS)}, received {self.kind!r}")
        if self.verdict not in VERDICTS:
            raise ConfigError(f"verdict: expected one of {', '.join(VERDICTS)}, received {self.verdict!r}")

    def summary(self) -> dict[str, Any]:
        """The seven fields ``ofmu rates --json`` prints."""
        return {"experiment": self.experiment, "quantity": self.quantity, "kind": self.kind,
                "fitted": self.fitted, "expected": self.expected, "r2": self.r2, "verdict": self.verdict}

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary(), "details": self.details}


def law_record(
    experiment: str, quantity: str, *, fitted: float, expected: float, r2: float, measure: str,
    details: dict[str, Any] | None = None,
) -> RateRecord:
    """A ``law`` record. ``measure`` is ``exponent`` (holds iff ``|fitted − expected| ≤ 0.15``) or ``ratio``
    (a contraction factor; holds iff the log factors agree within 15 %); both also need R² ≥ 0.95."""
    if measure == "exponent":
        close = exponent_agrees(fitted, expected, EXPONENT_TOL)
        criterion = f"|fitted - expected| <= {EXPONENT_TOL} and R2 >= {R2_MIN}"
        err = abs(fitted - expected)
    elif measure == "ratio":
        close = log_factor_agrees(fitted, expected, RATIO_REL_TOL)
        criterion = f"|log fitted - log expected| <= {RATIO_REL_TOL}*|log expected| and R2 >= {R2_MIN}"
        err = ratio_log_error(fitted, expected)
    else:
        raise ConfigError(f"measure: expected 'exponent' or 'ratio', received {measure!r}")
    ok = close and math.isfinite(r2) and r2 >= R2_MIN
    det = {"measure": measure, "criterion": criterion, "error": err, **(details or {})}
    return RateRecord(experiment, quantity, "law", fitted, expected, r2, "holds" if ok else "fails", det)


def bound_record(
    experiment: str, quantity: str, *, fitted: float, expected: float, r2: float, max_ratio: float,
    details: dict[str, Any] | None = None,
) -> RateRecord:
    """A ``bound`` record: holds iff the observed curve is below the bound at every point
    (``max_ratio = max observed/bound ≤ 1``); the fitted slope is reported, not judged."""
    ok = math.isfinite(max_ratio) and max_ratio <= 1.0
    det = {"measure": "exponent (reported, not judged)", "criterion": "observed <= bound at every point",
           "max_ratio_to_bound": max_ratio, **(details or {})}
    return RateRecord(experiment, quantity, "bound", fitted, expected, r2, "holds" if ok else "fails", det)


def claim_record(
    experiment: str, quantity: str, *, fitted: float, expected: float, r2: float, holds: bool, criterion: str,
    finding: str, details: dict[str, Any] | None = None,
) -> RateRecord:
    """A ``claim`` record: the criterion is stated, and ``finding`` says in words what the data show."""
    det = {"criterion": criterion, "finding": finding, **(details or {})}
    return RateRecord(experiment, quantity, "claim", fitted, expected, r2, "holds" if holds else "fails", det)


@dataclass(frozen=True)
class Series:
    """One curve of a plot: ``style`` is ``data`` (markers), ``fit`` (solid) or ``theory`` (dashed)."""

    label: str
    x: list[float]
    y: list[float]
    style: str = "data"


@dataclass(frozen=True)
class Panel:
    """One panel of an experiment's figure."""

    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    xscale: str = "log"
    yscale: str = "log"


@dataclass(frozen=True)
class ExperimentResult:
    """What one experiment returns: its records, the raw data, the figure's panels, its run time."""

    name: str
    records: tuple[RateRecord, ...]
    data: dict[str, Any]
    panels: tuple[Panel, ...]
    runtime_s: float
    config: dict[str, Any]
    json_path: str | None = None
    plot_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.name, "config": self.config, "runtime_s": self.runtime_s,
            "records": [r.as_dict() for r in self.records], "data": self.data,
            "panels": [{"title": p.title, "xlabel": p.xlabel, "ylabel": p.ylabel, "xscale": p.xscale,
                        "yscale": p.yscale, "series": [s.__dict__ for s in p.series]} for p in self.panels],
            "plot": self.plot_path,
        }


def write_experiment(result: ExperimentResult, out: str | Path) -> Path:
    """Write ``<out>/<name>.json`` atomically; returns its path."""
    return atomic_write_json(safe_child(out, f"{result.name}.json"), result.as_dict())


def write_summary(results: list[ExperimentResult], out: str | Path) -> Path:
    """Write ``<out>/rates.json``: every record (with details) and each experiment's files and run time."""
    obj = {
        "records": [r.as_dict() for res in results for r in res.records],
        "experiments": [{"experiment": res.name, "runtime_s": res.runtime_s, "json": res.json_path,
                         "plot": res.plot_path} for res in results],
    }
    return atomic_write_json(safe_child(out, "rates.json"), obj)


def _num(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4g}"


def format_table(results: list[ExperimentResult]) -> str:
    """A readable table of every record, then where the plots are."""
    rows = [(r.experiment, r.quantity, r.kind, _num(r.fitted), _num(r.expected),
             f"{r.r2:.4f}" if math.isfinite(r.r2) else "-", r.verdict)
            for res in results for r in res.records]
    head = ("experiment", "quantity", "kind", "fitted", "expected", "R2", "verdict")
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    widths[1] = min(widths[1], 72)

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c[: widths[i]].ljust(widths[i]) if i < 3 else c.rjust(widths[i])
                         for i, c in enumerate(cells))

    out = [line(head), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    out += [line(row) for row in rows]
    out.append("")
    for res in results:
        out.append(f"{res.name}: {res.runtime_s:.1f} s, plot {res.plot_path or '(none)'}, "
                   f"data {res.json_path or '(none)'}")
    return "\n".join(out)

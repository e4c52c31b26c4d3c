"""The comparison's artifacts, the same for every benchmark: results.md/.csv/.json and the figures.

The table's columns are the benchmark's summary schema (:attr:`Benchmark.columns`); cells are
``mean ± std`` over seeds (``n/a`` when a metric is missing or a run failed). Reference rows (Retrain,
target) come first, then the methods, ordered by :attr:`Benchmark.rank_by` when the benchmark sets it.

Example:
    >>> aggregate({0: {"UA": 1.0}, 1: {"UA": 3.0}}, [0, 1], [Column("UA", "UA")])
    {'UA': (2.0, 1.4142135623730951)}
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from .benchmarks.base import Benchmark, Column

__all__ = ["aggregate", "results_markdown", "write_results"]


def aggregate(
    rows: Mapping[int, Mapping[str, float | None]], seeds: Sequence[int], columns: Sequence[Column]
) -> dict[str, tuple[float, float]]:
    """``{column: (mean, std)}`` over ``seeds`` (NaN where a value is missing; std 0 for one seed)."""
    out: dict[str, tuple[float, float]] = {}
    for c in columns:
        arr = np.asarray([math.nan if rows[s].get(c.key) is None else float(rows[s][c.key]) for s in seeds])  # type: ignore[arg-type]
        out[c.key] = (float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0)
    return out


def _cell(mean: float, std: float, fmt: str) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:{fmt}} ± {std:{fmt}}"


def _order(bench: Benchmark, results: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    methods = [n for n in summary if n in results["selected"]]
    refs = [n for n in summary if n not in methods]
    if bench.rank_by is not None:
        key, desc = bench.rank_by
        sign = -1.0 if desc else 1.0
        methods.sort(key=lambda n: math.inf if math.isnan(summary[n][key][0]) else sign * summary[n][key][0])
    return refs + methods


def results_markdown(
    bench: Benchmark, results: Mapping[str, Any], summary: Mapping[str, Mapping[str, tuple[float, float]]]
) -> str:
    """The results table (mean ± std over seeds) and the selected configurations, as Markdown."""
    steps = sorted({s for s in results["steps"].values() if s is not None})
    shown_steps = ", ".join(map(str, steps)) if steps else "n/a"
    lines = [
        f"# {results['experiment_name']}: {len(results['seeds'])} seeds, budget {results['budget']} "
        f"configs/method, {shown_steps} steps",
        "",
        "| method | " + " | ".join(c.label for c in bench.columns) + " |",
        "|---|" + "---|" * len(bench.columns),
    ]
    for n in _order(bench, results, summary):
        lines.append(f"| {n} | " + " | ".join(_cell(*summary[n][c.key], c.fmt) for c in bench.columns) + " |")
    lines += ["", f"Selection: {results['selection']} (never the reported test sets).", ""]
    for n, c in results["selected"].items():
        shown = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in c.items()}
        lines.append(f"- {n}: {shown}")
    lines += ["", "Budget spent (steps / gradient evaluations: backward passes through the model's parameters, "
              "diagnostics included; a method that differentiates a functional copy reports its own count):", ""]
    for n, b in results["budget_spent"].items():
        lines.append(f"- {n}: search {b['search_steps']} / {b['search_grad_evals']}, "
                     f"seeds {b['seed_steps']} / {b['seed_grad_evals']} ({b['runs']} runs)")
    if results["skipped"]:
        lines += ["", f"Skipped (not available): {', '.join(results['skipped'])}"]
    for n, why in results["failed"].items():
        lines += ["", f"Failed: {n}: {why}"]
    return "\n".join(lines) + "\n"


def _csv(bench: Benchmark, results: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    keys = [c.key for c in bench.columns]
    w.writerow(["method", "seed", *keys])
    for n, d in results["per_seed"].items():
        for s, row in d.items():
            w.writerow([n, s, *("" if row.get(k) is None else f"{row[k]:.6g}" for k in keys)])
    return buf.getvalue()


def write_results(
    out: Path,
    bench: Benchmark,
    results: dict[str, Any],
    summary: Mapping[str, Mapping[str, tuple[float, float]]],
    histories: Mapping[str, list[dict[str, Any]]],
) -> list[Path]:
    """Write results.md, results.csv, results.json, the trade-off figure(s) and conflict.png; returns the paths."""
    from .plots import plot_conflict

    files = [
        atomic_write_text(out / "results.md", results_markdown(bench, results, summary)),
        atomic_write_text(out / "results.csv", _csv(bench, results)),
        atomic_write_json(out / "results.json", results),
    ]
    files += bench.plot(out, results, summary)
    conflict = {n: histories[n] for n in bench.conflict_methods if n in histories}
    note = "" if "ofmu" in conflict else " (ofmu not run)"
    title = f"{results['experiment_name']}: cos(∇L_f, ∇L_r), seed {results['seeds'][0]}{note}"
    files.append(plot_conflict(conflict, out / "conflict.png", title=title))
    return files

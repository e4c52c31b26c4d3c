"""Benchmark figures, drawn with matplotlib's object API on the Agg canvas (no global backend switch).

- :func:`plot_tradeoff`: forgetting against utility, one panel per ``(x, y)`` pair of :class:`Axis`
  (default: UA and MIA-efficacy against TA), mean ± std error bars per method, reference models
  starred, and the Pareto front of the methods (not dominated in "more forgetting, more utility").
- :func:`plot_conflict`: cos(∇L_f, ∇L_r) over the unlearning steps (OFMU vs GradDiff by default), and the
  two gradient norms.

Example:
    >>> pareto_front([(1.0, 1.0), (2.0, 0.5), (0.5, 0.5)])
    [0, 1]
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes

__all__ = ["Axis", "pareto_front", "plot_conflict", "plot_tradeoff"]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated when both coordinates are to be maximised (sorted by x)."""
    keep = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: (points[i][0], points[i][1]))


def _save(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


@dataclass(frozen=True)
class Axis:
    """One axis of a trade-off panel: metric key, label, log scale, and whether higher is better."""

    key: str
    label: str
    log: bool = False
    higher_is_better: bool = True


VISION_PANELS = (
    (Axis("UA", "UA (%) = 100 − forget accuracy"), Axis("TA", "TA (%)")),
    (Axis("MIA", "MIA-efficacy (%)"), Axis("TA", "TA (%)")),
)


def plot_tradeoff(
    rows: Mapping[str, Mapping[str, tuple[float, float]]],
    path: Path,
    title: str = "",
    panels: Sequence[tuple[Axis, Axis]] = VISION_PANELS,
    references: Sequence[str] = ("retrain",),
    vline: tuple[float, str] | None = None,
) -> Path:
    """Forgetting vs utility scatter (mean ± std error bars) with the methods' Pareto front.

    Args:
        rows: method → metric → (mean, std); rows whose name starts with one of ``references`` are the
            reference models (starred, left out of the front).
        path: output PNG.
        title: figure title.
        panels: ``(x axis, y axis)`` per panel (default: UA and MIA-efficacy against TA).
        vline: an optional vertical marker ``(x, label)`` (e.g. chance accuracy).

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5 * len(panels) + 0.5, 4.5))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    names = [n for n in rows if all(not math.isnan(rows[n][a.key][0]) for p in panels for a in p)]
    cmap = _colors(len(names))
    for ax, (xa, ya) in zip(axes, panels, strict=True):
        for i, n in enumerate(names):
            (mx, sx), (my, sy) = rows[n][xa.key], rows[n][ya.key]
            star = n.startswith(tuple(references))
            ax.errorbar(mx, my, xerr=sx, yerr=sy, fmt="*" if star else "o", ms=13 if star else 6, color=cmap[i],
                        capsize=3, label=n)
        methods = [n for n in names if not n.startswith(tuple(references))]

        def signed(v: float, a: Axis) -> float:
            return v if a.higher_is_better else -v

        pts = [(signed(rows[n][xa.key][0], xa), signed(rows[n][ya.key][0], ya)) for n in methods]
        front = pareto_front(pts)
        ax.plot([rows[methods[i]][xa.key][0] for i in front], [rows[methods[i]][ya.key][0] for i in front], "--",
                color="grey", lw=1, label="Pareto front (methods)")
        if vline is not None:
            ax.axvline(vline[0], color="red", lw=0.8, ls=":", label=vline[1])
        if xa.log:
            ax.set_xscale("log")
        ax.set_xlabel(xa.label)
        ax.set_ylabel(ya.label)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="best", ncol=2)
    fig.suptitle(title or "forgetting vs utility (mean ± std over seeds)")
    return _save(fig, path)


def plot_conflict(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: Path, title: str = "") -> Path:
    """Gradient cosine and norms over steps for each method in ``histories`` (step records as dicts)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    ax_c, ax_n = fig.subplots(1, 2)
    cmap = _colors(len(histories))
    for i, (name, hist) in enumerate(histories.items()):
        rec = [h for h in hist if h.get("cos") is not None]
        steps = [h["step"] for h in rec]
        ax_c.plot(steps, [h["cos"] for h in rec], color=cmap[i], label=name)
        ax_n.plot(steps, [h["grad_forget_norm"] for h in rec], color=cmap[i], label=f"{name} ‖∇L_f‖")
        ax_n.plot(steps, [h["grad_retain_norm"] for h in rec], color=cmap[i], ls=":", label=f"{name} ‖∇L_r‖")
    ax_c.axhline(0.0, color="grey", lw=0.8)
    ax_c.set_xlabel("step")
    ax_c.set_ylabel("cos(∇L_f, ∇L_r)")
    if histories:
        ax_c.legend(fontsize=8)
        ax_n.legend(fontsize=7)
    ax_c.grid(alpha=0.3)
    ax_n.set_xlabel("step")
    ax_n.set_ylabel("gradient norm")
    ax_n.set_yscale("log")
    ax_n.grid(alpha=0.3)
    if not histories:
        ax_c.text(0.5, 0.5, "no diagnostics recorded", ha="center", transform=ax_c.transAxes)
    fig.suptitle(title or "gradient conflict between forget and retain losses")
    return _save(fig, path)


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cm = colormaps["tab20"]
    return [cm(i % 20) for i in range(max(n, 1))]

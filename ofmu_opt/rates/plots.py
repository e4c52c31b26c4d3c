"""Figures of the rate experiments: the data (markers), the fitted line (solid) and the theory's line or
bound (dashed), one panel per measured quantity. matplotlib is imported lazily, with the Agg backend."""

from __future__ import annotations

import io
import math
from pathlib import Path

from .._io import atomic_write_bytes, safe_child
from ..errors import BackendError
from .report import ExperimentResult

__all__ = ["PLOT_HINT", "plot_experiment", "plots_available"]

PLOT_HINT = "matplotlib is not installed; install the extra: pip install 'ofmu_opt[plot]'"


def plots_available() -> bool:
    """Whether matplotlib can be imported (the ``plot`` extra); the rate experiments run without it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True

_STYLE = {"data": dict(marker="o", markersize=3, linestyle="none"), "fit": dict(linestyle="-", linewidth=1.5),
          "theory": dict(linestyle="--", linewidth=1.5), "line": dict(linestyle="-", linewidth=1.0)}


def plot_experiment(result: ExperimentResult, out: str | Path) -> Path:
    """Render ``result.panels`` into ``<out>/<name>.png`` (written atomically) and return the path.

    Raises:
        BackendError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BackendError(f"rates plots need matplotlib: {PLOT_HINT}") from exc
    n = max(1, len(result.panels))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    try:
        for ax, panel in zip(axes.ravel(), result.panels):
            for s in panel.series:
                pts = [(x, y) for x, y in zip(s.x, s.y) if math.isfinite(x) and math.isfinite(y)
                       and (panel.yscale != "log" or y > 0) and (panel.xscale != "log" or x > 0)]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=s.label, **_STYLE.get(s.style, _STYLE["line"]))  # type: ignore[arg-type]
            ax.set_xscale(panel.xscale)
            ax.set_yscale(panel.yscale)
            ax.set_title(panel.title, fontsize=9)
            ax.set_xlabel(panel.xlabel)
            ax.set_ylabel(panel.ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        for ax in axes.ravel()[len(result.panels):]:
            ax.set_visible(False)
        fig.suptitle(result.name)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    return atomic_write_bytes(safe_child(out, f"{result.name}.png"), buf.getvalue())

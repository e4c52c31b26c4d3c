"""Table and plot from benchopt result files of ``run_simulated.sh`` (one per dtype).

For every solver: the first time (benchopt's timer: solver time, evaluations excluded) at which the
benchmark's metric ``value`` = ‖∇h(x)‖² falls to 1e-3 and to 1e-6, the smallest value reached and the
run's last time. Usage::

    python -m benchmarks.benchopt.report OUT/simulated_float64.parquet [OUT/simulated_float32.parquet] \\
        --plot docs/img/benchopt_simulated.png --table OUT/benchopt_table.md
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

THRESHOLDS = (1e-3, 1e-6)


def _short(name: str) -> str:
    m = re.match(r"ofmu_opt\[.*preset=([a-z_]+)", name)
    if m:
        lt = re.search(r"level_tol=([0-9.e+-]+)", name)
        unfused = re.search(r"fused=False", name)
        preset = m.group(1)
        for kind in ("dense", "newton"):
            if preset.endswith("_" + kind):
                preset = preset.removesuffix("_" + kind) + f" ({kind})"
        return f"ofmu_opt {preset}" + (f" (level_tol={lt.group(1)})" if lt else "") + (
            " (unfused)" if unfused else "")
    return name.split("[")[0]


def statuses(log: Path) -> dict[str, str]:
    """benchopt's final status per solver (``done (timeout)``, ``diverged``, ...) from the run's console log."""
    out: dict[str, str] = {}
    if not log.is_file():
        return out
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace")).replace("\r", "\n")
    for m in re.finditer(r"\|--(\S+?):\s+(done \([^)]*\)|done|diverged|error|failed)", text):
        out[m.group(1)] = m.group(2)
    return out


def summarize(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    df = pd.read_parquet(path)
    status = statuses(path.with_suffix(".log"))
    rows = []
    for name, g in df.groupby("solver_name"):
        g = g.sort_values("time")
        t = g["time"].to_numpy(dtype=float)
        v = g["objective_value"].to_numpy(dtype=float)
        row: dict[str, Any] = {"solver": _short(str(name)), "full_name": str(name),
                               "min_value": float(min(v[~(v != v)], default=math.nan)), "last_time": float(t[-1])}
        for th in THRESHOLDS:
            hit = [ti for ti, vi in zip(t, v, strict=True) if vi <= th]
            row[f"t_{th:g}"] = hit[0] if hit else None
        row["curve"] = (t, v)
        row["status"] = status.get(str(name), "")
        rows.append(row)
    seen = {r["full_name"] for r in rows}
    for name, st in status.items():  # benchopt saves no curve for a diverged solver: keep it in the table
        if name not in seen:
            rows.append({"solver": _short(name), "full_name": name, "min_value": math.nan, "last_time": math.nan,
                         "t_0.001": None, "t_1e-06": None, "curve": None, "status": st})
    return rows


def table(rows_by_dtype: dict[str, list[dict[str, Any]]]) -> str:
    def fmt(x: Any) -> str:
        return "not reached" if x is None else f"{x:.3g} s"

    lines = ["| dtype | solver | ‖∇h‖² ≤ 1e-3 | ‖∇h‖² ≤ 1e-6 | smallest ‖∇h‖² | run length | benchopt status |",
             "|---|---|---|---|---|---|---|"]
    for dtype, rows in rows_by_dtype.items():
        for r in sorted(rows, key=lambda r: (r["t_1e-06"] is None, r["t_1e-06"] or 0, r["min_value"])):
            best = "—" if math.isnan(r["min_value"]) else f"{r['min_value']:.2e}"
            length = "—" if math.isnan(r["last_time"]) else f"{r['last_time']:.3g} s"
            lines.append(f"| {dtype} | {r['solver']} | {fmt(r['t_0.001'])} | {fmt(r['t_1e-06'])} | "
                         f"{best} | {length} | {r['status']} |")
    return "\n".join(lines) + "\n"


def plot(rows_by_dtype: dict[str, list[dict[str, Any]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows_by_dtype), figsize=(6.5 * len(rows_by_dtype), 4.5), squeeze=False)
    names = sorted({r["solver"] for rows in rows_by_dtype.values() for r in rows})
    cmap = plt.get_cmap("tab20")
    color = {n: cmap(i % 20) for i, n in enumerate(names)}  # one colour per solver in every panel
    for ax, (dtype, rows) in zip(axes[0], rows_by_dtype.items(), strict=True):
        for r in rows:
            if r["curve"] is None:
                continue
            t, v = r["curve"]
            ls = "-" if r["solver"].startswith("ofmu_opt") else "--"
            ax.loglog(t + 1e-4, v, ls, label=r["solver"], lw=1.6, color=color[r["solver"]])
        ax.axhline(1e-6, color="grey", lw=0.8)
        ax.set_xlabel("time (s, benchopt's solver timer)")
        ax.set_ylabel("‖∇h(x)‖²")
        ax.set_title(f"benchmark_bilevel simulated (10/5), {dtype}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path)
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("--table", type=Path, default=None)
    a = p.parse_args(argv)
    rows_by_dtype = {}
    for path in a.results:
        dtype = "float32" if "float32" in path.name else "float64"
        rows_by_dtype[dtype] = summarize(path)
    md = table(rows_by_dtype)
    print(md)
    if a.table:
        a.table.write_text(md)
    if a.plot:
        plot(rows_by_dtype, a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

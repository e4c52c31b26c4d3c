"""``ofmu rates``: run the convergence-rate experiments and report fitted against expected values.

``ofmu rates [EXPERIMENT ...] [--quick] [--out DIR] [--json] [--no-plots]``: no names runs all; ``--json``
prints a list of ``{experiment, quantity, kind, fitted, expected, r2, verdict}``; otherwise a table and
where the plots are. Each experiment writes ``DIR/<name>.json`` and ``DIR/<name>.png``; ``DIR/rates.json``
collects every record with its details. Only the figures need matplotlib: without it (a base install)
everything else runs and a note on stderr says the plots were skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

__all__ = ["register"]


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _rates(args: argparse.Namespace) -> int:
    from .._io import check_output_dir, output_lock
    from ..rates import format_table, resolve_names, run_experiments, write_summary
    from ..rates.plots import PLOT_HINT, plots_available

    names = resolve_names(args.experiments)  # ConfigError (exit 2) before any work
    check_output_dir(args.out)
    plots = False if args.no_plots else plots_available()
    if not plots and not args.no_plots:
        sys.stderr.write(f"ofmu: note: plots skipped ({PLOT_HINT})\n")
    from .._progress import progress

    # a bar on a terminal (when tqdm is installed), log lines off one: the full experiments take minutes
    with output_lock(args.out), progress("rates", total=len(names), unit="exp") as bar:
        # a second `ofmu rates` on the same --out is refused, naming this one's pid
        results = run_experiments(names, quick=args.quick, out=args.out, seed=args.seed, plots=plots,
                                  on_done=lambda res: bar.update(1, last=res.name))
        summary = write_summary(results, args.out)
    if args.json:
        rows = [{k: _jsonable(v) for k, v in r.summary().items()} for res in results for r in res.records]
        sys.stdout.write(json.dumps(rows, indent=2, allow_nan=False) + "\n")
    else:
        sys.stdout.write(format_table(results) + "\n")
        sys.stdout.write(f"All records with details: {summary}\n")
    return 0


def register(sub: Any) -> None:
    from ..rates.experiments import EXPERIMENTS
    from . import bounded_int

    p = sub.add_parser("rates", help="measure convergence rates and compare them with the theory")
    p.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                   help=f"experiments to run (default all): {', '.join(EXPERIMENTS)}")
    p.add_argument("--quick", action="store_true", help="small grids (all experiments in well under a minute)")
    p.add_argument("--out", default="rates_out", help="output directory for JSON and PNG files (default rates_out)")
    p.add_argument("--seed", type=bounded_int("--seed", 0, 2**32 - 1), default=0,
                   help="seed of the problem instances and the noise, 0..2^32-1 (default 0)")
    p.add_argument("--json", action="store_true", help="print the records as a JSON list")
    p.add_argument("--no-plots", action="store_true", help="write no PNG figures (they need matplotlib)")
    p.set_defaults(handler=_rates)

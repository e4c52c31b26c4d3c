"""``ofmu demo``: the main job on built-in data, as ``make demo`` runs it.

1. every preset on every reference problem (status, distance, oracle calls, time);
2. the convergence-rate verdicts (``ofmu rates --quick``; the figures only with matplotlib);
3. the quick digits unlearning benchmark, when torch is installed.

On a base install (numpy and scipy) parts 1 and 2 run and the output says what was skipped and which
extra would enable it.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["reference_table", "register"]


def reference_table(tol: float = 1e-4) -> list[dict[str, Any]]:
    """Run every preset on every reference problem; one row per pair (not-applicable pairs say why)."""
    from ..reference import REFERENCES, get_reference
    from ..reference.solvers import PRESET_FACTORIES
    from .cmd_solve import solve_reference

    rows: list[dict[str, Any]] = []
    for pid in REFERENCES:
        ref = get_reference(pid)
        # the scalarized baseline runs wherever the problem can be expressed at all, to show where it stops and why
        expressible = any(r is None for r in ref.applies.values())
        for preset in PRESET_FACTORIES:
            reason = ref.applies.get(preset)
            if reason is not None and (preset != "scalarized" or not expressible):
                rows.append({"problem": pid, "solver": preset, "status": "n/a", "note": reason})
                continue
            rec = solve_reference(pid, preset, tol=tol, options=["beta=0"] if preset == "ofmu" else [])
            rows.append({**rec, "note": reason or ""})
    return rows


def _format(rows: list[dict[str, Any]]) -> str:
    w = max([len("problem"), *(len(str(r["problem"])) for r in rows)])  # BOLIB names are long
    head = f"{'problem':<{w}} {'solver':<10} {'status':<16} {'distance':>9} {'calls':>8} {'time s':>7}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["status"] == "n/a":
            lines.append(f"{r['problem']:<{w}} {r['solver']:<10} {'n/a':<16} {'':>9} {'':>8} {'':>7}  {r['note'][:60]}")
            continue
        note = str(r.get("note") or "")[:60]
        lines.append(
            f"{r['problem']:<{w}} {r['solver']:<10} {r['status']:<16} {r['distance']:>9.2e} {r['oracle_calls']:>8d} "
            f"{r['wall_time_s']:>7.2f}  {note}"
        )
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from .._io import check_output_dir, output_lock

    out = check_output_dir(args.out)
    with output_lock(out):  # one demo per output directory
        return _demo_in(out)


def _demo_in(out: Path) -> int:
    from .._io import atomic_write_json

    sys.stdout.write("== 1. Reference problems: every preset, target relative distance 1e-4 (ofmu with beta=0)\n")
    rows = reference_table()
    sys.stdout.write(_format(rows) + "\n\n")
    atomic_write_json(out / "reference_table.json", rows)
    steps: list[tuple[str, list[str], tuple[str, ...]]] = [
        ("2. Convergence rates (quick)", ["rates", "--quick", "--out", str(out / "rates")], ()),
        ("3. Digits unlearning benchmark (quick)", [
            "bench", "--benchmark", "digits", "--scenario", "random10", "--methods", "all", "--seeds", "2",
            "--quick", "--out", str(out / "digits"),
        ], ("torch", "safetensors", "sklearn")),
    ]
    from . import build_parser, missing_extra

    parser = build_parser()
    for title, argv, needs in steps:
        absent = [m for m in needs if not _importable(m)]
        if absent:
            hint = missing_extra(ModuleNotFoundError(f"No module named {absent[0]!r}", name=absent[0]))
            sys.stdout.write(f"== {title}: skipped ({hint})\n\n")
            continue
        sys.stdout.write(f"== {title}\n")
        sys.stdout.flush()
        sub = parser.parse_args(argv)
        try:
            code = sub.handler(sub)
        except ModuleNotFoundError as exc:
            hint = missing_extra(exc)
            if hint is None:
                raise
            sys.stdout.write(f"(skipped: {hint})\n\n")
            continue
        sys.stdout.write("\n")
        if code not in (0, None):
            sys.stdout.write(f"(step '{title}' exited with code {code})\n")
    sys.stdout.write(f"Demo outputs (JSON, plots) are under {out.resolve()}\n")
    return 0


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a blocked or broken installation
        return False


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="the main job on built-in data: references, rates, digits benchmark")
    p.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    p.set_defaults(handler=_demo)

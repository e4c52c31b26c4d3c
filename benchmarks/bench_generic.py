"""Benchmark 1: wall time and oracle calls to reach relative distance 1e-6 on P3 at n = 10, 100, 1000.

Every preset (with `with_continuation`, as `ofmu solve` configures it) and every comparison solver runs
from the same start with step sizes from the problem's constants; a callback stops the run when the
returned point is within the target (the distance computation is O(n), negligible). A solver that does
not reach the target within the time cap is reported with the distance it reached.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ofmu_opt.core import Bome, F2sa, ImplicitDiff
from ofmu_opt.reference.problems import make_p3
from ofmu_opt.reference.solvers import solver_for_reference

from .common import machine_info, markdown_table, write_outputs

TARGET = 1e-6


def _solvers(ref: Any) -> dict[str, Any]:
    d = ref.data
    Q, C, H = d["Q"], d["C"], d["H"]
    lr_in = 1.0 / float(np.linalg.eigvalsh(Q).max())
    J = -np.linalg.solve(Q, C.T)
    lr_h = 1.0 / float(np.linalg.eigvalsh(J.T @ J + H).max())
    return {
        "ofmu (beta=0)": solver_for_reference("ofmu", ref, tol=TARGET / 10, options={"beta": 0.0}),
        "gpbgd": solver_for_reference("gpbgd", ref, tol=TARGET / 10),
        "vpbgd": solver_for_reference("vpbgd", ref, tol=TARGET / 10),
        "bome": Bome(lr=0.05, inner_lr=lr_in, maxiter=10**7),
        "f2sa": F2sa(lr=0.05, inner_lr=lr_in, lam_step=1.0, lam_max=1e6, maxiter=10**7),
        "implicit_diff": ImplicitDiff(lr=lr_h, inner_lr=lr_in, outer_rule="nesterov", tol=1e-14, maxiter=10**7),
    }


def run(sizes: list[int], time_cap: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for n in sizes:
        ref = make_p3(seed=0, nx=max(2, n // 5), ny=n)
        for name, solver in _solvers(ref).items():
            best = {"d": math.inf}

            def cb(r: Any, solver: Any = solver, best: dict[str, float] = best, ref: Any = ref) -> None:
                x, y = solver.point(r.state)
                d = ref.distance(x, y)
                best["d"] = min(best["d"], d)
                if d <= TARGET:
                    raise StopIteration

            # BOME and F2SA do not reach the target at any n within the cap (their fixed-step/finite-multiplier
            # bias stays above it); the solvers that can reach it get a longer cap at large n
            cap = time_cap if (n < 1000 or name in ("bome", "f2sa")) else 6 * time_cap
            s = dataclasses.replace(solver, max_time=cap)
            t0 = time.perf_counter()
            with np.errstate(all="ignore"):
                res = s.run(ref.problem, ref.x0, ref.y0, callback=cb)
            wall = time.perf_counter() - t0
            reached = best["d"] <= TARGET
            rows.append({
                "n": n, "solver": name, "reached": reached, "distance": best["d"],
                "wall_time_s": wall if reached else None, "oracle_calls": sum(res.counts.values()),
                "rounds": res.nit, "status": res.status.value,
            })
    # growth with n: log-log slope of time between the smallest and largest n, per solver
    growth: dict[str, float | None] = {}
    for name in {r["solver"] for r in rows}:
        pts = [(r["n"], r["wall_time_s"]) for r in rows if r["solver"] == name and r["wall_time_s"]]
        if len(pts) >= 2:
            (n0, t0_), (n1, t1) = pts[0], pts[-1]
            growth[name] = math.log(t1 / t0_) / math.log(n1 / n0)
        else:
            growth[name] = None
    return {"target": TARGET, "sizes": sizes, "time_cap_s": time_cap, "rows": rows, "time_growth_exponent": growth}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="bench_out")
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--time-cap", type=float, default=30.0)
    a = p.parse_args(argv)
    payload = run([int(s) for s in a.sizes.split(",")], a.time_cap)
    payload["machine"] = machine_info()
    table = markdown_table(payload["rows"], ["n", "solver", "reached", "distance", "wall_time_s", "oracle_calls",
                                             "rounds"])
    table += "\nTime growth exponent (log t / log n, smallest to largest n):\n\n"
    growth = sorted(payload["time_growth_exponent"].items())
    table += "".join(f"- {k}: {v if v is None else round(v, 2)}\n" for k, v in growth)
    write_outputs(Path(a.out), "bench_generic", payload, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

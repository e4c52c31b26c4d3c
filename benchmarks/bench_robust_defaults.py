"""Every preset at its defaults on every reference problem, rescaled: does each run converge or name its reason?

The outer objective is multiplied by ``sf`` and the inner one by ``sg`` for factors in 1e-2 … 1e2 (one at a
time; scaling an objective leaves the bi-level solution unchanged, but moves every curvature the solver sees).
Each run gets a wall-clock budget; the table records status, rounds and the relative distance to the known
solution, and flags the outcomes that must never happen: ``numerical_error`` (not named: the loop names a diverged
point ``diverged``), or ``converged`` farther than the reference's tolerance. ``stationary`` is a named outcome: a
stationary point on a problem that does not declare ``local_is_global`` (the local-minimum traps). Results of the
last run: docs/solver_options.md, "The rescaling matrix".

Run:  python benchmarks/bench_robust_defaults.py [--max-time 30] [--ids P3,QOFMU] [--out results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
from typing import Any

import numpy as np

import ofmu_opt as oo
from ofmu_opt._io import atomic_write_text
from ofmu_opt.problem import has_hvp, has_tvp

FACTORS = ((1e-2, 1.0), (1e2, 1.0), (1.0, 1e-2), (1.0, 1e2))
PRESETS = {
    "gpbgd": lambda: oo.gpbgd(),
    "vpbgd": lambda: oo.vpbgd(),
    "ofmu": lambda: oo.ofmu(beta=0.0),
    "scalarized": lambda: oo.scalarized(),
    "bome": lambda: oo.Bome(),
    "f2sa": lambda: oo.F2sa(),
}


class Scaled:
    """An objective times a constant (value, gradient, HVP and third derivatives)."""

    def __init__(self, obj: Any, s: float) -> None:
        self.o, self.s = obj, s
        self.hvp_available, self.tvp_available = has_hvp(obj), has_tvp(obj)

    def _sc(self, p: Any) -> Any:
        return tuple(None if v is None else self.s * v for v in p)

    def value(self, x: Any, y: Any, *, batch: Any = None) -> Any:
        return self.s * self.o.value(x, y, batch=batch)

    def grad(self, x: Any, y: Any, *, batch: Any = None) -> Any:
        return self._sc(self.o.grad(x, y, batch=batch))

    def hvp(self, x: Any, y: Any, v: Any, *, batch: Any = None) -> Any:
        return self._sc(self.o.hvp(x, y, v, batch=batch))

    def tvp(self, x: Any, y: Any, u: Any, v: Any, *, batch: Any = None) -> Any:
        return self._sc(self.o.tvp(x, y, u, v, batch=batch))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-time", type=float, default=30.0, help="seconds per run")
    p.add_argument("--ids", default="", help="comma-separated reference ids (default: all with a bilevel target)")
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--out", default="", help="write the rows as JSON here")
    a = p.parse_args(argv)
    ids = a.ids.split(",") if a.ids else [r["id"] for r in oo.list_references() if r["target"] == "bilevel"]
    rows, bad = [], 0
    print(f"{'problem':30s} {'scale':12s} {'solver':6s} {'status':16s} {'rounds':>7s} {'distance':>9s}")
    for rid in ids:
        ref = oo.get_reference(rid)
        for sf, sg in FACTORS:
            prob = dataclasses.replace(ref.problem, outer=Scaled(ref.problem.outer, sf),
                                       inner=Scaled(ref.problem.inner, sg))
            for name in a.presets.split(","):
                solver = dataclasses.replace(PRESETS[name](), max_time=a.max_time)
                t0 = time.perf_counter()
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    try:
                        res = solver.run(prob, ref.x0, ref.y0)
                    except oo.OfmuError as exc:  # a solver that does not apply (e.g. ImplicitDiff without x)
                        print(f"{rid:30s} f*{sf:g},g*{sg:g} {name:10s} n/a ({exc})")
                        continue
                d = ref.distance(res.x, res.y)
                flag = ""
                if res.status is oo.Status.NUMERICAL_ERROR or (res.success and not d <= ref.tol):
                    flag, bad = "  <-- unnamed failure", bad + 1
                rows.append({"problem": rid, "sf": sf, "sg": sg, "solver": name, "status": res.status.value,
                             "rounds": res.nit, "distance": d, "seconds": time.perf_counter() - t0})
                print(f"{rid:30s} f*{sf:g},g*{sg:g}".ljust(43) + f" {name:10s} {res.status.value:16s} "
                      f"{res.nit:7d} {d:9.2e}{flag}", flush=True)
    if a.out:
        atomic_write_text(a.out, json.dumps(rows, indent=1))
    print(f"{len(rows)} runs, {bad} unnamed failures")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

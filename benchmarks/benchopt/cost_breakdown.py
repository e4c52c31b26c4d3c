"""Where the time of the plug-in's solvers goes on benchmark_bilevel ``simulated``: rounds, oracle calls and
array-library calls to ‖∇h‖² ≤ 1e-6, and the split of the solver time between those calls and the solver's own
Python work.

Runs each configuration of ``solver_ofmu.py`` directly (no benchopt loop; the same dataset, oracles and
solver objects), with a callback that evaluates the benchmark's metric after every round outside the timed
part. Usage (in the venv that has jax and benchopt)::

    JAX_ENABLE_X64=1 PYTHONPATH=. python -m benchmarks.benchopt.cost_breakdown BENCHMARK_DIR [--max-time 30]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

THRESHOLD = 1e-6


def load_dataset(bench: Path, dim_inner: int = 10, dim_outer: int = 5) -> dict[str, Any]:
    """The benchmark's ``simulated`` dataset, generated in the current dtype: from a fresh working directory, since
    benchmark_bilevel caches the matrices in ``./__cache__`` keyed by the PRNG key but not by the dtype."""
    bench = bench.resolve()
    sys.path.insert(0, str(bench))
    spec = importlib.util.spec_from_file_location("bb_simulated", bench / "datasets" / "simulated.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        try:
            spec.loader.exec_module(mod)
            return mod.Dataset.get_instance(  # type: ignore[no-any-return]
                dim_inner=dim_inner, dim_outer=dim_outer).get_data()
        finally:
            os.chdir(old)


class _Timed:
    """Wraps a callable and adds its wall time to a shared total."""

    def __init__(self, fn: Any, clock: dict[str, float], name: str) -> None:
        self.fn, self.clock, self.name = fn, clock, name

    def __call__(self, *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return self.fn(*args)
        finally:
            self.clock[self.name] = self.clock.get(self.name, 0.0) + time.perf_counter() - t


def measure(data: dict[str, Any], config: dict[str, Any], max_time: float) -> dict[str, Any]:
    import jax
    import numpy as np

    from benchmarks.benchopt.fused import Bundles, FusedOracles, jax_bundles, jax_objective
    from benchmarks.benchopt.solver_ofmu import make_solver
    from ofmu_opt.backends.numpy_backend import NumpySpace
    from ofmu_opt.problem.bilevel import BilevelProblem

    f_in, n_in, d_in, _ = data["pb_inner"]
    f_out, n_out, d_out, _ = data["pb_outer"]
    metrics = data["metrics"]
    dt = np.float64 if jax.config.jax_enable_x64 else np.float32
    x0, y0 = -2.0 * np.ones(d_out, dt), np.zeros(d_in, dt)  # the objective's start (outer -2, inner 0)
    clock: dict[str, float] = {}
    outer, inner = jax_objective(f_out, n_out), jax_objective(f_in, n_in)
    fused = None
    if config.get("fused", True):
        b = jax_bundles(f_out, f_in, n_out, n_in)
        b = Bundles(**{k: _Timed(getattr(b, k), clock, k) for k in ("both", "inner", "outer", "hvp_inner",
                                                                     "hvp_outer", "hessian_inner", "outer_hessian",
                                                                     "hessian_outer", "newton")})
        fused = FusedOracles(b, outer, inner, dense=config["preset"] == "implicit_dense",
                             newton=config["preset"] == "implicit_newton")
        outer, inner = fused.objectives()
    else:
        from ofmu_opt.problem.oracles import FunctionObjective

        def timed(obj: Any, tag: str) -> Any:
            return FunctionObjective(_Timed(lambda x, y, b: obj.value(x, y, batch=b), clock, tag + "_value"),
                                     _Timed(lambda x, y, b: obj.grad(x, y, batch=b), clock, tag + "_grad"),
                                     _Timed(lambda x, y, v, b: obj.hvp(x, y, v, batch=b), clock, tag + "_hvp"))

        outer, inner = timed(outer, "f"), timed(inner, "g")
    problem = BilevelProblem(outer, inner, NumpySpace(), "min", has_x=True, name="benchopt-simulated")
    solver = make_solver(config["preset"], config.get("level_tol"), n_in, n_out, 64, 0.1)
    # compile outside the timed part: every bundle / oracle once
    for _ in range(2):
        if fused is not None:
            for name in ("both", "inner", "outer"):
                getattr(fused.b, name)(x0, y0)
            fused.b.hvp_inner(x0, y0, y0)
            fused.b.hvp_outer(x0, y0, y0)
            assert fused.b.hessian_inner is not None and fused.b.outer_hessian is not None
            fused.b.hessian_inner(x0, y0)
            fused.b.outer_hessian(x0, y0)
            if fused.b.hessian_outer is not None:
                fused.b.hessian_outer(x0, y0)
            if fused.b.newton is not None:
                fused.b.newton(x0, y0)
        for obj in (outer, inner):
            obj.value(x0 + 1, y0 + 1)
            obj.grad(x0 + 1, y0 + 1)
            obj.hvp(x0 + 1, y0 + 1, y0)
    if fused is not None:
        fused.clear()
    clock.clear()
    solver_time = [0.0]
    last = [time.perf_counter()]
    hit: dict[str, Any] = {}

    def callback(r: Any) -> None:
        solver_time[0] += time.perf_counter() - last[0]
        x, y = solver.point(r.state)
        value = float(metrics(jax.numpy.asarray(y), jax.numpy.asarray(x))["value"])
        if value <= THRESHOLD and not hit:
            hit.update(rounds=r.nit, solver_time_s=solver_time[0], library_time_s=sum(clock.values()),
                       library_calls=dict(fused.calls) if fused is not None else None)
        if hit or solver_time[0] > max_time:
            raise StopIteration
        last[0] = time.perf_counter()

    res = solver.run(problem, x0, y0, callback=callback)
    out = {"config": config, "reached": bool(hit), "rounds_run": res.nit, "oracle_calls": res.counts,
           "last_status": res.status.value, **hit}
    if hit:
        lib = hit["library_calls"] if hit["library_calls"] is not None else res.counts
        n_lib = sum(lib.values())
        out["library_calls_total"] = n_lib
        out["us_per_library_call"] = 1e6 * hit["library_time_s"] / max(n_lib, 1)
        out["python_us_per_round"] = 1e6 * (hit["solver_time_s"] - hit["library_time_s"]) / max(hit["rounds"], 1)
    return out


CONFIGS = [
    {"preset": "gpbgd"}, {"preset": "gpbgd", "fused": False}, {"preset": "ofmu"}, {"preset": "vpbgd"},
    {"preset": "gpbgd", "level_tol": 1e-3}, {"preset": "ofmu", "level_tol": 1e-3}, {"preset": "implicit"},
    {"preset": "implicit_dense"}, {"preset": "implicit_newton"},
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench", type=Path, help="a checkout of benchmark_bilevel")
    p.add_argument("--max-time", type=float, default=30.0)
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON lines")
    p.add_argument("--preset", action="append", default=None,
                   help="only the configurations of this preset (repeatable; default: all)")
    a = p.parse_args(argv)
    data = load_dataset(a.bench)
    rows = []
    for config in CONFIGS:
        if a.preset and config["preset"] not in a.preset:
            continue
        row = measure(data, config, a.max_time)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.out:
        a.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

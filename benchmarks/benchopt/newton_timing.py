"""Time ``implicit_newton`` to ‖∇h‖² ≤ 1e-6 on benchmark_bilevel ``simulated``, outside benchopt, in four variants
run interleaved in one process (same compiled bundles, same machine load), so their medians compare:

- ``before``: the fused oracles' dense mode (``f`` with ``g``'s blocks at every point where ``g`` came first, ``f``'s
  blocks in a separate call) and the dense solver's host linear algebra on Python floats (``PythonLinalg``) — the
  plug-in and core as they were before the newton mode and the ``linalg`` capability;
- ``newton mode``: the fused oracles' newton mode, Python floats;
- ``numpy linalg``: the dense mode, the space's ``NumpyLinalg``;
- ``after``: the newton mode and ``NumpyLinalg`` (what the plug-in runs).

Per variant: the median solver time (the benchmark's metric evaluated in the callback, outside the timed part), the
time inside the jitted bundles, the rest (the solver's and the adapter's Python), and the bundle calls. Usage::

    JAX_ENABLE_X64=1 PYTHONPATH=. python -m benchmarks.benchopt.newton_timing BENCHMARK_DIR [--runs 150]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.benchopt.cost_breakdown import THRESHOLD, _Timed, load_dataset


def main(argv: list[str] | None = None) -> int:
    import jax
    import numpy as np

    from benchmarks.benchopt.fused import Bundles, FusedOracles, jax_bundles, jax_objective
    from benchmarks.benchopt.solver_ofmu import make_solver
    from ofmu_opt.backends.numpy_backend import NumpySpace
    from ofmu_opt.problem.bilevel import BilevelProblem

    class PythonFloatSpace(NumpySpace):
        linalg = None  # the dense solver falls back to PythonLinalg

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench", type=Path, help="a checkout of benchmark_bilevel")
    p.add_argument("--runs", type=int, default=150)
    a = p.parse_args(argv)
    data = load_dataset(a.bench)
    f_in, n_in, d_in, _ = data["pb_inner"]
    f_out, n_out, d_out, _ = data["pb_outer"]
    metrics = data["metrics"]
    dt = np.float64 if jax.config.jax_enable_x64 else np.float32
    x0, y0 = -2.0 * np.ones(d_out, dt), np.zeros(d_in, dt)
    raw = jax_bundles(f_out, f_in, n_out, n_in)
    variants = {"before": ({"dense": True}, PythonFloatSpace()), "newton mode": ({"newton": True}, PythonFloatSpace()),
                "numpy linalg": ({"dense": True}, NumpySpace()), "after": ({"newton": True}, NumpySpace())}
    setups: dict[str, tuple[Any, dict[str, float], BilevelProblem]] = {}
    for name, (mode, space) in variants.items():
        clock: dict[str, float] = {}
        names = [k for k in Bundles.__dataclass_fields__ if getattr(raw, k) is not None]
        fused = FusedOracles(Bundles(**{k: _Timed(getattr(raw, k), clock, k) for k in names}),
                             jax_objective(f_out, n_out), jax_objective(f_in, n_in), **mode)
        outer, inner = fused.objectives()
        setups[name] = (fused, clock, BilevelProblem(outer, inner, space, "min", has_x=True))
    solver = make_solver("implicit_newton", None, n_in, n_out, 64, 0.1)

    def once(name: str) -> tuple[float, float, dict[str, int]]:
        fused, clock, problem = setups[name]
        fused.clear()
        clock.clear()
        acc, last = [0.0], [time.perf_counter()]
        out: list[tuple[float, float, dict[str, int]]] = []

        def callback(r: Any) -> None:
            acc[0] += time.perf_counter() - last[0]
            x, y = solver.point(r.state)
            if float(metrics(jax.numpy.asarray(y), jax.numpy.asarray(x))["value"]) <= THRESHOLD:
                out.append((acc[0], sum(clock.values()), dict(fused.calls)))
                raise StopIteration
            last[0] = time.perf_counter()

        solver.run(problem, x0, y0, callback=callback)
        return out[0]

    for _ in range(5):  # compile and warm up every variant
        for name in setups:
            once(name)
    res: dict[str, list[tuple[float, float, dict[str, int]]]] = {name: [] for name in setups}
    for _ in range(a.runs):
        for name in setups:
            res[name].append(once(name))
    print(f"{dt.__name__}: {a.runs} interleaved runs per variant, medians")
    for name, rows in res.items():
        tot = statistics.median(r[0] for r in rows)
        lib = statistics.median(r[1] for r in rows)
        rest = statistics.median(r[0] - r[1] for r in rows)
        print(f"{name:13s} {1e3 * tot:6.2f} ms  (jitted bundles {1e3 * lib:5.2f} ms, rest {1e3 * rest:5.2f} ms)  "
              f"calls {rows[0][2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

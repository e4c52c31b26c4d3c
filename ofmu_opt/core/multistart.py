"""Multi-start: run a solver from several starting points and keep the best stationary point.

A gradient method stops at a stationary point of the bi-level problem, which on problems with local minima
(constrained lower levels, for example) may be a local one. :class:`MultiStart` is the cheap remedy: it runs the
wrapped solver from the user's start and from each extra start (x values; the y start is the user's ``y0``), and
returns the run with the lowest outer objective among those that stopped at a stationary point with every
constraint satisfied. It raises the odds of finding the global solution; it certifies nothing, so its status is
the best run's (``stationary`` unless the problem declares ``local_is_global=True``). The result's ``counts`` and
``wall_time_s`` are the totals over all runs, so comparisons stay at equal compute.

Examples:
    >>> import numpy as np
    >>> from ofmu_opt.core.solver import gpbgd
    >>> from ofmu_opt.reference import get_reference
    >>> ref = get_reference("LamparielloSagratella2017Ex35")  # h(x) has local minima at x = 0 and x = 0.8
    >>> lower = lambda x: np.clip(2.0 - 2.0 * x, 0.0, 1.0)      # its lower-level solution y*(x)
    >>> runs = MultiStart(gpbgd(), starts=[np.array([-0.5]), np.array([0.9])], y_start=lower).run_all(
    ...     ref.problem, ref.x0, ref.y0)
    >>> [round(float(r.x[0]), 4) + 0.0 for r in runs], best_of(runs).status.value, round(float(best_of(runs).x[0]), 4)
    ([0.8, 0.0, 0.8], 'stationary', 0.8)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._typing import Vec
from ..errors import ConfigError
from ..problem.bilevel import BilevelProblem
from .result import BilevelResult, IntermediateResult, Status

__all__ = ["MultiStart", "best_of"]

_STOPPED = (Status.CONVERGED, Status.STATIONARY, Status.PENALIZED)
FEASIBILITY_TOL = 1e-6
"""A run whose largest constraint violation exceeds this (times ``max(1, |f|)``) is not a candidate."""


@dataclass(frozen=True)
class MultiStart:
    """Run ``solver`` from the user's start and from every x in ``starts``; keep the best stationary point.

    Args:
        solver: any solver with ``run(problem, x0, y0, ...)`` (a preset, a continuation wrapper, ...).
        starts: extra starting values of x; for a problem without x, extra starting values of y. A numpy helper
            that samples a box: :func:`ofmu_opt.reference.solvers.box_starts`.
        y_start: maps an x start to its y start (for example the lower-level solution at that x, which keeps the
            first penalty level near the solution graph); default: the user's ``y0`` for every start (projected by
            the solver onto ``y_set``).
    """

    solver: Any
    starts: Sequence[Vec] = field(default=())
    y_start: Callable[[Vec], Vec] | None = None

    def __post_init__(self) -> None:
        if not callable(getattr(self.solver, "run", None)):
            raise ConfigError(f"solver: expected a solver with a run() method, received {type(self.solver).__name__}")
        object.__setattr__(self, "starts", tuple(self.starts))

    def run_all(
        self, problem: BilevelProblem, x0: Vec | None, y0: Vec, *,
        callback: Callable[[IntermediateResult], Any] | None = None,
    ) -> list[BilevelResult]:
        """One result per start, the user's start first."""
        first_y = y0 if self.y_start is None or x0 is None else self.y_start(x0)
        out = [self.solver.run(problem, x0, first_y, callback=callback)]
        for s in self.starts:
            if problem.has_x:
                ys = y0 if self.y_start is None else self.y_start(s)
                out.append(self.solver.run(problem, s, ys, callback=callback))
            else:
                out.append(self.solver.run(problem, None, s, callback=callback))
        return out

    def run(
        self, problem: BilevelProblem, x0: Vec | None, y0: Vec, *,
        callback: Callable[[IntermediateResult], Any] | None = None,
    ) -> BilevelResult:
        """The best run (see the module docstring), with counts and wall time summed over all runs."""
        runs = self.run_all(problem, x0, y0, callback=callback)
        return best_of(runs)


def best_of(runs: Sequence[BilevelResult]) -> BilevelResult:
    """The run with the lowest ``fun`` among the feasible ones that stopped at a stationary point (else the first
    run), its message extended by the tally and its ``counts``/``wall_time_s`` summed over ``runs``."""
    if not runs:
        raise ConfigError("runs: expected at least one result, received none")

    def candidate(r: BilevelResult) -> bool:
        viol = max(r.feasibility.values(), default=0.0)
        return r.status in _STOPPED and math.isfinite(r.fun) and viol <= FEASIBILITY_TOL * max(1.0, abs(r.fun))

    ok = [k for k, r in enumerate(runs) if candidate(r)]
    pick = min(ok, key=lambda k: (runs[k].fun, k)) if ok else 0
    best = runs[pick]
    counts: dict[str, int] = {}
    for r in runs:
        for key, n in r.counts.items():
            counts[key] = counts.get(key, 0) + n
    values = ", ".join(f"{r.fun:.6g}" if candidate(r) else r.status.value for r in runs)
    tally = (f" Multi-start: best of {len(runs)} starts (start {pick}; final f per start: {values}); counts and wall "
             "time are totals over all starts.")
    return dataclasses.replace(best, message=best.message + tally, counts=counts,
                               wall_time_s=sum(r.wall_time_s for r in runs))

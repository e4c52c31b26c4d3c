"""The one run loop every solver shares: rounds, history, callback, stopping, the result.

A solver provides ``init_state(problem, x0, y0)``, ``update(problem, state, *, batch)``, ``point(state)``
(the returned ``(x, y)``), ``options()``, ``maxiter`` and ``max_time``. Its state has ``nit``,
``penalty``, ``residuals`` (a NamedTuple of floats) and ``terminal`` (``""`` to continue, or the value of
the :class:`~ofmu_opt.core.result.Status` that ends the run: ``"converged"``, ``"penalized"``,
``"numerical_error"``, ``"diverged"``, ``"unbounded"``, ``"not_convex"``); ``update`` must return the
previous point with ``terminal="numerical_error"`` when a non-finite value appears. A solver may also
provide ``multipliers(state) -> dict`` (reported in the result).

A met stopping test (``terminal="converged"``) ends the run as ``CONVERGED`` only on a problem that declares
``local_is_global=True``; otherwise as ``STATIONARY`` (a stationary point, global optimality not certified).

The loop itself names divergence: when the iterate's norm exceeds ``DIVERGENCE_FACTOR`` times its starting
norm, or a non-finite value appears after the iterates grew by ``1e4``, the status is ``DIVERGED``, never a
silent ``NUMERICAL_ERROR`` at a diverged point.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from .._typing import Batch, Pair, Vec
from ..errors import OracleError
from ..problem.bilevel import BilevelProblem, with_counter
from ..problem.constraints import feasibility
from ..problem.oracles import CallCounter
from .pair import pnorm
from .result import MESSAGES, BilevelResult, IntermediateResult, Status

__all__ = ["DIVERGENCE_FACTOR", "LoopSolver", "run_solver"]

DIVERGENCE_FACTOR = 1e8
"""An iterate whose norm exceeds this factor times ``max(1, ‖(x0, y0)‖)`` has diverged."""
_CHECK_EVERY = 10
_TERMINALS = {s.value: s for s in Status if s not in (Status.MAXITER, Status.MAXTIME, Status.CALLBACK_STOP)}


class LoopSolver(Protocol):
    """What :func:`run_solver` needs from a solver (see the module docstring)."""

    @property
    def maxiter(self) -> int: ...
    @property
    def max_time(self) -> float | None: ...

    def init_state(self, problem: BilevelProblem, x0: Vec | None, y0: Vec) -> Any: ...
    def update(self, problem: BilevelProblem, state: Any, *, batch: Batch = None) -> Any: ...
    def point(self, state: Any) -> Pair: ...
    def options(self) -> dict[str, Any]: ...


def run_solver(
    solver: LoopSolver,
    problem: BilevelProblem,
    x0: Vec | None,
    y0: Vec,
    *,
    callback: Callable[[IntermediateResult], Any] | None = None,
    batches: Iterable[Batch] | None = None,
    record_history: bool = False,
    distance_fn: Callable[[Vec | None, Vec], float] | None = None,
    final_detail: Callable[[Any, Status], str] | None = None,
) -> BilevelResult:
    """Run ``solver`` on ``problem`` from ``(x0, y0)``; see :meth:`PenaltySolver.run` for the arguments."""
    counter = CallCounter()
    cp = with_counter(problem, counter)
    sp = problem.space
    t0 = time.perf_counter()
    state = solver.init_state(cp, x0, y0)
    history: list[dict[str, float]] | None = [] if record_history else None
    it: Iterator[Batch] | None = iter(batches) if batches is not None else None
    status = Status.MAXITER
    detail = ""
    start_norm = 0.0
    if not (sp.all_finite(y0) and (x0 is None or sp.all_finite(x0))):
        status, detail = Status.NUMERICAL_ERROR, " (the starting point is not finite)"
    else:
        start_norm = max(1.0, pnorm(sp, (x0, y0)))
        for _ in range(solver.maxiter):
            batch = None
            if it is not None:
                try:
                    batch = next(it)
                except StopIteration:
                    detail = " (the batch iterator ran out)"
                    break
            new = solver.update(cp, state, batch=batch)
            if new.terminal == "numerical_error":
                status = Status.NUMERICAL_ERROR
                state = state._replace(nit=new.nit)
                grown = pnorm(sp, solver.point(state))
                if not math.isfinite(grown) or grown > 1e4 * start_norm:
                    status = Status.DIVERGED
                    detail = f" (|(x, y)| grew from {start_norm:.3g} to {grown:.3g} before a non-finite value appeared)"
                break
            state = new
            if new.terminal and new.terminal != "converged":
                status = _TERMINALS.get(new.terminal, Status.NUMERICAL_ERROR)
                break
            if state.nit % _CHECK_EVERY == 0:
                grown = pnorm(sp, solver.point(state))
                if not math.isfinite(grown) or grown > DIVERGENCE_FACTOR * start_norm:
                    status, detail = Status.DIVERGED, f" (|(x, y)| grew from {start_norm:.3g} to {grown:.3g})"
                    break
            res = state.residuals._asdict()
            if history is not None:
                row = {"nit": float(state.nit), "penalty": float(state.penalty), **res}
                if distance_fn is not None:
                    px, py = solver.point(state)
                    row["distance"] = float(distance_fn(px, py))
                history.append(row)
            if callback is not None:
                try:
                    callback(IntermediateResult(state.nit, state.x, state.y, float(state.penalty), res, state))
                except StopIteration:
                    status = Status.CALLBACK_STOP
                    break
            if state.terminal == "converged":
                status = Status.CONVERGED
                break
            if solver.max_time is not None and time.perf_counter() - t0 > solver.max_time:
                status = Status.MAXTIME
                break
    x, y = solver.point(state)
    try:
        raw = cp.outer.value(x, y)
    except ArithmeticError:  # pragma: no cover - an oracle failing at the final point
        raw = math.nan
    try:
        fun = sp.to_float(raw)
    except (TypeError, ValueError) as exc:  # a string, a vector ...: a broken oracle, not a numerical fault
        raise OracleError(f"outer.value: expected a real scalar, received {raw!r} ({type(raw).__name__})") from exc
    if not math.isfinite(fun) and status is not Status.NUMERICAL_ERROR:
        status, detail = Status.NUMERICAL_ERROR, " (the outer objective is not finite at the final point)"
    if status is Status.CONVERGED and not problem.local_is_global:
        status = Status.STATIONARY  # a gradient method certifies stationarity, not global optimality
    if final_detail is not None:
        detail += final_detail(state, status)
    feas = feasibility(problem, x, y) if problem.constrained else {}
    mult_fn = getattr(solver, "multipliers", None)
    mults = dict(mult_fn(state)) if callable(mult_fn) else {}
    return BilevelResult(
        x=x, y=y, fun=fun, success=status.success, status=status, message=MESSAGES[status] + detail,
        nit=state.nit, counts=counter.snapshot(), penalty=float(state.penalty),
        residuals=state.residuals._asdict(), history=history, config=solver.options(),
        wall_time_s=time.perf_counter() - t0, feasibility=feas, multipliers=mults,
    )

"""Result vocabulary: :class:`Status` (a str enum with groups), one message table, :class:`BilevelResult`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .._typing import Vec

__all__ = ["MESSAGES", "BilevelResult", "IntermediateResult", "Status"]


class Status(enum.StrEnum):
    """Why a run ended. ``success`` means exactly :attr:`CONVERGED`: the posed problem is solved.

    A gradient method can certify only stationarity: when its stopping test is met on a problem that does not
    declare ``BilevelProblem(local_is_global=True)`` the status is :attr:`STATIONARY` (a stationary point, possibly
    a local minimum; global optimality not certified), never :attr:`CONVERGED`.

    Examples:
        >>> Status.CONVERGED.success, Status.MAXITER.group
        (True, 'limit')
    """

    CONVERGED = "converged"
    STATIONARY = "stationary"
    MAXITER = "maxiter"
    MAXTIME = "maxtime"
    CALLBACK_STOP = "callback_stop"
    NUMERICAL_ERROR = "numerical_error"
    PENALIZED = "penalized"
    DIVERGED = "diverged"
    UNBOUNDED = "unbounded"
    NOT_CONVEX = "not_convex"
    INFEASIBLE = "infeasible"

    @property
    def success(self) -> bool:
        return self is Status.CONVERGED

    @property
    def group(self) -> str:
        """``success``, ``local`` (a stationary point, global optimality not certified), ``approximate`` (a
        penalized point, not the bi-level solution), ``limit`` (iteration or time budget spent), ``stopped`` or
        ``error``."""
        return {
            Status.CONVERGED: "success",
            Status.STATIONARY: "local",
            Status.PENALIZED: "approximate",
            Status.MAXITER: "limit",
            Status.MAXTIME: "limit",
            Status.CALLBACK_STOP: "stopped",
            Status.NUMERICAL_ERROR: "error",
            Status.DIVERGED: "error",
            Status.UNBOUNDED: "error",
            Status.NOT_CONVEX: "error",
            Status.INFEASIBLE: "error",
        }[self]


MESSAGES: dict[Status, str] = {
    Status.CONVERGED: (
        "Converged: the stopping residual fell below tol, on a problem that declares its local solutions global "
        "(local_is_global=True)."
    ),
    Status.STATIONARY: (
        "Stationary: the stopping residual fell below tol, but global optimality is not certified: the problem does "
        "not declare local_is_global=True, so this may be a local minimum of the bi-level problem (ofmu_opt.multistart "
        "tries several starts; declare local_is_global=True only when every local solution is global, "
        "docs/solver_options.md)."
    ),
    Status.MAXITER: "Stopped at maxiter before the stopping residual fell below tol.",
    Status.MAXTIME: "Stopped at max_time (wall clock) before the stopping residual fell below tol.",
    Status.CALLBACK_STOP: "Stopped by the callback (StopIteration).",
    Status.NUMERICAL_ERROR: "A non-finite value appeared; the last finite iterate is returned.",
    Status.PENALIZED: (
        "Stopped at a stationary point of the penalized problem at a fixed (or capped) penalty: it is Θ(1/penalty) "
        "from the bi-level solution, not the solution itself (the continuation strategy removes the bias)."
    ),
    Status.DIVERGED: (
        "The iterates grew without bound (the step size exceeds the stability limit of the objective's curvature); "
        "the last finite iterate is returned. Lower the step size or use line_search=True."
    ),
    Status.UNBOUNDED: (
        "The penalized objective stayed unbounded below up to the largest penalty (penalty_max): the lower level (or "
        "the outer objective on the lower-level solution set) is unbounded below or not convex; the last level's start "
        "is returned."
    ),
    Status.INFEASIBLE: (
        "The lower-level constraints look infeasible at the iterate x (their multipliers grew without bound while "
        "the constraints stayed violated); the last point is returned. Restrict x with x_set to where the lower level "
        "is feasible."
    ),
    Status.NOT_CONVEX: (
        "The lower-level problem is not (strongly) convex at the iterate where the method needs it to be; the last "
        "iterate is returned."
    ),
}


@dataclass(frozen=True)
class IntermediateResult:
    """What a callback receives after every round."""

    nit: int
    x: Vec | None
    y: Vec
    penalty: float
    residuals: dict[str, float]
    state: Any


@dataclass(frozen=True)
class BilevelResult:
    """The outcome of a solver run; always the same fields.

    Attributes:
        x: outer-only variable (``None`` for simple bi-level problems).
        y: inner variable.
        fun: outer objective ``f(x, y)`` at the returned point.
        success: ``status is Status.CONVERGED``.
        status: a :class:`Status`.
        message: the status's entry of :data:`MESSAGES`, plus detail.
        nit: number of rounds (outer iterations) performed.
        counts: oracle calls, keyed ``"f_grad"``, ``"g_hvp"``, ...
        penalty: the penalty parameter at the end.
        residuals: final residuals (``outer`` = norm of the penalized gradient, ``inner`` = norm of the
            inner objective's y-gradient, ``extrapolation`` = change of the extrapolated estimate).
        history: the recorder's rows, if a recorder was used.
        config: the solver configuration as a dict.
        wall_time_s: wall-clock seconds of ``run``.
        feasibility: the max violation of each constraint at the returned point (keys ``x_set``, ``y_set``,
            ``inner_constraints``, ``outer_constraints``; empty for an unconstrained problem).
        multipliers: the final multipliers of the inequality constraints: ``inner`` (lower-level KKT multipliers
            at the inner surrogate), ``inner_feasibility`` (of ``c(x, y) ≤ 0`` in the penalized upper problem)
            and ``outer`` (of ``G(x, y) ≤ 0``); empty without inequality constraints.
    """

    x: Vec | None
    y: Vec
    fun: float
    success: bool
    status: Status
    message: str
    nit: int
    counts: dict[str, int]
    penalty: float
    residuals: dict[str, float]
    history: list[dict[str, float]] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    feasibility: dict[str, float] = field(default_factory=dict)
    multipliers: dict[str, tuple[float, ...]] = field(default_factory=dict)

r"""Continuation over penalty levels as a wrapper solver.

:class:`Continuation` drives any :class:`~ofmu_opt.core.solver.PenaltySolver`'s fixed-penalty rounds
(:meth:`~ofmu_opt.core.solver.PenaltySolver.round`) through a sequence of penalty levels
:math:`\rho_0 < \gamma\rho_0 < \gamma^2\rho_0 < \dots`:

- a level ends when its residual (the projected penalized-gradient norm) is below ``level_tol`` (default
  ``min(1e-4·tol·max(1, ‖∇F_0‖), tol·max(1, ‖∇f_0‖))``) — or, with
  low-precision oracles (float32 and below), when it has stopped improving (it sits at the round-off floor) —
  or after ``level_maxiter`` rounds (such a level cannot end the run as converged);
- at a level's end the multipliers of the penalized problem's constraints take a method-of-multipliers step,
  the level solution enters a Richardson table in :math:`h = 1/\rho` (order ``extrapolation``), and the run
  has converged when the extrapolated estimate changes by less than ``tol/2`` (relative) with the constraints
  satisfied; otherwise the next level starts, warm, at :math:`\gamma\rho`;
- when a level is unbounded below the level is restarted from its start at :math:`\gamma\rho` — a small penalty
  leaves the penalized objective unbounded below when the outer objective decreases faster than the penalty
  grows; at ``penalty_max`` the run ends with status ``unbounded``. A level counts as unbounded when two
  consecutive steps raised the iterate's norm along negative curvature of the penalized objective (the round's
  ``curvature``, the mean second derivative along the accepted step read from the line search's values, is
  negative: on a quadratic level a direction of negative curvature is a direction of unboundedness) and the norm
  exceeds ``1e2·max(1, ‖level start‖)``; when the norm exceeds ``1e6·max(1, ‖level start‖)`` whatever the
  curvature (a flat direction); or when a non-finite value appears. One such step is not enough: a single long
  line-search step can land in a far basin where the level is bounded (Outrata1990Ex1a with ``g·100``: 180× its
  start in one step). A non-convex level whose iterates stay within that radius keeps its course (measured on the
  references, rescaled or not: at most 12× the level start after a negative-curvature step, apart from that
  Outrata cell; docs/solver_options.md, "Unbounded levels");
- a level solved at ``penalty_max`` without convergence ends the run with status ``penalized``.

``PenaltySolver(strategy="continuation")`` (and :func:`~ofmu_opt.core.solver.with_continuation`, the
presets' default) delegate their ``update`` here, so the two spellings give the same iterates.

Examples:
    >>> from ofmu_opt.core.solver import gpbgd
    >>> from ofmu_opt.reference import get_reference
    >>> ref = get_reference("P3")
    >>> paper = gpbgd(strategy="paper", outer_rule="lbfgs", line_search=True)  # the level solver
    >>> res = Continuation(paper, tol=1e-6).run(ref.problem, ref.x0, ref.y0)
    >>> res.status.value, ref.distance(res.x, res.y) < 1e-5
    ('converged', True)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._config import check_range
from .._typing import Batch, Pair, Vec
from ..errors import ConfigError
from ..problem.bilevel import BilevelProblem
from ..problem.space import VectorSpace
from .loop import run_solver
from .pair import pnorm, pscale, psub
from .result import BilevelResult, IntermediateResult, Status

if TYPE_CHECKING:
    from .solver import PenaltySolver, PenaltyState

__all__ = ["Continuation", "extrapolate"]

log = logging.getLogger(__name__)

UNBOUNDED_FACTOR = 1e6
"""A level whose iterate moves this many times ``max(1, ‖level start‖)`` away is treated as unbounded below."""
NEGATIVE_CURVATURE_FACTOR = 1e2
"""A level whose iterate norm exceeds this many times ``max(1, ‖level start‖)`` after ``OUTWARD_STEPS`` consecutive
steps that each moved outward (raised the norm) along negative curvature of the penalized objective
(``PenaltyState.curvature < 0``) is treated as unbounded below."""
OUTWARD_STEPS = 2
"""Consecutive outward negative-curvature steps that, beyond ``NEGATIVE_CURVATURE_FACTOR``, make a level unbounded
(one such step is not enough: a single long line-search step can land in a far but bounded basin)."""
PATH_OFF_LEVELS = 3
"""The weighted-sum preset stops ``penalized`` after this many consecutive solved levels off the value-gap path whose
``ρ‖∇v(x)‖`` did not halve from the previous level (measured: it grows 4× per level on FSQ, stays at 25 on
Bard1988Ex1 and at 3.7e-4 on ShimizuAiyoshi1981Ex1 with g·0.01, against a claim tolerance near 1e-6; running such
runs on to ``penalty_max`` costs up to 65,000 rounds and certifies nothing)."""
STALL_ROUNDS = 50
"""Rounds without halving the level's best residual after which a low-precision level counts as solved."""


def extrapolate(
    sp: VectorSpace, order: int, point: Pair, h: float, hs: tuple[float, ...], row: tuple[Pair, ...],
    previous: Pair | None,
) -> tuple[tuple[float, ...], tuple[Pair, ...], Pair, float]:
    """Neville-Richardson extrapolation of the level solutions to h = 1/ρ → 0.

    ``row`` holds the previous level's table row; returns the new h history, the new row, the new estimate
    (the highest order available, at most ``order``) and its relative change."""
    hs_new = (*hs, h)[-(order + 1):]
    new_row: list[Pair] = [point]
    for m in range(1, min(order, len(row)) + 1):
        h_far = hs_new[-1 - m]
        denom = h_far - h
        if denom == 0.0:
            break
        # T_{j,m} = (h_{j-m} T_{j,m-1} - h_j T_{j-1,m-1}) / (h_{j-m} - h_j)
        diff = psub(sp, pscale(sp, new_row[m - 1], h_far), pscale(sp, row[m - 1], h))
        new_row.append(pscale(sp, diff, 1.0 / denom))
    estimate = new_row[-1]
    if previous is None:
        return hs_new, tuple(new_row), estimate, math.inf
    change = pnorm(sp, psub(sp, estimate, previous)) / max(1.0, pnorm(sp, estimate))
    return hs_new, tuple(new_row), estimate, change


@dataclass(frozen=True)
class Continuation:
    """Continuation over penalty levels around a penalty solver's fixed-ρ rounds (see the module docstring).

    Args:
        solver: the :class:`~ofmu_opt.core.solver.PenaltySolver` whose rounds are driven (its ``penalty`` is
            the first level's ρ).
        tol: relative change of the extrapolated estimate that ends the run (raised to ``100·eps`` of the
            oracles' dtype).
        growth: γ > 1, the penalty factor between levels.
        extrapolation: Richardson order (0 = off).
        penalty_max: the largest penalty.
        level_tol: residual that ends a level (default ``min(1e-4·tol·max(1, ‖∇F_0‖), tol·max(1, ‖∇f_0‖))``: relative
            to the first penalized gradient, capped at what a convergence claim needs).
        level_maxiter: most rounds per level.
        maxiter: most rounds in all.
        max_time: wall-clock limit in seconds.
    """

    solver: PenaltySolver
    tol: float = 1e-6
    growth: float = 4.0
    extrapolation: int = 2
    penalty_max: float = 1e8
    level_tol: float | None = None
    level_maxiter: int = 20_000
    maxiter: int = 200_000
    max_time: float | None = None

    def __post_init__(self) -> None:
        check_range("tol", self.tol, low=0.0, low_open=True)
        check_range("growth", self.growth, low=1.0, low_open=True)
        check_range("penalty_max", self.penalty_max, low=self.solver.penalty)
        if not 0 <= self.extrapolation <= 4:
            raise ConfigError(f"extrapolation: expected an order in 0..4, received {self.extrapolation}")
        if self.level_tol is not None:
            check_range("level_tol", self.level_tol, low=0.0, low_open=True)
        for name in ("level_maxiter", "maxiter"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, received {v!r}")
        if self.max_time is not None:
            check_range("max_time", self.max_time, low=0.0, low_open=True)

    @classmethod
    def of(cls, solver: PenaltySolver) -> Continuation:
        """The continuation a ``strategy="continuation"`` solver describes with its own fields."""
        return cls(
            solver=solver, tol=solver.tol, growth=max(solver.penalty_growth, 1.0 + 1e-12),
            extrapolation=solver.extrapolation,
            penalty_max=solver.penalty_max if solver.penalty_max is not None else math.inf,
            level_tol=solver.level_tol, level_maxiter=solver.level_maxiter, maxiter=solver.maxiter,
            max_time=solver.max_time,
        )

    def options(self) -> dict[str, Any]:
        return {**self.solver.options(), "strategy": "continuation", "tol": self.tol, "penalty_growth": self.growth,
                "extrapolation": self.extrapolation, "penalty_max": self.penalty_max, "level_tol": self.level_tol,
                "level_maxiter": self.level_maxiter, "maxiter": self.maxiter, "max_time": self.max_time}

    def init_state(self, problem: BilevelProblem, x0: Vec | None, y0: Vec) -> PenaltyState:
        return self.solver.init_state(problem, x0, y0)

    def point(self, state: PenaltyState) -> Pair:
        """The extrapolated estimate when extrapolating (after the first level), else the iterate."""
        if self.extrapolation and state.estimate is not None:
            return state.estimate
        return (state.x, state.y)

    def multipliers(self, state: PenaltyState) -> dict[str, tuple[float, ...]]:
        return self.solver.multipliers(state)

    def _restart_level(self, problem: BilevelProblem, state: PenaltyState, new: PenaltyState,
                       reason: str) -> PenaltyState:
        """The level at ``state.penalty`` is unbounded below: restart it from its start at a larger penalty."""
        rho = state.penalty
        anchor = state.anchor if state.anchor is not None else (state.x, state.y)
        if rho >= self.penalty_max:
            kind = "unbounded" if reason == "unbounded" else "numerical_error"
            log.info("level at penalty %.3g (penalty_max) is %s", rho, reason)
            return state._replace(x=anchor[0], y=anchor[1], terminal=kind, nit=new.nit)
        next_rho = min(rho * self.growth, self.penalty_max)
        log.info("level at penalty %.3g looks %s: restarting it at penalty %.3g", rho, reason, next_rho)
        rule = self.solver.step_rule(problem, state.eps)
        return state._replace(
            x=anchor[0], y=anchor[1], z=anchor[1], penalty=next_rho, nit=new.nit, level_iter=0,
            outer_rule=rule.init(problem.space, anchor), lipschitz=state.lipschitz * (next_rho / rho),
            best=math.inf, stall=0, prev=None, prev_grad=None, step=math.nan, theta=math.inf, terminal="", outward=0,
        )

    def update(self, problem: BilevelProblem, state: PenaltyState, *, batch: Batch = None) -> PenaltyState:
        """One fixed-penalty round of the wrapped solver, then the level logic. Pure."""
        sp = problem.space
        new = self.solver.round(problem, state, batch=batch)
        anchor = state.anchor if state.anchor is not None else (state.x, state.y)
        if new.terminal == "numerical_error":
            return self._restart_level(problem, state, new, "numerically unstable")
        if new.terminal:  # a reason the round itself names (e.g. an infeasible lower level)
            return new
        norm = pnorm(sp, (new.x, new.y))
        reach = norm / max(1.0, pnorm(sp, anchor))
        outward = state.outward + 1 if new.curvature < 0.0 and norm > pnorm(sp, (state.x, state.y)) else 0
        if reach > UNBOUNDED_FACTOR or (outward >= OUTWARD_STEPS and reach > NEGATIVE_CURVATURE_FACTOR):
            return self._restart_level(problem, state, new, "unbounded")
        rho = state.penalty
        res = new.residuals
        gnorm = res.outer
        tol = self.solver.effective_tol(new)
        f_scale = new.f_scale if math.isfinite(new.f_scale) else new.scale
        # the default level tolerance is relative to the first penalized gradient, capped at what a convergence claim
        # needs (tol·‖∇f‖, see `accurate` below): above it every level ends where no claim is possible (measured:
        # examples/02, levels ended at 1.3e-5 > 4.2e-6 and the run went to penalty_max, `penalized` after 60,216 rounds;
        # capped: `converged` in 103)
        level_tol = self.level_tol if self.level_tol is not None else min(1e-4 * self.tol * new.scale, tol * f_scale)
        level_iter = state.level_iter + 1
        best, stall = (gnorm, 0) if gnorm < 0.5 * state.best else (state.best, state.stall + 1)
        low_precision = new.eps > 1e-10
        stalled = low_precision and stall >= STALL_ROUNDS
        if not (gnorm <= level_tol or stalled or level_iter >= self.level_maxiter):
            return new._replace(level_iter=level_iter, best=best, stall=stall, anchor=anchor, outward=outward)
        if (new.nu_feas or new.nu_outer) and level_iter < self.level_maxiter:
            # a level is the saddle point of its Lagrangian: step the multipliers and keep solving the level
            # until they settle, so the level solutions stay a smooth function of 1/ρ for the extrapolation
            stepped = self.solver.updated_multipliers(problem, new)
            if self.solver.multiplier_change(new, stepped) > 1e-3 * tol:
                rule = self.solver.step_rule(problem, state.eps)
                return stepped._replace(level_iter=level_iter, best=math.inf, stall=0, anchor=anchor, outward=0,
                                        outer_rule=rule.init(sp, (new.x, new.y)), prev=None, prev_grad=None,
                                        step=math.nan, theta=math.inf)
        if level_iter >= self.level_maxiter and gnorm > level_tol:
            log.info("level %d (penalty %.3g) hit level_maxiter with residual %.3g", state.level, rho, gnorm)
        elif stalled and gnorm > level_tol:
            log.info("level %d (penalty %.3g) stalled at residual %.3g (oracle round-off)", state.level, rho, gnorm)
        point: Pair = (new.x, new.y)
        claim_tol = self.level_tol if self.level_tol is not None else tol * f_scale
        path_levels, path_gap, path_off, z = new.path_levels, new.path_gap, new.path_off, new.z
        weighted = self.solver.effective_penalty_type(problem) == "weighted_sum" and new.x is not None
        path_ok = True
        if weighted:
            # the weighted sum f + ρφ and the value gap f + ρ(φ − v) differ in their gradients by exactly ρ∇v(x): a
            # weighted-sum level point with ρ‖∇v(x)‖ within the claim tolerance is a value-gap level point too, and
            # only a run of such levels extrapolates to what the value-gap continuation certifies (the bi-level
            # solution); elsewhere the weights' limit minimizes f over the joint minimizers of φ instead
            dv, z = self.solver.value_function_gradient(problem, new.x, new.z, rho=rho, tol=1e-3 * claim_tol,
                                                               batch=batch)
            gap = rho * sp.to_float(sp.norm(dv)) if dv is not None else 0.0
            path_ok = gnorm + gap <= claim_tol or (stalled and gap <= claim_tol)
            # a solved level off the path whose ρ‖∇v‖ did not even halve: the certificate needs it to fall from there
            # to the claim tolerance; PATH_OFF_LEVELS such levels in a row end the run
            not_halving = (not path_ok and not (gnorm > level_tol and not stalled) and math.isfinite(path_gap)
                           and gap > 0.5 * path_gap)
            path_off = path_off + 1 if not_halving else 0
            path_levels = path_levels + 1 if path_ok else 0
            path_gap = gap
            if not path_ok:
                log.info("level %d (penalty %.3g): weighted-sum point off the value-gap path, rho*|grad v| = %.3g",
                         state.level, rho, gap)
        level_h, level_row, estimate, extrap = extrapolate(
            sp, self.extrapolation, point, 1.0 / rho, new.level_h, new.level_row, new.estimate
        )
        feasible = not (res.feasibility > max(tol, 1e-8))
        terminal = ""
        # two levels at the same penalty (penalty_max) extrapolate nothing: their agreement is not convergence
        repeated = len(level_h) >= 2 and level_h[-1] == level_h[-2]
        # a level cut off by level_maxiter is not a level solution: slow progress is not agreement
        unsolved = gnorm > level_tol and not stalled
        # the level tolerance is relative to the first penalized gradient, which a large penalty term can inflate
        # far above the outer objective's own gradient (measured: P2 with g·100, levels ended at residual 8e-3 and
        # agreed with each other 1.9e-4 from the solution): claim convergence only from a level whose residual is
        # also small relative to ‖∇f‖ (or at the round-off floor of low-precision oracles)
        accurate = self.level_tol is not None or stalled or gnorm <= tol * f_scale
        # the weighted-sum preset: the levels that enter the current and the previous estimate are all on the path
        on_path = not weighted or (path_ok and path_levels >= min(state.level + 1, self.extrapolation + 2))
        if (math.isfinite(extrap) and extrap <= 0.5 * tol and feasible and not repeated and not unsolved and accurate
                and on_path):
            terminal = "converged"
        elif rho >= self.penalty_max or path_off >= PATH_OFF_LEVELS:
            terminal = "penalized"
        next_rho = min(rho * self.growth, self.penalty_max)
        rule = self.solver.step_rule(problem, state.eps)
        return new._replace(
            penalty=next_rho, level=state.level + 1, level_iter=0, level_h=level_h, level_row=level_row,
            estimate=estimate, residuals=res._replace(extrapolation=extrap), terminal=terminal,
            outer_rule=rule.init(sp, point), lipschitz=new.lipschitz * (next_rho / rho), anchor=point,
            best=math.inf, stall=0, prev=None, prev_grad=None, step=math.nan, theta=math.inf, outward=0,
            z=z, path_levels=path_levels, path_gap=path_gap, path_off=path_off,
        )

    def run(
        self, problem: BilevelProblem, x0: Vec | None, y0: Vec, *,
        callback: Callable[[IntermediateResult], Any] | None = None, batches: Iterable[Batch] | None = None,
        record_history: bool = False, distance_fn: Callable[[Vec | None, Vec], float] | None = None,
    ) -> BilevelResult:
        """Run levels until converged or a limit; never raises for non-convergence."""
        return run_solver(self, problem, x0, y0, callback=callback, batches=batches,
                          record_history=record_history, distance_fn=distance_fn, final_detail=self.final_detail)

    def final_detail(self, state: PenaltyState, status: Status) -> str:
        if status is Status.PENALIZED and state.path_levels == 0 and math.isfinite(state.path_gap):
            return (" Here continuation does not remove it: this is the weighted-sum (scalarized) baseline in "
                    "continuation over its weight, and its level points are off the value-gap penalty's path "
                    f"(ρ‖∇v(x)‖ = {state.path_gap:.3g} at the last level, above the claim tolerance), so nothing "
                    "certifies that the weights' limit (the minimizer of f over the joint minimizers of the "
                    "lower-level objective) is the bi-level solution; no convergence is claimed.")
        if status is Status.UNBOUNDED and self.solver.penalty_type == "weighted_sum":
            return (" For the weighted-sum (scalarized) baseline this usually means the lower-level objective is "
                    "unbounded below jointly in (x, y) (each lower level can be bounded for fixed x while f + weight·φ "
                    "is not): the baseline does not apply to this problem.")
        if status is Status.PENALIZED:
            f_scale = state.f_scale if math.isfinite(state.f_scale) else state.scale
            if state.residuals.outer > self.tol * f_scale:
                return (f" Final penalty {state.penalty:.3g} = penalty_max: the levels ended at residual "
                        f"{state.residuals.outer:.3g}, above tol·‖∇f‖ = {self.tol * f_scale:.3g} (the level "
                        "tolerance is relative to the first penalized gradient, which the penalty term dominates "
                        "here); set level_tol to a smaller value.")
            return (f" Final penalty {state.penalty:.3g} = penalty_max: the levels did not settle before the "
                    "largest penalty.")
        if status in (Status.MAXITER, Status.MAXTIME):
            return (f" Level {state.level} at penalty {state.penalty:.3g}; residual {state.residuals.outer:.3g}, "
                    f"estimate change {state.residuals.extrapolation:.3g}.")
        return ""

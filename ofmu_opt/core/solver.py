r"""The generic penalty-based bi-level solver and its presets.

One frozen dataclass, :class:`PenaltySolver`, holds every hyper-parameter of OFMU_SPEC.md §2; the
functions :func:`ofmu`, :func:`gpbgd`, :func:`vpbgd` and :func:`scalarized` return configured instances.
``init_state`` / ``update`` are pure; ``run`` only loops, and anyone can write the loop by hand.

One round (``update``), with φ the inner objective in minimization form (see :mod:`ofmu_opt.core.inner`):

1. momentum look-ahead ``(x̄, ȳ)`` of the outer step rule (identity for ``sgd``/``adam``);
2. inner loop, when its result is used: ``T`` steps ``z ← z − η_in ∇_y φ(x̄, z)`` from ``ȳ``
   (``stationarity``) or from the warm-started surrogate (``value_gap``);
3. the penalized gradient at the evaluation point ``q`` (``base``: ``outer`` q = (x̄, ȳ); ``inner``
   q = (x̄, z) and the step starts there; ``extragradient`` q = (x̄, z) but the step starts from (x̄, ȳ)):

   - ``stationarity``: :math:`F = f + \rho\|\nabla_y\varphi\|^2`,
     :math:`\nabla F = \nabla f + 2\rho\,\nabla^2\varphi\,\nabla_y\varphi`;
   - ``value_gap``: :math:`F = f + \rho(\varphi(x,y) - \varphi(x,z))` with ``z`` the surrogate of
     :math:`\arg\min_z \varphi(x, z)`,
     :math:`\nabla_x F = \nabla_x f + \rho(\nabla_x\varphi(x,y) - \nabla_x\varphi(x,z))`;
   - ``weighted_sum``: :math:`F = f + \rho\,\varphi` (the scalarized baseline);
4. the outer step (``sgd``, ``adam``, ``nesterov``; optional backtracking line search; optional division
   of the step by ρ);
5. the penalty update: ``strategy="paper"`` applies the schedule every round; ``strategy="continuation"``
   keeps ρ until the level is solved (``‖∇F‖ ≤ level_tol``), warm-starts the next level at ``γρ`` and
   optionally extrapolates the level solutions to ``1/ρ → 0`` (Richardson, order ``extrapolation``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from .._config import check_choice, check_range, config_to_dict
from .._typing import Batch, Pair, Vec
from ..errors import ConfigError, OracleError, ProblemSpecError
from ..problem.bilevel import BilevelProblem
from ..problem.space import VectorSpace
from .inner import InnerObjective, InnerSpec, make_inner
from .loop import run_solver
from .pair import paxpy, pfinite, pnorm, pscale, psub
from .result import BilevelResult, IntermediateResult, Status
from .schedules import SCHEDULES, next_penalty
from .similarity import SIMILARITY_KINDS
from .steps import STEP_RULES, Nesterov, get_step_rule

__all__ = [
    "PenaltySolver",
    "PenaltyState",
    "RoundBatches",
    "gpbgd",
    "ofmu",
    "scalarized",
    "vpbgd",
    "with_continuation",
]

log = logging.getLogger(__name__)

PENALTY_TYPES = ("stationarity", "value_gap", "weighted_sum")
HVP_MODES = ("exact", "finite_difference", "forget_hessian")
BASES = ("auto", "inner", "outer", "extragradient")
STRATEGIES = ("paper", "continuation")


@dataclass(frozen=True)
class RoundBatches:
    """Mini-batches for one round: one per inner step and one for the outer step."""

    inner: tuple[Batch, ...]
    outer: Batch


class Residuals(NamedTuple):
    outer: float
    inner: float
    extrapolation: float


class PenaltyState(NamedTuple):
    """Solver state; never mutated, same fields every round."""

    x: Vec | None
    y: Vec
    z: Vec
    penalty: float
    nit: int
    outer_rule: Any
    inner_rule: Any
    lipschitz: float
    level: int
    level_iter: int
    level_h: tuple[float, ...]
    level_row: tuple[Pair, ...]
    estimate: Pair | None
    residuals: Residuals
    scale: float
    terminal: str


def _batches(batch: Batch, t: int) -> tuple[Batch, Batch]:
    if isinstance(batch, RoundBatches):
        if not batch.inner:
            return None, batch.outer
        return batch.inner[t % len(batch.inner)], batch.outer
    return batch, batch


@dataclass(frozen=True)
class PenaltySolver:
    """Penalty-based bi-level solver (OFMU, G-PBGD, V-PBGD and a scalarized baseline as presets).

    Args:
        penalty_type: ``stationarity`` (OFMU, ``‖∇_y φ‖²``), ``value_gap`` (V-PBGD) or ``weighted_sum``.
        similarity: ``signed`` | ``abs`` | ``squared`` | ``none``; the similarity-aware inner term.
        beta: weight β ≥ 0 of the similarity term.
        sim_eps: ε in the cosine's denominator.
        hvp: ``exact`` | ``finite_difference`` | ``forget_hessian``: how ``∇²φ·v`` is obtained.
        fd_step: relative step of finite differences.
        base: ``auto`` (``inner`` without x, ``outer`` with x), ``inner``, ``outer`` or ``extragradient``.
        inner_steps: T, inner steps per round.
        inner_lr: inner step size.
        inner_rule: ``sgd`` or ``adam``.
        outer_lr: outer step size (divided by ρ when ``scale_step_by_penalty``).
        outer_rule: ``sgd``, ``adam`` or ``nesterov``.
        line_search: backtracking (Armijo) on the penalized objective; ``outer_lr`` is then the first
            trial step.
        penalty: initial penalty ρ0 > 0 (the weight, for ``weighted_sum``).
        schedule: ``geometric`` | ``linear`` | ``constant``.
        penalty_growth: γ ≥ 1 of the geometric schedule and of continuation levels.
        penalty_max: cap on ρ (required by ``linear``).
        ramp_steps: rounds of the linear ramp.
        scale_step_by_penalty: divide the outer step by ρ.
        strategy: ``paper`` (schedule every round) or ``continuation`` (advance ρ when a level is solved).
        level_tol: residual that ends a continuation level (default ``1e-4·tol·max(1, ‖∇F_0‖)``).
        level_maxiter: most rounds per level.
        inner_tol: if set, the inner loop continues past ``inner_steps`` until ``‖∇_y φ‖ ≤ inner_tol/ρ``
            (at most ``inner_maxiter`` steps): a penalty method's inner accuracy must scale like 1/ρ.
        inner_maxiter: cap on inner steps when ``inner_tol`` is set.
        extrapolation: Richardson order over levels in ``1/ρ`` (0 = off; continuation only).
        tol: stopping tolerance (relative change of the extrapolated estimate or, for ``paper``, the
            penalized gradient norm relative to its first value).
        maxiter: most rounds.
        max_time: wall-clock limit in seconds.
        adam_b1: Adam's first-moment decay.
        adam_b2: Adam's second-moment decay.
        adam_eps: Adam's denominator offset.
        allow_inner_base_with_x: permit ``base="inner"`` when an outer-only variable x exists. It converges
            to a wrong point (OFMU_SPEC.md §2); only for experiments that demonstrate this.

    Examples:
        >>> from ofmu_opt.reference import get_reference
        >>> ref = get_reference("P3")
        >>> res = with_continuation(gpbgd(), tol=1e-6).run(ref.problem, ref.x0, ref.y0)
        >>> res.success, ref.distance(res.x, res.y) < 1e-5
        (True, True)
    """

    penalty_type: Literal["stationarity", "value_gap", "weighted_sum"] = "stationarity"
    similarity: Literal["signed", "abs", "squared", "none"] = "none"
    beta: float = 0.0
    sim_eps: float = 1e-8
    hvp: Literal["exact", "finite_difference", "forget_hessian"] = "exact"
    fd_step: float = 1e-6
    base: Literal["auto", "inner", "outer", "extragradient"] = "auto"
    inner_steps: int = 1
    inner_lr: float = 0.1
    inner_rule: Literal["sgd", "adam"] = "sgd"
    outer_lr: float = 0.1
    outer_rule: Literal["sgd", "adam", "nesterov"] = "sgd"
    line_search: bool = False
    penalty: float = 1.0
    schedule: Literal["geometric", "linear", "constant"] = "constant"
    penalty_growth: float = 1.0
    penalty_max: float | None = None
    ramp_steps: int = 100
    scale_step_by_penalty: bool = False
    strategy: Literal["paper", "continuation"] = "paper"
    level_tol: float | None = None
    level_maxiter: int = 100_000
    inner_tol: float | None = None
    inner_maxiter: int = 1000
    extrapolation: int = 0
    tol: float = 1e-6
    maxiter: int = 1000
    max_time: float | None = None
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    allow_inner_base_with_x: bool = False
    name: str = field(default="penalty", compare=False)

    def __post_init__(self) -> None:
        check_choice("penalty_type", self.penalty_type, PENALTY_TYPES)
        check_choice("similarity", self.similarity, SIMILARITY_KINDS)
        check_choice("hvp", self.hvp, HVP_MODES)
        check_choice("base", self.base, BASES)
        check_choice("inner_rule", self.inner_rule, ("sgd", "adam"))
        check_choice("outer_rule", self.outer_rule, STEP_RULES)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_range("beta", self.beta, low=0.0)
        check_range("sim_eps", self.sim_eps, low=0.0)
        check_range("fd_step", self.fd_step, low=0.0, low_open=True)
        check_range("inner_lr", self.inner_lr, low=0.0, low_open=True)
        check_range("outer_lr", self.outer_lr, low=0.0, low_open=True)
        check_range("penalty", self.penalty, low=0.0, low_open=True)
        check_range("penalty_growth", self.penalty_growth, low=1.0)
        check_range("tol", self.tol, low=0.0, low_open=True)
        for name in ("inner_steps", "maxiter", "ramp_steps", "level_maxiter", "extrapolation", "inner_maxiter"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{name}: expected an integer, received {v!r}")
        if self.inner_steps < 0:
            raise ConfigError(f"inner_steps: expected an integer >= 0, received {self.inner_steps}")
        if self.inner_tol is not None:
            check_range("inner_tol", self.inner_tol, low=0.0, low_open=True)
        for name in ("maxiter", "ramp_steps", "level_maxiter", "inner_maxiter"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, received {getattr(self, name)}")
        if not 0 <= self.extrapolation <= 4:
            raise ConfigError(f"extrapolation: expected an order in 0..4, received {self.extrapolation}")
        if self.penalty_max is not None:
            check_range("penalty_max", self.penalty_max, low=self.penalty)
        if self.schedule == "linear" and self.penalty_max is None:
            raise ConfigError("penalty_max: the linear schedule needs a final penalty, received None")
        if self.level_tol is not None:
            check_range("level_tol", self.level_tol, low=0.0, low_open=True)
        if self.max_time is not None:
            check_range("max_time", self.max_time, low=0.0, low_open=True)
        for name in ("adam_b1", "adam_b2"):
            check_range(name, getattr(self, name), low=0.0, high=1.0, high_open=True)
        check_range("adam_eps", self.adam_eps, low=0.0, low_open=True)
        if self.penalty_type == "value_gap" and self.base in ("inner", "extragradient"):
            raise ConfigError(
                f"base: {self.base!r} cannot be combined with penalty_type='value_gap', whose inner result is "
                "its surrogate; expected 'outer' or 'auto'"
            )
        if self.penalty_type == "value_gap" and self.inner_steps < 1:
            raise ConfigError("inner_steps: the value-gap penalty needs >= 1 inner step to track its surrogate")
        if self.line_search and self.base == "extragradient":
            raise ConfigError("line_search: not available with base='extragradient' (the step and the gradient "
                              "are taken at different points)")
        if self.extrapolation and self.strategy != "continuation":
            raise ConfigError("extrapolation: needs strategy='continuation' (it extrapolates across levels)")

    # ------------------------------------------------------------------ helpers
    def options(self) -> dict[str, Any]:
        """The configuration as a plain dict (stored with every result)."""
        return config_to_dict(self)

    def replace(self, **changes: Any) -> PenaltySolver:
        """A copy with ``changes`` applied (validated)."""
        fields = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in fields:
                valid = ", ".join(sorted(fields))
                raise ConfigError(f"unknown option {key!r} for PenaltySolver; valid options: {valid}")
        return dataclasses.replace(self, **changes)

    def resolved_base(self, problem: BilevelProblem) -> str:
        """The base actually used: ``auto`` is ``inner`` without x and ``outer`` with x."""
        if self.base == "auto":
            return "outer" if (problem.has_x or self.penalty_type != "stationarity") else "inner"
        if self.base == "inner" and problem.has_x and not self.allow_inner_base_with_x:
            raise ConfigError(
                "base: 'inner' with an outer-only variable x converges to a wrong point (resetting y to the "
                "inner result erases the offset through which the penalty carries the hyper-gradient to x; "
                "see docs/solver_options.md); expected 'outer' or 'auto'"
            )
        return self.base

    def inner_spec(self, problem: BilevelProblem) -> InnerSpec:
        return InnerSpec(self.similarity, self.beta, self.sim_eps, self.hvp, self.fd_step, problem.sign)

    def inner_objective(self, problem: BilevelProblem) -> InnerObjective:
        return make_inner(problem, self.inner_spec(problem))

    # ------------------------------------------------------------------ state
    def init_state(self, problem: BilevelProblem, x0: Vec | None, y0: Vec) -> PenaltyState:
        """Validate the problem and the starting point and return the initial state.

        Raises:
            ProblemSpecError: ``x0`` given for a problem without x (or missing for one with x).
            OracleError: an oracle returned a gradient of the wrong shape.
            ConfigError: an option is incompatible with the problem.
        """
        sp = problem.space
        if problem.has_x and x0 is None:
            raise ProblemSpecError("x0: the problem has an outer variable x; expected a starting point, received None")
        if not problem.has_x and x0 is not None:
            raise ProblemSpecError("x0: the problem has no outer variable x; expected None, received a vector")
        self.resolved_base(problem)
        self.inner_objective(problem)
        for label, obj in (("outer", problem.outer), ("inner", problem.inner)):
            got = obj.grad(x0, y0)
            if not (isinstance(got, tuple) and len(got) == 2):
                raise OracleError(f"{label}.grad: expected a pair (grad_x, grad_y), received {type(got).__name__}")
            gx, gy = got
            if not sp.same_shape(gy, y0):
                raise OracleError(
                    f"{label}.grad: y-gradient has shape {sp.describe(gy)}, expected the shape of y0 {sp.describe(y0)}"
                )
            if x0 is not None and (gx is None or not sp.same_shape(gx, x0)):
                got_desc = "None" if gx is None else sp.describe(gx)
                raise OracleError(
                    f"{label}.grad: x-gradient has shape {got_desc}, expected the shape of x0 {sp.describe(x0)}"
                )
        p0 = (x0, y0)
        inner_rule = get_step_rule(self.inner_rule, b1=self.adam_b1, b2=self.adam_b2, eps=self.adam_eps)
        outer_rule = get_step_rule(self.outer_rule, b1=self.adam_b1, b2=self.adam_b2, eps=self.adam_eps)
        nan = math.nan
        return PenaltyState(
            x=x0, y=y0, z=y0, penalty=float(self.penalty), nit=0,
            outer_rule=outer_rule.init(sp, p0), inner_rule=inner_rule.init(sp, p0),
            lipschitz=1.0 / self.outer_lr, level=0, level_iter=0, level_h=(), level_row=(),
            estimate=None, residuals=Residuals(nan, nan, nan), scale=nan, terminal="",
        )

    # ------------------------------------------------------------------ pieces of a round
    def _inner_loop(
        self, problem: BilevelProblem, inner: InnerObjective, x: Vec | None, start: Vec, rstate: Any, batch: Batch,
        rho: float,
    ) -> tuple[Vec, Any]:
        sp = problem.space
        rule = get_step_rule(self.inner_rule, b1=self.adam_b1, b2=self.adam_b2, eps=self.adam_eps)
        z = start
        limit = self.inner_steps if self.inner_tol is None else max(self.inner_steps, self.inner_maxiter)
        target = math.inf if self.inner_tol is None else self.inner_tol / rho
        for t in range(limit):
            b_in, _ = _batches(batch, t)
            _, gz = inner.grad(x, z, batch=b_in)
            if t >= self.inner_steps and sp.to_float(sp.norm(gz)) <= target:
                break
            (_, z), rstate = rule.apply(sp, (None, z), (None, gz), self.inner_lr, rstate)
        return z, rstate

    def _penalized(
        self, problem: BilevelProblem, inner: InnerObjective, q: Pair, z: Vec, rho: float, batch: Batch,
        need_value: bool,
    ) -> tuple[Pair, float, float]:
        """Return (∇F(q), F(q) or nan, ‖∇_y φ(q)‖)."""
        sp = problem.space
        x, y = q
        fg = problem.outer.grad(x, y, batch=batch)
        value = math.nan
        if self.penalty_type == "stationarity":
            joint = getattr(inner, "grad_and_hvp", None)
            if joint is not None:  # ∇φ and ∇²φ∇φ from one graph (torch, exact HVP by double backward)
                (_, v), hv = joint(x, y, batch=batch)
            else:
                _, v = inner.grad(x, y, batch=batch)
                hv = inner.hvp(x, y, v, batch=batch)
            grad = paxpy(sp, 2.0 * rho, hv, fg)
            vn = sp.to_float(sp.norm(v))
            if need_value:
                value = sp.to_float(problem.outer.value(x, y, batch=batch)) + rho * vn * vn
            return grad, value, vn
        gq = inner.grad(x, y, batch=batch)
        vn = sp.to_float(sp.norm(gq[1]))
        if self.penalty_type == "weighted_sum":
            if need_value:
                value = sp.to_float(problem.outer.value(x, y, batch=batch)) + rho * sp.to_float(
                    inner.value(x, y, batch=batch)
                )
            return paxpy(sp, rho, gq, fg), value, vn
        # value gap: the surrogate z stands for argmin_z φ(x, z); Danskin's theorem for the x-part
        gx = None
        if x is not None:
            gzx, _ = inner.grad(x, z, batch=batch)
            gx = sp.axpy(rho, sp.sub(gq[0], gzx), fg[0])
        gy = sp.axpy(rho, gq[1], fg[1])
        if need_value:
            value = sp.to_float(problem.outer.value(x, y, batch=batch)) + rho * (
                sp.to_float(inner.value(x, y, batch=batch)) - sp.to_float(inner.value(x, z, batch=batch))
            )
        return (gx, gy), value, vn

    def _objective_value(
        self, problem: BilevelProblem, inner: InnerObjective, q: Pair, z: Vec, rho: float, batch: Batch
    ) -> float:
        sp = problem.space
        x, y = q
        f = sp.to_float(problem.outer.value(x, y, batch=batch))
        if self.penalty_type == "stationarity":
            _, v = inner.grad(x, y, batch=batch)
            return f + rho * sp.to_float(sp.norm(v)) ** 2
        if self.penalty_type == "weighted_sum":
            return f + rho * sp.to_float(inner.value(x, y, batch=batch))
        # the value gap's min_z φ(x, z) moves with x: refit the warm-started surrogate at the candidate,
        # otherwise the model is linear in x and the line search underestimates the curvature
        zc, _ = self._inner_loop(problem, inner, x, z, get_step_rule(self.inner_rule).init(sp, (None, z)), batch, rho)
        return f + rho * (sp.to_float(inner.value(x, y, batch=batch)) - sp.to_float(inner.value(x, zc, batch=batch)))

    # ------------------------------------------------------------------ one round
    def update(self, problem: BilevelProblem, state: PenaltyState, *, batch: Batch = None) -> PenaltyState:
        """One round: inner loop, one outer step, penalty update. Pure: returns a new state.

        A non-finite value leaves the iterate unchanged and sets ``terminal="numerical_error"``.
        """
        sp = problem.space
        inner = self.inner_objective(problem)
        base = self.resolved_base(problem)
        rho = state.penalty
        outer_rule = get_step_rule(self.outer_rule, b1=self.adam_b1, b2=self.adam_b2, eps=self.adam_eps)
        current: Pair = (state.x, state.y)
        look = outer_rule.lookahead(sp, current, state.outer_rule)
        xb, yb = look
        _, b_out = _batches(batch, 0)

        z, inner_rule_state = state.z, state.inner_rule
        if self.penalty_type == "value_gap" or base in ("inner", "extragradient"):
            start = state.z if self.penalty_type == "value_gap" else yb
            if self.penalty_type != "value_gap":
                inner_rule_state = get_step_rule(self.inner_rule).init(sp, (None, start))
            z, inner_rule_state = self._inner_loop(problem, inner, xb, start, inner_rule_state, batch, rho)
        q: Pair = (xb, z) if base in ("inner", "extragradient") else look
        frm: Pair = q if base == "inner" else look

        grad, fq, vn = self._penalized(problem, inner, q, z, rho, b_out, need_value=self.line_search)
        gnorm = pnorm(sp, grad)
        if not (math.isfinite(gnorm) and math.isfinite(vn) and pfinite(sp, grad) and sp.all_finite(z)):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)

        scale = state.scale if math.isfinite(state.scale) else max(1.0, gnorm)
        lr = self.outer_lr
        if self.scale_step_by_penalty and self.penalty_type != "weighted_sum":
            lr = lr / rho
        lipschitz = state.lipschitz
        if self.line_search:
            # Armijo backtracking; below round-off (predicted decrease < 1e-12 |F|) the test carries no
            # information, so the last accepted constant is kept instead of being doubled on noise
            # base='inner' converges to a fixed point that depends on the step, so there the step may only
            # shrink within a level (it then settles); elsewhere it may also grow again
            L = lipschitz if base == "inner" else max(lipschitz / 1.5, 1e-12)
            for _ in range(60):
                decrease = 0.5 * gnorm * gnorm / L
                if decrease < 1e-12 * max(1.0, abs(fq)):
                    L = max(L, lipschitz)
                    break
                cand = paxpy(sp, -1.0 / L, grad, frm)
                fc = self._objective_value(problem, inner, cand, z, rho, b_out)
                if math.isfinite(fc) and fc <= fq - decrease:
                    break
                L *= 2.0
            lipschitz, lr = L, 1.0 / L
        new, rule_state = outer_rule.apply(sp, frm, grad, lr, state.outer_rule)
        if isinstance(outer_rule, Nesterov):
            rule_state = outer_rule.commit(sp, current, new, grad, rule_state)
        if not pfinite(sp, new):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)
        # fixed-point residual of the round: equals ‖∇F(q)‖ for a gradient step from the look-ahead point, and
        # is the right quantity for base='inner', whose fixed point is not a stationary point of F
        gnorm = pnorm(sp, psub(sp, new, look)) / lr

        nit = state.nit + 1
        extrap = state.residuals.extrapolation
        level, level_iter = state.level, state.level_iter + 1
        level_h, level_row, estimate = state.level_h, state.level_row, state.estimate
        terminal = ""
        next_rho = rho
        if self.strategy == "paper":
            next_rho = next_penalty(
                self.schedule, rho, nit, growth=self.penalty_growth, cap=self.penalty_max,
                start=self.penalty, ramp_steps=self.ramp_steps,
            )
            if gnorm <= self.tol * scale:
                terminal = "converged"
        else:
            level_tol = self.level_tol if self.level_tol is not None else 1e-4 * self.tol * scale
            if gnorm <= level_tol or level_iter >= self.level_maxiter:
                if level_iter >= self.level_maxiter and gnorm > level_tol:
                    log.info("level %d (penalty %.3g) hit level_maxiter with residual %.3g", level, rho, gnorm)
                level_h, level_row, estimate, extrap = self._extrapolate(
                    sp, new, 1.0 / rho, level_h, level_row, estimate
                )
                if math.isfinite(extrap) and extrap <= 0.5 * self.tol:
                    terminal = "converged"
                level, level_iter = level + 1, 0
                cap = self.penalty_max if self.penalty_max is not None else math.inf
                next_rho = min(rho * self.penalty_growth, cap)
                rule_state = outer_rule.init(sp, new)
                lipschitz = lipschitz * (next_rho / rho)
        return PenaltyState(
            x=new[0], y=new[1], z=z, penalty=next_rho, nit=nit, outer_rule=rule_state,
            inner_rule=inner_rule_state, lipschitz=lipschitz, level=level, level_iter=level_iter,
            level_h=level_h, level_row=level_row, estimate=estimate,
            residuals=Residuals(gnorm, vn, extrap), scale=scale, terminal=terminal,
        )

    def _extrapolate(
        self, sp: VectorSpace, point: Pair, h: float, hs: tuple[float, ...], row: tuple[Pair, ...],
        previous: Pair | None,
    ) -> tuple[tuple[float, ...], tuple[Pair, ...], Pair, float]:
        """Neville-Richardson extrapolation of the level solutions to h = 1/ρ → 0.

        ``row`` holds the previous level's table row; returns the new h history, the new row, the new
        estimate (the highest order available, at most ``extrapolation``) and its relative change."""
        order = self.extrapolation
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

    # ------------------------------------------------------------------ the loop
    def run(
        self,
        problem: BilevelProblem,
        x0: Vec | None,
        y0: Vec,
        *,
        callback: Callable[[IntermediateResult], Any] | None = None,
        batches: Iterable[Batch] | None = None,
        record_history: bool = False,
        distance_fn: Callable[[Vec | None, Vec], float] | None = None,
    ) -> BilevelResult:
        """Run rounds until converged, ``maxiter``, ``max_time``, a callback's StopIteration or a fault.

        Args:
            problem: the bi-level problem.
            x0: starting outer variable (``None`` for simple bi-level problems).
            y0: starting inner variable.
            callback: called with an :class:`IntermediateResult` after every round; raising
                ``StopIteration`` ends the run with status ``CALLBACK_STOP``.
            batches: an iterable of per-round batches (``None``: full objectives).
            record_history: keep a row of residuals per round in ``result.history``.
            distance_fn: optional ``(x, y) -> float`` recorded in the history (e.g. distance to a known
                solution).

        Returns:
            A :class:`BilevelResult`; never raises for non-convergence.
        """
        return run_solver(
            self, problem, x0, y0, callback=callback, batches=batches, record_history=record_history,
            distance_fn=distance_fn, final_detail=self._final_detail,
        )

    def _final_detail(self, state: PenaltyState, status: Status) -> str:
        if status is not Status.CONVERGED and self.strategy == "paper":
            return f" Final penalty {state.penalty:.3g}: the penalized solution is Θ(1/penalty) from the bi-level one."
        return ""

    def point(self, state: PenaltyState) -> Pair:
        """The point a run returns: the extrapolated estimate when extrapolating, else the iterate."""
        return self._point(state)

    def _point(self, state: PenaltyState) -> Pair:
        if self.extrapolation and state.estimate is not None:
            return state.estimate
        return (state.x, state.y)


# ---------------------------------------------------------------------- presets
def _preset(defaults: dict[str, Any], overrides: dict[str, Any], name: str) -> PenaltySolver:
    opts = {**defaults, **overrides}
    fields = {f.name for f in dataclasses.fields(PenaltySolver)}
    unknown = sorted(set(opts) - fields)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} for {name}(); valid options: {', '.join(sorted(fields))}")
    return PenaltySolver(name=name, **opts)


def ofmu(**options: Any) -> PenaltySolver:
    """OFMU (the paper's two-loop algorithm): stationarity penalty, signed-cosine similarity (β = 0.1),
    exact HVPs, base ``auto`` (the paper's ``inner`` when there is no outer-only variable), T = 5 inner
    steps, geometric penalty schedule (γ = 1.05, capped at 100) with steps divided by ρ.

    Examples:
        >>> ofmu(beta=0.0).beta
        0.0
    """
    return _preset(
        dict(penalty_type="stationarity", similarity="signed", beta=0.1, hvp="exact", base="auto",
             inner_steps=5, inner_lr=0.1, outer_lr=0.1, penalty=1.0, schedule="geometric",
             penalty_growth=1.05, penalty_max=100.0, scale_step_by_penalty=True),
        options, "ofmu",
    )


def gpbgd(**options: Any) -> PenaltySolver:
    """G-PBGD: the stationarity (gradient-norm) penalty without similarity term, constant ρ = 10, base
    ``outer``, step divided by ρ.

    Examples:
        >>> gpbgd().penalty_type
        'stationarity'
    """
    return _preset(
        dict(penalty_type="stationarity", similarity="none", beta=0.0, base="outer", inner_steps=0,
             penalty=10.0, schedule="constant", outer_lr=0.1, scale_step_by_penalty=True),
        options, "gpbgd",
    )


def vpbgd(**options: Any) -> PenaltySolver:
    """V-PBGD: the value-gap penalty ``ρ(g(x,y) − g(x,z))`` with a warm-started surrogate ``z`` updated by
    T = 5 inner steps per round; needs no Hessian.

    Examples:
        >>> vpbgd().penalty_type
        'value_gap'
    """
    return _preset(
        dict(penalty_type="value_gap", similarity="none", beta=0.0, base="outer", inner_steps=5,
             penalty=10.0, schedule="constant", inner_lr=0.1, outer_lr=0.1, scale_step_by_penalty=True),
        options, "vpbgd",
    )


def scalarized(weight: float = 1.0, **options: Any) -> PenaltySolver:
    """The weighted-sum baseline ``min f + weight·φ`` that OFMU argues against: biased by construction
    (its minimizer is not the bi-level solution for any finite weight unless the two levels agree).

    Examples:
        >>> scalarized(0.5).penalty
        0.5
    """
    return _preset(
        dict(penalty_type="weighted_sum", similarity="none", beta=0.0, base="outer", inner_steps=0,
             penalty=weight, schedule="constant", outer_lr=0.1),
        options, "scalarized",
    )


def with_continuation(
    solver: PenaltySolver, *, tol: float = 1e-6, growth: float = 4.0, extrapolation: int = 2,
    penalty_max: float = 1e8, maxiter: int = 200_000,
) -> PenaltySolver:
    """Turn ``solver`` into an accurate solver: continuation over penalty levels (warm starts),
    Nesterov steps with backtracking, and Richardson extrapolation in 1/ρ.

    Fixed-step penalty descent needs O(ρ) iterations per penalty level; this modifier is how the
    presets reach 1e-6 relative accuracy (the presets' own defaults stay the papers' algorithms).

    Examples:
        >>> with_continuation(gpbgd(), tol=1e-6).strategy
        'continuation'
    """
    changes: dict[str, Any] = dict(
        strategy="continuation", extrapolation=extrapolation, penalty_growth=growth,
        penalty_max=max(penalty_max, solver.penalty), line_search=True, outer_rule="nesterov",
        scale_step_by_penalty=False, tol=tol, maxiter=maxiter, schedule="constant", level_maxiter=20_000,
    )
    if solver.base == "extragradient":
        changes["base"] = "auto"
    if solver.penalty_type == "value_gap":
        # the surrogate's error enters the x-gradient multiplied by ρ: keep it below the level tolerance
        changes["inner_tol"] = 1e-5 * tol
    return solver.replace(**changes)

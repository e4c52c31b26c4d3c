r"""The generic penalty-based bi-level solver and its presets.

One frozen dataclass, :class:`PenaltySolver`, holds the hyper-parameters of OFMU_SPEC.md §2; the functions
:func:`ofmu`, :func:`gpbgd`, :func:`vpbgd` and :func:`scalarized` return configured instances.
``init_state`` / ``update`` are pure; ``run`` only loops, and anyone can write the loop by hand.

The penalized objective is composed from term objects (:mod:`ofmu_opt.core.terms`):
``F = f + ρ·(stationarity | value gap | weighted sum) + constraint terms``. One fixed-penalty round
(:meth:`PenaltySolver.round`), with φ the inner objective in minimization form
(:mod:`ofmu_opt.core.inner`):

1. momentum look-ahead ``(x̄, ȳ)`` of the outer step rule (identity for ``sgd``/``adam``), projected onto
   the problem's sets ``X × Y``;
2. inner loop, when its result is used: ``T`` projected steps ``z ← P_Y(z − η_in ∇_y φ(x̄, z))`` from ``ȳ``
   (``stationarity`` with base ``inner``/``extragradient``) or from the warm-started surrogate
   (``value_gap``); with lower-level inequality constraints ``c(x, z) ≤ 0`` a primal-dual loop that also
   updates their multipliers μ (BLOCC, docs/solver_options.md);
3. the penalized gradient ``∇F`` at the evaluation point ``q`` (``base``: ``outer`` q = (x̄, ȳ); ``inner``
   q = (x̄, z) and the step starts there; ``extragradient`` q = (x̄, z) but the step starts from (x̄, ȳ));
4. the projected outer step (``sgd``, ``adam``, ``nesterov``; backtracking line search, or for the
   papers' fixed steps a curvature-estimated cap ``adaptive_step``; optional division by ρ).

:meth:`PenaltySolver.update` adds the penalty strategy: ``paper`` applies the schedule every round and
stops at a *penalized* point (status ``penalized``: Θ(1/ρ) from the bi-level solution);
``continuation`` (the presets' default) is the wrapper solver :class:`~ofmu_opt.core.continuation.Continuation`:
it keeps ρ until the level is solved, warm-starts the next level at ``γρ``, raises ρ when a level is
unbounded below, and extrapolates the level solutions to ``1/ρ → 0`` (Richardson, order ``extrapolation``).

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
from ..problem.constraints import constraint_values
from .inner import InnerObjective, InnerSpec, make_inner
from .loop import run_solver
from .pair import paxpy, pdot, pfinite, pnorm, pscale, psub
from .result import BilevelResult, IntermediateResult, Status
from .schedules import SCHEDULES, next_penalty
from .similarity import SIMILARITY_KINDS
from .steps import LBFGS_MEMORY_MIN, STEP_RULES, Lbfgs, Nesterov, StepRule, get_step_rule
from .terms import ConstraintTerm, PenaltyTerm, StationarityTerm, TermContext, ValueGapTerm, WeightedSumTerm

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

FEASIBILITY_SIGMA_SCALE = 10.0
"""The augmented-Lagrangian parameter of the lower-level constraints ``c(x, y) ≤ 0`` on the upper iterate is
``σ = 10ρ``: the method-of-multipliers steps within a level then settle in fewer cycles (Outrata1990Ex1a: 8,997
rounds to 1.1e-6 instead of 22,046 with ``σ = ρ``; 12,894 with ``σ = 100ρ``, whose levels are worse conditioned)."""
DOMAIN_TOL = 1e-6
"""A line-search candidate whose refit lower-level surrogate violates ``c(x, z) ≤ 0`` by more than this (and by more
than 10x the current point's violation) is outside the domain where the lower level is feasible: rejected."""
INFEASIBLE_MULTIPLIER = 1e8
"""Lower-level multipliers above this, with the constraints still violated, mean the lower level is infeasible at x."""
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
    """Per-round residuals: ``outer`` (projected penalized-gradient norm), ``inner`` (``‖∇_y φ‖``),
    ``extrapolation`` (change of the extrapolated estimate), ``feasibility`` (max constraint violation)."""

    outer: float
    inner: float
    extrapolation: float
    feasibility: float = math.nan


class PenaltyState(NamedTuple):
    """Solver state; never mutated, same fields every round.

    Besides the iterate ``(x, y)``, the inner surrogate ``z`` and the penalty: ``mu_inner`` (lower-level
    multipliers of ``c(x, z) ≤ 0``), ``nu_feas``/``nu_outer`` (multipliers of ``c(x, y) ≤ 0`` and ``G(x, y) ≤ 0``
    in the penalized problem), ``eps`` (the oracle dtype's machine epsilon), ``anchor`` (the current level's
    start), ``best``/``stall`` (level progress), ``prev``/``prev_grad``/``step``/``theta`` (the curvature-estimated
    step of ``adaptive_step``), ``curvature`` (the mean second derivative of the penalized objective along the
    round's step, :func:`step_curvature`; nan when the round cannot tell it from round-off) and ``outward`` (how many
    consecutive steps of the level raised the iterate's norm along negative curvature): continuation's
    unboundedness test (:mod:`ofmu_opt.core.continuation`). ``path_gap``/``path_levels``/``path_off``: the
    weighted-sum preset's path certificate in continuation (:meth:`PenaltySolver.value_function_gradient`):
    ``ρ‖∇v(x)‖`` at the last level end, how many consecutive level ends kept it within the claim tolerance, and how
    many consecutive solved levels off the path saw it not halve.
    """

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
    mu_inner: tuple[float, ...] = ()
    nu_feas: tuple[float, ...] = ()
    nu_outer: tuple[float, ...] = ()
    eps: float = 2.0**-52
    inner_scale: float = 1.0
    anchor: Pair | None = None
    best: float = math.inf
    stall: int = 0
    prev: Pair | None = None
    prev_grad: Pair | None = None
    step: float = math.nan
    theta: float = math.inf
    f_scale: float = math.nan
    curvature: float = math.nan
    outward: int = 0
    path_levels: int = 0
    path_gap: float = math.nan
    path_off: int = 0


def dtype_eps(v: Any) -> float:
    """Machine epsilon of the dtype of ``v`` (an array, a tensor, or a tuple of tensors); float64 when unknown.

    Examples:
        >>> import numpy as np
        >>> dtype_eps(np.zeros(2, dtype=np.float32)) == 2.0**-23
        True
    """
    if isinstance(v, (tuple, list)) and v:
        v = v[0]
    dt = getattr(v, "dtype", None)
    if dt is None:
        return 2.0**-52
    if "bfloat16" in str(dt):
        return 2.0**-7
    return {2: 2.0**-10, 4: 2.0**-23}.get(int(getattr(dt, "itemsize", 8) or 8), 2.0**-52)


def step_curvature(f0: float, f1: float, slope: float, length: float, eps: float) -> float:
    """The mean second derivative of ``F`` along a step ``s`` from ``p`` (``F(p) = f0``, ``F(p + s) = f1``,
    ``∇F(p)ᵀs = slope``, ``‖s‖ = length``): ``2 (f1 − f0 − slope) / ‖s‖²``, which is ``sᵀ∇²F s / ‖s‖²`` for a
    quadratic and a weighted mean of it along the segment otherwise (Taylor's theorem with integral remainder).
    Negative: ``F`` curves downward along the step, more than its linear model predicts. nan when the remainder is
    within the round-off of the three numbers (``10·eps`` of their sizes) or the step is zero.

    Examples:
        >>> step_curvature(0.0, 0.5, 0.0, 1.0, 2.0**-52)  # F = t²/2 along a unit step: curvature 1
        1.0
        >>> step_curvature(1.0, 1.0 - 1e-17, 0.0, 1.0, 2.0**-52)  # round-off
        nan
    """
    rem = f1 - f0 - slope
    noise = 10.0 * eps * (abs(f0) + abs(f1) + abs(slope))
    if not (length > 0.0 and math.isfinite(rem)) or abs(rem) <= noise:
        return math.nan
    return 2.0 * rem / (length * length)


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
        outer_rule: ``sgd``, ``adam``, ``nesterov`` or ``lbfgs`` (full-batch, with ``line_search``, no sets).
        line_search: backtracking (Armijo) on the penalized objective; ``outer_lr`` is then the first
            trial step.
        penalty: initial penalty ρ0 > 0 (the weight, for ``weighted_sum``).
        schedule: ``geometric`` | ``linear`` | ``constant``.
        penalty_growth: γ ≥ 1 of the geometric schedule and of continuation levels.
        penalty_max: cap on ρ (required by ``linear``).
        ramp_steps: rounds of the linear ramp.
        scale_step_by_penalty: divide the outer step by ρ.
        strategy: ``paper`` (schedule every round) or ``continuation`` (advance ρ when a level is solved).
        level_tol: residual that ends a continuation level (default
            ``min(1e-4·tol·max(1, ‖∇F_0‖), tol·max(1, ‖∇f_0‖))``, ``F_0``/``f_0`` the penalized/outer objective at
            the start).
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
        adaptive_step: curvature-estimated steps (Malitsky & Mishchenko 2020, adaptive gradient descent:
            ``λ_k = min(√(1+θ_{k-1}) λ_{k-1}, ‖p_k − p_{k-1}‖ / (2‖∇_k − ∇_{k-1}‖))``, ``θ_k = λ_k/λ_{k-1}``). The
            fixed outer step is capped by it, so a step too long for the penalized curvature cannot diverge (outer
            ``sgd`` without line search and a base other than ``inner``); the inner loop (``sgd``) uses it from
            ``inner_lr``. Only with full-batch oracles (``batch=None``). The presets turn it on.
        dual_lr: step of the lower-level multipliers' ascent in the primal-dual inner loop (default
            ``inner_lr``); used only with ``inner_constraints``.
        lbfgs_memory: curvature pairs of the ``lbfgs`` outer rule (``None``: sized from the problem,
            :func:`~ofmu_opt.core.steps.lbfgs_memory` — 50 up to 50 variables, down to 10 from 250 on — where the
            penalized gradient is exact, i.e. not for the value-gap penalty or approximate HVPs, which keep 10).

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
    outer_rule: Literal["sgd", "adam", "nesterov", "lbfgs"] = "sgd"
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
    adaptive_step: bool = False
    dual_lr: float | None = None
    lbfgs_memory: int | None = None
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
        if self.dual_lr is not None:
            check_range("dual_lr", self.dual_lr, low=0.0, low_open=True)
        if self.lbfgs_memory is not None and (isinstance(self.lbfgs_memory, bool)
                                              or not isinstance(self.lbfgs_memory, int) or self.lbfgs_memory < 1):
            raise ConfigError(f"lbfgs_memory: expected an integer >= 1 or None, received {self.lbfgs_memory!r}")
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
        if self.outer_rule == "lbfgs" and not self.line_search:
            raise ConfigError("outer_rule: 'lbfgs' needs line_search=True (its steps come from backtracking along "
                              "its own direction)")
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
        if changes.get("strategy") == "paper" and "extrapolation" not in changes:
            changes["extrapolation"] = 0  # extrapolation is a continuation feature; switching away drops it
        return dataclasses.replace(self, **changes)

    def resolved_base(self, problem: BilevelProblem) -> str:
        """The base actually used: ``auto`` is ``inner`` without x and ``outer`` with x."""
        ptype = self.effective_penalty_type(problem)
        if self.base == "auto":
            return "outer" if (problem.has_x or ptype != "stationarity" or self.outer_rule_for(problem) == "lbfgs") \
                else "inner"
        if ptype != self.penalty_type and self.base != "outer":
            raise ConfigError(
                f"base: {self.base!r} is not available on a constrained lower level (y_set or inner_constraints), "
                "where the value-gap term replaces the stationarity penalty; expected 'outer' or 'auto'"
            )
        if self.base == "inner" and problem.has_x and not self.allow_inner_base_with_x:
            raise ConfigError(
                "base: 'inner' with an outer-only variable x converges to a wrong point (resetting y to the "
                "inner result erases the offset through which the penalty carries the hyper-gradient to x; "
                "see docs/solver_options.md); expected 'outer' or 'auto'"
            )
        return self.base

    def outer_rule_for(self, problem: BilevelProblem, eps: float = 2.0**-52) -> str:
        """The outer step rule used on ``problem`` with oracles of machine epsilon ``eps``: ``lbfgs`` takes
        unprojected steps from the current point and needs curvature pairs above round-off, so on a problem with
        ``x_set``/``y_set``, with low-precision oracles (float32 and below) or with base ``inner``/``extragradient``
        it is replaced by ``nesterov`` — for low precision only with the value-gap penalty, whose refit surrogate makes
        the line search's values too noisy for curvature pairs in float32; the stationarity penalty keeps L-BFGS
        (measured by S2 on a float32 copy of benchopt's simulated problem: gpbgd reaches ‖∇h‖² ≤ 1e-6 in 707 rounds
        with L-BFGS, stops at 2.4e-4 with Nesterov). (Projected L-BFGS steps were tried: P5 in 51 rounds instead of
        610, but DeSilva1978, whose optimum sits on a bound with a zero multiplier, needed ~14,000 rounds instead of
        a few hundred, and on Outrata1990Ex1a the long steps left the region where the penalized level is bounded.)"""
        low_precision_gap = eps > 1e-10 and self.effective_penalty_type(problem) == "value_gap"
        if self.outer_rule == "lbfgs" and (problem.x_set is not None or problem.y_set is not None or low_precision_gap
                                           or self.base in ("inner", "extragradient")):
            return "nesterov"
        return self.outer_rule

    def step_rule(self, problem: BilevelProblem, eps: float = 2.0**-52) -> StepRule:
        """The configured outer :class:`~ofmu_opt.core.steps.StepRule` for ``problem``."""
        memory = self.lbfgs_memory
        if memory is None and (self.effective_penalty_type(problem) == "value_gap" or self.hvp != "exact"):
            # the penalized gradient is inexact (a lower-level surrogate refit to a tolerance, or approximate HVPs):
            # old pairs carry its error, and more of them hurt (measured: FSQ with g·0.01, vpbgd, 1159 rounds with
            # 10 pairs, 2212 with 20, 15026 with 50, all in the level at ρ = 6.6e5)
            memory = LBFGS_MEMORY_MIN
        return get_step_rule(self.outer_rule_for(problem, eps), b1=self.adam_b1, b2=self.adam_b2, eps=self.adam_eps,
                             memory=memory)

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
        eps, inner_scale = 2.0**-52, 1.0
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
            if label == "inner":
                eps = dtype_eps(gy)
                inner_scale = sp.to_float(sp.norm(gy))
        p0: Pair = (x0, y0)
        if problem.x_set is not None or problem.y_set is not None:
            p0 = self._project(problem, p0)  # start feasible for the simple sets
        x0, y0 = p0
        inner_rule = get_step_rule(self.inner_rule, b1=self.adam_b1, b2=self.adam_b2, eps=self.adam_eps)
        outer_rule = self.step_rule(problem, eps)
        nan = math.nan
        ic, oc = problem.inner_constraints, problem.outer_constraints
        return PenaltyState(
            x=x0, y=y0, z=y0, penalty=float(self.penalty), nit=0,
            outer_rule=outer_rule.init(sp, p0), inner_rule=inner_rule.init(sp, p0),
            lipschitz=1.0 / self.outer_lr, level=0, level_iter=0, level_h=(), level_row=(),
            estimate=None, residuals=Residuals(nan, nan, nan), scale=nan, terminal="",
            mu_inner=(0.0,) * ic.count if ic is not None else (), nu_feas=(0.0,) * ic.count if ic is not None else (),
            nu_outer=(0.0,) * oc.count if oc is not None else (), eps=eps,
            inner_scale=max(1.0, inner_scale) if math.isfinite(inner_scale) else 1.0, anchor=p0,
        )

    # ------------------------------------------------------------------ pieces of a round
    def effective_penalty_type(self, problem: BilevelProblem) -> str:
        """The penalty term used on ``problem``: the stationarity penalty ``‖∇_y φ‖²`` is not zero at a
        constrained lower-level minimizer, so with ``y_set`` or ``inner_constraints`` the value-gap term
        (BLOCC/V-PBGD) replaces it."""
        if self.penalty_type == "stationarity" and problem.inner_constrained:
            return "value_gap"
        return self.penalty_type

    def _inner_steps(self, problem: BilevelProblem) -> int:
        if self.effective_penalty_type(problem) != self.penalty_type:
            return max(self.inner_steps, 5)
        return self.inner_steps

    def _inner_tol(self, problem: BilevelProblem) -> float | None:
        if self.inner_tol is None and self.strategy == "continuation" and (
            self.effective_penalty_type(problem) != self.penalty_type
        ):
            return 1e-5 * self.tol
        return self.inner_tol

    def terms(self, problem: BilevelProblem) -> list[PenaltyTerm]:
        """The penalty terms of ``F = f + Σ terms`` on ``problem`` (see :mod:`ofmu_opt.core.terms`)."""
        kinds: dict[str, PenaltyTerm] = {
            "stationarity": StationarityTerm(), "value_gap": ValueGapTerm(), "weighted_sum": WeightedSumTerm(),
        }
        out: list[PenaltyTerm] = [kinds[self.effective_penalty_type(problem)]]
        if problem.inner_constraints is not None:
            out.append(ConstraintTerm("inner_feasibility", problem.inner_constraints, name="inner_feasibility",
                                      sigma_scale=FEASIBILITY_SIGMA_SCALE))
        if problem.outer_constraints is not None:
            out.append(ConstraintTerm("outer", problem.outer_constraints, name="outer_constraints"))
        return out

    @staticmethod
    def _project(problem: BilevelProblem, p: Pair) -> Pair:
        x, y = p
        if problem.x_set is not None and x is not None:
            x = problem.x_set.project(x)
        if problem.y_set is not None:
            y = problem.y_set.project(y)
        return (x, y)

    def _inner_loop(
        self, problem: BilevelProblem, inner: InnerObjective, x: Vec | None, start: Vec, rstate: Any, batch: Batch,
        rho: float, floor: float = 0.0,
    ) -> tuple[Vec, Any]:
        sp = problem.space
        rule = get_step_rule(self.inner_rule, b1=self.adam_b1, b2=self.adam_b2, eps=self.adam_eps)
        ys = problem.y_set
        z = start
        steps = self._inner_steps(problem)
        inner_tol = self._inner_tol(problem)
        limit = steps if inner_tol is None else max(steps, self.inner_maxiter)
        target = math.inf if inner_tol is None else max(inner_tol / rho, floor)
        # with a tolerance the loop may stop before T steps once it holds; not with low-precision oracles, whose
        # tolerance test saturates at the round-off floor while further steps still average the error down
        first = 0 if inner_tol is not None and dtype_eps(start) <= 1e-10 else steps
        # curvature-estimated inner step (Malitsky & Mishchenko 2020) for full-batch sgd inner loops
        adaptive = self.adaptive_step and batch is None and self.inner_rule == "sgd"
        lr, lr_prev, theta = self.inner_lr, math.nan, math.inf
        z_prev: Vec | None = None
        g_prev: Vec | None = None
        for t in range(limit):
            b_in, _ = _batches(batch, t)
            _, gz = inner.grad(x, z, batch=b_in)
            if t >= first and ys is None and sp.to_float(sp.norm(gz)) <= target:
                break
            if adaptive:
                if z_prev is not None and g_prev is not None:
                    dg = sp.to_float(sp.norm(sp.sub(gz, g_prev)))
                    secant = sp.to_float(sp.norm(sp.sub(z, z_prev))) / (2.0 * dg) if dg > 0 else math.inf
                    lr = min(math.sqrt(1.0 + theta) * lr_prev, secant)
                    if not (lr > 0 and math.isfinite(lr)):
                        lr = lr_prev
                theta = lr / lr_prev if math.isfinite(lr_prev) else math.inf
                z_prev, g_prev, lr_prev = z, gz, lr
            (_, zn), rstate = rule.apply(sp, (None, z), (None, gz), lr, rstate)
            if ys is not None:
                zn = ys.project(zn)
                # projected-gradient mapping: the stationarity measure of a constrained inner problem
                if t >= first and sp.to_float(sp.norm(sp.sub(zn, z))) / lr <= target:
                    z = zn
                    break
            z = zn
        return z, rstate

    def _inner_pd(
        self, problem: BilevelProblem, inner: InnerObjective, x: Vec | None, z: Vec, mu: tuple[float, ...],
        batch: Batch, rho: float, floor: float = 0.0,
    ) -> tuple[Vec, tuple[float, ...]]:
        """Primal-dual loop on the lower level's Lagrangian ``φ(x, z) + <μ, c(x, z)>`` over ``z ∈ Y, μ ≥ 0``:
        a dual ascent step on the extrapolated constraint values, then a projected primal step."""
        sp = problem.space
        c = problem.inner_constraints
        assert c is not None
        ys = problem.y_set
        eta = self.inner_lr
        tau = self.dual_lr if self.dual_lr is not None else self._dual_step(problem, x, z)
        steps = self._inner_steps(problem)
        inner_tol = self._inner_tol(problem)
        limit = steps if inner_tol is None else max(steps, self.inner_maxiter)
        target = math.inf if inner_tol is None else max(inner_tol / rho, floor)
        first = 0 if inner_tol is not None and dtype_eps(z) <= 1e-10 else steps  # as in _inner_loop
        c_prev = constraint_values(c, x, z)
        # a primal step too long for the lower level's curvature diverges (measured: ClarkWesterberg1990a with g·100
        # and the default inner_lr, a non-finite value at every penalty level); with adaptive_step (full batch) the
        # step is capped by the secant curvature of φ between consecutive iterates, η ≤ ‖Δz‖/‖Δ∇φ‖, and the dual
        # step follows so that τη stays constant
        adaptive = self.adaptive_step and batch is None
        z_prev: Vec | None = None
        g_prev: Vec | None = None
        for t in range(limit):
            b_in, _ = _batches(batch, t)
            cz = constraint_values(c, x, z)
            mu = tuple(max(0.0, m + tau * (2.0 * a - b)) for m, a, b in zip(mu, cz, c_prev, strict=True))
            _, gz = inner.grad(x, z, batch=b_in)
            if adaptive:
                if z_prev is not None and g_prev is not None:
                    dz = sp.to_float(sp.norm(sp.sub(z, z_prev)))
                    dg = sp.to_float(sp.norm(sp.sub(gz, g_prev)))
                    if dz > 0.0 and eta * dg > dz and math.isfinite(dg):
                        tau, eta = tau * eta * dg / dz, dz / dg
                z_prev, g_prev = z, gz
            if any(m != 0.0 for m in mu):
                gz = sp.add(gz, c.vjp(x, z, mu)[1])
            zn = sp.axpy(-eta, gz, z)
            if ys is not None:
                zn = ys.project(zn)
            moved = sp.to_float(sp.norm(sp.sub(zn, z))) / eta  # the projected-gradient mapping of the Lagrangian
            c_prev, z = cz, zn
            if t >= first:
                kkt = max(moved, max(0.0, max(cz)), max(abs(m * v) for m, v in zip(mu, cz, strict=True)))
                if kkt <= target:
                    break
        return z, mu

    def value_function_gradient(
        self, problem: BilevelProblem, x: Vec | None, z: Vec, *, rho: float = 1.0, tol: float = 1e-10,
        batch: Batch = None,
    ) -> tuple[Vec | None, Vec]:
        r"""``(∇v(x), z)``: the gradient of the lower-level value function
        :math:`v(x) = \min_{z\in Y,\,c(x,z)\le 0}\varphi(x,z)` by the envelope theorem (with the lower level's KKT
        multipliers μ when it has constraints: :math:`\nabla_x\varphi(x,z) + J_x c(x,z)^\top\mu`), at an inner
        solution fit from the warm start ``z`` to ``‖∇_z‖ ≤ tol/rho`` (at most ``inner_maxiter`` steps of the
        inner loop the value-gap penalty uses, on ``batch``: the round's batches, full oracles when ``None``), and
        that inner solution. ``(None, z)`` without an upper-level variable (v is then a constant).

        The weighted-sum penalty :math:`f + \rho\varphi` and the value-gap penalty :math:`f + \rho(\varphi - v)`
        have the same y-gradient and x-gradients that differ by exactly :math:`\rho\nabla v(x)`, so a point where
        ``rho·‖∇v(x)‖`` is negligible is a stationary point of both (continuation's path certificate for the
        ``scalarized`` preset).

        Raises:
            ConfigError: ``rho`` or ``tol`` not a finite number > 0.
        """
        check_range("rho", rho, low=0.0, low_open=True)
        check_range("tol", tol, low=0.0, low_open=True)
        if x is None:
            return None, z
        sp = problem.space
        twin = dataclasses.replace(self, inner_steps=max(self.inner_steps, 5), inner_tol=tol)
        inner = self.inner_objective(problem)
        c = problem.inner_constraints
        zc, mu = twin._refit(problem, inner, x, z, (0.0,) * c.count if c is not None else (), batch, rho)
        gx, _ = inner.grad(x, zc, batch=_batches(batch, 0)[0])
        if c is not None and any(m != 0.0 for m in mu):
            cx, _ = c.vjp(x, zc, tuple(mu))
            if cx is not None:
                gx = sp.add(gx, cx)
        return gx, zc

    def _refit(self, problem: BilevelProblem, inner: InnerObjective, x: Vec | None, z: Vec, mu: tuple[float, ...],
               batch: Batch, rho: float) -> tuple[Vec, tuple[float, ...]]:
        """The lower-level surrogate ``(z, μ)`` refit at ``x`` from the warm start ``(z, μ)``: the primal-dual loop
        with lower-level constraints, else the inner loop from a fresh step-rule state (``μ`` returned as given)."""
        if problem.inner_constraints is not None:
            return self._inner_pd(problem, inner, x, z, mu, batch, rho)
        zc, _ = self._inner_loop(problem, inner, x, z, get_step_rule(self.inner_rule).init(problem.space, (None, z)),
                                 batch, rho)
        return zc, mu

    @staticmethod
    def _feasibility_multipliers(rho: float, mu_inner: tuple[float, ...], nu_feas: tuple[float, ...]) -> tuple[
            float, ...]:
        """The multipliers of ``c(x, y) ≤ 0`` in the penalized problem: the predictor ``ρ·μ`` (at the solution
        y shares the lower level's active constraints, which the value-gap term weights by ρ) plus the
        method-of-multipliers correction ``nu_feas`` (the outer objective's own pull, and the part of the
        x-derivative of ``μ(x)`` the predictor misses)."""
        return tuple(rho * m + n for m, n in zip(mu_inner, nu_feas, strict=True))

    def _dual_step(self, problem: BilevelProblem, x: Vec | None, z: Vec) -> float:
        """The dual step ``τ = 0.5 / (η ‖J_y c‖_F²)`` of the primal-dual loop (the primal-dual hybrid gradient
        condition ``τ η ‖J‖² < 1`` with margin; Chambolle & Pock 2011), from one vjp per constraint at ``(x, z)``
        (``inner_lr`` when there are more than 64 constraints)."""
        c = problem.inner_constraints
        assert c is not None
        if c.count > 64:
            return self.inner_lr
        sp = problem.space
        fro = 0.0
        for i in range(c.count):
            e = tuple(1.0 if j == i else 0.0 for j in range(c.count))
            fro += sp.to_float(sp.norm(c.vjp(x, z, e)[1])) ** 2
        return 0.5 / (self.inner_lr * fro) if fro > 0 and math.isfinite(fro) else self.inner_lr

    def _context(self, problem: BilevelProblem, inner: InnerObjective, state: PenaltyState, z: Vec,
                 mu_inner: tuple[float, ...], rho: float, batch: Batch) -> TermContext:
        feas = self._feasibility_multipliers(rho, mu_inner, state.nu_feas) if state.nu_feas else ()
        return TermContext(problem, inner, rho, z, mu_inner, {"inner_feasibility": feas, "outer": state.nu_outer},
                           batch)

    def _penalized(
        self, problem: BilevelProblem, ctx: TermContext, q: Pair, need_value: bool,
    ) -> tuple[Pair, float, float, float]:
        """Return (∇F(q), F(q) or nan, ‖∇_y φ(q)‖, max constraint violation at q)."""
        sp = problem.space
        x, y = q
        fg = problem.outer.grad(x, y, batch=ctx.batch)
        value = sp.to_float(problem.outer.value(x, y, batch=ctx.batch)) if need_value else math.nan
        grad: Pair = fg
        vn, viol = math.nan, 0.0
        for k, term in enumerate(self.terms(problem)):
            ev = term.evaluate(ctx, q, need_value)
            grad = paxpy(sp, 1.0, ev.grad, grad)
            if need_value:
                value += ev.value
            if k == 0:
                vn = ev.residual
            else:
                viol = max(viol, ev.residual)
        return grad, value, vn, viol

    def _objective_value(self, problem: BilevelProblem, ctx: TermContext, q: Pair,
                         domain_tol: float = math.inf) -> float:
        """``F(q)`` for the line search (see :meth:`_objective_eval`)."""
        return self._objective_eval(problem, ctx, q, domain_tol)[0]

    def _objective_eval(self, problem: BilevelProblem, ctx: TermContext, q: Pair,
                        domain_tol: float = math.inf) -> tuple[float, Vec, tuple[float, ...]]:
        """``(F(q), z, μ)`` for the line search, with the lower-level surrogate ``(z, μ)`` refit at ``q``'s x (the
        value gap's ``min_z φ(x, z)`` moves with x; without the refit the model is linear in x and the line search
        underestimates the curvature). An accepted candidate's refit is the next round's warm start, so the
        refit is not repeated. ``F = inf`` outside the bi-level problem's domain: where the refit surrogate
        violates ``c(x, z) ≤ 0`` by more than ``domain_tol`` the lower level is (numerically) infeasible,
        ``v(x) = +∞`` and no ``y`` is feasible, while the value-gap model ``ρ(φ − φ(x, z) − <μ, c(x, z)>)`` would
        reward such an x with a large negative value."""
        zc, muc = ctx.z, ctx.mu_inner
        if self.effective_penalty_type(problem) == "value_gap":
            zc, muc = self._refit(problem, ctx.inner, q[0], ctx.z, ctx.mu_inner, ctx.batch, ctx.rho)
            if problem.inner_constraints is not None and max(
                    constraint_values(problem.inner_constraints, q[0], zc), default=0.0) > domain_tol:
                return math.inf, zc, muc
            ctx = ctx._replace(z=zc, mu_inner=muc)
        return self._penalized(problem, ctx, q, need_value=True)[1], zc, muc

    # ------------------------------------------------------------------ one round
    def round(self, problem: BilevelProblem, state: PenaltyState, *, batch: Batch = None) -> PenaltyState:
        """One round at the fixed penalty ``state.penalty``: inner loop, one projected outer step. Pure.

        The penalty, the multipliers of the penalized problem and ``terminal`` are left to :meth:`update`
        (or to a wrapper such as :class:`~ofmu_opt.core.continuation.Continuation`); a non-finite value
        leaves the iterate unchanged and sets ``terminal="numerical_error"``.
        """
        sp = problem.space
        inner = self.inner_objective(problem)
        base = self.resolved_base(problem)
        ptype = self.effective_penalty_type(problem)
        constrained = problem.x_set is not None or problem.y_set is not None
        rho = state.penalty
        outer_rule = self.step_rule(problem, state.eps)
        current: Pair = (state.x, state.y)
        look = outer_rule.lookahead(sp, current, state.outer_rule)
        if constrained and look is not current:
            look = self._project(problem, look)
        xb, yb = look
        _, b_out = _batches(batch, 0)
        floor = 100.0 * state.eps * state.inner_scale

        z, mu_inner, inner_rule_state = state.z, state.mu_inner, state.inner_rule
        if ptype == "value_gap" or base in ("inner", "extragradient"):
            if ptype == "value_gap" and problem.inner_constraints is not None:
                z, mu_inner = self._inner_pd(problem, inner, xb, state.z, mu_inner, batch, rho, floor)
                if look is not current and max(constraint_values(problem.inner_constraints, xb, z)) > DOMAIN_TOL:
                    # the momentum look-ahead left the x-range where the lower level is feasible: restart the
                    # momentum from the current point (no y is feasible there; its value-gap gradient is meaningless)
                    look, outer_state = current, outer_rule.init(sp, current)
                    state = state._replace(outer_rule=outer_state)
                    xb, yb = look
                    z, mu_inner = self._inner_pd(problem, inner, xb, state.z, state.mu_inner, batch, rho, floor)
                if max(mu_inner, default=0.0) > INFEASIBLE_MULTIPLIER and max(
                        constraint_values(problem.inner_constraints, xb, z)) > 0.0:
                    return state._replace(terminal="infeasible", nit=state.nit + 1)
            else:
                start = state.z if ptype == "value_gap" else yb
                if ptype != "value_gap":
                    inner_rule_state = get_step_rule(self.inner_rule).init(sp, (None, start))
                z, inner_rule_state = self._inner_loop(problem, inner, xb, start, inner_rule_state, batch, rho,
                                                       floor=floor)
        q: Pair = (xb, z) if base in ("inner", "extragradient") else look
        frm: Pair = q if base == "inner" else look

        ctx = self._context(problem, inner, state, z, mu_inner, rho, b_out)
        grad, fq, vn, viol = self._penalized(problem, ctx, q, need_value=self.line_search)
        domain_tol = math.inf
        if self.line_search and ptype == "value_gap" and problem.inner_constraints is not None:
            # the lower level's feasibility at the evaluation point sets the bar for a candidate's (see
            # _objective_value): the surrogate is solved only to the inner tolerance, so allow 10x its violation
            now = max(0.0, max(constraint_values(problem.inner_constraints, q[0], z), default=0.0))
            domain_tol = max(DOMAIN_TOL, 10.0 * now)
        gnorm = pnorm(sp, grad)
        if not (math.isfinite(gnorm) and math.isfinite(vn) and pfinite(sp, grad) and sp.all_finite(z)):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)

        scale = state.scale if math.isfinite(state.scale) else max(1.0, gnorm)
        if not math.isfinite(state.f_scale):
            # the outer objective's gradient at the first evaluation point: continuation claims convergence only
            # from a level whose residual is small against it (see Continuation.update)
            state = state._replace(f_scale=max(1.0, pnorm(sp, problem.outer.grad(q[0], q[1], batch=b_out))))
        lr = self.outer_lr
        if self.scale_step_by_penalty and ptype != "weighted_sum":
            lr = lr / rho
        lipschitz = state.lipschitz
        prev, prev_grad, step, theta = state.prev, state.prev_grad, state.step, state.theta
        curvature = math.nan
        if isinstance(outer_rule, Lbfgs):
            return self._lbfgs_round(problem, state, ctx, outer_rule, frm, grad, fq, gnorm, scale, z, mu_inner,
                                     inner_rule_state, vn, viol, domain_tol)
        if self.line_search:
            # Armijo backtracking (projected: the descent-lemma test); below round-off (predicted decrease
            # < max(1e-12, 10 eps) |F|, eps of the oracles' dtype) the test carries no information, so the
            # last accepted constant is kept instead of being doubled on noise. base='inner' converges to a
            # fixed point that depends on the step, so there the step may only shrink within a level (it then
            # settles); elsewhere it may also grow again
            L = lipschitz if base == "inner" else max(lipschitz / 1.5, 1e-12)
            refit: tuple[Vec, tuple[float, ...]] | None = None
            for _ in range(60):
                if constrained:
                    cand = self._project(problem, paxpy(sp, -1.0 / L, grad, frm))
                    d = psub(sp, cand, frm)
                    slope, length = sp.to_float(pdot(sp, grad, d)), pnorm(sp, d)
                    decrease = -(slope + 0.5 * L * length**2)
                else:
                    decrease = 0.5 * gnorm * gnorm / L
                    cand = paxpy(sp, -1.0 / L, grad, frm)
                    slope, length = -gnorm * gnorm / L, gnorm / L
                if decrease < max(1e-12, 10.0 * state.eps) * max(1.0, abs(fq)):
                    L = max(L, lipschitz)
                    break
                fc, zc, muc = self._objective_eval(problem, ctx, cand, domain_tol)
                if math.isfinite(fc) and fc <= fq - decrease:
                    refit = (zc, muc)
                    curvature = step_curvature(fq, fc, slope, length, state.eps)
                    break
                L *= 2.0
            lipschitz, lr = L, 1.0 / L
            if refit is not None and ptype == "value_gap" and base != "inner":
                z, mu_inner = refit  # the surrogate at the accepted point: the next round's warm start
        elif self.adaptive_step and batch is None and self.outer_rule == "sgd" and base != "inner":
            lam = lr
            if prev is not None and prev_grad is not None and math.isfinite(step):
                dgrad, dp = psub(sp, grad, prev_grad), psub(sp, look, prev)
                dg, ds = pnorm(sp, dgrad), pnorm(sp, dp)
                secant = ds / (2.0 * dg) if dg > 0 else math.inf
                if ds > 0:  # the secant pair's mean curvature along the previous step, sᵀΔ∇F / ‖s‖²
                    curvature = sp.to_float(pdot(sp, dp, dgrad)) / (ds * ds)
                lam = min(lr, math.sqrt(1.0 + theta) * step, secant)
                lam = lam if lam > 0 else lr
            theta = lam / step if math.isfinite(step) and step > 0 else math.inf
            prev, prev_grad, step, lr = look, grad, lam, lam
        new, rule_state = outer_rule.apply(sp, frm, grad, lr, state.outer_rule)
        unprojected = new
        if constrained:
            new = self._project(problem, new)
        if isinstance(outer_rule, Nesterov):
            rule_state = outer_rule.commit(sp, current, new, grad, rule_state)
        if not pfinite(sp, new):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)
        # fixed-point residual of the round (the projected-gradient mapping): equals ‖∇F(q)‖ for an unconstrained
        # gradient step from the look-ahead point, and is the right quantity for base='inner', whose fixed point
        # is not a stationary point of F
        moved = pnorm(sp, psub(sp, new, look)) / lr
        if moved == 0.0 and gnorm > 0.0 and pnorm(sp, psub(sp, unprojected, frm)) == 0.0:
            # the step underflowed the iterate's precision (low-precision oracles at a large penalty): the
            # step-based residual would read 0 at a point that is not stationary, so report the gradient norm
            moved = gnorm
        gnorm = moved
        return state._replace(
            x=new[0], y=new[1], z=z, mu_inner=mu_inner, nit=state.nit + 1, outer_rule=rule_state,
            inner_rule=inner_rule_state, lipschitz=lipschitz, scale=scale, terminal="",
            residuals=Residuals(gnorm, vn, state.residuals.extrapolation, viol),
            prev=prev, prev_grad=prev_grad, step=step, theta=theta, curvature=curvature,
        )

    def _lbfgs_round(
        self, problem: BilevelProblem, state: PenaltyState, ctx: TermContext, rule: Lbfgs, frm: Pair, grad: Pair,
        fq: float, gnorm: float, scale: float, z: Vec, mu_inner: tuple[float, ...], inner_rule_state: Any,
        vn: float, viol: float, domain_tol: float = math.inf,
    ) -> PenaltyState:
        """One L-BFGS step on F with backtracking (Armijo, c1 = 1e-4) along the two-loop direction."""
        sp = problem.space
        rs = rule.observe(sp, frm, grad, state.outer_rule)
        d = rule.direction(sp, grad, rs)
        gd = sp.to_float(pdot(sp, grad, d))
        if not gd < 0.0:  # not a descent direction (stale curvature pairs): restart from the gradient
            rs = rs._replace(pairs=())
            d, gd = pscale(sp, grad, -1.0), -gnorm * gnorm
        t = 1.0 if rs.pairs else 1.0 / state.lipschitz
        new = frm
        curvature = math.nan
        for _ in range(60):
            decrease = -1e-4 * t * gd
            cand = paxpy(sp, t, d, frm)
            if decrease < max(1e-12, 10.0 * state.eps) * max(1.0, abs(fq)):
                new = cand  # below round-off the test carries no information: take the step
                break
            fc, zc, muc = self._objective_eval(problem, ctx, cand, domain_tol)
            if math.isfinite(fc) and fc <= fq - decrease:
                new = cand
                curvature = step_curvature(fq, fc, t * gd, t * pnorm(sp, d), state.eps)
                if self.effective_penalty_type(problem) == "value_gap":
                    z, mu_inner = zc, muc  # the surrogate at the accepted point: the next round's warm start
                break
            t *= 0.5
        if not pfinite(sp, new):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)
        lipschitz = state.lipschitz if rs.pairs else max(1e-12, 1.0 / t)
        return state._replace(
            x=new[0], y=new[1], z=z, mu_inner=mu_inner, nit=state.nit + 1, outer_rule=rs._replace(step=rs.step + 1),
            inner_rule=inner_rule_state, lipschitz=lipschitz, scale=scale, terminal="",
            residuals=Residuals(gnorm, vn, state.residuals.extrapolation, viol), curvature=curvature,
        )

    def updated_multipliers(self, problem: BilevelProblem, state: PenaltyState) -> PenaltyState:
        """The method-of-multipliers step ``ν ← max(0, ν + ρ c)`` of the penalized problem's constraints
        (``c(x, y) ≤ 0`` of the lower level at the upper iterate, and ``G(x, y) ≤ 0``) at the iterate."""
        if problem.inner_constraints is None and problem.outer_constraints is None:
            return state
        ctx = self._context(problem, self.inner_objective(problem), state, state.z, state.mu_inner,
                            state.penalty, None)
        q = (state.x, state.y)
        changes: dict[str, Any] = {}
        for term in self.terms(problem)[1:]:
            assert isinstance(term, ConstraintTerm)
            total = term.updated_multipliers(ctx, q)
            if term.key == "inner_feasibility":
                base = self._feasibility_multipliers(state.penalty, state.mu_inner, (0.0,) * len(total))
                changes["nu_feas"] = tuple(t - b for t, b in zip(total, base, strict=True))
            else:
                changes["nu_outer"] = total
        return state._replace(**changes)

    @staticmethod
    def multiplier_change(old: PenaltyState, new: PenaltyState) -> float:
        """The largest change of a penalized-problem multiplier between two states, relative to its size."""
        change = 0.0
        for a, b in ((old.nu_feas, new.nu_feas), (old.nu_outer, new.nu_outer)):
            for u, v in zip(a, b, strict=True):
                change = max(change, abs(u - v) / max(1.0, abs(v)))
        return change

    def effective_tol(self, state: PenaltyState) -> float:
        """``tol`` raised to what the oracles' dtype can resolve (``100·eps``; 1.2e-5 for float32)."""
        return max(self.tol, 100.0 * state.eps)

    def update(self, problem: BilevelProblem, state: PenaltyState, *, batch: Batch = None) -> PenaltyState:
        """One round plus the penalty strategy. Pure: returns a new state.

        ``paper``: the schedule's next ρ, the multipliers' update, and ``terminal="penalized"`` once the
        projected penalized gradient is below ``tol`` relative to its first value (a stationary point of the
        penalized problem, Θ(1/ρ) from the bi-level solution). ``continuation``: delegated to
        :class:`~ofmu_opt.core.continuation.Continuation`.
        """
        if self.strategy == "continuation":
            from .continuation import Continuation

            return Continuation.of(self).update(problem, state, batch=batch)
        new = self.round(problem, state, batch=batch)
        if new.terminal:
            return new
        new = self.updated_multipliers(problem, new)
        next_rho = next_penalty(
            self.schedule, state.penalty, new.nit, growth=self.penalty_growth, cap=self.penalty_max,
            start=self.penalty, ramp_steps=self.ramp_steps,
        )
        res = new.residuals
        tol = self.effective_tol(new)
        done = res.outer <= tol * new.scale and not (res.feasibility > max(tol, 1e-8))
        return new._replace(penalty=next_rho, terminal="penalized" if done else "")

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
        if self.strategy == "continuation":
            from .continuation import Continuation

            return Continuation.of(self).final_detail(state, status)
        if status is Status.PENALIZED and self.penalty_type == "weighted_sum":
            return (f" Final weight {state.penalty:.3g}. This is the weighted-sum (scalarized) baseline: its minimizer "
                    "is biased by construction (not the bi-level solution for any finite weight); the default "
                    "strategy='continuation' raises the weight and claims convergence only where its path is "
                    "certified.")
        if status is Status.PENALIZED:
            return f" Final penalty {state.penalty:.3g}."
        if status is not Status.CONVERGED:
            return f" Final penalty {state.penalty:.3g}: the penalized solution is Θ(1/penalty) from the bi-level one."
        return ""

    def multipliers(self, state: PenaltyState) -> dict[str, tuple[float, ...]]:
        """The final multipliers: ``inner`` (lower-level KKT multipliers at the surrogate), ``inner_feasibility``
        (of ``c(x, y) ≤ 0`` in the penalized problem), ``outer`` (of ``G(x, y) ≤ 0``); only those present."""
        feas = self._feasibility_multipliers(state.penalty, state.mu_inner, state.nu_feas) if state.nu_feas else ()
        out = {"inner": state.mu_inner, "inner_feasibility": feas, "outer": state.nu_outer}
        return {k: tuple(float(v) for v in vals) for k, vals in out.items() if vals}

    def point(self, state: PenaltyState) -> Pair:
        """The point a run returns: the extrapolated estimate when extrapolating, else the iterate."""
        return self._point(state)

    def _point(self, state: PenaltyState) -> Pair:
        if self.extrapolation and state.estimate is not None:
            return state.estimate
        return (state.x, state.y)


# ---------------------------------------------------------------------- presets
def _preset(defaults: dict[str, Any], overrides: dict[str, Any], name: str) -> PenaltySolver:
    """The preset ``name``: its paper's algorithm (``strategy="paper"``, with the curvature-capped step) or, by
    default, that algorithm wrapped in continuation (:func:`with_continuation`); ``overrides`` apply last."""
    fields = {f.name for f in dataclasses.fields(PenaltySolver)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} for {name}(); valid options: {', '.join(sorted(fields))}")
    strategy = overrides.get("strategy", "continuation")
    check_choice("strategy", strategy, STRATEGIES)
    rest = {k: v for k, v in overrides.items() if k != "strategy"}
    paper = PenaltySolver(name=name, **{**defaults, "adaptive_step": True, "strategy": "paper"})
    if strategy == "paper":
        return paper.replace(**rest) if rest else paper
    solver = with_continuation(paper)
    return solver.replace(**rest) if rest else solver


def ofmu(**options: Any) -> PenaltySolver:
    """OFMU. With ``strategy="paper"`` the paper's two-loop algorithm: stationarity penalty, signed-cosine
    similarity (β = 0.1), exact HVPs, base ``auto`` (the paper's ``inner`` when there is no outer-only
    variable), T = 5 inner steps, geometric penalty schedule (γ = 1.05, capped at 100) with steps divided by ρ
    (and capped by a curvature estimate); it ends at a penalized point (status ``penalized``). By default
    (``strategy="continuation"``) the same penalty in continuation (:func:`with_continuation`), which reaches
    the bi-level solution.

    Examples:
        >>> ofmu(beta=0.0).beta, ofmu().strategy, ofmu(strategy="paper").schedule
        (0.0, 'continuation', 'geometric')
    """
    return _preset(
        dict(penalty_type="stationarity", similarity="signed", beta=0.1, hvp="exact", base="auto",
             inner_steps=5, inner_lr=0.1, outer_lr=0.1, penalty=1.0, schedule="geometric",
             penalty_growth=1.05, penalty_max=100.0, scale_step_by_penalty=True),
        options, "ofmu",
    )


def gpbgd(**options: Any) -> PenaltySolver:
    """G-PBGD: the stationarity (gradient-norm) penalty without similarity term. ``strategy="paper"``: constant
    ρ = 10, base ``outer``, step divided by ρ; default: in continuation from ρ = 10.

    Examples:
        >>> gpbgd().penalty_type, gpbgd().strategy
        ('stationarity', 'continuation')
    """
    return _preset(
        dict(penalty_type="stationarity", similarity="none", beta=0.0, base="outer", inner_steps=0,
             penalty=10.0, schedule="constant", outer_lr=0.1, scale_step_by_penalty=True),
        options, "gpbgd",
    )


def vpbgd(**options: Any) -> PenaltySolver:
    """V-PBGD: the value-gap penalty ``ρ(g(x,y) − g(x,z))`` with a warm-started surrogate ``z`` updated by
    T = 5 inner steps per round; needs no Hessian. ``strategy="paper"``: constant ρ = 10; default: in
    continuation from ρ = 10.

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
    """The weighted-sum baseline ``min f + weight·φ`` that OFMU argues against.

    ``strategy="paper"``: the fixed weight, biased by construction (its minimizer is not the bi-level solution for
    any finite weight unless the two levels agree); it stops at its weighted point with status ``penalized``.
    By default the weight grows in continuation from ``weight`` (:func:`with_continuation`), and a convergence
    claim needs a certificate: the weighted sum's gradient differs from the value-gap penalty's by exactly
    ``weight·∇v(x)`` (v the lower-level value function), so each level end measures ``weight·‖∇v(x)‖`` with an
    inner solve (:meth:`PenaltySolver.value_function_gradient`) and the run reports ``converged`` only when the
    levels of its extrapolation all lie on the value-gap path (v flat along the path, as on P5, or no upper-level
    variable). Elsewhere the weights' limit minimizes f over the joint minimizers of φ, not the bi-level
    solution, and the run stops ``penalized`` (early, once three solved levels in a row are off the path with
    ``weight·‖∇v(x)‖`` not halving from one level to the next).

    Examples:
        >>> scalarized(0.5).penalty, scalarized().strategy, scalarized(strategy="paper").strategy
        (0.5, 'continuation', 'paper')
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
    L-BFGS steps with backtracking within a level (Nesterov with backtracking on problems with sets or with
    ``base="inner"``), and Richardson extrapolation in 1/ρ (:class:`~ofmu_opt.core.continuation.Continuation`).

    Fixed-step penalty descent needs O(ρ) iterations per penalty level and stops Θ(1/ρ) from the bi-level
    solution; continuation is how the presets reach 1e-6 relative accuracy, and it is their default.

    Examples:
        >>> with_continuation(gpbgd(strategy="paper"), tol=1e-6).strategy
        'continuation'
    """
    # L-BFGS within a level (problems with x_set/y_set and base='inner' get accelerated projected gradient)
    rule = "lbfgs" if solver.base in ("auto", "outer", "extragradient") else "nesterov"
    changes: dict[str, Any] = dict(
        strategy="continuation", extrapolation=extrapolation, penalty_growth=growth,
        penalty_max=max(penalty_max, solver.penalty), line_search=True, outer_rule=rule,
        scale_step_by_penalty=False, tol=tol, maxiter=maxiter, schedule="constant", level_maxiter=20_000,
    )
    if solver.base == "extragradient":
        changes["base"] = "auto"
    if solver.penalty_type == "value_gap":
        # the surrogate's error enters the x-gradient multiplied by ρ: keep it below the level tolerance
        changes["inner_tol"] = 1e-5 * tol
    return solver.replace(**changes)

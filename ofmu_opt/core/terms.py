r"""Penalty terms as objects: the solver's penalized objective is ``F = f + Σ terms``.

Each term evaluates its weighted value and gradient at a point ``q = (x, y)`` given a :class:`TermContext`
(the penalty ρ, the inner objective φ in minimization form, the inner surrogate ``z`` with its lower-level
multipliers, the batch). The solver composes the terms a problem needs (see
:func:`ofmu_opt.core.solver.PenaltySolver.terms`):

- :class:`StationarityTerm`: :math:`\rho\|\nabla_y\varphi(x,y)\|^2`, gradient
  :math:`2\rho\,\nabla_{(x,y)}\langle\nabla_y\varphi, \nabla_y\varphi\rangle`;
- :class:`ValueGapTerm`: :math:`\rho\,(\varphi(x,y) - v(x))` with the value function
  :math:`v(x) = \min_{z\in Y,\,c(x,z)\le 0}\varphi(x,z)` represented by the surrogate ``z`` and its multipliers
  :math:`\mu`: :math:`v(x) \approx \varphi(x,z) + \langle\mu, c(x,z)\rangle` and, by the envelope theorem with KKT
  multipliers (BLOCC, Jiang et al. 2024), :math:`\nabla v(x) = \nabla_x\varphi(x,z) + J_x c(x,z)^\top\mu`;
- :class:`WeightedSumTerm`: :math:`\rho\,\varphi(x,y)` (the scalarized baseline);
- :class:`ConstraintTerm`: an augmented-Lagrangian term for inequality constraints :math:`c(x,y)\le 0` of the
  penalized problem (the lower-level constraints at the upper iterate y, and the upper-level constraints),
  :math:`\frac{1}{2\sigma}\sum_i(\max(0,\nu_i+\sigma c_i)^2-\nu_i^2)`, gradient
  :math:`J^\top\max(0,\nu+\sigma c)`, with :math:`\sigma = \rho` and multipliers :math:`\nu` updated by the solver
  (:func:`ConstraintTerm.updated_multipliers`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from .._typing import Batch, Pair
from ..problem.bilevel import BilevelProblem
from ..problem.constraints import InequalityConstraints, constraint_values
from .inner import InnerObjective
from .pair import paxpy, pscale

__all__ = [
    "ConstraintTerm",
    "PenaltyTerm",
    "StationarityTerm",
    "TermContext",
    "TermEval",
    "ValueGapTerm",
    "WeightedSumTerm",
    "vjp_pair",
]


class TermContext(NamedTuple):
    """What a term needs besides the point: problem, φ, penalty, surrogate, multipliers, batch."""

    problem: BilevelProblem
    inner: InnerObjective
    rho: float
    z: Any
    mu_inner: tuple[float, ...]
    multipliers: dict[str, tuple[float, ...]]
    batch: Batch


class TermEval(NamedTuple):
    """A term's weighted gradient, its weighted value (``nan`` unless asked for) and a residual it reports."""

    grad: Pair
    value: float
    residual: float


class PenaltyTerm(Protocol):
    """One additive term of the penalized objective."""

    @property
    def name(self) -> str: ...

    def evaluate(self, ctx: TermContext, q: Pair, need_value: bool) -> TermEval: ...


def vjp_pair(ctx: TermContext, c: InequalityConstraints, q: Pair, mu: Sequence[float]) -> Pair:
    """``∇_{(x,y)} Σ mu_i c_i(q)`` with an absent x-part filled in as zeros (or ``None`` without x)."""
    sp = ctx.problem.space
    x, y = q
    gx, gy = c.vjp(x, y, tuple(mu))
    if x is not None and gx is None:
        gx = sp.zeros_like(x)
    if x is None:
        gx = None
    return gx, gy


@dataclass(frozen=True)
class StationarityTerm:
    """``ρ‖∇_y φ‖²`` (OFMU, G-PBGD); the residual is ``‖∇_y φ‖``."""

    name: str = "stationarity"

    def evaluate(self, ctx: TermContext, q: Pair, need_value: bool) -> TermEval:
        sp, inner, rho = ctx.problem.space, ctx.inner, ctx.rho
        x, y = q
        joint = getattr(inner, "grad_and_hvp", None)
        if joint is not None:  # ∇φ and ∇²φ∇φ from one graph (torch, exact HVP by double backward)
            (_, v), hv = joint(x, y, batch=ctx.batch)
        else:
            _, v = inner.grad(x, y, batch=ctx.batch)
            hv = inner.hvp(x, y, v, batch=ctx.batch)
        vn = sp.to_float(sp.norm(v))
        return TermEval(pscale(sp, hv, 2.0 * rho), rho * vn * vn if need_value else math.nan, vn)


@dataclass(frozen=True)
class ValueGapTerm:
    """``ρ(φ(x, y) − φ(x, z) − <μ, c(x, z)>)`` (V-PBGD; BLOCC with lower-level constraints ``c``)."""

    name: str = "value_gap"

    def evaluate(self, ctx: TermContext, q: Pair, need_value: bool) -> TermEval:
        p, inner, rho, z = ctx.problem, ctx.inner, ctx.rho, ctx.z
        sp = p.space
        x, y = q
        gq = inner.grad(x, y, batch=ctx.batch)
        vn = sp.to_float(sp.norm(gq[1]))
        gx = None
        c = p.inner_constraints
        if x is not None:
            gzx, _ = inner.grad(x, z, batch=ctx.batch)
            diff = sp.sub(gq[0], gzx)
            if c is not None and any(m != 0.0 for m in ctx.mu_inner):
                cx, _ = vjp_pair(ctx, c, (x, z), ctx.mu_inner)
                diff = sp.sub(diff, cx)
            gx = sp.scale(diff, rho)
        gy = sp.scale(gq[1], rho)
        value = math.nan
        if need_value:
            gap = sp.to_float(inner.value(x, y, batch=ctx.batch)) - sp.to_float(inner.value(x, z, batch=ctx.batch))
            if c is not None:
                gap -= sum(m * v for m, v in zip(ctx.mu_inner, constraint_values(c, x, z), strict=True))
            value = rho * gap
        return TermEval((gx, gy), value, vn)


@dataclass(frozen=True)
class WeightedSumTerm:
    """``ρ φ(x, y)`` (the scalarized baseline); the residual is ``‖∇_y φ‖``."""

    name: str = "weighted_sum"

    def evaluate(self, ctx: TermContext, q: Pair, need_value: bool) -> TermEval:
        sp = ctx.problem.space
        x, y = q
        gq = ctx.inner.grad(x, y, batch=ctx.batch)
        value = ctx.rho * sp.to_float(ctx.inner.value(x, y, batch=ctx.batch)) if need_value else math.nan
        return TermEval(pscale(sp, gq, ctx.rho), value, sp.to_float(sp.norm(gq[1])))


@dataclass(frozen=True)
class ConstraintTerm:
    """Augmented-Lagrangian term of constraints ``c(x, y) ≤ 0`` with multipliers ``ctx.multipliers[key]``
    and parameter ``σ = ρ``; the residual is the max violation ``max(0, max_i c_i)``."""

    key: str
    constraints: InequalityConstraints
    name: str = "constraints"
    sigma_scale: float = 1.0

    def sigma(self, ctx: TermContext) -> float:
        """The augmented-Lagrangian parameter ``σ = sigma_scale·ρ``."""
        return self.sigma_scale * ctx.rho

    def shifted(self, ctx: TermContext, q: Pair) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(max(0, ν + σ c(q)), c(q))``."""
        vals = constraint_values(self.constraints, q[0], q[1])
        nu = ctx.multipliers.get(self.key) or (0.0,) * len(vals)
        sigma = self.sigma(ctx)
        return tuple(max(0.0, n + sigma * v) for n, v in zip(nu, vals, strict=True)), vals

    def evaluate(self, ctx: TermContext, q: Pair, need_value: bool) -> TermEval:
        sp = ctx.problem.space
        shifted, vals = self.shifted(ctx, q)
        nu = ctx.multipliers.get(self.key) or (0.0,) * len(vals)
        viol = max(0.0, max(vals))
        if any(s != 0.0 for s in shifted):
            grad = vjp_pair(ctx, self.constraints, q, shifted)
        else:
            grad = (None if q[0] is None else sp.zeros_like(q[0]), sp.zeros_like(q[1]))
        value = math.nan
        if need_value:
            value = sum(s * s - n * n for s, n in zip(shifted, nu, strict=True)) / (2.0 * self.sigma(ctx))
        return TermEval(grad, value, viol)

    def updated_multipliers(self, ctx: TermContext, q: Pair) -> tuple[float, ...]:
        """The method-of-multipliers update ``ν ← max(0, ν + σ c(q))``."""
        return self.shifted(ctx, q)[0]


def add_eval(sp: Any, total: TermEval, term: TermEval) -> TermEval:
    """The sum of two evaluations (gradients added, values added, residual of ``total`` kept)."""
    return TermEval(paxpy(sp, 1.0, term.grad, total.grad), total.value + term.value, total.residual)

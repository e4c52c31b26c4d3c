"""Step rules as small ``(init, lookahead, apply)`` triples acting on points of the joint space.

- ``sgd``: ``p ← p − lr·G`` (the paper's analysis);
- ``adam``: bias-corrected Adam (what LLM practice uses);
- ``nesterov``: accelerated gradient (FISTA momentum) with gradient-based adaptive restart; the gradient is
  read at the look-ahead point;
- ``lbfgs``: limited-memory BFGS directions (the two-loop recursion, Nocedal & Wright, Algorithm 7.4) for
  full-batch runs with ``line_search=True``; :meth:`Lbfgs.direction` gives the direction, ``apply`` takes the
  step the solver's line search chose. Its memory is sized from the problem (:func:`lbfgs_memory`) unless given.

Examples:
    >>> import numpy as np
    >>> from ofmu_opt.backends.numpy_backend import NumpySpace
    >>> sp, rule = NumpySpace(), get_step_rule("sgd")
    >>> st = rule.init(sp, (None, np.zeros(2)))
    >>> rule.apply(sp, (None, np.ones(2)), (None, np.ones(2)), 0.5, st)[0][1].tolist()
    [0.5, 0.5]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from .._typing import Pair
from ..errors import ConfigError
from ..problem.space import VectorSpace
from .pair import paxpy, pdot, psub, pzeros

__all__ = ["STEP_RULES", "Adam", "Lbfgs", "Nesterov", "Sgd", "StepRule", "get_step_rule", "lbfgs_memory"]

LBFGS_MEMORY_MIN = 10
"""Curvature pairs kept on large problems (the customary L-BFGS memory)."""
LBFGS_MEMORY_MAX = 50
"""Curvature pairs kept on small problems."""
LBFGS_STORAGE = 2500
"""The pairs may hold up to this many numbers per side (``memory × n``) when that allows more than the minimum."""


def lbfgs_memory(n: int) -> int:
    """The L-BFGS memory for a point of ``n`` numbers: ``clamp(2500 // n, 10, 50)`` — 50 pairs up to 50 variables,
    then fewer, down to the customary 10 from 250 variables on (memory and two-loop cost grow like ``memory × n``).
    On quadratic penalty levels more pairs carry more of the Hessian (measured on benchopt's 15-variable
    ``simulated`` problem: rounds to ‖∇h‖² ≤ 1e-6 for ``gpbgd()`` 810 with 10 pairs, 395 with 15, 191 with 30, 141
    with 50, no fewer with 100; docs/solver_options.md).

    Examples:
        >>> lbfgs_memory(15), lbfgs_memory(100), lbfgs_memory(10**6)
        (50, 25, 10)
    """
    return max(LBFGS_MEMORY_MIN, min(LBFGS_MEMORY_MAX, LBFGS_STORAGE // max(n, 1)))


def _numel(v: Any) -> int:
    """How many numbers ``v`` holds (an array, a tensor, a tuple of them, or None)."""
    if v is None:
        return 0
    if isinstance(v, (tuple, list)):
        return sum(_numel(u) for u in v)
    numel = getattr(v, "numel", None)  # torch
    if callable(numel):
        return int(numel())
    return int(getattr(v, "size", 1))  # numpy, jax


class StepRule(Protocol):
    """A step rule: ``init`` its state, the ``lookahead`` point where the gradient is read, ``apply``."""

    def init(self, sp: VectorSpace, params: Pair) -> Any: ...
    def lookahead(self, sp: VectorSpace, params: Pair, state: Any) -> Pair: ...
    def apply(self, sp: VectorSpace, base: Pair, grad: Pair, lr: float, state: Any) -> tuple[Pair, Any]: ...


class SgdState(NamedTuple):
    step: int


class AdamState(NamedTuple):
    step: int
    m: Pair
    v: Pair


class NesterovState(NamedTuple):
    step: int
    prev: Pair
    t: float


@dataclass(frozen=True)
class Sgd:
    def init(self, sp: VectorSpace, params: Pair) -> SgdState:
        return SgdState(0)

    def lookahead(self, sp: VectorSpace, params: Pair, state: Any) -> Pair:
        return params

    def apply(self, sp: VectorSpace, base: Pair, grad: Pair, lr: float, state: Any) -> tuple[Pair, Any]:
        return paxpy(sp, -lr, grad, base), SgdState(state.step + 1)


@dataclass(frozen=True)
class Adam:
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def init(self, sp: VectorSpace, params: Pair) -> AdamState:
        return AdamState(0, pzeros(sp, params), pzeros(sp, params))

    def lookahead(self, sp: VectorSpace, params: Pair, state: Any) -> Pair:
        return params

    def apply(self, sp: VectorSpace, base: Pair, grad: Pair, lr: float, state: Any) -> tuple[Pair, Any]:
        k = state.step + 1

        def blk(i: int) -> tuple[Any, Any, Any]:
            g = grad[i]
            if g is None:
                return None, None, None
            m = sp.axpy(1 - self.b1, g, sp.scale(state.m[i], self.b1))
            v = sp.axpy(1 - self.b2, sp.mul(g, g), sp.scale(state.v[i], self.b2))
            mhat = sp.scale(m, 1.0 / (1 - self.b1**k))
            vhat = sp.scale(v, 1.0 / (1 - self.b2**k))
            upd = sp.div(mhat, sp.add_scalar(sp.sqrt(vhat), self.eps))
            return sp.axpy(-lr, upd, base[i]), m, v

        x, mx, vx = blk(0)
        y, my, vy = blk(1)
        return (x, y), AdamState(k, (mx, my), (vx, vy))


@dataclass(frozen=True)
class Nesterov:
    restart: bool = True

    def init(self, sp: VectorSpace, params: Pair) -> NesterovState:
        return NesterovState(0, params, 1.0)

    def lookahead(self, sp: VectorSpace, params: Pair, state: Any) -> Pair:
        t_next = (1 + math.sqrt(1 + 4 * state.t * state.t)) / 2
        mom = (state.t - 1) / t_next
        if mom == 0.0:
            return params
        return paxpy(sp, mom, psub(sp, params, state.prev), params)

    def apply(self, sp: VectorSpace, base: Pair, grad: Pair, lr: float, state: Any) -> tuple[Pair, Any]:
        # `base` is the look-ahead point; the previous iterate of the sequence is state.prev's successor,
        # which the solver passes back through `current` (see PenaltySolver.update).
        new = paxpy(sp, -lr, grad, base)
        t_next = (1 + math.sqrt(1 + 4 * state.t * state.t)) / 2
        return new, NesterovState(state.step + 1, state.prev, t_next)

    def commit(self, sp: VectorSpace, current: Pair, new: Pair, grad: Pair, state: NesterovState) -> Any:
        """Record ``current`` as the previous iterate; restart momentum when the step goes uphill."""
        t = state.t
        if self.restart and sp.to_float(pdot(sp, grad, psub(sp, new, current))) > 0:
            t = 1.0
        return NesterovState(state.step, current, t)


class LbfgsState(NamedTuple):
    """``pairs``: the kept curvature pairs (at most ``memory``); ``prev``/``prev_grad``: the last observed point and
    gradient."""

    step: int
    pairs: tuple[tuple[Pair, Pair], ...]
    prev: Pair
    prev_grad: Pair
    memory: int = LBFGS_MEMORY_MIN


@dataclass(frozen=True)
class Lbfgs:
    """L-BFGS directions with ``memory`` curvature pairs (``None``: :func:`lbfgs_memory` of the size of the point
    ``init`` receives); a pair is kept only when ``<s, y> > 0``."""

    memory: int | None = None

    def __post_init__(self) -> None:
        if self.memory is not None and (isinstance(self.memory, bool) or not isinstance(self.memory, int)
                                        or self.memory < 1):
            raise ConfigError(f"lbfgs_memory: expected an integer >= 1 or None, received {self.memory!r}")

    def init(self, sp: VectorSpace, params: Pair) -> LbfgsState:
        # prev = params with a zero gradient: the first observed pair has s = 0 and is skipped (same structure
        # every round)
        memory = self.memory if self.memory is not None else lbfgs_memory(_numel(params))
        return LbfgsState(0, (), params, pzeros(sp, params), memory)

    def lookahead(self, sp: VectorSpace, params: Pair, state: Any) -> Pair:
        return params

    def observe(self, sp: VectorSpace, point: Pair, grad: Pair, state: LbfgsState) -> LbfgsState:
        """Add the pair ``(point − prev, grad − prev_grad)`` of the last step and remember this point."""
        pairs = state.pairs
        s = psub(sp, point, state.prev)
        y = psub(sp, grad, state.prev_grad)
        sy = sp.to_float(pdot(sp, s, y))
        if sy > 1e-12 * math.sqrt(max(sp.to_float(pdot(sp, s, s)) * sp.to_float(pdot(sp, y, y)), 0.0)):
            pairs = (*pairs, (s, y))[-state.memory:]
        return state._replace(pairs=pairs, prev=point, prev_grad=grad)

    def direction(self, sp: VectorSpace, grad: Pair, state: LbfgsState) -> Pair:
        """``−H g`` by the two-loop recursion (``−g`` without pairs)."""
        q = grad
        alphas = []
        for s, y in reversed(state.pairs):
            rho = 1.0 / sp.to_float(pdot(sp, y, s))
            a = rho * sp.to_float(pdot(sp, s, q))
            alphas.append((a, rho))
            q = paxpy(sp, -a, y, q)
        if state.pairs:
            s, y = state.pairs[-1]
            q = paxpy(sp, sp.to_float(pdot(sp, s, y)) / sp.to_float(pdot(sp, y, y)) - 1.0, q, q)
        for (s, y), (a, rho) in zip(state.pairs, reversed(alphas), strict=True):
            b = rho * sp.to_float(pdot(sp, y, q))
            q = paxpy(sp, a - b, s, q)
        return paxpy(sp, -2.0, q, q)

    def apply(self, sp: VectorSpace, base: Pair, grad: Pair, lr: float, state: Any) -> tuple[Pair, Any]:
        return paxpy(sp, -lr, grad, base), state._replace(step=state.step + 1)


STEP_RULES = ("sgd", "adam", "nesterov", "lbfgs")


def get_step_rule(name: str, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                  memory: int | None = None) -> StepRule:
    """Return the step rule called ``name`` (``sgd``, ``adam``, ``nesterov`` or ``lbfgs``; ``memory``: L-BFGS's
    pairs, ``None`` = sized from the problem)."""
    if name == "sgd":
        return Sgd()
    if name == "adam":
        return Adam(b1, b2, eps)
    if name == "nesterov":
        return Nesterov()
    if name == "lbfgs":
        return Lbfgs(memory)
    raise ConfigError(f"step rule: expected one of {', '.join(STEP_RULES)}, received {name!r}")

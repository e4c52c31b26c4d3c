"""Step rules as small ``(init, lookahead, apply)`` triples acting on points of the joint space.

- ``sgd``: ``p ← p − lr·G`` (the paper's analysis);
- ``adam``: bias-corrected Adam (what LLM practice uses);
- ``nesterov``: accelerated gradient (FISTA momentum) with gradient-based adaptive restart; the gradient is
  read at the look-ahead point.

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

__all__ = ["STEP_RULES", "Adam", "Nesterov", "Sgd", "StepRule", "get_step_rule"]


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


STEP_RULES = ("sgd", "adam", "nesterov")


def get_step_rule(name: str, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> StepRule:
    """Return the step rule called ``name`` (``sgd``, ``adam`` or ``nesterov``)."""
    if name == "sgd":
        return Sgd()
    if name == "adam":
        return Adam(b1, b2, eps)
    if name == "nesterov":
        return Nesterov()
    raise ConfigError(f"step rule: expected one of {', '.join(STEP_RULES)}, received {name!r}")

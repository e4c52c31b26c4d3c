"""Operations on points ``(x, y)`` of the joint space, where ``x`` may be ``None``.

Each function maps a block operation of the :class:`~ofmu_opt.problem.space.VectorSpace` over both
blocks and skips an absent ``x``.
"""

from __future__ import annotations

import math

from .._typing import Pair, Scalar
from ..problem.space import VectorSpace

__all__ = ["padd", "paxpy", "pdot", "pfinite", "pnorm", "pscale", "psub", "pzeros"]


def pzeros(sp: VectorSpace, p: Pair) -> Pair:
    """Zeros shaped like ``p`` (``None`` stays ``None``)."""
    return (None if p[0] is None else sp.zeros_like(p[0]), sp.zeros_like(p[1]))


def padd(sp: VectorSpace, a: Pair, b: Pair) -> Pair:
    """``a + b`` blockwise."""
    return (None if a[0] is None else sp.add(a[0], b[0]), sp.add(a[1], b[1]))


def psub(sp: VectorSpace, a: Pair, b: Pair) -> Pair:
    """``a − b`` blockwise."""
    return (None if a[0] is None else sp.sub(a[0], b[0]), sp.sub(a[1], b[1]))


def pscale(sp: VectorSpace, a: Pair, s: Scalar) -> Pair:
    """``s · a`` blockwise."""
    return (None if a[0] is None else sp.scale(a[0], s), sp.scale(a[1], s))


def paxpy(sp: VectorSpace, alpha: Scalar, a: Pair, b: Pair) -> Pair:
    """``alpha * a + b``; a ``None`` block of ``a`` counts as zero."""
    x = b[0] if (a[0] is None or b[0] is None) else sp.axpy(alpha, a[0], b[0])
    return (x, sp.axpy(alpha, a[1], b[1]))


def pdot(sp: VectorSpace, a: Pair, b: Pair) -> Scalar:
    """``<a, b>`` summed over the blocks present in both."""
    d = sp.dot(a[1], b[1])
    if a[0] is not None and b[0] is not None:
        d = d + sp.dot(a[0], b[0])
    return d


def pnorm(sp: VectorSpace, a: Pair) -> float:
    """Euclidean norm of the joint vector, as a Python float."""
    return math.sqrt(max(sp.to_float(pdot(sp, a, a)), 0.0))


def pfinite(sp: VectorSpace, a: Pair) -> bool:
    """Whether every entry of every present block is finite."""
    return sp.all_finite(a[1]) and (a[0] is None or sp.all_finite(a[0]))

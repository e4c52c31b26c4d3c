"""Finite-difference checks of gradient and Hessian-vector oracles.

Examples:
    >>> from ofmu_opt.reference import get_reference
    >>> ref = get_reference("P3")
    >>> rep = check_gradient(ref.problem.space, ref.problem.inner, ref.x0, ref.y0)
    >>> rep.ok
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._typing import Batch, Vec
from .oracles import Objective, has_hvp
from .space import VectorSpace

__all__ = ["FDReport", "check_gradient", "check_hvp"]


@dataclass(frozen=True)
class FDReport:
    """Outcome of a directional finite-difference check: relative error and verdict."""

    analytic: float
    numeric: float
    rel_error: float
    rtol: float

    @property
    def ok(self) -> bool:
        return self.rel_error <= self.rtol


def _direction(space: VectorSpace, v: Vec, k: int) -> Vec:
    # a deterministic, non-degenerate direction built from the vector itself (no RNG needed):
    # d = v + 1 elementwise, normalised; for a zero vector this is the all-ones direction
    d = space.add_scalar(space.scale(v, 0.5), 1.0 + 0.1 * k)
    return space.scale(d, 1.0 / max(space.to_float(space.norm(d)), 1e-300))


def check_gradient(
    space: VectorSpace,
    obj: Objective,
    x: Vec | None,
    y: Vec,
    *,
    h: float = 1e-6,
    rtol: float = 1e-5,
    batch: Batch = None,
) -> FDReport:
    """Compare the directional derivative from ``grad`` with a central difference of ``value``."""
    gx, gy = obj.grad(x, y, batch=batch)
    dy = _direction(space, y, 0)
    analytic = space.to_float(space.dot(gy, dy))
    dx = None
    if x is not None:
        dx = _direction(space, x, 1)
        analytic += space.to_float(space.dot(gx, dx))
    xp = None if dx is None else space.axpy(h, dx, x)
    xm = None if dx is None else space.axpy(-h, dx, x)
    fp = space.to_float(obj.value(xp, space.axpy(h, dy, y), batch=batch))
    fm = space.to_float(obj.value(xm, space.axpy(-h, dy, y), batch=batch))
    numeric = (fp - fm) / (2 * h)
    err = abs(analytic - numeric) / max(1.0, abs(analytic), abs(numeric))
    return FDReport(analytic, numeric, err if math.isfinite(err) else math.inf, rtol)


def check_hvp(
    space: VectorSpace,
    obj: Objective,
    x: Vec | None,
    y: Vec,
    *,
    h: float = 1e-5,
    rtol: float = 1e-5,
    batch: Batch = None,
) -> FDReport:
    """Compare ``<d, hvp(v)>`` with a central difference of ``<d, grad>`` along ``v`` (y block)."""
    if not has_hvp(obj):
        raise ValueError("objective has no hvp oracle to check")
    v = _direction(space, y, 2)
    d = _direction(space, y, 3)
    _, hy = obj.hvp(x, y, v, batch=batch)  # type: ignore[attr-defined]
    analytic = space.to_float(space.dot(hy, d))
    _, gp = obj.grad(x, space.axpy(h, v, y), batch=batch)
    _, gm = obj.grad(x, space.axpy(-h, v, y), batch=batch)
    numeric = space.to_float(space.dot(space.sub(gp, gm), d)) / (2 * h)
    err = abs(analytic - numeric) / max(1.0, abs(analytic), abs(numeric))
    return FDReport(analytic, numeric, err if math.isfinite(err) else math.inf, rtol)

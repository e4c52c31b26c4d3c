"""Oracle protocols and a wrapper that turns plain callables into an oracle.

An objective ``h(x, y)`` is seen through its oracles:

- ``value(x, y, *, batch=None)``: the scalar value;
- ``grad(x, y, *, batch=None) -> (∇_x h, ∇_y h)`` (the x part is ``None`` when x is absent);
- optional ``hvp(x, y, v, *, batch=None) -> ∇_{(x,y)} <∇_y h, v>``: the Hessian rows of the y block
  applied to a y-vector ``v`` (one mixed block and one y block);
- optional ``tvp(x, y, u, v, *, batch=None) -> ∇_{(x,y)} (uᵀ ∇²_yy h v)``: third derivatives, needed only
  by the exact Hessian of the similarity-aware inner objective (zero for quadratics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .._typing import Batch, Pair, Scalar, Vec

__all__ = ["CallCounter", "CountingObjective", "FunctionObjective", "Objective", "has_hvp", "has_tvp"]


@runtime_checkable
class Objective(Protocol):
    """Value and gradient oracles of one objective (outer ``f`` or inner ``g``)."""

    def value(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Scalar: ...
    def grad(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Pair: ...


def has_hvp(obj: object) -> bool:
    """Whether ``obj`` provides a usable ``hvp`` oracle."""
    return callable(getattr(obj, "hvp", None)) and getattr(obj, "hvp_available", True)


def has_tvp(obj: object) -> bool:
    """Whether ``obj`` provides a usable third-order ``tvp`` oracle."""
    return callable(getattr(obj, "tvp", None)) and getattr(obj, "tvp_available", True)


@dataclass(frozen=True)
class FunctionObjective:
    """An :class:`Objective` from plain callables.

    Args:
        value_fn: ``(x, y, batch) -> scalar``.
        grad_fn: ``(x, y, batch) -> (gx, gy)``.
        hvp_fn: optional ``(x, y, v, batch) -> (hx, hy)``; without it the solver uses central finite
            differences of ``grad_fn``.
        tvp_fn: optional third-order oracle ``(x, y, u, v, batch) -> (tx, ty)``.
        quadratic: declare the objective quadratic in ``(x, y)``: third derivatives are zero, so
            ``tvp`` is known (zero) without a ``tvp_fn``.

    Examples:
        >>> import numpy as np
        >>> h = FunctionObjective(lambda x, y, b: float(y @ y) / 2, lambda x, y, b: (None, y))
        >>> h.value(None, np.array([3.0, 4.0]))
        12.5
    """

    value_fn: Callable[[Any, Any, Any], Any]
    grad_fn: Callable[[Any, Any, Any], Pair]
    hvp_fn: Callable[[Any, Any, Any, Any], Pair] | None = None
    tvp_fn: Callable[[Any, Any, Any, Any, Any], Pair] | None = None
    quadratic: bool = False

    @property
    def hvp_available(self) -> bool:
        return self.hvp_fn is not None

    @property
    def tvp_available(self) -> bool:
        return self.tvp_fn is not None or self.quadratic

    def value(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Scalar:
        return self.value_fn(x, y, batch)

    def grad(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Pair:
        return self.grad_fn(x, y, batch)

    def hvp(self, x: Vec | None, y: Vec, v: Vec, *, batch: Batch = None) -> Pair:
        if self.hvp_fn is None:
            raise NotImplementedError("this objective has no hvp oracle")
        return self.hvp_fn(x, y, v, batch)

    def tvp(self, x: Vec | None, y: Vec, u: Vec, v: Vec, *, batch: Batch = None) -> Pair:
        if self.tvp_fn is not None:
            return self.tvp_fn(x, y, u, v, batch)
        if self.quadratic:
            return None, None  # zero third derivatives; callers treat None as 0
        raise NotImplementedError("this objective has no tvp oracle")


@dataclass
class CallCounter:
    """Mutable tally of oracle calls, keyed ``"<objective>_<oracle>"`` (e.g. ``"g_hvp"``)."""

    counts: dict[str, int] = field(default_factory=dict)

    def tick(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


class CountingObjective:
    """Wraps an objective and counts every oracle call in a shared :class:`CallCounter`."""

    def __init__(self, inner: Objective, label: str, counter: CallCounter) -> None:
        self._inner = inner
        self._label = label
        self._counter = counter
        self.hvp_available = has_hvp(inner)
        self.tvp_available = has_tvp(inner)

    @property
    def wrapped(self) -> Objective:
        return self._inner

    def value(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Scalar:
        self._counter.tick(f"{self._label}_value")
        return self._inner.value(x, y, batch=batch)

    def grad(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Pair:
        self._counter.tick(f"{self._label}_grad")
        return self._inner.grad(x, y, batch=batch)

    def hvp(self, x: Vec | None, y: Vec, v: Vec, *, batch: Batch = None) -> Pair:
        self._counter.tick(f"{self._label}_hvp")
        return self._inner.hvp(x, y, v, batch=batch)  # type: ignore[attr-defined,no-any-return]

    def tvp(self, x: Vec | None, y: Vec, u: Vec, v: Vec, *, batch: Batch = None) -> Pair:
        self._counter.tick(f"{self._label}_tvp")
        return self._inner.tvp(x, y, u, v, batch=batch)  # type: ignore[attr-defined,no-any-return]

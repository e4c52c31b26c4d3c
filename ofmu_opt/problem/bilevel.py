"""The bi-level problem: ``min_{x,y} f(x,y)  s.t.  y ∈ argmin|argmax_y g(x,y)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..errors import ProblemSpecError
from .oracles import CallCounter, CountingObjective, Objective
from .space import VectorSpace

__all__ = ["BilevelProblem", "with_counter"]


@dataclass(frozen=True)
class BilevelProblem:
    """A bi-level program given by oracles.

    Args:
        outer: the outer objective ``f(x, y)`` (for unlearning: the retain loss).
        inner: the inner objective ``g(x, y)`` (for unlearning: the forget loss, with ``sense="max"``).
        space: the backend's :class:`VectorSpace` for the vectors the oracles take and return.
        sense: ``"min"`` (``y ∈ argmin g``) or ``"max"`` (``y ∈ argmax g``).
        has_x: whether an outer-only variable ``x`` exists (``False`` for simple bi-level problems).
        name: a label used in logs and results.
        inner_factory: optional backend hook ``(spec) -> inner objective`` that replaces the composed
            similarity-aware inner objective (the torch backend supplies an autodiff one).

    Examples:
        >>> from ofmu_opt.reference import get_reference
        >>> get_reference("P3").problem.has_x
        True
    """

    outer: Objective
    inner: Objective
    space: VectorSpace
    sense: Literal["min", "max"] = "min"
    has_x: bool = True
    name: str = ""
    inner_factory: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.sense not in ("min", "max"):
            raise ProblemSpecError(f"sense: expected 'min' or 'max', received {self.sense!r}")
        for label, obj in (("outer", self.outer), ("inner", self.inner)):
            if not (callable(getattr(obj, "value", None)) and callable(getattr(obj, "grad", None))):
                raise ProblemSpecError(
                    f"{label}: expected an objective with value() and grad() oracles, "
                    f"received {type(obj).__name__}"
                )
        if not isinstance(self.space, VectorSpace):
            raise ProblemSpecError(f"space: expected a VectorSpace, received {type(self.space).__name__}")

    @property
    def sign(self) -> float:
        """+1 for a minimization inner problem, -1 for a maximization one."""
        return 1.0 if self.sense == "min" else -1.0


class _CountingInner:
    """Counts the calls of a backend-built inner objective φ (``phi_value``, ``phi_grad``, ``phi_hvp``)."""

    def __init__(self, inner: Any, counter: CallCounter) -> None:
        self._inner = inner
        self._counter = counter

    def value(self, x: Any, y: Any, *, batch: Any = None) -> Any:
        self._counter.tick("phi_value")
        return self._inner.value(x, y, batch=batch)

    def grad(self, x: Any, y: Any, *, batch: Any = None) -> Any:
        self._counter.tick("phi_grad")
        return self._inner.grad(x, y, batch=batch)

    def hvp(self, x: Any, y: Any, v: Any, *, batch: Any = None) -> Any:
        self._counter.tick("phi_hvp")
        return self._inner.hvp(x, y, v, batch=batch)


def with_counter(problem: BilevelProblem, counter: CallCounter) -> BilevelProblem:
    """Return a copy of ``problem`` whose oracles tally their calls in ``counter``.

    A backend's ``inner_factory`` is wrapped too, so calls of the φ it builds are counted
    (``phi_value``, ``phi_grad``, ``phi_hvp``) instead of disappearing from ``result.counts``.
    """
    factory = problem.inner_factory
    counted_factory = None if factory is None else (lambda spec: _CountingInner(factory(spec), counter))
    return replace(
        problem,
        outer=CountingObjective(problem.outer, "f", counter),
        inner=CountingObjective(problem.inner, "g", counter),
        inner_factory=counted_factory,
    )

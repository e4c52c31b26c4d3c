"""The bi-level problem: ``min_{x ∈ X, y} f(x,y)  s.t.  G(x,y) ≤ 0,  y ∈ argmin|argmax_{y ∈ Y, c(x,y) ≤ 0} g(x,y)``.

The constraints (``x_set`` X, ``y_set`` Y, lower-level ``inner_constraints`` c, upper-level
``outer_constraints`` G) are optional; see :mod:`ofmu_opt.problem.constraints`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..errors import ProblemSpecError
from .constraints import ConvexSet, InequalityConstraints, check_constraints, check_set
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
        x_set: optional simple set X for x (a :class:`~ofmu_opt.problem.constraints.ConvexSet`: projected steps).
        y_set: optional simple set Y for y; part of the lower-level problem (``y ∈ argmin_{y∈Y} g``), and every
            iterate y (and the solver's inner surrogate) stays in it by projection.
        inner_constraints: optional lower-level inequality constraints ``c(x, y) ≤ 0``, convex in y
            (:class:`~ofmu_opt.problem.constraints.InequalityConstraints`).
        outer_constraints: optional upper-level inequality constraints ``G(x, y) ≤ 0`` (handled by a penalty
            with multipliers).
        local_is_global: declare that every local solution of the bi-level problem is a global one, so that a
            stationary point the solvers stop at solves the posed problem. True, for example, when there is no
            outer-only x and both levels are convex (the lower level's solution set is convex), or when f is jointly
            convex and the lower-level solution map ``y*(x)`` is affine (an unconstrained lower level that is a
            strongly convex quadratic in y with a linear x-coupling). Constrained lower levels make ``y*(x)``
            piecewise and create local minima even with convex objectives (docs/references.md). Without the
            declaration (the default) a run whose stopping test is met ends with status ``stationary``,
            not ``converged``.

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
    x_set: ConvexSet | None = None
    y_set: ConvexSet | None = None
    inner_constraints: InequalityConstraints | None = None
    outer_constraints: InequalityConstraints | None = None
    local_is_global: bool = False

    def __post_init__(self) -> None:
        if self.sense not in ("min", "max"):
            raise ProblemSpecError(f"sense: expected 'min' or 'max', received {self.sense!r}")
        if not isinstance(self.local_is_global, bool):
            raise ProblemSpecError(f"local_is_global: expected True or False, received {self.local_is_global!r}")
        for label, obj in (("outer", self.outer), ("inner", self.inner)):
            if not (callable(getattr(obj, "value", None)) and callable(getattr(obj, "grad", None))):
                raise ProblemSpecError(
                    f"{label}: expected an objective with value() and grad() oracles, "
                    f"received {type(obj).__name__}"
                )
        if not isinstance(self.space, VectorSpace):
            raise ProblemSpecError(f"space: expected a VectorSpace, received {type(self.space).__name__}")
        for label in ("x_set", "y_set"):
            if getattr(self, label) is not None:
                check_set(getattr(self, label), label)
        if self.x_set is not None and not self.has_x:
            raise ProblemSpecError("x_set: the problem has no outer variable x (has_x=False); expected None")
        for label in ("inner_constraints", "outer_constraints"):
            if getattr(self, label) is not None:
                check_constraints(getattr(self, label), label)

    @property
    def constrained(self) -> bool:
        """Whether any constraint (set or inequality) is present."""
        return any(c is not None for c in (self.x_set, self.y_set, self.inner_constraints, self.outer_constraints))

    @property
    def inner_constrained(self) -> bool:
        """Whether the lower-level problem is constrained (``y_set`` or ``inner_constraints``)."""
        return self.y_set is not None or self.inner_constraints is not None

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

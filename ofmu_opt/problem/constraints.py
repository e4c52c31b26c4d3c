r"""Constraint protocols of a bi-level problem and the feasibility report (no array library here).

Two kinds, matching how the solver treats them:

- **simple sets** :math:`x \in X`, :math:`y \in Y`: a :class:`ConvexSet` with a Euclidean ``project`` and a
  ``violation``. The solver takes projected steps in the inner and the outer loop, so iterates stay in the set.
- **inequality constraints** :math:`c(x, y) \le 0` (``count`` components): :class:`InequalityConstraints`
  with a ``value`` oracle and a vector-Jacobian product ``vjp(x, y, mu) = ∇_{(x,y)} Σ_i mu_i c_i(x, y)``.
  Lower-level ones (``BilevelProblem.inner_constraints``) must be convex in ``y``; upper-level ones
  (``BilevelProblem.outer_constraints``) are handled by a penalty with multipliers.

Concrete sets and constraints for numpy arrays and torch tensors (``Box``, ``NonNegative``, ``Ball``,
``Simplex``, ``Affine``, ``UserProjection``, ``FunctionConstraints``, ``LinearConstraints``) live in
:mod:`ofmu_opt.backends.constraints` and are exported from :mod:`ofmu_opt`. Any object with the same
methods works (e.g. a set for a sharded tensor).

Examples:
    >>> import numpy as np
    >>> from ofmu_opt.backends.constraints import Box
    >>> isinstance(Box(0.0, 1.0), ConvexSet)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .._typing import Pair, Vec
from ..errors import OracleError, ProblemSpecError

__all__ = [
    "ConvexSet",
    "InequalityConstraints",
    "check_constraints",
    "check_set",
    "constraint_values",
    "feasibility",
]


@runtime_checkable
class ConvexSet(Protocol):
    """A closed convex set with a Euclidean projection."""

    def project(self, v: Vec) -> Vec:
        """The nearest point of the set to ``v`` (same type, shape, dtype and device)."""
        ...

    def violation(self, v: Vec) -> float:
        """How far ``v`` is outside the set (0 inside; the max over the set's defining conditions)."""
        ...


@runtime_checkable
class InequalityConstraints(Protocol):
    """``count`` constraints ``c(x, y) ≤ 0`` seen through two oracles.

    - ``value(x, y)``: the ``count`` constraint values (a list, a 1-D array or a 1-D tensor);
    - ``vjp(x, y, mu)``: ``∇_{(x,y)} Σ_i mu_i c_i(x, y)`` as a pair ``(gx, gy)`` of vectors of the problem's
      space (``gx`` may be ``None`` when x is absent); ``mu`` is a tuple of ``count`` floats.
    """

    @property
    def count(self) -> int: ...

    def value(self, x: Vec | None, y: Vec) -> Any: ...
    def vjp(self, x: Vec | None, y: Vec, mu: Sequence[float]) -> Pair: ...


def constraint_values(c: InequalityConstraints, x: Vec | None, y: Vec) -> tuple[float, ...]:
    """``c.value(x, y)`` as a tuple of ``c.count`` Python floats.

    Raises:
        OracleError: the oracle returned the wrong number of values or something that is not numeric.
    """
    raw = c.value(x, y)
    try:
        shape = getattr(raw, "shape", None)
        if shape is not None and len(shape) == 0:
            vals: tuple[float, ...] = (float(raw),)
        elif isinstance(raw, (int, float)):
            vals = (float(raw),)
        else:
            flat = raw.reshape(-1) if shape is not None and len(shape) > 1 else raw
            vals = tuple(float(v) for v in flat)
    except (TypeError, ValueError) as exc:
        raise OracleError(
            f"constraints.value: expected {c.count} numbers, received {type(raw).__name__}") from exc
    if len(vals) != c.count:
        raise OracleError(f"constraints.value: expected {c.count} values, received {len(vals)}")
    return vals


def check_constraints(obj: Any, label: str) -> None:
    """Raise :class:`ProblemSpecError` unless ``obj`` has an integer ``count >= 1``, ``value`` and ``vjp``."""
    if not (callable(getattr(obj, "value", None)) and callable(getattr(obj, "vjp", None))):
        raise ProblemSpecError(
            f"{label}: expected inequality constraints with value() and vjp() oracles (e.g. FunctionConstraints), "
            f"received {type(obj).__name__}")
    count = getattr(obj, "count", None)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ProblemSpecError(f"{label}: expected a constraint count >= 1, received {count!r}")


def check_set(obj: Any, label: str) -> None:
    """Raise :class:`ProblemSpecError` unless ``obj`` has ``project`` and ``violation``."""
    if not (callable(getattr(obj, "project", None)) and callable(getattr(obj, "violation", None))):
        raise ProblemSpecError(
            f"{label}: expected a set with project() and violation() (Box, Ball, Simplex, Affine, UserProjection), "
            f"received {type(obj).__name__}")


def feasibility(problem: Any, x: Vec | None, y: Vec) -> dict[str, float]:
    """The max violation of each constraint of ``problem`` at ``(x, y)`` (0 = feasible). Keys appear only
    for the constraints the problem has: ``x_set``, ``y_set``, ``inner_constraints``, ``outer_constraints``.

    Examples:
        >>> from ofmu_opt.reference import get_reference
        >>> ref = get_reference("P3")
        >>> feasibility(ref.problem, ref.x0, ref.y0)
        {}
    """
    out: dict[str, float] = {}
    xs = getattr(problem, "x_set", None)
    if xs is not None and x is not None:
        out["x_set"] = float(xs.violation(x)) + 0.0  # + 0.0: no "-0.0" in reports
    ys = getattr(problem, "y_set", None)
    if ys is not None:
        out["y_set"] = float(ys.violation(y)) + 0.0
    for key in ("inner_constraints", "outer_constraints"):
        c = getattr(problem, key, None)
        if c is not None:
            vals = constraint_values(c, x, y)
            worst = max(vals) if vals else 0.0
            out[key] = max(worst, 0.0) if math.isfinite(worst) else math.inf
    return out

"""The record every theory function returns, and small sympy/numpy helpers.

A :class:`Derivation` holds a sympy expression (``expr``), a numeric form of it (``numeric``), the
equation it covers (``cites``) and the keys of the assumptions under which it holds (``assumptions``, see
:mod:`theory.assumptions`). A derivation that *checks an identity* also carries the closed form that
``expr`` must equal (``rhs``, with its own numeric form ``numeric_rhs``); :meth:`Derivation.identity`
returns the pair ``(lhs, rhs)`` for the test ``sympy.simplify(lhs - rhs) == 0``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

__all__ = ["Derivation", "drop_dirac", "lambdify_vector", "norm", "real_vector", "sym_matrix"]


@dataclass(frozen=True)
class Derivation:
    """A symbolic result with its numeric form, its citation and its assumptions.

    Attributes:
        name: a short identifier (``"cosine_partials[signed]"``).
        expr: the derived sympy expression or immutable matrix (obtained by sympy: ``diff``, ``solve``,
            Taylor coefficients), not typed in by hand.
        numeric: a float64 numeric form of ``expr`` (``sympy.lambdify`` underneath); its arguments are
            described by ``args``.
        args: the sympy symbols, in the order ``numeric`` takes them (a tuple entry stands for a vector).
        cites: the equation covered: OFMU_SPEC.md section and, where it exists, the paper's equation.
        assumptions: keys of :data:`theory.assumptions.ASSUMPTIONS` under which the result holds.
        rhs: for an identity, the closed form that ``expr`` must equal; ``None`` otherwise.
        numeric_rhs: a numeric form of ``rhs`` (for closed forms valid in any dimension, it takes arrays of
            any length).
        substitutions: replacements applied to both sides by :meth:`identity` before they are compared
            (e.g. ``sign(c) -> σ`` for the ``abs`` kind, valid where ``c ≠ 0``).
    """

    name: str
    expr: Any
    numeric: Callable[..., Any]
    args: tuple[Any, ...]
    cites: str
    assumptions: tuple[str, ...]
    rhs: Any = None
    numeric_rhs: Callable[..., Any] | None = None
    substitutions: Mapping[Any, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .assumptions import ASSUMPTIONS

        unknown = [k for k in self.assumptions if k not in ASSUMPTIONS]
        if unknown:
            raise ValueError(
                f"assumptions: expected keys of theory.assumptions.ASSUMPTIONS, received {unknown!r}"
            )
        if not self.cites:
            raise ValueError(f"cites: expected the equation covered by {self.name!r}, received ''")

    @property
    def is_identity(self) -> bool:
        """Whether this derivation states ``expr == rhs``."""
        return self.rhs is not None

    def identity(self) -> tuple[Any, Any]:
        """Return ``(lhs, rhs)`` with :attr:`substitutions` applied, ready for ``simplify(lhs - rhs)``.

        Raises:
            ValueError: if the derivation states no identity.
        """
        if self.rhs is None:
            raise ValueError(f"{self.name}: expected an identity (rhs set), received rhs=None")
        subs = dict(self.substitutions)
        lhs, rhs = self.expr, self.rhs
        if subs:
            lhs, rhs = lhs.xreplace(subs), rhs.xreplace(subs)
        return lhs, rhs


def real_vector(name: str, dim: int) -> sp.ImmutableMatrix:
    """A column of ``dim`` real symbols ``name1 .. name{dim}``."""
    return sp.ImmutableMatrix(sp.symbols(f"{name}1:{dim + 1}", real=True))


def sym_matrix(name: str, dim: int) -> tuple[sp.ImmutableMatrix, tuple[sp.Symbol, ...]]:
    """A symmetric ``dim x dim`` matrix of real symbols and its free entries (upper triangle, row-major)."""
    entries: dict[tuple[int, int], sp.Symbol] = {}
    for i in range(dim):
        for j in range(i, dim):
            entries[i, j] = sp.Symbol(f"{name}{i + 1}{j + 1}", real=True)
    m = sp.ImmutableMatrix(dim, dim, lambda i, j: entries[min(i, j), max(i, j)])
    return m, tuple(entries.values())


def norm(v: Any) -> Any:
    """Euclidean norm of a sympy column."""
    return sp.sqrt(sum(e**2 for e in v))


def drop_dirac(expr: Any) -> Any:
    """Replace ``DiracDelta(...)`` (from differentiating sign(c)) by 0, valid where c ≠ 0 (assumption A3)."""
    return expr.replace(sp.DiracDelta, lambda *_: sp.Integer(0))


def _to_float_array(out: Any) -> Any:
    arr = np.asarray(out, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        return arr[:, 0]
    if arr.ndim == 0:
        return float(arr)
    return arr


def lambdify_vector(args: Iterable[Any], expr: Any) -> Callable[..., Any]:
    """``sympy.lambdify`` for numpy that returns a float, a 1-D array (for a column) or a 2-D array."""
    f = sp.lambdify(list(args), expr, modules="numpy")

    def numeric(*values: Any) -> Any:
        return _to_float_array(f(*values))

    numeric.__doc__ = f"Numeric form of {expr!s:.200}"
    return numeric

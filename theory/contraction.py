r"""Contraction of T inner gradient steps: error after T steps ≤ (1 − μ/L)^T × initial error.

For a quadratic :math:`q(z) = \tfrac12(z - z^*)^\top A(z - z^*)` with :math:`\mu I \preceq A \preceq LI`, one
gradient step with step 1/L maps the error :math:`e = z - z^*` to :math:`(I - A/L)e`, whose eigenvalues
:math:`1 - \lambda_i/L` lie in :math:`[0, 1 - \mu/L]`. Hence :math:`\|e_T\| \le (1 - \mu/L)^T\|e_0\|`, with
equality when :math:`e_0` is an eigenvector for μ. The inner loop of OFMU ascends Φ, i.e. descends −Φ, so
the statement applies with −Φ μ-strongly convex and L-smooth (assumption A10; for twice differentiable
non-quadratic −Φ the same factor bounds the distance by the integral mean-value theorem).

Example:
    >>> round(contraction_factor().numeric(1.0, 4.0, 2), 12)
    0.5625
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import sympy as sp

from ._derivation import Derivation, lambdify_vector, sym_matrix

__all__ = ["contraction_factor", "gd_error_after_steps", "gd_error_np", "gd_step_map"]

MU, LAM, L = sp.symbols("mu lambda L", positive=True)
T = sp.Symbol("T", integer=True, positive=True)
_CITE = "OFMU_SPEC.md §3: T inner gradient steps contract the inner error by (1 − μ/L)^T"
_ASSUME = ("A10_smooth_strongly_convex",)


def gd_error_np(A: Any, e0: Any, L_smooth: float, steps: int) -> np.ndarray:
    """The error after ``steps`` gradient steps with step 1/L on ``½eᵀAe`` (plain iteration)."""
    A, e = np.asarray(A, dtype=np.float64), np.asarray(e0, dtype=np.float64).copy()
    for _ in range(steps):
        e = e - (A @ e) / L_smooth
    return e


@cache
def contraction_factor() -> Derivation:
    r"""The bound's factor :math:`(1 - \mu/L)^T`.

    Returns:
        Derivation with ``numeric(mu, L, T)``.

    Example:
        >>> contraction_factor().expr
        (1 - mu/L)**T

    References:
        OFMU_SPEC.md §3.
    """
    expr = (1 - MU / L) ** T
    return Derivation("contraction_factor", expr, lambdify_vector((MU, L, T), expr), (MU, L, T), _CITE, _ASSUME)


@cache
def gd_step_map() -> Derivation:
    r"""The Jacobian of one gradient step z ↦ z − ∇q(z)/L on a 2-D quadratic with symbolic symmetric A.

    ``expr`` is ``sympy.jacobian`` of the step map (∇q by ``sympy.diff``); ``rhs`` = I − A/L.

    Returns:
        Derivation with ``numeric(A11, A12, A22, L)``.

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = gd_step_map().identity()
        >>> all(sp.simplify(e) == 0 for e in lhs - rhs)
        True

    References:
        OFMU_SPEC.md §3.
    """
    A, ent = sym_matrix("A", 2)
    z = sp.Matrix(sp.symbols("z1 z2", real=True))
    zs = sp.Matrix(sp.symbols("zs1 zs2", real=True))
    q = (z - zs).dot(A * (z - zs)) / 2
    step = z - sp.Matrix([sp.diff(q, v) for v in z]) / L
    expr = sp.ImmutableMatrix(step.jacobian(z))
    rhs = sp.ImmutableMatrix(sp.eye(2) - A / L)
    args = (*ent, L)
    return Derivation("gd_step_map", expr, lambdify_vector(args, expr), args, _CITE, _ASSUME, rhs=rhs,
                      numeric_rhs=lambdify_vector(args, rhs))


@cache
def gd_error_after_steps() -> Derivation:
    r"""The error after T steps in the eigenbasis of A = diag(μ, λ, L), T symbolic.

    ``expr`` is :math:`(I - A/L)^T e_0` (sympy matrix power); ``rhs`` is
    :math:`((1 - \mu/L)^T e_1, (1 - \lambda/L)^T e_2, 0)`. Since :math:`0 \le 1 - \lambda/L \le 1 - \mu/L`
    for μ ≤ λ ≤ L, :math:`\|e_T\|^2 \le (1 - \mu/L)^{2T}\|e_0\|^2`, with equality for :math:`e_0 = (e_1, 0,
    0)` (the μ-eigen-direction). (Any symmetric A reduces to this by an orthogonal change of basis, which
    preserves norms.)

    Returns:
        Derivation with ``numeric(mu, lambda, L, e0, T) -> e_T``.

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = gd_error_after_steps().identity()
        >>> [sp.simplify(e) for e in lhs - rhs]
        [0, 0, 0]

    References:
        OFMU_SPEC.md §3.
    """
    e0 = sp.Matrix(sp.symbols("e1:4", real=True))
    step = sp.eye(3) - sp.diag(MU, LAM, L) / L
    expr = sp.ImmutableMatrix((step**T) * e0)
    rhs = sp.ImmutableMatrix([(1 - MU / L) ** T * e0[0], (1 - LAM / L) ** T * e0[1], 0])
    args = (MU, LAM, L, tuple(e0), T)
    return Derivation("gd_error_after_steps", expr, lambdify_vector(args, expr), args, _CITE, _ASSUME, rhs=rhs,
                      numeric_rhs=lambdify_vector(args, rhs))

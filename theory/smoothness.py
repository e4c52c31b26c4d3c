r"""The smoothness of the penalized objective grows like ρ (OFMU_SPEC.md §2 and §3).

For a penalty ρ‖h(z)‖² with affine h (Jacobian J) and a quadratic outer objective with Hessian
:math:`H_{out}` (assumption A4), :math:`\nabla^2 F = H_{out} + 2\rho M`, :math:`M = J^\top J`, so

.. math::  L_\rho = \lambda_{\max}(H_{out} + 2\rho M), \qquad
           2\rho\,\lambda_{\max}(M) + \lambda_{\min}(H_{out}) \le L_\rho \le 2\rho\,\lambda_{\max}(M)
           + \lambda_{\max}(H_{out})

(Weyl), hence :math:`L_\rho/\rho \to 2\lambda_{\max}(M)` with error at most :math:`\|H_{out}\|_2/\rho`. A
fixed gradient step must therefore be O(1/ρ). For Q-OFMU, :math:`H_{out} = B`, :math:`M = A^2`. For
non-quadratic Φ, :func:`~theory.penalty.penalized_hessian_generic` adds :math:`2\rho\nabla^3\Phi[\nabla\Phi]`.

Example:
    >>> import numpy as np
    >>> round(penalized_smoothness_np(np.eye(2), np.diag([1.0, 0.0]), 10.0), 12)
    21.0
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import sympy as sp

from ._derivation import Derivation, lambdify_vector, sym_matrix

__all__ = ["lambda_max_2x2", "penalized_smoothness_np", "qofmu_penalized_hessian", "smoothness_growth"]

RHO = sp.Symbol("rho", positive=True)
_LAMBDA = sp.Symbol("lambda", real=True)
_CITE = ("OFMU_SPEC.md §2 ('the penalized objective's smoothness grows like ρ') and §3 "
         "('the penalized objective's smoothness L_ρ grows like ρ')")


def penalized_smoothness_np(H_out: Any, M: Any, rho: float) -> float:
    """L_ρ = λ_max(H_out + 2ρM) for symmetric matrices of any size."""
    H_out, M = np.asarray(H_out, dtype=np.float64), np.asarray(M, dtype=np.float64)
    return float(np.linalg.eigvalsh(H_out + 2.0 * rho * M).max())


def _lmax_formula(S: Any) -> Any:
    return (S[0, 0] + S[1, 1]) / 2 + sp.sqrt((S[0, 0] - S[1, 1]) ** 2 / 4 + S[0, 1] ** 2)


@cache
def lambda_max_2x2() -> Derivation:
    r"""The largest eigenvalue of a symmetric 2 x 2 matrix, :math:`\operatorname{tr}/2 + \sqrt{(s_{11} -
    s_{22})^2/4 + s_{12}^2}`, checked as a root of the characteristic polynomial.

    ``expr`` is :math:`\det(S - \lambda I)` at λ = the formula; ``rhs`` is 0.

    Returns:
        Derivation with ``numeric(s11, s12, s22)`` = the formula.

    Example:
        >>> round(lambda_max_2x2().numeric(2.0, 0.0, 1.0), 12)
        2.0

    References:
        Used by :func:`smoothness_growth`.
    """
    S, ent = sym_matrix("s", 2)
    lmax = _lmax_formula(S)
    expr = (sp.Matrix(S) - _LAMBDA * sp.eye(2)).det().subs(_LAMBDA, lmax)
    return Derivation("lambda_max_2x2", expr, lambdify_vector(ent, lmax), ent, _CITE, (),
                      rhs=sp.Integer(0), numeric_rhs=lambda *_: 0.0)


@cache
def qofmu_penalized_hessian(dim: int = 2) -> Derivation:
    r"""∇²F for Q-OFMU (β = 0): ``expr`` by ``sympy.hessian`` of F; ``rhs`` = :math:`B + 2\rho A^2`.

    Args:
        dim: 1 or 2.

    Returns:
        Derivation with ``numeric(A-entries, B-entries, rho)`` (upper triangles, row-major).

    Raises:
        ValueError: for another ``dim``.

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = qofmu_penalized_hessian(2).identity()
        >>> all(sp.simplify(e) == 0 for e in lhs - rhs)
        True

    References:
        REFERENCE_PROBLEMS.md Q-OFMU; OFMU_SPEC.md §2.
    """
    if dim not in (1, 2):
        raise ValueError(f"dim: expected 1 or 2, received {dim!r}")
    A, a_ent = sym_matrix("A", dim)
    B, b_ent = sym_matrix("B", dim)
    th = sp.ImmutableMatrix(sp.symbols(f"theta1:{dim + 1}", real=True))
    av = sp.ImmutableMatrix(sp.symbols(f"a1:{dim + 1}", real=True))
    bv = sp.ImmutableMatrix(sp.symbols(f"b1:{dim + 1}", real=True))
    g = -A * (th - av)
    f = (th - bv).dot(B * (th - bv)) / 2 + RHO * g.dot(g)
    expr = sp.ImmutableMatrix(sp.hessian(f, tuple(th)))
    rhs = sp.ImmutableMatrix(B + 2 * RHO * A * A)
    args = (*a_ent, *b_ent, RHO)
    return Derivation(f"qofmu_penalized_hessian[{dim}]", expr, lambdify_vector(args, expr), args, _CITE,
                      ("A4_quadratic_models", "A5_beta_zero"), rhs=rhs, numeric_rhs=lambdify_vector(args, rhs))


@cache
def smoothness_growth() -> Derivation:
    r"""lim_{ρ→∞} L_ρ/ρ = 2λ_max(M) for symmetric 2 x 2 H_out and M, all entries symbolic.

    ``expr`` is ``sympy.limit`` of :math:`\lambda_{\max}(H_{out} + 2\rho M)/\rho` (closed-form
    λ_max of :func:`lambda_max_2x2`); ``rhs`` is :math:`2\lambda_{\max}(M) = \operatorname{tr}M +
    \sqrt{(m_{11} - m_{22})^2 + 4m_{12}^2}`. The limit does not depend on H_out: the curvature the step
    size must respect is dominated by the penalty.

    Returns:
        Derivation with ``numeric(h11, h12, h22, m11, m12, m22, rho)`` = L_ρ (the finite-ρ smoothness)
        and ``numeric_rhs(m11, m12, m22)`` = 2λ_max(M).

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = smoothness_growth().identity()
        >>> sp.simplify(lhs - rhs)
        0

    References:
        OFMU_SPEC.md §2, §3.
    """
    H, h_ent = sym_matrix("h", 2)
    M, m_ent = sym_matrix("m", 2)
    l_rho = _lmax_formula(H + 2 * RHO * M)
    expr = sp.limit(l_rho / RHO, RHO, sp.oo)
    rhs = 2 * _lmax_formula(M)
    return Derivation(
        "smoothness_growth", expr, lambdify_vector((*h_ent, *m_ent, RHO), l_rho), (*h_ent, *m_ent, RHO), _CITE,
        ("A4_quadratic_models",), rhs=rhs, numeric_rhs=lambdify_vector(m_ent, rhs),
    )

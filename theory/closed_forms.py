r"""Closed-form penalized minimizers and their Θ(1/ρ) bias (Q-OFMU, P3, P9 of REFERENCE_PROBLEMS.md).

All problems here are instances of one quadratic penalty: minimize :math:`f(z) = \tfrac12 z^\top P z + q^\top z`
subject to the affine constraint :math:`Gz = r`, relaxed to

.. math::  F_\rho(z) = f(z) + \tfrac{\rho}{2}(Gz - r)^\top W (Gz - r), \qquad W \succ 0,

whose minimizer is :math:`z(\rho) = (P + \rho G^\top W G)^{-1}(-q + \rho G^\top W r)`. If G has full row
rank and P is positive definite on null(G) (assumption A9), then as ρ → ∞

.. math::  z(\rho) = z^* + w/\rho + O(1/\rho^2), \qquad
           \begin{pmatrix} P & G^\top \\ G & 0 \end{pmatrix}\begin{pmatrix} w \\ \nu \end{pmatrix}
           = \begin{pmatrix} 0 \\ W^{-1}\lambda^* \end{pmatrix},

where :math:`(z^*, \lambda^*)` solves the KKT system :math:`Pz^* + q + G^\top\lambda^* = 0`,
:math:`Gz^* = r`. (Expanding the optimality condition :math:`\nabla f(z) + \rho G^\top W(Gz - r) = 0` in
1/ρ: order 1 gives :math:`G^\top(WGw - \lambda^*) = 0`, order 1/ρ gives :math:`Pw \in \operatorname{range}
G^\top`.) So :math:`\|z(\rho) - z^*\| = \Theta(1/\rho)` exactly when :math:`\lambda^* \neq 0`.

Instances (β = 0):

- Q-OFMU: :math:`L_f = -\tfrac12(\theta-a)^\top A(\theta-a)`, :math:`L_r = \tfrac12(\theta-b)^\top B(\theta-b)`;
  the stationarity penalty :math:`\rho\|\nabla\Phi\|^2 = \rho\|A(\theta - a)\|^2` gives
  :math:`\theta(\rho) = (B + 2\rho A^2)^{-1}(Bb + 2\rho A^2 a) \to a`, with :math:`w = \tfrac12 A^{-2}B(b-a)`
  for A ≻ 0.
- P3 stationarity: :math:`F = f + \rho\|Qy + C^\top x + a\|^2`, i.e. G = [Cᵀ Q], r = −a, W = 2I.
- P3 value gap (P9): :math:`F = f + \rho(g(x,y) - \min_z g(x,z)) = f + \tfrac{\rho}{2}(y - Jx - c)^\top Q
  (y - Jx - c)`, i.e. G = [−J I], r = c, W = Q.

The ``*_np`` functions are the general-matrix numeric forms; the :class:`~theory.Derivation` functions derive
the same objects symbolically in dimension 1 or 2.

Example:
    >>> import numpy as np
    >>> A, B = np.diag([1.0, 2.0]), np.eye(2)
    >>> a, b = np.zeros(2), np.ones(2)
    >>> np.round(qofmu_penalized_minimizer_np(A, B, a, b, 1e6) * 1e6, 3).tolist()
    [0.5, 0.125]
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import sympy as sp

from ._derivation import Derivation, lambdify_vector, sym_matrix

__all__ = [
    "P3_PENALTIES",
    "constrained_minimizer_np",
    "p3_base_inner_gradient",
    "p3_bias_coefficient",
    "p3_bias_coefficient_np",
    "p3_limit",
    "p3_penalized_minimizer",
    "p3_penalized_minimizer_np",
    "p3_quadratic_data",
    "p3_solution_np",
    "qofmu_bias_coefficient",
    "qofmu_bias_coefficient_np",
    "qofmu_limit",
    "qofmu_penalized_minimizer",
    "qofmu_penalized_minimizer_np",
    "qofmu_quadratic_data",
    "qofmu_solution_np",
    "quadratic_penalty_bias",
    "quadratic_penalty_bias_np",
    "quadratic_penalty_minimizer_np",
]

RHO = sp.Symbol("rho", positive=True)
_EPS = sp.Symbol("varepsilon", positive=True)  # 1/ρ

P3_PENALTIES = ("stationarity", "value_gap")

_CITE_Q = ("REFERENCE_PROBLEMS.md Q-OFMU; OFMU_SPEC.md §1 stationarity penalty F = L_r + ρ‖∇Φ‖² "
           "(paper Eq. 7) and §3 'penalty bias Θ(1/ρ)'")
_CITE_P3 = ("REFERENCE_PROBLEMS.md P3/P9; OFMU_SPEC.md §2 penalty = stationarity | value_gap and §3 "
            "'penalty bias Θ(1/ρ)'")


# ---------------------------------------------------------------------------------------------------
# General quadratic penalty (numpy, any dimension)
# ---------------------------------------------------------------------------------------------------


def quadratic_penalty_minimizer_np(
    P: Any, q: Any, G: Any, r: Any, W: Any, rho: float
) -> np.ndarray:
    """Minimizer of ``½zᵀPz + qᵀz + (ρ/2)(Gz − r)ᵀW(Gz − r)``: ``(P + ρGᵀWG)⁻¹(−q + ρGᵀWr)``."""
    P, q, G, r, W = (np.asarray(v, dtype=np.float64) for v in (P, q, G, r, W))
    return np.linalg.solve(P + rho * G.T @ W @ G, -q + rho * G.T @ W @ r)


def constrained_minimizer_np(P: Any, q: Any, G: Any, r: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(z*, λ*)`` of ``min ½zᵀPz + qᵀz s.t. Gz = r`` from the KKT system (G full row rank, A9)."""
    P, q, G, r = (np.asarray(v, dtype=np.float64) for v in (P, q, G, r))
    n, m = P.shape[0], G.shape[0]
    K = np.block([[P, G.T], [G, np.zeros((m, m))]])
    sol = np.linalg.solve(K, np.concatenate([-q, r]))
    return sol[:n], sol[n:]


def quadratic_penalty_bias_np(P: Any, q: Any, G: Any, r: Any, W: Any) -> np.ndarray:
    """The coefficient w of ``z(ρ) = z* + w/ρ + O(1/ρ²)`` (module docstring; assumption A9)."""
    P, q, G, r, W = (np.asarray(v, dtype=np.float64) for v in (P, q, G, r, W))
    _, lam = constrained_minimizer_np(P, q, G, r)
    n, m = P.shape[0], G.shape[0]
    K = np.block([[P, G.T], [G, np.zeros((m, m))]])
    return np.linalg.solve(K, np.concatenate([np.zeros(n), np.linalg.solve(W, lam)]))[:n]


# ---------------------------------------------------------------------------------------------------
# Q-OFMU (numpy)
# ---------------------------------------------------------------------------------------------------


def qofmu_quadratic_data(A: Any, B: Any, a: Any, b: Any, tol: float = 1e-10) -> tuple[np.ndarray, ...]:
    """``(P, q, G, r, W)`` of the Q-OFMU stationarity penalty; G has full row rank even for singular A.

    ρ‖A(θ−a)‖² = (ρ/2)(Gθ − r)ᵀW(Gθ − r) with G = U_+ᵀ, r = U_+ᵀa, W = 2Λ_+², where A = U_+Λ_+U_+ᵀ is
    the eigendecomposition restricted to eigenvalues > tol·max(1, λ_max).
    """
    A, B, a, b = (np.asarray(v, dtype=np.float64) for v in (A, B, a, b))
    lam, U = np.linalg.eigh(A)
    keep = np.abs(lam) > tol * max(1.0, float(np.abs(lam).max()))
    Up, lp = U[:, keep], lam[keep]
    return B, -B @ b, Up.T, Up.T @ a, np.diag(2.0 * lp**2)


def qofmu_penalized_minimizer_np(A: Any, B: Any, a: Any, b: Any, rho: float) -> np.ndarray:
    """θ(ρ) = (B + 2ρA²)⁻¹(Bb + 2ρA²a), any dimension."""
    A, B, a, b = (np.asarray(v, dtype=np.float64) for v in (A, B, a, b))
    A2 = A @ A
    return np.linalg.solve(B + 2 * rho * A2, B @ b + 2 * rho * A2 @ a)


def qofmu_solution_np(A: Any, B: Any, a: Any, b: Any, tol: float = 1e-10) -> np.ndarray:
    """θ* = argmin L_r over the maximizers a + null(A) of L_f (= a when A ≻ 0; assumptions A6/A7)."""
    P, q, G, r, _ = qofmu_quadratic_data(A, B, a, b, tol)
    return constrained_minimizer_np(P, q, G, r)[0]


def qofmu_bias_coefficient_np(A: Any, B: Any, a: Any, b: Any, tol: float = 1e-10) -> np.ndarray:
    """w in θ(ρ) = θ* + w/ρ + O(1/ρ²); equals ½A⁻²B(b − a) when A ≻ 0."""
    return quadratic_penalty_bias_np(*qofmu_quadratic_data(A, B, a, b, tol))


# ---------------------------------------------------------------------------------------------------
# P3 (numpy)
# ---------------------------------------------------------------------------------------------------


def _check_penalty(penalty: str) -> None:
    if penalty not in P3_PENALTIES:
        raise ValueError(f"penalty: expected one of {P3_PENALTIES}, received {penalty!r}")


def p3_quadratic_data(Q: Any, C: Any, a: Any, t: Any, H: Any, penalty: str) -> tuple[np.ndarray, ...]:
    """``(P, q, G, r, W)`` of P3's penalized problem in z = (x, y) (module docstring)."""
    _check_penalty(penalty)
    Q, C, a, t, H = (np.asarray(v, dtype=np.float64) for v in (Q, C, a, t, H))
    n, m = C.shape
    P = np.block([[H, np.zeros((n, m))], [np.zeros((m, n)), np.eye(m)]])
    q = np.concatenate([np.zeros(n), -t])
    if penalty == "stationarity":
        return P, q, np.hstack([C.T, Q]), -a, 2.0 * np.eye(m)
    J = -np.linalg.solve(Q, C.T)
    c = -np.linalg.solve(Q, a)
    return P, q, np.hstack([-J, np.eye(m)]), c, Q


def p3_penalized_minimizer_np(
    Q: Any, C: Any, a: Any, t: Any, H: Any, rho: float, penalty: str = "stationarity"
) -> tuple[np.ndarray, np.ndarray]:
    """``(x(ρ), y(ρ))`` minimizing P3's penalized objective (one linear solve)."""
    n = np.asarray(C).shape[0]
    z = quadratic_penalty_minimizer_np(*p3_quadratic_data(Q, C, a, t, H, penalty), rho)
    return z[:n], z[n:]


def p3_solution_np(Q: Any, C: Any, a: Any, t: Any, H: Any) -> tuple[np.ndarray, np.ndarray]:
    """P3's bi-level solution x* = −P⁻¹q, y* = Jx* + c (REFERENCE_PROBLEMS.md)."""
    Q, C, a, t, H = (np.asarray(v, dtype=np.float64) for v in (Q, C, a, t, H))
    J = -np.linalg.solve(Q, C.T)
    c = -np.linalg.solve(Q, a)
    x = -np.linalg.solve(J.T @ J + H, J.T @ (c - t))
    return x, J @ x + c


def p3_bias_coefficient_np(
    Q: Any, C: Any, a: Any, t: Any, H: Any, penalty: str = "stationarity"
) -> tuple[np.ndarray, np.ndarray]:
    """``(w_x, w_y)`` in ``(x(ρ), y(ρ)) = (x*, y*) + w/ρ + O(1/ρ²)``."""
    n = np.asarray(C).shape[0]
    w = quadratic_penalty_bias_np(*p3_quadratic_data(Q, C, a, t, H, penalty))
    return w[:n], w[n:]


# ---------------------------------------------------------------------------------------------------
# Symbolic derivations
# ---------------------------------------------------------------------------------------------------


def _stationary_point(f: Any, z: tuple[Any, ...]) -> sp.ImmutableMatrix:
    """The unique stationary point of a quadratic f in z, by ``sympy.diff`` and ``LUsolve``."""
    K = sp.hessian(f, z)
    k = -sp.Matrix([sp.diff(f, v) for v in z]).subs(dict.fromkeys(z, 0))
    return sp.ImmutableMatrix(K.LUsolve(k).applyfunc(sp.cancel))


def _taylor_in_inverse_rho(vec: Any, order: int) -> sp.ImmutableMatrix:
    """Coefficient of ρ^(−order) of each entry (the entries are analytic in ε = 1/ρ at ε = 0)."""
    out = []
    for e in vec:
        g = sp.cancel(sp.together(e.subs(RHO, 1 / _EPS)))
        out.append(sp.factor(sp.diff(g, _EPS, order).subs(_EPS, 0) / sp.factorial(order)))
    return sp.ImmutableMatrix(out)


def _qofmu_symbols(dim: int) -> tuple[Any, ...]:
    if dim not in (1, 2):
        raise ValueError(f"dim: expected 1 or 2 (symbolic sizes are kept tiny), received {dim!r}")
    A, a_ent = sym_matrix("A", dim)
    B, b_ent = sym_matrix("B", dim)
    av = sp.ImmutableMatrix(sp.symbols(f"a1:{dim + 1}", real=True))
    bv = sp.ImmutableMatrix(sp.symbols(f"b1:{dim + 1}", real=True))
    th = tuple(sp.symbols(f"theta1:{dim + 1}", real=True))
    return A, a_ent, B, b_ent, av, bv, th


def _sym_entries(M: Any) -> list[float]:
    M = np.asarray(M, dtype=np.float64)
    d = M.shape[0]
    return [float(M[i, j]) for i in range(d) for j in range(i, d)]


def _qofmu_numeric(lam: Any, with_rho: bool) -> Any:
    def numeric(A: Any, B: Any, a: Any, b: Any, *rho: float) -> Any:
        vals = [*_sym_entries(A), *_sym_entries(B), *np.ravel(a), *np.ravel(b)]
        if with_rho:
            vals.append(float(rho[0]))
        return lam(*vals)

    return numeric


@cache
def qofmu_penalized_minimizer(dim: int = 2) -> Derivation:
    r"""θ(ρ) for Q-OFMU at β = 0 in dimension ``dim`` (1 or 2), A and B symmetric, all entries symbolic.

    ``expr`` solves ∇F(θ) = 0 for F = ½(θ−b)ᵀB(θ−b) + ρ‖∇L_f(θ)‖², ∇L_f = −A(θ − a), by
    ``sympy.diff``/``LUsolve``; ``rhs`` is :math:`(B + 2\rho A^2)^{-1}(Bb + 2\rho A^2 a)`.

    Args:
        dim: 1 or 2.

    Returns:
        Derivation with ``numeric(A, B, a, b, rho)`` (arrays of size ``dim``) and ``numeric_rhs`` =
        :func:`qofmu_penalized_minimizer_np` (any dimension).

    Raises:
        ValueError: for another ``dim``.

    Example:
        >>> import numpy as np
        >>> d = qofmu_penalized_minimizer(1)
        >>> round(float(d.numeric(np.eye(1), np.eye(1), [1.0], [0.0], 1.0)[0]), 12)
        0.666666666667

    References:
        REFERENCE_PROBLEMS.md Q-OFMU; OFMU_SPEC.md §1 (paper Eq. 7).
    """
    A, a_ent, B, b_ent, av, bv, th = _qofmu_symbols(dim)
    thv = sp.ImmutableMatrix(th)
    grad_lf = -A * (thv - av)
    f = (thv - bv).dot(B * (thv - bv)) / 2 + RHO * grad_lf.dot(grad_lf)
    expr = _stationary_point(f, th)
    A2 = A * A
    rhs = sp.ImmutableMatrix((B + 2 * RHO * A2).LUsolve(B * bv + 2 * RHO * A2 * av).applyfunc(sp.cancel))
    args = (*a_ent, *b_ent, *av, *bv, RHO)
    return Derivation(
        f"qofmu_penalized_minimizer[{dim}]", expr, _qofmu_numeric(lambdify_vector(args, expr), True), args,
        _CITE_Q, ("A4_quadratic_models", "A5_beta_zero", "A6_strongly_concave_inner"), rhs=rhs,
        numeric_rhs=qofmu_penalized_minimizer_np,
    )


@cache
def qofmu_limit(dim: int = 2) -> Derivation:
    r"""lim_{ρ→∞} θ(ρ) for Q-OFMU with A ≻ 0: the inner maximizer a (``rhs``).

    ``expr`` is the ε⁰ Taylor coefficient of θ(1/ε) at ε = 0, computed from
    :func:`qofmu_penalized_minimizer`.

    Args:
        dim: 1 or 2.

    Returns:
        Derivation with ``numeric(A, B, a, b)``; ``numeric_rhs`` = :func:`qofmu_solution_np`.

    Raises:
        ValueError: for another ``dim``.

    Example:
        >>> qofmu_limit(1).expr.tolist()
        [[a1]]

    References:
        REFERENCE_PROBLEMS.md Q-OFMU ("tends to a").
    """
    base = qofmu_penalized_minimizer(dim)
    A, a_ent, B, b_ent, av, bv, _ = _qofmu_symbols(dim)
    expr = _taylor_in_inverse_rho(base.expr, 0)
    args = (*a_ent, *b_ent, *av, *bv)
    return Derivation(
        f"qofmu_limit[{dim}]", expr, _qofmu_numeric(lambdify_vector(args, expr), False), args, _CITE_Q,
        ("A4_quadratic_models", "A5_beta_zero", "A6_strongly_concave_inner"), rhs=av,
        numeric_rhs=qofmu_solution_np,
    )


@cache
def qofmu_bias_coefficient(dim: int = 2) -> Derivation:
    r"""The 1/ρ coefficient w of θ(ρ) = a + w/ρ + O(1/ρ²) for Q-OFMU with A ≻ 0.

    ``expr`` is the ε¹ Taylor coefficient of θ(1/ε); ``rhs`` is :math:`\tfrac12 A^{-2}B(b - a)`. The bias
    is therefore exactly Θ(1/ρ) unless B(b − a) = 0, i.e. unless the retain minimizer b already maximizes
    L_f (then the constraint is inactive and θ(ρ) = a for every ρ).

    Args:
        dim: 1 or 2.

    Returns:
        Derivation with ``numeric(A, B, a, b)``; ``numeric_rhs`` = :func:`qofmu_bias_coefficient_np`
        (any dimension, also singular A).

    Raises:
        ValueError: for another ``dim``.

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = qofmu_bias_coefficient(1).identity()
        >>> sp.simplify(lhs[0] - rhs[0])
        0

    References:
        OFMU_SPEC.md §3 ("penalty bias ‖θ_ρ − θ*‖ = Θ(1/ρ)").
    """
    base = qofmu_penalized_minimizer(dim)
    A, a_ent, B, b_ent, av, bv, _ = _qofmu_symbols(dim)
    expr = _taylor_in_inverse_rho(base.expr, 1)
    rhs = sp.ImmutableMatrix((A * A).LUsolve(B * (bv - av)) / 2)
    args = (*a_ent, *b_ent, *av, *bv)
    return Derivation(
        f"qofmu_bias_coefficient[{dim}]", expr, _qofmu_numeric(lambdify_vector(args, expr), False), args,
        _CITE_Q, ("A4_quadratic_models", "A5_beta_zero", "A6_strongly_concave_inner", "A9_penalty_regular"),
        rhs=rhs, numeric_rhs=qofmu_bias_coefficient_np,
    )


# P3 in one dimension (x, y scalars): g = ½Q y² + C x y + a y, f = ½(y − t)² + ½H x².
_X, _Y = sp.symbols("x y", real=True)
_Q, _H = sp.symbols("Q H", positive=True)
_C, _A, _T = sp.symbols("C a t", real=True)
_P3_ARGS = (_Q, _C, _A, _T, _H)


def _p3_objective(penalty: str) -> Any:
    _check_penalty(penalty)
    f = (_Y - _T) ** 2 / 2 + _H * _X**2 / 2
    g = _Q * _Y**2 / 2 + _C * _X * _Y + _A * _Y
    if penalty == "stationarity":
        return f + RHO * sp.diff(g, _Y) ** 2
    y_inner = sp.solve(sp.diff(g, _Y), _Y)[0]  # min_z g(x, z) is attained at the stationary point (Q > 0)
    return f + RHO * (g - g.subs(_Y, y_inner))


def _p3_sym_data(penalty: str) -> tuple[Any, ...]:
    """(P, q, G, r, W) of the 1-D P3 penalized problem, typed from the module docstring."""
    P = sp.diag(_H, 1)
    q = sp.Matrix([0, -_T])
    if penalty == "stationarity":
        return P, q, sp.Matrix([[_C, _Q]]), sp.Matrix([-_A]), sp.Matrix([[2]])
    J, c = -_C / _Q, -_A / _Q
    return P, q, sp.Matrix([[-J, 1]]), sp.Matrix([c]), sp.Matrix([[_Q]])


def _p3_numeric(lam: Any) -> Any:
    def numeric(Q: Any, C: Any, a: Any, t: Any, H: Any, *rho: float) -> Any:
        vals = [float(np.ravel(v)[0]) for v in (Q, C, a, t, H)]
        return lam(*vals, *map(float, rho))

    return numeric


@cache
def p3_penalized_minimizer(penalty: str = "stationarity") -> Derivation:
    r"""(x(ρ), y(ρ)) for P3 with scalar x, y and the stationarity or value-gap penalty.

    ``expr`` solves ∇F = 0 by ``sympy.diff``/``LUsolve``, with F = f + ρ(∂_y g)² (stationarity) or
    F = f + ρ(g − min_z g) (value gap; min_z g found by ``sympy.solve``). ``rhs`` is the general formula
    :math:`(P + \rho G^\top W G)^{-1}(-q + \rho G^\top W r)` with the instance's (P, q, G, r, W).

    Args:
        penalty: ``"stationarity"`` or ``"value_gap"``.

    Returns:
        Derivation with ``numeric(Q, C, a, t, H, rho) -> [x, y]``; ``numeric_rhs`` =
        :func:`p3_penalized_minimizer_np` (any dimensions, returns ``(x, y)``).

    Raises:
        ValueError: for an unknown penalty.

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = p3_penalized_minimizer("value_gap").identity()
        >>> [sp.simplify(e) for e in lhs - rhs]
        [0, 0]

    References:
        REFERENCE_PROBLEMS.md P3, P9; OFMU_SPEC.md §2.
    """
    expr = _stationary_point(_p3_objective(penalty), (_X, _Y))
    P, q, G, r, W = _p3_sym_data(penalty)
    rhs = sp.ImmutableMatrix((P + RHO * G.T * W * G).LUsolve(-q + RHO * G.T * W * r))
    args = (*_P3_ARGS, RHO)
    return Derivation(
        f"p3_penalized_minimizer[{penalty}]", expr, _p3_numeric(lambdify_vector(args, expr)), args,
        _CITE_P3, ("A4_quadratic_models", "A8_p3"), rhs=rhs,
        numeric_rhs=lambda Q, C, a, t, H, rho: p3_penalized_minimizer_np(Q, C, a, t, H, rho, penalty),
    )


@cache
def p3_limit(penalty: str = "stationarity") -> Derivation:
    r"""lim_{ρ→∞} (x(ρ), y(ρ)) for scalar P3: the bi-level solution x* = −P⁻¹q, y* = Jx* + c (``rhs``).

    Args:
        penalty: ``"stationarity"`` or ``"value_gap"``.

    Returns:
        Derivation with ``numeric(Q, C, a, t, H)``; ``numeric_rhs`` = :func:`p3_solution_np`.

    Raises:
        ValueError: for an unknown penalty.

    Example:
        >>> import numpy as np
        >>> np.round(p3_limit().numeric(1.0, 1.0, 0.0, 1.0, 1.0), 12).tolist()
        [-0.5, 0.5]

    References:
        REFERENCE_PROBLEMS.md P3.
    """
    expr = _taylor_in_inverse_rho(p3_penalized_minimizer(penalty).expr, 0)
    J, c = -_C / _Q, -_A / _Q
    x_star = -J * (c - _T) / (J**2 + _H)
    rhs = sp.ImmutableMatrix([x_star, J * x_star + c])
    return Derivation(
        f"p3_limit[{penalty}]", expr, _p3_numeric(lambdify_vector(_P3_ARGS, expr)), _P3_ARGS, _CITE_P3,
        ("A4_quadratic_models", "A8_p3"), rhs=rhs, numeric_rhs=p3_solution_np,
    )


@cache
def p3_bias_coefficient(penalty: str = "stationarity") -> Derivation:
    r"""The 1/ρ coefficient w of (x(ρ), y(ρ)) = (x*, y*) + w/ρ + O(1/ρ²) for scalar P3.

    ``expr`` is the ε¹ Taylor coefficient of the closed form; ``rhs`` is the KKT formula of the module
    docstring: :math:`[P\ G^\top; G\ 0](w, \nu) = (0, W^{-1}\lambda^*)`, :math:`\lambda^* = -(GG^\top)^{-1}
    G\,\nabla f(z^*)`.

    Args:
        penalty: ``"stationarity"`` or ``"value_gap"``.

    Returns:
        Derivation with ``numeric(Q, C, a, t, H)``; ``numeric_rhs`` = :func:`p3_bias_coefficient_np`.

    Raises:
        ValueError: for an unknown penalty.

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = p3_bias_coefficient("stationarity").identity()
        >>> [sp.simplify(e) for e in lhs - rhs]
        [0, 0]

    References:
        OFMU_SPEC.md §3 ("penalty bias Θ(1/ρ)"); REFERENCE_PROBLEMS.md P9 (slope −1).
    """
    expr = _taylor_in_inverse_rho(p3_penalized_minimizer(penalty).expr, 1)
    P, q, G, _, W = _p3_sym_data(penalty)
    z_star = sp.Matrix(p3_limit(penalty).rhs)
    lam = -(G * G.T).LUsolve(G * (P * z_star + q))
    K = sp.Matrix(sp.BlockMatrix([[P, G.T], [G, sp.zeros(1, 1)]]))
    rhs = sp.ImmutableMatrix(K.LUsolve(sp.Matrix([0, 0, *W.LUsolve(lam)]))[:2, 0])
    return Derivation(
        f"p3_bias_coefficient[{penalty}]", expr, _p3_numeric(lambdify_vector(_P3_ARGS, expr)), _P3_ARGS,
        _CITE_P3, ("A4_quadratic_models", "A8_p3", "A9_penalty_regular"), rhs=rhs,
        numeric_rhs=lambda Q, C, a, t, H: p3_bias_coefficient_np(Q, C, a, t, H, penalty),
    )


@cache
def quadratic_penalty_bias() -> Derivation:
    r"""The general bias coefficient in z ∈ R² with one constraint row, all data symbolic.

    ``expr`` is the ε¹ Taylor coefficient of :math:`z(1/\varepsilon)` for
    :math:`F_\rho = \tfrac12 z^\top Pz + q^\top z + \tfrac\rho2 W(g^\top z - r)^2`; ``rhs`` is the KKT
    formula of the module docstring. Together with the limit (``expr`` at order 0 equals the constrained
    minimizer, checked by the tests) this proves z(ρ) − z* = w/ρ + O(1/ρ²) in this dimension.

    Returns:
        Derivation with ``numeric(P11, P12, P22, q1, q2, g1, g2, r, W)``; ``numeric_rhs`` takes
        ``(P, q, G, r, W)`` arrays of any size (:func:`quadratic_penalty_bias_np`).

    Example:
        >>> quadratic_penalty_bias().is_identity
        True

    References:
        OFMU_SPEC.md §3 ("penalty bias ‖θ_ρ − θ*‖ = Θ(1/ρ)").
    """
    P, p_ent = sym_matrix("P", 2)
    q = sp.Matrix(sp.symbols("q1 q2", real=True))
    G = sp.Matrix([sp.symbols("g1 g2", real=True)]).T.T
    r, W = sp.Symbol("r", real=True), sp.Symbol("W", positive=True)
    z = sp.symbols("z1 z2", real=True)
    zv = sp.Matrix(z)
    res = (G * zv)[0] - r
    expr = _taylor_in_inverse_rho(_stationary_point(zv.dot(P * zv) / 2 + q.dot(zv) + RHO * W * res**2 / 2, z), 1)
    K = sp.Matrix(sp.BlockMatrix([[sp.Matrix(P), G.T], [G, sp.zeros(1, 1)]]))
    z_lam = K.LUsolve(sp.Matrix([-q[0], -q[1], r]))
    rhs = sp.ImmutableMatrix(K.LUsolve(sp.Matrix([0, 0, z_lam[2] / W]))[:2, 0])
    args = (*p_ent, *q, *G, r, W)
    return Derivation(
        "quadratic_penalty_bias", expr, lambdify_vector(args, expr), args,
        "OFMU_SPEC.md §3 'penalty bias Θ(1/ρ)' (general quadratic penalty of an affine constraint)",
        ("A4_quadratic_models", "A9_penalty_regular"), rhs=rhs, numeric_rhs=quadratic_penalty_bias_np,
    )


@cache
def p3_base_inner_gradient() -> Derivation:
    r"""The outer x-gradient of the stationarity-penalized P3 objective read at y = y*(x) (base='inner').

    ``expr`` is :math:`\partial_x F(x, y)` at :math:`y = y^*(x)` (``sympy.diff`` then ``subs``); ``rhs``
    is :math:`Hx`: the penalty term :math:`2\rho C(Qy + C^\top x + a)` vanishes there, so the hyper-gradient
    :math:`\nabla h(x) = Hx + J(Jx + c - t)` loses its second term and x is driven to 0 instead of
    x* = −P⁻¹q (OFMU_SPEC.md §2, base='inner' with an outer variable).

    Returns:
        Derivation with ``numeric(Q, C, a, t, H, x, rho)``.

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = p3_base_inner_gradient().identity()
        >>> sp.simplify(lhs - rhs)
        0

    References:
        OFMU_SPEC.md §2 ("base=inner converges to a wrong point").
    """
    f_pen = _p3_objective("stationarity")
    y_star = sp.solve(_Q * _Y + _C * _X + _A, _Y)[0]
    expr = sp.diff(f_pen, _X).subs(_Y, y_star)
    rhs = _H * _X
    args = (*_P3_ARGS, _X, RHO)
    return Derivation(
        "p3_base_inner_gradient", expr, lambdify_vector(args, expr), args,
        "OFMU_SPEC.md §2 base='inner' with an outer variable (P3)",
        ("A4_quadratic_models", "A8_p3", "A13_exact_inner_solve"), rhs=rhs,
        numeric_rhs=lambdify_vector(args, rhs),
    )

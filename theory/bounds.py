r"""The paper's rate bounds (OFMU_SPEC.md §3): what follows from their form, and Eq. 35.

Convex case, :math:`E(K, T) = C_1/K + C_2K/T^2` (C1, C2 > 0 taken from the paper, assumption A11):
:math:`\partial_K E = 0` at :math:`K^* = T\sqrt{C_1/C_2}` (∝ T; :math:`\partial_K^2 E = 2C_1/K^3 > 0`), where
:math:`E(K^*, T) = 2\sqrt{C_1C_2}/T = O(1/T)`; with the total number of inner steps N = K*T this is
:math:`2C_1^{3/4}C_2^{1/4}/\sqrt N`.

Non-convex case, :math:`\min_k E\|\nabla F(\theta_k)\|^2 \le C_1/K + C_2/T + C_3\sigma^2`: the bound tends
to the floor :math:`C_3\sigma^2`, not to 0; for a budget N = KT, :math:`C_1/K + C_2K/N` is minimized at
:math:`K = \sqrt{C_1N/C_2}`, giving :math:`2\sqrt{C_1C_2/N} + C_3\sigma^2`.

Eq. 35: :math:`\|\nabla F\|^2 = \|\nabla L_r + 2\rho\nabla^2\Phi\nabla\Phi\|^2 \le 2\|\nabla L_r\|^2 +
8\rho^2\|\nabla^2\Phi\nabla\Phi\|^2 \le 2G_r^2 + 8\rho^2H^2\|\nabla\Phi\|^2`, from
:math:`2\|a\|^2 + 2\|b\|^2 - \|a + b\|^2 = \|a - b\|^2 \ge 0`.

Example:
    >>> import numpy as np
    >>> s = eq35_sides_np(np.array([1.0, 0.0]), np.eye(2), np.array([0.0, 1.0]), 1.0)
    >>> (round(s.lhs, 12), round(s.middle, 12), round(s.rhs, 12))
    (5.0, 10.0, 10.0)
"""

from __future__ import annotations

from functools import cache
from typing import Any, NamedTuple

import numpy as np
import sympy as sp

from ._derivation import Derivation, lambdify_vector, real_vector

__all__ = [
    "Eq35Sides",
    "convex_bound_in_budget",
    "convex_bound_minimum",
    "convex_bound_optimal_K",
    "eq35_bound",
    "eq35_sides_np",
    "eq35_slack",
    "nonconvex_bound",
    "nonconvex_bound_in_budget",
    "parallelogram_slack",
]

C1, C2, C3 = sp.symbols("C1 C2 C3", positive=True)
K, T, N = sp.symbols("K T N", positive=True)
SIGMA2 = sp.Symbol("sigma2", nonnegative=True)
RHO = sp.Symbol("rho", positive=True)
G_R, H_BOUND, GRAD_PHI_NORM = sp.symbols("G_r H n_Phi", nonnegative=True)

_CITE_CONVEX = "OFMU_SPEC.md §3, convex case: error O(1/K) + O(K/T²), K* ∝ T, O(1/T)"
_CITE_NONCONVEX = "OFMU_SPEC.md §3, non-convex case: min_k E‖∇F‖² = O(1/K) + O(1/T) + O(σ²)"
_CITE_EQ35 = "OFMU_SPEC.md §3, paper Eq. 35: E‖∇F‖² ≤ 2G_r² + 8ρ²H²E‖∇Φ‖²"


def _convex_error() -> Any:
    return C1 / K + C2 * K / T**2


@cache
def convex_bound_optimal_K() -> Derivation:
    r"""K* = argmin_K (C1/K + C2·K/T²): ``expr`` by ``sympy.solve`` of ∂_K E = 0, ``rhs`` = T·sqrt(C1/C2).

    Returns:
        Derivation with ``numeric(C1, C2, T)``.

    Example:
        >>> round(convex_bound_optimal_K().numeric(4.0, 1.0, 10.0), 12)
        20.0

    References:
        OFMU_SPEC.md §3 (convex case).
    """
    sols = sp.solve(sp.diff(_convex_error(), K), K)
    if len(sols) != 1:
        raise ArithmeticError(f"convex_bound_optimal_K: expected one positive root, received {sols}")
    expr = sols[0]
    return Derivation("convex_bound_optimal_K", expr, lambdify_vector((C1, C2, T), expr), (C1, C2, T),
                      _CITE_CONVEX, ("A11_paper_constants",), rhs=T * sp.sqrt(C1 / C2),
                      numeric_rhs=lambdify_vector((C1, C2, T), T * sp.sqrt(C1 / C2)))


@cache
def convex_bound_minimum() -> Derivation:
    r"""E(K*, T): ``expr`` = the bound at the K* of :func:`convex_bound_optimal_K`; ``rhs`` = 2·sqrt(C1·C2)/T.

    Returns:
        Derivation with ``numeric(C1, C2, T)``.

    Example:
        >>> round(convex_bound_minimum().numeric(4.0, 1.0, 10.0), 12)
        0.4

    References:
        OFMU_SPEC.md §3 (convex case: O(1/T)).
    """
    expr = _convex_error().subs(K, convex_bound_optimal_K().expr)
    rhs = 2 * sp.sqrt(C1 * C2) / T
    return Derivation("convex_bound_minimum", expr, lambdify_vector((C1, C2, T), expr), (C1, C2, T),
                      _CITE_CONVEX, ("A11_paper_constants",), rhs=rhs,
                      numeric_rhs=lambdify_vector((C1, C2, T), rhs))


@cache
def convex_bound_in_budget() -> Derivation:
    r"""The minimal convex bound as a function of the total inner-step budget N = K*·T.

    ``expr`` substitutes T solving N = K*(T)·T into :func:`convex_bound_minimum`; ``rhs`` =
    :math:`2C_1^{3/4}C_2^{1/4}/\sqrt N`: O(N^{-1/2}) in total work.

    Returns:
        Derivation with ``numeric(C1, C2, N)``.

    Example:
        >>> round(convex_bound_in_budget().numeric(1.0, 1.0, 100.0), 12)
        0.2

    References:
        OFMU_SPEC.md §3 (convex case).
    """
    t_of_n = [s for s in sp.solve(sp.Eq(convex_bound_optimal_K().expr * T, N), T) if s.is_positive]
    if len(t_of_n) != 1:
        raise ArithmeticError(f"convex_bound_in_budget: expected one positive root, received {t_of_n}")
    expr = convex_bound_minimum().rhs.subs(T, t_of_n[0])
    rhs = 2 * C1 ** sp.Rational(3, 4) * C2 ** sp.Rational(1, 4) / sp.sqrt(N)
    return Derivation("convex_bound_in_budget", expr, lambdify_vector((C1, C2, N), expr), (C1, C2, N),
                      _CITE_CONVEX, ("A11_paper_constants",), rhs=rhs,
                      numeric_rhs=lambdify_vector((C1, C2, N), rhs))


@cache
def nonconvex_bound() -> Derivation:
    r"""The non-convex bound C1/K + C2/T + C3·σ² and its limit as K, T → ∞ (``expr``): the floor C3·σ².

    Returns:
        Derivation: ``expr`` = the limit (``rhs`` = C3·σ²); ``numeric(C1, C2, C3, sigma2, K, T)`` evaluates
        the bound itself.

    Example:
        >>> nonconvex_bound().expr
        C3*sigma2

    References:
        OFMU_SPEC.md §3 (non-convex case).
    """
    bound = C1 / K + C2 / T + C3 * SIGMA2
    expr = sp.limit(sp.limit(bound, K, sp.oo), T, sp.oo)
    args = (C1, C2, C3, SIGMA2, K, T)
    return Derivation("nonconvex_bound", expr, lambdify_vector(args, bound), args, _CITE_NONCONVEX,
                      ("A11_paper_constants",), rhs=C3 * SIGMA2,
                      numeric_rhs=lambdify_vector(args, C3 * SIGMA2 + 0 * K))


@cache
def nonconvex_bound_in_budget() -> Derivation:
    r"""min over K of C1/K + C2·K/N + C3·σ² (the non-convex bound at T = N/K): 2·sqrt(C1·C2/N) + C3·σ².

    Returns:
        Derivation with ``numeric(C1, C2, C3, sigma2, N)``.

    Example:
        >>> round(nonconvex_bound_in_budget().numeric(1.0, 1.0, 1.0, 0.0, 100.0), 12)
        0.2

    References:
        OFMU_SPEC.md §3 (non-convex case).
    """
    bound = C1 / K + C2 * K / N + C3 * SIGMA2
    (k_star,) = sp.solve(sp.diff(bound, K), K)
    expr = bound.subs(K, k_star)
    rhs = 2 * sp.sqrt(C1 * C2 / N) + C3 * SIGMA2
    args = (C1, C2, C3, SIGMA2, N)
    return Derivation("nonconvex_bound_in_budget", expr, lambdify_vector(args, expr), args, _CITE_NONCONVEX,
                      ("A11_paper_constants",), rhs=rhs, numeric_rhs=lambdify_vector(args, rhs))


@cache
def parallelogram_slack(dim: int = 3) -> Derivation:
    r"""2‖a‖² + 2‖b‖² − ‖a + b‖² (``expr``) = ‖a − b‖² (``rhs``) ≥ 0: the inequality behind Eq. 35.

    Args:
        dim: the length of the symbolic vectors.

    Returns:
        Derivation with ``numeric(a, b)``.

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = parallelogram_slack(2).identity()
        >>> sp.simplify(lhs - rhs)
        0

    References:
        Paper Eq. 35 (OFMU_SPEC.md §3).
    """
    a, b = real_vector("a", dim), real_vector("b", dim)
    expr = 2 * a.dot(a) + 2 * b.dot(b) - (a + b).dot(a + b)
    rhs = (a - b).dot(a - b)
    args = (tuple(a), tuple(b))
    return Derivation(f"parallelogram_slack[{dim}]", expr, lambdify_vector(args, expr), args, _CITE_EQ35, (),
                      rhs=rhs, numeric_rhs=lambdify_vector(args, rhs))


@cache
def eq35_slack(dim: int = 2) -> Derivation:
    r"""Eq. 35's first step: 2‖g‖² + 8ρ²‖v‖² − ‖g + 2ρv‖² = ‖g − 2ρv‖² with g = ∇L_r, v = ∇²Φ∇Φ.

    Args:
        dim: the length of the symbolic vectors.

    Returns:
        Derivation with ``numeric(g, v, rho)``.

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = eq35_slack().identity()
        >>> sp.simplify(lhs - rhs)
        0

    References:
        Paper Eq. 35 (OFMU_SPEC.md §3).
    """
    g, v = real_vector("g", dim), real_vector("v", dim)
    expr = 2 * g.dot(g) + 8 * RHO**2 * v.dot(v) - (g + 2 * RHO * v).dot(g + 2 * RHO * v)
    rhs = (g - 2 * RHO * v).dot(g - 2 * RHO * v)
    args = (tuple(g), tuple(v), RHO)
    return Derivation(f"eq35_slack[{dim}]", expr, lambdify_vector(args, expr), args, _CITE_EQ35,
                      ("A12_eq35_bounds",), rhs=rhs, numeric_rhs=lambdify_vector(args, rhs))


@cache
def eq35_bound() -> Derivation:
    r"""The right-hand side of Eq. 35, :math:`2G_r^2 + 8\rho^2H^2\|\nabla\Phi\|^2`.

    Returns:
        Derivation with ``numeric(G_r, H, rho, grad_phi_norm)``.

    Example:
        >>> round(eq35_bound().numeric(1.0, 1.0, 1.0, 1.0), 12)
        10.0

    References:
        Paper Eq. 35 (OFMU_SPEC.md §3).
    """
    expr = 2 * G_R**2 + 8 * RHO**2 * H_BOUND**2 * GRAD_PHI_NORM**2
    args = (G_R, H_BOUND, RHO, GRAD_PHI_NORM)
    return Derivation("eq35_bound", expr, lambdify_vector(args, expr), args, _CITE_EQ35, ("A12_eq35_bounds",))


class Eq35Sides(NamedTuple):
    """The three members of Eq. 35's chain lhs ≤ middle ≤ rhs at one point."""

    lhs: float
    middle: float
    rhs: float


def eq35_sides_np(
    grad_lr: Any, hess_phi: Any, grad_phi: Any, rho: float, G_r: float | None = None, H: float | None = None
) -> Eq35Sides:
    """Evaluate Eq. 35 at one point: ‖∇F‖², 2‖∇L_r‖² + 8ρ²‖∇²Φ∇Φ‖², and 2G_r² + 8ρ²H²‖∇Φ‖².

    Args:
        grad_lr: ∇L_r(θ).
        hess_phi: ∇²Φ(θ) (symmetric matrix).
        grad_phi: ∇Φ(θ).
        rho: the penalty.
        G_r: a bound on ‖∇L_r‖; defaults to ‖∇L_r(θ)‖ (the tightest valid value at this point).
        H: a bound on ‖∇²Φ‖₂; defaults to the spectral norm of ``hess_phi``.

    Returns:
        :class:`Eq35Sides` (lhs ≤ middle ≤ rhs whenever G_r ≥ ‖∇L_r‖ and H ≥ ‖∇²Φ‖₂).

    Raises:
        ValueError: if a given G_r or H is smaller than the value at this point (not a bound).
    """
    g = np.asarray(grad_lr, dtype=np.float64)
    Hm = np.asarray(hess_phi, dtype=np.float64)
    gp = np.asarray(grad_phi, dtype=np.float64)
    v = Hm @ gp
    g_norm, h_norm = float(np.linalg.norm(g)), float(np.linalg.norm(Hm, 2))
    G_r = g_norm if G_r is None else float(G_r)
    H = h_norm if H is None else float(H)
    if G_r < g_norm * (1 - 1e-12) or H < h_norm * (1 - 1e-12):
        raise ValueError(
            f"G_r, H: expected bounds ≥ ‖∇L_r‖ = {g_norm:.6g}, ‖∇²Φ‖₂ = {h_norm:.6g}, received {G_r:.6g}, {H:.6g}"
        )
    lhs = float(np.sum((g + 2 * rho * v) ** 2))
    middle = 2 * g_norm**2 + 8 * rho**2 * float(v @ v)
    rhs = 2 * G_r**2 + 8 * rho**2 * H**2 * float(gp @ gp)
    return Eq35Sides(lhs, middle, rhs)

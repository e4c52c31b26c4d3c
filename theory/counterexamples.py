r"""Counterexamples to the paper's stated theory (see :data:`theory.assumptions.PAPER_ISSUES`).

1. Convex Φ cannot be maximized: :math:`\Phi(\theta) = \tfrac12\theta^2 + \theta` is convex and
   :math:`\sup_\theta \Phi = \infty`.
2. Stationarity is not maximality: with :math:`\Phi(\theta) = \theta^3/3 - \theta` and
   :math:`L_r = \tfrac12(\theta - 1)^2`, :math:`F = L_r + \rho\,\Phi'(\theta)^2 \ge 0` and :math:`F(1) = 0`,
   so θ = 1 minimizes F for every ρ, yet :math:`\Phi''(1) = 2 > 0`: θ = 1 is a strict local *minimum* of
   the objective the inner problem maximizes (its local maximum is θ = −1, where Φ is larger).

Example:
    >>> convex_maximization_unbounded().expr
    oo
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from ._derivation import Derivation, lambdify_vector

__all__ = ["THETA", "convex_maximization_unbounded", "stationarity_counterexample_phi",
           "stationarity_not_maximality"]

THETA = sp.Symbol("theta", real=True)
RHO = sp.Symbol("rho", positive=True)


@cache
def convex_maximization_unbounded() -> Derivation:
    r"""sup of the convex Φ(θ) = θ²/2 + θ over R (``expr``, by ``sympy.calculus.util.maximum``) is ∞.

    Returns:
        Derivation with ``numeric(theta)`` = Φ(θ).

    Example:
        >>> convex_maximization_unbounded().expr == sp.oo
        True

    References:
        OFMU_SPEC.md §3 ("the convex case assumes Φ convex while maximizing it").
    """
    phi = THETA**2 / 2 + THETA
    expr = sp.calculus.util.maximum(phi, THETA, sp.S.Reals)
    return Derivation("convex_maximization_unbounded", expr, lambdify_vector((THETA,), phi), (THETA,),
                      "OFMU_SPEC.md §3, convex case (Φ convex and maximized)", ())


@cache
def stationarity_counterexample_phi() -> Derivation:
    """The inner objective Φ(θ) = θ³/3 − θ of the stationarity counterexample.

    Returns:
        Derivation with ``numeric(theta)``.

    Example:
        >>> stationarity_counterexample_phi().numeric(1.0) < stationarity_counterexample_phi().numeric(-1.0)
        True

    References:
        OFMU_SPEC.md §3 ("the penalty enforces only stationarity of Φ, not maximality").
    """
    phi = THETA**3 / 3 - THETA
    return Derivation("stationarity_counterexample_phi", phi, lambdify_vector((THETA,), phi), (THETA,),
                      "OFMU_SPEC.md §3 (stationarity vs maximality)", ())


@cache
def stationarity_not_maximality() -> Derivation:
    r"""F(θ) = ½(θ − 1)² + ρ Φ'(θ)² for Φ = θ³/3 − θ; ``expr`` = F, ``rhs``: F(1) = 0 is checked by tests.

    Returns:
        Derivation with ``numeric(theta, rho)``.

    Example:
        >>> stationarity_not_maximality().expr.subs(THETA, 1)
        0

    References:
        OFMU_SPEC.md §1 (F = L_r + ρ‖∇Φ‖², paper Eq. 7) and §3.
    """
    phi = stationarity_counterexample_phi().expr
    f = (THETA - 1) ** 2 / 2 + RHO * sp.diff(phi, THETA) ** 2
    return Derivation("stationarity_not_maximality", f, lambdify_vector((THETA, RHO), f), (THETA, RHO),
                      "OFMU_SPEC.md §1 (paper Eq. 7) and §3 (stationarity vs maximality)", ())

r"""Gradient of the inner objective Φ and of the penalized objective F = L_r + ρ‖∇Φ‖² (paper Eq. 7).

.. math::

    \Phi = L_f - \beta\,s(\nabla L_f, \nabla L_r), \qquad
    \nabla\Phi = \nabla L_f - \beta\,\varphi'(c)\,(H_f\,\partial c/\partial a + H_r\,\partial c/\partial b),

    F = L_r + \rho\,\|\nabla\Phi\|^2, \qquad \nabla F = \nabla L_r + 2\rho\,\nabla^2\Phi\,\nabla\Phi, \qquad
    \nabla^2 F = \nabla^2 L_r + 2\rho\,(\nabla^2\Phi)^2 + 2\rho\,\nabla^3\Phi[\nabla\Phi].

The last two identities hold for every three (four) times differentiable Φ; :func:`penalty_gradient_generic`
checks them with undefined sympy functions, :func:`penalty_gradient` on concrete polynomial losses with
the similarity term.

Example:
    >>> import sympy as sp
    >>> lhs, rhs = penalty_gradient_generic().identity()
    >>> [sp.simplify(e) for e in lhs - rhs]
    [0, 0]
"""

from __future__ import annotations

from functools import cache
from typing import Any

import sympy as sp

from ._derivation import Derivation, drop_dirac, lambdify_vector
from .similarity import KINDS, THETA, _cos, _phi, example_losses

__all__ = [
    "BETA",
    "PENALTY_KINDS",
    "RHO",
    "penalized_hessian_generic",
    "penalized_objective",
    "penalty_gradient",
    "penalty_gradient_generic",
]

BETA = sp.Symbol("beta", real=True)
RHO = sp.Symbol("rho", positive=True)

_CITE = "OFMU_SPEC.md §1: F = L_r + ρ‖∇Φ‖² (paper Eq. 7), ∇F = ∇L_r + 2ρ∇²Φ∇Φ"


def _grad(f: Any) -> sp.ImmutableMatrix:
    return sp.ImmutableMatrix([sp.diff(f, t) for t in THETA])


def _generic_functions() -> tuple[Any, Any]:
    phi = sp.Function("Phi", real=True)(*THETA)
    l_r = sp.Function("L_r", real=True)(*THETA)
    return phi, l_r


@cache
def penalty_gradient_generic() -> Derivation:
    r"""∇F = ∇L_r + 2ρ∇²Φ∇Φ for arbitrary (undefined) smooth Φ and L_r of θ ∈ R².

    ``expr`` is ``sympy.diff`` of :math:`F = L_r + \rho\|\nabla\Phi\|^2`; ``rhs`` is
    :math:`\nabla L_r + 2\rho\,\nabla^2\Phi\,\nabla\Phi`. Being about undefined functions, this is a
    proof of the identity in two variables (the same computation holds coordinate-wise in any dimension).
    ``numeric`` is not meaningful for undefined functions and raises.

    Returns:
        Derivation (an identity).

    Example:
        >>> penalty_gradient_generic().is_identity
        True

    References:
        OFMU_SPEC.md §1; paper Eq. 7.
    """
    phi, l_r = _generic_functions()
    g_phi = _grad(phi)
    f = l_r + RHO * g_phi.dot(g_phi)
    expr = _grad(f)
    rhs = _grad(l_r) + 2 * RHO * sp.ImmutableMatrix(sp.hessian(phi, THETA)) * g_phi

    def numeric(*_: Any) -> Any:
        raise TypeError("penalty_gradient_generic: undefined functions have no numeric form; use "
                        "penalty_gradient for concrete losses")

    return Derivation("penalty_gradient_generic", expr, numeric, (), _CITE, ("A1_smooth",), rhs=rhs,
                      numeric_rhs=numeric)


@cache
def penalized_hessian_generic() -> Derivation:
    r"""∇²F = ∇²L_r + 2ρ(∇²Φ)² + 2ρ∇³Φ[∇Φ] for arbitrary smooth Φ, L_r of θ ∈ R².

    The third-order term vanishes for quadratic Φ (assumption A4), which gives the smoothness result of
    :mod:`theory.smoothness`; for non-quadratic Φ it is O(ρ‖∇Φ‖), which is O(1) at the penalized
    minimizer (where ‖∇Φ‖ = O(1/ρ)).

    Returns:
        Derivation (an identity of 2 x 2 matrices); ``numeric`` raises (undefined functions).

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = penalized_hessian_generic().identity()
        >>> all(sp.simplify(e) == 0 for e in lhs - rhs)
        True

    References:
        OFMU_SPEC.md §2 ("the penalized objective's smoothness grows like ρ").
    """
    phi, l_r = _generic_functions()
    g_phi = _grad(phi)
    f = l_r + RHO * g_phi.dot(g_phi)
    expr = sp.ImmutableMatrix(sp.hessian(f, THETA))
    h_phi = sp.ImmutableMatrix(sp.hessian(phi, THETA))
    third = sp.ImmutableMatrix(2, 2, lambda i, j: sum(
        sp.diff(phi, THETA[i], THETA[j], THETA[k]) * g_phi[k] for k in range(2)))
    rhs = sp.ImmutableMatrix(sp.hessian(l_r, THETA)) + 2 * RHO * h_phi * h_phi + 2 * RHO * third

    def numeric(*_: Any) -> Any:
        raise TypeError("penalized_hessian_generic: undefined functions have no numeric form")

    return Derivation("penalized_hessian_generic", expr, numeric, (), _CITE, ("A1_smooth",), rhs=rhs,
                      numeric_rhs=numeric)


PENALTY_KINDS = ("none", *KINDS)


def _concrete_phi(kind: str) -> tuple[Any, Any, Any]:
    """Φ, L_r and F for the example losses, eps = 0, β and ρ symbolic."""
    if kind not in PENALTY_KINDS:
        raise ValueError(f"kind: expected one of {PENALTY_KINDS}, received {kind!r}")
    l_f, l_r = example_losses()
    if kind == "none":
        phi = l_f
    else:
        phi = l_f - BETA * _phi(kind, _cos(_grad(l_f), _grad(l_r), sp.Integer(0)))
    g_phi = _grad(phi)
    return phi, l_r, l_r + RHO * g_phi.dot(g_phi)


@cache
def penalized_objective(kind: str = "none") -> Derivation:
    r"""F(θ) = L_r(θ) + ρ‖∇Φ(θ)‖² for the concrete losses of :func:`~theory.similarity.example_losses`.

    Args:
        kind: ``"none"`` (Φ = L_f, the β = 0 ablation), ``"signed"``, ``"abs"`` or ``"squared"``.

    Returns:
        Derivation with ``numeric(theta, beta, rho) -> float`` (β is ignored for ``"none"``).

    Raises:
        ValueError: for an unknown kind.

    Example:
        >>> import numpy as np
        >>> round(penalized_objective("none").numeric(np.array([1.0, 0.0]), 0.0, 1.0), 12)
        5.0

    References:
        OFMU_SPEC.md §1; paper Eq. 7.
    """
    _, _, f = _concrete_phi(kind)
    args = (THETA, BETA, RHO)
    return Derivation(f"penalized_objective[{kind}]", f, lambdify_vector(args, drop_dirac(f)), args, _CITE,
                      ("A1_smooth", "A2_nonzero_gradients"))


@cache
def penalty_gradient(kind: str = "none") -> Derivation:
    r"""∇F = ∇L_r + 2ρ∇²Φ∇Φ for the concrete losses of :func:`~theory.similarity.example_losses`.

    Φ = L_f − β·s(∇L_f, ∇L_r) with eps = 0 and β, ρ symbolic (Φ = L_f for ``"none"``). ``expr`` is
    ``sympy.diff`` of F = L_r + ρ‖∇Φ‖²; ``rhs`` is ∇L_r + 2ρ∇²Φ∇Φ with ∇Φ and ∇²Φ obtained by
    ``sympy.diff`` of Φ. The spec's form of ∇Φ = ∇L_f − βφ'(c)(H_f u_f + H_r u_r) is checked by
    :func:`~theory.similarity.cosine_theta_gradient`. With the similarity term the residual is large and
    ``simplify`` takes 5–20 s (the tests run those kinds only with ``-m slow``). ``numeric`` is a
    concrete ∇F oracle for finite-difference tests.

    Args:
        kind: ``"none"``, ``"signed"``, ``"abs"`` or ``"squared"``.

    Returns:
        Derivation with ``numeric(theta, beta, rho)`` and ``numeric_rhs`` of the same signature.

    Raises:
        ValueError: for an unknown kind.

    Example:
        >>> import numpy as np
        >>> d = penalty_gradient("squared")
        >>> th = np.array([0.3, -0.2])
        >>> bool(np.allclose(d.numeric(th, 0.5, 2.0), d.numeric_rhs(th, 0.5, 2.0)))
        True

    References:
        OFMU_SPEC.md §1; paper Eq. 7.
    """
    phi, l_r, f = _concrete_phi(kind)
    expr = _grad(f)
    rhs = _grad(l_r) + 2 * RHO * sp.ImmutableMatrix(sp.hessian(phi, THETA)) * _grad(phi)
    args = (THETA, BETA, RHO)
    assumptions = ("A1_smooth", "A2_nonzero_gradients") + (
        ("A3_abs_nonzero_cos",) if kind == "abs" else ()
    )
    return Derivation(
        f"penalty_gradient[{kind}]", expr, lambdify_vector(args, drop_dirac(expr)), args, _CITE, assumptions,
        rhs=rhs, numeric_rhs=lambdify_vector(args, drop_dirac(rhs)),
    )

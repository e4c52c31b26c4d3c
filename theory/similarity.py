r"""Derivatives of the similarity term sim(∇L_f, ∇L_r) (OFMU_SPEC.md §1).

With :math:`p = \langle a,b\rangle`, :math:`D = \|a\|\|b\| + \epsilon` and :math:`c = p/D`:

.. math::

    \partial c/\partial a = b/D - \frac{p\,\|b\|}{\|a\|\,D^2}\,a, \qquad
    \partial c/\partial b = a/D - \frac{p\,\|a\|}{\|b\|\,D^2}\,b,

and for the kinds :math:`s = \varphi(c)` with :math:`\varphi(c) = c` (signed), :math:`|c|` (abs),
:math:`c^2` (squared), :math:`\partial s = \varphi'(c)\,\partial c` with :math:`\varphi' = 1,
\operatorname{sign}(c), 2c`. Through θ (the gradients are :math:`a = \nabla L_f(\theta)`,
:math:`b = \nabla L_r(\theta)`, with symmetric Hessians :math:`H_f, H_r`), the chain rule gives
:math:`\nabla_\theta s = \varphi'(c)\,(H_f\,\partial c/\partial a + H_r\,\partial c/\partial b)`, which at
ε = 0 is the spec's :math:`\nabla c = H_f u_f + H_r u_r`, :math:`u_f = (\hat g_r - c\,\hat g_f)/\|g_f\|`,
:math:`u_r = (\hat g_f - c\,\hat g_r)/\|g_r\|`.

Example:
    >>> import numpy as np
    >>> d = similarity_partials("signed", dim=2)
    >>> ga, gb = d.numeric_rhs(np.array([1.0, 0.0]), np.array([1.0, 1.0]), 0.0)
    >>> np.round(ga, 6).tolist()
    [0.0, 0.707107]
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import sympy as sp

from ._derivation import Derivation, drop_dirac, lambdify_vector, norm, real_vector

__all__ = [
    "KINDS",
    "THETA",
    "cosine_theta_gradient",
    "example_losses",
    "similarity_hessian",
    "similarity_partials",
    "similarity_value",
]

KINDS = ("signed", "abs", "squared")

EPS = sp.Symbol("epsilon", nonnegative=True)
SIGMA = sp.Symbol("sigma", real=True)  # stands for sign(c) ∈ {−1, 1} where c ≠ 0 (kind "abs")
THETA = sp.symbols("theta1 theta2", real=True)

# Scalar symbols of the dimension-free closed form.
_P = sp.Symbol("p", real=True)
_NA = sp.Symbol("n_a", positive=True)
_NB = sp.Symbol("n_b", positive=True)

_CITE_SIM = "OFMU_SPEC.md §1, similarity term sim(a, b) of the inner objective Φ = L_f − β·sim"
_CITE_GRAD = "OFMU_SPEC.md §1, 'Gradient of the cosine term': ∇c = H_f u_f + H_r u_r"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, received {kind!r}")


def _phi(kind: str, c: Any) -> Any:
    return {"signed": c, "abs": sp.Abs(c), "squared": c**2}[kind]


def _dphi(kind: str, c: Any) -> Any:
    return {"signed": sp.Integer(1), "abs": sp.sign(c), "squared": 2 * c}[kind]


def _cos(a: Any, b: Any, eps: Any) -> Any:
    return a.dot(b) / (norm(a) * norm(b) + eps)


def _cos_partials_closed(a: Any, b: Any, eps: Any) -> tuple[Any, Any]:
    """The closed form ∂c/∂a, ∂c/∂b typed from the formula in the module docstring."""
    na, nb, p = norm(a), norm(b), a.dot(b)
    d = na * nb + eps
    return b / d - (p * nb / (na * d**2)) * a, a / d - (p * na / (nb * d**2)) * b


def _abs_substitutions(num: Any, c: Any) -> dict[Any, Any]:
    """sign/Abs of the cosine (or of its numerator p; D > 0) -> σ, valid where c ≠ 0 (A3)."""
    return {sp.sign(num): SIGMA, sp.Abs(num): SIGMA * num, sp.sign(c): SIGMA, sp.Abs(c): SIGMA * c}


@cache
def _closed_form_coefficients(kind: str) -> Any:
    """Dimension-free form: ∂s/∂a = k_aa·a + k_ab·b, ∂s/∂b = k_ba·a + k_bb·b, in (p, ‖a‖, ‖b‖, ε)."""
    d = _NA * _NB + EPS
    c = _P / d
    f = _dphi(kind, c)
    coeffs = (-f * _P * _NB / (_NA * d**2), f / d, f / d, -f * _P * _NA / (_NB * d**2))
    return sp.lambdify((_P, _NA, _NB, EPS), coeffs, modules="numpy")


def _numeric_partials_any_dim(kind: str) -> Any:
    coeffs = _closed_form_coefficients(kind)

    def numeric(a: Any, b: Any, eps: float) -> tuple[np.ndarray, np.ndarray]:
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        k_aa, k_ab, k_ba, k_bb = coeffs(float(a @ b), float(np.linalg.norm(a)), float(np.linalg.norm(b)), eps)
        return k_aa * a + k_ab * b, k_ba * a + k_bb * b

    numeric.__doc__ = f"Closed-form (∂s/∂a, ∂s/∂b) for kind {kind!r}, any dimension, a ≠ 0 ≠ b."
    return numeric


@cache
def similarity_value(kind: str = "signed", dim: int = 3) -> Derivation:
    r"""The similarity :math:`s = \varphi(\langle a,b\rangle/(\|a\|\|b\| + \epsilon))` for one kind.

    Args:
        kind: ``"signed"``, ``"abs"`` or ``"squared"``.
        dim: the length of the symbolic vectors a and b.

    Returns:
        Derivation with ``numeric(a, b, eps) -> float``.

    Raises:
        ValueError: for an unknown kind.

    Example:
        >>> import numpy as np
        >>> round(similarity_value("squared", 2).numeric(np.array([1.0, 0]), np.array([1.0, 1]), 0.0), 12)
        0.5

    References:
        OFMU_SPEC.md §1.
    """
    _check_kind(kind)
    a, b = real_vector("a", dim), real_vector("b", dim)
    expr = _phi(kind, _cos(a, b, EPS))
    args = (tuple(a), tuple(b), EPS)
    return Derivation(
        f"similarity_value[{kind}]", expr, lambdify_vector(args, expr), args, _CITE_SIM,
        ("A2_nonzero_gradients",),
    )


@cache
def similarity_partials(kind: str = "signed", dim: int = 3) -> Derivation:
    r"""Partial derivatives :math:`(\partial s/\partial a, \partial s/\partial b)`, eps symbolic.

    ``expr`` is ``sympy.diff`` of :func:`similarity_value` stacked as a column ``[∂s/∂a; ∂s/∂b]``;
    ``rhs`` is the closed form :math:`\varphi'(c)\,(b/D - p\|b\|a/(\|a\|D^2);\ a/D - p\|a\|b/(\|b\|D^2))`.
    ``numeric(a, b, eps)`` evaluates ``expr`` (length-``dim`` vectors, returns a column of length
    ``2·dim``); ``numeric_rhs(a, b, eps) -> (∂s/∂a, ∂s/∂b)`` evaluates the closed form for vectors of any
    length.

    Args:
        kind: ``"signed"``, ``"abs"`` or ``"squared"``.
        dim: the length of the symbolic vectors.

    Returns:
        Derivation (an identity; for ``"abs"`` the check replaces sign(c) by σ, valid where c ≠ 0).

    Raises:
        ValueError: for an unknown kind.

    Example:
        >>> import sympy as sp
        >>> lhs, rhs = similarity_partials("signed", 2).identity()
        >>> [sp.simplify(e) for e in lhs - rhs]
        [0, 0, 0, 0]

    References:
        OFMU_SPEC.md §1 (the eps > 0 form ∂c/∂a = b/D − (p‖b‖/(‖a‖D²))a).
    """
    _check_kind(kind)
    a, b = real_vector("a", dim), real_vector("b", dim)
    c = _cos(a, b, EPS)
    s = _phi(kind, c)
    expr = sp.ImmutableMatrix([sp.diff(s, v) for v in (*a, *b)])
    da, db = _cos_partials_closed(a, b, EPS)
    rhs = sp.ImmutableMatrix.vstack(da, db) * _dphi(kind, c)
    args = (tuple(a), tuple(b), EPS)
    assumptions = ("A2_nonzero_gradients",) + (("A3_abs_nonzero_cos",) if kind == "abs" else ())
    return Derivation(
        f"similarity_partials[{kind}]", expr, lambdify_vector(args, expr), args,
        _CITE_SIM + "; ∂c/∂a = b/D − (p‖b‖/(‖a‖D²))·a, D = ‖a‖‖b‖ + eps", assumptions,
        rhs=rhs, numeric_rhs=_numeric_partials_any_dim(kind),
        substitutions=_abs_substitutions(a.dot(b), c) if kind == "abs" else {},
    )


@cache
def similarity_hessian(kind: str = "signed", dim: int = 3) -> Derivation:
    r"""Hessian of s with respect to the stacked gradients ``(a, b)`` (size ``2·dim``), eps symbolic.

    The exact Hessian of Φ needs the directional derivative of :math:`(\partial s/\partial a,
    \partial s/\partial b)` along :math:`(H_f v, H_r v)`; this is that Jacobian. For ``"abs"`` the Dirac
    term of d sign(c) is dropped (it vanishes where c ≠ 0, assumption A3).

    Args:
        kind: ``"signed"``, ``"abs"`` or ``"squared"``.
        dim: the length of the symbolic vectors.

    Returns:
        Derivation with ``numeric(a, b, eps) -> (2·dim, 2·dim) array``.

    Raises:
        ValueError: for an unknown kind.

    Example:
        >>> import numpy as np
        >>> h = similarity_hessian("signed", 2).numeric(np.array([1.0, 0]), np.array([0.0, 1]), 0.0)
        >>> bool(np.allclose(h, h.T))
        True

    References:
        OFMU_SPEC.md §1 ("∇²Φ·v contains third derivatives of the losses").
    """
    _check_kind(kind)
    a, b = real_vector("a", dim), real_vector("b", dim)
    s = _phi(kind, _cos(a, b, EPS))
    expr = sp.ImmutableMatrix(drop_dirac(sp.hessian(s, (*a, *b))))
    args = (tuple(a), tuple(b), EPS)
    assumptions = ("A2_nonzero_gradients",) + (("A3_abs_nonzero_cos",) if kind == "abs" else ())
    return Derivation(
        f"similarity_hessian[{kind}]", expr, lambdify_vector(args, expr), args, _CITE_SIM, assumptions
    )


def example_losses() -> tuple[Any, Any]:
    """The concrete losses of the θ-level checks: quadratic L_f and cubic L_r in θ = (θ1, θ2)."""
    t1, t2 = THETA
    l_f = t1**2 + t1 * t2 - 2 * t2 + t2**2 / 2
    l_r = (t1 - 1) ** 2 / 2 + t1 * t2 + t2**3 / 3
    return l_f, l_r


@cache
def cosine_theta_gradient(kind: str = "signed", eps: str = "zero") -> Derivation:
    r"""∇_θ of s(∇L_f(θ), ∇L_r(θ)) for concrete losses in two variables, against the spec's formula.

    ``expr`` is ``sympy.diff`` with respect to θ of the similarity of the two gradients of
    :func:`example_losses`. ``rhs`` is

    - ``eps="zero"``: :math:`\varphi'(c)\,(H_f u_f + H_r u_r)` with
      :math:`u_f = (\hat g_r - c\,\hat g_f)/\|g_f\|`, :math:`u_r = (\hat g_f - c\,\hat g_r)/\|g_r\|`
      (the spec's formula; φ' = 1 for ``"signed"``);
    - ``eps="symbolic"``: :math:`\varphi'(c)\,(H_f\,\partial c/\partial a + H_r\,\partial c/\partial b)` with
      the eps > 0 partials.

    Args:
        kind: ``"signed"``, ``"abs"`` or ``"squared"``.
        eps: ``"zero"`` or ``"symbolic"``.

    Returns:
        Derivation with ``numeric(theta)`` (``eps="zero"``) or ``numeric(theta, eps)``, a length-2 array.

    Raises:
        ValueError: for an unknown kind or eps mode.

    Example:
        >>> import numpy as np
        >>> d = cosine_theta_gradient("signed")
        >>> bool(np.allclose(d.numeric(np.array([0.3, -0.2])), d.numeric_rhs(np.array([0.3, -0.2]))))
        True

    References:
        OFMU_SPEC.md §1, 'Gradient of the cosine term'.
    """
    _check_kind(kind)
    if eps not in ("zero", "symbolic"):
        raise ValueError(f"eps: expected 'zero' or 'symbolic', received {eps!r}")
    l_f, l_r = example_losses()
    g_f = sp.ImmutableMatrix([sp.diff(l_f, t) for t in THETA])
    g_r = sp.ImmutableMatrix([sp.diff(l_r, t) for t in THETA])
    h_f, h_r = sp.hessian(l_f, THETA), sp.hessian(l_r, THETA)
    e = sp.Integer(0) if eps == "zero" else EPS
    c = _cos(g_f, g_r, e)
    expr = sp.ImmutableMatrix([sp.diff(_phi(kind, c), t) for t in THETA])
    if eps == "zero":
        n_f, n_r = norm(g_f), norm(g_r)
        u_f = (g_r / n_r - c * g_f / n_f) / n_f
        u_r = (g_f / n_f - c * g_r / n_r) / n_r
        grad_c = h_f * u_f + h_r * u_r
    else:
        da, db = _cos_partials_closed(g_f, g_r, e)
        grad_c = h_f * da + h_r * db
    rhs = sp.ImmutableMatrix(_dphi(kind, c) * grad_c)
    args: tuple[Any, ...] = (THETA,) if eps == "zero" else (THETA, EPS)
    assumptions = ("A1_smooth", "A2_nonzero_gradients") + (
        ("A3_abs_nonzero_cos",) if kind == "abs" else ()
    )
    return Derivation(
        f"cosine_theta_gradient[{kind},{eps}]", expr, lambdify_vector(args, expr), args, _CITE_GRAD,
        assumptions, rhs=rhs, numeric_rhs=lambdify_vector(args, rhs),
        substitutions=_abs_substitutions(g_f.dot(g_r), c) if kind == "abs" else {},
    )

r"""The similarity term of OFMU's inner objective and its derivatives with respect to the gradients.

``sim(a, b)`` compares the forget gradient ``a`` with the retain gradient ``b`` (OFMU_SPEC.md §1):

- ``signed``:  :math:`c = \langle a,b\rangle / (\|a\|\|b\| + \epsilon)` (the paper's reading);
- ``abs``:     :math:`|c|` (true decorrelation);
- ``squared``: :math:`c^2` (true decorrelation, smooth);
- ``none``:    0 (the β = 0 ablation).

With :math:`p = \langle a,b\rangle`, :math:`D = \|a\|\|b\| + \epsilon`:

.. math::  \partial c/\partial a = b/D - \frac{p\,\|b\|}{\|a\| D^2}\, a

(the second term is taken as 0 when :math:`a = 0`, its limit), and symmetrically for ``b``. Everything is
finite when either gradient is zero. :func:`similarity_jvp` gives the directional derivative of
:math:`(\partial s/\partial a, \partial s/\partial b)` along ``(da, db)``, which the exact Hessian of
the inner objective needs.

Examples:
    >>> import numpy as np
    >>> from ofmu_opt.backends.numpy_backend import NumpySpace
    >>> s, ga, gb = similarity_and_grad(NumpySpace(), np.array([1.0, 0]), np.array([1.0, 1]), "signed", 0.0)
    >>> round(s, 6), np.round(ga, 6).tolist()
    (0.707107, [0.0, 0.707107])
"""

from __future__ import annotations

from typing import Any

from .._typing import Vec
from ..problem.space import VectorSpace

__all__ = ["SIMILARITY_KINDS", "similarity_and_grad", "similarity_jvp"]

SIMILARITY_KINDS = ("signed", "abs", "squared", "none")


def _cos_parts(sp: VectorSpace, a: Vec, b: Vec, eps: float) -> dict[str, Any]:
    p = sp.to_float(sp.dot(a, b))
    na = sp.to_float(sp.norm(a))
    nb = sp.to_float(sp.norm(b))
    D = na * nb + eps
    c = p / D if D > 0 else 0.0
    alpha_a = p * nb / (na * D * D) if (na > 0 and D > 0) else 0.0
    alpha_b = p * na / (nb * D * D) if (nb > 0 and D > 0) else 0.0
    ga = sp.axpy(-alpha_a, a, sp.scale(b, 1.0 / D)) if D > 0 else sp.zeros_like(a)
    gb = sp.axpy(-alpha_b, b, sp.scale(a, 1.0 / D)) if D > 0 else sp.zeros_like(b)
    return {"p": p, "na": na, "nb": nb, "D": D, "c": c, "ga": ga, "gb": gb}


def similarity_and_grad(
    sp: VectorSpace, a: Vec, b: Vec, kind: str, eps: float
) -> tuple[float, Vec, Vec]:
    """Return ``(sim(a, b), ∂sim/∂a, ∂sim/∂b)`` for the given kind."""
    if kind == "none":
        return 0.0, sp.zeros_like(a), sp.zeros_like(b)
    cp = _cos_parts(sp, a, b, eps)
    c, ga, gb = cp["c"], cp["ga"], cp["gb"]
    if kind == "signed":
        return c, ga, gb
    if kind == "abs":
        sgn = 1.0 if c > 0 else (-1.0 if c < 0 else 0.0)
        return abs(c), sp.scale(ga, sgn), sp.scale(gb, sgn)
    if kind == "squared":
        return c * c, sp.scale(ga, 2 * c), sp.scale(gb, 2 * c)
    raise ValueError(f"similarity: expected one of {SIMILARITY_KINDS}, received {kind!r}")


def _dcos_grad(
    sp: VectorSpace, a: Vec, b: Vec, da: Vec, db: Vec, cp: dict[str, Any]
) -> tuple[float, Vec, Vec]:
    """Directional derivative of ``(c, ∂c/∂a, ∂c/∂b)`` along ``(da, db)``."""
    p, na, nb, D = cp["p"], cp["na"], cp["nb"], cp["D"]
    if D <= 0:
        return 0.0, sp.zeros_like(a), sp.zeros_like(b)
    dp = sp.to_float(sp.dot(da, b)) + sp.to_float(sp.dot(a, db))
    dna = sp.to_float(sp.dot(a, da)) / na if na > 0 else 0.0
    dnb = sp.to_float(sp.dot(b, db)) / nb if nb > 0 else 0.0
    dD = dna * nb + na * dnb
    dc = dp / D - p * dD / (D * D)

    def one(u: Vec, v: Vec, du: Vec, dv: Vec, nu: float, nv: float, dnu: float, dnv: float) -> Vec:
        # grad_u c = v / D - alpha u,  alpha = p nv / (nu D^2)
        out = sp.axpy(-dD / (D * D), v, sp.scale(dv, 1.0 / D))
        if nu > 0:
            alpha = p * nv / (nu * D * D)
            dalpha = (
                (dp * nv + p * dnv) / (nu * D * D)
                - p * nv * dnu / (nu * nu * D * D)
                - 2 * p * nv * dD / (nu * D**3)
            )
            out = sp.axpy(-dalpha, u, sp.axpy(-alpha, du, out))
        return out

    d_ga = one(a, b, da, db, na, nb, dna, dnb)
    d_gb = one(b, a, db, da, nb, na, dnb, dna)
    return dc, d_ga, d_gb


def similarity_jvp(
    sp: VectorSpace, a: Vec, b: Vec, da: Vec, db: Vec, kind: str, eps: float
) -> tuple[Vec, Vec]:
    """Directional derivative of ``(∂sim/∂a, ∂sim/∂b)`` along ``(da, db)`` (a Hessian-vector product of
    ``sim`` as a function of the two gradients)."""
    if kind == "none":
        return sp.zeros_like(a), sp.zeros_like(b)
    cp = _cos_parts(sp, a, b, eps)
    dc, d_ga, d_gb = _dcos_grad(sp, a, b, da, db, cp)
    if kind == "signed":
        return d_ga, d_gb
    if kind == "abs":
        c = cp["c"]
        sgn = 1.0 if c > 0 else (-1.0 if c < 0 else 0.0)
        return sp.scale(d_ga, sgn), sp.scale(d_gb, sgn)
    if kind == "squared":
        c = cp["c"]
        return (
            sp.axpy(2 * dc, cp["ga"], sp.scale(d_ga, 2 * c)),
            sp.axpy(2 * dc, cp["gb"], sp.scale(d_gb, 2 * c)),
        )
    raise ValueError(f"similarity: expected one of {SIMILARITY_KINDS}, received {kind!r}")



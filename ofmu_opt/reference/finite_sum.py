"""A finite-sum quadratic bi-level problem with a known solution (for stochastic solvers).

.. code-block:: text

    g(x, y) = (1/n) Σ_i ½yᵀA_i y + xᵀC_i y + a_iᵀy          (A_i ≻ 0)
    f(x, y) = (1/m) Σ_j ½yᵀF_j y − t_jᵀy + ½xᵀHx            (F_j ≻ 0, H ≻ 0)

Every oracle takes ``batch=slice(a, b)`` (the mean over samples ``a … b−1``) or ``batch=None`` (the full
mean). With the means ``A, C, a, F, t``: ``y*(x) = Jx + c``, ``J = −A⁻¹Cᵀ``, ``c = −A⁻¹a``, and
``h(x) = f(x, y*(x))`` is a strongly convex quadratic whose minimizer solves
``(JᵀFJ + H) x = −Jᵀ(Fc − t)``.

Examples:
    >>> ref = finite_sum_quadratic()
    >>> ref.data["n_inner"], round(ref.distance(ref.x_star, ref.y_star), 12)
    (64, 0.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends.numpy_backend import NumpySpace
from ..problem.bilevel import BilevelProblem
from ..problem.oracles import FunctionObjective
from .problems import PRESETS, ReferenceProblem

__all__ = ["finite_sum_quadratic"]


def _mean(arr: np.ndarray, batch: Any) -> np.ndarray:
    if batch is None:
        return np.asarray(arr.mean(axis=0))
    if not isinstance(batch, slice):
        raise TypeError(f"batch: expected a slice of sample indices or None, received {type(batch).__name__}")
    return np.asarray(arr[batch].mean(axis=0))


def finite_sum_quadratic(seed: int = 0, n_inner: int = 64, n_outer: int = 64, nx: int = 3,
                         ny: int = 5) -> ReferenceProblem:
    """The finite-sum quadratic (module docstring), deterministic in ``seed``."""
    rng = np.random.default_rng(seed + 101)

    def spd_batch(n: int, d: int, mu: float) -> np.ndarray:
        B = rng.standard_normal((n, d, d)) / np.sqrt(d)
        return np.asarray(np.einsum("nij,nkj->nik", B, B) / 2 + mu * np.eye(d))

    A = spd_batch(n_inner, ny, 0.5)
    C = rng.standard_normal((n_inner, nx, ny)) / np.sqrt(ny)
    a = rng.standard_normal((n_inner, ny))
    F = spd_batch(n_outer, ny, 0.5)
    t = rng.standard_normal((n_outer, ny))
    H = np.eye(nx) * 0.5

    inner = FunctionObjective(
        value_fn=lambda x, y, b: float(0.5 * y @ _mean(A, b) @ y + x @ _mean(C, b) @ y + _mean(a, b) @ y),
        grad_fn=lambda x, y, b: (_mean(C, b) @ y, _mean(A, b) @ y + _mean(C, b).T @ x + _mean(a, b)),
        hvp_fn=lambda x, y, v, b: (_mean(C, b) @ v, _mean(A, b) @ v),
        quadratic=True,
    )
    outer = FunctionObjective(
        value_fn=lambda x, y, b: float(0.5 * y @ _mean(F, b) @ y - _mean(t, b) @ y + 0.5 * x @ H @ x),
        grad_fn=lambda x, y, b: (H @ x, _mean(F, b) @ y - _mean(t, b)),
        hvp_fn=lambda x, y, v, b: (np.zeros(nx), _mean(F, b) @ v),
        quadratic=True,
    )
    Am, Cm, am, Fm, tm = A.mean(0), C.mean(0), a.mean(0), F.mean(0), t.mean(0)
    J = -np.linalg.solve(Am, Cm.T)
    c = -np.linalg.solve(Am, am)
    x_star = np.linalg.solve(J.T @ Fm @ J + H, -J.T @ (Fm @ c - tm))
    y_star = J @ x_star + c
    # strongly convex quadratic lower level (y*(x) affine), convex outer: local = global
    prob = BilevelProblem(outer, inner, NumpySpace(), "min", has_x=True, name="FSQ", local_is_global=True)
    f_star = float(0.5 * y_star @ Fm @ y_star - tm @ y_star + 0.5 * x_star @ H @ x_star)
    L_in = float(np.linalg.eigvalsh(Am).max())
    return ReferenceProblem(
        "FSQ", f"finite-sum quadratic: inner mean of {n_inner} strongly convex quadratics, outer mean of {n_outer} "
        f"(x ∈ R^{nx}, y ∈ R^{ny}); oracles take batch=slice(a, b)",
        "closed form from the mean matrices: x* solves (JᵀFJ + H)x = −Jᵀ(Fc − t), y* = Jx* + c",
        prob, np.zeros(nx), np.zeros(ny), x_star, y_star, f_star,
        applies={p: None for p in PRESETS} | {"scalarized": "scalarized does not apply: f + weight·g is "
                                                            "unbounded below jointly in (x, y) at large weights (the "
                                                            "bilinear coupling), so the run stops 'unbounded'"},
        hints={"inner_lr": 1.0 / L_in},
        data={"n_inner": n_inner, "n_outer": n_outer, "A": A, "C": C, "a": a, "F": F, "t": t, "H": H},
        traps="stochastic: a single batch's gradient is biased away from the full mean; constant-step "
              "mini-batch methods stall at a noise floor unless the variance is reduced",
    )

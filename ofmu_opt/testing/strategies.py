"""Hypothesis strategies that build valid random instances (no filtering): SPD matrices as ``B Bᵀ + μI``.

Requires the ``hypothesis`` package (a dev extra); importing this module without it raises ImportError.

Examples:
    >>> spd_matrices(3).example().shape  # doctest: +SKIP
    (3, 3)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from ..backends.numpy_backend import NumpySpace
from ..problem.bilevel import BilevelProblem
from ..problem.oracles import FunctionObjective

__all__ = ["p3_instances", "qofmu_instances", "spd_matrices"]

_floats = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False, allow_infinity=False)


def _matrix(rows: int, cols: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(_floats, min_size=rows * cols, max_size=rows * cols).map(
        lambda v: np.asarray(v, dtype=np.float64).reshape(rows, cols)
    )


def _vector(n: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(_floats, min_size=n, max_size=n).map(lambda v: np.asarray(v, dtype=np.float64))


def spd_matrices(n: int, mu: float = 0.5) -> st.SearchStrategy[np.ndarray]:
    """Symmetric positive-definite ``n×n`` matrices ``B Bᵀ/n + μI`` (eigenvalues ≥ μ)."""
    return _matrix(n, n).map(lambda B: B @ B.T / n + mu * np.eye(n))


@st.composite
def p3_instances(draw: Any, nx: int = 2, ny: int = 3) -> dict[str, Any]:
    """A random P3 instance with its closed-form solution and problem."""
    Q = draw(spd_matrices(ny, 1.0))
    H = draw(spd_matrices(nx, 0.5))
    C, a, t = draw(_matrix(nx, ny)), draw(_vector(ny)), draw(_vector(ny))
    J = -np.linalg.solve(Q, C.T)
    c = -np.linalg.solve(Q, a)
    x_star = -np.linalg.solve(J.T @ J + H, J.T @ (c - t))
    inner = FunctionObjective(
        lambda x, y, _b: float(0.5 * y @ Q @ y + x @ C @ y + a @ y),
        lambda x, y, _b: (C @ y, Q @ y + C.T @ x + a),
        lambda x, y, v, _b: (C @ v, Q @ v), quadratic=True,
    )
    outer = FunctionObjective(
        lambda x, y, _b: float(0.5 * np.sum((y - t) ** 2) + 0.5 * x @ H @ x),
        lambda x, y, _b: (H @ x, y - t),
        lambda x, y, v, _b: (np.zeros(nx), v.copy()), quadratic=True,
    )
    prob = BilevelProblem(outer, inner, NumpySpace(), "min", True, "P3-random", local_is_global=True)
    return {"problem": prob, "x_star": x_star, "y_star": J @ x_star + c, "Q": Q, "x0": np.zeros(nx),
            "y0": np.zeros(ny)}


@st.composite
def qofmu_instances(draw: Any, n: int = 3) -> dict[str, Any]:
    """A random Q-OFMU instance with A ≻ 0 (unique inner maximizer a, so θ* = a)."""
    A = draw(spd_matrices(n, 0.5))
    B = draw(spd_matrices(n, 0.5))
    a, b = draw(_vector(n)), draw(_vector(n))
    forget = FunctionObjective(
        lambda x, y, _b: float(-0.5 * (y - a) @ A @ (y - a)), lambda x, y, _b: (None, -A @ (y - a)),
        lambda x, y, v, _b: (None, -A @ v), quadratic=True,
    )
    retain = FunctionObjective(
        lambda x, y, _b: float(0.5 * (y - b) @ B @ (y - b)), lambda x, y, _b: (None, B @ (y - b)),
        lambda x, y, v, _b: (None, B @ v), quadratic=True,
    )
    prob = BilevelProblem(retain, forget, NumpySpace(), "max", False, "QOFMU-random", local_is_global=True)
    return {"problem": prob, "y_star": a.copy(), "A": A, "B": B, "a": a, "b": b, "y0": np.zeros(n)}

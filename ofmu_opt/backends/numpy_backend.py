"""The numpy vector space: a block is an ``ndarray`` (any shape); operations are vectorized.

Examples:
    >>> import numpy as np
    >>> sp = NumpySpace()
    >>> sp.dot(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    11.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NumpySpace", "as_array"]


def as_array(v: Any, name: str = "vector") -> np.ndarray:
    """Return ``v`` as a float64 array (a copy when a conversion is needed)."""
    from ..errors import ProblemSpecError

    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProblemSpecError(f"{name}: expected an array of numbers, received {type(v).__name__}") from exc
    return a


class NumpySpace:
    """:class:`~ofmu_opt.problem.space.VectorSpace` over numpy arrays."""

    name = "numpy"

    def zeros_like(self, a: np.ndarray) -> np.ndarray:
        return np.zeros_like(a)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def sub(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    def scale(self, a: np.ndarray, s: Any) -> np.ndarray:
        return a * s

    def axpy(self, alpha: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return alpha * x + y

    def dot(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.vdot(a, b))

    def norm(self, a: np.ndarray) -> float:
        return float(np.linalg.norm(a.ravel()))

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    def div(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a / b

    def sqrt(self, a: np.ndarray) -> np.ndarray:
        return np.sqrt(a)

    def add_scalar(self, a: np.ndarray, c: float) -> np.ndarray:
        return a + c

    def all_finite(self, a: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(a)))

    def to_float(self, s: Any) -> float:
        return float(s)

    def same_shape(self, a: Any, b: Any) -> bool:
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape

    def describe(self, a: Any) -> str:
        if isinstance(a, np.ndarray):
            return f"{a.shape} {a.dtype}"
        return type(a).__name__

    def to_host(self, a: np.ndarray) -> list[float]:
        return [float(v) for v in np.asarray(a).ravel()]

    def from_host(self, values: list[float], like: np.ndarray) -> np.ndarray:
        """A vector shaped and typed like ``like`` holding ``values`` (row-major): the inverse of ``to_host``.

        Examples:
            >>> sp = NumpySpace()
            >>> sp.from_host([1.0, 2.0, 3.0, 4.0], np.zeros((2, 2), np.float32))
            array([[1., 2.],
                   [3., 4.]], dtype=float32)
        """
        like = np.asarray(like)
        if len(values) != like.size:
            raise ValueError(f"from_host: {len(values)} values for a vector of {like.size}")
        return np.asarray(values, dtype=like.dtype).reshape(like.shape)



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

__all__ = ["NumpyLinalg", "NumpySpace", "as_array"]


def as_array(v: Any, name: str = "vector") -> np.ndarray:
    """Return ``v`` as a float64 array (a copy when a conversion is needed)."""
    from ..errors import ProblemSpecError

    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProblemSpecError(f"{name}: expected an array of numbers, received {type(v).__name__}") from exc
    return a


def _host(sp: Any, v: Any) -> np.ndarray:
    """``v``'s entries as a flat float64 array (``sp.to_host``'s order; a numpy array without the list round trip)."""
    if isinstance(v, np.ndarray):
        if np.iscomplexobj(v):
            raise TypeError(f"complex entries ({v.dtype})")
        return np.asarray(v, dtype=np.float64).reshape(-1)
    return np.asarray(sp.to_host(v), dtype=np.float64)


class NumpyLinalg:
    """The host linear algebra of ``ImplicitDiff(inner_solver="dense")`` in numpy float64 (the
    :class:`~ofmu_opt.core.comparison.HostLinalg` capability, a space's ``linalg`` attribute): matrices and host
    vectors are float64 arrays, the Cholesky factorization and its solves are LAPACK's ``dpotrf``/``dpotrs``. Works for
    any space with ``to_host``/``from_host`` (numpy arrays skip the lists); the torch space uses it too.

    Examples:
        >>> la = NumpyLinalg()
        >>> low = la.cholesky(np.array([[4.0, 2.0], [2.0, 3.0]]), 1e-12)
        >>> la.solve(low, np.array([6.0, 5.0]))
        array([1., 1.])
        >>> la.cholesky(np.array([[1.0, 2.0], [2.0, 1.0]]), 1e-12) is None  # not positive definite
        True
    """

    def matrix(self, sp: Any, block: Any, rows: int, cols: int, what: str) -> np.ndarray:
        from ..errors import OracleError

        try:
            a = _host(sp, block)
        except (TypeError, ValueError) as exc:
            raise OracleError(f"{what}: cannot read its entries as real numbers ({exc})") from exc
        if a.size != rows * cols:
            raise OracleError(f"{what} has {a.size} entries, expected {rows} × {cols} = {rows * cols}")
        return a.reshape(rows, cols)

    def from_rows(self, rows: list[list[float]]) -> np.ndarray:
        return np.array(rows, dtype=np.float64)

    def vector(self, sp: Any, v: Any) -> np.ndarray:
        return _host(sp, v)

    def to_space(self, sp: Any, h: np.ndarray, like: Any) -> Any:
        if isinstance(like, np.ndarray):
            return h.astype(like.dtype).reshape(like.shape)
        return sp.from_host(h.tolist(), like)

    def finite(self, m: np.ndarray) -> bool:
        return bool(np.isfinite(m).all())

    def symmetric_part(self, m: np.ndarray) -> np.ndarray:
        return 0.5 * (m + m.T)

    def scale(self, m: np.ndarray, s: float) -> np.ndarray:
        return s * m

    def max_abs_diag(self, m: np.ndarray) -> float:
        return float(np.max(np.abs(np.diagonal(m))))

    def cholesky(self, m: np.ndarray, tiny: float) -> np.ndarray | None:
        """Lower factor; ``None`` when LAPACK finds the matrix not positive definite or a pivot (``L_jj²``) is
        ``<= tiny``."""
        from scipy.linalg import lapack

        low, info = lapack.dpotrf(m, lower=1, clean=1)
        if info != 0:
            return None
        d = np.diagonal(low)
        if not bool(np.all(d * d > tiny)):
            return None
        return low  # type: ignore[no-any-return]

    def solve(self, chol: np.ndarray, b: np.ndarray) -> np.ndarray:
        from scipy.linalg import lapack

        x, info = lapack.dpotrs(chol, b, lower=1)
        if info != 0:  # pragma: no cover - only for malformed arguments
            raise ValueError(f"dpotrs: illegal argument {-info}")
        return x  # type: ignore[no-any-return]

    def solve_rows(self, chol: np.ndarray, m: np.ndarray) -> np.ndarray:
        return self.solve(chol, m.T).T

    def matvec(self, m: np.ndarray, v: np.ndarray) -> np.ndarray:
        return m @ v  # type: ignore[no-any-return]

    def rmatvec(self, m: np.ndarray, v: np.ndarray) -> np.ndarray:
        return m.T @ v  # type: ignore[no-any-return]

    def axpy(self, alpha: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return alpha * x + y  # type: ignore[no-any-return]

    def newton_model(self, fxx: np.ndarray, fxy: np.ndarray, fyy: np.ndarray, jac: np.ndarray) -> np.ndarray:
        a = fxy @ jac.T
        return fxx + a + a.T + jac @ fyy @ jac.T  # type: ignore[no-any-return]


class NumpySpace:
    """:class:`~ofmu_opt.problem.space.VectorSpace` over numpy arrays. ``linalg``: the optional host linear algebra
    capability (:class:`NumpyLinalg`) of the dense implicit solver."""

    name = "numpy"
    linalg = NumpyLinalg()

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



r"""Concrete constraint sets and inequality constraints for numpy arrays and torch tensors.

The protocols (:class:`~ofmu_opt.problem.constraints.ConvexSet`,
:class:`~ofmu_opt.problem.constraints.InequalityConstraints`) and the feasibility report are in
:mod:`ofmu_opt.problem.constraints`; this module holds implementations that need an array library:

- simple sets with a Euclidean projection: :class:`Box`, :class:`NonNegative`, :class:`Ball`,
  :class:`Simplex`, :class:`Affine` (``{v : A v = b}``) and :class:`UserProjection`;
- inequality constraints ``c(x, y) ≤ 0``: :class:`FunctionConstraints` (from callables) and
  :class:`LinearConstraints` (``A_x x + A_y y ≤ b``).

Vectors are numpy arrays (any shape; sets act on the flattened entries), torch tensors, or tuples of
torch tensors (a model's parameters: ``Box``, ``NonNegative`` and ``Ball`` act on all blocks together;
``Simplex`` and ``Affine`` need a single array or tensor). Every constructor validates its input and
raises :class:`~ofmu_opt.errors.ProblemSpecError`.

Examples:
    >>> import numpy as np
    >>> Box(0.0, 1.0).project(np.array([-1.0, 0.5, 3.0])).tolist()
    [0.0, 0.5, 1.0]
    >>> Simplex().project(np.array([0.0, 0.0, 2.0])).tolist()
    [0.0, 0.0, 1.0]
    >>> round(Ball(radius=1.0).violation(np.array([3.0, 4.0])), 6)
    4.0
    >>> c = LinearConstraints(a_y=np.array([[1.0, 1.0]]), b=np.array([1.0]))  # y1 + y2 <= 1
    >>> c.value(None, np.array([1.0, 1.0])).tolist()
    [1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._typing import Pair, Vec
from ..errors import OracleError, ProblemSpecError

__all__ = [
    "Affine",
    "Ball",
    "Box",
    "FunctionConstraints",
    "LinearConstraints",
    "NonNegative",
    "Simplex",
    "UserProjection",
]


# ---------------------------------------------------------------------- vector plumbing (numpy / torch)
def _is_torch(v: Any) -> bool:
    return type(v).__module__.split(".")[0] == "torch"


def _blocks(v: Any) -> tuple[Any, ...] | None:
    """The tensors of a tuple/list vector, else ``None`` (a single array or tensor)."""
    if isinstance(v, (tuple, list)):
        return tuple(v)
    return None


def _to_np(v: Any, name: str) -> np.ndarray:
    if _is_torch(v):
        return np.asarray(v.detach().cpu().double().numpy())
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProblemSpecError(f"{name}: expected an array or tensor of numbers, received {type(v).__name__}") from exc
    return a


def _like(a: np.ndarray, ref: Any) -> Any:
    """``a`` converted back to the type, dtype, device and shape of ``ref``."""
    if _is_torch(ref):
        import torch

        return torch.as_tensor(a.reshape(tuple(ref.shape)), dtype=ref.dtype, device=ref.device)
    ref_arr = np.asarray(ref)
    dtype = ref_arr.dtype if np.issubdtype(ref_arr.dtype, np.floating) else np.float64
    return a.reshape(ref_arr.shape).astype(dtype, copy=False)


def _finite_number(name: str, v: Any, *, allow_inf: bool = False) -> np.ndarray:
    a = _to_np(v, name)
    if np.any(np.isnan(a)) or (not allow_inf and not np.all(np.isfinite(a))):
        kind = "numbers (±inf allowed)" if allow_inf else "finite numbers"
        raise ProblemSpecError(f"{name}: expected {kind}, received {v!r}")
    return a


# ---------------------------------------------------------------------- simple sets
class _SetBase:
    def contains(self, v: Vec, tol: float = 1e-9) -> bool:
        """Whether ``violation(v) <= tol``."""
        return float(self.violation(v)) <= tol  # type: ignore[attr-defined]

    def violation(self, v: Vec) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class Box(_SetBase):
    """``lower ≤ v ≤ upper`` elementwise; bounds are scalars or arrays broadcastable to ``v`` (±inf allowed).

    Raises:
        ProblemSpecError: a NaN bound, or ``lower > upper`` somewhere.
    """

    lower: Any = -math.inf
    upper: Any = math.inf

    def __post_init__(self) -> None:
        lo = _finite_number("Box.lower", self.lower, allow_inf=True)
        hi = _finite_number("Box.upper", self.upper, allow_inf=True)
        try:
            bad = np.any(lo > hi)
        except ValueError as exc:
            raise ProblemSpecError(f"Box: lower {lo.shape} and upper {hi.shape} do not broadcast") from exc
        if bad:
            raise ProblemSpecError("Box: expected lower <= upper elementwise, received a bound with lower > upper")
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)

    def _bounds_for(self, t: Any) -> tuple[Any, Any]:
        lo, hi = self._lo, self._hi  # type: ignore[attr-defined]
        if _is_torch(t):
            import torch

            lo_t = torch.as_tensor(lo, dtype=t.dtype, device=t.device) if lo.ndim else float(lo)
            hi_t = torch.as_tensor(hi, dtype=t.dtype, device=t.device) if hi.ndim else float(hi)
            return lo_t, hi_t
        return lo, hi

    def _check_shape(self, a: np.ndarray) -> None:
        for bound in (self._lo, self._hi):  # type: ignore[attr-defined]
            try:
                np.broadcast_shapes(bound.shape, a.shape)
            except ValueError as exc:
                raise ProblemSpecError(
                    f"Box: a bound of shape {bound.shape} does not broadcast to a vector of shape {a.shape}"
                ) from exc

    def project(self, v: Vec) -> Vec:
        blocks = _blocks(v)
        if blocks is not None:
            if self._lo.ndim or self._hi.ndim:  # type: ignore[attr-defined]
                raise ProblemSpecError("Box: array bounds need a single array/tensor, received a tuple of blocks")
            return type(v)(self.project(b) for b in blocks)
        if _is_torch(v):
            import torch

            self._check_shape(np.empty(tuple(v.shape)))
            lo, hi = self._bounds_for(v)
            return torch.clamp(v, min=lo, max=hi)
        a = np.asarray(v)
        self._check_shape(a)
        return np.clip(a, self._lo, self._hi)  # type: ignore[attr-defined]

    def violation(self, v: Vec) -> float:
        blocks = _blocks(v)
        if blocks is not None:
            return max((self.violation(b) for b in blocks), default=0.0)
        a = _to_np(v, "vector")
        self._check_shape(a)
        if a.size == 0:
            return 0.0
        below = np.max(self._lo - a) if self._lo.size else -math.inf  # type: ignore[attr-defined]
        above = np.max(a - self._hi) if self._hi.size else -math.inf  # type: ignore[attr-defined]
        return float(max(below, above, 0.0))


class NonNegative(Box):
    """The nonnegative orthant ``v ≥ 0``.

    Examples:
        >>> import numpy as np
        >>> NonNegative().project(np.array([-2.0, 3.0])).tolist()
        [0.0, 3.0]
    """

    def __init__(self) -> None:
        super().__init__(0.0, math.inf)


def _global_norm(v: Any) -> float:
    blocks = _blocks(v)
    if blocks is not None:
        return math.sqrt(sum(_global_norm(b) ** 2 for b in blocks))
    return float(np.linalg.norm(_to_np(v, "vector").ravel()))


@dataclass(frozen=True)
class Ball(_SetBase):
    """The Euclidean ball ``‖v − center‖ ≤ radius`` (``center`` ``None`` = the origin).

    Raises:
        ProblemSpecError: a radius that is not a positive finite number, or a non-finite center.
    """

    radius: float = 1.0
    center: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.radius, bool) or not isinstance(self.radius, (int, float)) or not (
            math.isfinite(self.radius) and self.radius > 0
        ):
            raise ProblemSpecError(f"Ball.radius: expected a positive finite number, received {self.radius!r}")
        if self.center is not None:
            if _blocks(self.center) is not None:
                raise ProblemSpecError("Ball.center: expected a single array, received a tuple")
            _finite_number("Ball.center", self.center)

    def _offset(self, v: Any) -> Any:
        if self.center is None:
            return v
        if _blocks(v) is not None:
            raise ProblemSpecError("Ball: a center needs a single array/tensor vector, received a tuple of blocks")
        c = _to_np(self.center, "Ball.center")
        a = _to_np(v, "vector")
        if c.shape != a.shape and c.size != 1:
            raise ProblemSpecError(f"Ball: center of shape {c.shape} does not match a vector of shape {a.shape}")
        return a - c

    def project(self, v: Vec) -> Vec:
        d = self._offset(v)
        n = _global_norm(d)
        if n <= self.radius:
            return v
        s = self.radius / n
        if self.center is None:
            blocks = _blocks(v)
            if blocks is not None:
                return type(v)(b * s for b in blocks)
            return v * s
        c = _to_np(self.center, "Ball.center")
        return _like(c + np.asarray(d) * s, v)

    def violation(self, v: Vec) -> float:
        return max(_global_norm(self._offset(v)) - self.radius, 0.0)


def _single(v: Any, who: str) -> np.ndarray:
    if _blocks(v) is not None:
        raise ProblemSpecError(f"{who}: expected a single array or tensor, received a tuple of blocks")
    return _to_np(v, "vector").ravel()


@dataclass(frozen=True)
class Simplex(_SetBase):
    """The scaled probability simplex ``{v ≥ 0, Σ v = total}`` (sort-based projection, O(n log n)).

    Raises:
        ProblemSpecError: ``total`` not a positive finite number.
    """

    total: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.total, bool) or not isinstance(self.total, (int, float)) or not (
            math.isfinite(self.total) and self.total > 0
        ):
            raise ProblemSpecError(f"Simplex.total: expected a positive finite number, received {self.total!r}")

    def project(self, v: Vec) -> Vec:
        a = _single(v, "Simplex")
        if a.size == 0:
            raise ProblemSpecError("Simplex: the simplex of an empty vector is empty")
        u = np.sort(a)[::-1]
        css = np.cumsum(u) - self.total
        idx = np.arange(1, a.size + 1)
        k = int(np.nonzero(u - css / idx > 0)[0][-1])
        theta = css[k] / (k + 1)
        return _like(np.maximum(a - theta, 0.0), v)

    def violation(self, v: Vec) -> float:
        a = _single(v, "Simplex")
        if a.size == 0:
            return math.inf
        return float(max(-np.min(a), abs(float(np.sum(a)) - self.total), 0.0))


@dataclass(frozen=True)
class Affine(_SetBase):
    """The affine set ``{v : A v = b}`` (on the flattened vector); projection through the pseudo-inverse.

    Raises:
        ProblemSpecError: ``A`` not a 2-D finite matrix, ``b`` of the wrong length, or an empty set
            (``b`` outside the range of ``A``).
    """

    a: Any
    b: Any

    def __post_init__(self) -> None:
        a = _finite_number("Affine.a", self.a)
        b = _finite_number("Affine.b", self.b).ravel()
        if a.ndim != 2:
            raise ProblemSpecError(f"Affine.a: expected a 2-D matrix, received shape {a.shape}")
        if b.shape != (a.shape[0],):
            raise ProblemSpecError(f"Affine.b: expected {a.shape[0]} entries (rows of A), received {b.size}")
        pinv = np.linalg.pinv(a)
        resid = float(np.linalg.norm(a @ (pinv @ b) - b))
        if resid > 1e-8 * max(1.0, float(np.linalg.norm(b))):
            raise ProblemSpecError(f"Affine: the set {{v : A v = b}} is empty (b is not in the range of A; "
                                   f"residual {resid:.3g})")
        object.__setattr__(self, "_a", a)
        object.__setattr__(self, "_b", b)
        object.__setattr__(self, "_pinv", pinv)

    def _vec(self, v: Any) -> np.ndarray:
        x = _single(v, "Affine")
        if x.size != self._a.shape[1]:  # type: ignore[attr-defined]
            raise ProblemSpecError(
                f"Affine: A has {self._a.shape[1]} columns, the vector has {x.size} entries"  # type: ignore[attr-defined]
            )
        return x

    def project(self, v: Vec) -> Vec:
        x = self._vec(v)
        r = self._a @ x - self._b  # type: ignore[attr-defined]
        return _like(x - self._pinv @ r, v)  # type: ignore[attr-defined]

    def violation(self, v: Vec) -> float:
        x = self._vec(v)
        r = self._a @ x - self._b  # type: ignore[attr-defined]
        return float(np.max(np.abs(r))) if r.size else 0.0


@dataclass(frozen=True)
class UserProjection(_SetBase):
    """A set given by the user's projection ``project_fn(v) -> v'``.

    Args:
        project_fn: the Euclidean projection (must be idempotent; the solver relies on it).
        violation_fn: optional ``v -> float``; by default the distance ``‖v − project_fn(v)‖``.
        name: a label for reports.

    Raises:
        ProblemSpecError: ``project_fn`` not callable.
    """

    project_fn: Callable[[Any], Any]
    violation_fn: Callable[[Any], float] | None = None
    name: str = "user"

    def __post_init__(self) -> None:
        if not callable(self.project_fn):
            raise ProblemSpecError(f"UserProjection.project_fn: expected a callable, received {self.project_fn!r}")
        if self.violation_fn is not None and not callable(self.violation_fn):
            raise ProblemSpecError("UserProjection.violation_fn: expected a callable or None")

    def project(self, v: Vec) -> Vec:
        return self.project_fn(v)

    def violation(self, v: Vec) -> float:
        if self.violation_fn is not None:
            return float(self.violation_fn(v))
        p = self.project_fn(v)
        blocks = _blocks(v)
        if blocks is not None:
            return math.sqrt(sum(_global_norm(_to_np(a, "v") - _to_np(b, "v")) ** 2
                                 for a, b in zip(blocks, p, strict=True)))
        return _global_norm(_to_np(v, "vector") - _to_np(p, "projection"))


# ---------------------------------------------------------------------- inequality constraints
@dataclass(frozen=True)
class FunctionConstraints:
    """Inequality constraints ``c(x, y) ≤ 0`` from callables.

    Args:
        value_fn: ``(x, y) -> m values``.
        count: ``m``, the number of constraints.
        jac_fn: ``(x, y) -> (J_x, J_y)``, the Jacobians as ``m × dim`` numpy arrays (``J_x`` ``None`` when
            there is no x); used to form the vector-Jacobian product.
        vjp_fn: ``(x, y, mu) -> (gx, gy)``, ``∇ Σ mu_i c_i``; preferred over ``jac_fn`` (and the only way for
            torch vectors).
        name: a label for reports.

    Raises:
        ProblemSpecError: neither ``jac_fn`` nor ``vjp_fn``, a non-callable, or ``count < 1``.

    Examples:
        >>> import numpy as np
        >>> c = FunctionConstraints(lambda x, y: [y[0] ** 2 - 1.0], 1,
        ...                         jac_fn=lambda x, y: (None, np.array([[2 * y[0]]])))
        >>> c.vjp(None, np.array([3.0]), np.array([0.5]))[1].tolist()
        [3.0]
    """

    value_fn: Callable[[Any, Any], Any]
    count: int
    jac_fn: Callable[[Any, Any], tuple[Any, Any]] | None = None
    vjp_fn: Callable[[Any, Any, Any], Pair] | None = None
    name: str = "constraints"

    def __post_init__(self) -> None:
        if not callable(self.value_fn):
            raise ProblemSpecError("FunctionConstraints.value_fn: expected a callable")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ProblemSpecError(f"FunctionConstraints.count: expected an integer >= 1, received {self.count!r}")
        if self.jac_fn is None and self.vjp_fn is None:
            raise ProblemSpecError("FunctionConstraints: expected jac_fn or vjp_fn (the constraint gradients)")
        for name in ("jac_fn", "vjp_fn"):
            fn = getattr(self, name)
            if fn is not None and not callable(fn):
                raise ProblemSpecError(f"FunctionConstraints.{name}: expected a callable or None")

    def value(self, x: Vec | None, y: Vec) -> Any:
        return self.value_fn(x, y)

    def vjp(self, x: Vec | None, y: Vec, mu: Sequence[float]) -> Pair:
        mu_arr = np.asarray(mu, dtype=np.float64).ravel()
        if mu_arr.shape != (self.count,):
            raise OracleError(f"constraints.vjp: expected {self.count} multipliers, received {mu_arr.size}")
        if self.vjp_fn is not None:
            return self.vjp_fn(x, y, mu_arr)
        assert self.jac_fn is not None
        jx, jy = self.jac_fn(x, y)
        jy = np.asarray(jy, dtype=np.float64).reshape(self.count, -1)
        y_arr = np.asarray(y)
        if jy.shape[1] != y_arr.size:
            raise OracleError(f"constraints.jac_fn: J_y has {jy.shape[1]} columns, y has {y_arr.size} entries")
        gy = (mu_arr @ jy).reshape(y_arr.shape).astype(y_arr.dtype, copy=False)
        gx = None
        if x is not None:
            x_arr = np.asarray(x)
            if jx is None:
                gx = np.zeros_like(x_arr)
            else:
                jx = np.asarray(jx, dtype=np.float64).reshape(self.count, -1)
                if jx.shape[1] != x_arr.size:
                    raise OracleError(
                        f"constraints.jac_fn: J_x has {jx.shape[1]} columns, x has {x_arr.size} entries")
                gx = (mu_arr @ jx).reshape(x_arr.shape).astype(x_arr.dtype, copy=False)
        return gx, gy


@dataclass(frozen=True)
class LinearConstraints:
    """Linear constraints ``A_x x + A_y y ≤ b`` (numpy or torch vectors; ``a_x`` ``None`` when x is absent).

    Raises:
        ProblemSpecError: non-finite entries or inconsistent row counts.
    """

    a_y: Any
    b: Any
    a_x: Any = None
    name: str = "linear"
    _ay: np.ndarray = field(init=False, repr=False, compare=False)
    _ax: np.ndarray | None = field(init=False, repr=False, compare=False)
    _b: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ay = _finite_number("LinearConstraints.a_y", self.a_y)
        b = _finite_number("LinearConstraints.b", self.b).ravel()
        if ay.ndim != 2 or ay.shape[0] != b.size:
            raise ProblemSpecError(
                f"LinearConstraints: expected a_y of shape (m, dim y) with m = len(b) = {b.size}, received {ay.shape}")
        ax = None
        if self.a_x is not None:
            ax = _finite_number("LinearConstraints.a_x", self.a_x)
            if ax.ndim != 2 or ax.shape[0] != b.size:
                raise ProblemSpecError(
                    f"LinearConstraints: expected a_x of shape (m, dim x) with m = {b.size}, received {ax.shape}")
        object.__setattr__(self, "_ay", ay)
        object.__setattr__(self, "_ax", ax)
        object.__setattr__(self, "_b", b)

    @property
    def count(self) -> int:
        return int(self._b.size)

    def value(self, x: Vec | None, y: Vec) -> np.ndarray:
        yv = _to_np(y, "y").ravel()
        if yv.size != self._ay.shape[1]:
            raise ProblemSpecError(f"LinearConstraints: a_y has {self._ay.shape[1]} columns, y has {yv.size} entries")
        out = self._ay @ yv - self._b
        if self._ax is not None and x is not None:
            xv = _to_np(x, "x").ravel()
            if xv.size != self._ax.shape[1]:
                raise ProblemSpecError(
                    f"LinearConstraints: a_x has {self._ax.shape[1]} columns, x has {xv.size} entries")
            out = out + self._ax @ xv
        return out

    def vjp(self, x: Vec | None, y: Vec, mu: Sequence[float]) -> Pair:
        mu_arr = np.asarray(mu, dtype=np.float64).ravel()
        if mu_arr.shape != (self.count,):
            raise OracleError(f"constraints.vjp: expected {self.count} multipliers, received {mu_arr.size}")
        gy = _like(mu_arr @ self._ay, y)  # numpy in, numpy out; a tensor in, a tensor of its dtype/device out
        gx = None
        if x is not None:
            gx = _like(np.zeros(_to_np(x, "x").size) if self._ax is None else mu_arr @ self._ax, x)
        return gx, gy

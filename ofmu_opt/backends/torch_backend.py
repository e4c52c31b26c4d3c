"""The torch vector space: a block is one tensor or a tuple of tensors (a model's trainable parameters).

A tuple is never flattened into one copy: every operation runs over the list of tensors with the fused
``torch._foreach_*`` kernels (one kernel launch per operation and dtype/device group on GPU). Scalars
(``dot``, ``norm``) are 0-d tensors that stay on the vectors' device, so a loop built from these
operations never synchronises with the host; only :meth:`TorchSpace.to_float` and
:meth:`TorchSpace.all_finite` do, and the core calls them once per outer step.

Rules:

- dtype and device come from the inputs; outputs keep them. Nothing moves between devices: mixing
  devices (including a 0-d scalar tensor on another device) raises :class:`~ofmu_opt.errors.BackendError`.
- float64, float32, float16 and bfloat16 work; dot products and norms of half-precision vectors are
  accumulated in float32 (the returned scalar is float32).
- ``reduce``: an optional hook applied to every local partial sum (dot products and squared norms)
  before it is used, e.g. an all-reduce across the shards of a sharded (FSDP/ZeRO-style) parameter
  vector; see :mod:`ofmu_opt.backends.distributed`. Data-parallel replicas need no hook: their gradients
  are averaged before they reach the space.

Example:
    >>> import torch
    >>> sp = TorchSpace()
    >>> a = (torch.ones(2, dtype=torch.float64), torch.full((3,), 2.0, dtype=torch.float64))
    >>> float(sp.dot(a, a)), sp.to_host(sp.scale(a, 0.5))
    (14.0, [0.5, 0.5, 1.0, 1.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import torch
from torch import Tensor

from ..errors import BackendError
from .numpy_backend import NumpyLinalg

__all__ = ["TorchSpace", "TorchVec", "as_tensor_vec", "vec_device", "vec_dtype"]

TorchVec: TypeAlias = Tensor | tuple[Tensor, ...]
"""A block: one tensor, or a tuple of tensors (never a list: tuples are immutable like the core's state)."""

_LOW = (torch.float16, torch.bfloat16)
_FLOATS = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def _devices(a: Any) -> set[torch.device]:
    if isinstance(a, Tensor):
        return {a.device}
    return {t.device for t in a}


def vec_device(a: TorchVec) -> torch.device:
    """The device of a block (raises BackendError when its tensors live on several devices)."""
    devs = _devices(a)
    if len(devs) != 1:
        if not devs:
            raise BackendError("vector: expected at least one tensor, received an empty tuple")
        raise BackendError(f"vector: expected tensors on one device, received {sorted(map(str, devs))}")
    return next(iter(devs))


def vec_dtype(a: TorchVec) -> torch.dtype:
    """The dtype of a block (the first tensor's for a tuple)."""
    return a.dtype if isinstance(a, Tensor) else a[0].dtype


def as_tensor_vec(v: Any, name: str = "vector") -> TorchVec:
    """Validate ``v`` as a block: a floating tensor or a non-empty tuple/list of floating tensors on one device.

    Lists become tuples; nothing is copied or moved.

    Raises:
        BackendError: not tensors, not floating point, empty, or on several devices.
    """
    if isinstance(v, Tensor):
        items: Sequence[Any] = (v,)
        out: TorchVec = v
    elif isinstance(v, list | tuple):
        items = tuple(v)
        out = tuple(v)
        if not items:
            raise BackendError(f"{name}: expected a tensor or a non-empty tuple of tensors, received an empty tuple")
    else:
        raise BackendError(f"{name}: expected a torch tensor or a tuple of tensors, received {type(v).__name__}")
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise BackendError(f"{name}[{i}]: expected a torch tensor, received {type(t).__name__}")
        if t.dtype not in _FLOATS:
            raise BackendError(f"{name}[{i}]: expected a floating dtype {_FLOATS}, received {t.dtype}")
    devs = {t.device for t in items}
    if len(devs) > 1:
        raise BackendError(f"{name}: expected tensors on one device, received {sorted(map(str, devs))}")
    return out


def _wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn torch's device/shape errors inside an operation into BackendError (no cost when none is raised)."""

    def inner(self: TorchSpace, *args: Any) -> Any:
        try:
            return fn(self, *args)
        except BackendError:
            raise
        except RuntimeError as exc:
            raise BackendError(f"TorchSpace.{fn.__name__}: {exc}") from exc

    inner.__name__ = fn.__name__
    inner.__doc__ = fn.__doc__
    return inner


class TorchSpace:
    """:class:`~ofmu_opt.problem.space.VectorSpace` over tensors and tuples of tensors.

    Args:
        reduce: optional hook ``(partial_sum: 0-d tensor) -> 0-d tensor`` applied to the local partial
            sums behind ``dot`` and ``norm`` (an all-reduce for sharded vectors). ``None``: no reduction.
        check_devices: verify on every binary operation that both operands (and a tensor scalar) live on
            one device. Cheap (attribute reads); turn off only in measured hot loops.
    """

    name = "torch"
    # the dense implicit solver's host linear algebra (numpy float64 on the host, through to_host/from_host)
    linalg = NumpyLinalg()

    def __init__(self, reduce: Callable[[Tensor], Tensor] | None = None, *, check_devices: bool = True) -> None:
        if reduce is not None and not callable(reduce):
            raise BackendError(f"reduce: expected a callable or None, received {type(reduce).__name__}")
        self.reduce = reduce
        self.check_devices = check_devices

    # ------------------------------------------------------------------ checks
    def _same_device(self, op: str, *parts: Any) -> None:
        if not self.check_devices:
            return
        devs: set[torch.device] = set()
        for p in parts:
            if p is None or isinstance(p, int | float):
                continue
            devs |= _devices(p)
        if len(devs) > 1:
            raise BackendError(
                f"TorchSpace.{op}: operands live on different devices {sorted(map(str, devs))}; "
                "move them explicitly (nothing is moved silently)"
            )

    @staticmethod
    def _kind(a: Any, b: Any, op: str) -> bool:
        """True for tuple blocks, False for single tensors; raises when the two disagree."""
        ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
        if ta != tb:
            raise BackendError(f"TorchSpace.{op}: expected two tensors or two tuples, received a mix")
        if not ta and len(a) != len(b):
            raise BackendError(f"TorchSpace.{op}: tuples of different lengths {len(a)} and {len(b)}")
        return not ta

    # ------------------------------------------------------------------ elementwise
    def zeros_like(self, a: TorchVec) -> TorchVec:
        if isinstance(a, Tensor):
            return torch.zeros_like(a)
        return tuple(torch.zeros_like(t) for t in a)

    @_wrap
    def add(self, a: TorchVec, b: TorchVec) -> TorchVec:
        self._same_device("add", a, b)
        if self._kind(a, b, "add"):
            return tuple(torch._foreach_add(list(a), list(b)))
        return a + b  # type: ignore[operator]

    @_wrap
    def sub(self, a: TorchVec, b: TorchVec) -> TorchVec:
        self._same_device("sub", a, b)
        if self._kind(a, b, "sub"):
            return tuple(torch._foreach_sub(list(a), list(b)))
        return a - b  # type: ignore[operator]

    @_wrap
    def scale(self, a: TorchVec, s: Any) -> TorchVec:
        self._same_device("scale", a, s)
        if isinstance(a, Tensor):
            return a * s
        if isinstance(s, Tensor):
            return tuple(torch._foreach_mul(list(a), s))
        return tuple(torch._foreach_mul(list(a), float(s)))

    @_wrap
    def axpy(self, alpha: Any, x: TorchVec, y: TorchVec) -> TorchVec:
        """Return ``alpha * x + y``."""
        self._same_device("axpy", alpha, x, y)
        tup = self._kind(x, y, "axpy")
        if isinstance(alpha, Tensor):
            if tup:
                return tuple(torch._foreach_add(list(y), torch._foreach_mul(list(x), alpha)))
            return y + alpha * x  # type: ignore[operator]
        if tup:
            return tuple(torch._foreach_add(list(y), list(x), alpha=float(alpha)))
        return torch.add(y, x, alpha=float(alpha))  # type: ignore[arg-type]

    @_wrap
    def mul(self, a: TorchVec, b: TorchVec) -> TorchVec:
        self._same_device("mul", a, b)
        if self._kind(a, b, "mul"):
            return tuple(torch._foreach_mul(list(a), list(b)))
        return a * b  # type: ignore[operator]

    @_wrap
    def div(self, a: TorchVec, b: TorchVec) -> TorchVec:
        self._same_device("div", a, b)
        if self._kind(a, b, "div"):
            return tuple(torch._foreach_div(list(a), list(b)))
        return a / b  # type: ignore[operator,arg-type]

    def sqrt(self, a: TorchVec) -> TorchVec:
        if isinstance(a, Tensor):
            return torch.sqrt(a)
        return tuple(torch._foreach_sqrt(list(a)))

    def add_scalar(self, a: TorchVec, c: float) -> TorchVec:
        if isinstance(a, Tensor):
            return a + float(c)
        return tuple(torch._foreach_add(list(a), float(c)))

    # ------------------------------------------------------------------ reductions (no host sync)
    def _partial_dot(self, a: TorchVec, b: TorchVec) -> Tensor:
        parts: Sequence[tuple[Any, Any]] = ((a, b),) if isinstance(a, Tensor) else tuple(zip(a, b))
        terms = []
        for u, v in parts:
            if u.dtype in _LOW or v.dtype in _LOW:
                u, v = u.float(), v.float()
            terms.append(torch.vdot(u.reshape(-1), v.reshape(-1)))  # reshape of a contiguous tensor: a view
        out = terms[0] if len(terms) == 1 else torch.stack(terms).sum()
        return out

    @_wrap
    def dot(self, a: TorchVec, b: TorchVec) -> Tensor:
        self._same_device("dot", a, b)
        self._kind(a, b, "dot")
        out = self._partial_dot(a, b)
        return self.reduce(out) if self.reduce is not None else out

    def norm(self, a: TorchVec) -> Tensor:
        if self.reduce is None and not isinstance(a, Tensor) and vec_dtype(a) not in _LOW:
            return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(a))))
        if self.reduce is None and isinstance(a, Tensor) and a.dtype not in _LOW:
            return torch.linalg.vector_norm(a)
        return torch.sqrt(torch.clamp_min(self.dot(a, a), 0.0))

    # ------------------------------------------------------------------ host side (synchronising)
    def all_finite(self, a: TorchVec) -> bool:
        if isinstance(a, Tensor):
            return bool(torch.isfinite(a).all())
        return bool(torch.stack([torch.isfinite(t).all() for t in a]).all())

    def to_float(self, s: Any) -> float:
        if isinstance(s, Tensor):
            return float(s.detach().item())
        return float(s)

    def same_shape(self, a: Any, b: Any) -> bool:
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return a.shape == b.shape
        if isinstance(a, tuple | list) and isinstance(b, tuple | list):
            return len(a) == len(b) and all(
                isinstance(u, Tensor) and isinstance(v, Tensor) and u.shape == v.shape for u, v in zip(a, b)
            )
        return False

    def describe(self, a: Any) -> str:
        if isinstance(a, Tensor):
            return f"tensor{tuple(a.shape)} {a.dtype} on {a.device}"
        if isinstance(a, tuple | list) and all(isinstance(t, Tensor) for t in a):
            if not a:
                return "empty tuple"
            shapes = ", ".join(str(tuple(t.shape)) for t in a[:4]) + (", ..." if len(a) > 4 else "")
            return f"tuple of {len(a)} tensors [{shapes}] {a[0].dtype} on {a[0].device}"
        return type(a).__name__

    def to_host(self, a: TorchVec) -> list[float]:
        items = (a,) if isinstance(a, Tensor) else a
        out: list[float] = []
        for t in items:
            out.extend(float(v) for v in t.detach().to("cpu", torch.float64).reshape(-1).tolist())
        return out

    def from_host(self, values: list[float], like: TorchVec) -> TorchVec:
        """A vector shaped like ``like`` (a tensor or a tuple of tensors, same dtypes and devices) holding
        ``values`` in ``to_host``'s order: its inverse."""
        items = (like,) if isinstance(like, Tensor) else tuple(like)
        total = sum(t.numel() for t in items)
        if len(values) != total:
            raise ValueError(f"from_host: {len(values)} values for a vector of {total}")
        out: list[Tensor] = []
        start = 0
        for t in items:
            n = t.numel()
            out.append(torch.tensor(values[start:start + n], dtype=t.dtype, device=t.device).reshape(t.shape))
            start += n
        return out[0] if isinstance(like, Tensor) else tuple(out)

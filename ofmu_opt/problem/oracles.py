"""Oracle protocols and a wrapper that turns plain callables into an oracle.

An objective ``h(x, y)`` is seen through its oracles:

- ``value(x, y, *, batch=None)``: the scalar value;
- ``grad(x, y, *, batch=None) -> (∇_x h, ∇_y h)`` (the x part is ``None`` when x is absent);
- optional ``hvp(x, y, v, *, batch=None) -> ∇_{(x,y)} <∇_y h, v>``: the Hessian rows of the y block
  applied to a y-vector ``v`` (one mixed block and one y block);
- optional ``tvp(x, y, u, v, *, batch=None) -> ∇_{(x,y)} (uᵀ ∇²_yy h v)``: third derivatives, needed only
  by the exact Hessian of the similarity-aware inner objective (zero for quadratics);
- optional ``hessian(x, y, *, batch=None) -> (∇²_xy h, ∇²_yy h)``: the dense Hessian rows of the y block, a
  ``dx × dy`` mixed block (``None`` when x is absent) and the ``dy × dy`` y block, each a 2-D array of the
  backend (entries row-major through the space's ``to_host``); for small ``y`` only (used by
  ``ImplicitDiff(inner_solver="dense")``, which assembles it from ``dy`` HVPs when it is absent);
- optional ``hessian_xx(x, y, *, batch=None) -> ∇²_xx h``: the dense ``dx × dx`` x block (used with ``hessian`` by
  ``ImplicitDiff(outer_rule="newton")`` for the outer objective; central differences of ``∇_x h`` when absent).

Every oracle call a solver makes goes through :class:`CountingObjective`, which also checks what the
oracle returned: a value must be a real scalar, a gradient/HVP block a real array (numpy) or floating
tensor (torch) of the shape, kind and device of the point it was taken at. Anything else — complex
values (which numpy would silently cast to real), object or string arrays, wrong shapes, integer tensors,
a tensor on another device —, and any foreign exception raised inside an oracle, becomes an
:class:`~ofmu_opt.errors.OracleError` naming the oracle (``outer.grad``, ``inner.value`` ...) and what it
returned (arithmetic faults such as ``ZeroDivisionError`` included). Errors the package raised on purpose
(:class:`~ofmu_opt.errors.OfmuError`) pass through unchanged. The checks never synchronise a device (no
finiteness test: a non-finite value is a numerical fault, reported by the solver as
``NUMERICAL_ERROR``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .._typing import Batch, Pair, Scalar, Vec
from ..errors import OfmuError, OracleError

__all__ = [
    "CallCounter",
    "CountingObjective",
    "FunctionObjective",
    "Objective",
    "check_block",
    "check_module_device",
    "check_pair",
    "check_scalar",
    "check_torch_loss",
    "describe_value",
    "has_hessian",
    "has_hessian_xx",
    "has_hvp",
    "has_tvp",
]


@runtime_checkable
class Objective(Protocol):
    """Value and gradient oracles of one objective (outer ``f`` or inner ``g``)."""

    def value(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Scalar: ...
    def grad(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Pair: ...


def has_hvp(obj: object) -> bool:
    """Whether ``obj`` provides a usable ``hvp`` oracle."""
    return callable(getattr(obj, "hvp", None)) and getattr(obj, "hvp_available", True)


def has_hessian(obj: object) -> bool:
    """Whether ``obj`` provides a usable dense ``hessian`` oracle."""
    return callable(getattr(obj, "hessian", None)) and getattr(obj, "hessian_available", True)


def has_hessian_xx(obj: object) -> bool:
    """Whether ``obj`` provides a usable dense ``hessian_xx`` oracle (the ``x`` block ``∇²_xx``)."""
    return callable(getattr(obj, "hessian_xx", None)) and getattr(obj, "hessian_xx_available", True)


def has_tvp(obj: object) -> bool:
    """Whether ``obj`` provides a usable third-order ``tvp`` oracle."""
    return callable(getattr(obj, "tvp", None)) and getattr(obj, "tvp_available", True)


@dataclass(frozen=True)
class FunctionObjective:
    """An :class:`Objective` from plain callables.

    Args:
        value_fn: ``(x, y, batch) -> scalar``.
        grad_fn: ``(x, y, batch) -> (gx, gy)``.
        hvp_fn: optional ``(x, y, v, batch) -> (hx, hy)``; without it the solver uses central finite
            differences of ``grad_fn``.
        tvp_fn: optional third-order oracle ``(x, y, u, v, batch) -> (tx, ty)``.
        quadratic: declare the objective quadratic in ``(x, y)``: third derivatives are zero, so
            ``tvp`` is known (zero) without a ``tvp_fn``.

    Examples:
        >>> import numpy as np
        >>> h = FunctionObjective(lambda x, y, b: float(y @ y) / 2, lambda x, y, b: (None, y))
        >>> h.value(None, np.array([3.0, 4.0]))
        12.5
    """

    value_fn: Callable[[Any, Any, Any], Any]
    grad_fn: Callable[[Any, Any, Any], Pair]
    hvp_fn: Callable[[Any, Any, Any, Any], Pair] | None = None
    tvp_fn: Callable[[Any, Any, Any, Any, Any], Pair] | None = None
    quadratic: bool = False

    @property
    def hvp_available(self) -> bool:
        return self.hvp_fn is not None

    @property
    def tvp_available(self) -> bool:
        return self.tvp_fn is not None or self.quadratic

    def value(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Scalar:
        return self.value_fn(x, y, batch)

    def grad(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Pair:
        return self.grad_fn(x, y, batch)

    def hvp(self, x: Vec | None, y: Vec, v: Vec, *, batch: Batch = None) -> Pair:
        if self.hvp_fn is None:
            raise NotImplementedError("this objective has no hvp oracle")
        return self.hvp_fn(x, y, v, batch)

    def tvp(self, x: Vec | None, y: Vec, u: Vec, v: Vec, *, batch: Batch = None) -> Pair:
        if self.tvp_fn is not None:
            return self.tvp_fn(x, y, u, v, batch)
        if self.quadratic:
            return None, None  # zero third derivatives; callers treat None as 0
        raise NotImplementedError("this objective has no tvp oracle")


# ----------------------------------------------------------------------------------- result checks


# numpy and torch are never imported here (the problem layer sees no array library): an array of a
# library can exist only once that library is loaded, so the checks look it up in sys.modules


def _is_tensor(v: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(v, torch.Tensor)


def _is_ndarray(v: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(v, np.ndarray)


def _is_npscalar(v: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(v, np.generic)


def describe_value(v: Any) -> str:
    """A short description of an oracle's return value for error messages (type, shape, dtype, device,
    and the value itself for short scalars and strings)."""
    if _is_tensor(v):
        grad = ", requires_grad" if v.requires_grad else ""
        return f"a tensor of shape {tuple(v.shape)}, dtype {v.dtype}, on {v.device}{grad}"
    if _is_ndarray(v):
        return f"an ndarray of shape {v.shape}, dtype {v.dtype}"
    if _is_npscalar(v):
        return f"a numpy {type(v).__name__} {v!r}"
    if isinstance(v, str | bytes):
        text = repr(v)
        return f"{type(v).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
    if isinstance(v, bool | int | float | complex) or v is None:
        return f"{type(v).__name__} {v!r}"
    if isinstance(v, tuple | list):
        return f"a {type(v).__name__} of {len(v)} items"
    return f"an object of type {type(v).__module__}.{type(v).__qualname__}"


def check_scalar(v: Any, what: str) -> Any:
    """Return ``v`` if it is a real scalar (Python int/float, a real numpy scalar or 0-d array, a
    one-element floating tensor); else raise :class:`OracleError` naming ``what`` and describing ``v``.

    Examples:
        >>> check_scalar(2.5, "outer.value")
        2.5
        >>> check_scalar(1 + 2j, "outer.value")
        Traceback (most recent call last):
        ofmu_opt.errors.OracleError: outer.value: expected a real scalar, received complex (1+2j)
    """
    ok = False
    if isinstance(v, bool):
        ok = False
    elif isinstance(v, int | float):
        ok = True
    elif _is_npscalar(v) or _is_ndarray(v):
        ok = v.dtype.kind in "fiu" and v.ndim == 0
    elif _is_tensor(v):
        ok = v.numel() == 1 and v.is_floating_point()
    if not ok:
        raise OracleError(f"{what}: expected a real scalar, received {describe_value(v)}")
    return v


def check_block(got: Any, ref: Any, what: str) -> None:
    """Check that ``got`` (a gradient or Hessian-vector block) matches the point block ``ref`` it was
    computed at: for numpy a real (float or integer) ndarray of ``ref``'s shape; for torch a floating,
    non-complex tensor of ``ref``'s shape on ``ref``'s device; for tuples/lists the same number of
    blocks, each checked. Unknown vector types (a custom backend) are checked only against complex
    numbers.

    Raises:
        OracleError: naming ``what`` (e.g. ``"inner.grad: y-gradient"``) and what was received.
    """
    if _is_ndarray(ref):
        if not _is_ndarray(got):
            raise OracleError(f"{what}: expected a numpy array of shape {ref.shape}, received {describe_value(got)}")
        if got.dtype.kind not in "fiu":
            kind = {"c": "complex", "O": "object", "U": "string", "S": "bytes", "b": "boolean"}.get(
                got.dtype.kind, str(got.dtype))
            raise OracleError(f"{what}: expected a real array, received {kind} values (dtype {got.dtype})")
        if got.shape != ref.shape:
            raise OracleError(
                f"{what} has shape {got.shape} {got.dtype}, expected {ref.shape} {ref.dtype} (the shape of the point)")
        return
    if _is_tensor(ref):
        if not _is_tensor(got):
            raise OracleError(f"{what}: expected a tensor of shape {tuple(ref.shape)}, received {describe_value(got)}")
        if not got.is_floating_point():
            raise OracleError(f"{what}: expected a floating tensor, received dtype {got.dtype}"
                              + (" (complex)" if got.is_complex() else ""))
        if got.shape != ref.shape:
            raise OracleError(
                f"{what} has shape {tuple(got.shape)}, expected {tuple(ref.shape)} (the shape of the point)")
        if got.device != ref.device:
            raise OracleError(f"{what} is on {got.device}, expected {ref.device} (the device of the point)")
        return
    if isinstance(ref, tuple | list):
        if not isinstance(got, tuple | list) or len(got) != len(ref):
            raise OracleError(f"{what}: expected {len(ref)} blocks like the point, received {describe_value(got)}")
        for i, (g, r) in enumerate(zip(got, ref, strict=True)):
            check_block(g, r, f"{what}[{i}]")
        return
    if isinstance(got, complex) or ((_is_ndarray(got) or _is_npscalar(got)) and got.dtype.kind not in "fiu"):
        raise OracleError(f"{what}: expected real values, received {describe_value(got)}")


def check_pair(got: Any, x: Any, y: Any, what: str, *, allow_none: bool) -> Pair:
    """Check an oracle's ``(x-part, y-part)`` result at the point ``(x, y)``; returns it as a tuple.

    ``allow_none``: a ``None`` part means zero (HVP/TVP oracles of quadratics); gradients must give
    every part the point has. The x part is ignored when the problem has no x.
    """
    if not (isinstance(got, tuple | list) and len(got) == 2):
        raise OracleError(f"{what}: expected a pair (x-part, y-part), received {describe_value(got)}")
    gx, gy = got
    part = "gradient" if what.endswith(".grad") else "part"
    if gy is None:
        if not allow_none:
            raise OracleError(f"{what}: the y-{part} is None")
    else:
        check_block(gy, y, f"{what}: y-{part}")
    if x is not None:
        if gx is None:
            if not allow_none:
                raise OracleError(f"{what}: the x-{part} is None, but the problem has an outer variable x")
        else:
            check_block(gx, x, f"{what}: x-{part}")
    return gx, gy


def check_torch_loss(out: Any, what: str, *, need_grad: bool = True) -> Any:
    """Check a torch objective's output before differentiating it: a one-element floating tensor that,
    when ``need_grad``, is attached to the autograd graph (a ``.detach()``-ed or ``.item()``-ed loss
    would make every gradient fail or vanish).

    Raises:
        OracleError: naming ``what`` and describing ``out``.
    """
    if not _is_tensor(out):
        raise OracleError(f"{what}: expected a scalar tensor, received {describe_value(out)}")
    if out.numel() != 1 or not out.is_floating_point():
        raise OracleError(f"{what}: expected a one-element floating tensor, received {describe_value(out)}")
    if need_grad and not out.requires_grad:
        raise OracleError(
            f"{what}: the returned tensor is detached from its inputs (requires_grad=False), so it cannot be "
            "differentiated; do not call .detach(), .item() or torch.no_grad() inside the objective"
        )
    return out


def check_module_device(module: Any, what: str) -> None:
    """Refuse a torch module with parameters or buffers on the ``meta`` device (no data: created under
    ``init_empty_weights``/``device='meta'`` and never materialised) or spread over several devices.

    Raises:
        OracleError: naming ``what`` and the offending tensor.
    """
    devices: dict[str, str] = {}
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.device.type == "meta":
            raise OracleError(
                f"{what}: {name} is on the meta device (no data; the model was never materialised); load real "
                "weights or call module.to_empty(device=...) and initialise it"
            )
        devices.setdefault(str(t.device), name)
    if len(devices) > 1:
        listing = ", ".join(f"{n} on {d}" for d, n in devices.items())
        raise OracleError(f"{what}: parameters on several devices ({listing}); move the module to one device")


@dataclass
class CallCounter:
    """Mutable tally of oracle calls, keyed ``"<objective>_<oracle>"`` (e.g. ``"g_hvp"``)."""

    counts: dict[str, int] = field(default_factory=dict)

    def tick(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


_LABELS = {"f": "outer", "g": "inner"}


class CountingObjective:
    """Wraps an objective, counts every oracle call in a shared :class:`CallCounter`, and checks every
    result (see the module docstring): wrong types, shapes, complex values and foreign exceptions
    become an :class:`~ofmu_opt.errors.OracleError` naming the oracle."""

    def __init__(self, inner: Objective, label: str, counter: CallCounter) -> None:
        self._inner = inner
        self._label = label
        self._name = _LABELS.get(label, label)
        self._counter = counter
        self.hvp_available = has_hvp(inner)
        self.tvp_available = has_tvp(inner)
        self.hessian_available = has_hessian(inner)
        self.hessian_xx_available = has_hessian_xx(inner)

    @property
    def wrapped(self) -> Objective:
        return self._inner

    def _call(self, oracle: str, fn: Callable[..., Any], *args: Any, batch: Batch) -> Any:
        try:
            return fn(*args, batch=batch)
        except OfmuError:
            raise
        except Exception as exc:  # arithmetic faults too: no solver code path expects them from an oracle
            msg = " ".join(str(exc).split())[:300]
            raise OracleError(
                f"{self._name}.{oracle} raised {type(exc).__name__}" + (f": {msg}" if msg else "")
            ) from exc

    def value(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Scalar:
        self._counter.tick(f"{self._label}_value")
        return check_scalar(self._call("value", self._inner.value, x, y, batch=batch), f"{self._name}.value")

    def grad(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Pair:
        self._counter.tick(f"{self._label}_grad")
        got = self._call("grad", self._inner.grad, x, y, batch=batch)
        return check_pair(got, x, y, f"{self._name}.grad", allow_none=False)

    def hvp(self, x: Vec | None, y: Vec, v: Vec, *, batch: Batch = None) -> Pair:
        self._counter.tick(f"{self._label}_hvp")
        got = self._call("hvp", self._inner.hvp, x, y, v, batch=batch)  # type: ignore[attr-defined]
        return check_pair(got, x, y, f"{self._name}.hvp", allow_none=True)

    def tvp(self, x: Vec | None, y: Vec, u: Vec, v: Vec, *, batch: Batch = None) -> Pair:
        self._counter.tick(f"{self._label}_tvp")
        got = self._call("tvp", self._inner.tvp, x, y, u, v, batch=batch)  # type: ignore[attr-defined]
        return check_pair(got, x, y, f"{self._name}.tvp", allow_none=True)

    def hessian(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Pair:
        """The dense ``(mixed, y)`` Hessian blocks (counted as ``<label>_hessian``); each block must be a real 2-D
        array or floating tensor (the solver checks its size against the point)."""
        self._counter.tick(f"{self._label}_hessian")
        got = self._call("hessian", self._inner.hessian, x, y, batch=batch)  # type: ignore[attr-defined]
        what = f"{self._name}.hessian"
        if not (isinstance(got, tuple | list) and len(got) == 2):
            raise OracleError(f"{what}: expected a pair (mixed block, y block), received {describe_value(got)}")
        for part, block in (("mixed", got[0]), ("y", got[1])):
            if block is None and (part == "y" or x is not None):
                raise OracleError(f"{what}: the {part} block is None")
            if block is not None:
                _check_matrix(block, f"{what}: {part} block")
        return got[0], got[1]

    def hessian_xx(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Any:
        """The dense ``x`` block ``∇²_xx`` (``dx × dx``; counted as ``<label>_hessian_xx``)."""
        self._counter.tick(f"{self._label}_hessian_xx")
        got = self._call("hessian_xx", self._inner.hessian_xx, x, y, batch=batch)  # type: ignore[attr-defined]
        _check_matrix(got, f"{self._name}.hessian_xx")
        return got


def _check_matrix(block: Any, what: str) -> None:
    """A dense Hessian block must be a real 2-D numpy array or a 2-D floating tensor (other vector types: not
    complex)."""
    if _is_ndarray(block):
        if block.dtype.kind not in "fiu" or block.ndim != 2:
            raise OracleError(f"{what}: expected a real 2-D array, received {describe_value(block)}")
    elif _is_tensor(block):
        if not block.is_floating_point() or block.dim() != 2:
            raise OracleError(f"{what}: expected a 2-D floating tensor, received {describe_value(block)}")
    elif isinstance(block, complex | str | bytes) or block is None:
        raise OracleError(f"{what}: expected a 2-D array, received {describe_value(block)}")

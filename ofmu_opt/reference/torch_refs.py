"""The reference problems on the torch backend.

:func:`torch_reference` rebuilds a :class:`~ofmu_opt.reference.problems.ReferenceProblem` with torch
oracles: ``f`` and ``g`` are written as plain torch functions of the reference's ``data`` arrays (the same
formulas as the numpy builders), differentiated by :mod:`ofmu_opt.backends.torch_autodiff`, and the
problem carries the autodiff inner objective φ (exact third-order HVPs through the cosine). ``x0``/``y0``
become tensors of the requested dtype and device; the known solution stays in numpy.

Example:
    >>> from ofmu_opt.reference import get_reference
    >>> from ofmu_opt.core import gpbgd, with_continuation
    >>> tref = torch_reference(get_reference("P4"))
    >>> res = with_continuation(gpbgd(), tol=1e-4).run(tref.problem, tref.x0, tref.y0)
    >>> res.success, tref.distance(res.x, res.y) < 1e-4
    (True, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..backends.torch_autodiff import TorchObjective, autodiff_inner_factory
from ..backends.torch_backend import TorchSpace
from ..errors import BackendError, ProblemSpecError
from ..problem.bilevel import BilevelProblem
from .problems import REFERENCES, ReferenceProblem

__all__ = ["TorchReferenceProblem", "torch_reference", "torch_reference_functions"]

Fn = Callable[[Any, Any, Any], Tensor]


@dataclass(frozen=True)
class TorchReferenceProblem(ReferenceProblem):
    """A :class:`ReferenceProblem` whose ``problem``, ``x0`` and ``y0`` live on the torch backend.

    ``distance`` accepts tensors on any device (they are copied to the host for the comparison).
    """

    dtype: Any = None
    device: Any = None

    def distance(self, x: Any, y: Any) -> float:
        def host(v: Any) -> Any:
            return v.detach().to("cpu", torch.float64).numpy() if isinstance(v, Tensor) else v

        return super().distance(host(x), host(y))


def _fns(ref: ReferenceProblem, T: Callable[[Any], Tensor]) -> tuple[Fn, Fn]:
    """(outer f, inner g) of reference ``ref`` as torch functions; ``T`` converts data to tensors."""
    d = {k: T(v) for k, v in ref.data.items() if isinstance(v, np.ndarray)}
    rid = ref.id

    def sq(v: Tensor) -> Tensor:
        return 0.5 * (v * v).sum()

    if rid == "P1b":
        A, b, c = d["A"], d["b"], d["c"]
        return (lambda x, y, _b: sq(y - c)), (lambda x, y, _b: sq(A @ y - b))
    if rid == "P2":
        At, bt, Av, bv = d["At"], d["bt"], d["Av"], d["bv"]
        return (lambda x, y, _b: sq(Av @ y - bv)), (lambda x, y, _b: sq(At @ y - bt))
    if rid in ("P3", "P9"):
        Q, C, a, t, H = d["Q"], d["C"], d["a"], d["t"], d["H"]
        return (
            (lambda x, y, _b: sq(y - t) + 0.5 * (x @ (H @ x))),
            (lambda x, y, _b: 0.5 * (y @ (Q @ y)) + x @ (C @ y) + a @ y),
        )
    if rid == "P4":
        return (
            (lambda x, y, _b: 0.5 * (x[0] - y[1]) ** 2 + 0.5 * (y[0] - 1.0) ** 2),
            (lambda x, y, _b: 0.5 * y[0] ** 2 - x[0] * y[0]),
        )
    if rid == "P5":
        t, r = d["t"], float(ref.data["r"])
        return (lambda x, y, _b: sq(y - t) + 0.5 * r * (x @ x)), (lambda x, y, _b: sq(y - x))
    if "qp" in ref.data:  # the constrained library problems: F, f = ½zᵀMz + mᵀz + m0 with z = (x, y)
        qp = ref.data["qp"]
        Pm, pv, Rm, rv = T(qp.P), T(qp.p), T(qp.R), T(qp.r)

        def quad(M: Tensor, m: Tensor, m0: float) -> Fn:
            def fn(x: Any, y: Any, _b: Any) -> Tensor:
                z = torch.cat([x.reshape(-1), y.reshape(-1)])
                return 0.5 * (z @ (M @ z)) + m @ z + m0

            return fn

        return quad(Pm, pv, float(qp.p0)), quad(Rm, rv, float(qp.r0))
    if rid == "FSQ":  # means over the batch's samples (batch=slice(a, b); None = all)
        A, C, a, F, t, H = d["A"], d["C"], d["a"], d["F"], d["t"], d["H"]

        def mean(arr: Tensor, batch: Any) -> Tensor:
            return arr.mean(0) if batch is None else arr[batch].mean(0)

        return (
            (lambda x, y, b: 0.5 * (y @ (mean(F, b) @ y)) - mean(t, b) @ y + 0.5 * (x @ (H @ x))),
            (lambda x, y, b: 0.5 * (y @ (mean(A, b) @ y)) + x @ (mean(C, b) @ y) + mean(a, b) @ y),
        )
    if rid == "QOFMU":
        A, dv, B, b = d["A"], d["d"], d["B"], d["b"]
        return (
            (lambda x, y, _b: 0.5 * ((y - b) @ (B @ (y - b)))),
            (lambda x, y, _b: -0.5 * (y @ (A @ y)) + dv @ y),
        )
    if rid == "QOFMU-orth":
        A, a, B, b = d["A"], d["a"], d["B"], d["b"]
        return (
            (lambda x, y, _b: 0.5 * ((y - b) @ (B @ (y - b)))),
            (lambda x, y, _b: -0.5 * ((y - a) @ (A @ (y - a)))),
        )
    raise ProblemSpecError(f"reference: no torch form for id {rid!r}; known: {', '.join(REFERENCES)}")


def torch_reference_functions(
    ref: ReferenceProblem, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
) -> tuple[Fn, Fn]:
    """The reference's outer and inner objectives as torch functions ``(x, y, batch) -> scalar``."""
    dev = torch.device(device)
    return _fns(ref, lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=dev))


def torch_reference(
    ref: ReferenceProblem,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    *,
    autodiff: str = "double_backward",
) -> TorchReferenceProblem:
    """The reference problem ``ref`` on the torch backend.

    Args:
        ref: a reference from :func:`~ofmu_opt.reference.get_reference`.
        dtype: floating dtype of the data and of ``x0``/``y0``.
        device: where everything lives (e.g. ``"cuda"``); nothing moves afterwards.
        autodiff: ``double_backward`` (default: on these tiny problems torch's forward-mode kernels fall back
            to Python decompositions and cost ~10× more) or ``forward_over_reverse`` for the exact HVPs.

    Returns:
        A :class:`TorchReferenceProblem`: ``problem`` has torch oracles and the autodiff inner objective;
        ``x0``/``y0`` are tensors; ``x_star``/``y_star`` stay numpy.

    Raises:
        ProblemSpecError: ``ref`` is not a reference problem.
        BackendError: ``dtype`` is not floating point or the device is unavailable.
    """
    if not isinstance(ref, ReferenceProblem):
        raise ProblemSpecError(f"ref: expected a ReferenceProblem, received {type(ref).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise BackendError(f"dtype: expected a floating torch dtype, received {dtype!r}")
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise BackendError(f"device: {device!r} is not available: {exc}") from exc
    f_fn, g_fn = torch_reference_functions(ref, dtype, dev)
    sp = TorchSpace()
    has_x = ref.problem.has_x
    outer = TorchObjective(f_fn, has_x=has_x, hvp_mode=autodiff, space=sp)
    inner = TorchObjective(g_fn, has_x=has_x, hvp_mode=autodiff, space=sp)
    src = ref.problem  # the constraint sets and rows act on numpy arrays and torch tensors alike
    problem = BilevelProblem(
        outer, inner, sp, src.sense, has_x=has_x, name=src.name,
        inner_factory=autodiff_inner_factory(f_fn, g_fn, has_x=has_x, autodiff=autodiff, space=sp),
        x_set=src.x_set, y_set=src.y_set, inner_constraints=src.inner_constraints,
        outer_constraints=src.outer_constraints, local_is_global=src.local_is_global,
    )

    def T(a: Any) -> Tensor | None:
        return None if a is None else torch.as_tensor(np.asarray(a), dtype=dtype, device=dev).clone()

    fields = {f.name: getattr(ref, f.name) for f in dataclasses.fields(ReferenceProblem)}
    fields.update(problem=problem, x0=T(ref.x0), y0=T(ref.y0))
    return TorchReferenceProblem(**fields, dtype=dtype, device=dev)

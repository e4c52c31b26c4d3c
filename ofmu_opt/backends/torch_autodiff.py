r"""Autodiff oracles on the torch backend: gradients, Hessian-vector products, third-order products, and
the similarity-aware inner objective φ with exact derivatives.

An objective is a plain torch function ``fn(x, y, batch) -> 0-d tensor`` where ``x`` (``None`` when the
problem has no outer-only variable) and ``y`` are blocks of :class:`~ofmu_opt.backends.torch_backend.
TorchSpace` (a tensor or a tuple of tensors). :class:`TorchObjective` gives

- ``grad``: one reverse pass (``torch.autograd.grad``);
- ``hvp(x, y, v) = ∇_{(x,y)}⟨∇_y h, v⟩`` by one of three modes:

  ========================  ============================================================  ==============
  mode                      how                                                           cost (passes)
  ========================  ============================================================  ==============
  ``forward_over_reverse``  ``torch.func.jvp`` of ``torch.func.grad`` along ``(0, v)``;    ≈ 1 fwd + 1 bwd
                            the x block is ``∇²_{xy}h·v`` by symmetry of the Hessian       in dual numbers
  ``double_backward``       reverse pass with ``create_graph``, then a second reverse      2 bwd + graph
                            pass through ``⟨∇_y h, v⟩``                                    kept in memory
  ``finite_difference``     central difference of ``grad`` along ``v``, step               2 gradients
                            ``fd_step·(1+‖y‖)/‖v‖``
  ========================  ============================================================  ==============

- ``tvp(x, y, u, v) = ∇_{(x,y)}(uᵀ∇²_{yy}h\,v)`` (third order; forward-over-forward-over-reverse,
  triple backward, or a central difference of the exact HVP).

:func:`autodiff_inner_factory` builds the problem hook that replaces the composed inner objective of
:mod:`ofmu_opt.core.inner`: φ = s·g + β·sim(−s∇_y g, ∇_y f) written as one differentiable torch function,
so ``grad`` is exact (reverse mode through the two inner gradients) and the ``exact`` HVP mode is
third order through the cosine by autodiff. Nothing here synchronises with the host: step sizes of
finite differences and the cosine's guards are tensors.

Third derivatives and normalization layers: torch's fused ``layer_norm``/``group_norm``/``batch_norm``/
``instance_norm`` kernels give correct first and second derivatives but silently wrong third ones (their
saved mean and inverse standard deviation carry no autograd history; pytorch/pytorch#175754, #186256;
measured here: 23 % off for the token NLL of a one-layer HF GPT-2). Every third-order product formed
here (``tvp``, φ's exact HVP, the gradient graph of f shared with it) therefore evaluates the model under
:func:`composite_norms`, which swaps those functionals for compositions of elementary operations (same
values, derivatives of every order right). Other fused operations with the same defect would need the
same treatment; the regression tests compare the exact φ HVP with converged finite differences on an
HF GPT-2 and on a LayerNorm network.

Example:
    >>> import torch
    >>> h = TorchObjective(lambda x, y, b: (y ** 3).sum(), has_x=False)
    >>> y = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> h.grad(None, y)[1].tolist(), h.hvp(None, y, torch.ones(2, dtype=torch.float64))[1].tolist()
    ([3.0, 12.0], [6.0, 12.0])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from .._config import check_choice, check_range
from .._typing import Batch, Pair
from ..errors import BackendError, ConfigError, OfmuError, OracleError
from ..problem.oracles import check_torch_loss
from ._torch_norms import composite_norms
from .torch_backend import TorchSpace, TorchVec

__all__ = [
    "AUTODIFF_MODES",
    "AutodiffInner",
    "ComposedTorchInner",
    "FD_SCHEMES",
    "SharedGradient",
    "TorchFn",
    "TorchObjective",
    "autodiff_inner_factory",
    "composed_inner_factory",
    "composite_norms",
    "similarity_value",
    "similarity_weight",
]

TorchFn = Callable[[Any, Any, Any], Tensor]
"""``fn(x, y, batch) -> 0-d tensor``."""

AUTODIFF_MODES = ("forward_over_reverse", "double_backward", "finite_difference")
FD_SCHEMES = ("central", "forward")
_LOW = (torch.float16, torch.bfloat16)
LOW_PRECISION_COSINE_STEP = 1e-4
"""Default relative step of the first-order φ's cosine differences for parameters below float64."""


# ---------------------------------------------------------------------- pytree helpers (tensor | tuple)
def _flat(v: TorchVec | list[Tensor] | None) -> list[Tensor]:
    if v is None:
        return []
    return [v] if isinstance(v, Tensor) else list(v)


def _unflat(like: TorchVec | None, items: list[Tensor]) -> Any:
    if like is None:
        return None
    return items[0] if isinstance(like, Tensor) else tuple(items)


def _zeros(v: TorchVec | None) -> Any:
    if v is None:
        return None
    return torch.zeros_like(v) if isinstance(v, Tensor) else tuple(torch.zeros_like(t) for t in v)


def _vdot(a: TorchVec, b: TorchVec) -> Tensor:
    """Differentiable inner product of two blocks (per tensor, summed; float32 accumulation for halves)."""
    terms = []
    for u, w in zip(_flat(a), _flat(b), strict=True):
        if u.dtype in _LOW or w.dtype in _LOW:
            u, w = u.float(), w.float()
        terms.append((u * w).sum())
    return terms[0] if len(terms) == 1 else torch.stack(terms).sum()


def _vnorm(a: TorchVec) -> Tensor:
    """Differentiable norm of a block whose derivatives of every order are 0 at ``a = 0`` (the limit the
    composed similarity uses), instead of the 0/0 of ``sqrt`` there."""
    sq = _vdot(a, a)
    pos = sq > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def _check_out(out: Any, what: str) -> Tensor:
    # a loss that will be differentiated (grad mode on: autograd, or inside a torch.func transform) must be
    # attached to its inputs; a detached one would fail in autograd or give zero derivatives under torch.func
    check_torch_loss(out, what, need_grad=torch.is_grad_enabled())
    return out.reshape(())


_FUNC_REFUSALS = ("captured Tensor", "in-place operation")


def _call(fn: Callable[..., Any], what: str, *args: Any) -> Any:
    """Call a user loss; an exception it raises becomes an OracleError naming ``what`` (package errors,
    out-of-memory and torch.func's in-place refusals, which :func:`_func_transform` explains, pass through)."""
    try:
        return fn(*args)
    except (OfmuError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:
        if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _FUNC_REFUSALS):
            raise
        msg = " ".join(str(exc).split())[:300]
        raise OracleError(f"{what} raised {type(exc).__name__}" + (f": {msg}" if msg else "")) from exc


def similarity_value(a: TorchVec, b: TorchVec, kind: str, eps: float) -> Tensor:
    r"""``sim(a, b)`` as a differentiable torch expression (kinds as in :mod:`ofmu_opt.core.similarity`).

    ``c = ⟨a,b⟩/(‖a‖‖b‖+ε)``; 0 where the denominator is 0. ``signed``: c; ``abs``: |c|; ``squared``: c².
    """
    if kind == "none":
        return torch.zeros((), dtype=_flat(a)[0].dtype, device=_flat(a)[0].device)
    p = _vdot(a, b)
    nn_ = _vnorm(a) * _vnorm(b)
    # eps as a tensor: adding a Python float here makes torch 2.13's forward-mode rule emit a float64
    # tangent for float32 inputs (a dtype error in forward-over-reverse HVPs)
    d = nn_ + torch.full_like(nn_, eps)
    ok = d > 0
    c = torch.where(ok, p / torch.where(ok, d, torch.ones_like(d)), torch.zeros_like(p))
    if kind == "signed":
        return c
    if kind == "abs":
        return c.abs()
    if kind == "squared":
        return c * c
    raise ConfigError(f"similarity: expected one of 'signed', 'abs', 'squared', 'none', received {kind!r}")


def similarity_weight(
    a: list[Tensor], b: list[Tensor], kind: str, eps: float, which: int, *, a_sign: float = 1.0
) -> list[Tensor]:
    r"""One block of ``∇sim(σa, b)`` (``which=0``: with respect to the first argument, ``1``: the second),
    ``σ = a_sign`` (±1), in closed form with the conventions of :func:`similarity_value`.

    With ``D = ‖a‖‖b‖ + ε`` and ``c = ⟨σa, b⟩/D``: ``∂c/∂(σa) = b/D − c(‖b‖/‖a‖)·σa/D`` and
    ``∂c/∂b = σa/D − c(‖a‖/‖b‖)·b/D`` (the second terms are 0 where a norm is 0, as the derivative of
    :func:`similarity_value`'s guarded norm is there); ``abs`` multiplies by sign(c), ``squared`` by 2c;
    everything is 0 where ``D = 0``. The result is one new vector; scalars stay tensors (no host sync).
    """
    up = a[0].dtype in _LOW
    dot = torch.stack([torch.vdot(u.reshape(-1).float(), w.reshape(-1).float()) if up
                       else torch.vdot(u.reshape(-1), w.reshape(-1)) for u, w in zip(a, b, strict=True)]).sum() * a_sign
    na = torch.linalg.vector_norm(torch.stack(torch._foreach_norm([t.float() for t in a] if up else a)))
    nb = torch.linalg.vector_norm(torch.stack(torch._foreach_norm([t.float() for t in b] if up else b)))
    d = na * nb + torch.full_like(na, eps)
    ok = d > 0
    dd = torch.where(ok, d, torch.ones_like(d))
    c = torch.where(ok, dot.to(d.dtype) / dd, torch.zeros_like(d))
    if kind == "signed":
        outer_factor = torch.ones_like(c)
    elif kind == "abs":
        outer_factor = torch.sign(c)
    elif kind == "squared":
        outer_factor = 2.0 * c
    else:
        raise ConfigError(f"similarity: expected one of 'signed', 'abs', 'squared', received {kind!r}")
    inv = torch.where(ok, outer_factor / dd, torch.zeros_like(d))
    # which=0: u = inv·(b − c·(‖b‖/‖a‖)·σa); which=1: u = inv·(σa − c·(‖a‖/‖b‖)·b)
    if which == 0:
        first, second, ratio_num, ratio_den, sec_sign = b, a, nb, na, a_sign
    else:
        first, second, ratio_num, ratio_den, sec_sign = a, b, na, nb, 1.0
    coef2 = torch.where(ratio_den > 0, -c * ratio_num / torch.where(ratio_den > 0, ratio_den, torch.ones_like(
        ratio_den)), torch.zeros_like(c))
    if which == 1:  # the first term is σa
        coef1 = inv * a_sign
    else:
        coef1 = inv
    c1, c2 = coef1.to(first[0].dtype), (inv * coef2 * sec_sign).to(second[0].dtype)
    out = []
    for u, w in zip(first, second, strict=True):  # per tensor: temporaries the size of one tensor
        o = u * c1
        o.add_(w * c2)
        out.append(o)
    return out


@contextlib.contextmanager
def _func_transform(what: str) -> Iterator[None]:
    """Turn torch.func's refusal of in-place buffer updates into an actionable BackendError."""
    try:
        yield
    except RuntimeError as exc:
        if "captured Tensor" in str(exc) or "in-place operation" in str(exc):
            raise BackendError(
                f"{what}: forward_over_reverse runs the model under torch.func, which refuses in-place updates "
                "of module buffers (e.g. batch norm in training mode); use autodiff='double_backward', put "
                "such layers in eval mode, or build them with track_running_stats=False"
            ) from exc
        raise


# ---------------------------------------------------------------------- objective
class TorchObjective:
    """An objective from a torch function, with autodiff ``grad``, ``hvp`` and ``tvp``.

    Args:
        fn: ``fn(x, y, batch) -> 0-d tensor``; must be differentiable (twice for ``hvp``, three times for
            ``tvp``) in ``x`` and ``y``.
        has_x: whether the problem has an outer-only variable (``x`` is then a block; else ``None``).
        hvp_mode: ``forward_over_reverse`` (default), ``double_backward`` or ``finite_difference``.
        fd_step: relative step of ``finite_difference``.
        space: the :class:`TorchSpace` used for the finite-difference arithmetic (default: a plain one).

    Raises:
        ConfigError: unknown mode or a non-positive ``fd_step``.
    """

    hvp_available = True
    tvp_available = True

    def __init__(
        self,
        fn: TorchFn,
        *,
        has_x: bool,
        hvp_mode: str = "forward_over_reverse",
        fd_step: float = 1e-6,
        space: TorchSpace | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"fn: expected a callable (x, y, batch) -> tensor, received {type(fn).__name__}")
        check_choice("hvp_mode", hvp_mode, AUTODIFF_MODES)
        check_range("fd_step", fd_step, low=0.0, low_open=True)
        self.fn = fn
        self.has_x = bool(has_x)
        self.hvp_mode = hvp_mode
        self.fd_step = float(fd_step)
        self.space = space if space is not None else TorchSpace()

    # -------------------------------------------------------------- helpers
    def _leaves(self, x: TorchVec | None, y: TorchVec) -> tuple[Any, Any, list[Tensor], list[Tensor]]:
        lx = [t.detach().requires_grad_(True) for t in _flat(x)]
        ly = [t.detach().requires_grad_(True) for t in _flat(y)]
        return _unflat(x, lx), _unflat(y, ly), lx, ly

    def _eval(self, x: Any, y: Any, batch: Batch) -> Tensor:
        return _check_out(_call(self.fn, "objective", x if self.has_x else None, y, batch), "objective")

    def _args(self, x: TorchVec | None, y: TorchVec) -> tuple[Any, ...]:
        return (x, y) if self.has_x else (y,)

    def _pure(self, batch: Batch) -> Callable[..., Tensor]:
        """The objective as a function of ``(x, y)`` or ``(y,)`` for ``torch.func``."""
        if self.has_x:
            return lambda x, y: _check_out(_call(self.fn, "objective", x, y, batch), "objective")
        return lambda y: _check_out(_call(self.fn, "objective", None, y, batch), "objective")

    def _pair(self, items: tuple[Any, ...]) -> Pair:
        return (items[0], items[1]) if self.has_x else (None, items[0])

    @staticmethod
    def _fill(grads: tuple[Tensor | None, ...], leaves: list[Tensor]) -> list[Tensor]:
        return [torch.zeros_like(l) if g is None else g for g, l in zip(grads, leaves, strict=True)]

    # -------------------------------------------------------------- oracles
    def value(self, x: TorchVec | None, y: TorchVec, *, batch: Batch = None) -> Tensor:
        with torch.no_grad():
            return self._eval(x, y, batch).detach()

    def grad(self, x: TorchVec | None, y: TorchVec, *, batch: Batch = None) -> Pair:
        xl, yl, lx, ly = self._leaves(x, y)
        with torch.enable_grad():
            out = self._eval(xl, yl, batch)
            gs = torch.autograd.grad(out, lx + ly, allow_unused=True)
        flat = self._fill(gs, lx + ly)
        return (_unflat(x, flat[: len(lx)]) if self.has_x else None, _unflat(y, flat[len(lx):]))

    def value_and_grad(self, x: TorchVec | None, y: TorchVec, *, batch: Batch = None) -> tuple[Tensor, Pair]:
        """Value and gradient from one forward and one backward pass."""
        xl, yl, lx, ly = self._leaves(x, y)
        with torch.enable_grad():
            out = self._eval(xl, yl, batch)
            gs = torch.autograd.grad(out, lx + ly, allow_unused=True)
        flat = self._fill(gs, lx + ly)
        return out.detach(), (_unflat(x, flat[: len(lx)]) if self.has_x else None, _unflat(y, flat[len(lx):]))

    def hvp(self, x: TorchVec | None, y: TorchVec, v: TorchVec, *, batch: Batch = None) -> Pair:
        """``∇_{(x,y)}⟨∇_y h, v⟩`` by this objective's ``hvp_mode``."""
        if self.hvp_mode == "forward_over_reverse":
            return self._hvp_for(x, y, v, batch)
        if self.hvp_mode == "double_backward":
            return self._hvp_db(x, y, v, batch)
        return self._hvp_fd(x, y, v, batch)

    def _hvp_for(self, x: TorchVec | None, y: TorchVec, v: TorchVec, batch: Batch) -> Pair:
        f = self._pure(batch)
        n = 2 if self.has_x else 1
        g = torch.func.grad(f, argnums=tuple(range(n)))
        primals = self._args(_detach(x), _detach(y))
        tangents = self._args(_zeros(x), v)
        with _func_transform("hvp"):
            out = torch.func.jvp(g, primals, tangents)[1]
        return self._pair(out)

    def _hvp_db(self, x: TorchVec | None, y: TorchVec, v: TorchVec, batch: Batch) -> Pair:
        xl, yl, lx, ly = self._leaves(x, y)
        with torch.enable_grad():
            out = self._eval(xl, yl, batch)
            gy = self._fill(torch.autograd.grad(out, ly, create_graph=True, allow_unused=True), ly)
            s = _vdot(tuple(gy), tuple(_flat(v)))
            if not s.requires_grad:  # linear objective: zero Hessian
                flat = [torch.zeros_like(t) for t in lx + ly]
            else:
                flat = self._fill(torch.autograd.grad(s, lx + ly, allow_unused=True), lx + ly)
        return (_unflat(x, flat[: len(lx)]) if self.has_x else None, _unflat(y, flat[len(lx):]))

    def _fd_step(self, y: TorchVec, v: TorchVec) -> Tensor:
        sp = self.space
        nv = sp.norm(v)
        return self.fd_step * (1.0 + sp.norm(y)) / torch.where(nv > 0, nv, torch.ones_like(nv))

    def _hvp_fd(self, x: TorchVec | None, y: TorchVec, v: TorchVec, batch: Batch) -> Pair:
        sp = self.space
        h = self._fd_step(y, v)
        gp = self.grad(x, sp.axpy(h, v, y), batch=batch)
        gm = self.grad(x, sp.axpy(-h, v, y), batch=batch)
        inv = 0.5 / h
        return (
            None if gp[0] is None else sp.scale(sp.sub(gp[0], gm[0]), inv),
            sp.scale(sp.sub(gp[1], gm[1]), inv),
        )

    def tvp(self, x: TorchVec | None, y: TorchVec, u: TorchVec, v: TorchVec, *, batch: Batch = None) -> Pair:
        """``∇_{(x,y)}(uᵀ∇²_{yy}h·v)`` (third derivatives), by this objective's ``hvp_mode``; fused
        normalization layers are evaluated as composites meanwhile (:func:`composite_norms`: torch's fused
        kernels give wrong third derivatives)."""
        with composite_norms():
            return self._tvp(x, y, u, v, batch)

    def _tvp(self, x: TorchVec | None, y: TorchVec, u: TorchVec, v: TorchVec, batch: Batch) -> Pair:
        if self.hvp_mode == "forward_over_reverse":
            f = self._pure(batch)
            n = 2 if self.has_x else 1
            g = torch.func.grad(f, argnums=tuple(range(n)))
            zx = _zeros(x)

            def hu(*args: Any) -> Any:
                return torch.func.jvp(g, args, self._args(zx, u))[1]

            with _func_transform("tvp"):
                out = torch.func.jvp(hu, self._args(_detach(x), _detach(y)), self._args(zx, v))[1]
            return self._pair(out)
        if self.hvp_mode == "double_backward":
            xl, yl, lx, ly = self._leaves(x, y)
            with torch.enable_grad():
                out = self._eval(xl, yl, batch)
                gy = self._fill(torch.autograd.grad(out, ly, create_graph=True, allow_unused=True), ly)
                s = _vdot(tuple(gy), tuple(_flat(v)))
                zero = [torch.zeros_like(t) for t in lx + ly]
                if not s.requires_grad:
                    flat = zero
                else:
                    hv = self._fill(torch.autograd.grad(s, ly, create_graph=True, allow_unused=True), ly)
                    s2 = _vdot(tuple(hv), tuple(_flat(u)))
                    flat = zero if not s2.requires_grad else self._fill(
                        torch.autograd.grad(s2, lx + ly, allow_unused=True), lx + ly
                    )
            return (_unflat(x, flat[: len(lx)]) if self.has_x else None, _unflat(y, flat[len(lx):]))
        # finite difference of the exact (forward-over-reverse) HVP along v
        sp = self.space
        h = self._fd_step(y, v)
        hp = self._hvp_for(x, sp.axpy(h, v, y), u, batch)
        hm = self._hvp_for(x, sp.axpy(-h, v, y), u, batch)
        inv = 0.5 / h
        return (
            None if hp[0] is None else sp.scale(sp.sub(hp[0], hm[0]), inv),
            sp.scale(sp.sub(hp[1], hm[1]), inv),
        )


def _pair_scale(sp: TorchSpace, p: Pair, c: Any) -> Pair:
    return (None if p[0] is None else sp.scale(p[0], c), sp.scale(p[1], c))


def _pair_axpy(sp: TorchSpace, c: Any, a: Pair, b: Pair) -> Pair:
    """``c·a + b`` blockwise (an absent x block stays absent)."""
    x = b[0] if (a[0] is None or b[0] is None) else sp.axpy(c, a[0], b[0])
    return (x, sp.axpy(c, a[1], b[1]))


def _clone(v: TorchVec) -> Any:
    return v.clone() if isinstance(v, Tensor) else tuple(t.clone() for t in v)


def _detach(v: TorchVec | None) -> Any:
    if v is None:
        return None
    return v.detach() if isinstance(v, Tensor) else tuple(t.detach() for t in v)


# ---------------------------------------------------------------------- the inner objective φ
class AutodiffInner:
    r"""φ = s·g + β·sim(−s∇_y g, ∇_y f) (minimization form) with autodiff derivatives.

    ``grad`` is exact (reverse mode through both inner gradients: two forward/backward passes kept as
    graphs, then one backward through them). ``hvp`` follows ``spec.hvp``: ``exact`` differentiates
    ∇φ once more (third order through the cosine) with the configured autodiff mode,
    ``finite_difference`` takes a central difference of ∇φ, ``forget_hessian`` returns ``s·∇²g·v``.

    Args:
        f_fn: the outer and inner torch functions ``(x, y, batch) -> scalar``.
        g_fn: see ``f_fn``.
        spec: an :class:`~ofmu_opt.core.inner.InnerSpec` (similarity, beta, eps, hvp, fd_step, sign).
        has_x: whether ``x`` exists.
        autodiff: how exact second/third derivatives are taken (``forward_over_reverse`` or
            ``double_backward``).
        space: the :class:`TorchSpace`.
        fd_scheme: ``central`` (default) or ``forward``: with ``hvp="finite_difference"``, the HVP along
            ∇φ in :meth:`grad_and_hvp` (the stationarity penalty's outer step) as the forward difference
            ``(∇φ(y + h∇φ) − ∇φ(y))/h``, which reuses the ∇φ(y) the step needs anyway: one extra gradient
            of φ instead of two, O(h) instead of O(h²) error.
        shared: a :class:`SharedGradient` through which the outer objective hands the graph of its
            gradient ∇f (taken on the same batch at the same point) to :meth:`grad_and_hvp`, so the exact
            double-backward outer step does not run f's forward and backward pass twice.
        first_order: compute ∇φ without any second-order autodiff: the cosine's two Hessian-vector
            products in ∇φ = s∇g + β(−s∇²g·u_a + ∇²f·u_b), (u_a, u_b) = ∇sim(a, b), as forward differences
            of plain gradients, ``(∇g(y + h u_a) − ∇g(y))/h`` and ``(∇f(y + h u_b) − ∇f(y))/h``, one graph
            at a time (no ``create_graph`` anywhere; ∇f is the outer objective's plain gradient when
            shared). With ``hvp="finite_difference"`` the HVP of φ is then a difference of these: the
            whole outer step takes only first derivatives, so its memory is that of one gradient plus
            a few parameter-sized vectors. With ``hvp="forget_hessian"`` the outer step's HVP is
            ``s∇²g·∇φ`` as ``(∇g(y + h∇φ) − ∇g(y))/h`` (five gradients per outer step; the cosine's
            curvature is dropped). ``hvp="exact"`` is refused with it (ConfigError).
        cosine_fd_step: relative step of those two differences, as ``cosine_fd_step·(1 + ‖y‖)/‖u‖``
            (default: ``spec.fd_step`` in float64, :data:`LOW_PRECISION_COSINE_STEP` = 1e-4 otherwise: in
            float32 a smaller step loses the difference to rounding once the outer step differences
            ∇φ again — measured 1.6 % error of the outer HVP at 1e-4 against 81 % at 1e-6).
    """

    def __init__(
        self,
        f_fn: TorchFn,
        g_fn: TorchFn,
        spec: Any,
        *,
        has_x: bool,
        autodiff: str = "forward_over_reverse",
        space: TorchSpace | None = None,
        fd_scheme: str = "central",
        shared: SharedGradient | None = None,
        first_order: bool = False,
        cosine_fd_step: float | None = None,
    ) -> None:
        check_choice("autodiff", autodiff, ("forward_over_reverse", "double_backward"))
        check_choice("hvp", spec.hvp, ("exact", "finite_difference", "forget_hessian"))
        check_choice("fd_scheme", fd_scheme, FD_SCHEMES)
        if cosine_fd_step is not None:
            check_range("cosine_fd_step", cosine_fd_step, low=0.0, low_open=True)
        self.first_order = bool(first_order)
        if self.first_order and spec.hvp == "exact" and spec.similarity != "none" and spec.beta != 0.0:
            raise ConfigError(
                "hvp: 'exact' differentiates ∇φ by autodiff, but first_order=True computes ∇φ from differences "
                "of gradients; expected hvp='finite_difference' (or 'forget_hessian') with first_order=True"
            )
        self.cosine_fd_step = None if cosine_fd_step is None else float(cosine_fd_step)
        self.fd_scheme = fd_scheme
        self.shared = shared
        self.spec = spec
        self.sign = float(spec.sign)
        self.beta = float(spec.beta)
        self.active = spec.similarity != "none" and spec.beta != 0.0
        # the exact HVP of φ is third order in the model: fused normalization layers must be composites then
        self.third_order = self.active and spec.hvp == "exact"
        self.space = space if space is not None else TorchSpace()
        self.has_x = has_x
        self.autodiff = autodiff
        self.f_fn, self.g_fn = f_fn, g_fn
        gmode = "finite_difference" if spec.hvp == "finite_difference" or self.first_order else autodiff
        self.g = TorchObjective(g_fn, has_x=has_x, hvp_mode=gmode, fd_step=spec.fd_step, space=self.space)
        self.f = TorchObjective(f_fn, has_x=has_x, hvp_mode=autodiff, fd_step=spec.fd_step, space=self.space)
        mode = "finite_difference" if spec.hvp == "finite_difference" else autodiff
        self.phi = TorchObjective(self._phi_fn, has_x=has_x, hvp_mode=mode, fd_step=spec.fd_step, space=self.space)
        kind, eps = spec.similarity, spec.eps
        self._sim_grad = torch.func.grad(lambda a, b: similarity_value(a, b, kind, eps), argnums=(0, 1))

    def _phi_fn(self, x: Any, y: Any, batch: Batch, fg: list[Tensor] | None = None) -> Tensor:
        s, spec = self.sign, self.spec

        def g_of_y(yy: Any) -> Tensor:
            return _check_out(_call(self.g_fn, "inner objective", x, yy, batch), "inner objective")

        def f_of_y(yy: Any) -> Tensor:
            return _check_out(_call(self.f_fn, "outer objective", x, yy, batch), "outer objective")

        if self.autodiff == "double_backward":
            # y holds autograd leaves here (TorchObjective makes them): keep both gradients as graphs
            ly = _flat(y)
            gv = g_of_y(y)
            gg = self.g._fill(torch.autograd.grad(gv, ly, create_graph=True, allow_unused=True), ly)
            if fg is None:
                fg = self.g._fill(torch.autograd.grad(f_of_y(y), ly, create_graph=True, allow_unused=True), ly)
        else:
            with _func_transform("inner objective"):
                gg, gv = torch.func.grad_and_value(g_of_y)(y)
                fg = torch.func.grad(f_of_y)(y)
        a = tuple(-s * t for t in _flat(gg))
        b = tuple(_flat(fg))
        sim = similarity_value(a, b, spec.similarity, spec.eps)
        return s * gv + self.beta * sim.to(gv.dtype)

    def value(self, x: TorchVec | None, y: TorchVec, *, batch: Batch = None) -> Tensor:
        if not self.active:
            return self.sign * self.g.value(x, y, batch=batch)
        # the similarity term needs gradients, so this value is computed with autograd enabled
        xl, yl, _, _ = self.phi._leaves(x, y)
        with torch.enable_grad():
            return self.phi._eval(xl, yl, batch).detach()

    def grad(self, x: TorchVec | None, y: TorchVec, *, batch: Batch = None) -> Pair:
        if not self.active:
            gx, gy = self.g.grad(x, y, batch=batch)
            sp = self.space
            return (None if gx is None else sp.scale(gx, self.sign), sp.scale(gy, self.sign))
        if self.first_order:
            return self._fo_grad(x, y, batch)
        return self.phi.grad(x, y, batch=batch)

    def _fo_grad(self, x: TorchVec | None, y: TorchVec, batch: Batch, fg: Pair | None = None,
                 keep: list[Pair] | None = None) -> Pair:
        """∇φ from plain gradients only (``first_order``); ``fg``: ∇f(y) if already known (read, never
        written); ``keep``: a list that receives a copy of ∇g(y). Ordered for memory: while each shifted
        gradient is taken, only ∇g(y), ∇f(y) and the shifted point are alive besides it (the cosine's
        weights u_a, u_b are recomputed rather than kept), and the result accumulates in place into the
        fresh ∇g(y)."""
        s, beta = self.sign, self.beta
        gg = self.g.grad(x, y, batch=batch)
        if keep is not None:
            keep.append((None if gg[0] is None else _clone(gg[0]), _clone(gg[1])))
        if fg is None:
            fg = self.f.grad(x, y, batch=batch)
        # β·(−s)·(∇g(y + t u_a) − ∇g(y))/t
        ya, ta = self._shift(y, self._weights(gg, fg, 0))
        dg = self.g.grad(x, ya, batch=batch)
        del ya
        for d, g0 in zip(dg, gg, strict=True):
            if d is not None and g0 is not None:
                ds = _flat(d)
                torch._foreach_sub_(ds, _flat(g0))
                torch._foreach_mul_(ds, -s * beta / ta)
        yb, tb = self._shift(y, self._weights(gg, fg, 1))  # before ∇g(y) is overwritten
        out = (gg[0], gg[1])
        for d, o in zip(dg, out, strict=True):  # out = s∇g + the g term
            if d is not None and o is not None:
                torch._foreach_mul_(_flat(o), s)
                torch._foreach_add_(_flat(o), _flat(d))
        del dg
        # + β(∇f(y + t u_b) − ∇f(y))/t
        df = self.f.grad(x, yb, batch=batch)
        del yb
        for d, f0, o in zip(df, fg, out, strict=True):
            if d is not None and f0 is not None and o is not None:
                ds = _flat(d)
                torch._foreach_sub_(ds, _flat(f0))
                torch._foreach_mul_(ds, beta / tb)
                torch._foreach_add_(_flat(o), ds)
        return out

    def _weights(self, gg: Pair, fg: Pair, which: int) -> Any:
        """``u_a`` (``which=0``) or ``u_b`` of ``∇sim(a, b)``, ``a = −s∇g``, ``b = ∇f`` (detached), by the
        closed form of :func:`similarity_weight` (one parameter-sized result, no other temporary)."""
        s = self.sign
        a, b = _flat(_detach(gg[1])), _flat(_detach(fg[1]))
        # with a = −s∇g: ∂sim/∂a at (−s·g, b) from the quantities of (g, b): ⟨a,b⟩ = −s⟨g,b⟩, ‖a‖ = ‖g‖
        u = similarity_weight(a, b, self.spec.similarity, self.spec.eps, which, a_sign=-s)
        return _unflat(gg[1], u)

    def _shift(self, y: TorchVec, u: TorchVec) -> tuple[Any, Tensor]:
        """``(y + t u, t)`` with ``t = cosine_fd_step·(1 + ‖y‖)/‖u‖`` (the caller passes ``u`` as a temporary,
        so only the shifted point stays alive)."""
        sp = self.space
        nu = sp.norm(u)
        step = self.cosine_fd_step
        if step is None:  # measured on the tiny GPT-2 in float32 (docs/performance.md, Run D)
            step = self.spec.fd_step if _flat(y)[0].dtype == torch.float64 else LOW_PRECISION_COSINE_STEP
        t = step * (1.0 + sp.norm(y)) / torch.where(nu > 0, nu, torch.ones_like(nu))
        return sp.axpy(t, u, y), t

    def hvp(self, x: TorchVec | None, y: TorchVec, v: TorchVec, *, batch: Batch = None) -> Pair:
        if self.spec.hvp == "forget_hessian" or not self.active:
            # (β = 0 with hvp="finite_difference": self.g differences its gradient; before, this was exact)
            hx, hy = self.g.hvp(x, y, v, batch=batch)
            sp = self.space
            return (None if hx is None else sp.scale(hx, self.sign), sp.scale(hy, self.sign))
        if self.third_order:
            with composite_norms():
                return self.phi.hvp(x, y, v, batch=batch)
        return self.phi.hvp(x, y, v, batch=batch)

    def grad_and_hvp(self, x: TorchVec | None, y: TorchVec, *, batch: Batch = None) -> tuple[Pair, Pair]:
        """``(∇φ, ∇_{(x,y)}⟨∇_y φ, ∇_y φ⟩/2)``, i.e. the gradient and the HVP along it, as the stationarity
        penalty's outer step needs them.

        With ``hvp="exact"`` and double-backward autodiff both come from one graph: ∇φ is taken with
        ``create_graph=True`` and the HVP is one more reverse pass through ⟨∇_y φ, stop_grad(∇_y φ)⟩
        (4 reverse passes instead of 3 + 4, bitwise the same result); when the outer objective has just
        taken ∇f at the same point on the same batch (:class:`SharedGradient`), that graph is reused too.
        With β = 0 (no similarity term) the same holds for ∇φ = s∇g and its HVP (one graph of g).
        With ``hvp="finite_difference"`` and ``fd_scheme="forward"``: ∇φ(y), then one more ∇φ at
        ``y + h∇φ`` (with ``first_order``, both from plain gradients; ∇f(y) is the outer objective's).
        Otherwise: ``grad`` then ``hvp``.
        """
        shared = self.shared
        fg: list[Tensor] | None = None
        leaves: list[Tensor] | None = None
        use = self._sharing()
        if shared is not None:
            # from now on the outer objective keeps its gradient (graph or values) for us, or nothing
            shared.enabled = bool(use)
            shared.keep_graph = use == "graph"
            shared.composite = self.third_order
            hit = shared.take(x, y, batch, composite=self.third_order, graph=use == "graph") if use else None
            if hit is not None:
                leaves, fg = hit
        forward = self.spec.hvp == "finite_difference" and self.fd_scheme == "forward"
        if self.active and self.first_order:
            fgp: Pair | None = None if fg is None else (None, _unflat(y, [t.detach() for t in fg]))
            if self.spec.hvp == "forget_hessian":
                # ∇²φ ≈ s∇²g (the cosine's curvature dropped), s∇²g·∇φ as (∇g(y + h∇φ) − ∇g(y))/h
                kept: list[Pair] = []
                gp = self._fo_grad(x, y, batch, fgp, keep=kept)
                h = self.phi._fd_step(y, gp[1])
                g2 = self.g.grad(x, self.space.axpy(h, gp[1], y), batch=batch)
                for new, old in zip(g2, kept[0], strict=True):
                    if new is not None and old is not None:
                        torch._foreach_sub_(_flat(new), _flat(old))
                        torch._foreach_mul_(_flat(new), self.sign / h)
                return gp, g2
            gp = self._fo_grad(x, y, batch, fgp)
            if forward:
                return gp, self._forward_difference(x, y, gp, batch)
            return gp, self.hvp(x, y, gp[1], batch=batch)
        if not self.active:
            if self.spec.hvp == "finite_difference" and forward:
                gp = self.grad(x, y, batch=batch)
                return gp, self._forward_difference(x, y, gp, batch)
            if self.spec.hvp == "exact" or (self.spec.hvp == "forget_hessian" and not self.first_order):
                if self.autodiff == "double_backward":
                    return self._grad_and_hvp_db(self.g, x, y, batch, self.sign)
            gp = self.grad(x, y, batch=batch)
            return gp, self.hvp(x, y, gp[1], batch=batch)
        if forward:
            if leaves is not None and fg is not None and not self.has_x and self.autodiff == "double_backward":
                with torch.enable_grad():  # ∇φ(y) on the shared leaves, reusing ∇f's graph
                    out = _check_out(self._phi_fn(None, _unflat(y, leaves), batch, fg), "objective")
                    g1 = self.phi._fill(torch.autograd.grad(out, leaves, allow_unused=True), leaves)
                gp = (None, _unflat(y, g1))
            else:
                gp = self.grad(x, y, batch=batch)
            return gp, self._forward_difference(x, y, gp, batch)
        if not (self.spec.hvp == "exact" and self.autodiff == "double_backward"):
            gp = self.grad(x, y, batch=batch)
            return gp, self.hvp(x, y, gp[1], batch=batch)
        with composite_norms():
            return self._grad_and_hvp_db(self.phi, x, y, batch, 1.0, leaves, fg)

    def _sharing(self) -> str:
        """What :meth:`grad_and_hvp` takes from the outer objective's gradient: ``graph`` (∇f's graph, for
        the autodiff ∇φ), ``values`` (∇f itself, for the first-order ∇φ) or nothing (β = 0: φ has no ∇f;
        central differences and forward-over-reverse evaluate ∇φ elsewhere)."""
        if not self.active or self.has_x:
            return ""
        if self.first_order:
            return "values"
        if self.spec.hvp == "forget_hessian":
            return ""
        if self.autodiff != "double_backward":
            return ""
        if self.spec.hvp == "exact" or self.fd_scheme == "forward":
            return "graph"
        return ""

    def _grad_and_hvp_db(
        self, obj: TorchObjective, x: TorchVec | None, y: TorchVec, batch: Batch, scale: float,
        leaves: list[Tensor] | None = None, fg: list[Tensor] | None = None,
    ) -> tuple[Pair, Pair]:
        """``scale·(∇h, ∇²h∇h)`` of ``obj`` from one double-backward graph (``leaves``/``fg``: a shared ∇f)."""
        if leaves is None or self.has_x:
            xl, yl, lx, ly = obj._leaves(x, y)
            fg = None
        else:
            xl, lx, ly = None, [], leaves
            yl = _unflat(y, ly)
        n = len(lx)
        with torch.enable_grad():
            if obj is self.phi:
                out = _check_out(self._phi_fn(xl if self.has_x else None, yl, batch, fg), "objective")
            else:
                out = obj._eval(xl, yl, batch)
            g = obj._fill(torch.autograd.grad(out, lx + ly, create_graph=True, allow_unused=True), lx + ly)
            v = [t.detach() for t in g]
            s = _vdot(tuple(g[n:]), tuple(v[n:]))
            del g, out  # the second reverse pass frees the graph
            if not s.requires_grad:
                h = [torch.zeros_like(t) for t in lx + ly]
            else:
                h = obj._fill(torch.autograd.grad(s, lx + ly, allow_unused=True), lx + ly)
        if scale != 1.0:  # ∇(s h) = s∇h and ∇²(s h)·∇(s h) = s²∇²h∇h
            v = [t * scale for t in v]
            h = [t * (scale * scale) for t in h]
        grad = (_unflat(x, v[:n]) if self.has_x else None, _unflat(y, v[n:]))
        hv = (_unflat(x, h[:n]) if self.has_x else None, _unflat(y, h[n:]))
        return grad, hv

    def _forward_difference(self, x: TorchVec | None, y: TorchVec, gp: Pair, batch: Batch) -> Pair:
        """``(∇φ(y + h v) − ∇φ(y))/h`` along ``v = ∇_y φ(y)`` (``gp``), h as the central scheme's step;
        computed in place in the fresh ∇φ(y + h v)."""
        sp = self.space
        v = gp[1]
        h = self.phi._fd_step(y, v)
        g2 = self.grad(x, sp.axpy(h, v, y), batch=batch)
        inv = 1.0 / h
        for new, old in zip(g2, gp, strict=True):
            if new is not None and old is not None:
                torch._foreach_sub_(_flat(new), _flat(old))
                torch._foreach_mul_(_flat(new), inv)
        return g2


class SharedGradient:
    """Hands the graph of the outer objective's gradient ∇f to the inner objective φ (one slot).

    The stationarity penalty's outer step needs ∇f(y) (the outer gradient) and ∇φ(y), and φ's similarity
    term contains ∇f(y) on the same batch. Once :meth:`AutodiffInner.grad_and_hvp` has run (``enabled``),
    the outer objective takes its gradient with ``create_graph=True`` and leaves ``(leaves, ∇f graph)``
    here; the next ``grad_and_hvp`` at the very same ``y`` tensors (same objects, unchanged versions) and
    the same batch object takes it instead of recomputing f's forward and backward pass. Any other call
    finds no match and recomputes; the slot holds at most one entry and is emptied when taken.
    """

    def __init__(self) -> None:
        self.enabled = False
        self.keep_graph = True  # False: keep ∇f's values only (first-order φ)
        self.composite = False  # build ∇f's graph with composite normalization layers (third order follows)
        self._entry: tuple[Any, list[Tensor], list[int], bool, list[Tensor], list[Tensor]] | None = None
        self.hits = 0

    @staticmethod
    def _key(y: TorchVec) -> tuple[list[Tensor], list[int]]:
        ys = _flat(y)
        return ys, [t._version for t in ys]

    def put(
        self, y: TorchVec, batch: Batch, leaves: list[Tensor], fg: list[Tensor], *, composite: bool = False
    ) -> None:
        """Leave ``(leaves, ∇f graph)``; ``composite``: the graph was built under :func:`composite_norms`."""
        ys, vs = self._key(y)
        self._entry = (batch, ys, vs, bool(composite), leaves, fg)

    def clear(self) -> None:
        self._entry = None

    def take(
        self, x: TorchVec | None, y: TorchVec, batch: Batch, *, composite: bool = False, graph: bool = True
    ) -> tuple[list[Tensor], list[Tensor]] | None:
        """The entry for this point and batch, or ``None``; with ``composite`` only a graph built with
        composite normalization layers matches (a third derivative will be taken through it); with
        ``graph`` only an entry that holds a graph (not just values)."""
        e, self._entry = self._entry, None
        if e is None or x is not None or e[0] is not batch or (composite and not e[3]):
            return None
        if graph and not any(t.requires_grad for t in e[5]):
            return None
        ys, vs = self._key(y)
        if len(ys) != len(e[1]) or any(a is not b for a, b in zip(ys, e[1], strict=True)) or vs != e[2]:
            return None
        self.hits += 1
        return e[4], e[5]


class ComposedTorchInner:
    r"""φ composed from ``f``/``g`` oracles like :class:`~ofmu_opt.core.inner.ComposedInner`, but with every
    scalar of the cosine kept as a tensor: no host synchronisation.

    For oracles whose outputs are already global — data-parallel oracles averaged across ranks, or
    accumulated micro-batch oracles — the cosine must be formed from those outputs, so φ cannot be one
    autodiff function of the local loss. The derivatives of ``sim(a, b)`` with respect to the two
    gradients (and their directional derivative, for the exact HVP) are taken by ``torch.func`` on the
    similarity alone; the rest uses the oracles' ``hvp`` and ``tvp``:

    .. math::  \nabla\varphi = s\nabla g + \beta(-s\,H_g u_a + H_f u_b), \quad (u_a, u_b) = \nabla\mathrm{sim}(a, b)

    Args:
        outer: objectives with ``grad``, ``hvp`` (and ``tvp`` for the exact mode).
        inner: see ``outer``.
        spec: the :class:`~ofmu_opt.core.inner.InnerSpec`.
        space: the :class:`TorchSpace`.
    """

    def __init__(self, outer: Any, inner: Any, spec: Any, *, space: TorchSpace | None = None) -> None:
        check_choice("hvp", spec.hvp, ("exact", "finite_difference", "forget_hessian"))
        self.f, self.g, self.spec = outer, inner, spec
        self.sign, self.beta = float(spec.sign), float(spec.beta)
        self.active = spec.similarity != "none" and spec.beta != 0.0
        self.space = space if space is not None else TorchSpace()
        if self.active and spec.hvp == "exact":
            for label, obj in (("outer", outer), ("inner", inner)):
                if not callable(getattr(obj, "tvp", None)):
                    raise ConfigError(f"hvp: 'exact' needs a tvp oracle of the {label} objective")
        kind, eps = spec.similarity, spec.eps
        self._sim_grad = torch.func.grad(lambda a, b: similarity_value(a, b, kind, eps), argnums=(0, 1))

    def _scale(self, p: Pair, c: Any) -> Pair:
        sp = self.space
        return (None if p[0] is None else sp.scale(p[0], c), sp.scale(p[1], c))

    def _axpy(self, c: Any, a: Pair, b: Pair) -> Pair:
        sp = self.space
        x = b[0] if (a[0] is None or b[0] is None) else sp.axpy(c, a[0], b[0])
        return (x, sp.axpy(c, a[1], b[1]))

    def _parts(self, x: Any, y: Any, batch: Batch) -> tuple[Pair, Any, Any]:
        gg = self.g.grad(x, y, batch=batch)
        fg = self.f.grad(x, y, batch=batch)
        return gg, self.space.scale(gg[1], -self.sign), fg[1]

    def value(self, x: Any, y: Any, *, batch: Batch = None) -> Tensor:
        gv = torch.as_tensor(self.g.value(x, y, batch=batch))
        if not self.active:
            return self.sign * gv
        _, a, b = self._parts(x, y, batch)
        return self.sign * gv + self.beta * similarity_value(a, b, self.spec.similarity, self.spec.eps).to(gv.dtype)

    def grad(self, x: Any, y: Any, *, batch: Batch = None) -> Pair:
        if not self.active:
            return self._scale(self.g.grad(x, y, batch=batch), self.sign)
        gg, a, b = self._parts(x, y, batch)
        ua, ub = self._sim_grad(a, b)
        term = self._axpy(-self.sign, self.g.hvp(x, y, ua, batch=batch), self.f.hvp(x, y, ub, batch=batch))
        return self._axpy(self.beta, term, self._scale(gg, self.sign))

    def hvp(self, x: Any, y: Any, v: Any, *, batch: Batch = None) -> Pair:
        s, sp = self.sign, self.space
        if self.spec.hvp == "forget_hessian" or not self.active:
            return self._scale(self.g.hvp(x, y, v, batch=batch), s)
        if self.spec.hvp == "finite_difference":
            nv = sp.norm(v)
            h = self.spec.fd_step * (1.0 + sp.norm(y)) / torch.where(nv > 0, nv, torch.ones_like(nv))
            gp = self.grad(x, sp.axpy(h, v, y), batch=batch)
            gm = self.grad(x, sp.axpy(-h, v, y), batch=batch)
            return self._scale(self._axpy(-1.0, gm, gp), 0.5 / h)
        _, a, b = self._parts(x, y, batch)
        hg_v = self.g.hvp(x, y, v, batch=batch)
        hf_v = self.f.hvp(x, y, v, batch=batch)
        res = torch.func.jvp(self._sim_grad, (a, b), (sp.scale(hg_v[1], -s), hf_v[1]))
        (ua, ub), (dua, dub) = res[0], res[1]
        term = self._axpy(-s, self.g.hvp(x, y, dua, batch=batch), self.f.hvp(x, y, dub, batch=batch))
        term = self._axpy(-s, _zero_none(self.g.tvp(x, y, ua, v, batch=batch), term), term)
        term = self._axpy(1.0, _zero_none(self.f.tvp(x, y, ub, v, batch=batch), term), term)
        return self._axpy(self.beta, term, self._scale(hg_v, s))


def _zero_none(p: Pair, like: Pair) -> Pair:
    """A tvp result with ``None`` blocks (zero third derivatives) as zeros shaped like ``like``."""
    return (
        None if like[0] is None else (_zeros(like[0]) if p[0] is None else p[0]),
        _zeros(like[1]) if p[1] is None else p[1],
    )


def composed_inner_factory(outer: Any, inner: Any, *, space: TorchSpace | None = None) -> Callable[[Any], Any]:
    """The ``inner_factory`` hook that composes φ from given (e.g. all-reduced) oracles without host syncs."""

    def factory(spec: Any) -> ComposedTorchInner:
        return ComposedTorchInner(outer, inner, spec, space=space)

    return factory


def autodiff_inner_factory(
    f_fn: TorchFn,
    g_fn: TorchFn,
    *,
    has_x: bool,
    autodiff: str = "forward_over_reverse",
    space: TorchSpace | None = None,
    fd_scheme: str = "central",
    shared: SharedGradient | None = None,
    first_order: bool = False,
    cosine_fd_step: float | None = None,
) -> Callable[[Any], AutodiffInner]:
    """The ``inner_factory`` hook of :class:`~ofmu_opt.problem.bilevel.BilevelProblem` for torch functions.

    Example:
        >>> import torch
        >>> from ofmu_opt.core.inner import InnerSpec
        >>> fac = autodiff_inner_factory(lambda x, y, b: (y ** 2).sum(), lambda x, y, b: y.sum(), has_x=False)
        >>> phi = fac(InnerSpec("signed", 0.5, 0.0, "exact", 1e-6, 1.0))
        >>> round(float(phi.value(None, torch.ones(2, dtype=torch.float64))), 6)  # 2 + 0.5·cos(−∇g, ∇f) = 2 − 0.5
        1.5
    """
    check_choice("autodiff", autodiff, ("forward_over_reverse", "double_backward"))
    check_choice("fd_scheme", fd_scheme, FD_SCHEMES)

    def factory(spec: Any) -> AutodiffInner:
        return AutodiffInner(f_fn, g_fn, spec, has_x=has_x, autodiff=autodiff, space=space, fd_scheme=fd_scheme,
                             shared=shared, first_order=first_order, cosine_fd_step=cosine_fd_step)

    return factory

"""Oracles from an ``nn.Module``, a loss and two data sources (forget and retain): the unlearning problem.

The inner variable ``y`` is a tuple of the model's trainable parameters (chosen by ``params``: ``"all"``,
``"requires_grad"`` — e.g. an adapter's parameters, the others being frozen — a regular expression on
parameter names, or an explicit list of names). The model is evaluated at a tuple ``y`` with
``torch.func.functional_call`` (the model's own tensors are untouched), so the solver never writes into
the module; :meth:`ModuleProblem.write_back` copies an iterate into it.

The problem is ``sense="max"``, ``inner = L_f`` (forget loss), ``outer = L_r`` (retain loss), no ``x``.
A batch handed to the oracles is a :class:`ModuleBatch` ``(forget, retain)``; ``L_f`` reads ``forget``,
``L_r`` reads ``retain``, and φ reads both. ``batch=None`` means the ``default_batch``.

Mini-batches: :class:`SeededBatches` draws index batches from in-memory tensors with a generator seeded
from ``(seed, round, slot)``, so a round's batches do not depend on how many were drawn before (a resumed
run draws the same batches). :meth:`ModuleProblem.round_batches` assembles one round
(:class:`~ofmu_opt.core.solver.RoundBatches`).

Gradient accumulation (``accumulation=k``): every oracle splits its batch into ``k`` micro-batches along
dimension 0 and averages the micro-batch results (gradients, HVPs and third-order products are linear in
the loss, so the result equals the full batch's); peak memory is that of one micro-batch. φ is then
composed from these oracles (:class:`~ofmu_opt.backends.torch_autodiff.ComposedTorchInner`, exact with
the third-order ``tvp``, no host synchronisation), since the cosine needs the full-batch gradients first.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 1).double()
    >>> X = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> data = (X, X.sum(1, keepdim=True))
    >>> mp = module_problem(model, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), data, data)
    >>> mp.names, mp.problem.sense
    (('weight', 'bias'), 'max')
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .._config import check_choice
from .._typing import Batch, Pair
from ..core.solver import RoundBatches
from ..errors import ConfigError, OracleError
from ..problem.bilevel import BilevelProblem
from ..problem.oracles import check_module_device
from ._torch_norms import composite_norms
from .torch_autodiff import (
    AUTODIFF_MODES,
    FD_SCHEMES,
    SharedGradient,
    TorchObjective,
    autodiff_inner_factory,
    composed_inner_factory,
)
from .torch_backend import TorchSpace, TorchVec

__all__ = [
    "ModuleBatch",
    "ModuleObjective",
    "ModuleProblem",
    "SeededBatches",
    "batch_stream",
    "module_problem",
    "select_params",
    "split_batch",
]

Loss = Callable[[nn.Module, Any], Tensor]
"""``loss(model, batch) -> 0-d tensor`` (e.g. ``adapter.per_example_nll(model, batch).mean()``)."""


class ModuleBatch(NamedTuple):
    """One step's batches: ``forget`` for the inner objective, ``retain`` for the outer one."""

    forget: Any
    retain: Any


def select_params(
    model: nn.Module, params: str | Sequence[str] = "requires_grad"
) -> tuple[tuple[str, ...], tuple[Tensor, ...]]:
    """Names and tensors of the trainable parameters.

    Args:
        model: the module.
        params: ``"all"``, ``"requires_grad"`` (the parameters with ``requires_grad``, e.g. an adapter's),
            ``"re:<pattern>"`` (names matching the regular expression, ``re.search``), or a list of names.

    Raises:
        ConfigError: no parameter selected, an unknown name, or a bad pattern.
    """
    named = dict(model.named_parameters())
    if isinstance(params, str):
        if params == "all":
            names = list(named)
        elif params == "requires_grad":
            names = [n for n, p in named.items() if p.requires_grad]
        elif params.startswith("re:"):
            try:
                pat = re.compile(params[3:])
            except re.error as exc:
                raise ConfigError(f"params: bad regular expression {params[3:]!r}: {exc}") from exc
            names = [n for n in named if pat.search(n)]
        else:
            raise ConfigError(
                f"params: expected 'all', 'requires_grad', 're:<pattern>' or a list of names, received {params!r}"
            )
    else:
        names = list(params)
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ConfigError(f"params: unknown parameter name {unknown[0]!r}; known: {', '.join(list(named)[:8])} ...")
    if not names:
        raise ConfigError(f"params: {params!r} selects no parameter of {type(model).__name__}")
    return tuple(names), tuple(named[n] for n in names)


def split_batch(batch: Any, k: int) -> list[Any]:
    """Split a batch (a tensor, or a tuple/list/dict/NamedTuple of tensors) into ``k`` equal micro-batches
    along dimension 0.

    Raises:
        OracleError: the batch size is not divisible by ``k`` or the batch holds no tensor.
    """
    if k == 1:
        return [batch]
    if isinstance(batch, Tensor):
        if batch.shape[0] % k:
            raise OracleError(f"accumulation: batch size {batch.shape[0]} is not divisible by {k}")
        return list(torch.chunk(batch, k, dim=0))
    if isinstance(batch, dict):
        parts = {key: split_batch(v, k) for key, v in batch.items()}
        return [{key: parts[key][i] for key in batch} for i in range(k)]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        cols = [split_batch(v, k) for v in batch]
        return [type(batch)(*(c[i] for c in cols)) for i in range(k)]
    if isinstance(batch, list | tuple):
        cols = [split_batch(v, k) for v in batch]
        return [type(batch)(c[i] for c in cols) for i in range(k)]
    if batch is None or isinstance(batch, int | float | str):
        return [batch] * k
    raise OracleError(f"accumulation: cannot split a batch of type {type(batch).__name__}; pass split=")


class _LossModule(nn.Module):
    """Holds the model so that ``functional_call`` can swap its parameters while ``loss`` runs."""

    def __init__(self, model: nn.Module, loss: Loss) -> None:
        super().__init__()
        self.model = model
        self._loss = loss

    def forward(self, batch: Any) -> Tensor:
        return self._loss(self.model, batch)


class ModuleObjective(TorchObjective):
    """A :class:`TorchObjective` for one loss of a module, with optional gradient accumulation."""

    def __init__(
        self, fn: Callable[[Any, Any, Any], Tensor], *, accumulation: int, split: Callable[[Any, int], list[Any]],
        hvp_mode: str, space: TorchSpace, default_batch: Any = None, shared: SharedGradient | None = None,
    ) -> None:
        super().__init__(fn, has_x=False, hvp_mode=hvp_mode, space=space)
        self.accumulation = accumulation
        self.split = split
        self.default_batch = default_batch
        self.shared = shared

    def _parts(self, batch: Batch) -> list[Any]:
        b = self.default_batch if batch is None else batch
        if b is None:
            raise OracleError("batch: expected a ModuleBatch (no default batch: the data are not in memory)")
        return self.split(b, self.accumulation)

    def _acc_pair(self, op: Callable[[Any], Pair], batch: Batch) -> Pair:
        if self.accumulation == 1:
            return op(batch)
        sp = self.space
        parts = self._parts(batch)
        acc = op(parts[0])[1]
        for b in parts[1:]:
            acc = sp.add(acc, op(b)[1])
        return (None, sp.scale(acc, 1.0 / self.accumulation))

    def value(self, x: TorchVec | None, y: TorchVec, *, batch: Batch = None) -> Tensor:
        if self.accumulation == 1:
            return super().value(x, y, batch=batch)
        vals = [super(ModuleObjective, self).value(x, y, batch=b) for b in self._parts(batch)]
        return torch.stack(vals).mean()

    def grad(self, x: TorchVec | None, y: TorchVec, *, batch: Batch = None) -> Pair:
        sh = self.shared
        if sh is not None and sh.enabled and self.accumulation == 1 and x is None and not sh.keep_graph:
            # a first-order φ at this point reuses the gradient's values
            gp = TorchObjective.grad(self, x, y, batch=batch)
            sh.put(y, batch, [], list(_flat_like(gp[1])))
            return gp
        if sh is not None and sh.enabled and self.accumulation == 1 and x is None:
            # keep the graph: the inner objective's next exact outer step at this point reuses it
            _, _, _, ly = self._leaves(None, y)
            norms = composite_norms() if sh.composite else contextlib.nullcontext()
            with torch.enable_grad(), norms:
                out = self._eval(None, _unflat_like(y, ly), batch)
                gs = self._fill(torch.autograd.grad(out, ly, create_graph=True, allow_unused=True), ly)
            sh.put(y, batch, ly, gs, composite=sh.composite)
            return None, _unflat_like(y, [t.detach() for t in gs])
        return self._acc_pair(lambda b: TorchObjective.grad(self, x, y, batch=b), batch)

    def hvp(self, x: TorchVec | None, y: TorchVec, v: TorchVec, *, batch: Batch = None) -> Pair:
        return self._acc_pair(lambda b: TorchObjective.hvp(self, x, y, v, batch=b), batch)

    def tvp(self, x: TorchVec | None, y: TorchVec, u: TorchVec, v: TorchVec, *, batch: Batch = None) -> Pair:
        return self._acc_pair(lambda b: TorchObjective.tvp(self, x, y, u, v, batch=b), batch)


def _flat_like(v: Any) -> tuple[Tensor, ...]:
    return (v,) if isinstance(v, Tensor) else tuple(v)


def _unflat_like(like: Any, items: list[Tensor]) -> Any:
    return items[0] if isinstance(like, Tensor) else tuple(items)


class SeededBatches:
    """Mini-batches of in-memory tensors drawn with explicit seeds.

    ``draw(round, slot)`` samples ``batch_size`` indices without replacement with a CPU generator seeded
    from ``(seed, round, slot)``; the same arguments give the same batch, independent of earlier draws.

    Args:
        data: a tensor or a tuple of tensors with a common first dimension.
        batch_size: examples per batch (≤ the data size).
        seed: the stream's seed.
    """

    def __init__(self, data: Tensor | Sequence[Tensor], batch_size: int, seed: int) -> None:
        self.data: tuple[Tensor, ...] = (data,) if isinstance(data, Tensor) else tuple(data)
        if not self.data or not all(isinstance(t, Tensor) for t in self.data):
            raise ConfigError("data: expected a tensor or a non-empty tuple of tensors")
        n = self.data[0].shape[0]
        if any(t.shape[0] != n for t in self.data):
            raise ConfigError(f"data: tensors disagree on the first dimension: {[t.shape[0] for t in self.data]}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
            raise ConfigError(f"batch_size: expected an integer in [1, {n}], received {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed: expected a non-negative int, received {seed!r}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.single = isinstance(data, Tensor)

    def draw(self, round_index: int, slot: int = 0) -> Any:
        g = torch.Generator(device="cpu").manual_seed((self.seed * 1_000_003 + round_index * 1009 + slot) % 2**63)
        idx = torch.randperm(self.n, generator=g)[: self.batch_size]
        out = tuple(t[idx.to(t.device)] for t in self.data)
        return out[0] if self.single else out

    def full(self) -> Any:
        return self.data[0] if self.single else self.data


@dataclass(frozen=True)
class ModuleProblem:
    """The unlearning problem of a module: the bi-level problem, its start ``y0`` and the parameter names."""

    problem: BilevelProblem
    y0: tuple[Tensor, ...]
    names: tuple[str, ...]
    model: nn.Module
    forget: SeededBatches | None
    retain: SeededBatches | None

    def round_batches(self, round_index: int, inner_steps: int) -> RoundBatches:
        """The seeded batches of round ``round_index``: ``inner_steps`` inner batches and one outer batch."""
        if self.forget is None or self.retain is None:
            raise ConfigError("round_batches: needs in-memory data sources (SeededBatches); pass batches yourself")
        inner = tuple(
            ModuleBatch(self.forget.draw(round_index, 2 * t), self.retain.draw(round_index, 2 * t + 1))
            for t in range(inner_steps)
        )
        outer = ModuleBatch(self.forget.draw(round_index, 10_000), self.retain.draw(round_index, 10_001))
        return RoundBatches(inner=inner, outer=outer)

    def write_back(self, y: Sequence[Tensor]) -> None:
        """Copy the iterate ``y`` into the model's parameters (in place, no autograd)."""
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            torch._foreach_copy_([params[n] for n in self.names], list(y))


def module_problem(
    model: nn.Module,
    loss: Loss,
    forget: Any,
    retain: Any,
    *,
    params: str | Sequence[str] = "requires_grad",
    retain_loss: Loss | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    accumulation: int = 1,
    split: Callable[[Any, int], list[Any]] = split_batch,
    autodiff: str = "double_backward",
    default_batch: ModuleBatch | None = None,
    space: TorchSpace | None = None,
    name: str = "unlearning",
    fd_scheme: str = "central",
    share_outer_grad: bool = True,
    autocast: str | None = None,
    first_order: bool = False,
    cosine_fd_step: float | None = None,
) -> ModuleProblem:
    """Build the unlearning bi-level problem of ``model``.

    Args:
        model: the module (its parameters' dtype and device decide everything).
        loss: ``loss(model, batch) -> scalar``, the forget loss L_f (and the retain loss unless
            ``retain_loss`` is given).
        forget: the data: a tensor or tuple of tensors (sampled by :class:`SeededBatches`), or a
        retain: see ``forget``.
            :class:`SeededBatches`, or ``None`` when batches are always passed explicitly.
        params: which parameters are trainable (see :func:`select_params`).
        retain_loss: the retain loss L_r if it differs from ``loss``.
        batch_size: per-draw batch size for in-memory data (default: all examples).
        seed: seed of the batch streams (forget uses ``seed``, retain ``seed + 1``).
        accumulation: number of micro-batches per oracle call (≥ 1); see the module docstring.
        split: how a batch is cut into micro-batches.
        autodiff: ``double_backward`` (default; works with modules that update buffers in place, such as
            batch norm in training mode) or ``forward_over_reverse`` (``torch.func``).
        default_batch: the batch used when an oracle gets ``batch=None`` (default: the full in-memory data).
        space: the vector space (default: a new :class:`TorchSpace`).
        name: problem label.
        fd_scheme: ``central`` or ``forward``: the finite-difference HVP of the outer step along ∇φ
            (``hvp="finite_difference"``); ``forward`` reuses ∇φ(y) and takes one extra gradient instead of
            two (see :class:`~ofmu_opt.backends.torch_autodiff.AutodiffInner`).
        share_outer_grad: let the exact double-backward outer step reuse the graph of the retain gradient
            the outer objective has just taken (one forward and backward pass of L_r fewer per outer step,
            same result; :class:`~ofmu_opt.backends.torch_autodiff.SharedGradient`). Needs
            ``accumulation=1``.
        autocast: ``None`` or ``"bfloat16"``: evaluate both losses under ``torch.autocast`` in bfloat16
            (parameters and the solver's vectors stay in their dtype).
        first_order: no second-order autodiff in φ: the cosine's Hessian-vector products inside ∇φ are
            forward differences of plain gradients (with ``hvp="finite_difference"`` and
            ``fd_scheme="forward"`` the whole outer step takes first derivatives only; see
            :class:`~ofmu_opt.backends.torch_autodiff.AutodiffInner`). Needs ``accumulation=1``.
        cosine_fd_step: relative step of those differences (default: the solver's ``fd_step``).

    Raises:
        ConfigError: bad options, or no parameter selected.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected an nn.Module, received {type(model).__name__}")
    check_module_device(model, "model")
    if not callable(loss) or (retain_loss is not None and not callable(retain_loss)):
        raise ConfigError("loss: expected a callable loss(model, batch) -> scalar tensor")
    if isinstance(accumulation, bool) or not isinstance(accumulation, int) or accumulation < 1:
        raise ConfigError(f"accumulation: expected an integer >= 1, received {accumulation!r}")
    if autodiff not in AUTODIFF_MODES[:2]:
        raise ConfigError(f"autodiff: expected 'double_backward' or 'forward_over_reverse', received {autodiff!r}")
    check_choice("fd_scheme", fd_scheme, FD_SCHEMES)
    if first_order and accumulation != 1:
        raise ConfigError(f"first_order: needs accumulation=1 (the composed φ of micro-batches takes autodiff "
                          f"HVPs), received accumulation={accumulation}")
    if autocast not in (None, "bfloat16"):
        raise ConfigError(f"autocast: expected None or 'bfloat16', received {autocast!r}")
    names, tensors = select_params(model, params)
    sp = space if space is not None else TorchSpace()
    # what transformers' is_gradient_checkpointing (deprecated in 5.x for is_activation_checkpointing) reads,
    # without the deprecation warning: a submodule with its gradient_checkpointing flag on
    if any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules()):
        # recomputation runs in the backward pass, outside functional_call: with the module's own weights
        # instead of the iterate y, so every derivative would be wrong (measured: up to 7 % off on a tiny GPT-2)
        raise ConfigError(
            f"{type(model).__name__} has gradient checkpointing on; the functional oracles evaluate the model at "
            "the solver's iterate with torch.func.functional_call, which recomputation cannot see: call "
            "model.gradient_checkpointing_disable() first"
        )
    device_type = tensors[0].device.type

    def source(d: Any, s: int) -> SeededBatches | None:
        if d is None or isinstance(d, SeededBatches):
            return d
        data = (d,) if isinstance(d, Tensor) else tuple(d)
        return SeededBatches(d if isinstance(d, Tensor) else data, batch_size or int(data[0].shape[0]), s)

    fsrc, rsrc = source(forget, seed), source(retain, seed + 1)
    if default_batch is None and fsrc is not None and rsrc is not None:
        default_batch = ModuleBatch(fsrc.full(), rsrc.full())
    wrap_f, wrap_r = _LossModule(model, loss), _LossModule(model, retain_loss or loss)

    def evaluate(wrapper: _LossModule, part: int) -> Callable[[Any, Any, Any], Tensor]:
        def fn(x: Any, y: Any, batch: Any) -> Tensor:
            b = default_batch if batch is None else batch
            if b is None:
                raise OracleError("batch: expected a ModuleBatch (no default batch: the data are not in memory)")
            if not isinstance(b, ModuleBatch):
                raise OracleError(f"batch: expected a ModuleBatch(forget, retain), received {type(b).__name__}")
            state = {f"model.{n}": t for n, t in zip(names, y, strict=True)}
            if autocast is None:
                return torch.func.functional_call(wrapper, state, (b[part],), strict=False)  # type: ignore[no-any-return]
            with torch.autocast(device_type, dtype=torch.bfloat16):
                out = torch.func.functional_call(wrapper, state, (b[part],), strict=False)
            return out.float()  # type: ignore[no-any-return]

        return fn

    g_fn, f_fn = evaluate(wrap_f, 0), evaluate(wrap_r, 1)
    shared = SharedGradient() if share_outer_grad and accumulation == 1 and autodiff == "double_backward" else None
    g = ModuleObjective(g_fn, accumulation=accumulation, split=_split_pair(split, 0), hvp_mode=autodiff, space=sp,
                        default_batch=default_batch)
    f = ModuleObjective(f_fn, accumulation=accumulation, split=_split_pair(split, 1), hvp_mode=autodiff, space=sp,
                        default_batch=default_batch, shared=shared)
    factory = (composed_inner_factory(f, g, space=sp) if accumulation > 1
               else autodiff_inner_factory(f_fn, g_fn, has_x=False, autodiff=autodiff, space=sp,
                                           fd_scheme=fd_scheme, shared=shared, first_order=first_order,
                                           cosine_fd_step=cosine_fd_step))
    problem = BilevelProblem(f, g, sp, "max", has_x=False, name=name, inner_factory=factory)
    y0 = tuple(t.detach().clone() for t in tensors)
    return ModuleProblem(problem, y0, names, model, fsrc, rsrc)


def _split_pair(split: Callable[[Any, int], list[Any]], part: int) -> Callable[[Any, int], list[Any]]:
    """Split only the part of a ModuleBatch that the objective reads (the other part is passed along)."""

    def inner(batch: Any, k: int) -> list[Any]:
        pieces = split(batch[part], k)
        return [ModuleBatch(p, batch.retain) if part == 0 else ModuleBatch(batch.forget, p) for p in pieces]

    return inner


def batch_stream(forget: Iterator[Any], retain: Iterator[Any], inner_steps: int) -> Iterator[RoundBatches]:
    """Rounds of batches from two (infinite) iterators: ``inner_steps`` inner pairs, then one outer pair."""
    while True:
        inner = tuple(ModuleBatch(next(forget), next(retain)) for _ in range(inner_steps))
        yield RoundBatches(inner=inner, outer=ModuleBatch(next(forget), next(retain)))

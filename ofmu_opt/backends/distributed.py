"""Data-parallel runs through ``torch.distributed`` (gloo on CPU, NCCL on GPU), launched with ``torchrun``.

Every rank holds the full parameter tuple and evaluates the losses on its shard of each global batch.
:class:`AllReduceObjective` averages every oracle's output across ranks — values, gradients, HVPs and
third-order products, all linear in the loss — *before* the solver sees them, so every dot product,
norm and cosine the core computes is the global one, and every rank takes the bit-identical step (an
all-reduce leaves the same bytes on every rank). The similarity-aware inner objective φ is then composed
from these averaged oracles (:class:`~ofmu_opt.backends.torch_autodiff.ComposedTorchInner`, exact and
free of host synchronisation): its cosine needs the global gradients, which a per-rank autodiff φ would
not see. With equal shard sizes the average of
the shard means is the global mean, so a run on ``W`` ranks equals a single-process run on the same
global batches up to floating-point summation order.

Sharded parameters (FSDP/ZeRO): give :class:`~ofmu_opt.backends.torch_backend.TorchSpace` the
``reduce`` hook :func:`all_reduce_sum`, so that the partial dot products and squared norms of the local
shards are summed across ranks (see docs/distributed.md).

Launch (one machine, 2 processes)::

    torchrun --standalone --nproc_per_node 2 my_script.py
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .._typing import Batch, Pair
from ..errors import BackendError
from ..problem.bilevel import BilevelProblem
from .torch_autodiff import composed_inner_factory
from .torch_backend import TorchSpace, TorchVec

__all__ = [
    "AllReduceObjective",
    "all_reduce_mean",
    "all_reduce_sum",
    "distributed_problem",
    "init_distributed",
    "shard",
]

log = logging.getLogger(__name__)


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``); ``gloo`` on CPU, ``nccl`` when CUDA is available (each rank then
    uses ``cuda:LOCAL_RANK``).

    Returns:
        ``(rank, world_size)``.

    Raises:
        BackendError: not launched by torchrun (no ``RANK``/``WORLD_SIZE``), or the backend is unavailable.
    """
    if not dist.is_available():
        raise BackendError("torch.distributed is not available in this torch build")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise BackendError("init_distributed: RANK/WORLD_SIZE not set; launch with torchrun --nproc_per_node N")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group(backend=backend)
    except (RuntimeError, ValueError) as exc:
        raise BackendError(f"init_distributed: cannot start the {backend} process group: {exc}") from exc
    log.info("rank %d of %d joined (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return dist.get_rank(), dist.get_world_size()


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum of ``t`` over all ranks (a new tensor; the ``reduce`` hook for sharded vector spaces)."""
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(v: TorchVec) -> TorchVec:
    """Average a tensor or a tuple of tensors over all ranks (new tensors)."""
    world = dist.get_world_size()
    items = [v] if isinstance(v, Tensor) else list(v)
    outs = [t.detach().clone() for t in items]
    for t in outs:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    outs = list(torch._foreach_div(outs, float(world)))
    return outs[0] if isinstance(v, Tensor) else tuple(outs)


def shard(batch: Any, rank: int, world: int) -> Any:
    """This rank's equal share (along dimension 0) of a tensor or a tuple/list/NamedTuple/dict of tensors.

    Raises:
        BackendError: the global batch size is not divisible by the world size.
    """
    if isinstance(batch, Tensor):
        n = batch.shape[0]
        if n % world:
            raise BackendError(f"shard: global batch size {n} is not divisible by the world size {world}")
        k = n // world
        return batch[rank * k:(rank + 1) * k]
    if isinstance(batch, dict):
        return {key: shard(v, rank, world) for key, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(shard(v, rank, world) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(shard(v, rank, world) for v in batch)
    return batch


class AllReduceObjective:
    """Wraps an objective so that every oracle's output is averaged across ranks.

    ``shard_batches=True`` (default) cuts each global batch to this rank's share first, so all ranks can
    be handed the same global batches.
    """

    def __init__(self, inner: Any, *, shard_batches: bool = True) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise BackendError("AllReduceObjective: call init_distributed() first")
        self.inner = inner
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.shard_batches = shard_batches
        self.hvp_available = callable(getattr(inner, "hvp", None))
        self.tvp_available = callable(getattr(inner, "tvp", None))

    def _b(self, batch: Batch) -> Batch:
        if batch is None or not self.shard_batches:
            return batch
        return shard(batch, self.rank, self.world)

    def _pair(self, p: Pair) -> Pair:
        return (None if p[0] is None else all_reduce_mean(p[0]), None if p[1] is None else all_reduce_mean(p[1]))

    def value(self, x: Any, y: Any, *, batch: Batch = None) -> Tensor:
        v = self.inner.value(x, y, batch=self._b(batch))
        return all_reduce_mean(torch.as_tensor(v))  # type: ignore[return-value]

    def grad(self, x: Any, y: Any, *, batch: Batch = None) -> Pair:
        return self._pair(self.inner.grad(x, y, batch=self._b(batch)))

    def hvp(self, x: Any, y: Any, v: Any, *, batch: Batch = None) -> Pair:
        return self._pair(self.inner.hvp(x, y, v, batch=self._b(batch)))

    def tvp(self, x: Any, y: Any, u: Any, v: Any, *, batch: Batch = None) -> Pair:
        return self._pair(self.inner.tvp(x, y, u, v, batch=self._b(batch)))


def distributed_problem(problem: BilevelProblem, *, shard_batches: bool = True) -> BilevelProblem:
    """The data-parallel version of ``problem``: averaged oracles, and φ composed from them
    (:class:`~ofmu_opt.backends.torch_autodiff.ComposedTorchInner`: exact, no host synchronisation)."""
    outer = AllReduceObjective(problem.outer, shard_batches=shard_batches)
    inner = AllReduceObjective(problem.inner, shard_batches=shard_batches)
    space = problem.space if isinstance(problem.space, TorchSpace) else None
    return replace(
        problem, outer=outer, inner=inner, inner_factory=composed_inner_factory(outer, inner, space=space)
    )


def broadcast_params(params: Sequence[Tensor], src: int = 0) -> None:
    """Make every rank's parameters equal to rank ``src``'s (in place), e.g. before the first step."""
    for p in params:
        dist.broadcast(p.data, src=src)

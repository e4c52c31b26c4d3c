"""Gradient helpers of the methods: trainable parameters, the optimiser, flat vector algebra, diagnostics.

Examples:
    >>> import torch
    >>> round(float(flat_cos([torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 1.0])])), 4)
    0.7071
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .contract import MethodConfig, TaskAdapter

__all__ = [
    "flat_cos",
    "flat_dot",
    "flat_norm",
    "make_optimizer",
    "nll_gradient_diagnostics",
    "param_grads",
    "trainable_params",
]


def trainable_params(model: nn.Module) -> list[nn.Parameter]:
    """The parameters with ``requires_grad``."""
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(params: Sequence[nn.Parameter], cfg: MethodConfig) -> torch.optim.Optimizer:
    """AdamW or SGD with momentum 0.9, from ``cfg``."""
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def flat_dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """Inner product of two lists of tensors viewed as one vector."""
    return torch.stack([(x * y).sum() for x, y in zip(a, b, strict=True)]).sum()


def flat_norm(a: Sequence[Tensor]) -> Tensor:
    """Euclidean norm of a list of tensors viewed as one vector."""
    return torch.sqrt(torch.stack([(x * x).sum() for x in a]).sum())


def flat_cos(a: Sequence[Tensor], b: Sequence[Tensor], eps: float = 1e-12) -> Tensor:
    """Cosine of the angle between two lists of tensors viewed as vectors."""
    return flat_dot(a, b) / (flat_norm(a) * flat_norm(b) + eps)


def param_grads(loss: Tensor, params: Sequence[nn.Parameter]) -> list[Tensor]:
    """∇ loss for each parameter (zeros for parameters the loss does not reach)."""
    gs = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params, strict=True)]


def nll_gradient_diagnostics(
    model: nn.Module, adapter: TaskAdapter, forget_batch: Any, retain_batch: Any
) -> tuple[float, float, float]:
    """cos(∇L_f, ∇L_r), ‖∇L_f‖, ‖∇L_r‖ for the mean NLL of the two batches, at the current weights.

    The forward passes run in eval mode (batch-norm statistics are not updated) and leave no gradients.
    """
    params = trainable_params(model)
    was_training = model.training
    model.eval()
    try:
        gf = param_grads(adapter.per_example_nll(model, forget_batch).mean(), params)
        gr = param_grads(adapter.per_example_nll(model, retain_batch).mean(), params)
    finally:
        model.train(was_training)
    with torch.no_grad():
        nf, nr = flat_norm(gf), flat_norm(gr)
        cos = flat_dot(gf, gr) / (nf * nr + 1e-12)
    return float(cos), float(nf), float(nr)

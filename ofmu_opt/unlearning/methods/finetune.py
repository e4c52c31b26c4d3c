"""Fine-tuning family: Retrain, FT, ℓ1-sparse, RL (random labels) and SalUn.

- Retrain: train a fresh model (``ctx.fresh_model()``) on the retain set only: the gold standard.
- FT: fine-tune the original model on the retain set (NLL).
- ℓ1-sparse: FT + λ·‖θ‖₁ (constant λ, or decayed linearly to 0 with ``l1_schedule="linear"``).
- RL: γ·NLL(forget with random wrong labels) + α·NLL(retain).
- SalUn: RL where only the parameter entries with the top ``keep`` fraction of |∇θ NLL(forget)| move
  (the saliency mask is computed once, from ``mask_batches`` forget batches at the original weights).

RL and SalUn are :class:`~ofmu_opt.unlearning.methods.base.ForgetRetainMethod` subclasses (forget
term: the NLL of the relabelled forget batch; retain loss NLL by default, KL with ``retain_loss="kl"``).

Examples:
    >>> SalUnConfig().keep
    0.5
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..._config import check_choice, check_range
from ...errors import ConfigError
from .base import (
    ForgetRetainConfig,
    ForgetRetainMethod,
    LossMethod,
    LossTerms,
    MethodConfig,
    MethodResult,
    StepLoop,
    TermsFn,
    UnlearnContext,
    run_loss_method,
    search_space,
    trainable_params,
)

__all__ = [
    "FTConfig",
    "FTMethod",
    "L1SparseConfig",
    "L1SparseMethod",
    "RLConfig",
    "RLMethod",
    "RetrainConfig",
    "RetrainMethod",
    "SalUnConfig",
    "SalUnMethod",
    "saliency_mask",
]


@dataclass(frozen=True)
class RetrainConfig(MethodConfig):
    """Training from scratch on the retain set."""

    lr: float = 1e-3
    steps: int = 600


def _retain_nll(ctx: UnlearnContext, model: torch.nn.Module) -> TermsFn:
    def terms(fb: Any, rb: Any, step: int) -> LossTerms:
        return LossTerms(retain=ctx.adapter.per_example_nll(model, rb).mean())

    return terms


class RetrainMethod(LossMethod[RetrainConfig], name="retrain", config=RetrainConfig):
    """Retrain: a fresh model trained on the retain set (needs ``ctx.fresh_model``)."""

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Run ``config.steps`` updates on a fresh model (see the module docstring for the loss)."""
        if ctx.fresh_model is None:
            raise ConfigError("retrain: expected a context with fresh_model(), received None")
        model = ctx.fresh_model()
        return run_loss_method(ctx, self.config, self.name, _retain_nll(ctx, model), model=model)


@dataclass(frozen=True)
class FTConfig(MethodConfig):
    """Fine-tuning on the retain set."""

    lr: float = 1e-3


class FTMethod(LossMethod[FTConfig], name="ft", config=FTConfig):
    """FT: descend NLL(retain) from the original weights."""

    def terms(self, ctx: UnlearnContext) -> TermsFn:
        """NLL(retain batch)."""
        return _retain_nll(ctx, ctx.model)


@dataclass(frozen=True)
class L1SparseConfig(MethodConfig):
    """FT with an ℓ1 penalty of weight ``l1`` (constant or linearly decayed)."""

    lr: float = 1e-3
    l1: float = 1e-4
    l1_schedule: str = "constant"
    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = search_space(lr=(1e-4, 1e-2), l1=(1e-5, 1e-3))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("l1", self.l1, low=0.0)
        check_choice("l1_schedule", self.l1_schedule, ("constant", "linear"))


class L1SparseMethod(LossMethod[L1SparseConfig], name="l1_sparse", config=L1SparseConfig):
    """ℓ1-sparse unlearning: FT + λ‖θ‖₁."""

    def terms(self, ctx: UnlearnContext) -> TermsFn:
        """NLL(retain batch) + λ_step·‖θ‖₁."""
        c = self.config
        params = trainable_params(ctx.model)

        def terms(fb: Any, rb: Any, step: int) -> LossTerms:
            lam = c.l1 if c.l1_schedule == "constant" else c.l1 * (1.0 - step / c.steps)
            pen = lam * torch.stack([p.abs().sum() for p in params]).sum()
            return LossTerms(retain=ctx.adapter.per_example_nll(ctx.model, rb).mean(), penalty=pen)

        return terms


@dataclass(frozen=True)
class RLConfig(ForgetRetainConfig):
    """Random labels on the forget set (weight ``gamma``) + the retain loss on the retain set (``alpha``)."""

    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = search_space(
        lr=(1e-4, 1e-2), gamma=(0.1, 2.0), alpha=(0.5, 5.0)
    )


def _random_label_nll(ctx: UnlearnContext, salt: int) -> Callable[[Any], Tensor]:
    """NLL of a forget batch with random wrong labels, drawn from a private generator of the run."""
    gen = ctx.generator(salt=salt)
    return lambda fb: ctx.adapter.per_example_nll(ctx.model, ctx.adapter.relabel(fb, "random", gen)).mean()


class RLMethod(ForgetRetainMethod[RLConfig], name="rl", config=RLConfig):
    """RL: fine-tune on forget samples with random wrong labels plus retain samples."""

    def forget_term(self, ctx: UnlearnContext) -> Callable[[Any], Tensor]:
        """NLL of the forget batch with random wrong labels."""
        return _random_label_nll(ctx, salt=29)


@dataclass(frozen=True)
class SalUnConfig(RLConfig):
    """SalUn: RL restricted to the ``keep`` fraction of most forget-salient weights."""

    keep: float = 0.5
    mask_batches: int = 4
    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = search_space(
        lr=(1e-4, 1e-2), gamma=(0.1, 2.0), keep=("uniform", 0.1, 0.9)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("keep", self.keep, low=0.0, high=1.0, low_open=True)
        if self.mask_batches < 1:
            raise ConfigError(f"mask_batches: expected >= 1, received {self.mask_batches}")


def saliency_mask(ctx: UnlearnContext, keep: float, batches: int) -> list[Tensor]:
    """0/1 masks keeping the top ``keep`` fraction of |∇θ NLL(forget)| entries (one global threshold).

    Args:
        ctx: the context (forget batches are drawn from ``ctx.forget``).
        keep: fraction of entries kept, in (0, 1].
        batches: number of forget batches whose gradients are accumulated.

    Returns:
        One float tensor per trainable parameter, 1 where the entry may move.
    """
    params = trainable_params(ctx.model)
    acc = [torch.zeros_like(p) for p in params]
    for _ in range(batches):
        loss = ctx.adapter.per_example_nll(ctx.model, next(ctx.forget)).mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for a, g in zip(acc, grads, strict=True):
            if g is not None:
                a.add_(g.detach())
    flat = torch.cat([a.abs().flatten() for a in acc])
    k = max(1, int(round(keep * flat.numel())))
    if k >= flat.numel():
        return [torch.ones_like(a) for a in acc]
    threshold = torch.topk(flat, k, sorted=True).values[-1]
    return [(a.abs() >= threshold).to(a.dtype) for a in acc]


class SalUnMethod(ForgetRetainMethod[SalUnConfig], name="salun", config=SalUnConfig):
    """SalUn: saliency-masked random labelling (mask time is part of the RTE)."""

    def forget_term(self, ctx: UnlearnContext) -> Callable[[Any], Tensor]:
        """NLL of the forget batch with random wrong labels (as RL, with its own generator)."""
        return _random_label_nll(ctx, salt=31)

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Compute the saliency mask, then run RL's updates on the masked entries only."""
        c = self.config
        loop = StepLoop(ctx, self.name)
        mask = saliency_mask(ctx, c.keep, c.mask_batches)
        res = run_loss_method(ctx, c, self.name, self.terms(ctx), grad_mask=mask, loop=loop)
        res.info["mask_fraction"] = float(sum(float(m.sum()) for m in mask) / sum(m.numel() for m in mask))
        return res

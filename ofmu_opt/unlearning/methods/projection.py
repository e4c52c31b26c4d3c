"""Gradient-surgery methods: BLUR-style projection and NGDiff normalisation.

- BLUR: g = ∇R + (γ − <∇R, ∇F>/‖∇F‖²)·∇F with R = NLL(retain) and F = −NLL(forget) (the forget
  objective to descend): the retain gradient with its component along ∇F removed, plus γ·∇F.
- NGDiff: g = g_R/‖g_R‖ − g_F/‖g_F‖ with g_R = ∇NLL(retain) and g_F = ∇NLL(forget).

The direction ``g`` is handed to the optimizer as the gradient.

Examples:
    >>> import torch
    >>> g = _blur_direction([torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 1.0])], gamma=0.5)
    >>> [round(v, 3) for v in g[0].tolist()]
    [0.5, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ..._config import check_range
from .base import (
    BaseMethod,
    MethodConfig,
    MethodResult,
    UnlearnContext,
    flat_dot,
    flat_norm,
    run_gradient_method,
    search_space,
)

__all__ = ["BlurConfig", "BlurMethod", "NGDiffConfig", "NGDiffMethod"]

_EPS = 1e-12


def _blur_direction(g_f: list[Tensor], g_r: list[Tensor], gamma: float) -> list[Tensor]:
    coef = gamma - flat_dot(g_r, g_f) / (flat_norm(g_f) ** 2 + _EPS)
    return [r + coef * f for f, r in zip(g_f, g_r, strict=True)]


@dataclass(frozen=True)
class BlurConfig(MethodConfig):
    """BLUR-style projection with forget step weight ``gamma``."""

    gamma: float = 0.1
    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = search_space(lr=(1e-4, 1e-2), gamma=(0.01, 2.0))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("gamma", self.gamma, low=0.0)


class BlurMethod(BaseMethod[BlurConfig], name="blur", config=BlurConfig):
    """BLUR-style gradient projection."""

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Run ``config.steps`` updates on ``ctx.model`` (see the module docstring for the loss)."""
        gamma = self.config.gamma

        def objectives(fb: Any, rb: Any) -> tuple[Tensor, Tensor]:
            nll_f = ctx.adapter.per_example_nll(ctx.model, fb).mean()
            return -nll_f, ctx.adapter.per_example_nll(ctx.model, rb).mean()

        return run_gradient_method(
            ctx, self.config, self.name, objectives, lambda gf, gr: _blur_direction(gf, gr, gamma)
        )


@dataclass(frozen=True)
class NGDiffConfig(MethodConfig):
    """NGDiff (no weights: both gradients are normalised)."""


def _ngdiff_direction(g_f: list[Tensor], g_r: list[Tensor]) -> list[Tensor]:
    nf, nr = flat_norm(g_f) + _EPS, flat_norm(g_r) + _EPS
    return [r / nr - f / nf for f, r in zip(g_f, g_r, strict=True)]


class NGDiffMethod(BaseMethod[NGDiffConfig], name="ngdiff", config=NGDiffConfig):
    """NGDiff: normalised gradient difference."""

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Run ``config.steps`` updates on ``ctx.model`` (see the module docstring for the loss)."""

        def objectives(fb: Any, rb: Any) -> tuple[Tensor, Tensor]:
            return (
                ctx.adapter.per_example_nll(ctx.model, fb).mean(),
                ctx.adapter.per_example_nll(ctx.model, rb).mean(),
            )

        return run_gradient_method(ctx, self.config, self.name, objectives, _ngdiff_direction)

"""Gradient-ascent family: GA, GradDiff, NPO, SimNPO and IdkDPO (losses as in UNLEARNING.md).

With γ the forget weight, α the retain weight and L_r the retain loss (NLL, or KL to the original
model when ``retain_loss="kl"``):

- GA: −NLL(forget).
- GradDiff: γ·(−NLL(forget)) + α·L_r.
- NPO: γ·(2/β)·E_f[−log σ(−β(log π_θ(y|x) − log π_ref(y|x)))] + α·L_r, sequence log-probs, β = 0.1.
- SimNPO: γ·(2/β)·E_f[−log σ(β(ℓ_θ(y|x)/|y| − δ))] + α·L_r with ℓ_θ the example's summed NLL
  (= −log π_θ(y|x)), so ℓ_θ/|y| is the length-normalised loss, which the term pushes up; β = 4.5,
  γ = 0.125, δ = 0 (open-unlearning's form).
- IdkDPO: γ·(2/β)·E_f[−log σ(β((log π_θ(y_idk) − log π_ref(y_idk)) − (log π_θ(y) − log π_ref(y))))]
  + α·L_r, β = 0.1; needs the adapter's ``relabel(batch, "idk", ...)``.

Example:
    >>> NPOConfig().beta, SimNPOConfig().gamma
    (0.1, 0.125)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..._config import check_range
from ._common import check_weights, retain_term
from .base import LossTerms, MethodConfig, MethodResult, UnlearnContext, run_loss_method

__all__ = [
    "GAConfig",
    "GAMethod",
    "GradDiffConfig",
    "GradDiffMethod",
    "IdkDPOConfig",
    "IdkDPOMethod",
    "NPOConfig",
    "NPOMethod",
    "SimNPOConfig",
    "SimNPOMethod",
]


@dataclass(frozen=True)
class GAConfig(MethodConfig):
    """Gradient ascent on the forget NLL."""

    lr: float = 1e-4
    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = {"lr": ("log", 1e-5, 1e-3)}


class GAMethod:
    """GA: descend −NLL(forget)."""

    name: ClassVar[str] = "ga"

    def __init__(self, config: GAConfig | None = None) -> None:
        self.config = config or GAConfig()

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Run ``config.steps`` updates on ``ctx.model`` (see the module docstring for the loss)."""

        def terms(fb: Any, rb: Any, step: int) -> LossTerms:
            return LossTerms(forget=-ctx.adapter.per_example_nll(ctx.model, fb).mean())

        return run_loss_method(ctx, self.config, self.name, terms)


@dataclass(frozen=True)
class GradDiffConfig(MethodConfig):
    """GradDiff: γ·(−NLL(forget)) + α·L_r."""

    gamma: float = 1.0
    alpha: float = 1.0
    retain_loss: str = "nll"
    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = {
        "lr": ("log", 1e-4, 1e-2),
        "gamma": ("log", 0.05, 2.0),
        "alpha": ("log", 0.5, 5.0),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_weights(self.gamma, self.alpha, self.retain_loss)


class GradDiffMethod:
    """GradDiff: ascend the forget NLL while descending the retain loss."""

    name: ClassVar[str] = "graddiff"

    def __init__(self, config: GradDiffConfig | None = None) -> None:
        self.config = config or GradDiffConfig()

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Run ``config.steps`` updates on ``ctx.model`` (see the module docstring for the loss)."""
        c = self.config

        def terms(fb: Any, rb: Any, step: int) -> LossTerms:
            f = -ctx.adapter.per_example_nll(ctx.model, fb).mean()
            return LossTerms(forget=c.gamma * f, retain=c.alpha * retain_term(ctx, rb, c.retain_loss))

        return run_loss_method(ctx, c, self.name, terms)


@dataclass(frozen=True)
class NPOConfig(MethodConfig):
    """NPO with inverse temperature ``beta``."""

    beta: float = 0.1
    gamma: float = 1.0
    alpha: float = 1.0
    retain_loss: str = "nll"
    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = {
        "lr": ("log", 1e-4, 1e-2),
        "gamma": ("log", 0.1, 5.0),
        "alpha": ("log", 0.5, 5.0),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("beta", self.beta, low=0.0, low_open=True)
        check_weights(self.gamma, self.alpha, self.retain_loss)


class NPOMethod:
    """Negative preference optimisation against the frozen reference model."""

    name: ClassVar[str] = "npo"

    def __init__(self, config: NPOConfig | None = None) -> None:
        self.config = config or NPOConfig()

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Run ``config.steps`` updates on ``ctx.model`` (see the module docstring for the loss)."""
        c = self.config

        def terms(fb: Any, rb: Any, step: int) -> LossTerms:
            logp = ctx.adapter.per_example_logprob(ctx.model, fb)
            with torch.no_grad():
                logp_ref = ctx.adapter.per_example_logprob(ctx.reference, fb)
            f = (2.0 / c.beta) * (-F.logsigmoid(-c.beta * (logp - logp_ref))).mean()
            return LossTerms(forget=c.gamma * f, retain=c.alpha * retain_term(ctx, rb, c.retain_loss))

        return run_loss_method(ctx, c, self.name, terms)


@dataclass(frozen=True)
class SimNPOConfig(MethodConfig):
    """SimNPO: reference-free, length-normalised NPO with margin ``delta``."""

    beta: float = 4.5
    gamma: float = 0.125
    alpha: float = 1.0
    delta: float = 0.0
    retain_loss: str = "nll"
    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = {
        "lr": ("log", 1e-4, 1e-2),
        "gamma": ("log", 0.05, 2.0),
        "alpha": ("log", 0.5, 5.0),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("beta", self.beta, low=0.0, low_open=True)
        check_range("delta", self.delta)
        check_weights(self.gamma, self.alpha, self.retain_loss)


class SimNPOMethod:
    """SimNPO."""

    name: ClassVar[str] = "simnpo"

    def __init__(self, config: SimNPOConfig | None = None) -> None:
        self.config = config or SimNPOConfig()

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Run ``config.steps`` updates on ``ctx.model`` (see the module docstring for the loss)."""
        c = self.config

        def terms(fb: Any, rb: Any, step: int) -> LossTerms:
            nll_sum = -ctx.adapter.per_example_logprob(ctx.model, fb)
            norm = nll_sum / ctx.adapter.target_length(fb).clamp_min(1)
            f = (2.0 / c.beta) * (-F.logsigmoid(c.beta * (norm - c.delta))).mean()
            return LossTerms(forget=c.gamma * f, retain=c.alpha * retain_term(ctx, rb, c.retain_loss))

        return run_loss_method(ctx, c, self.name, terms)


@dataclass(frozen=True)
class IdkDPOConfig(NPOConfig):
    """DPO with the "I don't know" answer preferred and the true answer rejected (NPO's fields and ranges:
    inverse temperature ``beta``, forget weight ``gamma``, retain weight ``alpha``, ``retain_loss``)."""


class IdkDPOMethod:
    """IdkDPO (language models: the adapter must support ``relabel(..., "idk", ...)``)."""

    name: ClassVar[str] = "idk_dpo"

    def __init__(self, config: IdkDPOConfig | None = None) -> None:
        self.config = config or IdkDPOConfig()

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Run ``config.steps`` updates on ``ctx.model`` (see the module docstring for the loss)."""
        c = self.config
        gen = ctx.generator(salt=17)
        lp = ctx.adapter.per_example_logprob

        def terms(fb: Any, rb: Any, step: int) -> LossTerms:
            idk = ctx.adapter.relabel(fb, "idk", gen)
            with torch.no_grad():
                ref_win, ref_lose = lp(ctx.reference, idk), lp(ctx.reference, fb)
            margin = (lp(ctx.model, idk) - ref_win) - (lp(ctx.model, fb) - ref_lose)
            f = (2.0 / c.beta) * (-F.logsigmoid(c.beta * margin)).mean()
            return LossTerms(forget=c.gamma * f, retain=c.alpha * retain_term(ctx, rb, c.retain_loss))

        return run_loss_method(ctx, c, self.name, terms)

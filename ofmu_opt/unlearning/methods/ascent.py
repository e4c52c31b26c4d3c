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

GA and GradDiff take a forget objective Φ (``objective``, see
:class:`~ofmu_opt.unlearning.methods.contract.ObjectiveConfig`; the functions of
:mod:`~ofmu_opt.unlearning.methods.objectives`, shared with OFMU): they descend −Φ; the default
``"ascent"`` (Φ = NLL) is the loss above. NPO has no such option: its forget term is the ``npo``
objective already (GradDiff with ``objective="npo"`` and ``npo_beta=β`` has NPO's loss).

GradDiff, NPO, SimNPO and IdkDPO are :class:`~ofmu_opt.unlearning.methods.base.ForgetRetainMethod`
subclasses: each gives its forget term only; the weights γ, α and the retain loss come from
:class:`~ofmu_opt.unlearning.methods.contract.ForgetRetainConfig`.

Examples:
    >>> NPOConfig().beta, SimNPOConfig().gamma
    (0.1, 0.125)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..._config import check_range
from .base import (
    ForgetRetainConfig,
    ForgetRetainMethod,
    LossMethod,
    LossTerms,
    ObjectiveConfig,
    TermsFn,
    UnlearnContext,
    search_space,
)

__all__ = [
    "GAConfig",
    "GAMethod",
    "GradDiffConfig",
    "GradDiffMethod",
    "IdkDPOConfig",
    "IdkDPOMethod",
    "NPOConfig",
    "NPOMethod",
    "PreferenceMethod",
    "SimNPOConfig",
    "SimNPOMethod",
    "forget_ascent_term",
]


def _peek(stream: Any) -> Any:
    """The next batch of ``stream`` without consuming it (None when the stream cannot rewind)."""
    if not (hasattr(stream, "state_dict") and hasattr(stream, "load_state_dict")):
        return None
    state = stream.state_dict()
    batch = next(stream)
    stream.load_state_dict(state)
    return batch


def forget_ascent_term(ctx: UnlearnContext, cfg: ObjectiveConfig) -> Callable[[Any], Tensor]:
    """``forget(batch) = −Φ(model, batch)`` for ``cfg.objective`` (−mean NLL for ``"ascent"``).

    The objective is built before the run from a peek at the first forget batch (the stream does not
    advance), so its generators exist before a resume restores them; a stream that cannot rewind builds
    it on the first batch instead.
    """
    if cfg.objective == "ascent":
        return lambda fb: -ctx.adapter.per_example_nll(ctx.model, fb).mean()
    from .objectives import make_objective

    sample = _peek(ctx.forget)
    phi = None if sample is None else make_objective(cfg.objective, ctx, sample, cfg.objective_options())

    def forget(fb: Any) -> Tensor:
        nonlocal phi
        if phi is None:
            phi = make_objective(cfg.objective, ctx, fb, cfg.objective_options())
        return -phi(ctx.model, fb)

    return forget


@dataclass(frozen=True)
class GAConfig(ObjectiveConfig):
    """Gradient ascent on the forget NLL (or on another forget objective, ``objective``)."""

    lr: float = 1e-4
    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = search_space(lr=(1e-5, 1e-3))


class GAMethod(LossMethod[GAConfig], name="ga", config=GAConfig):
    """GA: descend −Φ(forget), Φ = NLL by default."""

    def terms(self, ctx: UnlearnContext) -> TermsFn:
        """−Φ(forget batch)."""
        forget = forget_ascent_term(ctx, self.config)

        def terms(fb: Any, rb: Any, step: int) -> LossTerms:
            return LossTerms(forget=forget(fb))

        return terms


@dataclass(frozen=True)
class GradDiffConfig(ForgetRetainConfig, ObjectiveConfig):
    """GradDiff: γ·(−Φ(forget)) + α·L_r, Φ = NLL by default (``objective``)."""


class GradDiffMethod(ForgetRetainMethod[GradDiffConfig], name="graddiff", config=GradDiffConfig):
    """GradDiff: ascend the forget objective while descending the retain loss."""

    def forget_term(self, ctx: UnlearnContext) -> Callable[[Any], Tensor]:
        """−Φ(forget batch)."""
        return forget_ascent_term(ctx, self.config)


@dataclass(frozen=True)
class NPOConfig(ForgetRetainConfig):
    """NPO with inverse temperature ``beta`` (> 0)."""

    beta: float = 0.1
    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = search_space(
        lr=(1e-4, 1e-2), gamma=(0.1, 5.0), alpha=(0.5, 5.0)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("beta", self.beta, low=0.0, low_open=True)


def _npo_loss(beta: float, margin: Tensor) -> Tensor:
    """(2/β)·mean(−log σ(β·margin)), the preference loss shared by NPO, SimNPO and IdkDPO."""
    return (2.0 / beta) * (-F.logsigmoid(beta * margin)).mean()


P = TypeVar("P", bound=NPOConfig)


class PreferenceMethod(ForgetRetainMethod[P]):
    """A forget term (2/β)·mean(−log σ(β·margin)); subclasses give the per-example margin."""

    def margin(self, ctx: UnlearnContext) -> Callable[[Any], Tensor]:
        """``margin(forget batch) -> [B]`` (called once, at the start of the run)."""
        raise NotImplementedError(f"{type(self).__name__}.margin")

    def forget_term(self, ctx: UnlearnContext) -> Callable[[Any], Tensor]:
        """(2/β)·mean(−log σ(β·margin(batch)))."""
        beta, margin = self.config.beta, self.margin(ctx)
        return lambda fb: _npo_loss(beta, margin(fb))


def _ref_logprob(ctx: UnlearnContext, batch: Any) -> Tensor:
    with torch.no_grad():
        return ctx.adapter.per_example_logprob(ctx.reference, batch)


class NPOMethod(PreferenceMethod[NPOConfig], name="npo", config=NPOConfig):
    """Negative preference optimisation against the frozen reference model."""

    def margin(self, ctx: UnlearnContext) -> Callable[[Any], Tensor]:
        """log π_ref(y|x) − log π_θ(y|x)."""

        def margin(fb: Any) -> Tensor:
            logp = ctx.adapter.per_example_logprob(ctx.model, fb)
            return _ref_logprob(ctx, fb) - logp

        return margin


@dataclass(frozen=True)
class SimNPOConfig(NPOConfig):
    """SimNPO: reference-free, length-normalised NPO with margin ``delta``."""

    beta: float = 4.5
    gamma: float = 0.125
    delta: float = 0.0
    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = ForgetRetainConfig.SEARCH_SPACE

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("delta", self.delta)


class SimNPOMethod(PreferenceMethod[SimNPOConfig], name="simnpo", config=SimNPOConfig):
    """SimNPO."""

    def margin(self, ctx: UnlearnContext) -> Callable[[Any], Tensor]:
        """ℓ_θ(y|x)/|y| − δ (length-normalised NLL minus the margin δ)."""
        delta = self.config.delta

        def margin(fb: Any) -> Tensor:
            nll_sum = -ctx.adapter.per_example_logprob(ctx.model, fb)
            return nll_sum / ctx.adapter.target_length(fb).clamp_min(1) - delta

        return margin


@dataclass(frozen=True)
class IdkDPOConfig(NPOConfig):
    """DPO with the "I don't know" answer preferred and the true answer rejected (NPO's fields and ranges:
    inverse temperature ``beta``, forget weight ``gamma``, retain weight ``alpha``, ``retain_loss``)."""


class IdkDPOMethod(PreferenceMethod[IdkDPOConfig], name="idk_dpo", config=IdkDPOConfig):
    """IdkDPO (language models: the adapter must support ``relabel(..., "idk", ...)``)."""

    def margin(self, ctx: UnlearnContext) -> Callable[[Any], Tensor]:
        """(log π_θ(y_idk) − log π_ref(y_idk)) − (log π_θ(y) − log π_ref(y))."""
        gen = ctx.generator(salt=17)
        lp = ctx.adapter.per_example_logprob

        def margin(fb: Any) -> Tensor:
            idk = ctx.adapter.relabel(fb, "idk", gen)
            ref_win, ref_lose = _ref_logprob(ctx, idk), _ref_logprob(ctx, fb)
            return (lp(ctx.model, idk) - ref_win) - (lp(ctx.model, fb) - ref_lose)

        return margin

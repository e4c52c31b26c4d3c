"""Small pieces shared by the baseline methods (retain term, weight checks)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..._config import check_choice, check_range
from .base import UnlearnContext

RETAIN_LOSSES = ("nll", "kl")


def retain_term(ctx: UnlearnContext, batch: Any, kind: str) -> Tensor:
    """L_r on one retain batch: mean NLL, or mean KL(p_ref || p_model) to the reference model."""
    if kind == "kl":
        return ctx.adapter.kl_to_reference(ctx.model, ctx.reference, batch)
    return ctx.adapter.per_example_nll(ctx.model, batch).mean()


def check_weights(gamma: float, alpha: float, retain_loss: str | None = None) -> None:
    """Range-check the forget weight γ, the retain weight α and the retain-loss kind."""
    check_range("gamma", gamma, low=0.0)
    check_range("alpha", alpha, low=0.0)
    if retain_loss is not None:
        check_choice("retain_loss", retain_loss, RETAIN_LOSSES)

"""RMU: representation misdirection on one hidden layer.

Loss: γ·mean‖h_ℓ(x_f) − c·u‖² + α·mean‖h_ℓ(x_r) − h_ℓ^ref(x_r)‖², with ``u`` a fixed random unit vector
(drawn once from the run's seed), ``c`` the steering coefficient and ``h_ℓ`` the adapter's hidden states
at ``layer``; the means run over the examples (and positions), the squared norm over the feature axis.

Examples:
    >>> RMUConfig().steering
    6.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..._config import check_range
from .base import LossMethod, LossTerms, TermsFn, UnlearnContext, WeightedConfig, search_space

__all__ = ["RMUConfig", "RMUMethod"]


@dataclass(frozen=True)
class RMUConfig(WeightedConfig):
    """RMU hyper-parameters: ``layer`` (negative = from the end), ``steering`` c, weights γ and α."""

    layer: int = -1
    steering: float = 6.5
    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = search_space(
        lr=(1e-4, 1e-2), alpha=(0.5, 20.0), steering=(1.0, 20.0)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("steering", self.steering, low=0.0)


def _sq_norm_mean(diff: Tensor) -> Tensor:
    return diff.pow(2).sum(-1).mean()


class RMUMethod(LossMethod[RMUConfig], name="rmu", config=RMUConfig):
    """RMU: push forget activations towards c·u, keep retain activations at the reference's."""

    def terms(self, ctx: UnlearnContext) -> TermsFn:
        """γ·‖h(x_f) − c·u‖² + α·‖h(x_r) − h_ref(x_r)‖² (means over examples)."""
        c = self.config
        gen = ctx.generator(salt=41)
        state: dict[str, Tensor] = {}

        def terms(fb: Any, rb: Any, step: int) -> LossTerms:
            hf = ctx.adapter.hidden_states(ctx.model, fb, c.layer)
            if "u" not in state:
                u = torch.rand(hf.shape[-1], generator=gen, dtype=torch.float32)
                state["u"] = (u / u.norm()).to(device=hf.device, dtype=hf.dtype)
            hr = ctx.adapter.hidden_states(ctx.model, rb, c.layer)
            with torch.no_grad():
                hr_ref = ctx.adapter.hidden_states(ctx.reference, rb, c.layer)
            f = _sq_norm_mean(hf - c.steering * state["u"])
            return LossTerms(forget=c.gamma * f, retain=c.alpha * _sq_norm_mean(hr - hr_ref))

        return terms

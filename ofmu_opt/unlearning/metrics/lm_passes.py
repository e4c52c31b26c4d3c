"""Teacher-forced passes of a causal LM over QA pairs: per-token log-probabilities, argmax matches, min-k++ z.

These are the per-sample log-likelihood inputs of the TOFU metrics (:mod:`~ofmu_opt.unlearning.metrics.tofu`
for the definitions, :mod:`~ofmu_opt.unlearning.metrics.tofu_eval` for the registry that shares them).

Examples:
    >>> import numpy as np
    >>> drop_last(np.array([1.0, 2.0, 3.0])).tolist(), drop_last(np.array([5.0])).tolist()
    ([1.0, 2.0], [5.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import DataError

if TYPE_CHECKING:
    from ..models.hf import PromptTemplate

__all__ = ["TokenStats", "drop_last", "losses", "stats_for", "token_stats"]


@dataclass(frozen=True)
class TokenStats:
    """Teacher-forced statistics of one sample's answer tokens (EOS included, in order).

    Attributes:
        logp: log-probability of each answer token.
        match: whether the argmax prediction equals the token.
        z: min-k++ standardised log-probability of each token.
        ids: the answer token ids.
    """

    logp: np.ndarray
    match: np.ndarray
    z: np.ndarray
    ids: tuple[int, ...]

    @property
    def loss(self) -> float:
        """Mean token NLL over the answer tokens."""
        return float(-self.logp.mean())


def token_stats(model: Any, batch: Any) -> list[TokenStats]:
    """One teacher-forced pass over ``batch`` (an :class:`~ofmu_opt.unlearning.models.hf.LMBatch`).

    ``model(input_ids=..., attention_mask=...)`` must return an object with ``.logits`` ``[B, L, V]``;
    the logits at position ``t`` score the token at ``t + 1``.
    """
    import torch

    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        logits = logits[:, :-1]
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # log-softmax in float32 for low-precision models
        labels = batch.labels[:, 1:]
        mask = labels != -100
        logp_all = torch.log_softmax(logits, dim=-1)
        safe = labels.clamp(min=0)
        tok = logp_all.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
        p_all = logp_all.exp()
        mu = (p_all * logp_all).sum(-1)
        var = (p_all * logp_all.square()).sum(-1) - mu.square()
        z = (tok - mu) / var.clamp(min=1e-6).sqrt()
        match = logits.argmax(-1) == labels
    out = []
    for i in range(labels.shape[0]):
        m = mask[i]
        if not bool(m.any()):
            raise DataError(f"batch row {i}: expected at least one answer token (labels != -100), received none")
        out.append(
            TokenStats(
                tok[i][m].cpu().numpy().astype(np.float64),
                match[i][m].cpu().numpy(),
                z[i][m].cpu().numpy().astype(np.float64),
                tuple(int(t) for t in labels[i][m].tolist()),
            )
        )
    return out


def stats_for(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    template: PromptTemplate,
    batch_size: int,
    max_length: int,
) -> list[TokenStats]:
    """Token statistics of (question, answer) ``pairs`` in the prompt ``template``, batched."""
    from ..._progress import track
    from ..models.hf import make_batches

    device = next(model.parameters()).device
    out: list[TokenStats] = []
    for b in track(make_batches(tokenizer, pairs, template, batch_size, max_length), "model passes", unit="batch"):
        out.extend(token_stats(model, b.to(device)))
    return out


def drop_last(x: np.ndarray) -> np.ndarray:
    """The answer tokens except the last one (all of them when there is only one)."""
    return x[:-1] if len(x) > 1 else x


def losses(stats: Sequence[TokenStats]) -> list[float]:
    """The mean token NLL of each sample."""
    return [s.loss for s in stats]

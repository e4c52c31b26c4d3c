"""Task adapter for causal language models (the contract of :mod:`ofmu_opt.unlearning.methods.base`).

Batches are :class:`~ofmu_opt.unlearning.models.hf.LMBatch` (right-padded ``input_ids``,
``attention_mask``, ``labels`` with ``-100`` on prompt and padding). The logits at position ``t`` score
the token at ``t + 1``, so every quantity below is taken over the shifted labels that are not ``-100``:
the answer tokens, EOS included.

* ``per_example_nll``: mean token NLL over the answer tokens, ``[B]``;
* ``per_example_logprob``: SUM of the answer-token log-probabilities, ``[B]``;
* ``target_length``: number of answer tokens, ``[B]``;
* ``relabel(batch, "idk", g)``: the same questions with each item's "I don't know" answer
  (``"random"`` has no meaning for a language model and raises ConfigError);
* ``hidden_states(model, batch, layer)``: ``output_hidden_states[layer]`` (``[B, L, d]``; 0 = the
  embeddings, negative counts from the end) with padding positions set to zero (no gradient flows
  through them, so RMU's means see them as constants);
* ``kl_to_reference(model, ref, batch)``: mean over answer positions of ``KL(p_ref || p_model)``
  over the vocabulary.

Only the positions from the batch's first answer label on are projected onto the vocabulary (transformers'
``logits_to_keep``): prompt positions carry no label, and the ``[B, L, V]`` logits are the largest
activation of a small model with a large vocabulary (SmolLM2: V = 49,152).

Example:
    >>> from ofmu_opt.unlearning.models.hf import PromptTemplate
    >>> CausalLMAdapter(tokenizer=None, template=PromptTemplate()).task
    'lm'
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from .models.hf import LMBatch, PromptTemplate, collate_qa, encode_qa

__all__ = ["CausalLMAdapter"]


_KEEP: dict[type, bool] = {}


def _accepts_logits_to_keep(model: nn.Module) -> bool:
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model
    kind = type(base)
    if kind not in _KEEP:
        try:
            _KEEP[kind] = "logits_to_keep" in inspect.signature(base.forward).parameters
        except (TypeError, ValueError):
            _KEEP[kind] = False
    return _KEEP[kind]


def _shifted(model: nn.Module, batch: LMBatch, **kw: Any) -> tuple[Any, Tensor, Tensor, Tensor]:
    """Logits and labels of the positions that carry an answer label in some row of the batch.

    Positions before the first answer token of the batch (the shortest prompt) carry no label, so
    their vocabulary projection is skipped when the model takes ``logits_to_keep`` (transformers
    causal LMs): the ``[B, L, V]`` logits, the largest activation of a small model with a big
    vocabulary, shrink to the answer span. The values are those of the full projection.
    """
    labels = batch.labels[:, 1:]
    width = labels.shape[1]
    cols = (labels != -100).any(0).nonzero()
    start = int(cols[0]) if cols.numel() else 0
    if start > 0 and _accepts_logits_to_keep(model):
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    logits_to_keep=width + 1 - start, **kw)
        logits = out.logits[:, :-1]
        labels = labels[:, start:]
    else:
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kw)
        logits = out.logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    mask = labels != -100
    return out, logits, labels, mask


def _token_logp(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * mask


@dataclass
class CausalLMAdapter:
    """Adapter between the generic unlearning methods and a causal LM.

    Attributes:
        tokenizer: the model's tokenizer (needed by ``relabel`` only).
        template: the prompt format used to build the batches.
        max_length: token cap used when relabelling.
    """

    tokenizer: Any
    template: PromptTemplate
    max_length: int = 128
    task: str = "lm"

    def per_example_nll(self, model: nn.Module, batch: LMBatch) -> Tensor:
        """Mean token NLL over each example's answer tokens (EOS included), ``[B]``."""
        _, logits, labels, mask = _shifted(model, batch)
        return -_token_logp(logits, labels, mask).sum(-1) / mask.sum(-1).clamp(min=1)

    def per_example_logprob(self, model: nn.Module, batch: LMBatch) -> Tensor:
        """Sum of the answer-token log-probabilities, ``[B]``."""
        _, logits, labels, mask = _shifted(model, batch)
        return _token_logp(logits, labels, mask).sum(-1)

    def target_length(self, batch: LMBatch) -> Tensor:
        """Number of answer tokens of each example, ``[B]``."""
        return (batch.labels[:, 1:] != -100).sum(-1)

    def relabel(self, batch: LMBatch, kind: str, generator: torch.Generator) -> LMBatch:
        """Replace each answer by its item's "I don't know" answer (``kind="idk"``).

        Raises:
            ConfigError: ``kind`` is not "idk" (random labels do not apply to language models).
            DataError: the batch carries no source items.
        """
        if kind != "idk":
            raise ConfigError(f"relabel kind: expected 'idk' for language models, received {kind!r}")
        if self.tokenizer is None:
            raise ConfigError("CausalLMAdapter.tokenizer: relabelling needs a tokenizer, received None")
        if len(batch.items) != batch.input_ids.shape[0]:
            raise DataError(
                f"batch.items: expected {batch.input_ids.shape[0]} source items to relabel, received {len(batch.items)}"
            )
        enc = [
            encode_qa(self.tokenizer, it.question, it.idk_answer, self.template, self.max_length) for it in batch.items
        ]
        pad = self.tokenizer.pad_token_id
        pad = int(pad if pad is not None else self.tokenizer.eos_token_id)
        out = collate_qa(enc, pad, batch.index.tolist(), batch.items)
        return out.to(batch.input_ids.device)

    def hidden_states(self, model: nn.Module, batch: LMBatch, layer: int) -> Tensor:
        """Hidden states after ``layer`` (``output_hidden_states``), padding zeroed, ``[B, L, d]``."""
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
        hs = out.hidden_states
        if not -len(hs) <= layer < len(hs):
            raise ConfigError(f"layer: expected an index in [{-len(hs)}, {len(hs)}), received {layer}")
        h: Tensor = hs[layer]
        return h * batch.attention_mask.unsqueeze(-1).to(h.dtype)

    def kl_to_reference(self, model: nn.Module, ref_model: nn.Module, batch: LMBatch) -> Tensor:
        """Mean over answer positions of KL(p_ref || p_model) (a scalar)."""
        _, logits, _, mask = _shifted(model, batch)
        with torch.no_grad():
            _, ref_logits, _, _ = _shifted(ref_model, batch)
        logp = torch.log_softmax(logits, dim=-1)
        ref_logp = torch.log_softmax(ref_logits, dim=-1)
        kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
        return (kl * mask).sum() / mask.sum().clamp(min=1)

"""Zero-shot multiple-choice accuracy by log-likelihood (WMDP / MMLU style).

For each question the model scores every choice by the log-likelihood of the continuation
``answer_prefix + choice`` given the prompt (the question in the prompt template): ``raw`` is the sum of
the continuation's token log-probabilities, ``norm`` that sum divided by the continuation's length in
UTF-8 bytes (the length normalisation of lm-evaluation-harness's ``acc_norm``). The prediction is the
argmax (the first one on ties); accuracy is the fraction of questions whose prediction is the answer.
With 4 choices, 25 % is chance. All (question, choice) pairs are scored in batches.

Examples:
    >>> pick([[-1.0, -0.5, -2.0]])
    [1]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import DataError
from .registry import Entry, Evaluation, MetricRegistry, entry

if TYPE_CHECKING:
    from ..data.corpus import MCQItem
    from ..models.hf import PromptTemplate

__all__ = [
    "MCQContext",
    "continuation_logprobs",
    "evaluate_mcq",
    "mcq_accuracy",
    "mcq_registry",
    "pick",
    "score_mcq",
]


def pick(scores: Sequence[Sequence[float]]) -> list[int]:
    """Index of the best-scoring choice of each question (first on ties)."""
    return [int(np.argmax(np.asarray(s, dtype=np.float64))) for s in scores]


def continuation_logprobs(
    model: Any,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int = 32,
) -> list[float]:
    """Sum of ``log p(continuation | prompt)`` for each (prompt ids, continuation ids) pair, batched.

    ``model(input_ids=..., attention_mask=...)`` must return ``.logits`` ``[B, L, V]`` (position t scores
    token t + 1); rows are right-padded with ``pad_id``.

    Raises:
        DataError: mismatched lengths, an empty prompt or an empty continuation.
    """
    import torch

    from ..._progress import track

    if len(prompts) != len(continuations):
        raise DataError(f"continuations: expected {len(prompts)} (one per prompt), received {len(continuations)}")
    for i, (p, c) in enumerate(zip(prompts, continuations, strict=True)):
        if not p or not c:
            raise DataError(f"pair {i}: expected a non-empty prompt and continuation, received {len(p)}/{len(c)}")
    device = next(model.parameters()).device
    out: list[float] = []
    with torch.no_grad():
        for s in track(range(0, len(prompts), batch_size), "MCQ scoring", unit="batch"):
            rows = [
                list(p) + list(c)
                for p, c in zip(prompts[s : s + batch_size], continuations[s : s + batch_size], strict=True)
            ]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            labels = torch.full((len(rows), width), -100, dtype=torch.long)
            for i, (r, p) in enumerate(zip(rows, prompts[s : s + batch_size], strict=True)):
                ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
                labels[i, len(p) : len(r)] = torch.tensor(r[len(p) :])
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            if logits.dtype in (torch.float16, torch.bfloat16):
                logits = logits.float()
            tgt = labels[:, 1:]
            keep = tgt != -100
            lp = torch.log_softmax(logits, dim=-1).gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            out.extend(float(v) for v in (lp * keep).sum(-1).tolist())
    return out


def score_mcq(
    model: Any,
    tokenizer: Any,
    items: Sequence[MCQItem],
    template: PromptTemplate,
    batch_size: int = 32,
) -> list[dict[str, Any]]:
    """Per-question scores: ``raw`` and ``norm`` lists (one per choice), predictions, the answer."""
    from ..models.hf import encode_prompt

    if not items:
        raise DataError("items: expected at least one multiple-choice question, received none")
    prompts: list[list[int]] = []
    conts: list[list[int]] = []
    nbytes: list[int] = []
    for it in items:
        p = encode_prompt(tokenizer, it.question, template)
        for c in it.choices:
            text = template.answer_prefix + c
            prompts.append(p)
            conts.append([int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]])
            nbytes.append(max(1, len(text.encode("utf-8"))))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    lps = continuation_logprobs(model, prompts, conts, int(pad), batch_size)
    model.train(was_training)
    out = []
    pos = 0
    for it in items:
        n = len(it.choices)
        raw = lps[pos : pos + n]
        norm = [v / b for v, b in zip(raw, nbytes[pos : pos + n], strict=True)]
        pos += n
        pr, pn = pick([raw])[0], pick([norm])[0]
        out.append(
            {
                "raw": raw,
                "norm": norm,
                "pred_raw": pr,
                "pred_norm": pn,
                "answer": it.answer,
                "correct_raw": float(pr == it.answer),
                "correct_norm": float(pn == it.answer),
            }
        )
    return out


def mcq_accuracy(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``{"acc": raw accuracy, "acc_norm": length-normalised accuracy}`` of :func:`score_mcq` rows."""
    if not rows:
        raise DataError("rows: expected at least one scored question, received none")
    return {
        "acc": float(np.mean([r["correct_raw"] for r in rows])),
        "acc_norm": float(np.mean([r["correct_norm"] for r in rows])),
    }


# ----------------------------------------------------------------------------- the MCQ family on the registry


@dataclass
class MCQContext:
    """What the MCQ metrics evaluate: a causal LM and named question sets.

    Attributes:
        model: the causal LM.
        tokenizer: its tokenizer.
        sets: named question sets (e.g. ``{"wmdp": [...], "mmlu": [...]}``), in output order.
        template: the prompt template (the question is the prompt).
        batch_size: scoring batch size.
    """

    model: Any
    tokenizer: Any
    sets: Mapping[str, Sequence[MCQItem]]
    template: PromptTemplate
    batch_size: int = 32

    def has(self, part: str) -> bool:
        """Whether question set ``part`` is present and non-empty."""
        return bool(self.sets.get(part))


def mcq_registry(set_names: Sequence[str]) -> MetricRegistry:
    """The MCQ family for these question sets: input ``<set>.scores`` (:func:`score_mcq` rows) and metrics
    ``<set>_acc`` (per-question rows as values) and ``<set>_acc_norm`` (``{"correct": 0/1}`` values).

    Examples:
        >>> mcq_registry(["wmdp", "mmlu"]).names()
        ['wmdp_acc', 'wmdp_acc_norm', 'mmlu_acc', 'mmlu_acc_norm']
    """
    reg = MetricRegistry("mcq")
    for name in set_names:
        inp = f"{name}.scores"

        def provide(ev: Evaluation, name: str = name) -> list[dict[str, Any]]:
            c: MCQContext = ev.context
            return score_mcq(c.model, c.tokenizer, c.sets[name], c.template, c.batch_size)

        def acc(ev: Evaluation, inp: str = inp) -> Entry:
            rows = ev.input(inp)
            return entry(mcq_accuracy(rows)["acc"], {str(i): r for i, r in enumerate(rows)})

        def acc_norm(ev: Evaluation, inp: str = inp) -> Entry:
            rows = ev.input(inp)
            return entry(
                mcq_accuracy(rows)["acc_norm"], {str(i): {"correct": r["correct_norm"]} for i, r in enumerate(rows)}
            )

        reg.add_input(inp, provide)
        reg.metric(f"{name}_acc", needs=(inp,), requires=(name,), doc=f"accuracy on {name} (summed log-likelihood)")(
            acc
        )
        reg.metric(
            f"{name}_acc_norm", needs=(inp,), requires=(name,), doc=f"accuracy on {name} (per-byte log-likelihood)"
        )(acc_norm)
    return reg


def evaluate_mcq(ctx: MCQContext, metrics: Sequence[str] | None = None) -> dict[str, Entry]:
    """``{<set>_acc, <set>_acc_norm: entry}`` for each question set (or the listed ``metrics``).

    Raises:
        DataError: a requested set is empty.
        ConfigError: an unknown metric name.
    """
    reg = mcq_registry(list(ctx.sets))
    return reg.evaluate(reg.names() if metrics is None else metrics, ctx, strict=True)

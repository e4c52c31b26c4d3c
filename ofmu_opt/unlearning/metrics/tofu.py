"""TOFU metrics with open-unlearning's definitions, and the TOFU_EVAL / TOFU_SUMMARY writers.

Definitions (natural logs; the per-sample loss is the mean token cross-entropy over the answer tokens,
EOS included; ``P = exp(-loss)``):

* probability: mean over samples of ``P(answer)``; on the utility sets ``P_c / (P_c + sum_j P_j + 1e-10)``
  with ``P_j`` the wrong options (a plain sum).
* ROUGE: greedy generation cut at EOS and stripped; ``RougeScorer(["rouge1", "rougeL"],
  use_stemmer=True).score(gold, generation)``; ``rougeL`` recall is aggregated (F1 is also stored).
* truth ratio: ``TR = exp(-mean_j loss(perturbed_j)) / (P(correct) + 1e-10)``; aggregators
  ``closer_to_1`` = mean(min(TR, 1/(TR + 1e-10))) (forget), ``true_better`` = mean(max(0, 1 - TR))
  (retain and utility), ``prob_mean`` = mean(P_c / (P_c + P_w + 1e-10)). The correct answer is the
  paraphrase on forget/retain and the answer on the utility sets.
* forget_quality: two-sided ``scipy.stats.ks_2samp`` p-value between the per-sample forget truth ratios
  and the retain model's; ``None`` without retain logs.
* model_utility: ``scipy.stats.hmean`` of the 9 retain / real-authors / world-facts aggregates of
  probability, ROUGE and truth ratio (0 when any is 0).
* MIA (higher score = less likely a member; forget labelled 0, holdout 1; ``roc_auc_score``): LOSS;
  zlib = loss / len(zlib.compress(text)) with text the decoded answer tokens; min-k and min-k++ over the
  answer tokens except the last, ``k = 0.4``, ``num_k = max(1, int(n * k))``, score = minus the mean of
  the ``num_k`` lowest token log-probs (min-k++: of ``z = (log p - mu) / sqrt(sigma^2)``, ``mu`` and
  ``sigma^2`` the mean and variance of ``log p(v)`` under the model's own next-token distribution,
  ``sigma^2`` clamped at 1e-6).
* privleak = ((1 - AUC) - (1 - AUC_retain)) / ((1 - AUC_retain) + 1e-10) * 100 on min-k (AUC_retain = 0.5
  without retain logs).
* exact memorization: fraction of the answer tokens except the last whose teacher-forced argmax equals
  the label; extraction strength: ``1 - k/n`` over the same ``n`` tokens with ``k`` the first start
  from which every argmax matches; when even the last token does not match, the search stops at
  ``k = n - 1`` (open-unlearning's loop convention) and the value is ``1/n``.

Example:
    >>> round(truth_ratio_aggregate([1.0, 0.5], "closer_to_1"), 6)
    0.75
    >>> extraction_strength([False, True, True, True])
    0.75
    >>> model_utility([0.5] * 8 + [0.0])
    0.0
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._io import atomic_write_json, read_json
from ...errors import ConfigError, DataError

if TYPE_CHECKING:
    from ..data.tinytofu import QAItem, TofuSplit
    from ..models.hf import PromptTemplate

__all__ = [
    "MIA_K",
    "UTILITY_KEYS",
    "RetainLogs",
    "TokenStats",
    "evaluate_tofu",
    "exact_memorization",
    "extraction_strength",
    "forget_quality",
    "mia_auc",
    "min_k_score",
    "model_utility",
    "privleak",
    "prob_with_options",
    "read_retain_logs",
    "rouge_scores",
    "summary_from_eval",
    "token_stats",
    "truth_ratio_aggregate",
    "truth_ratios",
    "write_tofu_eval",
    "zlib_score",
]

logger = logging.getLogger(__name__)

MIA_K = 0.4
UTILITY_KEYS = (
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised",
    "ra_Q_A_ROUGE",
    "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised",
    "wf_Q_A_ROUGE",
    "wf_Truth_Ratio",
)
"""The nine aggregates whose harmonic mean is model_utility."""


# ----------------------------------------------------------------------------- pure metric functions


def truth_ratios(correct_losses: Sequence[float], wrong_losses: Sequence[Sequence[float]]) -> np.ndarray:
    """Per-sample truth ratios ``exp(-mean_j wrong_loss_j) / (exp(-correct_loss) + 1e-10)``.

    Example:
        >>> float(truth_ratios([0.0], [[math.log(2), math.log(2)]])[0])
        0.49999999995
    """
    c = np.asarray(correct_losses, dtype=np.float64)
    if len(wrong_losses) != len(c):
        raise DataError(f"wrong_losses: expected {len(c)} rows (one per sample), received {len(wrong_losses)}")
    w = np.array([float(np.mean(np.asarray(r, dtype=np.float64))) for r in wrong_losses], dtype=np.float64)
    return np.exp(-w) / (np.exp(-c) + 1e-10)


def truth_ratio_aggregate(
    tr: Sequence[float] | np.ndarray, aggregator: str, p_correct: Sequence[float] | None = None
) -> float:
    """Aggregate truth ratios: "closer_to_1", "true_better" or "prob_mean" (needs ``p_correct``)."""
    x = np.asarray(tr, dtype=np.float64)
    if x.size == 0:
        raise DataError("tr: expected at least one truth ratio, received none")
    if aggregator == "closer_to_1":
        return float(np.mean(np.minimum(x, 1.0 / (x + 1e-10))))
    if aggregator == "true_better":
        return float(np.mean(np.maximum(0.0, 1.0 - x)))
    if aggregator == "prob_mean":
        if p_correct is None:
            raise ConfigError("p_correct: the 'prob_mean' aggregator needs P(correct) per sample, received None")
        pc = np.asarray(p_correct, dtype=np.float64)
        pw = x * (pc + 1e-10)
        return float(np.mean(pc / (pc + pw + 1e-10)))
    raise ConfigError(f"aggregator: expected one of 'closer_to_1', 'true_better', 'prob_mean', received {aggregator!r}")


def prob_with_options(correct_loss: float, wrong_losses: Sequence[float]) -> float:
    """``P_c / (P_c + sum_j P_j + 1e-10)`` with ``P = exp(-loss)``."""
    pc = math.exp(-correct_loss)
    return pc / (pc + sum(math.exp(-w) for w in wrong_losses) + 1e-10)


def min_k_score(token_scores: Sequence[float] | np.ndarray, k: float = MIA_K) -> float:
    """Minus the mean of the ``max(1, int(n * k))`` lowest scores (the caller drops the last token)."""
    x = np.sort(np.asarray(token_scores, dtype=np.float64))
    if x.size == 0:
        raise DataError("token_scores: expected at least one token, received none")
    num_k = max(1, int(x.size * k))
    return float(-np.mean(x[:num_k]))


def zlib_score(loss: float, text: str) -> float:
    """``loss / len(zlib.compress(text.encode("utf-8")))``."""
    return float(loss) / len(zlib.compress(text.encode("utf-8")))


def exact_memorization(matches: Sequence[bool] | np.ndarray) -> float:
    """Fraction of tokens whose teacher-forced argmax equals the label."""
    m = np.asarray(matches, dtype=bool)
    if m.size == 0:
        raise DataError("matches: expected at least one token, received none")
    return float(m.mean())


def extraction_strength(matches: Sequence[bool] | np.ndarray) -> float:
    """``1 - k/n``, k the first start from which every argmax matches; stops at ``k = n - 1`` (gives 1/n)."""
    m = np.asarray(matches, dtype=bool)
    n = m.size
    if n == 0:
        raise DataError("matches: expected at least one token, received none")
    k = 0
    for k in range(n):
        if bool(m[k:].all()):
            break
    return 1.0 - k / n


def forget_quality(forget_tr: Sequence[float], retain_tr: Sequence[float] | None) -> float | None:
    """KS-test p-value between per-sample forget truth ratios and the retain model's; None without them."""
    if retain_tr is None:
        return None
    from scipy.stats import ks_2samp

    a = np.asarray(forget_tr, dtype=np.float64)
    b = np.asarray(retain_tr, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise DataError(f"forget_quality: expected non-empty samples, received sizes {a.size} and {b.size}")
    return float(ks_2samp(a, b).pvalue)


def model_utility(values: Sequence[float]) -> float:
    """Harmonic mean of the 9 utility aggregates (``scipy.stats.hmean``); 0 when any is 0."""
    from scipy.stats import hmean

    x = np.asarray(values, dtype=np.float64)
    if x.size != len(UTILITY_KEYS):
        raise DataError(f"model_utility: expected {len(UTILITY_KEYS)} values, received {x.size}")
    if np.any(x < 0) or not np.all(np.isfinite(x)):
        raise DataError(f"model_utility: expected finite non-negative values, received {x.tolist()}")
    if np.any(x == 0):
        return 0.0
    return float(hmean(x))


def mia_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """``roc_auc_score`` with forget labelled 0 and holdout 1 (scores: higher = less likely a member)."""
    from sklearn.metrics import roc_auc_score

    if not forget_scores or not holdout_scores:
        raise DataError(
            f"mia_auc: expected non-empty forget and holdout scores, received {len(forget_scores)} and "
            f"{len(holdout_scores)}"
        )
    y = [0] * len(forget_scores) + [1] * len(holdout_scores)
    return float(roc_auc_score(y, list(forget_scores) + list(holdout_scores)))


def privleak(auc: float, auc_retain: float | None = None) -> float:
    """``((1 - AUC) - (1 - AUC_r)) / ((1 - AUC_r) + 1e-10) * 100``; ``AUC_r = 0.5`` when unknown."""
    r = 0.5 if auc_retain is None else float(auc_retain)
    return ((1.0 - auc) - (1.0 - r)) / ((1.0 - r) + 1e-10) * 100.0


def rouge_scores(gold: str, generation: str) -> dict[str, float]:
    """rouge1 recall, rougeL recall and rougeL F1 of ``generation`` against ``gold`` (stemming on)."""
    s = _scorer().score(gold, generation)
    return {
        "rouge1_recall": float(s["rouge1"].recall),
        "rougeL_recall": float(s["rougeL"].recall),
        "rougeL_f1": float(s["rougeL"].fmeasure),
    }


_SCORER: list[Any] = []


def _scorer() -> Any:
    if not _SCORER:
        from rouge_score import rouge_scorer

        _SCORER.append(rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True))
    return _SCORER[0]


# ----------------------------------------------------------------------------- model passes


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


def _stats_for(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    template: PromptTemplate,
    batch_size: int,
    max_length: int,
) -> list[TokenStats]:
    from ..models.hf import make_batches

    device = next(model.parameters()).device
    out: list[TokenStats] = []
    for b in make_batches(tokenizer, pairs, template, batch_size, max_length):
        out.extend(token_stats(model, b.to(device)))
    return out


def _drop_last(x: np.ndarray) -> np.ndarray:
    """The answer tokens except the last one (all of them when there is only one)."""
    return x[:-1] if len(x) > 1 else x


def _losses(stats: Sequence[TokenStats]) -> list[float]:
    return [s.loss for s in stats]


# ----------------------------------------------------------------------------- retain logs


@dataclass(frozen=True)
class RetainLogs:
    """What forget_quality and privleak need from a retain model's evaluation.

    Attributes:
        forget_tr: the retain model's per-sample forget truth ratios.
        mia_min_k: the retain model's min-k AUC (None when absent).
        source: where they came from.
    """

    forget_tr: tuple[float, ...]
    mia_min_k: float | None = None
    source: str = ""


_TR_KEYS = ("forget_truth_ratio", "forget_Truth_Ratio", "forget_TR")


def read_retain_logs(path: str | os.PathLike[str]) -> RetainLogs:
    """Read a retain model's ``TOFU_EVAL.json`` (open-unlearning's or ours) for ``--retain-logs``.

    Uses ``forget_truth_ratio.value_by_index[*].score`` (ordered by index) and ``mia_min_k.agg_value``.

    Raises:
        DataError: unreadable file, no forget truth-ratio entry, or malformed per-sample values.
    """
    p = Path(path)
    data = read_json(p, "retain logs")
    if not isinstance(data, dict):
        raise DataError(f"retain logs {str(p)!r}: expected a JSON object of metrics, received {type(data).__name__}")
    key = next((k for k in _TR_KEYS if k in data), None)
    if key is None:
        raise DataError(
            f"retain logs {str(p)!r}: expected one of the keys {', '.join(_TR_KEYS)} (per-sample "
            f"forget truth ratios), received keys {', '.join(sorted(data)[:12])}"
        )
    vbi = data[key].get("value_by_index") if isinstance(data[key], dict) else None
    if not isinstance(vbi, dict) or not vbi:
        raise DataError(f"retain logs {str(p)!r}: {key}.value_by_index: expected a non-empty object")

    def order(k: str) -> tuple[int, str]:
        return (int(k), "") if str(k).lstrip("-").isdigit() else (0, str(k))

    values: list[float] = []
    for k in sorted(vbi, key=order):
        v = vbi[k]
        score = v.get("score") if isinstance(v, dict) else v
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise DataError(
                f"retain logs {str(p)!r}: {key}.value_by_index[{k!r}].score: expected a number, received {score!r}"
            )
        values.append(float(score))
    mk = data.get("mia_min_k")
    auc = mk.get("agg_value") if isinstance(mk, dict) else None
    return RetainLogs(tuple(values), float(auc) if isinstance(auc, int | float) else None, str(p))


# ----------------------------------------------------------------------------- full evaluation


def _entry(agg: float | None, by_index: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"agg_value": agg, "value_by_index": dict(by_index or {})}


def _prob_block(stats: Sequence[TokenStats]) -> dict[str, Any]:
    losses = _losses(stats)
    probs = [math.exp(-x) for x in losses]
    return _entry(
        float(np.mean(probs)),
        {str(i): {"prob": p, "avg_loss": lo} for i, (p, lo) in enumerate(zip(probs, losses, strict=True))},
    )


def _rouge_block(items: Sequence[QAItem], gens: Sequence[str]) -> dict[str, Any]:
    rows = {}
    for i, (it, g) in enumerate(zip(items, gens, strict=True)):
        rows[str(i)] = dict(rouge_scores(it.answer, g), input=it.question, ground_truth=it.answer, generation=g)
    return _entry(float(np.mean([r["rougeL_recall"] for r in rows.values()])), rows)


@dataclass
class _Wrong:
    stats: list[list[TokenStats]] = field(default_factory=list)

    def losses(self) -> list[list[float]]:
        return [[s.loss for s in row] for row in self.stats]


def _wrong_stats(
    model: Any, tokenizer: Any, items: Sequence[QAItem], template: PromptTemplate, bs: int, ml: int
) -> _Wrong:
    flat = [(it.question, w) for it in items for w in it.perturbed_answers]
    stats = _stats_for(model, tokenizer, flat, template, bs, ml)
    out = _Wrong()
    pos = 0
    for it in items:
        out.stats.append(stats[pos : pos + len(it.perturbed_answers)])
        pos += len(it.perturbed_answers)
    return out


def _tr_block(correct: Sequence[float], wrong: Sequence[Sequence[float]], aggregator: str) -> dict[str, Any]:
    tr = truth_ratios(correct, wrong)
    return _entry(truth_ratio_aggregate(tr, aggregator), {str(i): {"score": float(v)} for i, v in enumerate(tr)})


def evaluate_tofu(
    model: Any,
    tokenizer: Any,
    split: TofuSplit,
    template: PromptTemplate,
    *,
    retain_logs: RetainLogs | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    max_new_tokens: int = 48,
) -> dict[str, dict[str, Any]]:
    """Evaluate ``model`` on a TOFU split; returns the ``TOFU_EVAL`` mapping.

    Sets that are empty in ``split`` (e.g. no holdout file) skip their metrics; model_utility needs all
    of retain, real-authors and world-facts.

    Args:
        model: a causal LM (eval mode is set during the evaluation and restored after).
        tokenizer: its tokenizer.
        split: the data (forget, retain_eval, holdout, real_authors, world_facts).
        template: the prompt format used in training.
        retain_logs: the retain model's forget truth ratios (and min-k AUC) for forget_quality/privleak.
        batch_size: evaluation batch size.
        max_length: token cap per example.
        max_new_tokens: generation cap for ROUGE.
    """
    from ..models.hf import greedy_generate

    if not split.forget:
        raise DataError("split.forget: expected at least one forget item, received none")
    was_training = model.training
    model.eval()
    bs, ml = batch_size, max_length
    ev: dict[str, dict[str, Any]] = {}

    def run(pairs: Sequence[tuple[str, str]]) -> list[TokenStats]:
        return _stats_for(model, tokenizer, pairs, template, bs, ml)

    def gen(items: Sequence[QAItem]) -> list[str]:
        return greedy_generate(model, tokenizer, [it.question for it in items], template, max_new_tokens, bs)

    # forget
    f_ans = run([(it.question, it.answer) for it in split.forget])
    f_para = run([(it.question, it.paraphrased_answer) for it in split.forget])
    f_wrong = _wrong_stats(model, tokenizer, split.forget, template, bs, ml)
    ev["forget_Q_A_Prob"] = _prob_block(f_ans)
    ev["forget_Q_A_PARA_Prob"] = _prob_block(f_para)
    ev["forget_Q_A_PERT_Prob"] = _entry(
        float(np.mean([np.mean([math.exp(-x) for x in row]) for row in f_wrong.losses()])),
        {str(i): {"prob": [math.exp(-x) for x in row], "avg_loss": row} for i, row in enumerate(f_wrong.losses())},
    )
    ev["forget_truth_ratio"] = _tr_block(_losses(f_para), f_wrong.losses(), "closer_to_1")
    f_tr = [v["score"] for v in ev["forget_truth_ratio"]["value_by_index"].values()]
    ev["forget_Q_A_ROUGE"] = _rouge_block(split.forget, gen(split.forget))
    ev["forget_quality"] = _entry(forget_quality(f_tr, retain_logs.forget_tr if retain_logs else None))
    em = [exact_memorization(_drop_last(s.match)) for s in f_ans]
    es = [extraction_strength(_drop_last(s.match)) for s in f_ans]
    ev["exact_memorization"] = _entry(float(np.mean(em)), {str(i): {"score": v} for i, v in enumerate(em)})
    ev["extraction_strength"] = _entry(float(np.mean(es)), {str(i): {"score": v} for i, v in enumerate(es)})

    # retain
    if split.retain_eval:
        r_ans = run([(it.question, it.answer) for it in split.retain_eval])
        r_para = run([(it.question, it.paraphrased_answer) for it in split.retain_eval])
        r_wrong = _wrong_stats(model, tokenizer, split.retain_eval, template, bs, ml)
        ev["retain_Q_A_Prob"] = _prob_block(r_ans)
        ev["retain_Q_A_PARA_Prob"] = _prob_block(r_para)
        ev["retain_Truth_Ratio"] = _tr_block(_losses(r_para), r_wrong.losses(), "true_better")
        ev["retain_Q_A_ROUGE"] = _rouge_block(split.retain_eval, gen(split.retain_eval))

    # utility sets: correct = the answer, wrong = the options
    for short, items in (("ra", split.real_authors), ("wf", split.world_facts)):
        if not items:
            continue
        u_ans = run([(it.question, it.answer) for it in items])
        u_wrong = _wrong_stats(model, tokenizer, items, template, bs, ml)
        ev[f"{short}_Q_A_Prob"] = _prob_block(u_ans)
        norm = [prob_with_options(c.loss, w) for c, w in zip(u_ans, u_wrong.losses(), strict=True)]
        ev[f"{short}_Q_A_Prob_normalised"] = _entry(
            float(np.mean(norm)), {str(i): {"prob": v} for i, v in enumerate(norm)}
        )
        ev[f"{short}_Truth_Ratio"] = _tr_block(_losses(u_ans), u_wrong.losses(), "true_better")
        ev[f"{short}_Q_A_ROUGE"] = _rouge_block(items, gen(items))

    if all(k in ev for k in UTILITY_KEYS):
        ev["model_utility"] = _entry(model_utility([float(ev[k]["agg_value"]) for k in UTILITY_KEYS]))

    # membership inference: forget (0) vs holdout (1)
    if split.holdout:
        h_ans = run([(it.question, it.answer) for it in split.holdout])
        scores: dict[str, tuple[list[float], list[float]]] = {}
        for name, fn in (
            ("mia_loss", lambda s: s.loss),
            (
                "mia_zlib",
                lambda s: zlib_score(s.loss, str(tokenizer.decode(list(s.ids), skip_special_tokens=True))),
            ),
            ("mia_min_k", lambda s: min_k_score(_drop_last(s.logp))),
            ("mia_min_k_plus_plus", lambda s: min_k_score(_drop_last(s.z))),
        ):
            fs = [float(fn(s)) for s in f_ans]
            hs = [float(fn(s)) for s in h_ans]
            scores[name] = (fs, hs)
            rows = {f"forget_{i}": {"score": v, "label": 0} for i, v in enumerate(fs)}
            rows.update({f"holdout_{i}": {"score": v, "label": 1} for i, v in enumerate(hs)})
            ev[name] = _entry(mia_auc(fs, hs), rows)
        ev["privleak"] = _entry(
            privleak(float(ev["mia_min_k"]["agg_value"]), retain_logs.mia_min_k if retain_logs else None)
        )
    model.train(was_training)
    return ev


def summary_from_eval(ev: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """``{metric: agg_value}`` (the TOFU_SUMMARY content)."""
    return {k: (None if v.get("agg_value") is None else float(v["agg_value"])) for k, v in ev.items()}


def write_tofu_eval(
    out_dir: str | os.PathLike[str], ev: Mapping[str, Mapping[str, Any]], prefix: str = "TOFU"
) -> tuple[Path, Path]:
    """Write ``<prefix>_EVAL.json`` and ``<prefix>_SUMMARY.json`` atomically into ``out_dir``.

    Raises:
        DataError: an entry lacks ``agg_value`` or ``value_by_index``.
    """
    from ..._io import safe_child

    for k, v in ev.items():
        if not isinstance(v, Mapping) or "agg_value" not in v or "value_by_index" not in v:
            raise DataError(f"ev[{k!r}]: expected {{'agg_value', 'value_by_index'}}, received {v!r:.80}")
    d = Path(out_dir)
    p1 = atomic_write_json(safe_child(d, f"{prefix}_EVAL.json"), dict(ev))
    p2 = atomic_write_json(safe_child(d, f"{prefix}_SUMMARY.json"), summary_from_eval(ev))
    return p1, p2

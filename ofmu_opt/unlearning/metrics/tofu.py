"""TOFU metrics with open-unlearning's definitions, and the TOFU_EVAL / TOFU_SUMMARY writers.

The functions here are the pure definitions; :mod:`~ofmu_opt.unlearning.metrics.tofu_eval` registers one
metric per TOFU_EVAL key on the metric registry (:mod:`~ofmu_opt.unlearning.metrics.registry`), with the
model passes they share (:mod:`~ofmu_opt.unlearning.metrics.lm_passes`); :func:`evaluate_tofu` runs it.

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

Examples:
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._io import atomic_write_json, read_json
from ...errors import ConfigError, DataError
from .lm_passes import TokenStats, token_stats

if TYPE_CHECKING:
    from ..data.tinytofu import TofuSplit
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

    Examples:
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
    metrics: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate ``model`` on a TOFU split; returns the ``TOFU_EVAL`` mapping.

    A thin wrapper of :func:`ofmu_opt.unlearning.metrics.tofu_eval.evaluate` (the metric registry): all
    metrics by default, or the listed ``metrics``. Sets that are empty in ``split`` (e.g. no holdout
    file) skip their metrics; model_utility needs all of retain, real-authors and world-facts.

    Args:
        model: a causal LM (eval mode is set during the evaluation and restored after).
        tokenizer: its tokenizer.
        split: the data (forget, retain_eval, holdout, real_authors, world_facts).
        template: the prompt format used in training.
        retain_logs: the retain model's forget truth ratios (and min-k AUC) for forget_quality/privleak.
        batch_size: evaluation batch size.
        max_length: token cap per example.
        max_new_tokens: generation cap for ROUGE.
        metrics: metric names (default: every TOFU metric, in TOFU_EVAL order).
    """
    from ..models.hf import model_max_positions
    from .tofu_eval import TOFU_METRICS, TofuContext, evaluate

    limit = model_max_positions(model)
    if limit is not None and max_length > limit:
        logger.warning("max_length %d capped at the model's %d positions", max_length, limit)
        max_length = limit
    ctx = TofuContext(model, tokenizer, split, template, retain_logs, batch_size, max_length, max_new_tokens)
    return evaluate(ctx, TOFU_METRICS if metrics is None else metrics)


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

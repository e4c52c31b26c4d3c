"""The TOFU metric family on the metric registry: shared inputs, one registered metric per TOFU_EVAL key.

Inputs (each computed at most once per evaluation):

=========================  ======================================================================
``<set>.answer``           token statistics of (question, answer) (``forget``, ``retain``, ``ra``,
                           ``wf``, ``holdout``): per-sample log-likelihoods, argmax matches, z
``<set>.paraphrase``       the same for the paraphrased answer (``forget``, ``retain``)
``<set>.perturbed``        the same for each perturbed answer / wrong option (``forget``, ``retain``,
                           ``ra``, ``wf``)
``<set>.generations``      greedy generations cut at EOS (``forget``, ``retain``, ``ra``, ``wf``)
``retain_logs``            the reference (retain) model's logs, or None
=========================  ======================================================================

``retain`` is ``split.retain_eval``, ``ra`` the real-authors set, ``wf`` world facts. The metrics, their
definitions and the key order of :data:`TOFU_METRICS` are those of :mod:`~ofmu_opt.unlearning.metrics.tofu`
(open-unlearning's); a metric whose set is empty in the split is skipped.

Examples:
    >>> TOFU.get("forget_truth_ratio").needs
    ('forget.paraphrase', 'forget.perturbed')
    >>> TOFU.get("model_utility").uses[:2]
    ('retain_Q_A_Prob', 'retain_Q_A_ROUGE')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import DataError
from .lm_passes import TokenStats, drop_last, losses, stats_for
from .registry import Entry, Evaluation, MetricRegistry, entry, scores_entry
from .tofu import (
    UTILITY_KEYS,
    RetainLogs,
    exact_memorization,
    extraction_strength,
    forget_quality,
    mia_auc,
    min_k_score,
    model_utility,
    privleak,
    prob_with_options,
    rouge_scores,
    truth_ratio_aggregate,
    truth_ratios,
    zlib_score,
)

if TYPE_CHECKING:
    from ..data.tinytofu import QAItem, TofuSplit
    from ..models.hf import PromptTemplate

__all__ = ["TOFU", "TOFU_METRICS", "TofuContext", "evaluate"]

SETS = ("forget", "retain", "ra", "wf", "holdout")
_SPLIT_FIELD = {
    "forget": "forget",
    "retain": "retain_eval",
    "ra": "real_authors",
    "wf": "world_facts",
    "holdout": "holdout",
}


@dataclass
class TofuContext:
    """What the TOFU metrics evaluate: the model, its tokenizer, the split, the prompt, the options.

    Attributes:
        model: a causal LM (put in eval mode by :func:`evaluate`).
        tokenizer: its tokenizer.
        split: the data (forget, retain_eval, holdout, real_authors, world_facts).
        template: the prompt format used in training.
        retain_logs: the retain model's forget truth ratios (and min-k AUC), for forget_quality/privleak.
        batch_size: evaluation batch size.
        max_length: token cap per example.
        max_new_tokens: generation cap for ROUGE.
    """

    model: Any
    tokenizer: Any
    split: TofuSplit
    template: PromptTemplate
    retain_logs: RetainLogs | None = None
    batch_size: int = 32
    max_length: int = 128
    max_new_tokens: int = 48

    def items(self, part: str) -> Sequence[QAItem]:
        """The QA items of set ``part`` (one of ``forget``, ``retain``, ``ra``, ``wf``, ``holdout``)."""
        return tuple(getattr(self.split, _SPLIT_FIELD[part]))

    def has(self, part: str) -> bool:
        """Whether set ``part`` is non-empty."""
        return bool(self.items(part))

    def stats(self, pairs: Sequence[tuple[str, str]]) -> list[TokenStats]:
        """Token statistics of (question, answer) pairs."""
        return stats_for(self.model, self.tokenizer, pairs, self.template, self.batch_size, self.max_length)


TOFU = MetricRegistry("tofu")
"""The TOFU family: inputs and metrics (see the module docstring)."""


_SET_NAMES = {"forget": "forget", "retain": "retain", "ra": "real-authors", "wf": "world-facts"}
_DOCS = {
    "Q_A_Prob": "mean P(answer) on the {set} set",
    "Q_A_PARA_Prob": "mean P(paraphrased answer) on the {set} set",
    "Q_A_PERT_Prob": "mean P(perturbed answer) on the {set} set",
    "Q_A_Prob_normalised": "mean P(answer) / (P(answer) + sum of P(options)) on the {set} set",
    "truth_ratio": "truth ratio on the {set} set, closer_to_1 aggregate",
    "Truth_Ratio": "truth ratio on the {set} set, true_better aggregate",
    "Q_A_ROUGE": "ROUGE-L recall of greedy generations on the {set} set",
    "forget_quality": "KS-test p-value of forget truth ratios against the retain model's (None without its logs)",
    "exact_memorization": "fraction of forget answer tokens whose argmax is the label",
    "extraction_strength": "1 - k/n, k the first token from which every argmax matches (forget set)",
    "model_utility": "harmonic mean of the 9 retain, real-authors and world-facts aggregates",
    "mia_loss": "AUC of the LOSS attack, forget vs holdout",
    "mia_zlib": "AUC of the zlib attack, forget vs holdout",
    "mia_min_k": "AUC of the min-k (k = 0.4) attack, forget vs holdout",
    "mia_min_k_plus_plus": "AUC of the min-k++ attack, forget vs holdout",
    "privleak": "relative min-k AUC gap to the retain model (AUC_retain = 0.5 without its logs), in %",
}


def _doc(key: str) -> str:
    """The one-line description of TOFU_EVAL key ``key``."""
    if key in _DOCS:
        return _DOCS[key]
    part, _, rest = key.partition("_")
    return _DOCS[rest].format(set=_SET_NAMES[part])


def _ctx(ev: Evaluation) -> TofuContext:
    ctx: TofuContext = ev.context
    return ctx


def _answer_input(part: str, field: str) -> Any:
    def provide(ev: Evaluation) -> list[TokenStats]:
        c = _ctx(ev)
        return c.stats([(it.question, getattr(it, field)) for it in c.items(part)])

    return provide


def _perturbed_input(part: str) -> Any:
    def provide(ev: Evaluation) -> list[list[TokenStats]]:
        c = _ctx(ev)
        items = c.items(part)
        flat = c.stats([(it.question, w) for it in items for w in it.perturbed_answers])
        out: list[list[TokenStats]] = []
        pos = 0
        for it in items:
            out.append(flat[pos : pos + len(it.perturbed_answers)])
            pos += len(it.perturbed_answers)
        return out

    return provide


def _generations_input(part: str) -> Any:
    def provide(ev: Evaluation) -> list[str]:
        from ..models.hf import greedy_generate

        c = _ctx(ev)
        questions = [it.question for it in c.items(part)]
        return greedy_generate(c.model, c.tokenizer, questions, c.template, c.max_new_tokens, c.batch_size)

    return provide


for _part in SETS:
    TOFU.add_input(f"{_part}.answer", _answer_input(_part, "answer"))
for _part in ("forget", "retain"):
    TOFU.add_input(f"{_part}.paraphrase", _answer_input(_part, "paraphrased_answer"))
for _part in ("forget", "retain", "ra", "wf"):
    TOFU.add_input(f"{_part}.perturbed", _perturbed_input(_part))
    TOFU.add_input(f"{_part}.generations", _generations_input(_part))
TOFU.add_input("retain_logs", lambda ev: _ctx(ev).retain_logs)


def _wrong_losses(rows: Sequence[Sequence[TokenStats]]) -> list[list[float]]:
    return [[s.loss for s in row] for row in rows]


def _prob_block(stats: Sequence[TokenStats]) -> Entry:
    ls = losses(stats)
    probs = [math.exp(-x) for x in ls]
    return entry(
        float(np.mean(probs)),
        {str(i): {"prob": p, "avg_loss": lo} for i, (p, lo) in enumerate(zip(probs, ls, strict=True))},
    )


def _tr_block(correct: Sequence[float], wrong: Sequence[Sequence[float]], aggregator: str) -> Entry:
    tr = truth_ratios(correct, wrong)
    return scores_entry(truth_ratio_aggregate(tr, aggregator), [float(v) for v in tr])


def _prob_metric(key: str, part: str, inp: str) -> None:
    name = f"{part}.{inp}"
    TOFU.metric(key, doc=_doc(key), needs=(name,), requires=(part,))(lambda ev: _prob_block(ev.input(name)))


def _truth_ratio_metric(key: str, part: str, correct: str, aggregator: str) -> None:
    c_in, w_in = f"{part}.{correct}", f"{part}.perturbed"

    def compute(ev: Evaluation) -> Entry:
        return _tr_block(losses(ev.input(c_in)), _wrong_losses(ev.input(w_in)), aggregator)

    TOFU.metric(key, doc=_doc(key), needs=(c_in, w_in), requires=(part,))(compute)


def _rouge_metric(key: str, part: str) -> None:
    def compute(ev: Evaluation) -> Entry:
        items, gens = _ctx(ev).items(part), ev.input(f"{part}.generations")
        rows = {}
        for i, (it, g) in enumerate(zip(items, gens, strict=True)):
            rows[str(i)] = dict(rouge_scores(it.answer, g), input=it.question, ground_truth=it.answer, generation=g)
        return entry(float(np.mean([r["rougeL_recall"] for r in rows.values()])), rows)

    TOFU.metric(key, doc=_doc(key), needs=(f"{part}.generations",), requires=(part,))(compute)


def _forget_pert_prob(ev: Evaluation) -> Entry:
    rows = _wrong_losses(ev.input("forget.perturbed"))
    return entry(
        float(np.mean([np.mean([math.exp(-x) for x in row]) for row in rows])),
        {str(i): {"prob": [math.exp(-x) for x in row], "avg_loss": row} for i, row in enumerate(rows)},
    )


def _forget_quality(ev: Evaluation) -> Entry:
    f_tr = [v["score"] for v in ev.result("forget_truth_ratio")["value_by_index"].values()]
    logs: RetainLogs | None = ev.input("retain_logs")
    return entry(forget_quality(f_tr, logs.forget_tr if logs else None))


def _match_metric(key: str, fn: Any) -> None:
    def compute(ev: Evaluation) -> Entry:
        values = [fn(drop_last(s.match)) for s in ev.input("forget.answer")]
        return scores_entry(float(np.mean(values)), values)

    TOFU.metric(key, doc=_doc(key), needs=("forget.answer",), requires=("forget",))(compute)


def _utility_set(short: str) -> None:
    _prob_metric(f"{short}_Q_A_Prob", short, "answer")

    def normalised(ev: Evaluation) -> Entry:
        ans, wrong = ev.input(f"{short}.answer"), _wrong_losses(ev.input(f"{short}.perturbed"))
        norm = [prob_with_options(c.loss, w) for c, w in zip(ans, wrong, strict=True)]
        return entry(float(np.mean(norm)), {str(i): {"prob": v} for i, v in enumerate(norm)})

    TOFU.metric(
        f"{short}_Q_A_Prob_normalised",
        doc=_doc(f"{short}_Q_A_Prob_normalised"),
        needs=(f"{short}.answer", f"{short}.perturbed"),
        requires=(short,),
    )(normalised)
    _truth_ratio_metric(f"{short}_Truth_Ratio", short, "answer", "true_better")
    _rouge_metric(f"{short}_Q_A_ROUGE", short)


def _mia_metric(key: str, score: Any) -> None:
    def compute(ev: Evaluation) -> Entry:
        fs = [float(score(ev, s)) for s in ev.input("forget.answer")]
        hs = [float(score(ev, s)) for s in ev.input("holdout.answer")]
        rows = {f"forget_{i}": {"score": v, "label": 0} for i, v in enumerate(fs)}
        rows.update({f"holdout_{i}": {"score": v, "label": 1} for i, v in enumerate(hs)})
        return entry(mia_auc(fs, hs), rows)

    TOFU.metric(key, doc=_doc(key), needs=("forget.answer", "holdout.answer"), requires=("forget", "holdout"))(compute)


def _zlib(ev: Evaluation, s: TokenStats) -> float:
    return zlib_score(s.loss, str(_ctx(ev).tokenizer.decode(list(s.ids), skip_special_tokens=True)))


def _privleak(ev: Evaluation) -> Entry:
    logs: RetainLogs | None = ev.input("retain_logs")
    return entry(privleak(float(ev.result("mia_min_k")["agg_value"]), logs.mia_min_k if logs else None))


# registration order = the TOFU_EVAL key order
_prob_metric("forget_Q_A_Prob", "forget", "answer")
_prob_metric("forget_Q_A_PARA_Prob", "forget", "paraphrase")
TOFU.metric(
    "forget_Q_A_PERT_Prob", doc=_doc("forget_Q_A_PERT_Prob"), needs=("forget.perturbed",), requires=("forget",)
)(_forget_pert_prob)
_truth_ratio_metric("forget_truth_ratio", "forget", "paraphrase", "closer_to_1")
_rouge_metric("forget_Q_A_ROUGE", "forget")
TOFU.metric(
    "forget_quality",
    doc=_doc("forget_quality"),
    needs=("retain_logs",),
    uses=("forget_truth_ratio",),
    requires=("forget",),
)(_forget_quality)
_match_metric("exact_memorization", exact_memorization)
_match_metric("extraction_strength", extraction_strength)
_prob_metric("retain_Q_A_Prob", "retain", "answer")
_prob_metric("retain_Q_A_PARA_Prob", "retain", "paraphrase")
_truth_ratio_metric("retain_Truth_Ratio", "retain", "paraphrase", "true_better")
_rouge_metric("retain_Q_A_ROUGE", "retain")
_utility_set("ra")
_utility_set("wf")
TOFU.metric("model_utility", doc=_doc("model_utility"), uses=UTILITY_KEYS)(
    lambda ev: entry(model_utility([float(ev.result(k)["agg_value"]) for k in UTILITY_KEYS]))
)
_mia_metric("mia_loss", lambda ev, s: s.loss)
_mia_metric("mia_zlib", _zlib)
_mia_metric("mia_min_k", lambda ev, s: min_k_score(drop_last(s.logp)))
_mia_metric("mia_min_k_plus_plus", lambda ev, s: min_k_score(drop_last(s.z)))
TOFU.metric(
    "privleak", doc=_doc("privleak"), needs=("retain_logs",), uses=("mia_min_k",), requires=("forget", "holdout")
)(_privleak)

TOFU_METRICS: tuple[str, ...] = tuple(TOFU.names())
"""Every TOFU metric, in the TOFU_EVAL key order (the default evaluation)."""


def evaluate(ctx: TofuContext, metrics: Iterable[str] = TOFU_METRICS, *, strict: bool = False) -> dict[str, Entry]:
    """Evaluate ``metrics`` (default: all, in TOFU_EVAL order) on ``ctx``; returns the ``TOFU_EVAL`` mapping.

    Metrics whose sets are empty in the split are skipped (``strict=True``: DataError instead). The model
    is in eval mode during the evaluation; its mode is restored after.

    Raises:
        DataError: an empty forget set.
        ConfigError: an unknown metric name.
    """
    if not ctx.split.forget:
        raise DataError("split.forget: expected at least one forget item, received none")
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        return TOFU.evaluate(metrics, ctx, strict=strict)
    finally:
        ctx.model.train(was_training)

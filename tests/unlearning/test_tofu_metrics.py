"""TOFU metrics on hand-computed fixtures (a bigram model with known token probabilities) and the
TOFU_EVAL / TOFU_SUMMARY schema."""

from __future__ import annotations

import json
import math
import zlib
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ofmu_opt.errors import ConfigError, DataError
from ofmu_opt.unlearning.data.tinytofu import TinyTofuConfig, generate_tinytofu
from ofmu_opt.unlearning.metrics.tofu import (
    UTILITY_KEYS,
    evaluate_tofu,
    exact_memorization,
    extraction_strength,
    forget_quality,
    mia_auc,
    min_k_score,
    model_utility,
    privleak,
    prob_with_options,
    read_retain_logs,
    rouge_scores,
    token_stats,
    truth_ratio_aggregate,
    truth_ratios,
    write_tofu_eval,
    zlib_score,
)
from ofmu_opt.unlearning.models.hf import LMBatch, PromptTemplate, TinyGPT2Config, build_tiny_gpt2, train_tokenizer


class BigramLM(nn.Module):
    """logits[b, t] = table[input_ids[b, t]]: p(next token | current token) is a fixed table row."""

    def __init__(self, probs: list[list[float]]) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.tensor([[math.log(p) for p in row] for row in probs], dtype=torch.float64))
        self.emb = nn.Parameter(torch.eye(len(probs), dtype=torch.float64))

    def forward(self, input_ids: torch.Tensor, attention_mask: Any = None, output_hidden_states: bool = False) -> Any:
        logits = self.table[input_ids]
        hidden = (self.emb[input_ids], logits)
        return SimpleNamespace(logits=logits, hidden_states=hidden if output_hidden_states else None)


# 5 tokens; the example is prompt [0] + answer [1, 2, 3, 4] (4 plays EOS)
PROBS = [
    [0.05, 0.3, 0.5, 0.1, 0.05],  # after 0: p(1) = 0.3, argmax 2 -> mismatch
    [0.1, 0.1, 0.6, 0.1, 0.1],  # after 1: p(2) = 0.6, argmax 2 -> match
    [0.1, 0.1, 0.1, 0.5, 0.2],  # after 2: p(3) = 0.5, argmax 3 -> match
    [0.3, 0.1, 0.1, 0.1, 0.4],  # after 3: p(4) = 0.4, argmax 4 -> match (the last token, dropped by EM/ES)
    [0.2, 0.2, 0.2, 0.2, 0.2],
]
ANSWER_P = [0.3, 0.6, 0.5, 0.4]


def example_batch() -> LMBatch:
    ids = torch.tensor([[0, 1, 2, 3, 4, 0]])  # one padding position at the end
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    labels = torch.tensor([[-100, 1, 2, 3, 4, -100]])
    return LMBatch(ids, mask, labels, torch.tensor([0]))


# ----------------------------------------------------------------------------- pure functions



def test_truth_ratio_uses_geometric_mean_of_wrong_probabilities() -> None:
    # wrong probabilities 1/2 and 1/8: geometric mean 1/4 (the arithmetic mean would be 5/16)
    tr = truth_ratios([math.log(2)], [[math.log(2), math.log(8)]])
    assert tr[0] == pytest.approx(0.25 / (0.5 + 1e-10), rel=1e-12)


def test_truth_ratio_aggregators_by_hand() -> None:
    tr = [0.5, 2.0, 1.0]
    assert truth_ratio_aggregate(tr, "closer_to_1") == pytest.approx((0.5 + 0.5 + 1.0) / 3, rel=1e-8)
    assert truth_ratio_aggregate(tr, "true_better") == pytest.approx((0.5 + 0.0 + 0.0) / 3, rel=1e-12)
    pc = [0.5, 0.1, 0.2]
    pw = [0.25, 0.2, 0.2]  # tr * pc
    want = sum(c / (c + w) for c, w in zip(pc, pw, strict=True)) / 3
    assert truth_ratio_aggregate(tr, "prob_mean", pc) == pytest.approx(want, rel=1e-8)
    with pytest.raises(ConfigError, match="aggregator"):
        truth_ratio_aggregate(tr, "mean")


def test_prob_with_options_is_a_plain_sum() -> None:
    v = prob_with_options(math.log(2), [math.log(4), math.log(4), math.log(8)])
    assert v == pytest.approx(0.5 / (0.5 + 0.25 + 0.25 + 0.125), rel=1e-9)


def test_min_k_truncates_num_k() -> None:
    assert min_k_score([-1.0, -2.0, -3.0, -4.0, -5.0]) == pytest.approx(4.5)  # int(5*0.4) = 2 lowest
    assert min_k_score([-1.0, -2.0]) == pytest.approx(2.0)  # max(1, int(0.8)) = 1


def test_extraction_strength_and_exact_memorization() -> None:
    assert extraction_strength([False, False, True, True]) == pytest.approx(0.5)
    assert extraction_strength([True, True, True, True]) == pytest.approx(1.0)
    assert extraction_strength([True, True, True, False]) == pytest.approx(0.25)  # stops at k = n - 1
    assert exact_memorization([True, False, True, True]) == pytest.approx(0.75)


def test_forget_quality_plumbing() -> None:
    x = [0.1, 0.5, 0.7, 0.9, 1.3]
    assert forget_quality(x, x) == 1.0
    assert forget_quality(x, None) is None
    far = forget_quality([0.01 * i for i in range(30)], [10.0 + i for i in range(30)])
    assert far is not None and far < 1e-10


def test_model_utility_is_harmonic_mean_and_zero_wins() -> None:
    vals = [0.5, 0.25, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert model_utility(vals) == pytest.approx(9 / (2 * 7 + 4 + 1), rel=1e-12)
    assert model_utility(vals[:-1] + [0.0]) == 0.0


def test_mia_auc_orientation_and_privleak() -> None:
    # forget samples have low loss (members), holdout high: AUC = 1
    assert mia_auc([0.1, 0.2], [1.0, 2.0]) == 1.0
    assert mia_auc([1.0, 2.0], [0.1, 0.2]) == 0.0
    assert privleak(0.5) == pytest.approx(0.0, abs=1e-6)
    assert privleak(1.0, 0.5) == pytest.approx(-100.0, rel=1e-8)
    assert privleak(0.25, 0.5) == pytest.approx(50.0, rel=1e-8)


def test_zlib_score_divides_by_compressed_length() -> None:
    n = len(zlib.compress(b"hello world"))
    assert zlib_score(2.0, "hello world") == pytest.approx(2.0 / n)


def test_rouge_recall_of_a_prefix() -> None:
    s = rouge_scores("the cat sat on the mat", "the cat sat")
    assert s["rougeL_recall"] == pytest.approx(0.5)
    assert s["rouge1_recall"] == pytest.approx(0.5)
    assert s["rougeL_f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)


# ----------------------------------------------------------------------------- model with known probabilities


def test_token_stats_on_known_probabilities() -> None:
    (st,) = token_stats(BigramLM(PROBS), example_batch())
    np.testing.assert_allclose(st.logp, np.log(ANSWER_P), rtol=1e-12)
    assert st.loss == pytest.approx(-np.mean(np.log(ANSWER_P)), rel=1e-12)
    assert list(st.match) == [False, True, True, True]
    assert st.ids == (1, 2, 3, 4)
    # EM / ES use the answer tokens except the last: [F, T, T]
    assert exact_memorization(st.match[:-1]) == pytest.approx(2 / 3)
    assert extraction_strength(st.match[:-1]) == pytest.approx(1 - 1 / 3)
    # min-k over [log .3, log .6, log .5]: num_k = max(1, int(3 * .4)) = 1 -> -log .3
    assert min_k_score(st.logp[:-1]) == pytest.approx(-math.log(0.3), rel=1e-12)
    # min-k++ by hand: z_t = (log p(x_t) - E[log p]) / sqrt(Var[log p]) under row prev(t)
    zs = []
    for prev, tok in ((0, 1), (1, 2), (2, 3), (3, 4)):
        p = np.array(PROBS[prev])
        mu = float((p * np.log(p)).sum())
        var = float((p * np.log(p) ** 2).sum()) - mu**2
        zs.append((math.log(p[tok]) - mu) / math.sqrt(var))
    np.testing.assert_allclose(st.z, zs, rtol=1e-9)
    assert min_k_score(st.z[:-1]) == pytest.approx(-min(zs[:3]), rel=1e-9)


def test_min_k_plus_plus_clamps_variance() -> None:
    flat = [[0.2] * 5 for _ in range(5)]  # uniform rows: variance 0 -> clamped at 1e-6
    (st,) = token_stats(BigramLM(flat), example_batch())
    np.testing.assert_allclose(st.z, 0.0, atol=1e-9)  # log p equals its mean exactly


# ----------------------------------------------------------------------------- JSON schema and retain logs


def _tiny_eval(tmp_path: Any) -> tuple[dict[str, Any], Any, Any, Any, Any]:
    data = generate_tinytofu(TinyTofuConfig(n_authors=10, n_retain_eval_authors=2, n_real_authors=4, n_world_facts=4))
    split = data.split("forget10")
    tok = train_tokenizer([q.question + " " + q.answer for q in data.qa + data.holdout_qa], vocab_size=300)
    model = build_tiny_gpt2(tok, TinyGPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=96), seed=0)
    ev = evaluate_tofu(model, tok, split, PromptTemplate(), max_new_tokens=4, max_length=96)
    return ev, model, tok, split, data


def test_tofu_eval_schema_and_summary(tmp_path: Any) -> None:
    ev, model, tok, split, _ = _tiny_eval(tmp_path)
    expected = {
        "forget_Q_A_Prob",
        "forget_Q_A_PARA_Prob",
        "forget_Q_A_PERT_Prob",
        "forget_truth_ratio",
        "forget_Q_A_ROUGE",
        "forget_quality",
        "exact_memorization",
        "extraction_strength",
        "model_utility",
        "mia_loss",
        "mia_zlib",
        "mia_min_k",
        "mia_min_k_plus_plus",
        "privleak",
        *UTILITY_KEYS,
    }
    assert expected <= set(ev)
    assert ev["forget_quality"]["agg_value"] is None  # no retain logs
    assert len(ev["forget_truth_ratio"]["value_by_index"]) == len(split.forget)
    assert set(ev["forget_Q_A_ROUGE"]["value_by_index"]["0"]) >= {"rougeL_recall", "generation", "ground_truth"}
    e, s = write_tofu_eval(tmp_path, ev)
    eval_json = json.loads(e.read_text(encoding="utf-8"))
    summary = json.loads(s.read_text(encoding="utf-8"))
    for k, v in eval_json.items():
        assert set(v) == {"agg_value", "value_by_index"}, k
        assert summary[k] == v["agg_value"]
    # model_utility is the harmonic mean of the 9 stored aggregates
    from scipy.stats import hmean

    assert summary["model_utility"] == pytest.approx(float(hmean([summary[k] for k in UTILITY_KEYS])), rel=1e-12)
    # the probability aggregate is the mean of the per-sample probabilities
    probs = [v["prob"] for v in eval_json["forget_Q_A_Prob"]["value_by_index"].values()]
    assert summary["forget_Q_A_Prob"] == pytest.approx(float(np.mean(probs)), rel=1e-12)
    # its own logs as retain logs: forget quality 1.0, privleak 0
    logs = read_retain_logs(e)
    assert len(logs.forget_tr) == len(split.forget)
    ev2 = evaluate_tofu(model, tok, split, PromptTemplate(), retain_logs=logs, max_new_tokens=4, max_length=96)
    assert ev2["forget_quality"]["agg_value"] == 1.0
    assert ev2["privleak"]["agg_value"] == pytest.approx(0.0, abs=1e-6)


def test_read_retain_logs_open_unlearning_shape_and_errors(tmp_path: Any) -> None:
    p = tmp_path / "TOFU_EVAL.json"
    p.write_text(
        json.dumps(
            {
                "forget_truth_ratio": {"agg_value": 0.6, "value_by_index": {"10": {"score": 0.3}, "2": {"score": 0.9}}},
                "mia_min_k": {"agg_value": 0.55},
            }
        ),
        encoding="utf-8",
    )
    logs = read_retain_logs(p)
    assert logs.forget_tr == (0.9, 0.3)  # ordered by numeric index
    assert logs.mia_min_k == 0.55
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model_utility": {"agg_value": 0.5}}), encoding="utf-8")
    with pytest.raises(DataError, match="forget_truth_ratio"):
        read_retain_logs(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_retain_logs(tmp_path / "missing.json")

"""The metric registry: declared needs, shared inputs computed once, names as evaluations; the TOFU,
vision and MCQ families on it give the same numbers as the direct definitions."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch
from test_mcq_scorer import _CharTok
from test_tofu_metrics import PROBS, BigramLM

from ofmu_opt.errors import ConfigError, DataError, OfmuError
from ofmu_opt.unlearning.data.corpus import MCQItem
from ofmu_opt.unlearning.data.tinytofu import TinyTofuConfig, generate_tinytofu
from ofmu_opt.unlearning.metrics import tofu_eval
from ofmu_opt.unlearning.metrics.mcq import MCQContext, evaluate_mcq, mcq_accuracy, score_mcq
from ofmu_opt.unlearning.metrics.registry import Evaluation, Metric, MetricRegistry, entry
from ofmu_opt.unlearning.metrics.tofu import UTILITY_KEYS, evaluate_tofu, truth_ratio_aggregate, truth_ratios
from ofmu_opt.unlearning.metrics.tofu_eval import TOFU, TOFU_METRICS, TofuContext
from ofmu_opt.unlearning.metrics.vision import (
    VISION,
    VisionEvalContext,
    evaluate_vision,
    mia_efficacy,
    predict,
)
from ofmu_opt.unlearning.models.hf import PromptTemplate, TinyGPT2Config, build_tiny_gpt2, train_tokenizer
from ofmu_opt.unlearning.models.vision import build_model

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- the registry itself


def _counting_registry() -> tuple[MetricRegistry, dict[str, int]]:
    calls = {"values": 0, "other": 0}
    reg = MetricRegistry("demo")

    def values(ev: Evaluation) -> list[float]:
        calls["values"] += 1
        return [1.0, 2.0, 6.0]

    def other(ev: Evaluation) -> float:
        calls["other"] += 1
        return 10.0

    reg.add_input("values", values)
    reg.add_input("other", other)
    reg.add_metric(Metric("mean", lambda ev: entry(float(np.mean(ev.input("values")))), needs=("values",)))
    reg.add_metric(Metric("max", lambda ev: entry(max(ev.input("values"))), needs=("values",)))
    reg.add_metric(Metric("sum_of", lambda ev: entry(ev.result("mean")["agg_value"] * 3), uses=("mean",)))
    reg.add_metric(Metric("needs_part", lambda ev: entry(ev.input("other")), needs=("other",), requires=("part",)))
    return reg, calls


class _Parts:
    def __init__(self, *parts: str) -> None:
        self.parts = set(parts)

    def has(self, part: str) -> bool:
        return part in self.parts


def test_inputs_are_computed_once_and_shared_and_only_when_needed() -> None:
    reg, calls = _counting_registry()
    out = reg.evaluate(["sum_of", "max", "mean"], _Parts())
    assert list(out) == ["sum_of", "max", "mean"]  # the requested order
    assert out["mean"]["agg_value"] == 3.0 and out["max"]["agg_value"] == 6.0 and out["sum_of"]["agg_value"] == 9.0
    assert calls == {"values": 1, "other": 0}


def test_used_metrics_are_computed_but_not_returned_unless_asked() -> None:
    reg, _ = _counting_registry()
    ev = Evaluation(reg, _Parts())
    assert list(ev.run(["sum_of"])) == ["sum_of"]
    assert ev.computed_inputs == ["values"]


def test_unknown_metric_names_fail_before_any_work() -> None:
    reg, calls = _counting_registry()
    with pytest.raises(ConfigError, match="expected one of mean, max, sum_of, needs_part, received 'median'"):
        reg.evaluate(["mean", "median"], _Parts())
    assert calls["values"] == 0


def test_metrics_missing_a_required_part_are_skipped_or_rejected() -> None:
    reg, calls = _counting_registry()
    assert list(reg.evaluate(["mean", "needs_part"], _Parts())) == ["mean"]
    assert calls["other"] == 0
    with pytest.raises(DataError, match="needs_part"):
        reg.evaluate(["needs_part"], _Parts(), strict=True)
    assert reg.evaluate(["needs_part"], _Parts("part"))["needs_part"]["agg_value"] == 10.0


def test_a_metric_may_read_only_what_it_declares() -> None:
    reg = MetricRegistry("demo")
    reg.add_input("a", lambda ev: 1.0)
    reg.add_input("b", lambda ev: 2.0)
    reg.add_metric(Metric("ok", lambda ev: entry(ev.input("a")), needs=("a",)))
    reg.add_metric(Metric("sneaky", lambda ev: entry(ev.input("a") + ev.input("b")), needs=("a",)))
    reg.add_metric(Metric("peeks", lambda ev: entry(ev.result("ok")["agg_value"]), needs=("a",)))
    with pytest.raises(OfmuError, match="'sneaky' reads input 'b' it does not declare"):
        reg.evaluate(["sneaky"], None)
    with pytest.raises(OfmuError, match="'peeks' reads metric 'ok' it does not declare"):
        reg.evaluate(["peeks"], None)


def test_registration_checks_names() -> None:
    reg = MetricRegistry("demo")
    reg.add_input("a", lambda ev: 1.0)
    with pytest.raises(OfmuError, match="twice"):
        reg.add_input("a", lambda ev: 2.0)
    with pytest.raises(OfmuError, match="unregistered input 'z'"):
        reg.add_metric(Metric("m", lambda ev: entry(0.0), needs=("z",)))
    with pytest.raises(OfmuError, match="unregistered metric 'q'"):
        reg.add_metric(Metric("m", lambda ev: entry(0.0), uses=("q",)))


def test_describe_lists_what_each_metric_needs() -> None:
    rows = {r["name"]: r for r in TOFU.describe()}
    assert list(rows) == list(TOFU_METRICS)
    assert rows["forget_Q_A_ROUGE"]["needs"] == "forget.generations"
    assert rows["privleak"] == {
        "name": "privleak",
        "needs": "retain_logs",
        "uses": "mia_min_k",
        "requires": "forget, holdout",
        "doc": "relative min-k AUC gap to the retain model (AUC_retain = 0.5 without its logs), in %",
    }
    assert all(r["doc"] for r in rows.values())
    assert [r["name"] for r in VISION.describe()] == ["UA", "RA", "TA", "MIA"]
    assert VISION.describe()[0]["doc"].startswith("Unlearning accuracy")


def test_every_registered_metric_declares_registered_inputs() -> None:
    for reg in (TOFU, VISION):
        for name in reg.names():
            m = reg.get(name)
            assert set(m.needs) <= set(reg.inputs()) and set(m.uses) <= set(reg.names())


# ----------------------------------------------------------------------------- TOFU


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any, Any]:
    data = generate_tinytofu(TinyTofuConfig(n_authors=10, n_retain_eval_authors=2, n_real_authors=4, n_world_facts=4))
    split = data.split("forget10")
    tok = train_tokenizer([q.question + " " + q.answer for q in data.qa + data.holdout_qa], vocab_size=300)
    model = build_tiny_gpt2(tok, TinyGPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=96), seed=0)
    return model, tok, split


def _ctx(tiny: tuple[Any, Any, Any], **kw: Any) -> TofuContext:
    model, tok, split = tiny
    return TofuContext(model, tok, kw.pop("split", split), PromptTemplate(), max_new_tokens=4, max_length=96, **kw)


def test_tofu_default_evaluation_is_every_metric_in_tofu_eval_order(tiny: Any) -> None:
    ev = tofu_eval.evaluate(_ctx(tiny))
    assert tuple(ev) == TOFU_METRICS
    assert TOFU_METRICS[:3] == ("forget_Q_A_Prob", "forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob")
    assert TOFU_METRICS[-1] == "privleak" and set(UTILITY_KEYS) <= set(TOFU_METRICS)


def test_tofu_subset_matches_the_full_evaluation_and_computes_only_its_inputs(tiny: Any) -> None:
    full = evaluate_tofu(*tiny, PromptTemplate(), max_new_tokens=4, max_length=96)
    ev = Evaluation(TOFU, _ctx(tiny))
    tiny[0].eval()
    sub = ev.run(["forget_truth_ratio", "forget_quality", "exact_memorization"])
    assert sub == {k: full[k] for k in sub}
    assert sorted(ev.computed_inputs) == ["forget.answer", "forget.paraphrase", "forget.perturbed", "retain_logs"]
    # the truth ratio entry is the direct definition on the shared token statistics
    para, pert = ev.input("forget.paraphrase"), ev.input("forget.perturbed")
    tr = truth_ratios([s.loss for s in para], [[s.loss for s in row] for row in pert])
    assert sub["forget_truth_ratio"]["agg_value"] == truth_ratio_aggregate(tr, "closer_to_1")


def test_evaluate_tofu_wrapper_takes_a_metric_list(tiny: Any) -> None:
    ev = evaluate_tofu(*tiny, PromptTemplate(), max_new_tokens=4, max_length=96, metrics=["mia_min_k", "privleak"])
    assert list(ev) == ["mia_min_k", "privleak"]
    assert ev["privleak"]["agg_value"] == pytest.approx((0.5 - ev["mia_min_k"]["agg_value"]) / 0.5 * 100, rel=1e-6)


def test_tofu_metrics_of_absent_sets_are_skipped(tiny: Any) -> None:
    split = dataclasses.replace(tiny[2], holdout=(), world_facts=())
    ev = tofu_eval.evaluate(_ctx(tiny, split=split))
    assert not {"mia_loss", "privleak", "wf_Q_A_Prob", "model_utility"} & set(ev)
    assert {"forget_quality", "ra_Truth_Ratio", "retain_Q_A_ROUGE"} <= set(ev)
    with pytest.raises(DataError, match="model_utility"):
        tofu_eval.evaluate(_ctx(tiny, split=split), ["model_utility"], strict=True)
    with pytest.raises(DataError, match="forget item"):
        tofu_eval.evaluate(_ctx(tiny, split=dataclasses.replace(tiny[2], forget=())))


def test_tofu_evaluation_restores_the_training_mode(tiny: Any) -> None:
    tiny[0].train()
    tofu_eval.evaluate(_ctx(tiny), ["forget_Q_A_Prob"])
    assert tiny[0].training


# ----------------------------------------------------------------------------- vision


def _vision_ctx(model: torch.nn.Module, **kw: Any) -> VisionEvalContext:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 12, generator=gen)
    y = torch.randint(0, 4, (60,), generator=gen)
    keep = np.ones(20, dtype=bool)
    keep[:3] = False
    return VisionEvalContext(
        model, x[:10], y[:10], x[10:40], y[10:40], x[40:], y[40:], keep, np.arange(20), np.arange(100, 110), **kw
    )


def test_vision_metrics_match_their_definitions() -> None:
    model = build_model("mlp", (12,), 4, seed=0, hidden=8)
    ctx = _vision_ctx(model)
    metrics, per = evaluate_vision(ctx)
    pf, prf = predict(model, ctx.x_forget)
    pr, prr = predict(model, ctx.x_retain)
    pe, pre = predict(model, ctx.x_eval)
    yf, yr, ye = ctx.y_forget.numpy(), ctx.y_retain.numpy(), ctx.y_eval.numpy()
    assert metrics["UA"] == 100.0 * (1.0 - np.mean(pf == yf))
    assert metrics["RA"] == 100.0 * np.mean(pr == yr)
    assert metrics["TA"] == 100.0 * np.mean(pe[3:] == ye[3:])
    mia, pred = mia_efficacy(prr[np.arange(30), yr][:20], pre[np.arange(20), ye], prf[np.arange(10), yf])
    assert metrics["MIA"] == mia
    assert set(per) == {"UA", "MIA"} and list(per["UA"]) == [str(i) for i in range(100, 110)]
    assert [v["member_pred"] for v in per["MIA"].values()] == pred.tolist()


def test_vision_subset_svc_gamma_and_errors() -> None:
    model = build_model("mlp", (12,), 4, seed=0, hidden=8)
    metrics, per = evaluate_vision(_vision_ctx(model), ["TA", "RA"])
    assert list(metrics) == ["TA", "RA"] and per == {}
    with pytest.raises(ConfigError, match="svc_gamma"):
        evaluate_vision(_vision_ctx(model, svc_gamma="median"))
    ctx = _vision_ctx(model)
    ctx.eval_keep = np.zeros(20, dtype=bool)
    with pytest.raises(DataError, match="no evaluation samples"):
        evaluate_vision(ctx)


def test_vision_metrics_of_a_diverged_model_are_nan() -> None:
    model = build_model("mlp", (12,), 4, seed=0, hidden=8)
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.head.bias.fill_(float("nan"))
    metrics, per = evaluate_vision(_vision_ctx(bad))
    assert all(math.isnan(v) for v in metrics.values())
    assert all(v["member_pred"] == -1 for v in per["MIA"].values())


def test_mia_svc_gamma_options_differ_only_in_the_kernel_width() -> None:
    rng = np.random.default_rng(0)
    members, non = rng.beta(20, 1, 200), rng.beta(2, 2, 200)
    targets = np.concatenate([rng.beta(20, 1, 50), rng.beta(2, 2, 50)])
    auto, _ = mia_efficacy(members, non, targets)
    scale, _ = mia_efficacy(members, non, targets, svc_gamma="scale")
    from sklearn.svm import SVC

    xs = np.concatenate([members, non])[:, None]
    ys = np.r_[np.ones(200), np.zeros(200)]
    for gamma, got in (("auto", auto), (1.0 / xs.var(), scale)):
        clf = SVC(C=3.0, kernel="rbf", gamma=gamma).fit(xs, ys)
        assert got == 100.0 * np.mean(clf.predict(targets[:, None]) == 0)
    assert 30.0 < auto < 70.0  # half the targets are drawn like members, half like non-members


# ----------------------------------------------------------------------------- MCQ


def test_mcq_family_gives_the_per_set_entries() -> None:
    tmpl = PromptTemplate(user_start="", user_end="", assistant_start="", answer_prefix="", add_bos=True)
    sets = {
        "wmdp": [MCQItem("?", ("a", "b", "cd"), 1), MCQItem("?", ("a", "b", "cd"), 0)],
        "mmlu": [MCQItem("?", ("b", "a"), 0)],
    }
    ctx = MCQContext(BigramLM(PROBS), _CharTok(), sets, tmpl, batch_size=4)
    ev = evaluate_mcq(ctx)
    assert list(ev) == ["wmdp_acc", "wmdp_acc_norm", "mmlu_acc", "mmlu_acc_norm"]
    for name, items in sets.items():
        rows = score_mcq(ctx.model, ctx.tokenizer, items, tmpl, batch_size=4)
        acc = mcq_accuracy(rows)
        assert ev[f"{name}_acc"] == {"agg_value": acc["acc"], "value_by_index": {str(i): r for i, r in enumerate(rows)}}
        assert ev[f"{name}_acc_norm"]["agg_value"] == acc["acc_norm"]
        assert ev[f"{name}_acc_norm"]["value_by_index"] == {
            str(i): {"correct": r["correct_norm"]} for i, r in enumerate(rows)
        }
    assert ev["wmdp_acc"]["agg_value"] == 0.5 and ev["mmlu_acc"]["agg_value"] == 1.0
    assert list(evaluate_mcq(ctx, ["mmlu_acc"])) == ["mmlu_acc"]
    with pytest.raises(DataError, match="mmlu_acc"):
        evaluate_mcq(MCQContext(ctx.model, ctx.tokenizer, {"wmdp": sets["wmdp"], "mmlu": []}, tmpl), ["mmlu_acc"])

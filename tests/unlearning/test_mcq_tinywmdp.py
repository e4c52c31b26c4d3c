"""TinyWMDP: generator, the target model far above chance on the hazardous domain, one unlearning run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ofmu_opt.unlearning.benchmarks.wmdp import WmdpExperimentConfig, evaluate_mcq_sets, model_dir
from ofmu_opt.unlearning.data.corpus import generate_tinywmdp
from ofmu_opt.unlearning.models.hf import load_causal_lm
from ofmu_opt.unlearning.runner import RunConfig, unlearn

SMALL = {
    "n_entities": 10,
    "vocab_size": 600,
    "n_layer": 2,
    "n_embd": 48,
    "train_epochs": 80,
    "train_lr": 5e-3,
    "train_batch_size": 16,
    "unlearn_steps": 3,
}



def test_generator_is_deterministic_and_val_test_entities_are_disjoint() -> None:
    a, b = generate_tinywmdp(10, seed=3), generate_tinywmdp(10, seed=3)
    assert a == b
    assert generate_tinywmdp(10, seed=4) != a
    for test, val in ((a.forget_mcq_test, a.forget_mcq_val), (a.retain_mcq_test, a.retain_mcq_val)):
        assert not {q.question for q in test} & {q.question for q in val}
        assert all(len(q.choices) == 4 and len(set(q.choices)) == 4 for q in test + val)
    # every question's correct choice is the fact written in the corpus
    corpus = {d.text for d in a.forget_corpus}
    assert all(f"{q.question} {q.choices[q.answer]}." in corpus for q in a.forget_mcq_test)


def test_target_far_above_chance_and_retain_model_near_chance(tmp_path: Path) -> None:
    cfg = WmdpExperimentConfig(cache_dir=str(tmp_path), **SMALL)
    data = generate_tinywmdp(cfg.n_entities, cfg.data_seed, cfg.n_choices)
    sets = {"wmdp": data.forget_mcq_test, "mmlu": data.retain_mcq_test}
    m, t = load_causal_lm(model_dir(cfg, data, "target"))
    ev = evaluate_mcq_sets(m, t, sets)
    assert ev["wmdp_acc"]["agg_value"] >= 0.7  # chance is 0.25
    assert ev["mmlu_acc"]["agg_value"] >= 0.7
    m, t = load_causal_lm(model_dir(cfg, data, "retain"))
    ev = evaluate_mcq_sets(m, t, sets)
    assert ev["wmdp_acc"]["agg_value"] <= 0.6  # never saw the hazardous corpus
    assert ev["mmlu_acc"]["agg_value"] >= 0.7


@pytest.mark.slow
def test_cli_unlearn_writes_wmdp_eval(tmp_path: Path) -> None:
    opts = tuple(f"experiment.{k}={v}" for k, v in {**SMALL, "cache_dir": str(tmp_path / "c")}.items())
    cfg = RunConfig(benchmark="tinywmdp", method="graddiff", out=str(tmp_path / "o"), options=opts, quiet=True)
    assert unlearn(cfg).code == 0
    summ = json.loads((tmp_path / "o" / "WMDP_SUMMARY.json").read_text(encoding="utf-8"))
    assert set(summ) == {"wmdp_acc", "wmdp_acc_norm", "mmlu_acc", "mmlu_acc_norm"}
    assert all(0.0 <= v <= 1.0 for v in summ.values())

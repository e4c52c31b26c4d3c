"""TinyTOFU end to end: cached target/retain models, forget quality by construction, runner unlearn/eval/bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ofmu_opt.errors import ConfigError
from ofmu_opt.unlearning.benchmarks.tofu_setup import (
    LMExperimentConfig,
    cached_eval,
    retain_logs_from_eval,
    run_lm_method,
    tiny_data,
    tiny_model_dir,
)
from ofmu_opt.unlearning.runner import RunConfig, bench, evaluate, unlearn

TINY = {
    "n_authors": 20,
    "n_retain_eval_authors": 2,
    "n_utility": 4,
    "vocab_size": 1024,
    "n_layer": 1,
    "n_embd": 32,
    "max_length": 96,
    "train_epochs": 40,
    "train_lr": 5e-3,
    "unlearn_steps": 3,
    "max_new_tokens": 16,
    "split": "forget10",
}



def _cfg(tmp: Path, **kw: Any) -> LMExperimentConfig:
    return LMExperimentConfig(**{**TINY, "cache_dir": str(tmp / "cache"), **kw})


def test_retain_model_forget_quality_is_one_and_target_is_far_lower(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    tiny = tiny_data(cfg)
    target = tiny_model_dir(cfg, tiny, "target")
    retain = tiny_model_dir(cfg, tiny, "retain")
    assert tiny_model_dir(cfg, tiny, "target") == target  # cached: same directory, no retraining
    logs = retain_logs_from_eval(cached_eval(cfg, retain, tiny.split, "r"))
    ev_retain = cached_eval(cfg, retain, tiny.split, "r-self", logs)
    ev_target = cached_eval(cfg, target, tiny.split, "t", logs)
    assert ev_retain["forget_quality"]["agg_value"] == 1.0
    assert ev_target["forget_quality"]["agg_value"] < 0.05
    # the target memorised the forget set, the retain model never saw it
    assert ev_target["forget_Q_A_Prob"]["agg_value"] > 0.5 > ev_retain["forget_Q_A_Prob"]["agg_value"]
    assert ev_target["mia_loss"]["agg_value"] > 0.9


def test_validation_split_shares_no_author_with_reported_sets(tmp_path: Path) -> None:
    tiny = tiny_data(_cfg(tmp_path, split="forget10"))
    val_authors = {q.author for q in tiny.val.forget + tiny.val.retain_eval + tiny.val.holdout}
    rep_authors = {q.author for q in tiny.split.forget + tiny.split.retain_eval + tiny.split.holdout}
    assert val_authors and not val_authors & rep_authors
    assert not {q.author for q in tiny.val.forget} & {q.author for q in tiny.val_retain_train}


def test_config_errors_name_the_option() -> None:
    with pytest.raises(ConfigError, match="split"):
        LMExperimentConfig(split="forget50")
    with pytest.raises(ConfigError, match="n_authors"):
        LMExperimentConfig(n_authors=12)


def _run(tmp: Path, **kw: Any) -> RunConfig:
    opts = tuple(f"experiment.{k}={v}" for k, v in {**TINY, "cache_dir": str(tmp / "cache")}.items() if k != "split")
    base: dict[str, Any] = dict(benchmark="tinytofu", split="forget10", options=opts, quiet=True)
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.slow
def test_cli_unlearn_then_eval_with_retain_logs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert unlearn(_run(tmp_path, method="graddiff", out=str(out))).code == 0
    ev = json.loads((out / "TOFU_EVAL.json").read_text(encoding="utf-8"))
    summ = json.loads((out / "TOFU_SUMMARY.json").read_text(encoding="utf-8"))
    assert summ["forget_quality"] == ev["forget_quality"]["agg_value"] and summ["forget_quality"] is not None
    assert (out / "model" / "config.json").is_file()
    out2 = tmp_path / "ev"
    assert evaluate(_run(tmp_path, model=str(out), retain_logs=str(out / "TOFU_EVAL.json"), out=str(out2))).code == 0
    again = json.loads((out2 / "TOFU_SUMMARY.json").read_text(encoding="utf-8"))
    assert again["forget_quality"] == 1.0  # the model against its own logs
    assert again["model_utility"] == pytest.approx(summ["model_utility"], rel=1e-6)


@pytest.mark.parametrize("method,lora", [("npo", 0), ("ofmu", 0), ("npo", 2), ("ofmu", 2)])
def test_local_model_by_path_unlearned_and_evaluated(tmp_path: Path, method: str, lora: int) -> None:
    """A tiny GPT-2 written with save_pretrained, loaded by path, unlearned (optionally LoRA), evaluated."""
    import torch

    from ofmu_opt.unlearning.methods.registry import make_method
    from ofmu_opt.unlearning.metrics.tofu import evaluate_tofu
    from ofmu_opt.unlearning.models.hf import TinyGPT2Config, build_tiny_gpt2, load_causal_lm, train_tokenizer

    cfg = _cfg(tmp_path, n_embd=16, lora_r=lora, batch_size=4, diagnostics_every=1)
    tiny = tiny_data(cfg)
    tok = train_tokenizer([q.question + " " + q.answer + " " + q.idk_answer for q in tiny.data.qa], vocab_size=600)
    build_tiny_gpt2(tok, TinyGPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=96), 0).save_pretrained(
        str(tmp_path / "m")
    )
    tok.save_pretrained(str(tmp_path / "m"))
    before, _ = load_causal_lm(tmp_path / "m")
    opts = {"steps": 2, "lr": 1e-2} if method == "npo" else {"steps": 1, "lr": 1e-2, "inner_steps": 1}
    res, model, tok2 = run_lm_method(
        make_method(method, opts), tmp_path / "m", tiny.split.forget, tiny.split.retain, cfg, seed=0
    )
    assert res.status == "completed" and res.steps == opts["steps"]
    assert res.history and res.history[0].cos is not None  # gradient-conflict diagnostics recorded
    names = dict(before.named_parameters())
    moved = {
        n.replace("base_model.model.", "").replace(".base_layer", "")
        for n, p in model.named_parameters()
        if "lora_" not in n
        and not torch.equal(p.detach(), names[n.replace("base_model.model.", "").replace(".base_layer", "")].detach())
    }
    if lora:
        assert not moved  # only adapters train under LoRA
        assert any("lora_" in n and p.requires_grad for n, p in model.named_parameters())
    else:
        assert moved
    ev = evaluate_tofu(model, tok2, tiny.split, cfg.prompt, max_new_tokens=4, max_length=96)
    assert 0.0 <= ev["forget_Q_A_Prob"]["agg_value"] <= 1.0


def test_real_tofu_path_files_and_local_model_through_eval_cli(tmp_path: Path) -> None:
    """TinyTOFU written in the public TOFU layout, read back by the file loader, evaluated via `eval`."""
    from ofmu_opt.unlearning.data.tofu_files import load_tofu_split
    from ofmu_opt.unlearning.models.hf import TinyGPT2Config, build_tiny_gpt2, train_tokenizer

    tiny = tiny_data(_cfg(tmp_path))
    tiny.data.write_tofu_files(tmp_path / "tofu", "forget10")
    loaded = load_tofu_split(tmp_path / "tofu", "forget10")
    for a, b in zip(loaded.forget, tiny.split.forget, strict=True):
        assert (a.question, a.answer, a.paraphrased_answer, a.perturbed_answers) == (
            b.question,
            b.answer,
            b.paraphrased_answer,
            b.perturbed_answers,
        )
    assert len(loaded.retain) == len(tiny.split.retain) and len(loaded.holdout) == len(tiny.split.holdout)
    tok = train_tokenizer([q.question + " " + q.answer for q in tiny.data.qa], vocab_size=600)
    build_tiny_gpt2(tok, TinyGPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=96), 0).save_pretrained(
        str(tmp_path / "m")
    )
    tok.save_pretrained(str(tmp_path / "m"))
    base = dict(benchmark="tofu", model=str(tmp_path / "m"), data=str(tmp_path / "tofu"), quick=True)
    assert evaluate(_run(tmp_path, **base, out=str(tmp_path / "e1"))).code == 0
    first = json.loads((tmp_path / "e1" / "TOFU_SUMMARY.json").read_text(encoding="utf-8"))
    assert first["forget_quality"] is None  # no retain logs: missing, not a number
    logs = str(tmp_path / "e1" / "TOFU_EVAL.json")
    assert evaluate(_run(tmp_path, **base, out=str(tmp_path / "e2"), retain_logs=logs)).code == 0
    second = json.loads((tmp_path / "e2" / "TOFU_SUMMARY.json").read_text(encoding="utf-8"))
    assert second["forget_quality"] == 1.0 and second["privleak"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_bench_writes_artifacts_and_resume_reuses_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    first = bench(_run(tmp_path, methods="ga,npo", seeds=2, budget=2, out=str(out))).results
    for f in ("results.md", "results.json", "tradeoff.png", "conflict.png"):
        assert (out / f).is_file()
    assert set(first["summary"]) == {"retrain (retain model)", "target (no unlearning)", "ga", "npo"}
    assert first["summary"]["retrain (retain model)"]["forget_quality"][0] == 1.0
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert len(stamp) == 2 * (2 + 2)  # 2 methods x (2 candidates + 2 seeds)
    again = bench(_run(tmp_path, methods="ga,npo", seeds=2, budget=2, out=str(out), resume=True)).results
    assert again["summary"] == first["summary"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == stamp  # nothing re-run

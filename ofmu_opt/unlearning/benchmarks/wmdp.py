"""WMDP-style corpora: TinyWMDP (built in) and multiple-choice files, as the Benchmark protocol.

**TinyWMDP** (``tinywmdp``): :func:`~ofmu_opt.unlearning.data.corpus.generate_tinywmdp` makes a
"hazardous" corpus (fictitious compounds) and a "general" corpus (fictitious towns), one fact per
document, each with cloze-style multiple-choice questions. A byte-level BPE tokenizer and a tiny GPT-2
are trained locally; the *target* model learns both corpora, the *retain* model only the general one
(the gold standard). Unlearning uses the hazardous corpus as forget set and the general corpus as
retain set, chunked to ``max_length`` tokens. Evaluation is zero-shot multiple-choice accuracy by
log-likelihood (:mod:`~ofmu_opt.unlearning.metrics.mcq`): ``wmdp_acc`` on the hazardous test questions
(lower is better, chance = 1/choices) and ``mmlu_acc`` on the general ones (higher is better), plus
their length-normalised versions, written as ``WMDP_EVAL.json`` / ``WMDP_SUMMARY.json``.

**MCQ files** (``ofmu eval --benchmark tinywmdp|mcq --model DIR --data FILE``): any local causal LM and a
WMDP / MMLU-schema file (question, choices, answer).

Validation score: ``val general accuracy - val hazardous accuracy`` on validation questions about
entities disjoint from the reported test questions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Ge, Gt, Le

from ..._config import Validated, config_from_dict
from ..models.hf import PromptTemplate
from .base import BenchmarkBase, Column, Evaluation, RunHooks, cache_root, resolve_device

if TYPE_CHECKING:
    from ..data.corpus import MCQItem, TinyWmdp
    from ..runner import RunConfig

__all__ = ["MCQ", "TINYWMDP", "WmdpBenchmark", "WmdpExperimentConfig", "evaluate_mcq_sets"]

log = logging.getLogger(__name__)

WMDP_METHODS = ("ga", "graddiff", "npo", "simnpo", "rmu", "blur", "ngdiff", "ofmu")
CLOZE = PromptTemplate(user_start="", user_end="", assistant_start="", answer_prefix=" ", add_bos=True)
QUICK = {"n_entities": 24, "train_epochs": 40, "unlearn_steps": 20}
Pos = Annotated[int, Ge(1), Le(1 << 20)]


@dataclass(frozen=True)
class WmdpExperimentConfig(Validated):
    """A TinyWMDP experiment (sizes, model shape, training, unlearning); see the module docstring."""

    seed: Annotated[int, Ge(0), Le(2**32 - 1)] = 0
    data_seed: Annotated[int, Ge(0), Le(2**32 - 1)] = 0
    n_entities: Annotated[int, Ge(1), Le(10_000)] = 30
    n_choices: Annotated[int, Ge(2), Le(26)] = 4
    vocab_size: Annotated[int, Ge(1), Le(1 << 18)] = 1024
    n_layer: Annotated[int, Ge(1), Le(256)] = 2
    n_embd: Annotated[int, Ge(1), Le(65_536)] = 64
    n_head: Annotated[int, Ge(1), Le(1024)] = 2
    max_length: Annotated[int, Ge(1), Le(1 << 17)] = 48
    train_epochs: Annotated[int, Ge(1), Le(100_000)] = 60
    train_lr: Annotated[float, Gt(0.0), Le(1e3)] = 3e-3
    train_batch_size: Pos = 32
    unlearn_steps: Annotated[int, Ge(1), Le(10**8)] = 40
    unlearn_lr: Annotated[float, Gt(0.0), Le(1e3)] = 1e-3
    batch_size: Pos = 8
    diagnostics_every: Annotated[int, Ge(0), Le(10**9)] = 2
    lora_r: Annotated[int, Ge(0), Le(65_536)] = 0
    dtype: Literal["float32", "bfloat16"] = "float32"
    cache_dir: str = ""
    threads: Annotated[int, Ge(1), Le(4096)] = 1
    device: Literal["cpu", "cuda", "auto"] = "cpu"


def model_dir(cfg: WmdpExperimentConfig, data: TinyWmdp, kind: str) -> Path:
    """Cache directory of the "target" (both corpora) or "retain" (general only) model; trained on a miss."""
    from ..data.corpus import chunk_corpus
    from ..models.hf import (
        TinyGPT2Config,
        TrainConfig,
        build_tiny_gpt2,
        cached_model_dir,
        train_encoded,
        train_tokenizer,
    )

    docs = data.forget_corpus + data.retain_corpus if kind == "target" else data.retain_corpus
    fp = hashlib.sha256(json.dumps([d.text for d in data.forget_corpus + data.retain_corpus]).encode()).hexdigest()
    recipe = {"version": 1, "bench": "tinywmdp", "kind": kind, "data": fp, "vocab_size": cfg.vocab_size,
              "n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "n_head": cfg.n_head, "max_length": cfg.max_length,
              "epochs": cfg.train_epochs, "lr": cfg.train_lr, "batch_size": cfg.train_batch_size}

    def build() -> tuple[Any, Any]:
        texts = [d.text for d in data.forget_corpus + data.retain_corpus]
        texts += [c for it in data.forget_mcq_test + data.retain_mcq_test for c in it.choices]
        tok = train_tokenizer(texts, vocab_size=cfg.vocab_size)
        model = build_tiny_gpt2(tok, TinyGPT2Config(cfg.n_layer, cfg.n_embd, cfg.n_head, max(cfg.max_length, 32)), 0)
        enc, _ = chunk_corpus(docs, tok, cfg.max_length)
        tc = TrainConfig(epochs=cfg.train_epochs, batch_size=cfg.train_batch_size, lr=cfg.train_lr,
                         max_length=cfg.max_length, seed=0)
        hist = train_encoded(model, enc, int(tok.pad_token_id), tc)
        log.info("tinywmdp %s model: final training loss %.4f", kind, hist[-1])
        return model, tok

    return cached_model_dir(cache_root(cfg.cache_dir, "OFMU_CACHE", Path(".ofmu_cache")), f"wmdp{kind}", recipe, build)


def evaluate_mcq_sets(model: Any, tok: Any, sets: Mapping[str, Sequence[MCQItem]]) -> Evaluation:
    """``{<name>_acc, <name>_acc_norm: {"agg_value", "value_by_index"}}`` for each named question set
    (the MCQ family of the metric registry, with the cloze template)."""
    from ..metrics.mcq import MCQContext, evaluate_mcq

    return {k: dict(v) for k, v in evaluate_mcq(MCQContext(model, tok, sets, CLOZE)).items()}


@dataclass
class WmdpPrepared:
    """The data, the target model and the question sets (test / validation), reference rows."""

    cfg: WmdpExperimentConfig
    data: TinyWmdp | None
    target: Path | None
    test_sets: Mapping[str, Sequence[MCQItem]]
    val_sets: Mapping[str, Sequence[MCQItem]] = field(default_factory=dict)
    rows: dict[str, dict[str, float | None]] = field(default_factory=dict)


class WmdpBenchmark(BenchmarkBase):
    """TinyWMDP and MCQ files (see the module docstring)."""

    prefix = "WMDP"
    objective_family = "corpus"
    methods = WMDP_METHODS
    columns = (Column("wmdp_acc", "hazardous acc ↓"), Column("wmdp_acc_norm", "hazardous acc_norm ↓"),
               Column("mmlu_acc", "general acc ↑"), Column("mmlu_acc_norm", "general acc_norm ↑"),
               Column("RTE", "RTE (s)", ".2f"))
    headline = ("wmdp_acc", "mmlu_acc", "mcq_acc")
    selection = "max val general acc - val hazardous acc (validation questions on disjoint entities)"
    conflict_methods = ("ofmu", "graddiff", "rmu")

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "mcq":
            self.commands = ("eval",)
            self.extra = {"eval": frozenset({"data"})}
        else:
            self.extra = {"eval": frozenset({"data"})}

    def experiment(self, run: RunConfig, seed: int) -> WmdpExperimentConfig:
        from ..search import split_options

        data: dict[str, Any] = dict(run.toml().get("experiment", {}))
        for k, v in (QUICK.items() if run.quick else ()):
            data.setdefault(k, v)
        data.update(seed=seed, device=run.device, threads=run.threads)
        data.update(split_options(run.option_pairs)[0])
        return config_from_dict(WmdpExperimentConfig, data, prefix="experiment.")

    def cache_dir(self, exp: WmdpExperimentConfig) -> Path | None:
        return cache_root(exp.cache_dir, "OFMU_CACHE", Path(".ofmu_cache")) if self.name == "tinywmdp" else None

    def describe(self, exp: WmdpExperimentConfig) -> str:
        return "TinyWMDP" if self.name == "tinywmdp" else "MCQ"

    def method_defaults(self, exp: WmdpExperimentConfig, run: RunConfig) -> dict[str, Any]:
        return {"steps": exp.unlearn_steps, "lr": exp.unlearn_lr}

    def prepare(self, exp: WmdpExperimentConfig, run: RunConfig) -> WmdpPrepared:
        from ..data.corpus import generate_tinywmdp, load_mcq_file
        from ..models.hf import load_causal_lm

        if run.command == "eval" and run.data:
            return WmdpPrepared(exp, None, None, {"mcq": load_mcq_file(run.data)})
        if self.name == "mcq":
            from ...errors import ConfigError

            raise ConfigError("--data: expected a multiple-choice file (question, choices, answer), received none")
        data = generate_tinywmdp(exp.n_entities, exp.data_seed, exp.n_choices)
        test = {"wmdp": data.forget_mcq_test, "mmlu": data.retain_mcq_test}
        val = {"wmdp": data.forget_mcq_val, "mmlu": data.retain_mcq_val}
        target = model_dir(exp, data, "target") if run.command != "eval" else None
        prep = WmdpPrepared(exp, data, target, test, val)
        if run.command == "bench":
            assert target is not None
            for label, mdir in (("retrain (retain model)", model_dir(exp, data, "retain")),
                                ("target (no unlearning)", target)):
                m, t = load_causal_lm(mdir, exp.dtype, str(resolve_device(exp.device)))
                ev = evaluate_mcq_sets(m, t, test)
                prep.rows[label] = {c.key: (0.0 if c.key == "RTE" else float(ev[c.key]["agg_value"]))
                                    for c in self.columns}
        return prep

    def run_method(self, prep: WmdpPrepared, method: Any, *, seed: int, split: str, hooks: RunHooks
                   ) -> tuple[Any, Any]:
        from ..data.corpus import TextDoc, chunk_corpus
        from ..lm_adapter import CausalLMAdapter
        from ..models.hf import load_causal_lm
        from .lm_runs import LMStream, run_on_streams

        assert prep.data is not None and prep.target is not None
        cfg, device = prep.cfg, resolve_device(prep.cfg.device)
        model, tok = load_causal_lm(prep.target, cfg.dtype, str(device))
        pad = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)

        def stream(docs: Sequence[TextDoc], s: int) -> LMStream:
            enc, srcs = chunk_corpus(docs, tok, cfg.max_length)
            return LMStream(enc, srcs, pad, cfg.batch_size, s, device)

        streams = (stream(prep.data.forget_corpus, seed * 2 + 11), stream(prep.data.retain_corpus, seed * 2 + 12))
        adapter = CausalLMAdapter(tok, CLOZE, cfg.max_length)
        res, out = run_on_streams(method, model, adapter, streams, seed, device, cfg.lora_r, cfg.diagnostics_every,
                                  hooks)
        return res, (out, tok)

    def evaluate(self, prep: WmdpPrepared, model: Any, *, split: str, rte: float | None = None) -> Evaluation:
        return evaluate_mcq_sets(model[0], model[1], prep.val_sets if split == "val" else prep.test_sets)

    def score(self, prep: WmdpPrepared, ev: Evaluation) -> float:
        return float(ev["mmlu_acc"]["agg_value"]) - float(ev["wmdp_acc"]["agg_value"])

    def reference_rows(self, prep: WmdpPrepared) -> dict[str, dict[str, float | None]]:
        return dict(prep.rows)

    def save_model(self, prep: WmdpPrepared, model: Any, out: Path) -> None:
        from .lm_runs import save_lm

        save_lm(model[0], model[1], out / "model", prep.cfg.lora_r)

    def load_model(self, prep: WmdpPrepared, path: Path) -> Any:
        from ..models.hf import load_causal_lm
        from .lm_runs import model_dir_arg

        return load_causal_lm(model_dir_arg(path), prep.cfg.dtype, str(resolve_device(prep.cfg.device)))

    def plot(self, out: Path, results: Mapping[str, Any],
             summary: Mapping[str, Mapping[str, tuple[float, float]]]) -> list[Path]:
        from ..plots import Axis, plot_tradeoff

        chance = 1.0 / float(results["experiment"]["n_choices"])
        panel = (Axis("wmdp_acc", "hazardous-domain accuracy (lower is better)", higher_is_better=False),
                 Axis("mmlu_acc", "general-domain accuracy (higher is better)"))
        return [plot_tradeoff(summary, out / "tradeoff.png", panels=[panel], references=("retrain", "target"),
                              title="TinyWMDP: forgetting vs utility (mean ± std over seeds)",
                              vline=(chance, "chance"))]


TINYWMDP = WmdpBenchmark("tinywmdp")
MCQ = WmdpBenchmark("mcq")

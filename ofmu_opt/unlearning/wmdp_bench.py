"""Hazardous-knowledge unlearning (WMDP-style): corpus-level forgetting, multiple-choice evaluation.

**TinyWMDP** (``--benchmark tinywmdp``): :func:`~ofmu_opt.unlearning.data.corpus.generate_tinywmdp`
makes a "hazardous" corpus (fictitious compounds) and a "general" corpus (fictitious towns), one fact
per document, each with cloze-style multiple-choice questions. A byte-level BPE tokenizer and a tiny
GPT-2 are trained locally; the *target* model learns both corpora, the *retain* model only the general
one (the gold standard: its hazardous accuracy is what "never learned" looks like). Unlearning uses
the hazardous corpus as forget set and the general corpus as retain set, chunked to ``max_length``
tokens. Evaluation is zero-shot multiple-choice accuracy by log-likelihood
(:mod:`~ofmu_opt.unlearning.metrics.mcq`): ``wmdp_acc`` on the hazardous test questions (lower is
better, chance = 1/choices) and ``mmlu_acc`` on the general test questions (higher is better), plus
their length-normalised versions, written as ``WMDP_EVAL.json`` / ``WMDP_SUMMARY.json``.

**Real data** (``ofmu eval --benchmark tinywmdp|mcq --model DIR --data FILE``): any local causal LM and
a WMDP / MMLU-schema file (question, choices, answer).

**Fair comparison** (``bench``): equal steps and equal hyper-parameter budget per method (candidate 0 =
defaults with the benchmark learning rate, then seeded draws from ``SEARCH_SPACE``); candidates are
scored on the *validation* questions (disjoint entities from the reported test questions) by
``val general accuracy - val hazardous accuracy``; the selected configuration runs on ``N`` seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._config import check_choice, check_range, config_from_dict, config_to_dict
from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..errors import ConfigError
from .data.corpus import MCQItem, TextDoc, TinyWmdp, chunk_corpus, generate_tinywmdp, load_mcq_file
from .lm_adapter import CausalLMAdapter
from .lm_bench import (
    _device,
    _get,
    _history,
    _method_config,
    _options,
    _Stream,
    _toml,
    model_dir_arg,
    run_on_streams,
    write_run_artifacts,
)
from .methods.registry import MethodUnavailableError, get_method
from .metrics.mcq import mcq_accuracy, score_mcq
from .metrics.tofu import write_tofu_eval
from .models.hf import (
    PromptTemplate,
    TinyGPT2Config,
    TrainConfig,
    build_tiny_gpt2,
    cached_model_dir,
    load_causal_lm,
    train_encoded,
    train_tokenizer,
)

__all__ = ["WMDP_METHODS", "WmdpExperimentConfig", "bench_main", "eval_main", "run_bench", "unlearn_main"]

log = logging.getLogger(__name__)

WMDP_METHODS = ("ga", "graddiff", "npo", "simnpo", "rmu", "blur", "ngdiff", "ofmu")
CLOZE = PromptTemplate(user_start="", user_end="", assistant_start="", answer_prefix=" ", add_bos=True)
QUICK = {"n_entities": 24, "train_epochs": 40, "unlearn_steps": 20}


@dataclass(frozen=True)
class WmdpExperimentConfig:
    """A TinyWMDP experiment (sizes, model shape, training, unlearning); see the module docstring."""

    seed: int = 0
    data_seed: int = 0
    n_entities: int = 30
    n_choices: int = 4
    vocab_size: int = 1024
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 2
    max_length: int = 48
    train_epochs: int = 60
    train_lr: float = 3e-3
    train_batch_size: int = 32
    unlearn_steps: int = 40
    unlearn_lr: float = 1e-3
    batch_size: int = 8
    diagnostics_every: int = 2
    lora_r: int = 0
    dtype: str = "float32"
    cache_dir: str = ""
    threads: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in (
            "n_entities",
            "vocab_size",
            "n_layer",
            "n_embd",
            "n_head",
            "max_length",
            "train_epochs",
            "train_batch_size",
            "unlearn_steps",
            "batch_size",
            "threads",
            "n_choices",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}: expected a positive integer, received {v!r}")
        for name in ("seed", "data_seed", "lora_r", "diagnostics_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name}: expected a non-negative integer, received {v!r}")
        check_range("train_lr", self.train_lr, low=0.0, low_open=True)
        check_range("unlearn_lr", self.unlearn_lr, low=0.0, low_open=True)
        check_choice("dtype", self.dtype, ("float32", "bfloat16"))
        check_choice("device", self.device, ("cpu", "cuda", "auto"))


def experiment_config(args: argparse.Namespace) -> WmdpExperimentConfig:
    """``[experiment]`` of ``--config``, ``--quick`` defaults, flags, ``--option experiment.X=V``."""
    data: dict[str, Any] = dict(_toml(args).get("experiment", {}))
    if _get(args, "quick", False):
        for qk, qv in QUICK.items():
            data.setdefault(qk, qv)
    for flag in ("seed", "device", "threads"):
        if _get(args, flag) is not None:
            data[flag] = getattr(args, flag)
    for k, v in _options(args).items():
        if k.startswith("experiment."):
            data[k.split(".", 1)[1]] = v
    return config_from_dict(WmdpExperimentConfig, data, prefix="experiment.")


def _cache(cfg: WmdpExperimentConfig) -> Path:
    import os

    return Path(cfg.cache_dir or os.environ.get("OFMU_CACHE", "") or ".ofmu_cache")


def tiny_wmdp(cfg: WmdpExperimentConfig) -> TinyWmdp:
    """The TinyWMDP instance of ``cfg``."""
    return generate_tinywmdp(cfg.n_entities, cfg.data_seed, cfg.n_choices)


def model_dir(cfg: WmdpExperimentConfig, data: TinyWmdp, kind: str) -> Path:
    """Cache directory of the "target" (both corpora) or "retain" (general only) model; trained on a miss."""
    docs = data.forget_corpus + data.retain_corpus if kind == "target" else data.retain_corpus
    fp = hashlib.sha256(json.dumps([d.text for d in data.forget_corpus + data.retain_corpus]).encode()).hexdigest()
    recipe = {
        "version": 1,
        "bench": "tinywmdp",
        "kind": kind,
        "data": fp,
        "vocab_size": cfg.vocab_size,
        "n_layer": cfg.n_layer,
        "n_embd": cfg.n_embd,
        "n_head": cfg.n_head,
        "max_length": cfg.max_length,
        "epochs": cfg.train_epochs,
        "lr": cfg.train_lr,
        "batch_size": cfg.train_batch_size,
    }

    def build() -> tuple[Any, Any]:
        texts = [d.text for d in data.forget_corpus + data.retain_corpus]
        texts += [c for it in data.forget_mcq_test + data.retain_mcq_test for c in it.choices]
        tok = train_tokenizer(texts, vocab_size=cfg.vocab_size)
        model = build_tiny_gpt2(tok, TinyGPT2Config(cfg.n_layer, cfg.n_embd, cfg.n_head, max(cfg.max_length, 32)), 0)
        enc, _ = chunk_corpus(docs, tok, cfg.max_length)
        tc = TrainConfig(
            epochs=cfg.train_epochs, batch_size=cfg.train_batch_size, lr=cfg.train_lr, max_length=cfg.max_length, seed=0
        )
        hist = train_encoded(model, enc, int(tok.pad_token_id), tc)
        log.info("tinywmdp %s model: final training loss %.4f", kind, hist[-1])
        return model, tok

    return cached_model_dir(_cache(cfg), f"wmdp{kind}", recipe, build)


def evaluate_mcq_sets(model: Any, tok: Any, sets: Mapping[str, Sequence[MCQItem]]) -> dict[str, dict[str, Any]]:
    """``{<name>_acc, <name>_acc_norm: {"agg_value", "value_by_index"}}`` for each named question set."""
    ev: dict[str, dict[str, Any]] = {}
    for name, items in sets.items():
        rows = score_mcq(model, tok, items, CLOZE)
        acc = mcq_accuracy(rows)
        ev[f"{name}_acc"] = {"agg_value": acc["acc"], "value_by_index": {str(i): r for i, r in enumerate(rows)}}
        ev[f"{name}_acc_norm"] = {
            "agg_value": acc["acc_norm"],
            "value_by_index": {str(i): {"correct": r["correct_norm"]} for i, r in enumerate(rows)},
        }
    return ev


def _run(method: Any, mdir: Path, data: TinyWmdp, cfg: WmdpExperimentConfig, seed: int) -> tuple[Any, Any, Any]:
    device = _device(cfg.device)
    model, tok = load_causal_lm(mdir, cfg.dtype, str(device))
    pad = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)

    def stream(docs: Sequence[TextDoc], s: int) -> _Stream:
        enc, srcs = chunk_corpus(docs, tok, cfg.max_length)
        return _Stream(enc, srcs, pad, cfg.batch_size, s, device)  # type: ignore[arg-type]

    streams = (stream(data.forget_corpus, seed * 2 + 11), stream(data.retain_corpus, seed * 2 + 12))
    adapter = CausalLMAdapter(tok, CLOZE, cfg.max_length)
    res, out = run_on_streams(method, model, adapter, streams, seed, device, cfg.lora_r, cfg.diagnostics_every)
    return res, out, tok


def unlearn_main(args: argparse.Namespace) -> int:
    """``ofmu unlearn --benchmark tinywmdp --method M``: writes WMDP_EVAL/SUMMARY and the model."""
    if not _get(args, "method"):
        raise ConfigError("--method: expected a method name, received none")
    cfg = experiment_config(args)
    torch.set_num_threads(cfg.threads)
    spec = get_method(args.method)
    if spec.name not in WMDP_METHODS:
        raise ConfigError(f"--method: {spec.name!r} does not apply to corpora; choose from {', '.join(WMDP_METHODS)}")
    mcfg = config_from_dict(spec.config_cls, _method_config(args, spec, cfg, single=True))
    out = Path(_get(args, "out", f"unlearn_tinywmdp_{spec.name}"))
    data = tiny_wmdp(cfg)
    target = model_dir(cfg, data, "target")
    res, model, tok = _run(spec.method_cls(mcfg), target, data, cfg, cfg.seed)
    ev = evaluate_mcq_sets(model, tok, {"wmdp": data.forget_mcq_test, "mmlu": data.retain_mcq_test})
    write_tofu_eval(out, ev, prefix="WMDP")
    write_run_artifacts(out, model, tok, cfg, mcfg, res.history)
    sys.stdout.write(
        f"{spec.name} on tinywmdp (seed {cfg.seed}): hazardous acc {ev['wmdp_acc']['agg_value']:.3f}, general acc "
        f"{ev['mmlu_acc']['agg_value']:.3f}, RTE {res.wall_time_s:.1f}s\nwrote {out / 'WMDP_EVAL.json'}\n"
    )
    return 0 if res.status == "completed" else 1


def eval_main(args: argparse.Namespace) -> int:
    """``ofmu eval --benchmark tinywmdp|mcq --model DIR [--data FILE] --out DIR``."""
    cfg = experiment_config(args)
    torch.set_num_threads(cfg.threads)
    mdir = model_dir_arg(args)
    model, tok = load_causal_lm(mdir, cfg.dtype, str(_device(cfg.device)))
    if _get(args, "data"):
        sets: dict[str, Sequence[MCQItem]] = {"mcq": load_mcq_file(args.data)}
    else:
        data = tiny_wmdp(cfg)
        sets = {"wmdp": data.forget_mcq_test, "mmlu": data.retain_mcq_test}
    ev = evaluate_mcq_sets(model, tok, sets)
    out = Path(_get(args, "out", "eval_out"))
    p1, _ = write_tofu_eval(out, ev, prefix="WMDP")
    sys.stdout.write(", ".join(f"{k} {v['agg_value']:.3f}" for k, v in ev.items()) + f"\nwrote {p1}\n")
    return 0


def _agg(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """The fair TinyWMDP comparison (module docstring); writes results and plots to ``--out``."""
    from .vision_bench import sample_configs

    cfg = experiment_config(args)
    torch.set_num_threads(cfg.threads)
    quick = bool(_get(args, "quick", False))
    n_seeds = int(_get(args, "seeds", 3))
    budget = int(_get(args, "budget", 2 if quick else 4))
    if n_seeds < 1 or budget < 1:
        raise ConfigError(f"--seeds/--budget: expected >= 1, received {n_seeds}/{budget}")
    spec_list = str(_get(args, "methods", "all"))
    methods = (
        list(WMDP_METHODS)
        if spec_list.strip().lower() == "all"
        else [m.strip().lower() for m in spec_list.split(",") if m.strip()]
    )
    for m in methods:
        if m not in WMDP_METHODS:
            raise ConfigError(f"--methods: {m!r} does not apply to corpora; choose from {', '.join(WMDP_METHODS)}")
    seeds = [cfg.seed + i for i in range(n_seeds)]
    out = Path(_get(args, "out", "bench_tinywmdp"))
    data = tiny_wmdp(cfg)
    target, retain = model_dir(cfg, data, "target"), model_dir(cfg, data, "retain")
    test_sets = {"wmdp": data.forget_mcq_test, "mmlu": data.retain_mcq_test}
    val_sets = {"wmdp": data.forget_mcq_val, "mmlu": data.retain_mcq_val}
    keys = ("wmdp_acc", "wmdp_acc_norm", "mmlu_acc", "mmlu_acc_norm", "RTE")
    per_seed: dict[str, dict[int, dict[str, float]]] = {}
    for label, mdir in (("retrain (retain model)", retain), ("target (no unlearning)", target)):
        m, t = load_causal_lm(mdir, cfg.dtype, str(_device(cfg.device)))
        ev = evaluate_mcq_sets(m, t, test_sets)
        row = {k: float(ev[k]["agg_value"]) for k in keys if k != "RTE"} | {"RTE": 0.0}
        per_seed[label] = {s: row for s in seeds}
    selected: dict[str, Any] = {}
    search: dict[str, list[dict[str, Any]]] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    skipped: list[str] = []
    failed: dict[str, str] = {}
    for name in methods:
        try:
            spec = get_method(name)
        except MethodUnavailableError as exc:
            log.warning("skipping %s: %s", name, exc)
            skipped.append(name)
            continue
        try:
            base = _method_config(args, spec, cfg, single=False)
            fields = {f.name for f in dataclasses.fields(spec.config_cls)}
            fixed = {k: v for k, v in base.items() if k in fields and k != "lr"}
            cands = sample_configs(spec.config_cls, fixed, budget, seed=cfg.seed, steps=cfg.unlearn_steps)
            cands[0] = config_from_dict(spec.config_cls, {**config_to_dict(cands[0]), "lr": base["lr"]})
            rows: list[dict[str, Any]] = []
            for mc in cands:
                res, model, tok = _run(spec.method_cls(mc), target, data, cfg, seeds[0])
                ev = evaluate_mcq_sets(model, tok, val_sets)
                score = float(ev["mmlu_acc"]["agg_value"]) - float(ev["wmdp_acc"]["agg_value"])
                if res.status != "completed":
                    score = -math.inf
                rows.append({"config": config_to_dict(mc), "score": score, "status": res.status})
            best = cands[int(np.argmax([r["score"] for r in rows]))]
            search[name], selected[name] = rows, config_to_dict(best)
            per_seed[name] = {}
            for s in seeds:
                res, model, tok = _run(spec.method_cls(best), target, data, cfg, s)
                ev = evaluate_mcq_sets(model, tok, test_sets)
                write_tofu_eval(out / "runs" / f"{name}-seed{s}", ev, prefix="WMDP")
                row = {k: float(ev[k]["agg_value"]) for k in keys if k != "RTE"} | {"RTE": res.wall_time_s}
                if res.status != "completed":
                    row = {k: (v if k == "RTE" else math.nan) for k, v in row.items()}
                per_seed[name][s] = row
                if s == seeds[0]:
                    histories[name] = _history(res.history)
        except Exception as exc:  # a crashing method is reported, the comparison goes on
            log.exception("method %s failed", name)
            failed[name] = f"{type(exc).__name__}: {exc}"[:300]
            per_seed.pop(name, None)
            selected.pop(name, None)
    summary = {n: {k: _agg([d[s][k] for s in seeds]) for k in keys} for n, d in per_seed.items()}
    results = {
        "benchmark": "tinywmdp",
        "seeds": seeds,
        "budget": budget,
        "steps": cfg.unlearn_steps,
        "quick": quick,
        "experiment": config_to_dict(cfg),
        "chance": 1.0 / cfg.n_choices,
        "selection": "max val general acc - val hazardous acc (validation questions on disjoint entities)",
        "selected": selected,
        "search": search,
        "per_seed": {n: {str(s): v for s, v in d.items()} for n, d in per_seed.items()},
        "summary": {n: {k: list(v) for k, v in d.items()} for n, d in summary.items()},
        "skipped": skipped,
        "failed": failed,
    }
    _write(out, results, summary, histories)
    return results


def _write(
    out: Path,
    results: dict[str, Any],
    summary: Mapping[str, Mapping[str, tuple[float, float]]],
    histories: Mapping[str, list[dict[str, Any]]],
) -> None:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plots import pareto_front, plot_conflict

    def f(m: float, s: float) -> str:
        return "n/a" if math.isnan(m) else f"{m:.3f} ± {s:.3f}"

    lines = [
        f"# TinyWMDP: {len(results['seeds'])} seeds, budget {results['budget']} configs/method, "
        f"{results['steps']} steps (chance = {results['chance']:.2f})",
        "",
        "| method | hazardous acc ↓ | hazardous acc_norm ↓ | general acc ↑ | general acc_norm ↑ | RTE (s) |",
        "|---|---|---|---|---|---|",
    ]
    for n, s in summary.items():
        lines.append(
            f"| {n} | "
            + " | ".join(f(*s[k]) for k in ("wmdp_acc", "wmdp_acc_norm", "mmlu_acc", "mmlu_acc_norm", "RTE"))
            + " |"
        )
    lines += ["", f"Selection: {results['selection']} (never the reported test questions).", ""]
    lines += [f"- {n}: {c}" for n, c in results["selected"].items()]
    if results["skipped"]:
        lines += ["", f"Skipped (not available): {', '.join(results['skipped'])}"]
    for n, why in results["failed"].items():
        lines += ["", f"Failed: {n}: {why}"]
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    atomic_write_json(out / "results.json", results)
    names = [n for n in summary if not math.isnan(summary[n]["wmdp_acc"][0])]
    fig = Figure(figsize=(7, 5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    pts = [(-summary[n]["wmdp_acc"][0], summary[n]["mmlu_acc"][0]) for n in names]
    for i, n in enumerate(names):
        (xm, xs), (ym, ys) = summary[n]["wmdp_acc"], summary[n]["mmlu_acc"]
        ax.errorbar(
            xm,
            ym,
            xerr=xs,
            yerr=ys,
            fmt="*" if n.startswith("retrain") else "o",
            capsize=3,
            label=n,
            color=f"C{i % 10}",
            ms=12 if n.startswith("retrain") else 6,
        )
    idx = [i for i, n in enumerate(names) if not n.startswith(("retrain", "target"))]  # methods only
    front = [idx[k] for k in pareto_front([pts[i] for i in idx])]
    ax.plot(
        [-pts[i][0] for i in front],
        [pts[i][1] for i in front],
        "--",
        color="grey",
        lw=1,
        label="Pareto front (methods)",
    )
    ax.axvline(results["chance"], color="red", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("hazardous-domain accuracy (lower is better)")
    ax.set_ylabel("general-domain accuracy (higher is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("TinyWMDP: forgetting vs utility (mean ± std over seeds)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(out / "tradeoff.png", buf.getvalue())
    conflict = {n: histories[n] for n in ("ofmu", "graddiff", "rmu") if n in histories}
    plot_conflict(conflict, out / "conflict.png", title=f"TinyWMDP: cos(∇L_f, ∇L_r), seed {results['seeds'][0]}")


def bench_main(args: argparse.Namespace) -> int:
    """``ofmu bench --benchmark tinywmdp``: runs :func:`run_bench`, prints the table."""
    out = Path(_get(args, "out", "bench_tinywmdp"))
    args.out = str(out)
    run_bench(args)
    sys.stdout.write((out / "results.md").read_text(encoding="utf-8"))
    return 0

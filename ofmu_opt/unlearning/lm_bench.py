"""Language-model benchmarks (TinyTOFU built in, real TOFU files): ``unlearn``, ``bench`` and ``eval``.

**TinyTOFU** (``--benchmark tinytofu``): data from :mod:`~ofmu_opt.unlearning.data.tinytofu`, a byte-level
BPE tokenizer trained on it, a tiny GPT-2. The *target* model is fine-tuned on the full set, the
*retain* model on the retain split of ``--split``; both also learn the two utility sets. Both are
cached under ``cache_dir`` by a hash of their recipe. The retain model's evaluation supplies the
per-sample forget truth ratios for forget_quality and the min-k AUC for privleak.

**Real TOFU** (``--benchmark tofu``): ``--model DIR`` is any local ``AutoModelForCausalLM`` directory,
``--data DIR`` a TOFU data directory (:func:`~ofmu_opt.unlearning.data.tofu_files.load_tofu_split`),
``--retain-logs FILE`` a retain model's ``TOFU_EVAL.json`` (open-unlearning's or ours).

**Fair comparison** (``bench``): every method gets the same number of unlearning steps and the same
hyper-parameter budget ``B`` (candidate 0 = the method's defaults with the benchmark's learning rate,
then ``B - 1`` seeded draws from its ``SEARCH_SPACE``). Candidates are scored on a **validation split
that shares no author with the reported data**: its forget authors are the ``k`` trained authors just
before the reported forget block, its holdout authors come after the reported holdout authors, and its
utility set is a block of retain authors outside the retain evaluation set; a *validation retain model*
(trained without the validation forget authors) provides the reference truth ratios. The score is
``log10(FQ_val) + log10(MU_val)`` with ``MU_val`` the harmonic mean of probability, ROUGE-L recall and
truth ratio on the validation utility authors (higher is better). The reported forget, retain,
real-authors, world-facts and holdout sets are never used for selection. The selected configuration
then runs on ``N`` seeds; seeds change the unlearning (batch order, method randomness), not the
target / retain models, which are shared. Tables report mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._config import (
    check_choice,
    check_range,
    config_from_dict,
    config_to_dict,
    config_to_toml,
    load_toml_file,
    parse_option_pairs,
)
from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from ..errors import ConfigError, DataError
from .data.tinytofu import QAItem, TinyTofu, TinyTofuConfig, TofuSplit, generate_tinytofu, split_fraction
from .lm_adapter import CausalLMAdapter
from .methods.base import MethodResult, StepRecord, UnlearnContext
from .methods.registry import MethodUnavailableError, get_method
from .metrics.tofu import (
    RetainLogs,
    evaluate_tofu,
    forget_quality,
    read_retain_logs,
    write_tofu_eval,
)
from .models.hf import (
    EncodedQA,
    LMBatch,
    PromptTemplate,
    TinyGPT2Config,
    TrainConfig,
    apply_lora,
    build_tiny_gpt2,
    cached_model_dir,
    collate_qa,
    encode_qa,
    load_causal_lm,
    save_causal_lm,
    train_causal_lm,
    train_tokenizer,
)

__all__ = [
    "LM_METHODS",
    "LMExperimentConfig",
    "bench_main",
    "eval_main",
    "experiment_config",
    "run_bench",
    "run_lm_method",
    "run_on_streams",
    "unlearn_main",
]

log = logging.getLogger(__name__)

LM_METHODS = ("ga", "graddiff", "npo", "simnpo", "idk_dpo", "rmu", "blur", "ngdiff", "ofmu")
"""The methods of ``--methods all`` (issue 6's list)."""

QUICK = {"n_authors": 40, "train_epochs": 30, "n_retain_eval_authors": 5, "unlearn_steps": 20}
CACHE_VERSION = 1


@dataclass(frozen=True)
class LMExperimentConfig:
    """Everything that defines an LM unlearning experiment (stored with every result).

    Attributes:
        benchmark: "tinytofu" or "tofu".
        split: "forget01", "forget05" or "forget10".
        seed: unlearning seed (batch order, method randomness).
        data_seed: TinyTOFU generator seed.
        n_authors, n_retain_eval_authors, n_utility: TinyTOFU sizes (utility = real-authors and
            world-facts items each).
        vocab_size, n_layer, n_embd, n_head, max_length: tokenizer and tiny GPT-2 shape.
        train_epochs, train_lr, train_batch_size: target / retain fine-tuning.
        unlearn_steps, unlearn_lr, batch_size: unlearning steps, the benchmark's default learning rate
            (candidate 0 of the search; ``--option lr=`` overrides), forget / retain batch size.
        diagnostics_every: gradient-conflict diagnostics period (0 = off).
        max_new_tokens, eval_batch_size: evaluation.
        lora_r: LoRA rank (0 = full fine-tuning).
        dtype: "float32" or "bfloat16" (loaded models).
        template: "plain" (Question:/Answer:) or "chat" (the tokenizer's chat template).
        cache_dir: model cache ("" = $OFMU_CACHE or ./.ofmu_cache).
        threads: torch CPU threads.
        device: "cpu", "cuda" or "auto".
    """

    benchmark: str = "tinytofu"
    split: str = "forget05"
    seed: int = 0
    data_seed: int = 0
    n_authors: int = 100
    n_retain_eval_authors: int = 10
    n_utility: int = 40
    vocab_size: int = 1024
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 2
    max_length: int = 96
    train_epochs: int = 40
    train_lr: float = 3e-3
    train_batch_size: int = 32
    unlearn_steps: int = 40
    unlearn_lr: float = 1e-3
    batch_size: int = 8
    diagnostics_every: int = 2
    max_new_tokens: int = 32
    eval_batch_size: int = 32
    lora_r: int = 0
    dtype: str = "float32"
    template: str = "plain"
    cache_dir: str = ""
    threads: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_choice("benchmark", self.benchmark, ("tinytofu", "tofu"))
        if not (self.split.startswith("forget") and self.split[6:].isdigit()):
            raise ConfigError(f"split: expected 'forgetNN' (forget01, forget05, forget10), received {self.split!r}")
        if self.benchmark == "tinytofu":
            check_choice("split", self.split, ("forget01", "forget05", "forget10"))
        for name in (
            "n_authors",
            "vocab_size",
            "n_layer",
            "n_embd",
            "n_head",
            "max_length",
            "train_epochs",
            "train_batch_size",
            "unlearn_steps",
            "batch_size",
            "max_new_tokens",
            "eval_batch_size",
            "threads",
            "n_retain_eval_authors",
            "n_utility",
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
        check_choice("template", self.template, ("plain", "chat"))
        check_choice("device", self.device, ("cpu", "cuda", "auto"))
        if (
            self.benchmark == "tinytofu"
            and 4 * split_fraction("forget10", self.n_authors) + max(self.n_retain_eval_authors, 1) * 2 > self.n_authors
        ):
            raise ConfigError(
                f"n_authors: expected enough authors for forget10, validation and retain-eval blocks, "
                f"received {self.n_authors} with n_retain_eval_authors={self.n_retain_eval_authors}"
            )

    @property
    def prompt(self) -> PromptTemplate:
        """The prompt template."""
        return PromptTemplate(use_chat_template=self.template == "chat")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was requested but torch sees no CUDA device")
    return torch.device(name)


def _cache(cfg: LMExperimentConfig) -> Path:
    return Path(cfg.cache_dir or os.environ.get("OFMU_CACHE", "") or ".ofmu_cache")


# ---------------------------------------------------------------- TinyTOFU data and models


@dataclass(frozen=True)
class _Tiny:
    data: TinyTofu
    split: TofuSplit
    val: TofuSplit
    val_retain_train: tuple[QAItem, ...]


def _tiny_config(cfg: LMExperimentConfig) -> TinyTofuConfig:
    return TinyTofuConfig(
        n_authors=cfg.n_authors,
        seed=cfg.data_seed,
        n_retain_eval_authors=cfg.n_retain_eval_authors,
        n_real_authors=cfg.n_utility,
        n_world_facts=cfg.n_utility,
    )


def tiny_data(cfg: LMExperimentConfig) -> _Tiny:
    """The TinyTOFU split and its validation split (disjoint authors; see the module docstring)."""
    data = generate_tinytofu(_tiny_config(cfg))
    split = data.split(cfg.split)
    k = len(data.forget_authors(cfg.split))
    n = cfg.n_authors
    forget_ids = set(data.forget_authors(cfg.split))
    val_forget = set(range(n - 2 * k, n - k)) - forget_ids  # the k trained authors before the forget block
    if len(val_forget) != k:  # pragma: no cover - guarded by the config check
        raise DataError(f"validation split: expected {k} authors, found {len(val_forget)}")
    m = cfg.n_retain_eval_authors
    val_util = set(range(m, 2 * m))
    k_max = split_fraction("forget10", n)
    hold_ids = {a.index for a in data.holdout_authors[k_max : k_max + k]}
    val = TofuSplit(
        name=f"val-{cfg.split}",
        forget=tuple(q for q in data.qa if q.author in val_forget),
        retain=(),
        retain_eval=tuple(q for q in data.qa if q.author in val_util),
        holdout=tuple(q for q in data.holdout_qa if q.author in hold_ids),
        real_authors=(),
        world_facts=(),
    )
    val_retain_train = tuple(q for q in data.qa if q.author not in val_forget)
    return _Tiny(data, split, val, val_retain_train)


def _texts(data: TinyTofu) -> list[str]:
    out: list[str] = []
    for q in data.qa + data.holdout_qa + data.real_authors + data.world_facts:
        out += [q.question, q.answer, q.paraphrased_answer, *q.perturbed_answers, q.idk_answer]
    return out


def _model_recipe(cfg: LMExperimentConfig, data: TinyTofu, kind: str, items: Sequence[QAItem]) -> dict[str, Any]:
    ids = hashlib.sha256(json.dumps([[q.question, q.answer] for q in items]).encode()).hexdigest()
    return {
        "version": CACHE_VERSION,
        "kind": kind,
        "data": data.fingerprint(),
        "train_items": ids,
        "vocab_size": cfg.vocab_size,
        "n_layer": cfg.n_layer,
        "n_embd": cfg.n_embd,
        "n_head": cfg.n_head,
        "max_length": cfg.max_length,
        "epochs": cfg.train_epochs,
        "lr": cfg.train_lr,
        "batch_size": cfg.train_batch_size,
        "template": dataclasses.asdict(cfg.prompt),
        "init_seed": 0,
    }


def tiny_model_dir(cfg: LMExperimentConfig, tiny: _Tiny, kind: str) -> Path:
    """Cache directory of the TinyTOFU ``kind`` model ("target", "retain" or "valretain"), trained on a miss."""
    items = {"target": tiny.data.qa, "retain": tiny.split.retain, "valretain": tiny.val_retain_train}[kind]
    train_items = tuple(items) + tiny.data.real_authors + tiny.data.world_facts
    recipe = _model_recipe(cfg, tiny.data, kind, train_items)

    def build() -> tuple[Any, Any]:
        tok = train_tokenizer(_texts(tiny.data), vocab_size=cfg.vocab_size)
        shape = TinyGPT2Config(
            n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head, n_positions=max(cfg.max_length, 32)
        )
        model = build_tiny_gpt2(tok, shape, seed=0)
        tc = TrainConfig(
            epochs=cfg.train_epochs, batch_size=cfg.train_batch_size, lr=cfg.train_lr, max_length=cfg.max_length, seed=0
        )
        hist = train_causal_lm(model, tok, [(q.question, q.answer) for q in train_items], cfg.prompt, tc)
        log.info("%s model: final training loss %.4f", kind, hist[-1])
        return model, tok

    return cached_model_dir(_cache(cfg), kind, recipe, build)


def _cached_eval(
    cfg: LMExperimentConfig, model_dir: Path, split: TofuSplit, tag: str, retain_logs: RetainLogs | None = None
) -> dict[str, Any]:
    path = model_dir.parent / f"{model_dir.name}.{tag}.eval.json"
    key = hashlib.sha256(
        json.dumps(
            [
                [q.to_json() for q in split.forget + split.retain_eval + split.holdout],
                cfg.max_new_tokens,
                cfg.max_length,
            ]
        ).encode()
    ).hexdigest()
    if path.is_file():
        rec = read_json(path, "cached evaluation")
        if isinstance(rec, dict) and rec.get("key") == key:
            return dict(rec["eval"])
    model, tok = load_causal_lm(model_dir, cfg.dtype, str(_device(cfg.device)))
    ev = evaluate_tofu(
        model,
        tok,
        split,
        cfg.prompt,
        retain_logs=retain_logs,
        batch_size=cfg.eval_batch_size,
        max_length=cfg.max_length,
        max_new_tokens=cfg.max_new_tokens,
    )
    atomic_write_json(path, {"key": key, "eval": ev})
    return ev


def retain_logs_from_eval(ev: Mapping[str, Any], source: str = "") -> RetainLogs:
    """The forget truth ratios and min-k AUC of an evaluation, as retain logs."""
    vbi = ev["forget_truth_ratio"]["value_by_index"]
    tr = tuple(float(vbi[k]["score"]) for k in sorted(vbi, key=int))
    auc = ev.get("mia_min_k", {}).get("agg_value")
    return RetainLogs(tr, None if auc is None else float(auc), source)


# ---------------------------------------------------------------- batches and runs


class _Stream:
    """Infinite, seeded stream of shuffled LM mini-batches (items attached for relabelling)."""

    def __init__(
        self, enc: Sequence[EncodedQA], items: Sequence[QAItem], pad: int, bs: int, seed: int, device: torch.device
    ) -> None:
        if not enc:
            raise DataError("stream: expected at least one example, received none")
        self.enc, self.items, self.pad, self.bs, self.device = list(enc), list(items), pad, bs, device
        self.gen = torch.Generator().manual_seed(seed)
        self._order: list[int] = []

    def __iter__(self) -> Iterator[LMBatch]:
        return self

    def __next__(self) -> LMBatch:
        if len(self._order) < self.bs:
            self._order += torch.randperm(len(self.enc), generator=self.gen).tolist()
        idx, self._order = self._order[: self.bs], self._order[self.bs :]
        b = collate_qa([self.enc[i] for i in idx], self.pad, idx, [self.items[i] for i in idx])
        return b.to(self.device)


def run_lm_method(
    method: Any,
    model_dir: Path,
    forget: Sequence[QAItem],
    retain: Sequence[QAItem],
    cfg: LMExperimentConfig,
    seed: int,
) -> tuple[MethodResult, Any, Any]:
    """Load the model from ``model_dir``, unlearn ``forget`` while keeping ``retain``; returns (result, model, tok)."""
    device = _device(cfg.device)
    model, tok = load_causal_lm(model_dir, cfg.dtype, str(device))
    pad = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)

    def enc(items: Sequence[QAItem]) -> list[EncodedQA]:
        return [encode_qa(tok, q.question, q.answer, cfg.prompt, cfg.max_length) for q in items]

    streams = (
        _Stream(enc(forget), forget, pad, cfg.batch_size, seed * 2 + 11, device),
        _Stream(enc(retain), retain, pad, cfg.batch_size, seed * 2 + 12, device),
    )
    adapter = CausalLMAdapter(tok, cfg.prompt, cfg.max_length)
    res, out = run_on_streams(method, model, adapter, streams, seed, device, cfg.lora_r, cfg.diagnostics_every)
    return res, out, tok


def run_on_streams(
    method: Any,
    model: Any,
    adapter: CausalLMAdapter,
    streams: tuple[Iterator[LMBatch], Iterator[LMBatch]],
    seed: int,
    device: torch.device,
    lora_r: int = 0,
    diagnostics_every: int = 0,
) -> tuple[MethodResult, Any]:
    """Run ``method`` on ``model`` (a frozen copy is the reference) with forget/retain batch streams.

    With ``lora_r > 0`` the model is wrapped in LoRA adapters first (only they train).
    """
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    if lora_r > 0:
        model = apply_lora(model, r=lora_r, alpha=2 * lora_r)
    model.train()
    records: list[StepRecord] = []
    ctx = UnlearnContext(
        model=model,
        reference=reference,
        adapter=adapter,
        forget=streams[0],
        retain=streams[1],
        seed=seed,
        device=device,
        diagnostics=records.append if diagnostics_every else None,
        diagnostics_every=diagnostics_every,
    )
    res: MethodResult = method.run(ctx)
    res.model.eval()
    return res, res.model


def _history(records: Sequence[Any]) -> list[dict[str, Any]]:
    return [dict(h) if isinstance(h, Mapping) else dataclasses.asdict(h) for h in records]


# ---------------------------------------------------------------- argument handling


def _get(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    v = getattr(args, name, default)
    return default if v is None else v


def _options(args: argparse.Namespace) -> dict[str, str]:
    return parse_option_pairs(_get(args, "option", []))


def write_run_artifacts(out: Path, model: Any, tok: Any, cfg: Any, mcfg: Any, history: Any) -> None:
    """Save an unlearning run: the model (LoRA merged), its experiment and method configs, its history."""
    to_save = model.merge_and_unload() if cfg.lora_r > 0 and hasattr(model, "merge_and_unload") else model
    save_causal_lm(to_save, tok, out / "model")
    atomic_write_text(out / "experiment.toml", config_to_toml({"experiment": config_to_dict(cfg)}))
    atomic_write_text(out / "method.toml", config_to_toml({"method": config_to_dict(mcfg)}))
    atomic_write_json(out / "history.json", _history(history))


def model_dir_arg(args: argparse.Namespace) -> Path:
    """The ``--model`` directory; an ``ofmu unlearn`` output directory resolves to its ``model/``."""
    mdir = Path(_get(args, "model", ""))
    if not str(mdir):
        raise ConfigError("--model: expected a model directory, received none")
    if (mdir / "model" / "config.json").is_file():
        mdir = mdir / "model"
    return mdir


def _toml(args: argparse.Namespace) -> dict[str, Any]:
    path = _get(args, "config")
    return load_toml_file(path) if path else {}


def experiment_config(args: argparse.Namespace) -> LMExperimentConfig:
    """``[experiment]`` of ``--config``, ``--quick`` defaults, flags, then ``--option experiment.X=V``."""
    data: dict[str, Any] = dict(_toml(args).get("experiment", {}))
    if _get(args, "quick", False):
        for qk, qv in QUICK.items():
            data.setdefault(qk, qv)
    data["benchmark"] = _get(args, "benchmark", "tinytofu")
    for flag, key in (("split", "split"), ("seed", "seed"), ("device", "device"), ("threads", "threads")):
        if _get(args, flag) is not None:
            data[key] = getattr(args, flag)
    for k, v in _options(args).items():
        if k.startswith("experiment."):
            data[k.split(".", 1)[1]] = v
    return config_from_dict(LMExperimentConfig, data, prefix="experiment.")


def _method_config(args: argparse.Namespace, spec: Any, cfg: Any, single: bool) -> dict[str, Any]:
    """A method's options: steps/lr from the experiment config ``cfg``, then TOML, then ``--option``."""
    toml = _toml(args)
    opts: dict[str, Any] = {"steps": cfg.unlearn_steps, "lr": cfg.unlearn_lr}
    opts.update(toml.get("method", {}) if single else {})
    opts.update(toml.get("methods", {}).get(spec.name, {}))
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    for k, v in _options(args).items():
        if k.startswith("experiment."):
            continue
        if "." in k:
            m, f = k.split(".", 1)
            if m == spec.name:
                opts[f] = v
        elif k in fields or single:
            opts[k] = v
    return opts


# ---------------------------------------------------------------- unlearn


def _prepare(cfg: LMExperimentConfig, args: argparse.Namespace) -> tuple[Path, TofuSplit, RetainLogs | None]:
    """Model directory, evaluation split and retain logs for one run."""
    if cfg.benchmark == "tinytofu":
        tiny = tiny_data(cfg)
        target = tiny_model_dir(cfg, tiny, "target")
        if _get(args, "retain_logs"):
            logs: RetainLogs | None = read_retain_logs(args.retain_logs)
        else:
            retain = tiny_model_dir(cfg, tiny, "retain")
            logs = retain_logs_from_eval(_cached_eval(cfg, retain, tiny.split, cfg.split), str(retain))
        return target, tiny.split, logs
    from .data.tofu_files import load_tofu_split

    if not _get(args, "model") or not _get(args, "data"):
        raise ConfigError("--benchmark tofu: expected --model DIR (a local causal LM) and --data DIR (TOFU files)")
    split = load_tofu_split(args.data, cfg.split)
    logs = read_retain_logs(args.retain_logs) if _get(args, "retain_logs") else None
    return Path(args.model), split, logs


def unlearn_main(args: argparse.Namespace) -> int:
    """``ofmu unlearn --benchmark tinytofu|tofu``: one method, one seed; writes TOFU_EVAL/SUMMARY + model."""
    if not _get(args, "method"):
        raise ConfigError("--method: expected a method name, received none")
    cfg = experiment_config(args)
    torch.set_num_threads(cfg.threads)
    out = Path(_get(args, "out", f"unlearn_{cfg.benchmark}_{args.method}"))
    spec = get_method(args.method)
    mcfg = config_from_dict(spec.config_cls, _method_config(args, spec, cfg, single=True))
    key = hashlib.sha256(json.dumps([config_to_dict(cfg), spec.name, config_to_dict(mcfg)]).encode()).hexdigest()
    if _get(args, "resume", False) and (out / "run.json").is_file() and (out / "TOFU_SUMMARY.json").is_file():
        if read_json(out / "run.json", "run record").get("key") == key:
            sys.stdout.write(f"{out / 'TOFU_SUMMARY.json'} (already complete)\n")
            return 0
    model_dir, split, logs = _prepare(cfg, args)
    retain_items = split.retain or split.retain_eval
    if not retain_items:
        raise DataError("retain set: expected retainNN or retain_perturbed data for the retain loss, found none")
    if cfg.benchmark == "tinytofu":
        retain_items = tuple(retain_items) + split.real_authors + split.world_facts
    res, model, tok = run_lm_method(spec.method_cls(mcfg), model_dir, split.forget, retain_items, cfg, cfg.seed)
    ev = evaluate_tofu(
        model,
        tok,
        split,
        cfg.prompt,
        retain_logs=logs,
        batch_size=cfg.eval_batch_size,
        max_length=cfg.max_length,
        max_new_tokens=cfg.max_new_tokens,
    )
    write_tofu_eval(out, ev)
    write_run_artifacts(out, model, tok, cfg, mcfg, res.history)
    summary = {k: v["agg_value"] for k, v in ev.items()}
    atomic_write_json(
        out / "run.json",
        {"key": key, "method": spec.name, "status": res.status, "steps": res.steps, "wall_time_s": res.wall_time_s},
    )
    fq, mu = summary.get("forget_quality"), summary.get("model_utility")
    sys.stdout.write(
        f"{spec.name} on {cfg.benchmark} {cfg.split} (seed {cfg.seed}): forget_quality "
        f"{'n/a' if fq is None else f'{fq:.3g}'}, model_utility {'n/a' if mu is None else f'{mu:.3f}'}, "
        f"RTE {res.wall_time_s:.1f}s\nwrote {out / 'TOFU_EVAL.json'}\n"
    )
    return 0 if res.status == "completed" else 1


# ---------------------------------------------------------------- eval


def eval_main(args: argparse.Namespace) -> int:
    """``ofmu eval --benchmark tofu|tinytofu --model DIR [--data DIR] [--retain-logs FILE] --out DIR``."""
    cfg = experiment_config(args)
    torch.set_num_threads(cfg.threads)
    mdir = model_dir_arg(args)
    if cfg.benchmark == "tinytofu":
        tiny = tiny_data(cfg)
        split = tiny.split
        if _get(args, "retain_logs"):
            logs: RetainLogs | None = read_retain_logs(args.retain_logs)
        else:
            retain = tiny_model_dir(cfg, tiny, "retain")
            logs = retain_logs_from_eval(_cached_eval(cfg, retain, tiny.split, cfg.split), str(retain))
    else:
        from .data.tofu_files import load_tofu_split

        if not _get(args, "data"):
            raise ConfigError("--data: expected a TOFU data directory, received none")
        split = load_tofu_split(args.data, cfg.split)
        logs = read_retain_logs(args.retain_logs) if _get(args, "retain_logs") else None
    model, tok = load_causal_lm(mdir, cfg.dtype, str(_device(cfg.device)))
    ev = evaluate_tofu(
        model,
        tok,
        split,
        cfg.prompt,
        retain_logs=logs,
        batch_size=cfg.eval_batch_size,
        max_length=cfg.max_length,
        max_new_tokens=cfg.max_new_tokens,
    )
    out = Path(_get(args, "out", "eval_out"))
    p1, _ = write_tofu_eval(out, ev)
    fq = ev["forget_quality"]["agg_value"]
    mu = ev.get("model_utility", {}).get("agg_value")
    sys.stdout.write(
        f"forget_quality {'n/a' if fq is None else f'{fq:.3g}'}, model_utility "
        f"{'n/a' if mu is None else f'{mu:.3f}'}\nwrote {p1}\n"
    )
    return 0


# ---------------------------------------------------------------- bench


REPORT = (
    "forget_quality",
    "model_utility",
    "forget_truth_ratio",
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "retain_Q_A_Prob",
    "mia_min_k",
    "privleak",
    "extraction_strength",
    "RTE",
)


def validation_score(ev: Mapping[str, Any], val_retain_logs: RetainLogs) -> tuple[float, float, float]:
    """(score, FQ_val, MU_val) of a validation evaluation; score = log10(FQ_val) + log10(MU_val)."""
    tr = [float(v["score"]) for v in ev["forget_truth_ratio"]["value_by_index"].values()]
    fq = forget_quality(tr, val_retain_logs.forget_tr) or 0.0
    parts = [float(ev[k]["agg_value"]) for k in ("retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio")]
    mu = 0.0 if min(parts) <= 0 else float(len(parts) / sum(1.0 / p for p in parts))
    score = math.log10(max(fq, 1e-300)) + math.log10(max(mu, 1e-300))
    return score, fq, mu


def _candidates(spec: Any, args: argparse.Namespace, cfg: LMExperimentConfig, budget: int, seed: int) -> list[Any]:
    from .vision_bench import sample_configs

    base = _method_config(args, spec, cfg, single=False)
    fixed = {k: v for k, v in base.items() if k not in ("lr",)}
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    fixed = {k: v for k, v in fixed.items() if k in fields}
    cands = sample_configs(spec.config_cls, fixed, budget, seed=seed, steps=cfg.unlearn_steps)
    cands[0] = config_from_dict(spec.config_cls, {**config_to_dict(cands[0]), "lr": base["lr"]})
    return cands


def _resolve(spec: str) -> list[str]:
    if spec.strip().lower() == "all":
        return list(LM_METHODS)
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if not names:
        raise ConfigError(f"--methods: expected 'all' or a comma-separated list, received {spec!r}")
    for n in names:
        if n not in LM_METHODS:
            raise ConfigError(f"--methods: {n!r} is not a language-model method; choose from {', '.join(LM_METHODS)}")
    return names


def _agg(values: Sequence[float | None]) -> tuple[float, float]:
    arr = np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """The fair TinyTOFU comparison of the module docstring; writes results and plots to ``--out``."""
    cfg0 = experiment_config(args)
    if cfg0.benchmark != "tinytofu":
        raise ConfigError(f"bench: expected --benchmark tinytofu, received {cfg0.benchmark!r}")
    torch.set_num_threads(cfg0.threads)
    quick = bool(_get(args, "quick", False))
    n_seeds = int(_get(args, "seeds", 3))
    budget = int(_get(args, "budget", 2 if quick else 4))
    if n_seeds < 1 or budget < 1:
        raise ConfigError(f"--seeds/--budget: expected >= 1, received {n_seeds}/{budget}")
    seeds = [cfg0.seed + i for i in range(n_seeds)]
    methods = _resolve(str(_get(args, "methods", "all")))
    out = Path(_get(args, "out", "bench_tinytofu"))
    tiny = tiny_data(cfg0)
    target = tiny_model_dir(cfg0, tiny, "target")
    retain = tiny_model_dir(cfg0, tiny, "retain")
    valretain = tiny_model_dir(cfg0, tiny, "valretain")
    logs = retain_logs_from_eval(_cached_eval(cfg0, retain, tiny.split, cfg0.split), str(retain))
    val_logs = retain_logs_from_eval(_cached_eval(cfg0, valretain, tiny.val, "val"), str(valretain))
    retain_ev = _cached_eval(cfg0, retain, tiny.split, cfg0.split + ".self", logs)
    target_ev = _cached_eval(cfg0, target, tiny.split, cfg0.split + ".target", logs)
    util = tiny.data.real_authors + tiny.data.world_facts
    per_seed: dict[str, dict[int, dict[str, float | None]]] = {}

    def report(ev: Mapping[str, Any], rte: float) -> dict[str, float | None]:
        row = {
            k: (None if ev.get(k, {}).get("agg_value") is None else float(ev[k]["agg_value"]))
            for k in REPORT
            if k != "RTE"
        }
        row["RTE"] = rte
        return row

    per_seed["retrain (retain model)"] = {s: report(retain_ev, 0.0) for s in seeds}
    per_seed["target (no unlearning)"] = {s: report(target_ev, 0.0) for s in seeds}
    selected: dict[str, Any] = {}
    search: dict[str, list[dict[str, Any]]] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    skipped: list[str] = []
    failed: dict[str, str] = {}
    runs = out / "runs"
    resume = bool(_get(args, "resume", False))
    for name in methods:
        try:
            spec = get_method(name)
        except MethodUnavailableError as exc:
            log.warning("skipping %s: %s", name, exc)
            skipped.append(name)
            continue
        try:
            cands = _candidates(spec, args, cfg0, budget, cfg0.seed)
            rows: list[dict[str, Any]] = []
            forget_authors = {x.author for x in tiny.split.forget}
            val_retain = tuple(q for q in tiny.val_retain_train if q.author not in forget_authors)
            for i, mc in enumerate(cands):

                def candidate(mc: Any = mc, spec: Any = spec, val_retain: Any = val_retain) -> dict[str, Any]:
                    res, model, tok = run_lm_method(
                        spec.method_cls(mc), target, tiny.val.forget, val_retain + util, cfg0, seeds[0]
                    )
                    ev = evaluate_tofu(
                        model,
                        tok,
                        tiny.val,
                        cfg0.prompt,
                        batch_size=cfg0.eval_batch_size,
                        max_length=cfg0.max_length,
                        max_new_tokens=cfg0.max_new_tokens,
                    )
                    ok = res.status == "completed"
                    sc, f, m = validation_score(ev, val_logs) if ok else (-math.inf, 0.0, 0.0)
                    return {"score": sc, "fq_val": f, "mu_val": m, "status": res.status}

                rec = _resumable(
                    runs / f"{name}-search{i}.json",
                    [config_to_dict(cfg0), name, config_to_dict(mc), "val"],
                    resume,
                    candidate,
                )
                score, fq, mu = float(rec["score"]), float(rec["fq_val"]), float(rec["mu_val"])
                rows.append(
                    {"config": config_to_dict(mc), "score": score, "fq_val": fq, "mu_val": mu, "status": rec["status"]}
                )
                log.info("%s candidate %d: val score %.3f (FQ %.3g, MU %.3f)", name, i, score, fq, mu)
            best = cands[int(np.argmax([r["score"] for r in rows]))]
            search[name], selected[name] = rows, config_to_dict(best)
            per_seed[name] = {}
            for s in seeds:

                def seed_run(s: int = s, best: Any = best, spec: Any = spec, name: str = name) -> dict[str, Any]:
                    res, model, tok = run_lm_method(
                        spec.method_cls(best), target, tiny.split.forget, tiny.split.retain + util, cfg0, s
                    )
                    ev = evaluate_tofu(
                        model,
                        tok,
                        tiny.split,
                        cfg0.prompt,
                        retain_logs=logs,
                        batch_size=cfg0.eval_batch_size,
                        max_length=cfg0.max_length,
                        max_new_tokens=cfg0.max_new_tokens,
                    )
                    write_tofu_eval(runs / f"{name}-seed{s}", ev)
                    row = report(ev, res.wall_time_s)
                    if res.status != "completed":
                        row = {k: (v if k == "RTE" else None) for k, v in row.items()}
                    return {"row": row, "history": _history(res.history)}

                rec = _resumable(
                    runs / f"{name}-seed{s}.json",
                    [config_to_dict(cfg0), name, config_to_dict(best), "test", s],
                    resume,
                    seed_run,
                )
                per_seed[name][s] = {k: (None if v is None else float(v)) for k, v in rec["row"].items()}
                if s == seeds[0]:
                    histories[name] = list(rec["history"])
        except Exception as exc:  # a crashing method is reported, the comparison goes on
            log.exception("method %s failed", name)
            failed[name] = f"{type(exc).__name__}: {exc}"[:300]
            per_seed.pop(name, None)
            selected.pop(name, None)
    summary = {n: {k: _agg([d[s][k] for s in seeds]) for k in REPORT} for n, d in per_seed.items()}
    results = {
        "benchmark": "tinytofu",
        "split": cfg0.split,
        "seeds": seeds,
        "budget": budget,
        "steps": cfg0.unlearn_steps,
        "quick": quick,
        "experiment": config_to_dict(cfg0),
        "selection": "max log10(FQ_val) + log10(MU_val) on a validation split with disjoint authors",
        "selected": selected,
        "search": search,
        "per_seed": {n: {str(s): v for s, v in d.items()} for n, d in per_seed.items()},
        "summary": {n: {k: list(v) for k, v in d.items()} for n, d in summary.items()},
        "skipped": skipped,
        "failed": failed,
    }
    _write_bench(out, results, summary, histories)
    return results


def _resumable(path: Path, key_parts: Any, resume: bool, fn: Any) -> dict[str, Any]:
    """Run ``fn()`` and store its JSON record at ``path``; with ``resume``, reuse a record of the same key."""
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:20]
    if resume and path.is_file():
        rec = read_json(path, "bench run record")
        if isinstance(rec, dict) and rec.get("key") == key:
            log.info("resume: reusing %s", path)
            return rec
    rec = dict(fn())
    rec["key"] = key
    atomic_write_json(path, rec)
    return rec


def _fmt(m: float, s: float, fmt: str = ".3f") -> str:
    if math.isnan(m):
        return "n/a"
    return f"{m:{fmt}} ± {s:{fmt}}"


def results_markdown(results: Mapping[str, Any], summary: Mapping[str, Mapping[str, tuple[float, float]]]) -> str:
    """The results table (mean ± std over seeds) as Markdown."""
    lines = [
        f"# TinyTOFU {results['split']}: {len(results['seeds'])} seeds, budget {results['budget']} "
        f"configs/method, {results['steps']} steps",
        "",
        "| method | forget quality ↑ | model utility ↑ | forget TR | forget prob | forget ROUGE | retain prob "
        "| MIA min-k AUC | privleak | extraction | RTE (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, s in summary.items():
        cells = (
            [_fmt(*s["forget_quality"], ".2e"), _fmt(*s["model_utility"])]
            + [
                _fmt(*s[k])
                for k in ("forget_truth_ratio", "forget_Q_A_Prob", "forget_Q_A_ROUGE", "retain_Q_A_Prob", "mia_min_k")
            ]
            + [_fmt(*s["privleak"], ".1f"), _fmt(*s["extraction_strength"]), _fmt(*s["RTE"], ".2f")]
        )
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", f"Selection: {results['selection']} (never the reported sets).", ""]
    for n, c in results["selected"].items():
        shown = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in c.items()}
        lines.append(f"- {n}: {shown}")
    if results["skipped"]:
        lines += ["", f"Skipped (not available): {', '.join(results['skipped'])}"]
    for n, why in results.get("failed", {}).items():
        lines += ["", f"Failed: {n}: {why}"]
    return "\n".join(lines) + "\n"


def _plot_tradeoff(summary: Mapping[str, Mapping[str, tuple[float, float]]], path: Path, title: str) -> None:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plots import pareto_front

    names = [n for n in summary if not math.isnan(summary[n]["forget_quality"][0])]
    fig = Figure(figsize=(7, 5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    pts = [(math.log10(max(summary[n]["forget_quality"][0], 1e-300)), summary[n]["model_utility"][0]) for n in names]
    from matplotlib import colormaps

    colors = [colormaps["tab20"](i % 20) for i in range(len(names))]
    for i, n in enumerate(names):
        fq_m, fq_s = summary[n]["forget_quality"]
        mu_m, mu_s = summary[n]["model_utility"]
        ax.errorbar(
            fq_m,
            mu_m,
            yerr=mu_s,
            fmt="*" if n.startswith("retrain") else "o",
            capsize=3,
            label=n,
            ms=12 if n.startswith("retrain") else 6,
            color=colors[i],
        )
    # the front of the unlearning methods (the retain model is the target point, not a competitor)
    idx = [i for i, n in enumerate(names) if not n.startswith(("retrain", "target"))]
    front = [idx[k] for k in pareto_front([pts[i] for i in idx])]
    ax.plot(
        [10 ** pts[i][0] for i in front],
        [pts[i][1] for i in front],
        "--",
        color="grey",
        lw=1,
        label="Pareto front (methods)",
    )
    ax.set_xscale("log")
    ax.set_xlabel("forget quality (KS p-value vs retain model, log scale) →")
    ax.set_ylabel("model utility →")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _write_bench(
    out: Path,
    results: dict[str, Any],
    summary: Mapping[str, Mapping[str, tuple[float, float]]],
    histories: Mapping[str, list[dict[str, Any]]],
) -> None:
    from .plots import plot_conflict

    atomic_write_text(out / "results.md", results_markdown(results, summary))
    atomic_write_json(out / "results.json", results)
    title = f"TinyTOFU {results['split']}"
    _plot_tradeoff(summary, out / "tradeoff.png", f"{title}: forget quality vs model utility (mean ± std)")
    conflict = {n: histories[n] for n in ("ofmu", "graddiff", "npo") if n in histories}
    plot_conflict(conflict, out / "conflict.png", title=f"{title}: cos(∇L_f, ∇L_r), seed {results['seeds'][0]}")


def bench_main(args: argparse.Namespace) -> int:
    """``ofmu bench --benchmark tinytofu``: runs :func:`run_bench`, prints the table."""
    out = Path(_get(args, "out", "bench_tinytofu"))
    args.out = str(out)
    run_bench(args)
    sys.stdout.write((out / "results.md").read_text(encoding="utf-8"))
    return 0

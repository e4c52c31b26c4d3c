"""TOFU-style experiments: the configuration, TinyTOFU's data and validation split, cached models and evals.

**TinyTOFU**: data from :mod:`~ofmu_opt.unlearning.data.tinytofu`, a byte-level BPE tokenizer trained on
it, a tiny GPT-2. The *target* model is fine-tuned on the full set, the *retain* model on the retain split
of ``split``; both also learn the two utility sets. Both are cached under ``cache_dir`` by a hash of
their recipe. The retain model's evaluation supplies the per-sample forget truth ratios for
forget_quality and the min-k AUC for privleak.

**Validation split** (for the search, never the reported sets): its forget authors are the ``k`` trained
authors just before the reported forget block, its holdout authors come after the reported holdout
authors, its utility set is a block of retain authors outside the retain evaluation set; a *validation
retain model* (trained without the validation forget authors) provides the reference truth ratios.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le

from ..._config import Validated
from ..._io import atomic_write_json, read_json
from ...errors import ConfigError, DataError
from ..data.tinytofu import QAItem, TinyTofu, TinyTofuConfig, TofuSplit, generate_tinytofu, split_fraction
from ..lm_adapter import CausalLMAdapter
from ..metrics.tofu import RetainLogs, evaluate_tofu, forget_quality
from ..models.hf import (
    PromptTemplate,
    TinyGPT2Config,
    TrainConfig,
    build_tiny_gpt2,
    cached_model_dir,
    encode_qa,
    load_causal_lm,
    train_causal_lm,
    train_tokenizer,
)
from .base import RunHooks, cache_root, resolve_device
from .lm_runs import LMStream, run_on_streams

__all__ = [
    "LMExperimentConfig",
    "TinyData",
    "cached_eval",
    "retain_logs_from_eval",
    "run_lm_method",
    "tiny_data",
    "tiny_model_dir",
    "validation_score",
]

log = logging.getLogger(__name__)

CACHE_VERSION = 1
Pos = Annotated[int, Ge(1), Le(1 << 20)]
Small = Annotated[int, Ge(1), Le(65_536)]
Rate = Annotated[float, Gt(0.0), Le(1e3)]


@dataclass(frozen=True)
class LMExperimentConfig(Validated):
    """Everything that defines a TOFU-style unlearning experiment (stored with every result).

    Attributes:
        benchmark: "tinytofu" or "tofu".
        split: "forget01", "forget05" or "forget10" (TOFU files: any "forgetNN").
        seed: unlearning seed (batch order, method randomness).
        data_seed: TinyTOFU generator seed.
        n_authors, n_retain_eval_authors, n_utility: TinyTOFU sizes (utility = real-authors and
            world-facts items each).
        vocab_size, n_layer, n_embd, n_head, max_length: tokenizer and tiny GPT-2 shape.
        train_epochs, train_lr, train_batch_size: target / retain fine-tuning.
        unlearn_steps, unlearn_lr, batch_size: unlearning steps, the benchmark's default learning rate
            (candidate 0 of the search; ``--option lr=`` overrides), forget / retain batch size.
        diagnostics_every: gradient-conflict diagnostics period (0 = off).
        max_new_tokens, eval_batch_size: evaluation (real TOFU data: 200 new tokens and length 512 unless
            ``--quick``, as open-unlearning).
        lora_r: LoRA rank (0 = full fine-tuning).
        dtype: "float32" or "bfloat16" (loaded models).
        template: "plain" (Question:/Answer:) or "chat" (the tokenizer's chat template).
        mask_pad_labels: leave every answer token equal to the padding token out of the loss, as
            open-unlearning's collator does (it matters for chat models whose end-of-turn token is also
            the pad token; see docs/deviations.md). Off by default.
        cache_dir: model cache ("" = $OFMU_CACHE or ./.ofmu_cache).
        threads: torch CPU threads.
        device: "cpu", "cuda" or "auto".
    """

    benchmark: Literal["tinytofu", "tofu"] = "tinytofu"
    split: str = "forget05"
    seed: Annotated[int, Ge(0), Le(2**32 - 1)] = 0
    data_seed: Annotated[int, Ge(0), Le(2**32 - 1)] = 0
    n_authors: Annotated[int, Ge(1), Le(10_000)] = 100
    n_retain_eval_authors: Annotated[int, Ge(1), Le(10_000)] = 10
    n_utility: Annotated[int, Ge(1), Le(100_000)] = 40
    vocab_size: Annotated[int, Ge(1), Le(1 << 18)] = 1024
    n_layer: Annotated[int, Ge(1), Le(256)] = 2
    n_embd: Small = 64
    n_head: Annotated[int, Ge(1), Le(1024)] = 2
    max_length: Annotated[int, Ge(1), Le(1 << 17)] = 96
    train_epochs: Annotated[int, Ge(1), Le(100_000)] = 40
    train_lr: Rate = 3e-3
    train_batch_size: Pos = 32
    unlearn_steps: Annotated[int, Ge(1), Le(10**8)] = 40
    unlearn_lr: Rate = 1e-3
    batch_size: Pos = 8
    diagnostics_every: Annotated[int, Ge(0), Le(10**9)] = 2
    max_new_tokens: Annotated[int, Ge(1), Le(1 << 16)] = 32
    eval_batch_size: Pos = 32
    lora_r: Annotated[int, Ge(0), Le(65_536)] = 0
    dtype: Literal["float32", "bfloat16"] = "float32"
    template: Literal["plain", "chat"] = "plain"
    mask_pad_labels: bool = False
    cache_dir: str = ""
    threads: Annotated[int, Ge(1), Le(4096)] = 1
    device: Literal["cpu", "cuda", "auto"] = "cpu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.split.startswith("forget") and self.split[6:].isdigit()):
            raise ConfigError(f"split: expected 'forgetNN' (forget01, forget05, forget10), received {self.split!r}")
        if self.benchmark == "tinytofu":
            if self.split not in ("forget01", "forget05", "forget10"):
                raise ConfigError(f"split: expected one of 'forget01', 'forget05', 'forget10', received {self.split!r}")
            if 4 * split_fraction("forget10", self.n_authors) + self.n_retain_eval_authors * 2 > self.n_authors:
                raise ConfigError(
                    f"n_authors: expected enough authors for forget10, validation and retain-eval blocks, "
                    f"received {self.n_authors} with n_retain_eval_authors={self.n_retain_eval_authors}"
                )

    @property
    def prompt(self) -> PromptTemplate:
        """The prompt template."""
        return PromptTemplate(use_chat_template=self.template == "chat", mask_pad_labels=self.mask_pad_labels)

    @property
    def cache(self) -> Path:
        """The model cache directory."""
        return cache_root(self.cache_dir, "OFMU_CACHE", Path(".ofmu_cache"))


@dataclass(frozen=True)
class TinyData:
    """A TinyTOFU instance, its reported split, its validation split and the validation retain set."""

    data: TinyTofu
    split: TofuSplit
    val: TofuSplit

    @property
    def val_retain_train(self) -> tuple[QAItem, ...]:
        """What the validation retain model trains on: every trained author but the validation forget authors."""
        val_forget = {q.author for q in self.val.forget}
        return tuple(q for q in self.data.qa if q.author not in val_forget)

    @property
    def utility(self) -> tuple[QAItem, ...]:
        """The utility sets (real authors, world facts) the models train on."""
        return self.data.real_authors + self.data.world_facts


def tiny_data(cfg: LMExperimentConfig) -> TinyData:
    """The TinyTOFU split and its validation split (disjoint authors; see the module docstring)."""
    data = generate_tinytofu(TinyTofuConfig(n_authors=cfg.n_authors, seed=cfg.data_seed,
                                            n_retain_eval_authors=cfg.n_retain_eval_authors,
                                            n_real_authors=cfg.n_utility, n_world_facts=cfg.n_utility))
    split = data.split(cfg.split)
    forget_ids = set(data.forget_authors(cfg.split))
    k, n, m = len(forget_ids), cfg.n_authors, cfg.n_retain_eval_authors
    val_forget = set(range(n - 2 * k, n - k)) - forget_ids  # the k trained authors before the forget block
    if len(val_forget) != k:  # pragma: no cover - guarded by the config check
        raise DataError(f"validation split: expected {k} authors, found {len(val_forget)}")
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
    return TinyData(data, split, val)


def _texts(data: TinyTofu) -> list[str]:
    out: list[str] = []
    for q in data.qa + data.holdout_qa + data.real_authors + data.world_facts:
        out += [q.question, q.answer, q.paraphrased_answer, *q.perturbed_answers, q.idk_answer]
    return out


def tiny_model_dir(cfg: LMExperimentConfig, tiny: TinyData, kind: str) -> Path:
    """Cache directory of the TinyTOFU ``kind`` model ("target", "retain" or "valretain"), trained on a miss."""
    items = {"target": tiny.data.qa, "retain": tiny.split.retain, "valretain": tiny.val_retain_train}[kind]
    train_items = tuple(items) + tiny.utility
    ids = hashlib.sha256(json.dumps([[q.question, q.answer] for q in train_items]).encode()).hexdigest()
    recipe = {
        "version": CACHE_VERSION, "kind": kind, "data": tiny.data.fingerprint(), "train_items": ids,
        "vocab_size": cfg.vocab_size, "n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "n_head": cfg.n_head,
        "max_length": cfg.max_length, "epochs": cfg.train_epochs, "lr": cfg.train_lr,
        "batch_size": cfg.train_batch_size, "template": dataclasses.asdict(cfg.prompt), "init_seed": 0,
    }

    def build() -> tuple[Any, Any]:
        tok = train_tokenizer(_texts(tiny.data), vocab_size=cfg.vocab_size)
        shape = TinyGPT2Config(n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head,
                               n_positions=max(cfg.max_length, 32))
        model = build_tiny_gpt2(tok, shape, seed=0)
        tc = TrainConfig(epochs=cfg.train_epochs, batch_size=cfg.train_batch_size, lr=cfg.train_lr,
                         max_length=cfg.max_length, seed=0)
        hist = train_causal_lm(model, tok, [(q.question, q.answer) for q in train_items], cfg.prompt, tc)
        log.info("%s model: final training loss %.4f", kind, hist[-1])
        return model, tok

    return cached_model_dir(cfg.cache, kind, recipe, build)


def evaluate_split(cfg: LMExperimentConfig, model: Any, tok: Any, split: TofuSplit,
                   logs: RetainLogs | None = None) -> dict[str, Any]:
    """The TOFU evaluation of ``model`` on ``split`` with the experiment's generation settings."""
    return evaluate_tofu(model, tok, split, cfg.prompt, retain_logs=logs, batch_size=cfg.eval_batch_size,
                         max_length=cfg.max_length, max_new_tokens=cfg.max_new_tokens)


def cached_eval(cfg: LMExperimentConfig, model_dir: Path, split: TofuSplit, tag: str,
                logs: RetainLogs | None = None) -> dict[str, Any]:
    """The evaluation of a cached model, itself cached next to it (keyed by the split and the settings)."""
    path = model_dir.parent / f"{model_dir.name}.{tag}.eval.json"
    items = [q.to_json() for q in split.forget + split.retain_eval + split.holdout]
    key = hashlib.sha256(json.dumps([items, cfg.max_new_tokens, cfg.max_length]).encode()).hexdigest()
    if path.is_file():
        rec = read_json(path, "cached evaluation")
        if isinstance(rec, dict) and rec.get("key") == key and isinstance(rec.get("eval"), dict):
            return dict(rec["eval"])
    model, tok = load_causal_lm(model_dir, cfg.dtype, str(resolve_device(cfg.device)))
    ev = evaluate_split(cfg, model, tok, split, logs)
    atomic_write_json(path, {"key": key, "eval": ev})
    return ev


def retain_logs_from_eval(ev: Mapping[str, Any], source: str = "") -> RetainLogs:
    """The forget truth ratios and min-k AUC of an evaluation, as retain logs."""
    vbi = ev["forget_truth_ratio"]["value_by_index"]
    tr = tuple(float(vbi[k]["score"]) for k in sorted(vbi, key=int))
    auc = ev.get("mia_min_k", {}).get("agg_value")
    return RetainLogs(tr, None if auc is None else float(auc), source)


def validation_score(ev: Mapping[str, Any], val_retain_logs: RetainLogs) -> tuple[float, float, float]:
    """(score, FQ_val, MU_val) of a validation evaluation; score = log10(FQ_val) + log10(MU_val).

    MU_val is the harmonic mean of probability, ROUGE-L recall and truth ratio on the validation utility
    authors (higher is better).
    """
    tr = [float(v["score"]) for v in ev["forget_truth_ratio"]["value_by_index"].values()]
    fq = forget_quality(tr, val_retain_logs.forget_tr) or 0.0
    parts = [float(ev[k]["agg_value"]) for k in ("retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio")]
    mu = 0.0 if min(parts) <= 0 else float(len(parts) / sum(1.0 / p for p in parts))
    return math.log10(max(fq, 1e-300)) + math.log10(max(mu, 1e-300)), fq, mu


def run_lm_method(
    method: Any, model_dir: Path, forget: Sequence[QAItem], retain: Sequence[QAItem], cfg: LMExperimentConfig,
    seed: int, hooks: RunHooks | None = None,
) -> tuple[Any, Any, Any]:
    """Load the model from ``model_dir``, unlearn ``forget`` while keeping ``retain``; returns (result, model, tok)."""
    device = resolve_device(cfg.device)
    model, tok = load_causal_lm(model_dir, cfg.dtype, str(device))
    pad = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)

    def stream(items: Sequence[QAItem], s: int) -> LMStream:
        enc = [encode_qa(tok, q.question, q.answer, cfg.prompt, cfg.max_length) for q in items]
        return LMStream(enc, items, pad, cfg.batch_size, s, device)

    streams = (stream(forget, seed * 2 + 11), stream(retain, seed * 2 + 12))
    adapter = CausalLMAdapter(tok, cfg.prompt, cfg.max_length)
    res, out = run_on_streams(method, model, adapter, streams, seed, device, cfg.lora_r, cfg.diagnostics_every,
                              hooks)
    return res, out, tok

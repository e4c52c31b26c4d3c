"""Tiny GPT-2, LoRA, fine-tuning (transformers schedulers, bf16 autocast, gradient checkpointing), the
recipe-hashed model cache and greedy generation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...._io import atomic_write_json
from ....errors import ConfigError, DataError
from .text import EncodedQA, PromptTemplate, collate_qa, encode_prompt, encode_qa

if TYPE_CHECKING:
    import torch

__all__ = [
    "TinyGPT2Config",
    "TrainConfig",
    "apply_lora",
    "build_tiny_gpt2",
    "cached_model_dir",
    "config_dict",
    "greedy_generate",
    "model_max_positions",
    "recipe_hash",
    "set_gradient_checkpointing",
    "train_causal_lm",
    "train_encoded",
    "trainable_parameters",
]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class TinyGPT2Config:
    """Shape of the tiny GPT-2 (dropout off, so training draws no random numbers besides shuffling)."""

    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 128

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_embd", "n_head", "n_positions"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"TinyGPT2Config.{name}: expected a positive int, received {v!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"TinyGPT2Config.n_embd: expected a multiple of n_head={self.n_head}, received {self.n_embd}"
            )


def build_tiny_gpt2(tokenizer: Any, config: TinyGPT2Config, seed: int) -> Any:
    """A randomly initialised ``GPT2LMHeadModel`` sized for ``tokenizer``; the init uses ``seed`` only.

    The global torch RNG is forked, seeded and restored, so the caller's random state is untouched.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    cfg._attn_implementation = "eager"  # double backward (second-order methods such as OFMU) needs eager
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = GPT2LMHeadModel(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model

def apply_lora(
    model: Any, r: int = 8, alpha: int = 16, target_modules: Sequence[str] | None = None, dropout: float = 0.0
) -> Any:
    """Wrap ``model`` with LoRA adapters (``peft``); only adapter parameters stay trainable.

    Args:
        model: a causal LM.
        r: adapter rank.
        alpha: LoRA scaling numerator.
        target_modules: module names to adapt (GPT-2: ``c_attn``, ``c_proj``; default: peft's guess
            for the architecture, falling back to GPT-2's names).
        dropout: adapter dropout (0 keeps training free of random draws).
    """
    from peft import LoraConfig, get_peft_model

    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ConfigError(f"lora r: expected a positive int, received {r!r}")
    targets = list(target_modules) if target_modules else None
    if targets is None and getattr(model.config, "model_type", "") == "gpt2":
        targets = ["c_attn", "c_proj"]
    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        fan_in_fan_out=getattr(model.config, "model_type", "") == "gpt2",
    )
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing` (a FutureWarning on every LoRA run in
        # transformers 5.x); the call is peft's, the answer the same under the new name
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, cfg)


def trainable_parameters(model: Any) -> list[torch.nn.Parameter]:
    """The parameters with ``requires_grad`` (adapter parameters only under LoRA)."""
    return [p for p in model.parameters() if p.requires_grad]


_SCHEDULERS = (
    "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "inverse_sqrt",
)


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning recipe for the target / retain models.

    AdamW with a transformers learning-rate schedule (``scheduler``: a name of
    ``transformers.get_scheduler``; the default warms up linearly over ``warmup_steps`` from 0, then stays
    constant). ``bf16`` runs forward and backward under bfloat16 autocast (weights and optimizer state
    stay float32); ``gradient_checkpointing`` recomputes activations in the backward pass (less memory,
    about one more forward pass of time).
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    max_length: int = 96
    seed: int = 0
    scheduler: str = "constant_with_warmup"
    bf16: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_length"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"TrainConfig.{name}: expected a positive int, received {v!r}")
        if not (isinstance(self.lr, float | int) and self.lr > 0):
            raise ConfigError(f"TrainConfig.lr: expected a positive number, received {self.lr!r}")
        w = self.warmup_steps
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise ConfigError(f"TrainConfig.warmup_steps: expected a non-negative int, received {w!r}")
        if self.scheduler not in _SCHEDULERS:
            raise ConfigError(f"TrainConfig.scheduler: expected one of {', '.join(_SCHEDULERS)}, received "
                              f"{self.scheduler!r}")


def train_causal_lm(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    template: PromptTemplate,
    config: TrainConfig,
) -> list[float]:
    """Fine-tune ``model`` in place on ``(question, answer)`` pairs; loss on answer tokens only.

    Shuffling uses a ``torch.Generator`` seeded with ``config.seed``.

    Returns:
        The mean training loss of each epoch.
    """
    if not pairs:
        raise DataError("pairs: expected at least one training pair, received none")
    enc = [encode_qa(tokenizer, q, a, template, config.max_length) for q, a in pairs]
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    return train_encoded(model, enc, pad, config)


def train_encoded(model: Any, enc: Sequence[EncodedQA], pad: int, config: TrainConfig) -> list[float]:
    """Fine-tune ``model`` in place on already encoded examples (QA pairs or corpus chunks).

    Returns:
        The mean training loss of each epoch.
    """
    import torch
    from transformers import get_scheduler

    from ...._progress import progress

    if not enc:
        raise DataError("enc: expected at least one encoded example, received none")
    params = trainable_parameters(model)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = -(-len(enc) // config.batch_size)
    sched = get_scheduler(
        config.scheduler, opt, num_warmup_steps=config.warmup_steps, num_training_steps=config.epochs * per_epoch
    )
    gen = torch.Generator().manual_seed(config.seed)
    device = next(model.parameters()).device
    checkpointing = config.gradient_checkpointing and set_gradient_checkpointing(model, True)
    model.train()
    history: list[float] = []
    try:
        with progress("fine-tune", total=config.epochs * per_epoch, unit="step") as bar:
            for epoch in range(config.epochs):
                order = torch.randperm(len(enc), generator=gen).tolist()
                total, count = 0.0, 0
                for s in range(0, len(order), config.batch_size):
                    idx = order[s : s + config.batch_size]
                    b = collate_qa([enc[i] for i in idx], pad, idx).to(device)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                        out = model(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=b.labels)
                    opt.zero_grad(set_to_none=True)
                    out.loss.backward()
                    opt.step()
                    sched.step()
                    loss = float(out.loss.detach())
                    total += loss * len(idx)
                    count += len(idx)
                    bar.update(1, epoch=epoch + 1, loss=loss)
                history.append(total / count)
                logger.debug("epoch %d/%d: train loss %.4f", epoch + 1, config.epochs, history[-1])
    finally:
        if checkpointing:
            set_gradient_checkpointing(model, False)
    model.eval()
    return history


def set_gradient_checkpointing(model: Any, enabled: bool) -> bool:
    """Turn activation recomputation on or off for a transformers model (LoRA-wrapped or not).

    Uses the non-reentrant variant, which needs no gradient on the inputs, so it works when only LoRA
    adapters train. Returns False (and does nothing) when the model does not support it.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        logger.warning("gradient checkpointing: %s does not support it; ignored", type(base).__name__)
        return False
    kw = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.2 names
        if enabled:
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
        else:
            base.activation_checkpointing_disable()
    elif enabled:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    else:
        base.gradient_checkpointing_disable()
    return True


def recipe_hash(recipe: dict[str, Any]) -> str:
    """SHA-256 (hex, first 16 characters) of the canonical JSON of ``recipe``."""
    blob = json.dumps(recipe, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def cached_model_dir(
    cache_dir: str | os.PathLike[str],
    kind: str,
    recipe: dict[str, Any],
    build: Callable[[], tuple[Any, Any]],
) -> Path:
    """Return the cache directory of the model described by ``recipe``, training it on a miss.

    The entry is ``cache_dir/<kind>-<recipe_hash>``; ``build()`` returns ``(model, tokenizer)``. The
    entry is written to a temp directory and renamed into place (an entry that appeared meanwhile wins).
    """
    if not kind.replace("_", "").isalnum():
        raise ConfigError(f"kind: expected an alphanumeric name, received {kind!r}")
    base = Path(cache_dir)
    dest = base / f"{kind}-{recipe_hash(recipe)}"
    if (dest / "recipe.json").is_file():
        logger.info("cache hit: %s", dest)
        return dest
    logger.info("cache miss: training %s model into %s", kind, dest)
    model, tokenizer = build()
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / "recipe.json", recipe)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / "recipe.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


_CAPPED: set[tuple[int | None, int]] = set()  # (positions, asked) pairs already warned about


def model_max_positions(model: Any) -> int | None:
    """How many positions the model can attend to (``n_positions`` / ``max_position_embeddings``), if it says."""
    cfg = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def greedy_generate(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    template: PromptTemplate,
    max_new_tokens: int = 48,
    batch_size: int = 32,
) -> list[str]:
    """Greedy answers to ``questions``: cut at the first EOS, decoded without special tokens, stripped."""
    import torch

    eos = int(tokenizer.eos_token_id)
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
    device = next(model.parameters()).device
    out: list[str] = []
    was_training = model.training
    model.eval()
    from ...._progress import progress

    limit = model_max_positions(model)
    warned = (limit, max_new_tokens) in _CAPPED
    with torch.no_grad(), progress("generate", total=len(questions), unit="answer") as bar:
        for s in range(0, len(questions), batch_size):
            prompts = [encode_prompt(tokenizer, q, template) for q in questions[s : s + batch_size]]
            width = max(len(p) for p in prompts)
            new_tokens = max_new_tokens
            if limit is not None and width + new_tokens > limit:
                new_tokens = max(limit - width, 1)
                if not warned:
                    logger.warning("generation capped at %d new tokens (asked %d): the model has %d positions",
                                new_tokens, max_new_tokens, limit)
                    warned = True
                    _CAPPED.add((limit, max_new_tokens))
            ids = torch.full((len(prompts), width), pad, dtype=torch.long)
            mask = torch.zeros((len(prompts), width), dtype=torch.long)
            for i, p in enumerate(prompts):  # left padding
                ids[i, width - len(p) :] = torch.tensor(p)
                mask[i, width - len(p) :] = 1
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=eos,
            )
            for row in gen[:, width:].tolist():
                if eos in row:
                    row = row[: row.index(eos)]
                out.append(str(tokenizer.decode(row, skip_special_tokens=True)).strip())
            bar.update(len(prompts))
    model.train(was_training)
    return out


def config_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as a plain dict (for recipes)."""
    return dataclasses.asdict(cfg)

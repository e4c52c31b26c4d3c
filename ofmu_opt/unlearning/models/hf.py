"""Hugging Face causal language models: local tokenizers, tiny GPT-2, prompt formatting, caching, LoRA.

Everything here works offline: tokenizers are trained locally with the ``tokenizers`` package, models
are built from a :class:`transformers.GPT2Config` (random init under an explicit seed) or loaded from a
local directory with ``local_files_only=True``.

Prompt formatting is chat-style: ``user_start + question + user_end + assistant_start`` is the prompt,
``answer_prefix + answer`` followed by EOS is the answer; labels are ``-100`` on every prompt token, so
the loss covers the answer tokens only, EOS included. The prompt and the answer are tokenized separately
and concatenated, so the answer's token ids do not depend on the prompt.

Trained "target" and "retain" models are cached on disk under a content hash of their recipe
(:func:`cached_model_dir`): the model is written to a temporary directory next to the cache entry and
renamed into place, so a reader never sees a half-written model.

Example:
    >>> tok = train_tokenizer(["hello world", "hello there"], vocab_size=300)
    >>> enc = encode_qa(tok, "Who?", "hello world", PromptTemplate(), max_length=64)
    >>> enc.labels[: len(enc.input_ids) - enc.answer_len] == [-100] * (len(enc.input_ids) - enc.answer_len)
    True
    >>> enc.input_ids[-1] == tok.eos_token_id
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..._io import atomic_write_json
from ...errors import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:
    import torch

__all__ = [
    "EOS_TOKEN",
    "PAD_TOKEN",
    "EncodedQA",
    "LMBatch",
    "PromptTemplate",
    "TinyGPT2Config",
    "TrainConfig",
    "apply_lora",
    "build_tiny_gpt2",
    "cached_model_dir",
    "collate_qa",
    "encode_qa",
    "greedy_generate",
    "load_causal_lm",
    "make_batches",
    "recipe_hash",
    "save_causal_lm",
    "train_causal_lm",
    "train_encoded",
    "train_tokenizer",
    "trainable_parameters",
]

logger = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
IGNORE_INDEX = -100


@dataclass(frozen=True)
class PromptTemplate:
    """Chat-style prompt format.

    Attributes:
        user_start: text before the question.
        user_end: text after the question.
        assistant_start: text that opens the answer turn (end of the prompt).
        answer_prefix: text put in front of the answer (a space for BPE tokenizers).
        use_chat_template: when True and the tokenizer defines a chat template, the prompt is
            ``tokenizer.apply_chat_template([{"role": "user", "content": question}],
            add_generation_prompt=True)`` instead.
        add_bos: prepend the tokenizer's BOS token (when it has one) to the prompt.
    """

    user_start: str = "Question: "
    user_end: str = "\n"
    assistant_start: str = "Answer:"
    answer_prefix: str = " "
    use_chat_template: bool = False
    add_bos: bool = True


class EncodedQA(NamedTuple):
    """One tokenized example: ids, labels (``-100`` on the prompt) and the number of answer tokens."""

    input_ids: list[int]
    labels: list[int]
    answer_len: int
    prompt_len: int


class LMBatch(NamedTuple):
    """A causal-LM mini-batch (right-padded).

    Attributes:
        input_ids: ``[B, L]`` token ids.
        attention_mask: ``[B, L]`` 1 on real tokens.
        labels: ``[B, L]`` answer token ids, ``-100`` elsewhere.
        index: ``[B]`` positions of the examples in their data set.
        items: the source items (objects with ``question``, ``answer``, ``idk_answer``), for relabelling.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor  # type: ignore[assignment]
    items: tuple[Any, ...] = ()

    def to(self, device: Any) -> LMBatch:
        """Move the tensors to ``device``."""
        return LMBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.labels.to(device),
            self.index.to(device),
            self.items,
        )


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 1) -> Any:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    The tokenizer has ``<|endoftext|>`` as EOS (and BOS) and ``<|pad|>`` as padding token; decoding is
    byte-exact. Training is deterministic.

    Args:
        texts: the training texts.
        vocab_size: target vocabulary size (>= 260: 256 bytes plus the special tokens).
        min_frequency: minimum pair frequency for a merge.

    Raises:
        ConfigError: ``vocab_size`` too small.
        DataError: ``texts`` is empty.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 260:
        raise ConfigError(f"vocab_size: expected an int >= 260, received {vocab_size!r}")
    corpus = [t for t in texts if t]
    if not corpus:
        raise DataError("texts: expected at least one non-empty text to train the tokenizer, received none")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        model_max_length=4096,
    )


def _prompt_text(tokenizer: Any, question: str, template: PromptTemplate) -> str:
    if template.use_chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        return str(text)
    return f"{template.user_start}{question}{template.user_end}{template.assistant_start}"


def encode_prompt(tokenizer: Any, question: str, template: PromptTemplate) -> list[int]:
    """Token ids of the prompt for ``question`` (BOS first when the template asks and one exists)."""
    ids = list(tokenizer(_prompt_text(tokenizer, question, template), add_special_tokens=False)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    if template.add_bos and bos is not None and not template.use_chat_template:
        ids = [int(bos)] + ids
    return ids


def encode_qa(tokenizer: Any, question: str, answer: str, template: PromptTemplate, max_length: int = 128) -> EncodedQA:
    """Tokenize one question-answer pair with labels only on the answer tokens (EOS included).

    Args:
        tokenizer: a Hugging Face tokenizer with ``eos_token_id``.
        question: the question.
        answer: the answer (``template.answer_prefix`` is put in front of it).
        template: the prompt format.
        max_length: total length cap; the answer is truncated from the right (EOS kept last).

    Raises:
        DataError: the prompt alone leaves no room for an answer token.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("tokenizer: expected a tokenizer with an EOS token, received one without")
    prompt = encode_prompt(tokenizer, question, template)
    ans = list(tokenizer(template.answer_prefix + answer, add_special_tokens=False)["input_ids"])
    room = max_length - len(prompt) - 1
    if room < 1:
        raise DataError(
            f"max_length={max_length}: the prompt of question {question[:60]!r} takes {len(prompt)} tokens, "
            "leaving no room for the answer"
        )
    ans = ans[:room] + [int(eos)]
    return EncodedQA(prompt + ans, [IGNORE_INDEX] * len(prompt) + ans, len(ans), len(prompt))


def collate_qa(
    encoded: Sequence[EncodedQA], pad_id: int, index: Sequence[int] | None = None, items: Sequence[Any] = ()
) -> LMBatch:
    """Right-pad encoded examples into an :class:`LMBatch` (labels ``-100`` on padding)."""
    import torch

    if not encoded:
        raise DataError("encoded: expected at least one example to collate, received none")
    width = max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(encoded):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e.labels)
    idx = torch.tensor(list(index) if index is not None else list(range(len(encoded))), dtype=torch.long)
    return LMBatch(ids, mask, labels, idx, tuple(items))


def make_batches(
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    template: PromptTemplate,
    batch_size: int,
    max_length: int = 128,
    items: Sequence[Any] | None = None,
) -> list[LMBatch]:
    """Encode ``(question, answer)`` pairs and cut them, in order, into batches of ``batch_size``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive int, received {batch_size!r}")
    enc = [encode_qa(tokenizer, q, a, template, max_length) for q, a in pairs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    for s in range(0, len(enc), batch_size):
        its = tuple(items[s : s + batch_size]) if items is not None else ()
        out.append(collate_qa(enc[s : s + batch_size], int(pad), range(s, min(s + batch_size, len(enc))), its))
    return out


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


_DTYPES = ("float32", "bfloat16")


def load_causal_lm(
    path: str | os.PathLike[str],
    dtype: str = "float32",
    device: str = "cpu",
    attn_implementation: str | None = "eager",
) -> tuple[Any, Any]:
    """Load any ``AutoModelForCausalLM`` and its tokenizer from a local directory (no downloads).

    A tokenizer without a padding token gets its EOS token as padding.

    Args:
        path: a directory written by ``save_pretrained`` (``config.json``, weights, tokenizer files).
        dtype: "float32" or "bfloat16".
        device: torch device string.
        attn_implementation: passed to ``from_pretrained`` ("eager" by default: fused attention
            kernels have no double backward, which second-order methods such as OFMU need; None keeps the
            model's own choice).

    Raises:
        CheckpointError: the directory is missing or does not hold a loadable model.
        ConfigError: unknown ``dtype``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in _DTYPES:
        raise ConfigError(f"dtype: expected one of {_DTYPES}, received {dtype!r}")
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"model directory {str(p)!r} does not exist or is not a directory")
    if not (p / "config.json").is_file():
        raise CheckpointError(f"model directory {str(p)!r}: expected a config.json (save_pretrained output)")
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(  # type: ignore[call-overload,arg-type]
            str(p), local_files_only=True, dtype=getattr(torch, dtype), use_safetensors=True, **extra
        )
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"model directory {str(p)!r} could not be loaded: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)  # type: ignore[arg-type]
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def save_causal_lm(model: Any, tokenizer: Any, directory: str | os.PathLike[str]) -> Path:
    """Save model (safetensors) and tokenizer atomically: into a temp dir, then renamed to ``directory``.

    An existing ``directory`` is replaced.
    """
    dest = Path(directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
            os.replace(dest, old / "m")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


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
    return get_peft_model(model, cfg)


def trainable_parameters(model: Any) -> list[torch.nn.Parameter]:
    """The parameters with ``requires_grad`` (adapter parameters only under LoRA)."""
    return [p for p in model.parameters() if p.requires_grad]


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning recipe for the target / retain models (AdamW, linear warm-up then constant)."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    max_length: int = 96
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_length"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"TrainConfig.{name}: expected a positive int, received {v!r}")
        if not (isinstance(self.lr, float | int) and self.lr > 0):
            raise ConfigError(f"TrainConfig.lr: expected a positive number, received {self.lr!r}")


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

    if not enc:
        raise DataError("enc: expected at least one encoded example, received none")
    params = trainable_parameters(model)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    device = next(model.parameters()).device
    model.train()
    history: list[float] = []
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(enc), generator=gen).tolist()
        total, count = 0.0, 0
        for s in range(0, len(order), config.batch_size):
            idx = order[s : s + config.batch_size]
            b = collate_qa([enc[i] for i in idx], pad, idx).to(device)
            for g in opt.param_groups:
                g["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
            out = model(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=b.labels)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            step += 1
            total += float(out.loss.detach()) * len(idx)
            count += len(idx)
        history.append(total / count)
        logger.debug("epoch %d/%d: train loss %.4f", epoch + 1, config.epochs, history[-1])
    model.eval()
    return history


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
    with torch.no_grad():
        for s in range(0, len(questions), batch_size):
            prompts = [encode_prompt(tokenizer, q, template) for q in questions[s : s + batch_size]]
            width = max(len(p) for p in prompts)
            ids = torch.full((len(prompts), width), pad, dtype=torch.long)
            mask = torch.zeros((len(prompts), width), dtype=torch.long)
            for i, p in enumerate(prompts):  # left padding
                ids[i, width - len(p) :] = torch.tensor(p)
                mask[i, width - len(p) :] = 1
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=eos,
            )
            for row in gen[:, width:].tolist():
                if eos in row:
                    row = row[: row.index(eos)]
                out.append(str(tokenizer.decode(row, skip_special_tokens=True)).strip())
    model.train(was_training)
    return out


def config_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as a plain dict (for recipes)."""
    return dataclasses.asdict(cfg)

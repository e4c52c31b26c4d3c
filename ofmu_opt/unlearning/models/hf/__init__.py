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

from .files import (
    GGUF_MAGIC,
    read_json_guarded,
    safetensors_header,
    validate_model_dir,
    weight_files,
)
from .loading import (
    SMOLLM2_GGUF,
    convert_gguf,
    gguf_model_dir,
    is_gguf_file,
    load_causal_lm,
    resolve_model_path,
    save_causal_lm,
    smollm2_gguf,
)
from .text import (
    EOS_TOKEN,
    IGNORE_INDEX,
    PAD_TOKEN,
    EncodedQA,
    LMBatch,
    PromptTemplate,
    collate_qa,
    encode_prompt,
    encode_qa,
    make_batches,
    train_tokenizer,
)
from .training import (
    TinyGPT2Config,
    TrainConfig,
    apply_lora,
    build_tiny_gpt2,
    cached_model_dir,
    config_dict,
    greedy_generate,
    model_max_positions,
    recipe_hash,
    set_gradient_checkpointing,
    train_causal_lm,
    train_encoded,
    trainable_parameters,
)

__all__ = [
    "EOS_TOKEN",
    "EncodedQA",
    "GGUF_MAGIC",
    "IGNORE_INDEX",
    "LMBatch",
    "PAD_TOKEN",
    "PromptTemplate",
    "SMOLLM2_GGUF",
    "TinyGPT2Config",
    "TrainConfig",
    "apply_lora",
    "build_tiny_gpt2",
    "cached_model_dir",
    "collate_qa",
    "config_dict",
    "convert_gguf",
    "encode_prompt",
    "encode_qa",
    "gguf_model_dir",
    "greedy_generate",
    "model_max_positions",
    "is_gguf_file",
    "load_causal_lm",
    "make_batches",
    "read_json_guarded",
    "recipe_hash",
    "resolve_model_path",
    "safetensors_header",
    "save_causal_lm",
    "set_gradient_checkpointing",
    "smollm2_gguf",
    "train_causal_lm",
    "train_encoded",
    "train_tokenizer",
    "trainable_parameters",
    "validate_model_dir",
    "weight_files",
]

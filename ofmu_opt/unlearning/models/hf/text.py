"""Tokenizers and prompt formatting: a locally trained BPE tokenizer, chat-style prompts, encoded
question-answer pairs (labels ``-100`` on the prompt) and right-padded batches."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ....errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

__all__ = [
    "EOS_TOKEN",
    "EncodedQA",
    "IGNORE_INDEX",
    "LMBatch",
    "PAD_TOKEN",
    "PromptTemplate",
    "collate_qa",
    "encode_prompt",
    "encode_qa",
    "make_batches",
    "train_tokenizer",
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

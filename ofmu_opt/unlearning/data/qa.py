"""The TOFU data schema shared by TinyTOFU and TOFU files: question-answer items, splits, split sizes.

Example:
    >>> split_fraction("forget05", 100)
    5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError

__all__ = ["SPLITS", "QAItem", "TofuSplit", "split_fraction"]

SPLITS: dict[str, float] = {"forget01": 0.01, "forget05": 0.05, "forget10": 0.10}
"""Forget splits and the fraction of trained authors each one removes."""


@dataclass(frozen=True)
class QAItem:
    """One question-answer pair in the TOFU schema.

    Attributes:
        question: the question text.
        answer: the gold answer.
        paraphrased_answer: the gold answer in other words (equal to ``answer`` for utility items).
        perturbed_answers: wrong answers (at least one; TinyTOFU always gives >= 3).
        idk_answer: an "I don't know" answer.
        author: the author index (``-1`` for utility items and items loaded from files).
        field: the attribute the question asks about ("" when unknown).
    """

    question: str
    answer: str
    paraphrased_answer: str
    perturbed_answers: tuple[str, ...]
    idk_answer: str = "I don't know."
    author: int = -1
    field: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the item in the public TOFU schema (plus TinyTOFU's extra keys)."""
        return {
            "question": self.question,
            "answer": self.answer,
            "paraphrased_answer": self.paraphrased_answer,
            "perturbed_answer": list(self.perturbed_answers),
            "idk_answer": self.idk_answer,
            "author": self.author,
            "field": self.field,
        }


@dataclass(frozen=True)
class TofuSplit:
    """The data of one forget split.

    Attributes:
        name: "forget01", "forget05", "forget10" (or a file-based name).
        forget: QA pairs to unlearn (also the forget evaluation set).
        retain: QA pairs of the retained authors (training set of the retain model).
        retain_eval: the retain evaluation subset (authors never in any forget split).
        holdout: QA pairs of authors never trained on (membership-inference negatives).
        real_authors: utility set (probability with options).
        world_facts: utility set (probability with options).
        utility_train: utility items as trained on (both models learn them).
    """

    name: str
    forget: tuple[QAItem, ...]
    retain: tuple[QAItem, ...]
    retain_eval: tuple[QAItem, ...]
    holdout: tuple[QAItem, ...]
    real_authors: tuple[QAItem, ...]
    world_facts: tuple[QAItem, ...]

    @property
    def utility_train(self) -> tuple[QAItem, ...]:
        """The utility items every model is trained on."""
        return self.real_authors + self.world_facts


def split_fraction(split: str, n_authors: int) -> int:
    """Number of forget authors of ``split`` for ``n_authors`` trained authors (at least one).

    Example:
        >>> split_fraction("forget05", 100), split_fraction("forget01", 100), split_fraction("forget10", 20)
        (5, 1, 2)
    """
    if split not in SPLITS:
        raise ConfigError(f"split: expected one of {', '.join(map(repr, SPLITS))}, received {split!r}")
    return max(1, round(SPLITS[split] * n_authors))

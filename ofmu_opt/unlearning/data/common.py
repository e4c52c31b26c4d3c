"""Shared data containers for the classifier benchmarks: splits, forgetting scenarios, batch streams.

A :class:`ClassificationSplits` holds train / validation / test arrays (numpy, features already
standardised, labels ``int64``). :func:`make_scenario` picks the forget set inside the training split
(``random<P>`` = P % of the training samples, seeded; ``class:K`` = every training sample of class K)
and returns a :class:`ForgetScenario` with index arrays into the training split.

:class:`BatchStream` turns tensors into an infinite, seeded iterator of shuffled mini-batches
(:class:`LabeledBatch`), reshuffled each epoch with its own ``torch.Generator``.

Example:
    >>> import numpy as np
    >>> sc = parse_scenario("class:3")
    >>> (sc.kind, sc.target_class)
    ('class', 3)
    >>> parse_scenario("random10").fraction
    0.1
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ...errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BatchStream",
    "ClassificationSplits",
    "ForgetScenario",
    "LabeledBatch",
    "ScenarioSpec",
    "make_scenario",
    "parse_scenario",
    "stratified_split",
]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


class LabeledBatch(NamedTuple):
    """A classifier mini-batch: inputs ``x``, labels ``y``, sample indices ``ids`` in their split."""

    x: torch.Tensor
    y: torch.Tensor
    ids: torch.Tensor


@dataclass(frozen=True)
class ClassificationSplits:
    """Train / validation / test arrays of one classification data set.

    Attributes:
        name: data set name (``"digits"``, ``"cifar10"``).
        x_train, y_train, x_val, y_val, x_test, y_test: features ``[N, *input_shape]`` and labels ``[N]``.
        num_classes: number of classes.
        input_shape: shape of one input (``(64,)`` for digits, ``(3, 32, 32)`` for CIFAR-10).
    """

    name: str
    x_train: FloatArray
    y_train: IntArray
    x_val: FloatArray
    y_val: IntArray
    x_test: FloatArray
    y_test: IntArray
    num_classes: int
    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        for part in ("train", "val", "test"):
            x = getattr(self, f"x_{part}")
            y = getattr(self, f"y_{part}")
            if x.shape[0] != y.shape[0]:
                raise DataError(f"{self.name} {part}: {x.shape[0]} inputs but {y.shape[0]} labels")
            if x.shape[0] == 0:
                raise DataError(f"{self.name} {part}: expected a non-empty split, received 0 samples")
            if tuple(x.shape[1:]) != self.input_shape:
                raise DataError(
                    f"{self.name} {part}: expected inputs of shape {self.input_shape}, received {x.shape[1:]}"
                )
            if y.min() < 0 or y.max() >= self.num_classes:
                raise DataError(f"{self.name} {part}: labels outside [0, {self.num_classes})")


@dataclass(frozen=True)
class ScenarioSpec:
    """A parsed scenario string: ``random<P>`` (fraction P/100) or ``class:K``."""

    kind: str
    fraction: float = 0.0
    target_class: int = -1

    @property
    def name(self) -> str:
        """The scenario as written on the command line."""
        if self.kind == "class":
            return f"class:{self.target_class}"
        return f"random{round(self.fraction * 100)}"


_RANDOM = re.compile(r"^random(\d{1,2})$")
_CLASS = re.compile(r"^class:(\d+)$")


def parse_scenario(text: str) -> ScenarioSpec:
    """Parse ``random<P>`` (1 <= P <= 99) or ``class:K``; anything else raises ConfigError."""
    if not isinstance(text, str):
        raise ConfigError(f"scenario: expected a string like 'random10' or 'class:3', received {text!r}")
    m = _RANDOM.match(text.strip())
    if m and 1 <= int(m.group(1)) <= 99:
        return ScenarioSpec("random", fraction=int(m.group(1)) / 100.0)
    m = _CLASS.match(text.strip())
    if m:
        return ScenarioSpec("class", target_class=int(m.group(1)))
    raise ConfigError(f"scenario: expected 'random<P>' (P in 1..99) or 'class:K', received {text!r}")


@dataclass(frozen=True)
class ForgetScenario:
    """Forget and retain indices into the training split, plus the test/val masks used for TA.

    Attributes:
        spec: the parsed scenario.
        forget_idx: indices (into the training split) of the forget set, sorted.
        retain_idx: the other training indices, sorted.
        test_keep: boolean mask of test samples that count for TA (all, or the remaining classes).
        val_keep: the same mask on the validation split.
    """

    spec: ScenarioSpec
    forget_idx: IntArray
    retain_idx: IntArray
    test_keep: npt.NDArray[np.bool_]
    val_keep: npt.NDArray[np.bool_]

    def __post_init__(self) -> None:
        for part in ("forget", "retain"):
            idx = np.asarray(getattr(self, f"{part}_idx"))
            if idx.ndim != 1 or idx.size == 0:
                raise DataError(f"{part} set: expected a non-empty 1-D index array, received shape {idx.shape}")
            if not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0:
                raise DataError(f"{part} set: expected non-negative integer indices, received dtype {idx.dtype}")
        both = np.intersect1d(self.forget_idx, self.retain_idx)
        if both.size:
            raise DataError(
                f"forget and retain sets overlap in {both.size} samples (indices {both[:5].tolist()}); "
                "expected disjoint sets"
            )


def make_scenario(splits: ClassificationSplits, spec: ScenarioSpec, seed: int) -> ForgetScenario:
    """Choose the forget set of ``spec`` inside ``splits``' training split.

    Args:
        splits: the data.
        spec: the parsed scenario.
        seed: seed of the random draw (``random<P>`` only).

    Returns:
        The :class:`ForgetScenario`.

    Raises:
        ConfigError: the class does not exist.
        DataError: the forget or retain set would be empty.
    """
    n = splits.y_train.shape[0]
    if spec.kind == "class":
        if not 0 <= spec.target_class < splits.num_classes:
            raise ConfigError(f"scenario: class must be in 0..{splits.num_classes - 1}, received {spec.target_class}")
        forget = np.flatnonzero(splits.y_train == spec.target_class).astype(np.int64)
        test_keep = splits.y_test != spec.target_class
        val_keep = splits.y_val != spec.target_class
    else:
        rng = np.random.default_rng(seed)
        k = max(1, int(round(spec.fraction * n)))
        forget = np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
        test_keep = np.ones(splits.y_test.shape[0], dtype=bool)
        val_keep = np.ones(splits.y_val.shape[0], dtype=bool)
    mask = np.ones(n, dtype=bool)
    mask[forget] = False
    retain = np.flatnonzero(mask).astype(np.int64)
    if forget.size == 0 or retain.size == 0:
        raise DataError(f"scenario {spec.name}: forget ({forget.size}) and retain ({retain.size}) must be non-empty")
    return ForgetScenario(spec, forget, retain, test_keep, val_keep)


def stratified_split(
    y: IntArray, fractions: tuple[float, float, float], seed: int
) -> tuple[IntArray, IntArray, IntArray]:
    """Split indices ``0..len(y)-1`` into train / val / test, stratified by label, seeded.

    Example:
        >>> import numpy as np
        >>> tr, va, te = stratified_split(np.repeat(np.arange(2), 10), (0.6, 0.2, 0.2), seed=0)
        >>> (len(tr), len(va), len(te))
        (12, 4, 4)
    """
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ConfigError(f"fractions: expected three positive numbers summing to 1, received {fractions!r}")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = int(round(fractions[1] * idx.size))
        n_test = int(round(fractions[2] * idx.size))
        parts[1].extend(idx[:n_val].tolist())
        parts[2].extend(idx[n_val : n_val + n_test].tolist())
        parts[0].extend(idx[n_val + n_test :].tolist())
    tr, va, te = (np.sort(np.asarray(p, dtype=np.int64)) for p in parts)
    return tr, va, te


class BatchStream:
    """An infinite iterator of shuffled mini-batches over ``(x, y)``, seeded and reproducible.

    Every epoch draws a fresh permutation from a private ``torch.Generator`` seeded with ``seed``; the
    last partial batch of an epoch is kept. Batches are moved to ``device``.

    Args:
        x: inputs ``[N, ...]`` (CPU tensor).
        y: labels ``[N]``.
        batch_size: mini-batch size (clipped to N).
        seed: seed of the shuffling generator.
        device: where batches are placed.
        index: optional original indices of the samples (defaults to ``0..N-1``).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        seed: int,
        device: Any = "cpu",
        index: torch.Tensor | None = None,
    ) -> None:
        import torch

        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise DataError(f"BatchStream: expected matching non-empty x and y, received {x.shape[0]} and {y.shape[0]}")
        if batch_size < 1:
            raise ConfigError(f"batch_size: expected >= 1, received {batch_size}")
        self.x, self.y = x, y
        self.index = index if index is not None else torch.arange(x.shape[0])
        self.batch_size = min(batch_size, x.shape[0])
        self.device = device
        self._gen = torch.Generator().manual_seed(int(seed))
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def state_dict(self) -> dict[str, Any]:
        """The stream's position (generator state, current epoch order, offset), for exact resume."""
        return {"generator": self._gen.get_state(), "order": self._order.clone(), "pos": int(self._pos)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a position saved by :meth:`state_dict`."""
        import torch

        order = torch.as_tensor(state["order"], dtype=torch.long).cpu()
        pos = int(state["pos"])
        if order.numel() not in (0, self.x.shape[0]) or not 0 <= pos <= order.numel():
            raise DataError(
                f"BatchStream: saved position ({order.numel()} samples, offset {pos}) does not fit a stream of "
                f"{self.x.shape[0]} samples"
            )
        self._gen.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).cpu())
        self._order, self._pos = order, pos

    def __iter__(self) -> Iterator[LabeledBatch]:
        return self

    def __next__(self) -> LabeledBatch:
        import torch

        if self._pos >= self._order.numel():
            self._order = torch.randperm(self.x.shape[0], generator=self._gen)
            self._pos = 0
        sel = self._order[self._pos : self._pos + self.batch_size]
        self._pos += sel.numel()
        return LabeledBatch(self.x[sel].to(self.device), self.y[sel].to(self.device), self.index[sel].to(self.device))

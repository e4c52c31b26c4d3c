"""scikit-learn's bundled digits data set (1,797 8×8 images, 10 classes), offline.

Pixels are standardised with the training split's per-feature mean and standard deviation; the split
into train / validation / test is stratified and seeded.

Example:
    >>> s = load_digits_splits(seed=0)
    >>> (s.x_train.shape[1], s.num_classes, s.x_train.shape[0] + s.x_val.shape[0] + s.x_test.shape[0])
    (64, 10, 1797)
"""

from __future__ import annotations

import logging

import numpy as np

from ...errors import ConfigError
from .common import ClassificationSplits, stratified_split

__all__ = ["load_digits_splits"]

log = logging.getLogger(__name__)


def load_digits_splits(
    seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), flat: bool = True
) -> ClassificationSplits:
    """Load the digits, standardise them, and split them train / validation / test.

    Args:
        seed: seed of the stratified split.
        fractions: train, validation and test fractions (positive, summing to 1).
        flat: inputs as 64-vectors (MLP) when True, as ``[1, 8, 8]`` images (CNN) when False.

    Returns:
        The :class:`ClassificationSplits`.

    Raises:
        ConfigError: bad seed or fractions.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative int, received {seed!r}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    tr, va, te = stratified_split(y, fractions, seed)
    mean = x[tr].mean(axis=0)
    std = x[tr].std(axis=0)
    std[std < 1e-8] = 1.0
    xs = ((x - mean) / std).astype(np.float32)
    shape: tuple[int, ...] = (64,) if flat else (1, 8, 8)
    xs = xs.reshape((-1, *shape))
    log.debug("digits: %d train, %d val, %d test", tr.size, va.size, te.size)
    return ClassificationSplits(
        "digits", xs[tr], y[tr], xs[va], y[va], xs[te], y[te], num_classes=10, input_shape=shape
    )

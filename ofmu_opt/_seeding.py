"""Seeding helpers. The library never touches global RNG state; scripts and the CLI may.

Examples:
    >>> seed_everything(0)
    0
"""

from __future__ import annotations

import random
import sys

import numpy as np

from .errors import ConfigError

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> int:
    """Seed Python's, numpy's and (if imported) torch's global generators; for scripts and the CLI only.

    Args:
        seed: a non-negative integer.

    Returns:
        The seed.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative int, received {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    return seed

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

__all__ = ["MAX_SEED", "seed_everything"]

MAX_SEED = 2**63 - 1
"""Largest accepted seed: every generator (numpy, torch, CUDA) takes a signed 64-bit seed."""


def seed_everything(seed: int) -> int:
    """Seed Python's, numpy's and (if imported) torch's global generators; for scripts and the CLI only.

    Args:
        seed: an integer in ``0..MAX_SEED`` (2^63 - 1).

    Returns:
        The seed.

    Raises:
        ConfigError: not an integer, negative, or beyond 64 bits.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        big = isinstance(seed, int) and seed.bit_length() > 128
        shown = f"an integer of {seed.bit_length()} bits" if big else repr(seed)
        raise ConfigError(f"seed: expected an integer in 0..{MAX_SEED}, received {shown}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    return seed

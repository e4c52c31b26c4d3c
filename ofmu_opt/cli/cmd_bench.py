"""``ofmu bench``: compare unlearning methods at an equal tuning budget over several seeds."""

from __future__ import annotations

import argparse
from typing import Any

from .cmd_unlearn import add_unlearning_options, run_command

__all__ = ["register"]


def _handler(args: argparse.Namespace) -> int:
    return run_command(args, "bench")


def register(subparsers: Any) -> None:
    """Add ``ofmu bench``."""
    p = subparsers.add_parser(
        "bench",
        help="fair comparison of unlearning methods (same search budget, validation selection, seeds)",
        description="Writes results.md, results.csv, results.json, tradeoff.png and conflict.png to --out.",
    )
    add_unlearning_options(p)
    p.set_defaults(handler=_handler)

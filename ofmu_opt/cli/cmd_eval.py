"""``ofmu eval``: evaluate a saved (unlearned) model on a benchmark."""

from __future__ import annotations

import argparse
from typing import Any

from .cmd_unlearn import add_unlearning_options, run_command

__all__ = ["register"]


def _handler(args: argparse.Namespace) -> int:
    return run_command(args, "eval")


def register(subparsers: Any) -> None:
    """Add ``ofmu eval``."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a saved model (writes <BENCH>_EVAL.json and _SUMMARY.json)",
        description="Evaluate the model in --model DIR; compare with Retrain or --retain-logs.",
    )
    add_unlearning_options(p)
    p.set_defaults(handler=_handler)

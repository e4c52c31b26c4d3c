"""``ofmu eval``: evaluate a saved (unlearned) model on a benchmark."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConfigError
from .cmd_unlearn import add_unlearning_options

__all__ = ["register"]


def _handler(args: argparse.Namespace) -> int:
    from ..unlearning.benchmarks import get_benchmark

    module = get_benchmark(args.benchmark)
    fn = getattr(module, "eval_main", None)
    if fn is None:
        raise ConfigError(f"benchmark {args.benchmark!r} has no 'eval' entry point")
    return int(fn(args))


def register(subparsers: Any) -> None:
    """Add ``ofmu eval``."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a saved model (writes <BENCH>_EVAL.json and _SUMMARY.json)",
        description="Evaluate the model in --model DIR; compare with Retrain or --retain-logs.",
    )
    add_unlearning_options(p)
    p.set_defaults(handler=_handler)

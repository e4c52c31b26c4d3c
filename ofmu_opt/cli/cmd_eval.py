"""``ofmu eval``: evaluate a saved (unlearned) model on a benchmark."""

from __future__ import annotations

from .cmd_unlearn import command_registrar

__all__ = ["register"]

register = command_registrar(
    "eval",
    help="evaluate a saved model (writes <BENCH>_EVAL.json and _SUMMARY.json)",
    description="Evaluate the model in --model DIR; compare with Retrain or --retain-logs.",
)

"""``ofmu bench``: compare unlearning methods at an equal tuning budget over several seeds."""

from __future__ import annotations

from .cmd_unlearn import command_registrar

__all__ = ["register"]

register = command_registrar(
    "bench",
    help="fair comparison of unlearning methods (same search budget, validation selection, seeds)",
    description="Writes results.md, results.csv, results.json, tradeoff.png and conflict.png to --out.",
)

"""Callbacks: a history recorder (history lives here, not in the solver state).

Examples:
    >>> rec = HistoryRecorder()
    >>> rec.rows
    []
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .result import IntermediateResult

__all__ = ["HistoryRecorder"]


class HistoryRecorder:
    """Records ``nit``, ``penalty`` and the residuals after each round; optional extra columns.

    Args:
        extra: optional mapping ``name -> fn(intermediate_result) -> float`` of additional columns.
        every: record one round in ``every``.
    """

    def __init__(self, extra: dict[str, Callable[[IntermediateResult], float]] | None = None, every: int = 1) -> None:
        self.extra = dict(extra or {})
        self.every = max(1, int(every))
        self.rows: list[dict[str, Any]] = []

    def __call__(self, r: IntermediateResult) -> None:
        if r.nit % self.every:
            return
        row: dict[str, Any] = {"nit": r.nit, "penalty": r.penalty, **r.residuals}
        for name, fn in self.extra.items():
            row[name] = float(fn(r))
        self.rows.append(row)

    def column(self, name: str) -> list[float]:
        return [float(row[name]) for row in self.rows]

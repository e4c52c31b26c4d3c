"""Penalty schedules: ``geometric`` (ρ·γ, the paper's), ``linear`` ramp, ``constant``; optional cap.

Examples:
    >>> next_penalty("geometric", 4.0, 1, growth=2.0, cap=5.0)
    5.0
    >>> [next_penalty("linear", 0.0, k, start=1.0, cap=5.0, ramp_steps=4) for k in (1, 2, 8)]
    [2.0, 3.0, 5.0]
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["SCHEDULES", "next_penalty"]

SCHEDULES = ("geometric", "linear", "constant")


def next_penalty(
    kind: str,
    current: float,
    k: int,
    *,
    growth: float = 1.0,
    cap: float | None = None,
    start: float = 1.0,
    ramp_steps: int = 100,
) -> float:
    """The penalty after round ``k`` (1-based): ``geometric`` ``current·growth``; ``linear`` from ``start``
    to ``cap`` over ``ramp_steps`` rounds; ``constant`` unchanged. The result never exceeds ``cap``."""
    if kind == "geometric":
        nxt = current * growth
    elif kind == "linear":
        if cap is None:
            raise ConfigError("penalty_max: the linear schedule needs a final penalty, received None")
        nxt = start + (cap - start) * min(k / ramp_steps, 1.0)
    elif kind == "constant":
        nxt = current
    else:
        raise ConfigError(f"schedule: expected one of {', '.join(SCHEDULES)}, received {kind!r}")
    return min(nxt, cap) if cap is not None else nxt

"""Shared helpers of the theory tests: make ``import theory`` work from the repository root, the symbolic
zero check, the float64 closed-form tolerance, and the opt-in for the slow symbolic checks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sympy as sp

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RTOL = 4 * np.sqrt(np.finfo(np.float64).eps)
"""Closed-form identities: rtol = 4·sqrt(eps(float64)) (STYLE.md convention 10)."""


def _assert_zero(lhs: Any, rhs: Any) -> None:
    """``sympy.simplify(lhs - rhs) == 0`` entry by entry (matrices compare entry-wise)."""
    diff = lhs - rhs
    entries = list(diff) if isinstance(diff, sp.MatrixBase) else [diff]
    for i, e in enumerate(entries):
        assert sp.simplify(e) == 0, f"entry {i}: simplify(lhs - rhs) = {sp.simplify(e)}"


@pytest.fixture
def assert_zero() -> Any:
    return _assert_zero


@pytest.fixture
def slow_enabled(request: pytest.FixtureRequest) -> None:
    """Skip unless the run selects slow tests (``-m slow``): these symbolic checks take 5–20 s each."""
    expr = request.config.getoption("markexpr", "") or ""
    if "slow" not in expr or "not slow" in expr:
        pytest.skip("slow symbolic check: run with -m slow")

"""Every numbered example runs in smoke mode (CPU, under 60 s) and exits 0."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("[0-9][0-9]_*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 1


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_smoke(name, tmp_path):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--smoke"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert time.perf_counter() - t0 < 120  # 60 s target on an idle 2-core machine; margin for a busy one

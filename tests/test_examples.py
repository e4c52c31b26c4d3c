"""Every numbered example runs in smoke mode (CPU) and exits 0.

No time or CPU bound is asserted: the examples' cost is measured by benchmarks, and a bound here fails on
a loaded machine. The timeout mark is only a generous guard against a hang.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("[0-9][0-9]_*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.timeout(3600)  # hang guard only
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_smoke(name, tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--smoke"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Traceback" not in p.stderr

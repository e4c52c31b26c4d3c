"""The "adding a benchmark" example of docs/design_notes.md runs as written: unlearn and bench through the runner."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from ofmu_opt.unlearning import benchmarks
from ofmu_opt.unlearning.runner import RunConfig, bench, unlearn

DOC = Path(__file__).resolve().parents[2] / "docs" / "design_notes.md"
MODULE = "ofmu_opt.unlearning.benchmarks.blobs"


def _example() -> str:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    code = next(b for b in blocks if "# ofmu_opt/unlearning/benchmarks/blobs.py" in b)
    return "\n".join(line[4:] if line.startswith("    ") else line for line in code.splitlines())


@pytest.fixture
def blobs(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    mod = types.ModuleType(MODULE)
    monkeypatch.setitem(sys.modules, MODULE, mod)
    exec(compile(_example(), "design_notes.md", "exec"), mod.__dict__)  # our own documentation
    monkeypatch.setitem(benchmarks.BENCHMARKS, "blobs", "blobs:BLOBS")
    return mod


def test_the_documented_benchmark_unlearns_and_compares(blobs: types.ModuleType, tmp_path: Path) -> None:
    out = unlearn(RunConfig(benchmark="blobs", method="npo", out=str(tmp_path / "u"), quiet=True))
    assert out.code == 0 and (tmp_path / "u" / "BLOBS_SUMMARY.json").is_file()
    assert (tmp_path / "u" / "model.safetensors").is_file()
    assert set(out.results["metrics"]) == {"UA", "TA", "gap"} and out.results["steps"] == 20
    res = bench(RunConfig(benchmark="blobs", methods="ga,npo", seeds=2, budget=2, out=str(tmp_path / "b"),
                          quiet=True)).results  # fmt: skip
    assert set(res["summary"]) == {"retrain", "ga", "npo"} and len(res["search"]["npo"]) == 2
    assert res["budget_spent"]["npo"]["seed_steps"] == 2 * 20
    assert "| npo |" in (tmp_path / "b" / "results.md").read_text(encoding="utf-8")
    with pytest.raises(Exception, match="--scenario: not used"):
        unlearn(RunConfig(benchmark="blobs", method="npo", scenario="class:1", out=str(tmp_path / "x")))

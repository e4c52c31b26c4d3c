"""Data parallel through torchrun (2 CPU processes, gloo) equals one process on the same global batches."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _problems import INNER, ROUNDS, tiny_problem, tiny_solver

from ofmu_opt.backends.distributed import AllReduceObjective, shard
from ofmu_opt.errors import BackendError

HERE = Path(__file__).resolve().parent
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _single_process() -> tuple[torch.Tensor, ...]:
    torch.set_num_threads(1)
    mp = tiny_problem()
    solver = tiny_solver()
    state = solver.init_state(mp.problem, None, mp.y0)
    for k in range(ROUNDS):
        state = solver.update(mp.problem, state, batch=mp.round_batches(k, INNER))
    return tuple(state.y)


@pytest.mark.skipif(not TORCHRUN.exists() and shutil.which("torchrun") is None, reason="torchrun not installed")
def test_two_process_torchrun_equals_single_process(tmp_path: Path) -> None:
    exe = str(TORCHRUN) if TORCHRUN.exists() else "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [exe, "--standalone", "--nproc_per_node", "2", str(HERE / "_ddp_worker.py"), str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    # every rank took the identical steps: bitwise equal parameters
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    single = _single_process()
    start = tiny_problem().y0
    moved = max(float((a - b).abs().max()) for a, b in zip(single, start, strict=True))
    assert moved > 1e-3  # the run really moved the parameters
    for i, t in enumerate(single):
        # the same mathematics up to summation order (shard means averaged vs one global mean)
        torch.testing.assert_close(r0[f"p{i}"], t, rtol=1e-10, atol=1e-12)


def test_shard_splits_equally_and_rejects_uneven_batches() -> None:
    b = (torch.arange(8.0), {"a": torch.arange(8.0)})
    s1 = shard(b, 1, 2)
    assert s1[0].tolist() == [4.0, 5.0, 6.0, 7.0] and s1[1]["a"].tolist() == [4.0, 5.0, 6.0, 7.0]
    with pytest.raises(BackendError, match="divisible"):
        shard(torch.arange(5.0), 0, 2)


def test_all_reduce_objective_needs_a_process_group() -> None:
    with pytest.raises(BackendError, match="init_distributed"):
        AllReduceObjective(object())

"""Subprocess for test_checkpoint.py: OFMU rounds on the tiny problem, a checkpoint after every round;
resumes from the checkpoint directory when one exists.

Usage: python _resume_worker.py CKPT_DIR OUT_FILE ROUNDS SLEEP_S
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _problems import INNER, tiny_problem, tiny_solver

from ofmu_opt.backends.checkpoint import load_checkpoint, save_checkpoint


def run(ckpt: Path | None, rounds: int, sleep_s: float = 0.0) -> tuple[torch.Tensor, ...]:
    torch.set_num_threads(1)
    mp = tiny_problem()
    solver = tiny_solver()
    if ckpt is not None and (ckpt / "manifest.json").exists():
        tree, meta = load_checkpoint(ckpt)
        state, start = tree["state"], int(meta["round"])
    else:
        state, start = solver.init_state(mp.problem, None, mp.y0), 0
    for k in range(start, rounds):
        state = solver.update(mp.problem, state, batch=mp.round_batches(k, INNER))
        if ckpt is not None:
            save_checkpoint(ckpt, {"state": state, "params": dict(zip(mp.names, state.y))}, meta={"round": k + 1})
        time.sleep(sleep_s)
    return tuple(state.y)


if __name__ == "__main__":
    y = run(Path(sys.argv[1]), int(sys.argv[3]), float(sys.argv[4]))
    save_file({f"p{i}": t.contiguous() for i, t in enumerate(y)}, sys.argv[2])

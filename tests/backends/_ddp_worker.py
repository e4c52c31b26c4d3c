"""torchrun worker for test_distributed.py: OFMU rounds on the tiny problem, data parallel over the ranks.

Usage: torchrun --standalone --nproc_per_node 2 _ddp_worker.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _problems import INNER, ROUNDS, tiny_problem, tiny_solver

from ofmu_opt.backends.distributed import distributed_problem, init_distributed


def main() -> None:
    torch.set_num_threads(1)
    rank, world = init_distributed("gloo")
    mp = tiny_problem()
    prob = distributed_problem(mp.problem)
    solver = tiny_solver()
    state = solver.init_state(prob, None, mp.y0)
    for k in range(ROUNDS):
        state = solver.update(prob, state, batch=mp.round_batches(k, INNER))
    out = Path(sys.argv[1]) / f"rank{rank}.safetensors"
    save_file({f"p{i}": t.contiguous() for i, t in enumerate(state.y)}, str(out))
    # every rank reaches this point before any leaves: a rank that tears gloo down while a peer is still
    # in a collective or in its own teardown can make that peer abort (seen once in CI: SIGABRT on rank 1)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

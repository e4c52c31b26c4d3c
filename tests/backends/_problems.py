"""A tiny seeded unlearning problem shared by the distributed and checkpoint tests (not a test module)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ofmu_opt.backends.torch_module import ModuleProblem, module_problem
from ofmu_opt.core import solver as S

ROUNDS = 6
INNER = 2


def tiny_problem(seed: int = 0, batch_size: int = 8) -> ModuleProblem:
    """A tanh MLP regression; forget and retain sets of 16 examples; float64."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # module initialisation only (scripts and tests may seed the global RNG)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    Xf, Xr = torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randn(16, 3, generator=g, dtype=torch.float64)
    yf, yr = torch.randn(16, 1, generator=g, dtype=torch.float64), torch.randn(16, 1, generator=g, dtype=torch.float64)

    def loss(m: nn.Module, b: Any) -> torch.Tensor:
        return ((m(b[0]) - b[1]) ** 2).mean()

    return module_problem(model, loss, (Xf, yf), (Xr, yr), batch_size=batch_size, seed=seed)


def tiny_solver() -> S.PenaltySolver:
    """The OFMU preset (exact HVPs through the cosine), 2 inner steps, Adam outer steps."""
    return S.ofmu(inner_steps=INNER, inner_lr=0.05, outer_lr=0.05, outer_rule="adam", maxiter=ROUNDS)

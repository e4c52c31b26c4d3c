"""ofmu_opt: penalty-based bi-level optimization and OFMU machine unlearning.

The public API is small and importing it pulls in neither torch nor cvxpy (names resolve lazily):

- problems: :class:`BilevelProblem`, :class:`FunctionObjective`;
- solver: :class:`PenaltySolver` and the presets :func:`ofmu`, :func:`gpbgd`, :func:`vpbgd`,
  :func:`scalarized`, the accuracy modifier :func:`with_continuation`, :class:`MultiStart` (several starts,
  e.g. from :func:`box_starts`, against local minima);
- results: :class:`BilevelResult`, :class:`Status`, :class:`HistoryRecorder`;
- constraints: :class:`Box`, :class:`NonNegative`, :class:`Ball`, :class:`Simplex`, :class:`Affine`,
  :class:`UserProjection` (sets, by projection), :class:`FunctionConstraints`, :class:`LinearConstraints`
  (inequalities ``c(x, y) ≤ 0``), :func:`feasibility`;
- comparison solvers: :class:`Bome`, :class:`F2sa`, :class:`ImplicitDiff`; stochastic finite sums:
  :class:`Saba`, :class:`Soba` and :class:`VarianceReduced` (SAGA oracles for the presets);
- references: :func:`get_reference`, :func:`list_references`;
- backends: :class:`NumpySpace` (torch: ``ofmu_opt.backends.torch_backend``);
- errors: :class:`OfmuError` and its subclasses in :mod:`ofmu_opt.errors`.

Examples:
    >>> import ofmu_opt as oo
    >>> ref = oo.get_reference("P3")
    >>> res = oo.with_continuation(oo.gpbgd(), tol=1e-4).run(ref.problem, ref.x0, ref.y0)
    >>> res.status
    <Status.CONVERGED: 'converged'>
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "BilevelProblem": "ofmu_opt.problem",
    "FunctionObjective": "ofmu_opt.problem",
    "PenaltySolver": "ofmu_opt.core",
    "ofmu": "ofmu_opt.core",
    "gpbgd": "ofmu_opt.core",
    "vpbgd": "ofmu_opt.core",
    "scalarized": "ofmu_opt.core",
    "with_continuation": "ofmu_opt.core",
    "BilevelResult": "ofmu_opt.core",
    "Status": "ofmu_opt.core",
    "HistoryRecorder": "ofmu_opt.core",
    "RoundBatches": "ofmu_opt.core",
    "MultiStart": "ofmu_opt.core",
    "box_starts": "ofmu_opt.reference.solvers",
    "get_reference": "ofmu_opt.reference",
    "list_references": "ofmu_opt.reference",
    "NumpySpace": "ofmu_opt.backends",
    "Box": "ofmu_opt.backends.constraints",
    "NonNegative": "ofmu_opt.backends.constraints",
    "Ball": "ofmu_opt.backends.constraints",
    "Simplex": "ofmu_opt.backends.constraints",
    "Affine": "ofmu_opt.backends.constraints",
    "UserProjection": "ofmu_opt.backends.constraints",
    "FunctionConstraints": "ofmu_opt.backends.constraints",
    "LinearConstraints": "ofmu_opt.backends.constraints",
    "feasibility": "ofmu_opt.problem",
    "Bome": "ofmu_opt.core",
    "F2sa": "ofmu_opt.core",
    "ImplicitDiff": "ofmu_opt.core",
    "Saba": "ofmu_opt.core.stochastic",
    "Soba": "ofmu_opt.core.stochastic",
    "VarianceReduced": "ofmu_opt.core.stochastic",
    "OfmuError": "ofmu_opt.errors",
    "ConfigError": "ofmu_opt.errors",
    "ProblemSpecError": "ofmu_opt.errors",
    "seed_everything": "ofmu_opt._seeding",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ofmu_opt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

"""How each preset is configured to solve a reference problem to a target accuracy.

The presets' own defaults are the papers' algorithms (fixed steps, a penalty schedule). Reaching a
target accuracy needs more: :func:`ofmu_opt.core.with_continuation` (penalty levels with warm starts,
Nesterov steps with backtracking, Richardson extrapolation in 1/ρ). The step size of inner loops comes
from the problem's known constants (``ref.hints``). A ``"penalized"`` target (P9) is the minimizer at a
fixed penalty, so it is solved at that penalty without continuation.

Examples:
    >>> from ofmu_opt.reference import get_reference
    >>> s = solver_for_reference("gpbgd", get_reference("P3"), tol=1e-4)
    >>> s.strategy, s.tol
    ('continuation', 0.0001)
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._config import coerce_value, parse_option_pairs
from ..core.solver import PenaltySolver, gpbgd, ofmu, scalarized, vpbgd, with_continuation
from ..errors import ConfigError
from .problems import ReferenceProblem

__all__ = ["PRESET_FACTORIES", "box_starts", "parse_options", "solver_for_reference"]

PRESET_FACTORIES: dict[str, Callable[..., PenaltySolver]] = {
    "ofmu": ofmu,
    "gpbgd": gpbgd,
    "vpbgd": vpbgd,
    "scalarized": scalarized,
}


def parse_options(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``NAME=VALUE`` strings into typed solver options (validated against :class:`PenaltySolver`).

    Raises:
        ConfigError: a malformed pair or an unknown option name.

    Examples:
        >>> parse_options(["beta=0", "hvp=finite_difference"])
        {'beta': 0.0, 'hvp': 'finite_difference'}
    """
    hints = typing.get_type_hints(PenaltySolver)
    out: dict[str, Any] = {}
    for name, value in parse_option_pairs(pairs).items():
        if name not in hints or name == "name":
            valid = ", ".join(sorted(k for k in hints if k != "name"))
            raise ConfigError(f"--option: unknown solver option {name!r}; valid options: {valid}")
        out[name] = coerce_value(name, hints[name], value)
    return out


def solver_for_reference(
    preset: str, ref: ReferenceProblem, *, tol: float = 1e-4, options: Mapping[str, Any] | None = None,
    maxiter: int | None = None,
) -> PenaltySolver:
    """The solver ``preset`` configured to solve ``ref`` to relative accuracy ``tol``.

    ``ofmu`` runs with ``beta = 0``: the references pose bi-level problems without OFMU's similarity term, which
    would change the lower-level problem. User ``options`` are applied last, so any choice can be overridden
    (and is validated).
    """
    if preset not in PRESET_FACTORIES:
        raise ConfigError(f"solver: expected one of {', '.join(PRESET_FACTORIES)}, received {preset!r}")
    solver = PRESET_FACTORIES[preset]()
    if preset == "ofmu":
        # the references pose bi-level problems without OFMU's similarity term, which changes the lower level:
        # beta = 0 solves the posed problem (an explicit --option beta=... measures the term's effect)
        solver = solver.replace(beta=0.0)
    hints = {k: v for k, v in ref.hints.items()}
    solver = solver.replace(**hints)
    if ref.target == "penalized":
        changes: dict[str, Any] = dict(
            strategy="paper", schedule="constant", line_search=True, outer_rule="nesterov",
            scale_step_by_penalty=False, tol=1e-3 * tol, maxiter=200_000,
        )
        if ref.penalty is not None:
            changes["penalty"] = ref.penalty
        if solver.penalty_type == "value_gap":
            changes["inner_tol"] = 1e-5 * tol
        solver = solver.replace(**changes)
    else:
        solver = with_continuation(solver, tol=tol)
    if options:
        solver = solver.replace(**dict(options))
    if maxiter is not None:
        solver = solver.replace(maxiter=maxiter)
    return solver


def box_starts(lower: Any, upper: Any, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` starting points spread over the box ``[lower, upper]`` (a Latin-hypercube sample: each
    coordinate's range cut into ``count`` strata, one point per stratum, strata paired at random), for
    :class:`ofmu_opt.core.multistart.MultiStart`.

    Raises:
        ConfigError: a non-finite or inverted bound, or ``count < 1``.

    Examples:
        >>> sorted(int(v[0] * 4) for v in box_starts([0.0], [1.0], 4))  # one point in each quarter
        [0, 1, 2, 3]
    """
    lo = np.atleast_1d(np.asarray(lower, dtype=float))
    hi = np.atleast_1d(np.asarray(upper, dtype=float))
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"count: expected an integer >= 1, received {count!r}")
    if lo.shape != hi.shape or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo <= hi)):
        raise ConfigError("box: expected finite bounds of one shape with lower <= upper elementwise")
    rng = np.random.default_rng(seed)
    u = (np.stack([rng.permutation(count) for _ in range(lo.size)], axis=1) + rng.random((count, lo.size))) / count
    return [lo + (hi - lo) * row.reshape(lo.shape) for row in u]

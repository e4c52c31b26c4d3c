"""Independent verification of the constrained references (needs the ``cvxpy`` extra).

Three checks, none of which uses the hand-derived optimum stored with a problem:

1. :func:`kkt_enumeration` — the global optimum. The lower level has linear constraints and is convex in y,
   so ``y`` solves it exactly when a multiplier ``λ ≥ 0`` satisfies its KKT conditions. Fixing the set ``S``
   of active constraints makes those conditions linear in ``(x, y, λ)``; each ``S`` gives a convex program
   (convex ``F``), and the optimistic bi-level optimum is the least of their optima. cvxpy (Clarabel)
   solves all ``2^m`` of them.
2. :func:`lower_level_solution` — at a given ``x``, the lower level solved by cvxpy; with a non-unique
   lower-level solution set, the optimistic selection (second stage: ``min F`` over ``{f ≤ v(x)}``).
3. :func:`grid_check` — an exhaustive search over ``x`` on a grid (per coordinate ``x_range``): at every grid
   point the optimistic lower-level response by cvxpy (one parametrized problem, solved repeatedly), then
   the best ``F``. It confirms that no grid point beats the optimum and that the best grid point lies next
   to it. :func:`grid_local_minima` lists the grid's local minima of ``h(x) = F(x, y*(x))``: one for the
   problems that declare ``local_is_global``, several for the traps.

Examples:
    >>> from ofmu_opt.reference.constrained import CONSTRAINED_DATA
    >>> sol = kkt_enumeration(CONSTRAINED_DATA["ClarkWesterberg1990a"]())
    >>> [round(float(v), 6) for v in (sol.x[0], sol.y[0], sol.F)]
    [1.0, 3.0, 5.0]
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendError, ProblemSpecError
from .constrained import QPBilevelData

__all__ = ["EnumerationResult", "GridResult", "grid_check", "grid_local_minima", "kkt_enumeration",
           "lower_level_solution"]


def _cp() -> Any:
    try:
        import cvxpy as cp
    except ImportError as exc:  # pragma: no cover - cvxpy is an extra
        raise BackendError("the constrained-reference checks need the 'cvxpy' extra: "
                           "pip install 'ofmu_opt[cvxpy]'") from exc
    return cp


def _solve(problem: Any) -> bool:
    cp = _cp()
    try:
        with warnings.catch_warnings():  # "solution may be inaccurate" on degenerate branches: status says so
            warnings.simplefilter("ignore", UserWarning)
            problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11, max_iter=400)
    except cp.error.SolverError:  # pragma: no cover - numerical trouble on a degenerate branch
        return False
    return problem.status in ("optimal", "optimal_inaccurate")


def _psd_split(M: np.ndarray) -> np.ndarray:
    """A factor ``L`` with ``M = LᵀL`` for a PSD matrix (eigen-decomposition; tiny negatives clipped)."""
    M = 0.5 * (M + M.T)
    w, V = np.linalg.eigh(M)
    if w.min() < -1e-9 * max(1.0, abs(w).max()):
        raise ProblemSpecError("F: the upper-level Hessian is not positive semi-definite (not a convex branch)")
    w = np.clip(w, 0.0, None)
    return np.asarray((V * np.sqrt(w)).T)


def _F_expr(d: QPBilevelData, z: Any) -> Any:
    cp = _cp()
    L = _psd_split(d.P)
    return 0.5 * cp.sum_squares(L @ z) + d.p @ z + d.p0


@dataclass(frozen=True)
class EnumerationResult:
    """The global optimum by active-set enumeration: ``x``, ``y``, ``F``, the active set and the runner-up
    (the best value over the other active sets with a different point, ``inf`` if none)."""

    x: np.ndarray
    y: np.ndarray
    F: float
    active: tuple[int, ...]
    multipliers: np.ndarray
    branches_feasible: int


def kkt_enumeration(d: QPBilevelData) -> EnumerationResult:
    """The optimistic bi-level optimum of ``d`` as the least optimum over the lower level's active sets."""
    cp = _cp()
    m = d.LA.shape[0]
    n = d.nx + d.ny
    Ry, ry, Ly = d.R[d.nx :, :], d.r[d.nx :], d.LA[:, d.nx :]
    best: EnumerationResult | None = None
    feasible = 0
    for k in range(m + 1):
        for S in itertools.combinations(range(m), k):
            z = cp.Variable(n)
            lam = cp.Variable(m)
            off = [i for i in range(m) if i not in S]
            cons = [Ry @ z + ry + Ly.T @ lam == 0, lam >= 0]
            if off:
                cons += [lam[off] == 0, d.LA[off] @ z <= d.lb[off]]
            if S:
                cons += [d.LA[list(S)] @ z == d.lb[list(S)]]
            if d.UA.shape[0]:
                cons += [d.UA @ z <= d.ub]
            prob = cp.Problem(cp.Minimize(_F_expr(d, z)), cons)
            if not _solve(prob) or z.value is None:
                continue
            feasible += 1
            val = float(prob.value)
            if best is None or val < best.F - 1e-10:
                zz = np.asarray(z.value)
                best = EnumerationResult(zz[: d.nx], zz[d.nx :], val, S, np.asarray(lam.value), feasible)
    if best is None:
        raise ProblemSpecError(f"{d.name}: no active set gives a feasible point")
    return EnumerationResult(best.x, best.y, best.F, best.active, best.multipliers, feasible)


class _LowerLevel:
    """The lower level at a parameter ``x`` (cvxpy, compiled once): its value, then the optimistic response."""

    def __init__(self, d: QPBilevelData) -> None:
        cp = _cp()
        self.d = d
        self.x = cp.Parameter(d.nx)
        self.v = cp.Parameter()
        self.y = cp.Variable(d.ny)
        Rxy, Ryy = d.R[: d.nx, d.nx :], d.R[d.nx :, d.nx :]
        Ly = _psd_split(Ryy)
        # f(x, y) up to terms in x alone: ½yᵀR_yy y + (R_xyᵀx + r_y)ᵀy
        fy = 0.5 * cp.sum_squares(Ly @ self.y) + (Rxy.T @ self.x + d.r[d.nx :]) @ self.y
        cons = [d.LA[:, : d.nx] @ self.x + d.LA[:, d.nx :] @ self.y <= d.lb]
        self.stage1 = cp.Problem(cp.Minimize(fy), cons)
        # a strictly convex lower level has one solution: the second stage (a value-function constraint without
        # a Slater point, accurate to ~1e-5 only) is needed only when the solution set can be larger
        self.unique = bool(np.linalg.eigvalsh(0.5 * (Ryy + Ryy.T)).min() > 1e-9)
        z = cp.hstack([self.x, self.y])
        self.stage2 = cp.Problem(cp.Minimize(_F_expr(d, z)), [*cons, fy <= self.v])

    def respond(self, x: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The optimistic lower-level response and its ``F``, or ``None`` if the lower level is infeasible."""
        self.x.value = np.asarray(x, float)
        if not _solve(self.stage1):
            return None
        if self.unique:
            y1 = np.asarray(self.y.value)
            return y1, self.d.F(x, y1)
        v = float(self.stage1.value)
        self.v.value = v + 1e-9 * max(1.0, abs(v))
        if not _solve(self.stage2):
            return None
        y = np.asarray(self.y.value)
        return y, self.d.F(x, y)

    def h(self, x: np.ndarray) -> float | None:
        """``h(x) = F(x, y*(x))``, or ``None`` where the lower level is infeasible or the upper-level constraints
        fail at the response."""
        got = self.respond(x)
        if got is None:
            return None
        y, F = got
        if self.d.UA.shape[0] and np.any(self.d.ul_slack(x, y) < -1e-9):
            return None
        return F


def lower_level_solution(d: QPBilevelData, x: np.ndarray) -> np.ndarray:
    """The lower-level solution at ``x`` by cvxpy (optimistic selection when it is not unique).

    Raises:
        ProblemSpecError: the lower level is infeasible at ``x``.
    """
    got = _LowerLevel(d).respond(x)
    if got is None:
        raise ProblemSpecError(f"{d.name}: the lower level is infeasible at x = {np.asarray(x).tolist()}")
    return got[0]


@dataclass(frozen=True)
class GridResult:
    """The best grid point ``x``, its ``F``, the grid spacing per coordinate and the number of points."""

    x: np.ndarray
    F: float
    spacing: np.ndarray
    points: int


def grid_check(
    d: QPBilevelData, points: int = 201, ranges: tuple[tuple[float, float], ...] | None = None
) -> GridResult:
    """Exhaustive search over ``x`` on a grid of ``points`` values per coordinate of ``ranges``
    (default ``d.x_range``), upper-level constraints enforced, lower level by cvxpy at every point."""
    rng = ranges if ranges is not None else d.x_range
    if len(rng) != d.nx:
        raise ProblemSpecError(f"{d.name}: expected {d.nx} ranges, received {len(rng)}")
    axes = [np.linspace(lo, hi, points) for lo, hi in rng]
    ll = _LowerLevel(d)
    best_x, best_F, count = None, np.inf, 0
    for xs in itertools.product(*axes):
        x = np.array(xs)
        F = ll.h(x)
        if F is None:
            continue
        count += 1
        if F < best_F:
            best_x, best_F = x, F
    if best_x is None:
        raise ProblemSpecError(f"{d.name}: no feasible grid point")
    return GridResult(best_x, float(best_F), np.array([(hi - lo) / (points - 1) for lo, hi in rng]), count)


def grid_local_minima(
    d: QPBilevelData, points: int = 201, ranges: tuple[tuple[float, float], ...] | None = None, rtol: float = 1e-7,
) -> list[tuple[np.ndarray, float]]:
    """The local minima of ``h(x) = F(x, y*(x))`` on a grid of ``points`` values per coordinate: grid points with
    a feasible lower level and the upper-level constraints satisfied whose ``h`` is no larger than at any of their
    ``2·nx`` grid neighbours (up to ``rtol`` relative; a flat run of equal values counts once)."""
    rng = ranges if ranges is not None else d.x_range
    if len(rng) != d.nx:
        raise ProblemSpecError(f"{d.name}: expected {d.nx} ranges, received {len(rng)}")
    axes = [np.linspace(lo, hi, points) for lo, hi in rng]
    ll = _LowerLevel(d)
    H = np.full((points,) * d.nx, np.inf)
    for idx in itertools.product(range(points), repeat=d.nx):
        F = ll.h(np.array([axes[k][i] for k, i in enumerate(idx)]))
        if F is not None:
            H[idx] = F
    out: list[tuple[np.ndarray, float]] = []
    seen: set[tuple[int, ...]] = set()
    for idx in itertools.product(range(points), repeat=d.nx):
        h = H[idx]
        if not np.isfinite(h) or idx in seen:
            continue
        tol = rtol * max(1.0, abs(h))
        flat = [idx]  # the plateau of values equal to h around idx, explored once
        stack, local = [idx], True
        plateau = {idx}
        while stack:
            cur = stack.pop()
            for k in range(d.nx):
                for step in (-1, 1):
                    j = list(cur)
                    j[k] += step
                    if not 0 <= j[k] < points:
                        continue
                    nb = tuple(j)
                    if H[nb] < h - tol:
                        local = False
                    elif abs(H[nb] - h) <= tol and nb not in plateau:
                        plateau.add(nb)
                        stack.append(nb)
                        flat.append(nb)
        seen |= plateau
        if local:
            out.append((np.array([axes[k][i] for k, i in enumerate(idx)]), float(h)))
    return out

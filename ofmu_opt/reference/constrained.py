"""Constrained bi-level test problems from the literature's test libraries, as data.

Every problem here has quadratic (or linear) objectives and linear constraints:

.. code-block:: text

    min_{x,y} F(x, y) = ½ zᵀP z + pᵀz + p0          z = (x, y)
    s.t.      U_x x + U_y y ≤ u                      (upper-level constraints)
              y ∈ argmin_y { f(x, y) = ½ zᵀR z + rᵀz + r0 : L_x x + L_y y ≤ l }   (f convex in y)

That form covers the problems below exactly as their sources state them, and it lets the optimum be
verified independently of the closed form that gives it (:mod:`ofmu_opt.reference.constrained_verify`):
the lower level's KKT conditions are necessary and sufficient (linear constraints, convex in y), so the
optimistic bi-level problem is the minimum, over the lower level's active sets, of convex programs.

Sources (the BOLIB collection: S. Zhou, A. B. Zemkoho, A. Tin, *BOLIB: Bilevel Optimization LIBrary of test
problems*, 2020, which states each problem with ``G(x,y) ≥ 0`` / ``g(x,y) ≥ 0``; the rows below are the same
constraints written ``≤``):

- ``FalkLiu1995`` — J. E. Falk, J. Liu, *On bilevel programming, Part I*, Math. Program. 70 (1995);
- ``DeSilva1978`` — A. H. DeSilva, PhD thesis, George Washington University (1978);
- ``ShimizuAiyoshi1981Ex1`` — K. Shimizu, E. Aiyoshi, *A new computational method for Stackelberg and
  min-max problems by use of a penalty method*, IEEE TAC 26 (1981), example 1;
- ``ClarkWesterberg1990a`` — P. A. Clark, A. W. Westerberg, *Bilevel programming for steady-state chemical
  process design I*, Comput. Chem. Eng. 14 (1990);
- ``Bard1988Ex1`` — J. F. Bard, *Convex two-level optimization*, Math. Program. 40 (1988), example 1;
- ``Outrata1990Ex1a`` — J. V. Outrata, *On the numerical solution of a class of Stackelberg problems*,
  ZOR 34 (1990), example 1(a);
- ``LamparielloSagratella2017Ex33``, ``…Ex35`` — L. Lampariello, S. Sagratella, *A bridge between bilevel
  programs and Nash games*, JOTA 174 (2017), examples 3.3 and 3.5;
- ``AnandalinghamWhite1990`` — G. Anandalingam, D. J. White, *A solution method for the linear static
  Stackelberg problem using penalty functions*, IEEE TAC 35 (1990).

Examples:
    >>> d = CONSTRAINED_DATA["ShimizuAiyoshi1981Ex1"]()
    >>> round(d.F(d.x_star, d.y_star), 9), d.nx, d.ny
    (100.0, 1, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CONSTRAINED_DATA", "QPBilevelData"]


@dataclass(frozen=True)
class QPBilevelData:
    """A bi-level program with quadratic objectives and linear constraints (see the module docstring).

    Attributes:
        name: the problem's name in its source library.
        citation: where the problem comes from.
        nx, ny: dimensions of x and y.
        P, p, p0: the upper-level objective ``F = ½zᵀPz + pᵀz + p0``, ``z = (x, y)``.
        R, r, r0: the lower-level objective ``f = ½zᵀRz + rᵀz + r0`` (``R_yy ⪰ 0``).
        LA, lb: lower-level constraints ``LA z ≤ lb`` (rows).
        UA, ub: upper-level constraints ``UA z ≤ ub`` (rows).
        x_star, y_star: the optimum (derived by hand; verified in code).
        f_star_listed: the value the library lists (it can differ from the exact optimum; see ``note``).
        x0, y0: the starting point the library lists.
        traps: what makes the problem hard (local minima, degenerate or active constraints, ...).
        note: anything the reader must know (e.g. the library's value is not the exact optimum).
        x_range: the interval of x where the lower level is feasible (for the grid check), per coordinate.
        local_is_global: every local minimum of ``h(x) = F(x, y*(x))`` is global (declared from the problem's
            structure, stated with each problem, and checked on a grid over ``x_range`` by the tests); the traps
            have ``False``.
    """

    name: str
    citation: str
    nx: int
    ny: int
    P: np.ndarray
    p: np.ndarray
    p0: float
    R: np.ndarray
    r: np.ndarray
    r0: float
    LA: np.ndarray
    lb: np.ndarray
    UA: np.ndarray
    ub: np.ndarray
    x_star: np.ndarray
    y_star: np.ndarray
    f_star_listed: float
    x0: np.ndarray
    y0: np.ndarray
    traps: str
    note: str = ""
    x_range: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    local_is_global: bool = False

    # --------------------------------------------------------------- evaluation
    def z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(x, float).ravel(), np.asarray(y, float).ravel()])

    def F(self, x: np.ndarray, y: np.ndarray) -> float:
        """Upper-level objective."""
        z = self.z(x, y)
        return float(0.5 * z @ self.P @ z + self.p @ z + self.p0)

    def f(self, x: np.ndarray, y: np.ndarray) -> float:
        """Lower-level objective."""
        z = self.z(x, y)
        return float(0.5 * z @ self.R @ z + self.r @ z + self.r0)

    def gradF(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.P @ self.z(x, y) + self.p
        return g[: self.nx], g[self.nx :]

    def gradf(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.R @ self.z(x, y) + self.r
        return g[: self.nx], g[self.nx :]

    def ll_slack(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``lb − LA z`` (≥ 0 when the lower-level constraints hold)."""
        return self.lb - self.LA @ self.z(x, y)

    def ul_slack(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``ub − UA z`` (≥ 0 when the upper-level constraints hold)."""
        return self.ub - self.UA @ self.z(x, y)

    @property
    def F_star(self) -> float:
        return self.F(self.x_star, self.y_star)

    # --------------------------------------------------------------- structure for the solver
    def bounds(self, block: str) -> tuple[np.ndarray, np.ndarray]:
        """Simple bounds on ``x`` (from the upper-level rows) or ``y`` (from the lower-level rows): the rows
        with a single nonzero entry, in that block only. Returns ``(lower, upper)`` with ±inf where unbounded."""
        n, off, A, b = (self.nx, 0, self.UA, self.ub) if block == "x" else (self.ny, self.nx, self.LA, self.lb)
        lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
        for row, rhs in zip(A, b, strict=True):
            nz = np.flatnonzero(row)
            if nz.size == 1 and off <= nz[0] < off + n:
                i, c = nz[0] - off, row[nz[0]]
                if c > 0:
                    hi[i] = min(hi[i], rhs / c)
                else:
                    lo[i] = max(lo[i], rhs / c)
        return lo, hi

    def coupled_rows(self, level: str) -> tuple[np.ndarray, np.ndarray]:
        """The rows of ``level`` ("ll" or "ul") that are not simple bounds of that level's own block."""
        A, b, off, n = (self.LA, self.lb, self.nx, self.ny) if level == "ll" else (self.UA, self.ub, 0, self.nx)
        keep = []
        for k, row in enumerate(A):
            nz = np.flatnonzero(row)
            if not (nz.size == 1 and off <= nz[0] < off + n):
                keep.append(k)
        return A[keep], b[keep]


def _rows(*rows: tuple[list[float], float]) -> tuple[np.ndarray, np.ndarray]:
    if not rows:
        return np.zeros((0, 0)), np.zeros(0)
    return np.array([r for r, _ in rows], float), np.array([b for _, b in rows], float)


def _make(
    name: str, citation: str, nx: int, ny: int, *, P: list[list[float]], p: list[float], p0: float,
    R: list[list[float]], r: list[float], r0: float, ll: tuple[np.ndarray, np.ndarray],
    ul: tuple[np.ndarray, np.ndarray], x_star: list[float], y_star: list[float], listed: float,
    x0: list[float], y0: list[float], traps: str, note: str = "",
    x_range: tuple[tuple[float, float], ...] = (), local_is_global: bool = False,
) -> QPBilevelData:
    n = nx + ny
    LA, lb = ll
    UA, ub = ul
    if UA.size == 0:
        UA, ub = np.zeros((0, n)), np.zeros(0)
    return QPBilevelData(
        name, citation, nx, ny, np.array(P, float), np.array(p, float), float(p0), np.array(R, float),
        np.array(r, float), float(r0), LA, lb, UA, ub, np.array(x_star, float), np.array(y_star, float),
        float(listed), np.array(x0, float), np.array(y0, float), traps, note, x_range, local_is_global,
    )


def falk_liu_1995() -> QPBilevelData:
    # F = (x1−3/2)² + (x2−3/2)² + y1² + y2² − 9/2 ; f = ‖x − y‖² ; 1/2 ≤ y ≤ 3/2
    # y*(x) = clip(x, 1/2, 3/2); on [1/2, 3/2] F_i = 2x² − 3x + 9/4 is minimal at x = 3/4 (value 9/8)
    return _make(
        "FalkLiu1995", "Falk & Liu (1995), via BOLIB", 2, 2,
        P=np.diag([2.0, 2.0, 2.0, 2.0]).tolist(), p=[-3.0, -3.0, 0.0, 0.0], p0=0.0,
        R=[[2, 0, -2, 0], [0, 2, 0, -2], [-2, 0, 2, 0], [0, -2, 0, 2]], r=[0, 0, 0, 0], r0=0.0,
        ll=_rows(([0, 0, -1, 0], -0.5), ([0, 0, 0, -1], -0.5), ([0, 0, 1, 0], 1.5), ([0, 0, 0, 1], 1.5)),
        ul=_rows(), x_star=[0.75, 0.75], y_star=[0.75, 0.75], listed=-2.1962, x0=[0.0, 0.0], y0=[1.0, 1.0],
        traps="box-constrained lower level (a projection y = clip(x)); the bi-level optimum is interior to "
              "the box, the kink of y*(x) is nearby at x = 1/2",
        note="BOLIB lists F = −2.1962 (the value at x = y = (√3/2, √3/2)); the exact optimum of the problem as "
             "stated is F* = −2.25 at x = y = (3/4, 3/4), verified by active-set enumeration and a grid",
        x_range=((-1.0, 3.0), (-1.0, 3.0)),
        # separable: per coordinate h = (x − 3/2)² + clip(x, 1/2, 3/2)² − 9/4 has one local minimum, x = 3/4
        local_is_global=True,
    )


def desilva_1978() -> QPBilevelData:
    # F = (x1−1)² + (x2−1)² + y1² + y2² − 2 ; f = ‖x − y‖² ; 1/2 ≤ y ≤ 3/2
    return _make(
        "DeSilva1978", "DeSilva (1978), via BOLIB", 2, 2,
        P=np.diag([2.0, 2.0, 2.0, 2.0]).tolist(), p=[-2.0, -2.0, 0.0, 0.0], p0=0.0,
        R=[[2, 0, -2, 0], [0, 2, 0, -2], [-2, 0, 2, 0], [0, -2, 0, 2]], r=[0, 0, 0, 0], r0=0.0,
        ll=_rows(([0, 0, -1, 0], -0.5), ([0, 0, 0, -1], -0.5), ([0, 0, 1, 0], 1.5), ([0, 0, 0, 1], 1.5)),
        ul=_rows(), x_star=[0.5, 0.5], y_star=[0.5, 0.5], listed=-1.0, x0=[0.0, 0.0], y0=[1.0, 1.0],
        traps="degenerate: the optimum sits exactly on the kink of y*(x) = clip(x, 1/2, 3/2); the lower-level "
              "bound y ≥ 1/2 is active with a zero multiplier (strict complementarity fails)",
        x_range=((-1.0, 3.0), (-1.0, 3.0)),
        # separable: per coordinate h = (x − 1)² + clip(x, 1/2, 3/2)² − 1 has one local minimum, x = 1/2
        local_is_global=True,
    )


def shimizu_aiyoshi_1981_ex1() -> QPBilevelData:
    # F = x² + (y−10)² ; UL: 0 ≤ x ≤ 15, y ≤ x ; LL: min (x + 2y − 30)² s.t. x + y ≤ 20, 0 ≤ y ≤ 20
    # (x + 2y − 30)² = ½·8y² + 4xy − 120y + ½·2x² − 60x + 900
    return _make(
        "ShimizuAiyoshi1981Ex1", "Shimizu & Aiyoshi (1981) example 1, via BOLIB", 1, 1,
        P=[[2, 0], [0, 2]], p=[0.0, -20.0], p0=100.0,
        R=[[2, 4], [4, 8]], r=[-60.0, -120.0], r0=900.0,
        ll=_rows(([1, 1], 20.0), ([0, 1], 20.0), ([0, -1], 0.0)),
        ul=_rows(([1, 0], 15.0), ([-1, 1], 0.0), ([-1, 0], 0.0)),
        x_star=[10.0], y_star=[10.0], listed=100.0, x0=[1.0], y0=[1.0],
        traps="an upper-level constraint in y (y ≤ x) and a coupled lower-level constraint (x + y ≤ 20) are both "
              "active at the optimum, where the lower level's unconstrained minimizer also lies",
        x_range=((0.0, 15.0),),
        # h(x) on [0, 15] has one local minimum (x = 10); checked on a grid
        local_is_global=True,
    )


def clark_westerberg_1990a() -> QPBilevelData:
    # F = (x−3)² + (y−2)² ; UL 0 ≤ x ≤ 8 ; LL min (y−5)² s.t. y ≤ 2x+1, x − 2y ≤ −2, x + 2y ≤ 14
    return _make(
        "ClarkWesterberg1990a", "Clark & Westerberg (1990), via BOLIB", 1, 1,
        P=[[2, 0], [0, 2]], p=[-6.0, -4.0], p0=13.0,
        R=[[0, 0], [0, 2]], r=[0.0, -10.0], r0=25.0,
        ll=_rows(([-2, 1], 1.0), ([1, -2], -2.0), ([1, 2], 14.0)),
        ul=_rows(([1, 0], 8.0), ([-1, 0], 0.0)),
        x_star=[1.0], y_star=[3.0], listed=5.0, x0=[1.0], y0=[1.0],
        traps="local-minimum traps: h(x) = F(x, y*(x)) has local minima at x = 3 (F = 9) and x = 4.4 (F = 9.8) "
              "besides the global one at x = 1 (F = 5); the lower level is infeasible for x > 6",
        x_range=((0.0, 6.0),),
    )


def bard_1988_ex1() -> QPBilevelData:
    # F = (x−5)² + (2y+1)² ; UL x ≥ 0 ; LL min (y−1)² − 1.5xy s.t. y ≤ 3x − 3, 2x − y ≤ 8, x + y ≤ 7, y ≥ 0
    return _make(
        "Bard1988Ex1", "Bard (1988) example 1, via BOLIB", 1, 1,
        P=[[2, 0], [0, 8]], p=[-10.0, 4.0], p0=26.0,
        R=[[0, -1.5], [-1.5, 2]], r=[0.0, -2.0], r0=1.0,
        ll=_rows(([-3, 1], -3.0), ([2, -1], 8.0), ([1, 1], 7.0), ([0, -1], 0.0)),
        ul=_rows(([-1, 0], 0.0),),
        x_star=[1.0], y_star=[0.0], listed=17.0, x0=[4.0], y0=[0.0],
        traps="the optimum is at the edge of the set where the lower level is feasible (x ≥ 1): there the lower "
              "feasible set is the single point y = 0 and two lower-level constraints are active. Local-minimum "
              "trap: h(x) decreases on [3.43, 5] to a local minimum at the other edge, x = 5, y = 2 (F = 25), "
              "and the library's start x0 = 4 lies in that basin; for x outside [1, 5] the lower level is "
              "infeasible",
        x_range=((1.0, 5.0),),
    )


def _outrata_optimum() -> tuple[np.ndarray, np.ndarray]:
    """On the face y1 − 0.333·y2 = 2 (the lower level's constraint 2 active, multiplier λ > 0) the lower level's
    KKT conditions give x = Qy + λa, a = (1, −0.333); with y = (2 + 0.333s, s) the upper level is a convex
    quadratic in (s, λ): one 2×2 linear solve."""
    Q = np.array([[1.0, -2.0], [-2.0, 5.0]])
    a = np.array([1.0, -0.333])
    t = np.array([3.0, 4.0])
    e = np.array([0.333, 1.0])  # dy/ds
    y0 = np.array([2.0, 0.0])
    # F(s, λ) = ½‖y0 + es − t‖² + 0.1‖Q(y0 + es) + λa‖²
    M = np.column_stack([Q @ e, a])  # d x / d(s, λ)
    H = np.outer([1.0, 0.0], [1.0, 0.0]) * (e @ e) + 0.2 * M.T @ M
    g = np.array([e @ (y0 - t), 0.0]) + 0.2 * M.T @ (Q @ y0)
    s, lam = np.linalg.solve(H, -g)
    y = y0 + e * s
    return Q @ y + lam * a, y


def outrata_1990_ex1a() -> QPBilevelData:
    # F = ½(y1−3)² + ½(y2−4)² + 0.1‖x‖² − 12.5 ; LL min ½yᵀ[[1,−2],[−2,5]]y − xᵀy s.t.
    # y2 ≤ 0.333 y1 + 2, y1 ≤ 0.333 y2 + 2, y ≥ 0
    xs, ys = _outrata_optimum()
    return _make(
        "Outrata1990Ex1a", "Outrata (1990) example 1(a), via BOLIB", 2, 2,
        P=np.diag([0.2, 0.2, 1.0, 1.0]).tolist(), p=[0.0, 0.0, -3.0, -4.0], p0=0.0,
        R=[[0, 0, -1, 0], [0, 0, 0, -1], [-1, 0, 1, -2], [0, -1, -2, 5]], r=[0, 0, 0, 0], r0=0.0,
        ll=_rows(([0, 0, -0.333, 1], 2.0), ([0, 0, 1, -0.333], 2.0), ([0, 0, -1, 0], 0.0), ([0, 0, 0, -1], 0.0)),
        ul=_rows(), x_star=xs.tolist(), y_star=ys.tolist(), listed=-8.92, x0=[0.0, 0.0], y0=[3.0, 3.0],
        traps="strongly convex lower level over a polytope in y; at the optimum the coupled constraint "
              "y1 ≤ 0.333·y2 + 2 is active, so y*(x) moves along a face and its Jacobian is rank one",
        x_range=((-5.0, 25.0), (-5.0, 25.0)),
        # strongly convex lower level; h has one local minimum over x_range, checked on a grid
        local_is_global=True,
    )


def lampariello_sagratella_2017_ex33() -> QPBilevelData:
    # F = (y1 + y2)² + x² ; UL x ≥ 1/2 ; LL min y1 s.t. x + y1 + y2 ≥ 1, y ≥ 0
    return _make(
        "LamparielloSagratella2017Ex33", "Lampariello & Sagratella (2017) example 3.3, via BOLIB", 1, 2,
        P=[[2, 0, 0], [0, 2, 2], [0, 2, 2]], p=[0.0, 0.0, 0.0], p0=0.0,
        R=np.zeros((3, 3)).tolist(), r=[0.0, 1.0, 0.0], r0=0.0,
        ll=_rows(([-1, -1, -1], -1.0), ([0, -1, 0], 0.0), ([0, 0, -1], 0.0)),
        ul=_rows(([-1, 0, 0], -0.5),),
        x_star=[0.5], y_star=[0.0, 0.5], listed=0.5, x0=[1.0], y0=[1.0, 1.0],
        traps="linear lower level whose solution set {y1 = 0, y2 ≥ 1 − x} is an unbounded ray: the upper level "
              "selects (optimistic); the upper-level bound x ≥ 1/2 is active",
        x_range=((0.5, 3.0),),
        # h(x) = x² + (1 − x)² for x ≤ 1 (y2 = 1 − x), x² beyond: one local minimum, x = 1/2
        local_is_global=True,
    )


def lampariello_sagratella_2017_ex35() -> QPBilevelData:
    # F = x² + y² ; UL −1 ≤ x ≤ 1 ; LL min −y s.t. y ≤ 2 − 2x, 0 ≤ y ≤ 1
    return _make(
        "LamparielloSagratella2017Ex35", "Lampariello & Sagratella (2017) example 3.5, via BOLIB", 1, 1,
        P=[[2, 0], [0, 2]], p=[0.0, 0.0], p0=0.0,
        R=[[0, 0], [0, 0]], r=[0.0, -1.0], r0=0.0,
        ll=_rows(([2, 1], 2.0), ([0, -1], 0.0), ([0, 1], 1.0)),
        ul=_rows(([1, 0], 1.0), ([-1, 0], 1.0)),
        x_star=[0.8], y_star=[0.4], listed=0.8, x0=[1.0], y0=[1.0],
        traps="linear lower level y*(x) = min(1, 2 − 2x); h(x) has a local minimum at x = 0 (F = 1) besides the "
              "global one at x = 0.8 (F = 0.8), where the coupled constraint y ≤ 2 − 2x is active",
        x_range=((-1.0, 1.0),),
    )


def anandalingam_white_1990() -> QPBilevelData:
    # F = −x − 3y ; UL x ≥ 0 ; LL min 3y − x s.t. x + 2y ≥ 10, x − 2y ≤ 6, 2x − y ≤ 21, x + 2y ≤ 38,
    # 2y − x ≤ 18, y ≥ 0
    return _make(
        "AnandalinghamWhite1990", "Anandalingam & White (1990), via BOLIB", 1, 1,
        P=[[0, 0], [0, 0]], p=[-1.0, -3.0], p0=0.0,
        R=[[0, 0], [0, 0]], r=[-1.0, 3.0], r0=0.0,
        ll=_rows(([-1, -2], -10.0), ([1, -2], 6.0), ([2, -1], 21.0), ([1, 2], 38.0), ([-1, 2], 18.0),
                 ([0, -1], 0.0)),
        ul=_rows(([-1, 0], 0.0),),
        x_star=[16.0], y_star=[11.0], listed=-49.0, x0=[1.0], y0=[1.0],
        traps="linear bi-level program with a local-minimum trap: h(x) = 0.5x − 15 on [0, 8] has a local minimum "
              "at x = 0 (F = −15); the global optimum is the vertex x = 16 where the lower feasible set shrinks "
              "to a point, at the edge of the x-range where the lower level is feasible",
        x_range=((0.0, 16.0),),
    )


def p5_data() -> QPBilevelData:
    # P5 of REFERENCE_PROBLEMS.md: F = ½‖y − t‖² + (r/2)‖x‖², LL min ½‖y − x‖² s.t. y ≥ 0
    t, rr = np.array([1.5, -0.7, 0.3]), 0.5
    n = 3
    I3, Z3 = np.eye(n), np.zeros((n, n))
    P = np.block([[rr * I3, Z3], [Z3, I3]])
    R = np.block([[I3, -I3], [-I3, I3]])
    LA = np.hstack([Z3, -I3])
    x_star = np.where(t > 0, t / (1 + rr), 0.0)
    return _make(
        "P5", "REFERENCE_PROBLEMS.md (projection lower level y*(x) = max(x, 0))", 3, 3,
        P=P.tolist(), p=np.concatenate([np.zeros(n), -t]).tolist(), p0=0.5 * float(t @ t),
        R=R.tolist(), r=np.zeros(2 * n).tolist(), r0=0.0, ll=(LA, np.zeros(n)), ul=_rows(),
        x_star=x_star.tolist(), y_star=np.maximum(x_star, 0.0).tolist(),
        listed=float(0.5 * np.sum((np.maximum(x_star, 0) - t) ** 2) + 0.25 * x_star @ x_star),
        x0=[0.0, 0.0, 0.0], y0=[0.0, 0.0, 0.0],
        traps="coordinate 2 (t2 < 0) has its optimum x2 = 0 exactly at the kink of y*(x) = max(x, 0), with the "
              "bound y2 ≥ 0 active and a zero multiplier",
        x_range=((-1.0, 2.0), (-1.0, 2.0), (-1.0, 2.0)),
        # separable: per coordinate h = ½(max(x, 0) − t)² + (r/2)x² has one local minimum
        local_is_global=True,
    )


CONSTRAINED_DATA: dict[str, Callable[[], QPBilevelData]] = {
    "P5": p5_data,
    "FalkLiu1995": falk_liu_1995,
    "DeSilva1978": desilva_1978,
    "ShimizuAiyoshi1981Ex1": shimizu_aiyoshi_1981_ex1,
    "ClarkWesterberg1990a": clark_westerberg_1990a,
    "Bard1988Ex1": bard_1988_ex1,
    "Outrata1990Ex1a": outrata_1990_ex1a,
    "LamparielloSagratella2017Ex33": lampariello_sagratella_2017_ex33,
    "LamparielloSagratella2017Ex35": lampariello_sagratella_2017_ex35,
    "AnandalinghamWhite1990": anandalingam_white_1990,
}
"""Constrained problems by name (P5 included: its lower level has the bound y ≥ 0)."""

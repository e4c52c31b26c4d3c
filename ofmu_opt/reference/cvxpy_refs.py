"""cvxpy references: independent solutions of the reference problems, and a helper for your own problem.

Convex bi-level problems whose inner problem is a convex quadratic (or least squares) have an *affine*
inner solution set, ``{y : Q y + Cᵀx + a = 0}``: stationarity is optimality for a convex quadratic. The
optimistic bi-level problem is then a single convex program, ``min f(x, y)`` over that affine set, which
cvxpy solves to ~1e-12 with interior-point solvers (a value-function constraint ``g ≤ v*`` would have no
Slater point and reach only ~1e-5). Problems that are not of this form are reformulated exactly:

- P5 (inner constraint ``y ≥ 0``): the inner solution is ``y = max(x, 0)``; the problem is separable, so
  each coordinate's two active-set branches (``y_i = x_i ≥ 0`` or ``y_i = 0 ≥ x_i``) are convex QPs;
- P6 (lexicographic LP): two stages, the second constrained to the first stage's optimal value;
- P9 (a penalized problem): a convex QP in ``(x, y)`` directly;
- the constrained library problems (:mod:`ofmu_opt.reference.constrained`): KKT active-set enumeration
  (:func:`ofmu_opt.reference.constrained_verify.kkt_enumeration`);
- FSQ (finite sums): the affine inner set of the mean quadratic.

Examples:
    >>> import numpy as np
    >>> import cvxpy as cp
    >>> Q = np.diag([1.0, 0.0]); a = np.array([-1.0, 0.0])   # inner: argmin ½y1² − y1 = {(1, y2)}
    >>> sol = quadratic_inner_reference(lambda x, y: cp.sum_squares(y - np.array([0.0, 2.0])), Q=Q, a=a)
    >>> np.round(sol.y, 6).tolist()
    [1.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendError, ProblemSpecError
from .problems import ReferenceProblem, get_reference

__all__ = ["CvxpySolution", "cvxpy_solution", "least_squares_inner_reference", "quadratic_inner_reference"]


def _cp() -> Any:
    try:
        import cvxpy as cp
    except ImportError as exc:  # pragma: no cover - cvxpy is an extra
        raise BackendError("cvxpy references need the 'cvxpy' extra: pip install 'ofmu_opt[cvxpy]'") from exc
    return cp


@dataclass(frozen=True)
class CvxpySolution:
    """A cvxpy solution: ``x`` (or ``None``), ``y``, the outer value ``f`` and the solver's status."""

    x: np.ndarray | None
    y: np.ndarray
    f: float
    status: str


def _solve(problem: Any) -> str:
    cp = _cp()
    try:
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12,
                      tol_ktratio=1e-10, max_iter=500)
    except cp.error.SolverError:  # pragma: no cover - fall back to the default choice
        problem.solve()
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise ProblemSpecError(f"cvxpy: the reference problem was not solved (status {problem.status!r})")
    return str(problem.status)


def quadratic_inner_reference(
    outer: Callable[[Any, Any], Any],
    *,
    Q: np.ndarray,
    a: np.ndarray,
    C: np.ndarray | None = None,
    constraints: Callable[[Any, Any], list[Any]] | None = None,
) -> CvxpySolution:
    """Solve ``min_{x,y} outer(x, y)  s.t.  y ∈ argmin_y ½yᵀQy + xᵀCy + aᵀy`` (optimistic) with cvxpy.

    Args:
        outer: builds the convex outer objective as a cvxpy expression from the variables ``(x, y)``
            (``x`` is ``None`` when ``C`` is ``None``).
        Q: the inner Hessian, symmetric positive semi-definite (``n×n``); singular is fine.
        a: the inner linear term (``n``).
        C: optional coupling ``m×n``; gives an outer-only variable ``x ∈ R^m``.
        constraints: optional extra convex constraints on ``(x, y)`` (list of cvxpy constraints).

    Returns:
        A :class:`CvxpySolution`.

    Raises:
        ProblemSpecError: shapes disagree, ``Q`` is not symmetric PSD, or cvxpy does not solve it
            (e.g. the inner problem is unbounded: ``a`` has a component outside the range of ``Q``).
    """
    cp = _cp()
    Q = np.asarray(Q, dtype=float)
    a = np.asarray(a, dtype=float)
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1] or a.shape != (Q.shape[0],):
        raise ProblemSpecError(f"Q, a: expected shapes (n, n) and (n,), received {Q.shape} and {a.shape}")
    if not np.allclose(Q, Q.T, atol=1e-12) or np.linalg.eigvalsh(Q).min() < -1e-10:
        raise ProblemSpecError("Q: expected a symmetric positive semi-definite matrix (a convex inner problem)")
    n = Q.shape[0]
    y = cp.Variable(n)
    x = None
    stationarity = Q @ y + a
    if C is not None:
        C = np.asarray(C, dtype=float)
        if C.ndim != 2 or C.shape[1] != n:
            raise ProblemSpecError(f"C: expected shape (m, {n}), received {C.shape}")
        x = cp.Variable(C.shape[0])
        stationarity = stationarity + C.T @ x
    cons = [stationarity == 0]
    if constraints is not None:
        cons += list(constraints(x, y))
    prob = cp.Problem(cp.Minimize(outer(x, y)), cons)
    status = _solve(prob)
    return CvxpySolution(None if x is None else np.asarray(x.value), np.asarray(y.value), float(prob.value), status)


def least_squares_inner_reference(
    outer: Callable[[Any, Any], Any], *, A: np.ndarray, b: np.ndarray,
    constraints: Callable[[Any, Any], list[Any]] | None = None,
) -> CvxpySolution:
    """``min outer(None, y)  s.t.  y ∈ argmin ½‖Ay − b‖²`` (the inner set is ``{Aᵀ(Ay − b) = 0}``).

    Examples:
        >>> import numpy as np, cvxpy as cp
        >>> A = np.array([[1.0, 1.0]]); b = np.array([2.0])
        >>> sol = least_squares_inner_reference(lambda x, y: cp.sum_squares(y), A=A, b=b)
        >>> np.round(sol.y, 6).tolist()
        [1.0, 1.0]
    """
    A = np.asarray(A, dtype=float)
    b = np.asarray(b, dtype=float)
    if A.ndim != 2 or b.shape != (A.shape[0],):
        raise ProblemSpecError(f"A, b: expected shapes (m, n) and (m,), received {A.shape} and {b.shape}")
    return quadratic_inner_reference(outer, Q=A.T @ A, a=-A.T @ b, constraints=constraints)


def _p5(ref: ReferenceProblem) -> CvxpySolution:
    cp = _cp()
    t, r = ref.data["t"], float(ref.data["r"])
    n = t.size
    # branch "active": y = 0 and x ≤ 0; branch "inactive": y = x and x ≥ 0; separable per coordinate
    x1 = cp.Variable(n)
    p1 = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x1 - t) + 0.5 * r * cp.sum_squares(x1)), [x1 >= 0])
    _solve(p1)
    x0 = cp.Variable(n)
    p0 = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(t) + 0.5 * r * cp.sum_squares(x0)), [x0 <= 0])
    _solve(p0)
    v1 = 0.5 * (x1.value - t) ** 2 + 0.5 * r * x1.value**2
    v0 = 0.5 * t**2 + 0.5 * r * x0.value**2
    x = np.where(v1 <= v0, x1.value, x0.value)
    y = np.maximum(x, 0.0)
    return CvxpySolution(x, y, float(np.sum(np.minimum(v0, v1))), "optimal")


def p6_lexicographic() -> CvxpySolution:
    """P6: ``min c2ᵀy`` over ``argmin{c1ᵀy : y1 + y2 ≥ 1, 0 ≤ y ≤ 1}``, two-stage."""
    cp = _cp()
    c1, c2 = np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, -1.0])
    y = cp.Variable(3)
    base = [y[0] + y[1] >= 1, y >= 0, y <= 1]
    p1 = cp.Problem(cp.Minimize(c1 @ y), base)
    _solve(p1)
    v1 = float(p1.value)
    p2 = cp.Problem(cp.Minimize(c2 @ y), [*base, c1 @ y <= v1 + 1e-12])
    status = _solve(p2)
    return CvxpySolution(None, np.asarray(y.value), float(p2.value), status)


def cvxpy_solution(problem_id: str, seed: int = 0) -> CvxpySolution:
    """The cvxpy solution of a registered reference problem (independent of its closed form)."""
    cp = _cp()
    if problem_id == "P6":
        return p6_lexicographic()
    ref = get_reference(problem_id, seed)
    d = ref.data
    if problem_id == "P1b":
        return least_squares_inner_reference(lambda x, y: 0.5 * cp.sum_squares(y - d["c"]), A=d["A"], b=d["b"])
    if problem_id == "P2":
        return least_squares_inner_reference(
            lambda x, y: 0.5 * cp.sum_squares(d["Av"] @ y - d["bv"]), A=d["At"], b=d["bt"]
        )
    if problem_id == "P3":
        H = d["H"]
        return quadratic_inner_reference(
            lambda x, y: 0.5 * cp.sum_squares(y - d["t"]) + 0.5 * cp.quad_form(x, H), Q=d["Q"], a=d["a"], C=d["C"]
        )
    if problem_id == "P4":
        return quadratic_inner_reference(
            lambda x, y: 0.5 * cp.square(x[0] - y[1]) + 0.5 * cp.square(y[0] - 1.0),
            Q=np.diag([1.0, 0.0]), a=np.zeros(2), C=np.array([[-1.0, 0.0]]),
        )
    if problem_id == "P5":
        return _p5(ref)
    if ref.constrained:
        from .constrained_verify import kkt_enumeration

        e = kkt_enumeration(d["qp"])
        return CvxpySolution(e.x, e.y, e.F, "optimal")
    if problem_id == "FSQ":
        Fm = d["F"].mean(0)
        Fm = 0.5 * (Fm + Fm.T)
        return quadratic_inner_reference(
            lambda x, y: 0.5 * cp.quad_form(y, Fm) - d["t"].mean(0) @ y + 0.5 * cp.quad_form(x, d["H"]),
            Q=d["A"].mean(0), a=d["a"].mean(0), C=d["C"].mean(0),
        )
    if problem_id == "P9":
        Q, C, a, t, H = d["Q"], d["C"], d["a"], d["t"], d["H"]
        rho = float(ref.penalty or 0.0)
        x, y = cp.Variable(C.shape[0]), cp.Variable(C.shape[1])
        # value gap g(x, y) − min_z g(x, z) = ½‖L⁻¹... ‖²: written as ½(Qy + Cᵀx + a)ᵀQ⁻¹(Qy + Cᵀx + a)
        Qi = np.linalg.inv(Q)
        Qi = 0.5 * (Qi + Qi.T)
        r = Q @ y + C.T @ x + a
        obj = 0.5 * cp.sum_squares(y - t) + 0.5 * cp.quad_form(x, H) + rho * 0.5 * cp.quad_form(r, Qi)
        prob = cp.Problem(cp.Minimize(obj))
        status = _solve(prob)
        return CvxpySolution(np.asarray(x.value), np.asarray(y.value), float(prob.value), status)
    if problem_id in ("QOFMU", "QOFMU-orth"):
        A, B = d["A"], d["B"]
        lin = d["d"] if problem_id == "QOFMU" else A @ d["a"]
        # inner: max −½θᵀAθ + linᵀθ  ⇔  min ½θᵀAθ − linᵀθ
        return quadratic_inner_reference(
            lambda x, y: 0.5 * cp.quad_form(y - d["b"], 0.5 * (B + B.T)), Q=A, a=-lin,
        )
    raise ProblemSpecError(f"problem id: no cvxpy reference for {problem_id!r}")

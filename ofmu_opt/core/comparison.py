r"""Comparison solvers implemented from their papers, on the same problems, oracles and loop.

- :class:`Bome` — BOME (Liu, Ye, Wright, Stone, Liu, NeurIPS 2022): value-function constraint
  :math:`q(x,y) = g(x,y) - g(x, y_T)` with :math:`y_T` from T inner gradient steps, and a dynamic barrier:
  :math:`(x,y) \leftarrow (x,y) - \xi(\nabla f + \lambda\nabla q)`,
  :math:`\lambda = \max\big((\eta\|\nabla q\|^2 - \langle\nabla f,\nabla q\rangle)/\|\nabla q\|^2, 0\big)`.
- :class:`F2sa` — F2SA (Kwon, Kwon, Wright, Nowak, ICML 2023): fully first-order Lagrangian
  :math:`f(x,y) + \lambda(g(x,y) - g(x,z))`; T steps for z on g and for y on :math:`f/\lambda + g`,
  one step for x, and a multiplier growing by ``lam_step`` per round.
- :class:`ImplicitDiff` — exact implicit-differentiation hypergradient descent for strongly convex inner
  problems: inner solve, conjugate gradient on :math:`\nabla^2_{yy} g\,v = \nabla_y f`, hypergradient
  :math:`\nabla_x f - \nabla^2_{xy} g\,v` (the accuracy reference). With ``inner_solver="cg"`` the inner
  problem is solved by Newton steps whose systems CG solves through HVPs, and the adjoint CG starts from the
  previous round's ``v``; ``outer_rule="lbfgs"`` takes L-BFGS steps on :math:`h(x) = f(x, y^*(x))` with an
  Armijo line search (every trial point gets its inner solve, which the next round reuses). With
  ``inner_solver="dense"`` (small inner problems) the inner Hessian blocks :math:`\nabla^2_{yy} g` and
  :math:`\nabla^2_{xy} g` are formed densely at each point — from the inner objective's optional ``hessian``
  oracle, else from ``dy`` HVPs along unit vectors — and the Newton steps and the adjoint system are solved by a
  Cholesky factorization instead of CG: one oracle call per point instead of one HVP per CG iteration. Those
  host-side factorizations, solves and products go through the vector space's optional ``linalg`` capability
  (:class:`HostLinalg`; numpy/LAPACK in both built-in spaces) and fall back to :class:`PythonLinalg`, plain Python
  floats, for a space without it.

All minimize the inner objective in its minimization form (``sense="max"`` is handled by a sign), use
the problem's HVP oracle where they need one, and return a :class:`~ofmu_opt.core.result.BilevelResult`. They
handle no constraints: a problem with ``x_set``, ``y_set`` or inequality constraints is refused with a
:class:`~ofmu_opt.errors.ProblemSpecError` when the run starts.

Examples:
    >>> from ofmu_opt.reference import get_reference
    >>> ref = get_reference("P3")
    >>> res = ImplicitDiff(lr=0.5, tol=1e-8).run(ref.problem, ref.x0, ref.y0)
    >>> res.success, ref.distance(res.x, res.y) < 1e-6
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from .._config import check_choice, check_range, config_to_dict
from .._typing import Batch, Pair, Vec
from ..errors import ConfigError, OracleError, ProblemSpecError
from ..problem.bilevel import BilevelProblem
from ..problem.oracles import has_hessian, has_hessian_xx, has_hvp
from .inner import InnerObjective, InnerSpec, make_inner
from .loop import run_solver
from .pair import paxpy, pdot, pfinite, pnorm
from .result import BilevelResult, IntermediateResult
from .solver import dtype_eps
from .steps import Lbfgs, LbfgsState

__all__ = ["DENSE_MAX_DIM", "Bome", "F2sa", "HostLinalg", "ImplicitDiff", "PythonLinalg"]

DENSE_MAX_DIM = 200
"""Default cap on the inner dimension ``dy`` of ``ImplicitDiff(inner_solver="dense")``: the factorization runs on
the host (LAPACK through the space's ``linalg`` capability, else pure Python: the core imports no array library),
``dy³/6`` multiply-adds per point."""


class CompState(NamedTuple):
    """State of a comparison solver (same fields every round). ``z``: BOME's/F2SA's inner iterate,
    ImplicitDiff's adjoint ``v``; ``memory``: ImplicitDiff's L-BFGS state on ``(None, x)``
    (:class:`~ofmu_opt.core.steps.LbfgsState`) or ``None``; ``hessian``: the dense variant's last factorized
    inner Hessian (:class:`DenseHessian`, reused when asked again at the same point) or ``None``."""

    x: Vec | None
    y: Vec
    z: Vec
    penalty: float
    nit: int
    prev: Pair
    t: float
    residuals: Any
    scale: float
    terminal: str
    memory: Any = None
    hessian: Any = None


class Res(NamedTuple):
    outer: float
    inner: float


def plain_inner(problem: BilevelProblem) -> InnerObjective:
    """The problem's inner objective in minimization form, without a similarity term (the comparison and
    stochastic solvers' lower level)."""
    return make_inner(problem, InnerSpec("none", 0.0, 0.0, "forget_hessian", 1e-6, problem.sign))


# ------------------------------------------------------------------ dense linear algebra on the host
# (the core imports no array library: a space may provide it as its ``linalg`` attribute, else plain Python floats)


class _Stop(Exception):
    """Ends an ImplicitDiff round with a terminal status (``not_convex``, ``numerical_error``)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class HostLinalg(Protocol):
    """Host-side dense linear algebra in float64 for ``ImplicitDiff(inner_solver="dense")``: the optional ``linalg``
    attribute of a :class:`~ofmu_opt.problem.space.VectorSpace`. Matrices (``M``), host vectors (``V``) and
    Cholesky factors are the implementation's own types; the solver only passes them back to these methods.
    :class:`PythonLinalg` (lists of Python floats) is the fallback for a space without it; the built-in spaces provide
    :class:`ofmu_opt.backends.numpy_backend.NumpyLinalg` (numpy arrays, LAPACK ``potrf``/``potrs``)."""

    def matrix(self, sp: Any, block: Any, rows: int, cols: int, what: str) -> Any:
        """A ``rows × cols`` host matrix from a backend block (row-major entries, e.g. a Hessian oracle's output);
        raises :class:`~ofmu_opt.errors.OracleError` (naming ``what``) when the entries are not real numbers or
        their count is wrong."""
        ...
    def from_rows(self, rows: list[list[float]]) -> Any:
        """A host matrix from rows of Python floats."""
        ...
    def vector(self, sp: Any, v: Vec) -> Any:
        """A backend vector's entries as a host vector (``to_host``'s order)."""
        ...
    def to_space(self, sp: Any, h: Any, like: Vec) -> Vec:
        """A backend vector shaped and typed like ``like`` holding the host vector ``h`` (``from_host``)."""
        ...
    def finite(self, m: Any) -> bool: ...
    def symmetric_part(self, m: Any) -> Any:
        """``(m + mᵀ) / 2``."""
        ...
    def scale(self, m: Any, s: float) -> Any: ...
    def max_abs_diag(self, m: Any) -> float: ...
    def cholesky(self, m: Any, tiny: float) -> Any | None:
        """The Cholesky factor of the symmetric ``m``; ``None`` when a pivot is ``<= tiny`` (not positive definite
        to the precision given) or the factorization fails."""
        ...
    def solve(self, chol: Any, b: Any) -> Any:
        """``x`` with ``L Lᵀ x = b`` (a host vector)."""
        ...
    def solve_rows(self, chol: Any, m: Any) -> Any:
        """Each row of ``m`` solved with the factor: the matrix with rows ``(L Lᵀ)⁻¹ m[k]``."""
        ...
    def matvec(self, m: Any, v: Any) -> Any:
        """``m v``."""
        ...
    def rmatvec(self, m: Any, v: Any) -> Any:
        """``mᵀ v``."""
        ...
    def axpy(self, alpha: float, x: Any, y: Any) -> Any:
        """``alpha x + y`` of host vectors."""
        ...
    def newton_model(self, fxx: Any, fxy: Any, fyy: Any, jac: Any) -> Any:
        """``fxx + fxy jacᵀ + jac fxyᵀ + jac fyy jacᵀ`` (``jac``: ``dx × dy``, row k is ``J e_k``)."""
        ...


def _cholesky(a: list[list[float]], tiny: float) -> list[list[float]] | None:
    """Lower Cholesky factor of the symmetric matrix ``a`` (rows); ``None`` when a pivot is ``<= tiny`` (not
    positive definite to the precision given)."""
    n = len(a)
    low: list[list[float]] = [[0.0] * n for _ in range(n)]
    for j in range(n):
        lj = low[j]
        s = a[j][j] - sum(v * v for v in lj[:j])
        if not s > tiny:
            return None
        d = math.sqrt(s)
        lj[j] = d
        for i in range(j + 1, n):
            li = low[i]
            li[j] = (a[i][j] - sum(p * q for p, q in zip(li[:j], lj[:j], strict=True))) / d
    return low


def _cho_solve(low: list[list[float]], b: list[float]) -> list[float]:
    """``x`` with ``L Lᵀ x = b``."""
    n = len(b)
    z = [0.0] * n
    for i in range(n):
        li = low[i]
        z[i] = (b[i] - sum(li[k] * z[k] for k in range(i))) / li[i]
    x = [0.0] * n
    for i in range(n - 1, -1, -1):
        x[i] = (z[i] - sum(low[k][i] * x[k] for k in range(i + 1, n))) / low[i][i]
    return x


def _host_rows(sp: Any, block: Any, rows: int, cols: int, what: str) -> list[list[float]]:
    try:
        flat = sp.to_host(block)
    except (TypeError, ValueError) as exc:
        raise OracleError(f"{what}: cannot read its entries as real numbers ({exc})") from exc
    if len(flat) != rows * cols:
        raise OracleError(f"{what} has {len(flat)} entries, expected {rows} × {cols} = {rows * cols}")
    return [flat[i * cols:(i + 1) * cols] for i in range(rows)]


def _from_host(problem: BilevelProblem) -> Callable[[list[float], Vec], Vec]:
    fn = getattr(problem.space, "from_host", None)
    if not callable(fn):
        raise ConfigError(
            f"ImplicitDiff(inner_solver='dense'): the vector space {problem.space.name!r} has no from_host(values, "
            "like) method, which the dense solves need to return host results as vectors; use inner_solver='cg'"
        )
    return fn  # type: ignore[no-any-return]


class PythonLinalg:
    """:class:`HostLinalg` on Python floats (matrices as lists of rows): the fallback for a space without ``linalg``.
    ``dy³/6`` interpreted multiply-adds per factorization.

    Examples:
        >>> la = PythonLinalg()
        >>> low = la.cholesky([[4.0, 2.0], [2.0, 2.0]], 1e-12)
        >>> low
        [[2.0, 0.0], [1.0, 1.0]]
        >>> la.solve(low, [8.0, 6.0])
        [1.0, 2.0]
        >>> la.cholesky([[1.0, 2.0], [2.0, 1.0]], 1e-12) is None  # not positive definite
        True
    """

    def matrix(self, sp: Any, block: Any, rows: int, cols: int, what: str) -> list[list[float]]:
        return _host_rows(sp, block, rows, cols, what)

    def from_rows(self, rows: list[list[float]]) -> list[list[float]]:
        return rows

    def vector(self, sp: Any, v: Vec) -> list[float]:
        return sp.to_host(v)  # type: ignore[no-any-return]

    def to_space(self, sp: Any, h: list[float], like: Vec) -> Vec:
        return sp.from_host(h, like)

    def finite(self, m: list[list[float]]) -> bool:
        return all(math.isfinite(v) for row in m for v in row)

    def symmetric_part(self, m: list[list[float]]) -> list[list[float]]:
        n = len(m)
        return [[0.5 * (m[i][j] + m[j][i]) for j in range(n)] for i in range(n)]

    def scale(self, m: list[list[float]], s: float) -> list[list[float]]:
        return [[s * v for v in row] for row in m]

    def max_abs_diag(self, m: list[list[float]]) -> float:
        return max(abs(m[i][i]) for i in range(len(m)))

    def cholesky(self, m: list[list[float]], tiny: float) -> list[list[float]] | None:
        return _cholesky(m, tiny)

    def solve(self, chol: list[list[float]], b: list[float]) -> list[float]:
        return _cho_solve(chol, b)

    def solve_rows(self, chol: list[list[float]], m: list[list[float]]) -> list[list[float]]:
        return [_cho_solve(chol, row) for row in m]

    def matvec(self, m: list[list[float]], v: list[float]) -> list[float]:
        return [sum(c * w for c, w in zip(row, v, strict=True)) for row in m]

    def rmatvec(self, m: list[list[float]], v: list[float]) -> list[float]:
        return [sum(row[j] * vi for row, vi in zip(m, v, strict=True)) for j in range(len(m[0]) if m else 0)]

    def axpy(self, alpha: float, x: list[float], y: list[float]) -> list[float]:
        return [alpha * a + b for a, b in zip(x, y, strict=True)]

    def newton_model(self, fxx: list[list[float]], fxy: list[list[float]], fyy: list[list[float]],
                     jac: list[list[float]]) -> list[list[float]]:
        dx, dy = len(jac), len(fyy)
        fxy_j = [[sum(a * b for a, b in zip(fxy[k], jac[m], strict=True)) for m in range(dx)] for k in range(dx)]
        fyy_j = [[sum(fyy[i][j] * jac[m][j] for j in range(dy)) for i in range(dy)] for m in range(dx)]
        return [[fxx[k][m] + fxy_j[k][m] + fxy_j[m][k] + sum(a * b for a, b in zip(jac[k], fyy_j[m], strict=True))
                 for m in range(dx)] for k in range(dx)]


_PYTHON_LINALG = PythonLinalg()


def _linalg(problem: BilevelProblem) -> HostLinalg:
    """The space's ``linalg`` capability, else :class:`PythonLinalg`."""
    la = getattr(problem.space, "linalg", None)
    return _PYTHON_LINALG if la is None else la  # type: ignore[no-any-return]


class DenseHessian(NamedTuple):
    """The dense variant's inner Hessian at the point ``(x, y)`` (the objects themselves: reuse is by identity).

    ``chol``: Cholesky factor of ``∇²_yy g`` (minimization form, symmetric part); ``cross``: the matrix ``∇²_xy g``
    (``dx × dy``), ``None`` when the problem has no x; both in the types of the :class:`HostLinalg` that made them."""

    x: Any
    y: Any
    chol: Any
    cross: Any


def _dense_blocks(problem: BilevelProblem, oracle: Any, hvp: Callable[..., Pair] | None, x: Vec, y: Vec, batch: Batch,
                  dx: int, dy: int, what: str) -> tuple[Any, Any]:
    """The Hessian rows of the y block of an objective as host matrices ``(∇²_xy, ∇²_yy)`` (``dx × dy``,
    ``dy × dy``): from the dense ``hessian`` oracle of ``oracle`` when it is given, else from ``dy`` calls of ``hvp``
    along the unit vectors (column j of both blocks)."""
    sp = problem.space
    la = _linalg(problem)
    if oracle is not None:
        cb, yb = oracle.hessian(x, y, batch=batch)
        return (la.matrix(sp, cb, dx, dy, f"{what}.hessian: mixed block"),
                la.matrix(sp, yb, dy, dy, f"{what}.hessian: y block"))
    assert hvp is not None  # init_state refuses an objective with neither oracle
    from_host = _from_host(problem)
    cols_x: list[list[float]] = []
    cols_y: list[list[float]] = []
    for j in range(dy):
        e = [0.0] * dy
        e[j] = 1.0
        hx, hy = hvp(x, y, from_host(e, y), batch=batch)
        cols_y.append(sp.to_host(hy))
        cols_x.append([0.0] * dx if hx is None else sp.to_host(hx))
    return (la.from_rows([[cols_x[j][i] for j in range(dy)] for i in range(dx)]),
            la.from_rows([[cols_y[j][i] for j in range(dy)] for i in range(dy)]))


def _check_common(obj: Any) -> None:
    for name in ("maxiter", "inner_steps"):
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name}: expected an integer >= 1, received {v!r}")
    check_range("tol", obj.tol, low=0.0, low_open=True)
    if obj.max_time is not None:
        check_range("max_time", obj.max_time, low=0.0, low_open=True)


def _gd(problem: BilevelProblem, fn: Callable[[Vec], Vec], z: Vec, lr: float, steps: int) -> Vec:
    sp = problem.space
    for _ in range(steps):
        z = sp.axpy(-lr, fn(z), z)
    return z


class _Base:
    maxiter: int
    max_time: float | None

    def options(self) -> dict[str, Any]:
        return {"solver": type(self).__name__.lower(), **config_to_dict(self)}

    def point(self, state: CompState) -> Pair:
        return (state.x, state.y)

    def _init(self, problem: BilevelProblem, x0: Vec | None, y0: Vec, penalty: float) -> CompState:
        if problem.has_x != (x0 is not None):
            raise ProblemSpecError("x0: expected a starting point exactly when the problem has an outer variable x")
        if problem.constrained:
            # these methods take unconstrained steps and test an unconstrained stationarity measure: on a problem
            # with sets or inequality constraints they would ignore the constraints and could claim convergence at
            # an infeasible point (measured: BOME "converged" with outer constraints violated by 12 on
            # ShimizuAiyoshi1981Ex1)
            kinds = [k for k in ("x_set", "y_set", "inner_constraints", "outer_constraints")
                     if getattr(problem, k) is not None]
            raise ProblemSpecError(
                f"{type(self).__name__}: the problem has constraints ({', '.join(kinds)}), which this comparison "
                "solver does not handle; use a penalty preset (gpbgd, vpbgd, ofmu)"
            )
        nan = math.nan
        return CompState(x0, y0, y0, penalty, 0, (x0, y0), 1.0, Res(nan, nan), nan, "")

    def run(
        self, problem: BilevelProblem, x0: Vec | None, y0: Vec, *,
        callback: Callable[[IntermediateResult], Any] | None = None, batches: Iterable[Batch] | None = None,
        record_history: bool = False, distance_fn: Callable[[Vec | None, Vec], float] | None = None,
    ) -> BilevelResult:
        """Run the loop shared by every solver (:func:`ofmu_opt.core.loop.run_solver`)."""
        return run_solver(self, problem, x0, y0, callback=callback, batches=batches,  # type: ignore[arg-type]
                          record_history=record_history, distance_fn=distance_fn)


@dataclass(frozen=True)
class Bome(_Base):
    """BOME: value-function constraint with a dynamic barrier (see the module docstring).

    Args:
        lr: ξ, the joint step size.
        inner_lr: α, the step of the T inner steps that approximate ``min_y g``.
        inner_steps: T.
        eta: η > 0 of the barrier's control ``η‖∇q‖²``.
        tol: stop when ``‖∇f + λ∇q‖ ≤ tol·max(1, first norm)`` and ``q ≤ tol``.
    """

    lr: float = 0.05
    inner_lr: float = 0.1
    inner_steps: int = 10
    eta: float = 0.5
    tol: float = 1e-6
    maxiter: int = 10_000
    max_time: float | None = None

    def __post_init__(self) -> None:
        _check_common(self)
        for name in ("lr", "inner_lr", "eta"):
            check_range(name, getattr(self, name), low=0.0, low_open=True)

    def init_state(self, problem: BilevelProblem, x0: Vec | None, y0: Vec) -> CompState:
        return self._init(problem, x0, y0, 0.0)

    def update(self, problem: BilevelProblem, state: CompState, *, batch: Batch = None) -> CompState:
        sp = problem.space
        g = plain_inner(problem)
        x, y = state.x, state.y
        yT = _gd(problem, lambda v: g.grad(x, v, batch=batch)[1], y, self.inner_lr, self.inner_steps)
        gxy = g.grad(x, y, batch=batch)
        q = sp.to_float(g.value(x, y, batch=batch)) - sp.to_float(g.value(x, yT, batch=batch))
        dq: Pair = (None if x is None else sp.sub(gxy[0], g.grad(x, yT, batch=batch)[0]), gxy[1])
        df = problem.outer.grad(x, y, batch=batch)
        nq2 = pnorm(sp, dq) ** 2
        lam = 0.0 if nq2 == 0.0 else max((self.eta * nq2 - sp.to_float(pdot(sp, df, dq))) / nq2, 0.0)
        d = paxpy(sp, lam, dq, df)
        dn = pnorm(sp, d)
        new = paxpy(sp, -self.lr, d, (x, y))
        if not (math.isfinite(dn) and math.isfinite(q) and pfinite(sp, new)):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)
        scale = state.scale if math.isfinite(state.scale) else max(1.0, dn)
        done = dn <= self.tol * scale and q <= self.tol
        return CompState(new[0], new[1], yT, lam, state.nit + 1, state.prev, 1.0, Res(dn, abs(q)), scale,
                         "converged" if done else "")


@dataclass(frozen=True)
class F2sa(_Base):
    """F2SA: fully first-order Lagrangian method with a growing multiplier λ (see the module docstring).

    Args:
        lr: ξ, the step for x.
        inner_lr: step for z on g and (divided by ``1 + λ·inner_lr·L``-free scaling ``1/(1+λ)``) for y on
            ``f + λg``.
        inner_steps: T steps for z and for y per round.
        lam: initial multiplier λ0.
        lam_step: additive growth of λ per round (the default reaches ``lam_max`` in 2000 rounds, within
            ``maxiter``).
        lam_max: cap on λ.
        tol: stop when the x-step's gradient norm ≤ tol·max(1, first norm) at λ = lam_max; the status is then
            ``penalized`` (F2SA's point at a finite λ is O(1/λ) from the bi-level solution).
    """

    lr: float = 0.05
    inner_lr: float = 0.1
    inner_steps: int = 10
    lam: float = 1.0
    lam_step: float = 5.0
    lam_max: float = 1e4
    tol: float = 1e-6
    maxiter: int = 10_000
    max_time: float | None = None

    def __post_init__(self) -> None:
        _check_common(self)
        for name in ("lr", "inner_lr", "lam"):
            check_range(name, getattr(self, name), low=0.0, low_open=True)
        check_range("lam_step", self.lam_step, low=0.0)
        check_range("lam_max", self.lam_max, low=self.lam)

    def init_state(self, problem: BilevelProblem, x0: Vec | None, y0: Vec) -> CompState:
        return self._init(problem, x0, y0, self.lam)

    def update(self, problem: BilevelProblem, state: CompState, *, batch: Batch = None) -> CompState:
        sp = problem.space
        g = plain_inner(problem)
        x, lam = state.x, state.penalty
        z = _gd(problem, lambda v: g.grad(x, v, batch=batch)[1], state.z, self.inner_lr, self.inner_steps)
        step_y = self.inner_lr / (1.0 + lam)

        def gy(v: Vec) -> Vec:
            return sp.axpy(lam, g.grad(x, v, batch=batch)[1], problem.outer.grad(x, v, batch=batch)[1])

        y = _gd(problem, gy, state.y, step_y, self.inner_steps)
        fx = problem.outer.grad(x, y, batch=batch)
        gyx = g.grad(x, y, batch=batch)
        gzx = g.grad(x, z, batch=batch)
        if x is not None:
            dx = sp.axpy(lam, sp.sub(gyx[0], gzx[0]), fx[0])
            dn = sp.to_float(sp.norm(dx))
            x_new = sp.axpy(-self.lr, dx, x)
        else:
            dn, x_new = sp.to_float(sp.norm(gy(y))) / (1.0 + lam), None
        vn = sp.to_float(sp.norm(gyx[1]))
        if not (math.isfinite(dn) and pfinite(sp, (x_new, y)) and sp.all_finite(z)):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)
        scale = state.scale if math.isfinite(state.scale) else max(1.0, dn)
        # at a finite multiplier F2SA's fixed point is a penalized point, O(1/λ) from the bi-level solution:
        # stationarity at the cap λ = lam_max ends the run with status "penalized" (never "converged")
        done = lam >= self.lam_max and dn <= self.tol * scale
        return CompState(x_new, y, z, min(lam + self.lam_step, self.lam_max), state.nit + 1, state.prev, 1.0,
                         Res(dn, vn), scale, "penalized" if done else "")


@dataclass(frozen=True)
class ImplicitDiff(_Base):
    """Implicit-differentiation hypergradient descent with conjugate gradient (the accuracy reference).

    Args:
        lr: outer step on x (the first trial step of ``lbfgs`` before it has curvature pairs).
        outer_rule: ``sgd``, ``nesterov`` (accelerated, with gradient restart), ``lbfgs`` (L-BFGS on
            ``h(x) = f(x, y*(x))`` with Armijo backtracking; full-batch oracles) or ``newton`` (``dense`` only:
            Newton steps on ``h`` with the same line search, see below).
        inner_solver: ``gd`` (gradient steps of ``inner_lr``), ``cg`` (Newton steps, each system solved by
            CG through HVPs; exact in one step on a quadratic inner problem; the adjoint CG is warm-started from
            the previous round's ``v``) or ``dense`` (the same Newton steps and the adjoint solved exactly with a
            Cholesky factorization of the dense inner Hessian, for small ``y``: see below).
        inner_lr: inner gradient step (≈ 1/L of the inner problem; ``gd`` only).
        inner_steps: at least this many inner steps per round (warm-started; ``gd`` only).
        inner_tol: and until ``‖∇_y g‖ ≤ inner_tol`` (at most ``inner_maxiter`` steps; ``cg`` and ``dense``:
            raised to ``100·eps`` of the oracles' dtype, and it also stops when a Newton step no longer halves
            ``‖∇_y g‖``).
        cg_iters: conjugate-gradient iterations for ``∇²_yy g v = ∇_y f`` (and per Newton step).
        cg_tol: relative residual at which CG stops (raised to ``10·eps`` of the oracles' dtype).
        dense_max_dim: ``dense`` only: the largest inner dimension ``dy`` accepted (a larger one is a
            :class:`~ofmu_opt.errors.ConfigError` when the run starts).
        hessian_reuse: ``dense`` only: an inner solve's first Newton step uses the last factorized Hessian (taken
            at an earlier point, e.g. the previous round's adjoint; exact when the inner problem is quadratic in y)
            and is retaken with a fresh Hessian if it does not halve ``‖∇_y g‖``; later steps use fresh Hessians.
            With ``lbfgs`` a line-search trial's inner solve also starts from the implicit-function predictor
            ``y − H⁻¹(∇_y g + ∇²_yx g Δx)`` built from the adjoint's factorization (one gradient call fewer per trial
            on a quadratic inner problem). ``False``: a fresh Hessian at every Newton step, trials start from ``y``.
            The adjoint always uses the Hessian at its own point.
        lbfgs_memory: curvature pairs kept by ``lbfgs``.
        tol: stop when ``‖hypergradient‖ ≤ tol·max(1, first norm)``.

    ``inner_solver="dense"``: at each point where a Newton step or the adjoint needs it, the inner Hessian blocks
    ``∇²_yy g`` (``dy × dy``) and ``∇²_xy g`` (``dx × dy``) come from the inner objective's optional ``hessian``
    oracle (one call, counted as ``g_hessian``), or, when it has none, from ``dy`` HVP calls along the unit
    vectors. The symmetric part of ``∇²_yy g`` is factorized by Cholesky on the host in float64 (whatever the
    oracles' dtype); a Newton step, the adjoint ``v`` and ``∇²_xy g v`` are then host solves and products. The
    factorization is kept with its point: the adjoint reuses it at that same point, and (``hessian_reuse``) the next
    inner solve's first Newton step starts from it, kept only if it halves ``‖∇_y g‖``, so on a quadratic inner
    problem a round forms one Hessian (at the adjoint's point). Needs a vector space with
    ``from_host`` (numpy, torch). The host linear algebra is the space's optional ``linalg`` capability
    (:class:`HostLinalg`: numpy with LAPACK in both built-in spaces), else :class:`PythonLinalg` on Python floats,
    ``dy³/6`` interpreted multiply-adds per point; the two agree to round-off. Hence ``dense_max_dim``.

    ``outer_rule="newton"`` (with ``inner_solver="dense"``): the direction is ``−M⁻¹∇h`` with the Hessian model
    ``M = ∇²_xx f + ∇²_xy f J + Jᵀ∇²_yx f + Jᵀ∇²_yy f J``, ``J = dy*/dx = −(∇²_yy g)⁻¹∇²_yx g`` — the exact Hessian of
    ``h`` less the terms with third derivatives of ``g`` (so exact when ``g`` is quadratic: one step solves a
    quadratic ``h``; otherwise a Gauss-Newton-like model that converges linearly), factorized by Cholesky on the
    host (``dx`` must be small too). ``f``'s blocks come from its optional ``hessian_xx`` and ``hessian`` oracles
    (counted as ``f_hessian_xx``, ``f_hessian``), else from ``dy`` HVPs of ``f`` along unit vectors and central
    differences of ``∇_x f`` (``2·dx`` gradients). Where ``M`` is not positive definite the round takes a gradient
    step of first trial length ``lr`` instead; the Armijo line search on ``h`` guards every step.

    A non-positive curvature (CG meets ``pᵀHp ≤ 0``; the dense factorization meets a pivot ``≤ dy·eps·max
    diag``: the inner Hessian is not positive definite at the iterate) ends the run with status ``not_convex``
    instead of raising; a non-finite dense Hessian ends it with ``numerical_error``.
    """

    lr: float = 0.1
    outer_rule: Literal["sgd", "nesterov", "lbfgs", "newton"] = "sgd"
    inner_solver: Literal["gd", "cg", "dense"] = "gd"
    inner_lr: float = 0.1
    inner_steps: int = 1
    inner_tol: float = 1e-10
    inner_maxiter: int = 10_000
    cg_iters: int = 100
    cg_tol: float = 1e-12
    dense_max_dim: int = DENSE_MAX_DIM
    hessian_reuse: bool = True
    lbfgs_memory: int = 10
    tol: float = 1e-8
    maxiter: int = 10_000
    max_time: float | None = None

    def __post_init__(self) -> None:
        _check_common(self)
        check_choice("outer_rule", self.outer_rule, ("sgd", "nesterov", "lbfgs", "newton"))
        check_choice("inner_solver", self.inner_solver, ("gd", "cg", "dense"))
        if self.outer_rule == "newton" and self.inner_solver != "dense":
            raise ConfigError(
                "outer_rule='newton' builds its Hessian model from the dense inner Hessian: it needs "
                f"inner_solver='dense', received inner_solver={self.inner_solver!r}"
            )
        for name in ("lr", "inner_lr", "inner_tol", "cg_tol"):
            check_range(name, getattr(self, name), low=0.0, low_open=True)
        for name in ("cg_iters", "inner_maxiter", "lbfgs_memory", "dense_max_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, received {v!r}")
        if not isinstance(self.hessian_reuse, bool):
            raise ConfigError(f"hessian_reuse: expected True or False, received {self.hessian_reuse!r}")

    def init_state(self, problem: BilevelProblem, x0: Vec | None, y0: Vec) -> CompState:
        if not problem.has_x:
            raise ProblemSpecError("ImplicitDiff: the problem has no outer variable x, so there is no hypergradient")
        state = self._init(problem, x0, y0, 0.0)
        if self.inner_solver == "dense":
            _from_host(problem)
            dy = len(problem.space.to_host(y0))
            if dy > self.dense_max_dim:
                raise ConfigError(
                    f"ImplicitDiff(inner_solver='dense'): the inner variable y has {dy} entries, above "
                    f"dense_max_dim={self.dense_max_dim} (a dense inner Hessian has dy² entries and its "
                    "factorization costs dy³/6 host operations per point); use inner_solver='cg' or raise "
                    "dense_max_dim"
                )
        if self.outer_rule == "newton" and not (has_hessian(problem.outer) or has_hvp(problem.outer)):
            raise ConfigError(
                "ImplicitDiff(outer_rule='newton'): the outer objective has neither a hessian nor an hvp oracle, "
                "which the Hessian model of h(x) needs; use outer_rule='lbfgs'"
            )
        if self.inner_solver in ("cg", "dense"):
            state = state._replace(z=problem.space.zeros_like(y0))  # the adjoint's warm start (cg)
        return state

    # ------------------------------------------------------------------ Newton on h(x) (dense)
    def _outer_blocks(self, problem: BilevelProblem, x: Vec, y: Vec, batch: Batch, dx: int, dy: int,
                      ) -> tuple[Any, Any, Any]:
        """``f``'s dense blocks ``(∇²_xx f, ∇²_xy f, ∇²_yy f)`` as host matrices (:class:`HostLinalg`): from its
        ``hessian_xx`` and ``hessian`` oracles when it has them, else ``∇²_xy f`` and ``∇²_yy f`` from ``dy`` HVPs
        along unit vectors and ``∇²_xx f`` from central differences of ``∇_x f`` along unit vectors (``2·dx``
        gradients; exact up to rounding when ``f`` is quadratic in ``x``)."""
        sp = problem.space
        la = _linalg(problem)
        f = problem.outer
        from_host = _from_host(problem)
        fxy, fyy = _dense_blocks(problem, f if has_hessian(f) else None, f.hvp if has_hvp(f) else None,  # type: ignore[attr-defined]
                                 x, y, batch, dx, dy, "outer")
        if has_hessian_xx(f):
            fxx = la.matrix(sp, f.hessian_xx(x, y, batch=batch), dx, dx,  # type: ignore[attr-defined]
                            "outer.hessian_xx")
        else:
            xl = sp.to_host(x)
            step = dtype_eps(x) ** (1.0 / 3.0)
            cols: list[list[float]] = []
            for k in range(dx):
                h = step * max(1.0, abs(xl[k]))
                up, down = list(xl), list(xl)
                up[k] += h
                down[k] -= h
                gp = sp.to_host(f.grad(from_host(up, x), y, batch=batch)[0])
                gm = sp.to_host(f.grad(from_host(down, x), y, batch=batch)[0])
                cols.append([(a - b) / (2.0 * h) for a, b in zip(gp, gm, strict=True)])
            fxx = la.from_rows([[cols[k][i] for k in range(dx)] for i in range(dx)])
        return fxx, fxy, fyy

    def _newton_direction(self, problem: BilevelProblem, g: InnerObjective, x: Vec, y: Vec, hyper: Vec,
                          batch: Batch, memo: list[DenseHessian | None]) -> Vec | None:
        """``−M⁻¹ ∇h`` with the Hessian model ``M = ∇²_xx f + ∇²_xy f J + Jᵀ ∇²_yx f + Jᵀ ∇²_yy f J`` of ``h`` at
        ``(x, y*(x))``, ``J = dy*/dx = −(∇²_yy g)⁻¹ ∇²_yx g``: the exact Hessian of ``h`` less the terms with third
        derivatives of ``g`` (exact when ``g`` is quadratic). ``None`` when ``M`` is not positive definite."""
        sp = problem.space
        la = _linalg(problem)
        hess = self._dense_hessian(problem, g, x, y, batch, memo)
        dx, dy = len(la.vector(sp, x)), len(la.vector(sp, y))
        fxx, fxy, fyy = self._outer_blocks(problem, x, y, batch, dx, dy)
        jac = la.scale(la.solve_rows(hess.chol, hess.cross), -1.0)  # row k: J e_k (a y-vector)
        model = la.newton_model(fxx, fxy, fyy, jac)
        if not la.finite(model):
            return None
        sym = la.symmetric_part(model)
        tiny = dx * dtype_eps(x) * max(la.max_abs_diag(sym), 1e-300)
        low = la.cholesky(sym, tiny)
        if low is None:
            return None
        return sp.scale(la.to_space(sp, la.solve(low, la.vector(sp, hyper)), hyper), -1.0)

    # ------------------------------------------------------------------ dense inner Hessian
    def _dense_hessian(self, problem: BilevelProblem, g: InnerObjective, x: Vec, y: Vec, batch: Batch,
                       memo: list[DenseHessian | None]) -> DenseHessian:
        """The factorized inner Hessian at ``(x, y)`` (``memo[0]`` when it holds this very point).

        Raises:
            _Stop: ``not_convex`` (not positive definite), ``numerical_error`` (a non-finite entry).
        """
        last = memo[0]
        if last is not None and last.x is x and last.y is y:
            return last
        sp = problem.space
        la = _linalg(problem)
        dy = len(la.vector(sp, y))
        dx = len(la.vector(sp, x))
        inner = problem.inner
        # the problem's own oracle gives the objective as posed: turn it to minimization form like g
        oracle = inner if has_hessian(inner) and problem.inner_factory is None else None
        cross, hyy = _dense_blocks(problem, oracle, g.hvp, x, y, batch, dx, dy, "inner")
        if oracle is not None and problem.sign != 1.0:
            hyy = la.scale(hyy, problem.sign)
            cross = la.scale(cross, problem.sign)
        if not (la.finite(hyy) and la.finite(cross)):
            raise _Stop("numerical_error")
        sym = la.symmetric_part(hyy)
        tiny = dy * dtype_eps(y) * max(la.max_abs_diag(sym), 1e-300)
        low = la.cholesky(sym, tiny)
        if low is None:
            raise _Stop("not_convex")  # the inner Hessian is not positive definite here: no implicit hypergradient
        hess = DenseHessian(x, y, low, cross)
        memo[0] = hess
        return hess

    def _dense_solve(self, problem: BilevelProblem, hess: DenseHessian, b: Vec) -> Vec:
        """``(∇²_yy g)⁻¹ b`` as a vector like ``b``."""
        sp = problem.space
        la = _linalg(problem)
        return la.to_space(sp, la.solve(hess.chol, la.vector(sp, b)), b)

    # ------------------------------------------------------------------ CG
    def _cg(self, problem: BilevelProblem, g: InnerObjective, x: Vec, y: Vec, b: Vec, batch: Batch,
            v0: Vec | None = None) -> Vec | None:
        """CG on ``∇²_yy g(x, y) v = b`` from ``v0`` (zero when ``None``); ``None`` on non-positive curvature."""
        sp = problem.space
        cg_tol = max(self.cg_tol, 10.0 * dtype_eps(b))  # what the oracles' dtype can resolve
        stop = (cg_tol**2) * sp.to_float(sp.dot(b, b))
        if v0 is None:
            v = sp.zeros_like(b)
            r = b
        else:
            v = v0
            r = sp.sub(b, g.hvp(x, y, v0, batch=batch)[1])
        p = r
        rr = sp.to_float(sp.dot(r, r))
        for _ in range(self.cg_iters):
            if rr <= stop or rr == 0.0:
                break
            hp = g.hvp(x, y, p, batch=batch)[1]
            php = sp.to_float(sp.dot(p, hp))
            if not php > 0:
                return None  # the inner Hessian is not positive definite here: no implicit hypergradient
            alpha = rr / php
            v = sp.axpy(alpha, p, v)
            r = sp.axpy(-alpha, hp, r)
            rr_new = sp.to_float(sp.dot(r, r))
            p = sp.axpy(rr_new / rr, p, r)
            rr = rr_new
        return v

    def _inner_solve(self, problem: BilevelProblem, g: InnerObjective, x: Vec, y: Vec, batch: Batch,
                     memo: list[DenseHessian | None]) -> Vec | None:
        """The inner solution at ``x`` from ``y`` (``gd``, Newton-CG or dense Newton); ``None`` on non-positive
        curvature met by CG (the dense variant raises :class:`_Stop`)."""
        sp = problem.space
        if self.inner_solver == "gd":
            for k in range(self.inner_maxiter):
                gy = g.grad(x, y, batch=batch)[1]
                if k >= self.inner_steps and sp.to_float(sp.norm(gy)) <= self.inner_tol:
                    break
                y = sp.axpy(-self.inner_lr, gy, y)
            return y
        if self.inner_solver == "dense":
            return self._dense_newton(problem, g, x, y, batch, memo)
        prev = math.inf
        floor = max(self.inner_tol, 100.0 * dtype_eps(y))
        for _ in range(self.inner_maxiter):
            gy = g.grad(x, y, batch=batch)[1]
            gn = sp.to_float(sp.norm(gy))
            if gn <= floor or not gn < 0.5 * prev:
                break  # solved, or at the round-off floor (a Newton step no longer halves the gradient)
            d = self._cg(problem, g, x, y, gy, batch)
            if d is None:
                return None
            y = sp.axpy(-1.0, d, y)
            prev = gn
        return y

    def _dense_newton(self, problem: BilevelProblem, g: InnerObjective, x: Vec, y: Vec, batch: Batch,
                      memo: list[DenseHessian | None]) -> Vec:
        """Newton steps on the inner problem with dense Cholesky solves. With ``hessian_reuse`` the first step uses
        the last factorization (``memo[0]``, taken at an earlier point: a chord step); if it does not halve
        ``‖∇_y g‖`` it is undone and retaken with the Hessian of its own point. Every later step uses the Hessian of
        its own point, and such a step that no longer halves ``‖∇_y g‖`` ends the solve (the round-off floor), as in
        the cg variant."""
        sp = problem.space
        floor = max(self.inner_tol, 100.0 * dtype_eps(y))
        hess = memo[0] if self.hessian_reuse else None
        prev: tuple[Vec, Vec, float] | None = None  # the point before the last step, its gradient and norm
        fresh = False
        for _ in range(self.inner_maxiter):
            gy = g.grad(x, y, batch=batch)[1]
            gn = sp.to_float(sp.norm(gy))
            if gn <= floor:
                break
            if prev is not None and not gn < 0.5 * prev[2]:
                if fresh:
                    break  # a Newton step with the Hessian of its own point no longer halves: round-off floor
                y, gy, gn = prev  # the reused factorization did not help: retake the step with a fresh Hessian
            if prev is not None or hess is None:
                hess = self._dense_hessian(problem, g, x, y, batch, memo)
            fresh = hess.x is x and hess.y is y
            prev = (y, gy, gn)
            y = sp.axpy(-1.0, self._dense_solve(problem, hess, gy), y)
        return y

    def _predictor(self, problem: BilevelProblem, memo: list[DenseHessian | None], x: Vec, y: Vec, gy: Vec,
                   d: Vec) -> Callable[[float], Vec] | None:
        """``dense`` with ``hessian_reuse``: the start of the inner solve at ``x + t·d``, one Newton step from
        ``(x, y)`` with the gradient and Hessian linearized there, ``y − H⁻¹(∇_y g + t·∇²_yx g d)`` (the
        implicit-function predictor; exact on an inner problem quadratic in ``(x, y)``), using the adjoint's
        factorization at this very point; ``None`` when that factorization is not at hand."""
        hess = memo[0]
        if not (self.inner_solver == "dense" and self.hessian_reuse and hess is not None and hess.x is x
                and hess.y is y and hess.cross is not None):
            return None
        sp = problem.space
        la = _linalg(problem)
        a = la.solve(hess.chol, la.vector(sp, gy))
        b = la.solve(hess.chol, la.rmatvec(hess.cross, la.vector(sp, d)))
        return lambda t: sp.sub(y, la.to_space(sp, la.axpy(t, b, a), y))

    def _adjoint(self, problem: BilevelProblem, g: InnerObjective, state: CompState, x: Vec, y: Vec, batch: Batch,
                 memo: list[DenseHessian | None]) -> tuple[Vec, Vec | None]:
        """``(hypergradient, v)`` at ``(x, y)``; ``v`` is ``None`` on non-positive curvature met by CG."""
        sp = problem.space
        fx, fy = problem.outer.grad(x, y, batch=batch)
        if self.inner_solver == "dense":
            hess = self._dense_hessian(problem, g, x, y, batch, memo)
            la = _linalg(problem)
            vh = la.solve(hess.chol, la.vector(sp, fy))
            return sp.sub(fx, la.to_space(sp, la.matvec(hess.cross, vh), fx)), la.to_space(sp, vh, fy)
        v = self._cg(problem, g, x, y, fy, batch, state.z if self.inner_solver == "cg" else None)
        if v is None:
            return fx, None
        hx, _ = g.hvp(x, y, v, batch=batch)
        return sp.sub(fx, hx), v

    def _hypergradient(self, problem: BilevelProblem, g: InnerObjective, state: CompState, x: Vec, batch: Batch,
                       memo: list[DenseHessian | None]) -> tuple[Vec, Vec, Vec] | None:
        """``(y*(x), hypergradient, v)`` from the warm start ``state.y``; ``None`` on non-positive inner curvature
        met by CG (the dense variant raises :class:`_Stop`)."""
        y = self._inner_solve(problem, g, x, state.y, batch, memo)
        if y is None:
            return None
        hyper, v = self._adjoint(problem, g, state, x, y, batch, memo)
        return None if v is None else (y, hyper, v)

    def update(self, problem: BilevelProblem, state: CompState, *, batch: Batch = None) -> CompState:
        memo: list[DenseHessian | None] = [state.hessian]
        try:
            if self.outer_rule in ("lbfgs", "newton"):
                new = self._lbfgs_update(problem, state, batch, memo)
            else:
                new = self._first_order_update(problem, state, batch, memo)
        except _Stop as stop:
            return state._replace(terminal=stop.status, nit=state.nit + 1)
        return new._replace(hessian=memo[0]) if self.inner_solver == "dense" else new

    def _first_order_update(self, problem: BilevelProblem, state: CompState, batch: Batch,
                            memo: list[DenseHessian | None]) -> CompState:
        sp = problem.space
        g = plain_inner(problem)
        cur = (state.x, state.y)
        t_next = (1 + math.sqrt(1 + 4 * state.t * state.t)) / 2 if self.outer_rule == "nesterov" else 1.0
        mom = (state.t - 1) / t_next if self.outer_rule == "nesterov" else 0.0
        x = cur[0] if mom == 0.0 else sp.axpy(mom, sp.sub(cur[0], state.prev[0]), cur[0])
        got = self._hypergradient(problem, g, state, x, batch, memo)
        if got is None:
            return state._replace(terminal="not_convex", nit=state.nit + 1)
        y, hyper, v = got
        hn = sp.to_float(sp.norm(hyper))
        x_new = sp.axpy(-self.lr, hyper, x)
        if not (math.isfinite(hn) and sp.all_finite(x_new) and sp.all_finite(y)):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)
        t = t_next
        if self.outer_rule == "nesterov" and sp.to_float(sp.dot(hyper, sp.sub(x_new, cur[0]))) > 0:
            t = 1.0  # gradient restart
        scale = state.scale if math.isfinite(state.scale) else max(1.0, hn)
        gyn = sp.to_float(sp.norm(g.grad(x, y, batch=batch)[1]))
        z = v if self.inner_solver in ("cg", "dense") else y
        return CompState(x_new, y, z, 0.0, state.nit + 1, cur, t, Res(hn, gyn), scale,
                         "converged" if hn <= self.tol * scale else "", state.memory)

    def _lbfgs_update(self, problem: BilevelProblem, state: CompState, batch: Batch,
                      memo: list[DenseHessian | None]) -> CompState:
        sp = problem.space
        g = plain_inner(problem)
        x = state.x
        # one inner gradient when the last trial solved it
        got = self._hypergradient(problem, g, state, x, batch, memo)
        if got is None:
            return state._replace(terminal="not_convex", nit=state.nit + 1)
        y, hyper, v = got
        hn = sp.to_float(sp.norm(hyper))
        if not (math.isfinite(hn) and sp.all_finite(y)):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)
        scale = state.scale if math.isfinite(state.scale) else max(1.0, hn)
        gy = g.grad(x, y, batch=batch)[1]
        gyn = sp.to_float(sp.norm(gy))
        if hn <= self.tol * scale:
            return CompState(x, y, v, 0.0, state.nit + 1, (state.x, state.y), 1.0, Res(hn, gyn), scale, "converged",
                             state.memory)
        if self.outer_rule == "newton":
            mem = state.memory
            nd = self._newton_direction(problem, g, x, y, hyper, batch, memo)
            gd = -math.inf if nd is None else sp.to_float(sp.dot(hyper, nd))
            if nd is not None and gd < 0.0:
                d, t = nd, 1.0
            else:  # the model is not positive definite here: a gradient step with the line search
                d, gd, t = sp.scale(hyper, -1.0), -hn * hn, self.lr
        else:
            # the package's L-BFGS rule on the pair (None, x): x is the only variable of the hyperobjective
            rule = Lbfgs(self.lbfgs_memory)
            mem = state.memory if isinstance(state.memory, LbfgsState) else rule.init(sp, (None, x))
            mem = rule.observe(sp, (None, x), (None, hyper), mem)
            d = rule.direction(sp, (None, hyper), mem)[1]
            gd = sp.to_float(sp.dot(hyper, d))
            if not gd < 0.0:  # stale curvature: restart from the negative hypergradient
                mem = rule.init(sp, (None, x))._replace(prev_grad=(None, hyper))
                d, gd = sp.scale(hyper, -1.0), -hn * hn
            t = 1.0 if mem.pairs else self.lr
        fval = sp.to_float(problem.outer.value(x, y, batch=batch))
        eps = dtype_eps(x)
        x_new, y_new = x, y
        predict = self._predictor(problem, memo, x, y, gy, d)
        for _ in range(40):
            xt = sp.axpy(t, d, x)
            try:
                yt = self._inner_solve(problem, g, xt, y if predict is None else predict(t), batch, memo)
            except _Stop:
                yt = None  # a trial where the inner problem is not strongly convex (or not finite): shorter step
            if yt is None:
                t *= 0.5
                continue
            ft = sp.to_float(problem.outer.value(xt, yt, batch=batch))
            decrease = -1e-4 * t * gd
            # below round-off the Armijo test carries no information: take the step
            if math.isfinite(ft) and (ft <= fval - decrease or decrease < 10.0 * eps * max(1.0, abs(fval))):
                x_new, y_new = xt, yt
                break
            t *= 0.5
        if not (sp.all_finite(x_new) and sp.all_finite(y_new)):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)
        return CompState(x_new, y_new, v, 0.0, state.nit + 1, (x, y), 1.0, Res(hn, gyn), scale, "", mem)

r"""Stochastic finite sums: mini-batch sampling, SAGA-style variance reduction, and SOBA / SABA.

A *finite-sum* bi-level problem has ``f = (1/m) Σ_j f_j`` and ``g = (1/n) Σ_i g_i``. Its objectives accept
``batch=slice(a, b)``: the mean over samples ``a … b−1`` (``batch=None`` is the full mean). Samples are split
once into fixed consecutive batches of ``batch_size``; :class:`FiniteSumSampler` draws them epoch by epoch
in a shuffled order that depends only on ``(seed, epoch)``, so every run is reproducible.

- :class:`VarianceReduced` wraps a penalty solver (any preset with fixed steps): every oracle call on batch
  ``k`` returns the SAGA estimate :math:`h_k(p) - M_k + \bar M` (``M_k`` the stored output of the last call on
  batch ``k``, :math:`\bar M` the table's mean) and stores :math:`h_k(p)` in ``M_k``. The estimate is unbiased
  for any table content (its mean over ``k`` is :math:`\nabla h(p)`), and its variance vanishes as the
  iterates settle, so constant steps converge to the full-batch solver's limit instead of a noise floor.
- :class:`Soba` and :class:`Saba` — M. Dagréou, P. Ablin, S. Vaiter, T. Moreau, *A framework for bilevel
  optimization that enables stochastic and global variance reduction algorithms*, NeurIPS 2022. With
  ``v`` the estimate of :math:`-[\nabla^2_{yy} g]^{-1}\nabla_y f`, both follow the directions

  .. math::
      D_y = \nabla_y g_i(x, y), \quad D_v = \nabla^2_{yy} g_i(x, y)\,v + \nabla_y f_j(x, y), \quad
      D_x = \nabla^2_{xy} g_i(x, y)\,v + \nabla_x f_j(x, y)

  and update ``y ← y − ρ D_y``, ``v ← v − ρ D_v``, ``x ← x − γ D_x`` simultaneously. SOBA uses one
  mini-batch sample of each term with decreasing steps :math:`\rho_t = \rho_0 t^{-2/5}`,
  :math:`\gamma_t = \gamma_0 t^{-3/5}` (the paper's choice); SABA replaces each of the five terms by its SAGA
  estimate and keeps the steps constant, which gives linear convergence on strongly convex inner problems.

The module never imports an array library: vectors go through the problem's :class:`VectorSpace`.

Examples:
    >>> s = FiniteSumSampler(n_samples=10, batch_size=4, seed=0)
    >>> s.n_batches, s.batch(2)
    (3, slice(8, 10, None))
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from .._config import check_range, config_to_dict
from .._typing import Batch, Pair, Vec
from ..errors import ConfigError, ProblemSpecError
from ..problem.bilevel import BilevelProblem
from ..problem.space import VectorSpace
from .comparison import plain_inner
from .loop import run_solver
from .pair import pfinite
from .result import BilevelResult, IntermediateResult

__all__ = ["FiniteSumSampler", "Saba", "Soba", "SagaTable", "VarianceReduced"]


def _check_int(name: str, v: Any, low: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, received {v!r}")


@dataclass(frozen=True)
class FiniteSumSampler:
    """Fixed consecutive batches of ``batch_size`` samples, visited epoch by epoch in a shuffled order.

    Args:
        n_samples: number of samples of the finite sum.
        batch_size: samples per batch (the last batch may be smaller); ``>= n_samples`` means one batch.
        seed: seed of the shuffles (the order of epoch ``e`` depends only on ``(seed, e)``).
    """

    n_samples: int
    batch_size: int
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("n_samples", self.n_samples)
        _check_int("batch_size", self.batch_size)
        _check_int("seed", self.seed, 0)

    @property
    def n_batches(self) -> int:
        return -(-self.n_samples // self.batch_size)

    def batch(self, k: int) -> slice:
        """The samples of batch ``k``."""
        return slice(k * self.batch_size, min((k + 1) * self.batch_size, self.n_samples))

    def index_at(self, t: int) -> int:
        """The batch drawn at draw ``t`` (0-based): position ``t mod n_batches`` of epoch ``t // n_batches``."""
        nb = self.n_batches
        epoch, pos = divmod(t, nb)
        order = list(range(nb))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order[pos]


class SagaTable(NamedTuple):
    """SAGA memory of one oracle: the last output per batch (``None`` = never evaluated, counts as zero) and
    the running mean over all batches (``None`` = zero)."""

    entries: tuple[Any, ...]
    mean: Any

    @staticmethod
    def empty(n_batches: int) -> SagaTable:
        return SagaTable((None,) * n_batches, None)


def _lin(sp: VectorSpace, a: Any, b: Any, alpha: float) -> Any:
    """``a + alpha·b`` for vectors or floats, where ``None`` stands for zero."""
    if b is None:
        return a
    if a is None:
        return sp.scale(b, alpha) if not isinstance(b, float) else alpha * b
    if isinstance(a, float):
        return a + alpha * b
    return sp.axpy(alpha, b, a)


def _saga(sp: VectorSpace, table: SagaTable, k: int, fresh: Any, n_batches: int) -> tuple[Any, SagaTable]:
    """SAGA estimate ``fresh − M_k + mean`` and the table with ``M_k ← fresh`` (mean updated by (fresh − M_k)/nb)."""
    old = table.entries[k]
    est = _lin(sp, _lin(sp, fresh, old, -1.0), table.mean, 1.0)
    diff = _lin(sp, fresh, old, -1.0)
    mean = _lin(sp, table.mean, diff, 1.0 / n_batches)
    entries = table.entries[:k] + (fresh,) + table.entries[k + 1 :]
    return est, SagaTable(entries, mean)


def _saga_pair(sp: VectorSpace, tables: tuple[SagaTable, SagaTable], k: int, fresh: Pair,
               n_batches: int) -> tuple[Pair, tuple[SagaTable, SagaTable]]:
    ex, tx = (None, tables[0]) if fresh[0] is None else _saga(sp, tables[0], k, fresh[0], n_batches)
    ey, ty = _saga(sp, tables[1], k, fresh[1], n_batches)
    return (ex, ey), (tx, ty)


# --------------------------------------------------------------------------- variance-reduced oracles
class _SagaView:
    """An objective whose oracles return SAGA estimates on one batch and record into tables (one round).

    A round queries an oracle at several points that play different roles (the value gap's ``(x, y)`` and
    ``(x, z)``, the inner loop's successive iterates): the ``c``-th call of an oracle within a round has its own
    table, so each role keeps its own memory and its estimate stays unbiased."""

    def __init__(self, obj: Any, sp: VectorSpace, sampler: FiniteSumSampler, k: int,
                 tables: dict[str, tuple[Any, ...]]) -> None:
        self._obj, self._sp, self._sampler, self._k = obj, sp, sampler, k
        self.tables = dict(tables)
        self._calls = {"value": 0, "grad": 0, "hvp": 0}
        self.hvp_available = getattr(obj, "hvp_available", callable(getattr(obj, "hvp", None)))
        self.tvp_available = False

    def _table(self, kind: str) -> tuple[int, Any]:
        c = self._calls[kind]
        self._calls[kind] = c + 1
        tabs = self.tables[kind]
        if c < len(tabs):
            return c, tabs[c]
        empty = SagaTable.empty(self._sampler.n_batches)
        return c, (empty if kind == "value" else (empty, empty))

    def _store(self, kind: str, c: int, table: Any) -> None:
        tabs = self.tables[kind]
        self.tables[kind] = tabs[:c] + (table,) + tabs[c + 1 :] if c < len(tabs) else (*tabs, table)

    def value(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Any:
        c, tab = self._table("value")
        fresh = float(self._sp.to_float(self._obj.value(x, y, batch=self._sampler.batch(self._k))))
        est, tab = _saga(self._sp, tab, self._k, fresh, self._sampler.n_batches)
        self._store("value", c, tab)
        return est

    def grad(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Pair:
        c, tab = self._table("grad")
        fresh = self._obj.grad(x, y, batch=self._sampler.batch(self._k))
        est, tab = _saga_pair(self._sp, tab, self._k, fresh, self._sampler.n_batches)
        self._store("grad", c, tab)
        return est

    def hvp(self, x: Vec | None, y: Vec, v: Vec, *, batch: Batch = None) -> Pair:
        c, tab = self._table("hvp")
        fresh = self._obj.hvp(x, y, v, batch=self._sampler.batch(self._k))
        est, tab = _saga_pair(self._sp, tab, self._k, fresh, self._sampler.n_batches)
        self._store("hvp", c, tab)
        return est


def _empty_tables(nb: int) -> dict[str, tuple[Any, ...]]:
    return {"value": (), "grad": (), "hvp": ()}


class VRState(NamedTuple):
    """State of :class:`VarianceReduced`: the wrapped solver's state plus the SAGA tables of both levels."""

    x: Vec | None
    y: Vec
    z: Vec
    penalty: float
    nit: int
    residuals: Any
    terminal: str
    base: Any
    outer_tables: Any
    inner_tables: Any


@dataclass(frozen=True)
class VarianceReduced:
    """A penalty solver run on mini-batches with SAGA-style variance-reduced oracles.

    Each round draws one outer and one inner batch (:class:`FiniteSumSampler`) and runs one round of
    ``solver`` on oracles that return SAGA estimates on those batches (see the module docstring).

    Args:
        solver: a :class:`~ofmu_opt.core.solver.PenaltySolver` with fixed steps (``line_search=False``;
            a backtracking test on stochastic estimates is not meaningful).
        inner_samples: size of the inner finite sum.
        outer_samples: size of the outer finite sum.
        batch_size: samples per batch (both levels).
        seed: seed of the batch order.
        variance_reduction: ``False`` gives plain mini-batch estimates (the control of the comparison).
    """

    solver: Any
    inner_samples: int
    outer_samples: int
    batch_size: int = 64
    seed: int = 0
    variance_reduction: bool = True

    def __post_init__(self) -> None:
        if getattr(self.solver, "line_search", False):
            raise ConfigError("solver: VarianceReduced needs fixed steps; expected line_search=False")
        FiniteSumSampler(self.inner_samples, self.batch_size, self.seed)
        FiniteSumSampler(self.outer_samples, self.batch_size, self.seed + 1)

    @property
    def maxiter(self) -> int:
        return int(self.solver.maxiter)

    @property
    def max_time(self) -> float | None:
        return self.solver.max_time  # type: ignore[no-any-return]

    @property
    def name(self) -> str:
        return f"{getattr(self.solver, 'name', 'penalty')}+saga" if self.variance_reduction else \
            f"{getattr(self.solver, 'name', 'penalty')}+minibatch"

    def replace(self, **changes: Any) -> VarianceReduced:
        """A copy with options of this wrapper or of the wrapped solver changed."""
        own = {k: v for k, v in changes.items() if k in self.__dataclass_fields__}
        rest = {k: v for k, v in changes.items() if k not in own}
        new = replace(self, **own)
        if rest:
            new = replace(new, solver=new.solver.replace(**rest))
        return new

    def options(self) -> dict[str, Any]:
        return {"solver": self.name, "inner_samples": self.inner_samples, "outer_samples": self.outer_samples,
                "batch_size": self.batch_size, "seed": self.seed, "variance_reduction": self.variance_reduction,
                "base": self.solver.options()}

    def _samplers(self) -> tuple[FiniteSumSampler, FiniteSumSampler]:
        return (FiniteSumSampler(self.inner_samples, self.batch_size, self.seed),
                FiniteSumSampler(self.outer_samples, self.batch_size, self.seed + 1))

    def init_state(self, problem: BilevelProblem, x0: Vec | None, y0: Vec) -> VRState:
        base = self.solver.init_state(problem, x0, y0)
        si, so = self._samplers()
        return VRState(base.x, base.y, base.z, base.penalty, 0, base.residuals, "", base,
                       _empty_tables(so.n_batches), _empty_tables(si.n_batches))

    def update(self, problem: BilevelProblem, state: VRState, *, batch: Batch = None) -> VRState:
        si, so = self._samplers()
        ki, ko = si.index_at(state.nit), so.index_at(state.nit)
        sp = problem.space
        from .solver import RoundBatches

        # a batch is always passed, so the wrapped solver treats the round as stochastic (no step-size rules that
        # read differences of successive gradients); the views below decide what the oracles see
        rb = RoundBatches(inner=(si.batch(ki),), outer=so.batch(ko))
        if self.variance_reduction:
            outer = _SagaView(problem.outer, sp, so, ko, state.outer_tables)
            inner = _SagaView(problem.inner, sp, si, ki, state.inner_tables)
            view = replace(problem, outer=outer, inner=inner, inner_factory=None)
            new = self.solver.update(view, state.base, batch=rb)
            otab, itab = outer.tables, inner.tables
        else:
            view = replace(problem, outer=_Rebatch(problem.outer, so.batch(ko)),
                           inner=_Rebatch(problem.inner, si.batch(ki)), inner_factory=None)
            new = self.solver.update(view, state.base, batch=rb)
            otab, itab = state.outer_tables, state.inner_tables
        terminal = new.terminal
        if terminal == "numerical_error":
            return state._replace(terminal=terminal, nit=state.nit + 1)
        # the wrapped solver's stopping test reads a stochastic estimate: trust it only once every batch of both
        # levels has been drawn twice (the SAGA tables then hold recent values and their error vanishes as the
        # iterates settle); before that the run goes on
        if terminal and state.nit + 1 < 2 * max(si.n_batches, so.n_batches):
            terminal = ""
        return VRState(new.x, new.y, new.z, new.penalty, state.nit + 1, new.residuals, terminal, new, otab, itab)

    def point(self, state: VRState) -> Pair:
        return self.solver.point(state.base)  # type: ignore[no-any-return]

    def run(self, problem: BilevelProblem, x0: Vec | None, y0: Vec, *,
            callback: Callable[[IntermediateResult], Any] | None = None, batches: Iterable[Batch] | None = None,
            record_history: bool = False, distance_fn: Callable[[Vec | None, Vec], float] | None = None,
            ) -> BilevelResult:
        """Run the shared loop (batches come from the sampler; ``batches`` must be ``None``)."""
        if batches is not None:
            raise ConfigError("batches: VarianceReduced draws its own batches; expected None")
        return run_solver(self, problem, x0, y0, callback=callback, record_history=record_history,
                          distance_fn=distance_fn)


class _Rebatch:
    """An objective evaluated on a fixed batch whatever batch the caller passes."""

    def __init__(self, obj: Any, b: slice) -> None:
        self._obj, self._b = obj, b
        self.hvp_available = getattr(obj, "hvp_available", callable(getattr(obj, "hvp", None)))
        self.tvp_available = False

    def value(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Any:
        return self._obj.value(x, y, batch=self._b)

    def grad(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Pair:
        return self._obj.grad(x, y, batch=self._b)  # type: ignore[no-any-return]

    def hvp(self, x: Vec | None, y: Vec, v: Vec, *, batch: Batch = None) -> Pair:
        return self._obj.hvp(x, y, v, batch=self._b)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- SOBA and SABA
class SbResiduals(NamedTuple):
    outer: float
    inner: float


class SbState(NamedTuple):
    """State of :class:`Soba` / :class:`Saba` (same fields every round; the tables are SABA's memory)."""

    x: Vec | None
    y: Vec
    z: Vec
    penalty: float
    nit: int
    residuals: SbResiduals
    terminal: str
    tables: Any


@dataclass(frozen=True)
class _SbBase:
    step: float = 0.1
    outer_ratio: float = 1.0
    inner_samples: int = 1
    outer_samples: int = 1
    batch_size: int = 64
    seed: int = 0
    tol: float = 1e-6
    maxiter: int = 10_000
    max_time: float | None = None

    def __post_init__(self) -> None:
        check_range("step", self.step, low=0.0, low_open=True)
        check_range("outer_ratio", self.outer_ratio, low=0.0, low_open=True)
        check_range("tol", self.tol, low=0.0, low_open=True)
        _check_int("maxiter", self.maxiter)
        if self.max_time is not None:
            check_range("max_time", self.max_time, low=0.0, low_open=True)
        self._samplers()

    def _samplers(self) -> tuple[FiniteSumSampler, FiniteSumSampler]:
        return (FiniteSumSampler(self.inner_samples, self.batch_size, self.seed),
                FiniteSumSampler(self.outer_samples, self.batch_size, self.seed + 1))

    def options(self) -> dict[str, Any]:
        return {"solver": type(self).__name__.lower(), **config_to_dict(self)}

    def replace(self, **changes: Any) -> Any:
        return replace(self, **changes)

    def point(self, state: SbState) -> Pair:
        return (state.x, state.y)

    def init_state(self, problem: BilevelProblem, x0: Vec | None, y0: Vec) -> SbState:
        if problem.has_x != (x0 is not None):
            raise ProblemSpecError("x0: expected a starting point exactly when the problem has an outer variable x")
        plain_inner(problem)
        si, so = self._samplers()
        nan = math.nan
        tables = {"gy": SagaTable.empty(si.n_batches), "hv": (SagaTable.empty(si.n_batches),) * 2,
                  "fgrad": (SagaTable.empty(so.n_batches),) * 2}
        return SbState(x0, y0, problem.space.zeros_like(y0), 0.0, 0, SbResiduals(nan, nan), "", tables)

    def _steps(self, t: int) -> tuple[float, float]:
        raise NotImplementedError

    def _directions(self, sp: VectorSpace, gy: Vec, hv: Pair, fg: Pair, state: SbState, ki: int, ko: int,
                    si: FiniteSumSampler, so: FiniteSumSampler) -> tuple[Vec, Pair, Pair, Any]:
        return gy, hv, fg, state.tables

    def update(self, problem: BilevelProblem, state: SbState, *, batch: Batch = None) -> SbState:
        sp = problem.space
        g = plain_inner(problem)
        si, so = self._samplers()
        ki, ko = si.index_at(state.nit), so.index_at(state.nit)
        bi = None if si.n_batches == 1 else si.batch(ki)
        bo = None if so.n_batches == 1 else so.batch(ko)
        x, y, v = state.x, state.y, state.z
        gy = g.grad(x, y, batch=bi)[1]
        hv = g.hvp(x, y, v, batch=bi)  # (∇²_xy g v, ∇²_yy g v)
        fg = problem.outer.grad(x, y, batch=bo)
        gy, hv, fg, tables = self._directions(sp, gy, hv, fg, state, ki, ko, si, so)
        rho, gamma = self._steps(state.nit + 1)
        d_v = sp.add(hv[1], fg[1])
        d_x = None if x is None else sp.add(hv[0], fg[0])
        y_new = sp.axpy(-rho, gy, y)
        v_new = sp.axpy(-rho, d_v, v)
        x_new = None if x is None else sp.axpy(-gamma, d_x, x)
        new: Pair = (x_new, y_new)
        if not (pfinite(sp, new) and sp.all_finite(v_new)):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)
        r_out = 0.0 if d_x is None else sp.to_float(sp.norm(d_x))
        r_in = sp.to_float(sp.norm(gy))
        done = max(r_out, r_in) <= self.tol and self._can_stop() and self._visited_all(state.nit + 1)
        terminal = "converged" if done else ""
        return SbState(x_new, y_new, v_new, 0.0, state.nit + 1, SbResiduals(r_out, r_in), terminal, tables)

    def _can_stop(self) -> bool:
        return True

    def _visited_all(self, nit: int) -> bool:
        si, so = self._samplers()
        return nit >= max(si.n_batches, so.n_batches)

    def run(self, problem: BilevelProblem, x0: Vec | None, y0: Vec, *,
            callback: Callable[[IntermediateResult], Any] | None = None, batches: Iterable[Batch] | None = None,
            record_history: bool = False, distance_fn: Callable[[Vec | None, Vec], float] | None = None,
            ) -> BilevelResult:
        """Run the shared loop (batches come from the sampler; ``batches`` must be ``None``)."""
        if batches is not None:
            raise ConfigError(f"batches: {type(self).__name__} draws its own batches; expected None")
        return run_solver(self, problem, x0, y0, callback=callback, record_history=record_history,  # type: ignore[arg-type]
                          distance_fn=distance_fn)


@dataclass(frozen=True)
class Soba(_SbBase):
    """SOBA (Dagréou et al. 2022): one-sample directions, decreasing steps ``ρ_t = step·t^(−2/5)``,
    ``γ_t = (step/outer_ratio)·t^(−3/5)``. Its residual is a single-batch estimate, so a run stops on
    ``tol`` only when full batches are used; otherwise at ``maxiter`` or ``max_time``.

    Examples:
        >>> Soba(step=0.1, inner_samples=8, outer_samples=8, batch_size=8).options()["solver"]
        'soba'
    """

    def _steps(self, t: int) -> tuple[float, float]:
        return self.step * t ** (-0.4), self.step / self.outer_ratio * t ** (-0.6)

    def _can_stop(self) -> bool:
        si, so = self._samplers()
        return si.n_batches == 1 and so.n_batches == 1


@dataclass(frozen=True)
class Saba(_SbBase):
    """SABA (Dagréou et al. 2022): SOBA's five terms replaced by SAGA estimates, constant steps
    ``ρ = step``, ``γ = step/outer_ratio``. Stops when both variance-reduced directions
    (``‖D_x‖``, ``‖D_y‖``) fall below ``tol``.

    Examples:
        >>> Saba(step=0.1, inner_samples=8, outer_samples=8, batch_size=4).options()["batch_size"]
        4
    """

    def _steps(self, t: int) -> tuple[float, float]:
        return self.step, self.step / self.outer_ratio

    def _directions(self, sp: VectorSpace, gy: Vec, hv: Pair, fg: Pair, state: SbState, ki: int, ko: int,
                    si: FiniteSumSampler, so: FiniteSumSampler) -> tuple[Vec, Pair, Pair, Any]:
        t = state.tables
        gy_e, t_gy = _saga(sp, t["gy"], ki, gy, si.n_batches)
        hv_e, t_hv = _saga_pair(sp, t["hv"], ki, hv, si.n_batches)
        fg_e, t_fg = _saga_pair(sp, t["fgrad"], ko, fg, so.n_batches)
        return gy_e, hv_e, fg_e, {"gy": t_gy, "hv": t_hv, "fgrad": t_fg}


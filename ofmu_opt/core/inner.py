r"""The similarity-aware inner objective :math:`\varphi`, composed from the problem's oracles.

The solver always *minimizes* the inner objective. With :math:`s = +1` for ``sense="min"`` and
:math:`s = -1` for ``sense="max"``, and :math:`G = -s\,g` the function the paper maximizes:

.. math::  \varphi(x, y) = s\,g(x,y) + \beta\,\mathrm{sim}(\nabla_y G, \nabla_y f)

so for unlearning (``g = L_f``, ``sense="max"``, ``f = L_r``) minimizing :math:`\varphi` is maximizing
:math:`\Phi = L_f - \beta\,\mathrm{sim}(\nabla L_f, \nabla L_r)` (OFMU_SPEC.md §1).

Gradient (with :math:`a = \nabla_y G`, :math:`b = \nabla_y f`, :math:`(u_a, u_b) = \nabla \mathrm{sim}(a,b)`
and :math:`\mathcal{H}_h(u) = \nabla_{(x,y)}\langle \nabla_y h, u\rangle` the problem's ``hvp`` oracle):

.. math::  \nabla\varphi = s\nabla g + \beta\,(-s\,\mathcal{H}_g(u_a) + \mathcal{H}_f(u_b))

Hessian-vector product :math:`\nabla_{(x,y)}\langle\nabla_y\varphi, v\rangle` by the ``hvp`` mode:
``exact`` (second-order terms of ``sim`` plus third derivatives of ``g`` and ``f`` from ``tvp``),
``finite_difference`` (central difference of :math:`\nabla\varphi` along ``v``) or ``forget_hessian``
(:math:`s\,\mathcal{H}_g(v)`, dropping the similarity curvature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._typing import Batch, Pair, Scalar, Vec
from ..errors import ConfigError
from ..problem.bilevel import BilevelProblem
from ..problem.oracles import Objective, has_hvp, has_tvp
from ..problem.space import VectorSpace
from .pair import padd, paxpy, pscale, psub
from .similarity import similarity_and_grad, similarity_jvp

__all__ = ["ComposedInner", "InnerObjective", "InnerSpec", "make_inner", "objective_hvp"]


@dataclass(frozen=True)
class InnerSpec:
    """What a backend needs to build the inner objective: the similarity term and the HVP mode."""

    similarity: str
    beta: float
    eps: float
    hvp: str
    fd_step: float
    sign: float


@runtime_checkable
class InnerObjective(Protocol):
    """The inner objective φ in minimization form."""

    def value(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Scalar: ...
    def grad(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Pair: ...
    def hvp(self, x: Vec | None, y: Vec, v: Vec, *, batch: Batch = None) -> Pair: ...


def objective_hvp(
    sp: VectorSpace, obj: Objective, x: Vec | None, y: Vec, v: Vec, fd_step: float, batch: Batch
) -> Pair:
    """``∇_{(x,y)}<∇_y h, v>`` from the oracle, or by a central difference of ``grad`` when absent."""
    if has_hvp(obj):
        return obj.hvp(x, y, v, batch=batch)  # type: ignore[attr-defined,no-any-return]
    nv = sp.to_float(sp.norm(v))
    if nv == 0.0:
        gx, gy = obj.grad(x, y, batch=batch)
        return (None if gx is None else sp.zeros_like(gx), sp.zeros_like(gy))
    if not math.isfinite(nv):  # an Inf/NaN direction: return NaNs, which end the run with NUMERICAL_ERROR
        gx, gy = obj.grad(x, y, batch=batch)
        return pscale(sp, (gx, gy), math.nan)
    h = fd_step * (1.0 + sp.to_float(sp.norm(y))) / nv
    gp = obj.grad(x, sp.axpy(h, v, y), batch=batch)
    gm = obj.grad(x, sp.axpy(-h, v, y), batch=batch)
    return pscale(sp, psub(sp, gp, gm), 1.0 / (2 * h))


class ComposedInner:
    """The inner objective φ built from the problem's ``f`` and ``g`` oracles (numpy or any backend)."""

    def __init__(self, problem: BilevelProblem, spec: InnerSpec) -> None:
        self.p = problem
        self.sp = problem.space
        self.spec = spec
        self.active = spec.similarity != "none" and spec.beta != 0.0
        if self.active and spec.hvp == "exact":
            missing = [n for n, o in (("inner", problem.inner), ("outer", problem.outer)) if not has_tvp(o)]
            if missing:
                raise ConfigError(
                    "hvp: 'exact' with beta > 0 needs third derivatives (a tvp oracle, or quadratic=True) "
                    f"of the {' and '.join(missing)} objective; received none. Use hvp='finite_difference', "
                    "hvp='forget_hessian', or the torch backend (autodiff)"
                )

    def _hvp(self, obj: Objective, x: Vec | None, y: Vec, v: Vec, batch: Batch) -> Pair:
        return objective_hvp(self.sp, obj, x, y, v, self.spec.fd_step, batch)

    def _sim_parts(self, x: Vec | None, y: Vec, batch: Batch) -> dict[str, Any]:
        sp, s = self.sp, self.spec.sign
        gg = self.p.inner.grad(x, y, batch=batch)
        fg = self.p.outer.grad(x, y, batch=batch)
        a = sp.scale(gg[1], -s)
        b = fg[1]
        val, ua, ub = similarity_and_grad(sp, a, b, self.spec.similarity, self.spec.eps)
        return {"gg": gg, "a": a, "b": b, "sim": val, "ua": ua, "ub": ub}

    def value(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Scalar:
        s = self.spec.sign
        gv = self.p.inner.value(x, y, batch=batch)
        if not self.active:
            return s * gv
        parts = self._sim_parts(x, y, batch)
        return s * gv + self.spec.beta * parts["sim"]

    def grad(self, x: Vec | None, y: Vec, *, batch: Batch = None) -> Pair:
        sp, s = self.sp, self.spec.sign
        if not self.active:
            return pscale(sp, self.p.inner.grad(x, y, batch=batch), s)
        parts = self._sim_parts(x, y, batch)
        term = padd(
            sp,
            pscale(sp, self._hvp(self.p.inner, x, y, parts["ua"], batch), -s),
            self._hvp(self.p.outer, x, y, parts["ub"], batch),
        )
        return paxpy(sp, self.spec.beta, term, pscale(sp, parts["gg"], s))

    def hvp(self, x: Vec | None, y: Vec, v: Vec, *, batch: Batch = None) -> Pair:
        sp, s, mode = self.sp, self.spec.sign, self.spec.hvp
        if mode == "forget_hessian" or not self.active:
            return pscale(sp, self._hvp(self.p.inner, x, y, v, batch), s)
        if mode == "finite_difference":
            nv = sp.to_float(sp.norm(v))
            if nv == 0.0:
                gx, gy = self.grad(x, y, batch=batch)
                return (None if gx is None else sp.zeros_like(gx), sp.zeros_like(gy))
            h = self.spec.fd_step * (1.0 + sp.to_float(sp.norm(y))) / nv
            gp = self.grad(x, sp.axpy(h, v, y), batch=batch)
            gm = self.grad(x, sp.axpy(-h, v, y), batch=batch)
            return pscale(sp, psub(sp, gp, gm), 1.0 / (2 * h))
        # exact
        parts = self._sim_parts(x, y, batch)
        hg_v = self._hvp(self.p.inner, x, y, v, batch)
        hf_v = self._hvp(self.p.outer, x, y, v, batch)
        da = sp.scale(hg_v[1], -s)
        db = hf_v[1]
        dua, dub = similarity_jvp(sp, parts["a"], parts["b"], da, db, self.spec.similarity, self.spec.eps)
        term = padd(
            sp,
            pscale(sp, self._hvp(self.p.inner, x, y, dua, batch), -s),
            self._hvp(self.p.outer, x, y, dub, batch),
        )
        tg = self.p.inner.tvp(x, y, parts["ua"], v, batch=batch)  # type: ignore[attr-defined]
        tf = self.p.outer.tvp(x, y, parts["ub"], v, batch=batch)  # type: ignore[attr-defined]
        if tg[1] is not None:
            term = paxpy(sp, -s, tg, term)
        if tf[1] is not None:
            term = padd(sp, term, tf)
        return paxpy(sp, self.spec.beta, term, pscale(sp, hg_v, s))


def make_inner(problem: BilevelProblem, spec: InnerSpec) -> InnerObjective:
    """The backend's inner objective if the problem provides a factory, else :class:`ComposedInner`."""
    if problem.inner_factory is not None:
        obj = problem.inner_factory(spec)
        if not isinstance(obj, InnerObjective):
            raise ConfigError(f"inner_factory returned {type(obj).__name__}, expected an InnerObjective")
        return obj
    return ComposedInner(problem, spec)

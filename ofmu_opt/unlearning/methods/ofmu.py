r"""OFMU as an unlearning method: the generic penalty solver (:mod:`ofmu_opt.core.solver`) on the torch backend.

The model's trainable parameters θ (those with ``requires_grad``, or a name pattern) are the inner
variable. The inner problem maximizes Φ − β·sim(∇Φ, ∇L_r) with Φ the chosen **forget objective**
(:mod:`~ofmu_opt.unlearning.methods.objectives`; the paper's Φ is the forget NLL, ``objective="ascent"``)
and L_r the mean per-example NLL of the retain batch (or, with ``retain_loss="kl"``, the KL from the
original model's predictions). One method step is one OFMU round
(OFMU_SPEC.md §2): ``inner_steps`` ascent steps on the inner objective (each on its own pair of batches),
then one outer step on F = L_r + ρ‖∇Φ̃‖² (another pair; Φ̃ the inner objective with its similarity term),
then the penalty schedule.

One name per knob. The method's own fields ``lr``, ``optimizer`` and ``steps`` are the solver's
``outer_lr``, ``outer_rule`` and ``maxiter``; every other solver option keeps the solver's name
(``penalty``, ``penalty_growth``, ``penalty_max``, ``inner_lr``, ...). Differences to the literal
solver round, each an option:

- ``inner_state="keep"`` (default): the inner step rule's state (Adam's moments) persists across rounds;
  ``"reset"`` restarts it every round as :meth:`PenaltySolver.update` does. With ``base="inner"`` the
  round is the inner loop run here followed by the solver's outer step from the inner result (the
  solver's ``base="outer"`` round with zero inner steps from the inner result, which is the same
  update); other bases use the solver's round unchanged.
- ``scale_step_by_penalty``: ``None`` (default) divides the outer step by ρ only for ``optimizer="sgd"``
  (the paper's analysis); Adam is invariant to the gradient's scale, and dividing its step by a growing ρ
  only shrinks the step geometrically.
- ``penalty_scale="initial"`` (default): ρ is measured in units of the initial stationarity violation,
  F = L_r + ρ‖∇Φ̃‖²/‖∇Φ̃(θ0)‖², so the same ρ schedule means the same thing on every benchmark and every
  objective; ``"raw"`` is the literal F.
- ``penalty_type``: ``stationarity`` (OFMU), ``weighted_sum`` (F = L_r − ρΦ̃, GradDiff with the chosen
  objective; no inner steps), ``value_gap`` (with one shared variable the value-gap penalty's gradient is
  ∇L_r − ρ∇Φ̃: it *is* the weighted sum, and it runs as one, without the inner steps that would not
  change the update) and ``none`` (the no-penalty ablation: inner ascent, then an outer step on L_r).

Diagnostics (cos, gradient norms) come from :class:`~ofmu_opt.unlearning.methods.base.StepLoop`; the
recorded ``loss`` is F on the round's outer batch and ``penalty`` the penalty term at the outer step's
evaluation point.

Examples:
    >>> OfmuConfig().similarity, OfmuConfig(beta=0.0).beta
    ('signed', 0.0)
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.overrides import TorchFunctionMode

from ..._config import check_choice, check_range
from ...backends.torch_module import ModuleBatch, module_problem
from ...core import solver as S
from ...core.similarity import SIMILARITY_KINDS
from ...core.steps import get_step_rule
from ...errors import ConfigError
from .base import MethodResult, StepLoop, UnlearnContext
from .contract import ObjectiveConfig, SearchSpace, search_space
from .objectives import OBJECTIVES, family, make_objective, resolve_objective

__all__ = ["FAMILY_DEFAULTS", "OfmuConfig", "OfmuMethod", "ReversePassCounter"]

log = logging.getLogger(__name__)

PENALTY_TYPES = ("stationarity", "value_gap", "weighted_sum", "none")
_REVERSE_PASSES = (torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward)


class ReversePassCounter(TorchFunctionMode):
    """Counts reverse-mode passes (``torch.autograd.grad``, ``backward``) run inside ``with counter:`` blocks.

    The unit is the one the runner's parameter hook counts for the other methods (one backward pass that
    reaches the parameters; a double-backward Hessian-vector product is two). OFMU differentiates a
    functional copy of the parameters, which that hook cannot see, so it counts its own. The mode sees
    every torch call made in Python while it is entered (a measurable slow-down on small models), so
    :class:`OfmuMethod` enters it only for the set-up, the diagnostics and the first
    :attr:`OfmuMethod.counted_rounds` rounds (see :meth:`OfmuMethod.run`). The same instance can be
    entered again; :attr:`count` accumulates.

    Example:
        >>> x = torch.ones(2, requires_grad=True)
        >>> with ReversePassCounter() as c:
        ...     g, = torch.autograd.grad((x ** 3).sum(), x, create_graph=True)
        ...     _ = torch.autograd.grad(g.sum(), x)
        >>> c.count
        2
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in _REVERSE_PASSES:
            self.count += 1
        return func(*args, **(kwargs or {}))


#: OFMU's defaults per benchmark family, for the options left unset (``inner_steps``/``penalty`` ``None``,
#: ``objective="auto"``). ``classifier``: image classifiers; ``qa``: language models on QA items with an
#: "I don't know" answer (TOFU-style); ``corpus``: language models on text (WMDP-style); ``generic``: a
#: config used without a context (e.g. :meth:`OfmuConfig.solver` on its own). Chosen by the study on
#: validation splits only (docs/results_*.md); ``objective`` absent = the task's ``auto`` objective.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "generic": {"inner_steps": 1, "penalty": 0.1},
    "classifier": {"inner_steps": 1, "penalty": 0.1},
    "qa": {"objective": "npo", "inner_steps": 2, "penalty": 0.003},
    "corpus": {"inner_steps": 1, "penalty": 0.1},
}


@dataclass(frozen=True)
class OfmuConfig(ObjectiveConfig):
    """OFMU's options (OFMU_SPEC.md §1–2, docs/forget_objectives.md).

    Attributes:
        lr: outer step size (the solver's ``outer_lr``).
        steps: number of rounds K (the solver's ``maxiter``).
        optimizer: outer step rule, ``adam`` or ``sgd`` (the solver's ``outer_rule``; plain SGD here).
        objective: forget objective Φ: ``auto`` | ``ascent`` (the paper) | ``other_class`` | ``uniform`` |
            ``calibrated`` | ``idk`` | ``npo`` | ``idk_npo`` | ``representation``.
        npo_beta: b of the bounded likelihood-ratio term of ``npo``/``idk_npo``.
        layer: hidden layer of ``representation``.
        steering: c of ``representation``.
        target_confidence: ``calibrated``: label probability (``None``: measured on held-out data).
        target_error: ``calibrated``: fraction pushed to the other classes (``None``: measured).
        retain_loss: L_r: ``nll`` (mean per-example NLL of the retain batch) or ``kl`` (mean KL from the
            original model's predictions on the retain batch to the current ones).
        similarity: ``signed`` (the paper's reading) | ``abs`` | ``squared`` | ``none``.
        beta: weight β of the similarity term.
        sim_eps: ε of the cosine's denominator.
        hvp: ``exact`` | ``finite_difference`` | ``forget_hessian``.
        fd_step: relative step of the finite-difference HVPs (the solver's ``fd_step``; model-dependent:
            docs/performance.md Run D).
        fd_scheme: ``central`` | ``forward`` finite differences of the outer HVP (``forward`` reuses ∇Φ̃).
        first_order: every Hessian-vector product (the cosine's and the outer one) as a forward difference
            of plain gradients, no second-order graph (needs ``hvp`` ``finite_difference`` or
            ``forget_hessian`` and ``accumulation=1``; lowest memory, see docs/performance.md Run D).
        cosine_fd_step: step of ``first_order``'s cosine differences (``None``: ``fd_step``).
        base: ``inner`` (the paper) | ``outer`` | ``extragradient``.
        penalty_type: ``stationarity`` | ``value_gap`` | ``weighted_sum`` | ``none`` (see the module docstring).
        inner_steps: T, inner ascent steps per round (``None``: the family default, :data:`FAMILY_DEFAULTS`).
        inner_lr: inner step size.
        inner_rule: ``sgd`` | ``adam``.
        inner_state: ``keep`` (the inner rule's state persists across rounds) | ``reset``.
        penalty: ρ0 (in units of ``penalty_scale``; ``None``: the family default).
        penalty_scale: ``initial`` (ρ relative to ‖∇Φ̃(θ0)‖²) | ``raw``.
        schedule: ``geometric`` | ``linear`` | ``constant``.
        penalty_growth: γ of the geometric schedule.
        penalty_max: cap on ρ (the final ρ of ``linear``), same units as ``penalty``.
        ramp_steps: rounds of the linear ramp.
        scale_step_by_penalty: divide the outer step by ρ; ``None``: only for ``optimizer="sgd"``.
        autodiff: ``double_backward`` | ``forward_over_reverse``.
        accumulation: micro-batches per oracle call.
        params: trainable parameters: ``requires_grad``, ``all`` or ``re:<pattern>``.
    """

    lr: float = 1e-3
    steps: int = 50
    optimizer: str = "adam"
    objective: str = "auto"
    retain_loss: str = "nll"
    similarity: str = "signed"
    beta: float = 0.1
    sim_eps: float = 1e-8
    hvp: str = "exact"
    fd_step: float = 1e-6
    fd_scheme: str = "central"
    first_order: bool = False
    cosine_fd_step: float | None = None
    base: str = "inner"
    penalty_type: str = "stationarity"
    inner_steps: int | None = None
    inner_lr: float = 1e-3
    inner_rule: str = "adam"
    inner_state: str = "keep"
    penalty: float | None = None
    penalty_scale: str = "initial"
    schedule: str = "geometric"
    penalty_growth: float = 1.05
    penalty_max: float = 10.0
    ramp_steps: int = 100
    scale_step_by_penalty: bool | None = None
    autodiff: str = "double_backward"
    accumulation: int = 1
    params: str = "requires_grad"

    SEARCH_SPACE: ClassVar[SearchSpace] = search_space(
        lr=(3e-4, 1e-2),
        inner_lr=(3e-4, 1e-2),
        penalty=(0.01, 10.0),
        beta=("choice", 0.0, 0.01, 0.03, 0.1, 0.3, 1.0),
        inner_steps=("choice", 0, 1, 5),
        objective=("choice", *OBJECTIVES),  # narrowed to the benchmark's family (Benchmark.search_choices)
    )

    def __post_init__(self) -> None:
        super().__post_init__()  # the objective and its options (ObjectiveConfig)
        if isinstance(self.layer, bool) or not isinstance(self.layer, int):
            raise ConfigError(f"layer: expected an integer, received {self.layer!r}")
        check_choice("retain_loss", self.retain_loss, ("nll", "kl"))
        if self.retain_loss == "kl" and self.beta > 0 and self.similarity != "none":
            raise ConfigError(
                "retain_loss: 'kl' has a zero gradient at the original model, where cos(∇Φ, ∇L_r) is undefined "
                f"(measured: its gradient then swamps ∇Φ); expected beta=0 or similarity='none' with it, received "
                f"beta={self.beta}"
            )
        check_choice("similarity", self.similarity, SIMILARITY_KINDS)
        check_range("beta", self.beta, low=0.0)
        check_range("sim_eps", self.sim_eps, low=0.0)
        check_choice("hvp", self.hvp, S.HVP_MODES)
        check_range("fd_step", self.fd_step, low=0.0, low_open=True)
        check_choice("fd_scheme", self.fd_scheme, ("central", "forward"))
        if self.cosine_fd_step is not None:
            check_range("cosine_fd_step", self.cosine_fd_step, low=0.0, low_open=True)
        if self.first_order and (self.hvp == "exact" or self.accumulation != 1):
            raise ConfigError(
                "first_order: expected hvp='finite_difference' or 'forget_hessian' and accumulation=1, received "
                f"hvp={self.hvp!r}, accumulation={self.accumulation}"
            )
        check_choice("base", self.base, ("inner", "outer", "extragradient"))
        check_choice("penalty_type", self.penalty_type, PENALTY_TYPES)
        for name in ("inner_steps", "ramp_steps", "accumulation"):
            v = getattr(self, name)
            low = 0 if name == "inner_steps" else 1
            if name == "inner_steps" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{name}: expected an integer >= {low}, received {v!r}")
        check_range("inner_lr", self.inner_lr, low=0.0, low_open=True)
        check_choice("inner_rule", self.inner_rule, ("sgd", "adam"))
        check_choice("inner_state", self.inner_state, ("keep", "reset"))
        if self.penalty is not None:
            check_range("penalty", self.penalty, low=0.0, low_open=True)
        check_choice("penalty_scale", self.penalty_scale, ("initial", "raw"))
        check_choice("schedule", self.schedule, ("geometric", "linear", "constant"))
        check_range("penalty_growth", self.penalty_growth, low=1.0)
        unset = min(float(d["penalty"]) for d in FAMILY_DEFAULTS.values())  # checked again once resolved
        check_range("penalty_max", self.penalty_max, low=unset if self.penalty is None else self.penalty)
        if self.scale_step_by_penalty is not None and not isinstance(self.scale_step_by_penalty, bool):
            raise ConfigError(
                f"scale_step_by_penalty: expected true, false or none, received {self.scale_step_by_penalty!r}"
            )
        check_choice("autodiff", self.autodiff, ("double_backward", "forward_over_reverse"))
        if not isinstance(self.params, str) or not (
            self.params in ("requires_grad", "all") or self.params.startswith("re:")
        ):
            raise ConfigError(f"params: expected 'requires_grad', 'all' or 're:<pattern>', received {self.params!r}")
        if self.weight_decay != 0.0 or self.grad_clip != 0.0:
            raise ConfigError(
                "weight_decay/grad_clip: OFMU's solver steps are the penalty method's own (OFMU_SPEC.md §2); "
                f"expected 0, received {self.weight_decay}/{self.grad_clip}"
            )

    @property
    def rho0(self) -> float:
        """ρ0: ``penalty``, or the generic family default when it is unset."""
        return float(FAMILY_DEFAULTS["generic"]["penalty"]) if self.penalty is None else self.penalty

    @property
    def T(self) -> int:
        """T: ``inner_steps``, or the generic family default when it is unset."""
        return int(FAMILY_DEFAULTS["generic"]["inner_steps"]) if self.inner_steps is None else self.inner_steps

    def resolved(self, family: str) -> OfmuConfig:
        """This config with the unset options (``None``; ``objective="auto"``) taken from ``FAMILY_DEFAULTS[family]``.

        Examples:
            >>> c, qa = OfmuConfig().resolved("qa"), FAMILY_DEFAULTS["qa"]
            >>> (c.objective, c.inner_steps, c.penalty) == tuple(qa[k] for k in ("objective", "inner_steps", "penalty"))
            True
            >>> OfmuConfig(inner_steps=3, objective="idk").resolved("qa").inner_steps
            3
        """
        if family not in FAMILY_DEFAULTS:
            raise ConfigError(f"family: expected one of {', '.join(FAMILY_DEFAULTS)}, received {family!r}")
        d = FAMILY_DEFAULTS[family]
        changes: dict[str, Any] = {k: d[k] for k in ("inner_steps", "penalty") if getattr(self, k) is None}
        if self.objective == "auto" and "objective" in d:
            changes["objective"] = d["objective"]
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def solver_penalty_type(self) -> str:
        """The solver's penalty type: ``value_gap`` runs as ``weighted_sum`` (identical with one variable)."""
        return "weighted_sum" if self.penalty_type == "value_gap" else self.penalty_type

    @property
    def effective_inner_steps(self) -> int:
        """Inner steps that change the update (0 for the weighted sum / value gap, whose update ignores them)."""
        return 0 if self.solver_penalty_type == "weighted_sum" else self.T

    def step_scaled(self) -> bool:
        """Whether the outer step is divided by ρ (``None``: only with SGD)."""
        if self.scale_step_by_penalty is None:
            return self.optimizer == "sgd"
        return self.scale_step_by_penalty

    def solver(self, unit: float = 1.0) -> S.PenaltySolver:
        """The configured :class:`~ofmu_opt.core.solver.PenaltySolver` (the ``ofmu`` preset plus these options).

        Args:
            unit: multiplies ``penalty`` and ``penalty_max`` (``1/‖∇Φ̃(θ0)‖²`` for ``penalty_scale="initial"``).

        ``penalty_type="none"`` has no solver penalty; its solver (a stationarity one) only supplies the inner
        objective and the step rules.
        """
        ptype = self.solver_penalty_type
        return S.ofmu(
            penalty_type="stationarity" if ptype == "none" else ptype,
            similarity=self.similarity, beta=self.beta, sim_eps=self.sim_eps,
            hvp=self.hvp, fd_step=self.fd_step, base="outer" if ptype == "weighted_sum" else self.base,
            inner_steps=self.effective_inner_steps, inner_lr=self.inner_lr, inner_rule=self.inner_rule,
            outer_lr=self.lr, outer_rule=self.optimizer,
            penalty=self.rho0 * unit, schedule=self.schedule, penalty_growth=self.penalty_growth,
            penalty_max=self.penalty_max * unit, ramp_steps=self.ramp_steps,
            scale_step_by_penalty=self.step_scaled() and ptype != "weighted_sum", maxiter=self.steps,
            strategy="paper",  # the paper's two loops with this ρ schedule, not penalty continuation
        )


class _PassBook:
    """Reverse passes of one run, by segment: set-up, diagnostics, and the rounds (counted exactly in the first
    ``counted`` rounds; every later round is booked at the last counted round's count)."""

    def __init__(self, counted: int) -> None:
        self.counted = counted
        self.counter = ReversePassCounter()
        self.by: dict[str, int] = {"setup": 0, "diagnostics": 0}
        self.rounds: list[int] = []
        self.extrapolated = 0

    @contextlib.contextmanager
    def segment(self, name: str) -> Iterator[None]:
        before = self.counter.count
        with self.counter:
            yield
        self.by[name] += self.counter.count - before

    @contextlib.contextmanager
    def round(self) -> Iterator[None]:
        if len(self.rounds) >= self.counted and self.rounds:
            yield
            self.extrapolated += 1
            return
        before = self.counter.count
        with self.counter:
            yield
        self.rounds.append(self.counter.count - before)

    def info(self) -> dict[str, Any]:
        per_round = self.rounds[-1] if self.rounds else 0
        method = self.by["setup"] + sum(self.rounds) + self.extrapolated * per_round
        return {"grad_evals": method + self.by["diagnostics"], "grad_evals_method": method,
                "grad_evals_diagnostics": self.by["diagnostics"], "grad_evals_per_round": per_round,
                "grad_evals_counted_rounds": len(self.rounds)}


class OfmuMethod:
    """OFMU: penalty-based bi-level unlearning (forget by maximizing Φ, retain under the stationarity penalty).

    ``MethodResult.info`` carries the gradient-evaluation count in the runner's unit (reverse passes through
    the model, :class:`ReversePassCounter`): ``grad_evals`` (everything, diagnostics included, as the
    runner counts the other methods), ``grad_evals_method`` (without the diagnostics),
    ``grad_evals_diagnostics``, ``grad_evals_per_round`` and ``grad_evals_counted_rounds``. The set-up,
    the diagnostics and the first :attr:`counted_rounds` rounds are counted; later rounds repeat the same
    computation (fixed inner steps, no line search in the paper strategy) and are booked at the last
    counted round's count, which keeps the counting mode's per-call overhead out of the run time.
    """

    name: ClassVar[str] = "ofmu"
    counted_rounds: ClassVar[int] = 2

    def __init__(self, config: OfmuConfig | None = None, validation: Iterator[Any] | None = None) -> None:
        self.config = config or OfmuConfig()
        #: held-out batches for the ``calibrated`` objective when the context has none (the runner sets it
        #: from the benchmark's validation split, :func:`~ofmu_opt.unlearning.runner.attach_validation`)
        self.validation = validation

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Run the rounds (see the class docstring for ``info``)."""
        passes = _PassBook(self.counted_rounds)
        res = self._run(ctx, passes)
        res.info.update(passes.info())
        return res

    def _run(self, ctx: UnlearnContext, passes: _PassBook) -> MethodResult:
        if getattr(ctx, "validation", None) is None and self.validation is not None:
            ctx.validation = self.validation
        sample = next(ctx.forget)  # peeked to find the family; the rounds still start with it
        forget = itertools.chain([sample], ctx.forget)
        fam = family(ctx, sample)
        c = self.config.resolved(fam)
        if c != self.config:
            log.info("ofmu: %s family defaults: objective %s, inner_steps %s, penalty %s", fam, c.objective,
                     c.inner_steps, c.penalty)
        model = ctx.model
        loop = StepLoop(ctx, self.name)
        model.train()
        ptype = c.solver_penalty_type
        T = c.effective_inner_steps

        def retain_nll(m: torch.nn.Module, batch: Any) -> torch.Tensor:
            if c.retain_loss == "kl":
                return ctx.adapter.kl_to_reference(m, ctx.reference, batch)
            return ctx.adapter.per_example_nll(m, batch).mean()

        def draw_round() -> tuple[tuple[ModuleBatch, ...], ModuleBatch]:
            inner = tuple(ModuleBatch(next(forget), next(ctx.retain)) for _ in range(T))
            return inner, ModuleBatch(next(forget), next(ctx.retain))

        first = draw_round()
        with passes.segment("setup"):  # the objective's set-up and the penalty unit's gradient
            objective = make_objective(c.objective, ctx, first[1].forget, c.objective_options())
            mp = module_problem(
                model, objective, None, None, retain_loss=retain_nll, params=c.params, accumulation=c.accumulation,
                autodiff=c.autodiff, default_batch=first[1], name="ofmu-unlearning",
                fd_scheme=c.fd_scheme, first_order=c.first_order, cosine_fd_step=c.cosine_fd_step,
            )
            problem = mp.problem
            sp = problem.space
            unit = 1.0
            if c.penalty_scale == "initial" and ptype != "none":
                phi = c.solver().inner_objective(problem)
                g0 = phi.grad(None, mp.y0, batch=first[1])[1]
                n0 = float(sp.to_float(sp.norm(g0)))
                # the weighted sum's term is linear in ∇Φ̃, the stationarity penalty quadratic
                unit = 1.0 / max(n0 if ptype == "weighted_sum" else n0 * n0, 1e-12)
                log.info("ofmu: ‖∇Φ̃(θ0)‖ = %.4g on the first batch; penalty unit %.4g", n0, unit)
            solver = c.solver(unit)
            phi = solver.inner_objective(problem)
            # the inner loop runs here (state kept across rounds) when the round is inner steps + a step from there
            own_inner = T > 0 and (ptype == "none" or (c.base == "inner" and ptype == "stationarity"))
            round_solver = solver.replace(base="outer", inner_steps=0) if own_inner else solver
            inner_rule = get_step_rule(c.inner_rule, b1=solver.adam_b1, b2=solver.adam_b2, eps=solver.adam_eps)
            outer_rule = get_step_rule(c.optimizer, b1=solver.adam_b1, b2=solver.adam_b2, eps=solver.adam_eps)
            state = round_solver.init_state(problem, None, mp.y0)

        def restore(saved: S.PenaltyState) -> None:  # resume from a snapshot (see methods/base.py)
            nonlocal state
            state = saved
            mp.write_back(state.y)

        loop.attach(extra=(lambda: state, restore))
        for step in range(loop.start(model), c.steps):
            inner, outer = first if step == 0 else draw_round()
            with passes.segment("diagnostics"):
                loop.maybe_diagnose(step, outer.forget, outer.retain)
            with passes.round():
                new = self._round(problem, state, phi, round_solver, inner_rule, outer_rule, inner, outer, own_inner)
            rho = state.penalty
            if new.terminal == "numerical_error":
                loop.record(step, math.nan)
                break
            state = new
            mp.write_back(state.y)
            vn = state.residuals.inner
            if ptype == "weighted_sum":
                pen = rho * float(sp.to_float(phi.value(None, state.y, batch=outer)))
            else:
                pen = 0.0 if ptype == "none" else rho * vn * vn
            value = float(sp.to_float(problem.outer.value(None, state.y, batch=outer))) + pen
            if not loop.record(step, value, pen):
                break
            loop.after_step(step, model)
        return loop.finish(
            model, penalty=state.penalty / unit, penalty_unit=unit, trainable=len(mp.names),
            solver=solver.options(), objective=resolve_objective(c.objective, ctx, sample), family=fam,
            inner_steps=c.T, rho0=c.rho0,
        )

    def _round(self, problem: Any, state: S.PenaltyState, phi: Any, round_solver: S.PenaltySolver, inner_rule: Any,
               outer_rule: Any, inner: tuple[ModuleBatch, ...], outer: ModuleBatch, own_inner: bool) -> S.PenaltyState:
        """One round: the inner ascent steps (here, with the kept rule state, when ``own_inner``), then the outer
        step (the solver's, or the no-penalty ablation's retain step)."""
        c = self.config
        sp = problem.space
        if own_inner:
            rstate = state.inner_rule if c.inner_state == "keep" else inner_rule.init(sp, (None, state.y))
            z = state.y
            for b in inner:
                _, gz = phi.grad(None, z, batch=b)
                (_, z), rstate = inner_rule.apply(sp, (None, z), (None, gz), c.inner_lr, rstate)
            state = state._replace(y=z, z=z, inner_rule=rstate)
        if c.solver_penalty_type == "none":
            return self._retain_step(problem, state, outer, outer_rule)
        new: S.PenaltyState = round_solver.update(problem, state, batch=S.RoundBatches(inner=inner, outer=outer))
        return new

    def _retain_step(self, problem: Any, state: S.PenaltyState, outer: ModuleBatch, rule: Any) -> S.PenaltyState:
        """The no-penalty ablation's outer step: one step of the outer rule on L_r from the inner result."""
        sp = problem.space
        c = self.config
        _, g = problem.outer.grad(None, state.y, batch=outer)
        if not sp.all_finite(g):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)
        (_, y), rs = rule.apply(sp, (None, state.y), (None, g), c.lr, state.outer_rule)
        if not sp.all_finite(y):
            return state._replace(terminal="numerical_error", nit=state.nit + 1)
        gn = float(sp.to_float(sp.norm(g)))
        return state._replace(y=y, z=y, outer_rule=rs, nit=state.nit + 1,
                              residuals=S.Residuals(gn, math.nan, math.nan))

"""OFMU as an unlearning method: the generic penalty solver (:mod:`ofmu_opt.core.solver`) on the torch backend.

The model's trainable parameters θ (those with ``requires_grad``, or a name pattern) are the inner
variable; the forget loss L_f and the retain loss L_r are the mean per-example NLL of the current forget
and retain mini-batches through the task adapter (``adapter.per_example_nll(model, batch).mean()``),
evaluated at a parameter tuple with ``torch.func.functional_call``. One method step is one OFMU round
(OFMU_SPEC.md §2): ``inner_steps`` ascent steps on Φ = L_f − β·sim(∇L_f, ∇L_r) (each on its own pair of
batches), then one outer step on F = L_r + ρ‖∇Φ‖² (another pair), then the penalty schedule.

Every option of OFMU_SPEC.md is a config field (:class:`OfmuConfig`); ``lr`` is the outer step size
(``outer_lr`` overrides it) and ``optimizer`` the outer step rule (``outer_rule`` overrides it).
Diagnostics (cos, gradient norms) come from :class:`~ofmu_opt.unlearning.methods.base.StepLoop`; the
recorded ``loss`` is F on the round's outer batch (L_r at the new parameters plus the penalty term) and
``penalty`` is ρ‖∇Φ‖² at the outer step's evaluation point.

Example:
    >>> OfmuConfig().similarity, OfmuConfig(beta=0.0).beta
    ('signed', 0.0)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..._config import check_choice, check_range
from ...backends.torch_module import ModuleBatch, module_problem
from ...core import solver as S
from ...core.similarity import SIMILARITY_KINDS
from ...errors import ConfigError
from .base import MethodConfig, MethodResult, StepLoop, UnlearnContext

__all__ = ["OfmuConfig", "OfmuMethod"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfmuConfig(MethodConfig):
    """OFMU's options (OFMU_SPEC.md §1–2).

    Attributes:
        lr: outer step size (divided by ρ when ``scale_step_by_penalty``).
        steps: number of rounds K.
        optimizer: outer step rule, ``adam`` or ``sgd`` (plain SGD here, the paper's analysis).
        similarity: ``signed`` (the paper's reading) | ``abs`` | ``squared`` | ``none``.
        beta: weight β of the similarity term.
        sim_eps: ε of the cosine's denominator.
        hvp: ``exact`` (third order through the cosine) | ``finite_difference`` | ``forget_hessian``.
        base: ``inner`` (the paper: the outer step starts from the inner result) | ``outer`` |
            ``extragradient``.
        penalty_type: ``stationarity`` (OFMU) | ``value_gap`` (V-PBGD, no Hessian).
        inner_steps: T, inner ascent steps per round.
        inner_lr: inner step size.
        inner_rule: ``sgd`` | ``adam``.
        outer_lr: overrides ``lr`` when set.
        outer_rule: overrides ``optimizer`` when set (``sgd`` | ``adam``).
        penalty: ρ0.
        schedule: ``geometric`` | ``linear`` | ``constant``.
        growth: γ of the geometric schedule.
        penalty_max: cap on ρ (the final ρ of ``linear``).
        ramp_steps: rounds of the linear ramp.
        scale_step_by_penalty: divide the outer step by ρ.
        autodiff: ``double_backward`` (works with in-place buffer updates, e.g. batch norm) or
            ``forward_over_reverse``.
        accumulation: micro-batches per oracle call (gradient accumulation; batches must divide evenly).
        params: trainable parameters: ``requires_grad``, ``all`` or ``re:<pattern>``.
    """

    lr: float = 1e-3
    steps: int = 50
    optimizer: str = "adam"
    similarity: str = "signed"
    beta: float = 0.1
    sim_eps: float = 1e-8
    hvp: str = "exact"
    base: str = "inner"
    penalty_type: str = "stationarity"
    inner_steps: int = 5
    inner_lr: float = 1e-3
    inner_rule: str = "sgd"
    outer_lr: float | None = None
    outer_rule: str | None = None
    penalty: float = 1.0
    schedule: str = "geometric"
    growth: float = 1.05
    penalty_max: float = 100.0
    ramp_steps: int = 100
    scale_step_by_penalty: bool = True
    autodiff: str = "double_backward"
    accumulation: int = 1
    params: str = "requires_grad"

    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = {
        "lr": ("log", 1e-4, 1e-2),
        "inner_lr": ("log", 1e-4, 1e-2),
        "beta": ("log", 0.01, 1.0),
        "penalty": ("log", 0.1, 10.0),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("similarity", self.similarity, SIMILARITY_KINDS)
        check_range("beta", self.beta, low=0.0)
        check_range("sim_eps", self.sim_eps, low=0.0)
        check_choice("hvp", self.hvp, S.HVP_MODES)
        check_choice("base", self.base, ("inner", "outer", "extragradient"))
        check_choice("penalty_type", self.penalty_type, ("stationarity", "value_gap"))
        for name in ("inner_steps", "ramp_steps", "accumulation"):
            v = getattr(self, name)
            low = 0 if name == "inner_steps" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{name}: expected an integer >= {low}, received {v!r}")
        check_range("inner_lr", self.inner_lr, low=0.0, low_open=True)
        check_choice("inner_rule", self.inner_rule, ("sgd", "adam"))
        if self.outer_lr is not None:
            check_range("outer_lr", self.outer_lr, low=0.0, low_open=True)
        if self.outer_rule is not None:
            check_choice("outer_rule", self.outer_rule, ("sgd", "adam"))
        check_range("penalty", self.penalty, low=0.0, low_open=True)
        check_choice("schedule", self.schedule, ("geometric", "linear", "constant"))
        check_range("growth", self.growth, low=1.0)
        check_range("penalty_max", self.penalty_max, low=self.penalty)
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

    def solver(self) -> S.PenaltySolver:
        """The configured :class:`~ofmu_opt.core.solver.PenaltySolver` (the ``ofmu`` preset plus these options)."""
        return S.ofmu(
            penalty_type=self.penalty_type, similarity=self.similarity, beta=self.beta, sim_eps=self.sim_eps,
            hvp=self.hvp, base=self.base,
            inner_steps=max(self.inner_steps, 1 if self.penalty_type == "value_gap" else 0),
            inner_lr=self.inner_lr, inner_rule=self.inner_rule,
            outer_lr=self.outer_lr if self.outer_lr is not None else self.lr,
            outer_rule=self.outer_rule if self.outer_rule is not None else self.optimizer,
            penalty=self.penalty, schedule=self.schedule, penalty_growth=self.growth, penalty_max=self.penalty_max,
            ramp_steps=self.ramp_steps, scale_step_by_penalty=self.scale_step_by_penalty, maxiter=self.steps,
        )


class OfmuMethod:
    """OFMU: penalty-based bi-level unlearning (forget by maximizing Φ, retain by the stationarity penalty)."""

    name: ClassVar[str] = "ofmu"

    def __init__(self, config: OfmuConfig | None = None) -> None:
        self.config = config or OfmuConfig()

    def run(self, ctx: UnlearnContext) -> MethodResult:
        c = self.config
        solver = c.solver()
        model = ctx.model
        loop = StepLoop(ctx, self.name)
        model.train()

        def nll(m: torch.nn.Module, batch: Any) -> torch.Tensor:
            return ctx.adapter.per_example_nll(m, batch).mean()

        def draw_round() -> tuple[tuple[ModuleBatch, ...], ModuleBatch]:
            inner = tuple(ModuleBatch(next(ctx.forget), next(ctx.retain)) for _ in range(solver.inner_steps))
            return inner, ModuleBatch(next(ctx.forget), next(ctx.retain))

        first = draw_round()
        mp = module_problem(
            model, nll, None, None, params=c.params, accumulation=c.accumulation, autodiff=c.autodiff,
            default_batch=first[1], name="ofmu-unlearning",
        )
        problem = mp.problem
        state = solver.init_state(problem, None, mp.y0)

        def restore(saved: S.PenaltyState) -> None:  # resume from a snapshot (see methods/base.py)
            nonlocal state
            state = saved
            mp.write_back(state.y)

        loop.attach(extra=(lambda: state, restore))
        for step in range(loop.start(model), c.steps):
            inner, outer = first if step == 0 else draw_round()
            loop.maybe_diagnose(step, outer.forget, outer.retain)
            rho = state.penalty
            new = solver.update(problem, state, batch=S.RoundBatches(inner=inner, outer=outer))
            if new.terminal == "numerical_error":
                loop.record(step, math.nan)
                break
            state = new
            mp.write_back(state.y)
            vn = state.residuals.inner
            pen = rho * vn * vn
            value = float(problem.space.to_float(problem.outer.value(None, state.y, batch=outer))) + pen
            if not loop.record(step, value, pen):
                break
            loop.after_step(step, model)
        return loop.finish(model, penalty=state.penalty, trainable=len(mp.names), solver=solver.options())

"""The contract shared by every unlearning method, for classifiers and causal language models alike.

A method never looks inside a batch: it talks to the task through a :class:`TaskAdapter`, so the same
method code unlearns an image classifier (``models/vision.py: ClassifierAdapter``) and a causal LM (the
LM adapter of the language-model benchmark).

**Task adapter** (:class:`TaskAdapter`), all tensors on the model's device:

============================================  =========================================================
``per_example_nll(model, batch) -> [B]``      classifier: cross-entropy; LM: mean token NLL over the
                                              answer tokens (EOS included)
``per_example_logprob(model, batch) -> [B]``  classifier: log p(label); LM: SUM of answer-token log-probs
``target_length(batch) -> [B]``               classifier: ones; LM: number of answer tokens
``relabel(batch, kind, generator) -> batch``  ``"random"``: random wrong labels (classifier);
                                              ``"idk"``: the "I don't know" answer (LM); raises
                                              :class:`~ofmu_opt.errors.ConfigError` when unsupported
``hidden_states(model, batch, layer)``        activations after ``layer`` (``[B, ..., d]``), for RMU
``kl_to_reference(model, ref, batch)``        scalar mean KL(p_ref || p_model) over target positions
============================================  =========================================================

An adapter also carries ``task`` (``"classifier"`` or ``"lm"``), used by the registry to list the
methods that apply.

**Method**: a class with a class attribute ``name``, constructed as ``Method(config)`` from a frozen
dataclass config (subclass of :class:`MethodConfig`: fields ``lr``, ``steps``, ``optimizer``,
``weight_decay``, ``grad_clip`` plus its own, range-checked in ``__post_init__``; an optional class
variable ``SEARCH_SPACE`` maps field names to ``("log" | "uniform" | "int", low, high)`` or to a
categorical ``("choice", v1, v2, ...)`` for the benchmark's equal-budget hyper-parameter search), and one
method ``run(ctx) -> MethodResult``.
The baselines derive from :class:`BaseMethod` (``name``, ``config_cls``, the default config), most of
them from :class:`LossMethod` (they only say what the loss terms of a step are) or
:class:`ForgetRetainMethod` (only the forget term: the objective is γ·forget + α·L_r, with the weights
and the retain loss of :class:`ForgetRetainConfig`).
``run`` updates ``ctx.model`` in place (Retrain returns a new model) and returns a
:class:`MethodResult`; it must not raise on divergence but stop with ``status="non_finite"``.

**Context** (:class:`UnlearnContext`): the model to unlearn (training mode), a frozen copy of the
original (``reference``, eval mode, no grad), the adapter, infinite seeded iterators of forget and
retain mini-batches, the run seed, the device, an optional ``diagnostics`` callback receiving one
:class:`StepRecord` every ``diagnostics_every`` steps, an optional ``checkpoint(step, model)`` hook
called every ``checkpoint_every`` steps, an optional ``progress(n)`` tick and, for Retrain, a
``fresh_model()`` factory, and an optional ``validation`` iterator of held-out batches.

**Mid-run snapshots and resume**: when ``snapshot`` is set, a loop that can be resumed exactly (one that
registered its optimizer or state with :meth:`StepLoop.attach`: every loss-based and gradient-surgery
method, and OFMU with its solver state)
calls ``snapshot(step, state)`` every ``checkpoint_every`` steps, with ``state`` a tree of tensors and
plain values: the model's state dict, the optimizer's state, the positions of the forget/retain streams
(``state_dict()``), the states of the generators handed out by :meth:`UnlearnContext.generator`, the
history and the elapsed time. Given that tree back as ``resume``, the loop restores everything and
continues at the next step, so the run ends exactly as an uninterrupted one (same seed, same machine).

**History**: ``MethodResult.history`` holds one :class:`StepRecord` per completed step (its ``loss``
and ``penalty``); the gradient fields are set on diagnostic steps only (None elsewhere), and the
``diagnostics`` callback receives those records.

**Diagnostics**: ``StepRecord.cos`` is cos(∇L_f, ∇L_r) with L_f, L_r the mean per-example NLL of the
current forget and retain batches (the raw losses, whatever the method optimises), measured at the
iterate before the step, as are ``grad_forget_norm`` and ``grad_retain_norm``; ``loss`` is the method's
own objective and ``penalty`` its extra term if any (OFMU: ρ‖∇Φ‖²; ℓ1-sparse: the ℓ1 term). Methods
use :class:`StepLoop` (in :mod:`~ofmu_opt.unlearning.methods.loop`), which computes diagnostics with
:func:`nll_gradient_diagnostics` and keeps their cost (and the checkpoint hook's) out of the reported
wall-clock time (RTE); it synchronises the device before every clock read.

The types live in :mod:`~ofmu_opt.unlearning.methods.contract`, the loops in
:mod:`~ofmu_opt.unlearning.methods.loop`, the gradient helpers in :mod:`~ofmu_opt.unlearning.methods.grads`;
this module re-exports them.

Examples:
    >>> cfg = MethodConfig(lr=0.01, steps=5)
    >>> (cfg.optimizer, cfg.steps)
    ('adam', 5)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar, cast

from torch import Tensor

from .contract import (
    ForgetRetainConfig,
    LossTerms,
    MethodConfig,
    MethodResult,
    ObjectiveConfig,
    StepRecord,
    TaskAdapter,
    UnlearnContext,
    UnlearningMethod,
    WeightedConfig,
    search_space,
)
from .grads import flat_cos, flat_dot, flat_norm, make_optimizer, nll_gradient_diagnostics, trainable_params
from .loop import StepLoop, run_gradient_method, run_loss_method

__all__ = [
    "BaseMethod",
    "ForgetRetainConfig",
    "ForgetRetainMethod",
    "LossMethod",
    "LossTerms",
    "MethodConfig",
    "MethodResult",
    "ObjectiveConfig",
    "StepLoop",
    "StepRecord",
    "TaskAdapter",
    "TermsFn",
    "UnlearnContext",
    "UnlearningMethod",
    "WeightedConfig",
    "flat_cos",
    "flat_dot",
    "flat_norm",
    "make_optimizer",
    "nll_gradient_diagnostics",
    "retain_term",
    "run_gradient_method",
    "run_loss_method",
    "search_space",
    "trainable_params",
]

C = TypeVar("C", bound=MethodConfig)
FR = TypeVar("FR", bound=ForgetRetainConfig)

TermsFn = Callable[[Any, Any, int], LossTerms]
"""``terms(forget_batch, retain_batch, step) -> LossTerms`` of one step."""


def retain_term(ctx: UnlearnContext, batch: Any, kind: str) -> Tensor:
    """L_r on one retain batch: mean NLL, or mean KL(p_ref || p_model) to the reference model."""
    if kind == "kl":
        return ctx.adapter.kl_to_reference(ctx.model, ctx.reference, batch)
    return ctx.adapter.per_example_nll(ctx.model, batch).mean()


class BaseMethod(Generic[C]):
    """A method's name and config; ``Method()`` uses the defaults of ``config_cls``.

    A subclass names itself and its config class in its header and implements :meth:`run`::

        class GAMethod(LossMethod[GAConfig], name="ga", config=GAConfig): ...
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig

    def __init_subclass__(cls, *, name: str | None = None, config: type[MethodConfig] | None = None) -> None:
        super().__init_subclass__()
        if name is not None:
            cls.name = name
        if config is not None:
            cls.config_cls = config

    def __init__(self, config: C | None = None) -> None:
        self.config: C = config if config is not None else cast(C, type(self).config_cls())

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Unlearn ``ctx.forget`` from ``ctx.model`` (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__}.run")


class LossMethod(BaseMethod[C]):
    """A method that descends a sum of loss terms with :func:`run_loss_method`; subclasses give :meth:`terms`."""

    def terms(self, ctx: UnlearnContext) -> TermsFn:
        """The per-step loss terms (called once, at the start of :meth:`run`)."""
        raise NotImplementedError(f"{type(self).__name__}.terms")

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Run ``config.steps`` updates on ``ctx.model`` (see the method's module docstring for the loss)."""
        return run_loss_method(ctx, self.config, self.name, self.terms(ctx))


class ForgetRetainMethod(LossMethod[FR]):
    """γ·(forget term) + α·L_r: subclasses give only the (unweighted) forget term of a batch.

    The forget term is computed before the retain term in every step (the order of the forward passes
    is part of a run's reproducibility when the model has dropout).
    """

    def forget_term(self, ctx: UnlearnContext) -> Callable[[Any], Tensor]:
        """``forget(batch) -> scalar`` (called once, at the start of :meth:`run`)."""
        raise NotImplementedError(f"{type(self).__name__}.forget_term")

    def terms(self, ctx: UnlearnContext) -> TermsFn:
        """γ·forget(forget batch) + α·retain_term(retain batch)."""
        c = self.config
        forget = self.forget_term(ctx)

        def terms(fb: Any, rb: Any, step: int) -> LossTerms:
            f = forget(fb)
            return LossTerms(forget=c.gamma * f, retain=c.alpha * retain_term(ctx, rb, c.retain_loss))

        return terms

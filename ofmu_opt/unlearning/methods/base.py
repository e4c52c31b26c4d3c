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
variable ``SEARCH_SPACE`` maps field names to ``("log" | "uniform" | "int", low, high)`` for the
benchmark's equal-budget hyper-parameter search), and one method ``run(ctx) -> MethodResult``.
``run`` updates ``ctx.model`` in place (Retrain returns a new model) and returns a
:class:`MethodResult`; it must not raise on divergence but stop with ``status="non_finite"``.

**Context** (:class:`UnlearnContext`): the model to unlearn (training mode), a frozen copy of the
original (``reference``, eval mode, no grad), the adapter, infinite seeded iterators of forget and
retain mini-batches, the run seed, the device, an optional ``diagnostics`` callback receiving one
:class:`StepRecord` every ``diagnostics_every`` steps, an optional ``checkpoint(step, model)`` hook
called every ``checkpoint_every`` steps, an optional ``progress(n)`` tick and, for Retrain, a
``fresh_model()`` factory.

**Mid-run snapshots and resume**: when ``snapshot`` is set, a loop that can be resumed exactly (one that
registered its optimizer or state with :meth:`StepLoop.attach`: every loss-based and gradient-surgery
method, and OFMU with its solver state)
calls ``snapshot(step, state)`` every ``checkpoint_every`` steps, with ``state`` a tree of tensors and
plain values: the model's state dict, the optimizer's state, the positions of the forget/retain streams
(``state_dict()``), the states of the generators handed out by :meth:`UnlearnContext.generator`, the
history and the elapsed time. Given that tree back as ``resume``, the loop restores everything and
continues at the next step, so the run ends exactly as an uninterrupted one (same seed, same machine).

**Diagnostics**: ``StepRecord.cos`` is cos(∇L_f, ∇L_r) with L_f, L_r the mean per-example NLL of the
current forget and retain batches (the raw losses, whatever the method optimises), measured at the
iterate before the step, as are ``grad_forget_norm`` and ``grad_retain_norm``; ``loss`` is the method's
own objective and ``penalty`` its extra term if any (OFMU: ρ‖∇Φ‖²; ℓ1-sparse: the ℓ1 term). Methods
use :class:`StepLoop`, which computes diagnostics with :func:`nll_gradient_diagnostics` and keeps their
cost (and the checkpoint hook's) out of the reported wall-clock time (RTE).

Example:
    >>> cfg = MethodConfig(lr=0.01, steps=5)
    >>> (cfg.optimizer, cfg.steps)
    ('adam', 5)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..._config import check_choice, check_range
from ...errors import CheckpointError, ConfigError

__all__ = [
    "LossTerms",
    "MethodConfig",
    "MethodResult",
    "StepLoop",
    "StepRecord",
    "TaskAdapter",
    "UnlearnContext",
    "UnlearningMethod",
    "flat_cos",
    "flat_dot",
    "flat_norm",
    "make_optimizer",
    "nll_gradient_diagnostics",
    "run_gradient_method",
    "run_loss_method",
    "trainable_params",
]

log = logging.getLogger(__name__)


@runtime_checkable
class TaskAdapter(Protocol):
    """How a method reads losses, log-probabilities and activations from a model and a batch."""

    task: str

    def per_example_nll(self, model: nn.Module, batch: Any) -> Tensor:
        """``[B]`` losses: cross-entropy (classifier) or mean answer-token NLL (LM)."""
        ...

    def per_example_logprob(self, model: nn.Module, batch: Any) -> Tensor:
        """``[B]`` log-probabilities: log p(label) (classifier) or summed answer-token log-probs (LM)."""
        ...

    def target_length(self, batch: Any) -> Tensor:
        """``[B]`` target lengths: ones (classifier) or the number of answer tokens (LM)."""
        ...

    def relabel(self, batch: Any, kind: str, generator: torch.Generator) -> Any:
        """The batch with new targets: ``"random"`` wrong labels or the ``"idk"`` answer; ConfigError if unsupported."""
        ...

    def hidden_states(self, model: nn.Module, batch: Any, layer: int) -> Tensor:
        """Activations after ``layer``, ``[B, ..., d]`` (for RMU)."""
        ...

    def kl_to_reference(self, model: nn.Module, ref_model: nn.Module, batch: Any) -> Tensor:
        """Scalar mean KL(p_ref || p_model) over the target positions."""
        ...


@dataclass(frozen=True)
class StepRecord:
    """One row of per-step diagnostics (see the module docstring for the definitions)."""

    step: int
    loss: float
    cos: float | None = None
    grad_forget_norm: float | None = None
    grad_retain_norm: float | None = None
    penalty: float | None = None


@dataclass
class UnlearnContext:
    """Everything a method needs to run; built by the experiment runner of each benchmark."""

    model: nn.Module
    reference: nn.Module
    adapter: TaskAdapter
    forget: Iterator[Any]
    retain: Iterator[Any]
    seed: int = 0
    device: torch.device | str = "cpu"
    diagnostics: Callable[[StepRecord], None] | None = None
    diagnostics_every: int = 1
    checkpoint: Callable[[int, nn.Module], None] | None = None
    checkpoint_every: int = 0
    progress: Callable[[int], None] | None = None
    fresh_model: Callable[[], nn.Module] | None = None
    snapshot: Callable[[int, dict[str, Any]], None] | None = None
    resume: dict[str, Any] | None = None
    _generators: list[torch.Generator] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.diagnostics_every < 0 or self.checkpoint_every < 0:
            raise ConfigError(
                "diagnostics_every/checkpoint_every: expected >= 0 (0 = never), received "
                f"{self.diagnostics_every}/{self.checkpoint_every}"
            )

    def generator(self, salt: int = 0) -> torch.Generator:
        """A private CPU generator seeded from the run seed and ``salt`` (never the global RNG)."""
        gen = torch.Generator(device="cpu").manual_seed((int(self.seed) * 1_000_003 + int(salt)) % 2**63)
        self._generators.append(gen)  # their states go into snapshots (in creation order)
        return gen


@dataclass
class MethodResult:
    """What a method returns: the unlearned model, how far it got, and its run time (RTE)."""

    model: nn.Module
    steps: int
    wall_time_s: float
    status: Literal["completed", "non_finite", "stopped"] = "completed"
    history: list[StepRecord] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class UnlearningMethod(Protocol):
    """An unlearning method: ``Method(config).run(ctx) -> MethodResult``."""

    name: ClassVar[str]
    config: Any

    def run(self, ctx: UnlearnContext) -> MethodResult:
        """Unlearn ``ctx.forget`` from ``ctx.model``; never raises on divergence (status ``non_finite``)."""
        ...


@dataclass(frozen=True)
class MethodConfig:
    """Fields every method config has.

    Attributes:
        lr: learning rate (> 0).
        steps: number of update steps (>= 1).
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD), >= 0.
        grad_clip: clip the global gradient norm to this value; 0 disables.
    """

    lr: float = 1e-3
    steps: int = 100
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float = 0.0

    SEARCH_SPACE: ClassVar[dict[str, tuple[str, float, float]]] = {"lr": ("log", 1e-4, 1e-2)}

    def __post_init__(self) -> None:
        check_range("lr", self.lr, low=0.0, low_open=True)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps: expected an integer >= 1, received {self.steps!r}")
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_range("weight_decay", self.weight_decay, low=0.0)
        check_range("grad_clip", self.grad_clip, low=0.0)


def trainable_params(model: nn.Module) -> list[nn.Parameter]:
    """The parameters with ``requires_grad``."""
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(params: Sequence[nn.Parameter], cfg: MethodConfig) -> torch.optim.Optimizer:
    """AdamW or SGD with momentum 0.9, from ``cfg``."""
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def flat_dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """Inner product of two lists of tensors viewed as one vector."""
    return torch.stack([(x * y).sum() for x, y in zip(a, b, strict=True)]).sum()


def flat_norm(a: Sequence[Tensor]) -> Tensor:
    """Euclidean norm of a list of tensors viewed as one vector."""
    return torch.sqrt(torch.stack([(x * x).sum() for x in a]).sum())


def flat_cos(a: Sequence[Tensor], b: Sequence[Tensor], eps: float = 1e-12) -> Tensor:
    """Cosine of the angle between two lists of tensors viewed as vectors."""
    return flat_dot(a, b) / (flat_norm(a) * flat_norm(b) + eps)


def _grads(loss: Tensor, params: Sequence[nn.Parameter]) -> list[Tensor]:
    gs = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params, strict=True)]


def nll_gradient_diagnostics(
    model: nn.Module, adapter: TaskAdapter, forget_batch: Any, retain_batch: Any
) -> tuple[float, float, float]:
    """cos(∇L_f, ∇L_r), ‖∇L_f‖, ‖∇L_r‖ for the mean NLL of the two batches, at the current weights.

    The forward passes run in eval mode (batch-norm statistics are not updated) and leave no gradients.
    """
    params = trainable_params(model)
    was_training = model.training
    model.eval()
    try:
        gf = _grads(adapter.per_example_nll(model, forget_batch).mean(), params)
        gr = _grads(adapter.per_example_nll(model, retain_batch).mean(), params)
    finally:
        model.train(was_training)
    with torch.no_grad():
        nf, nr = flat_norm(gf), flat_norm(gr)
        cos = flat_dot(gf, gr) / (nf * nr + 1e-12)
    return float(cos), float(nf), float(nr)


class StepLoop:
    """Book-keeping shared by the methods' loops: timing (RTE), diagnostics, checkpoints, progress.

    Usage inside ``run``::

        loop = StepLoop(ctx, name="ga")
        for step in range(steps):
            fb, rb = next(ctx.forget), next(ctx.retain)
            loop.maybe_diagnose(step, fb, rb)      # before the update, not timed
            ... compute loss, update ...
            if not loop.record(step, loss_value, penalty):   # False when the loss is not finite
                break
            loop.after_step(step)                  # checkpoint hook and progress, not timed
        return loop.finish(model)

    Args:
        ctx: the context.
        name: method name (for log messages).
    """

    def __init__(self, ctx: UnlearnContext, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.history: list[StepRecord] = []
        self.status: Literal["completed", "non_finite", "stopped"] = "completed"
        self.steps_done = 0
        self._excluded = 0.0
        self._pending: tuple[float, float, float] | None = None
        self._t0 = time.perf_counter()
        self._optimizer: torch.optim.Optimizer | None = None
        self._extra: tuple[Callable[[], Any], Callable[[Any], None]] | None = None
        self._elapsed_before = 0.0

    def attach(
        self,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        extra: tuple[Callable[[], Any], Callable[[Any], None]] | None = None,
    ) -> None:
        """Register what else the loop's state holds; makes the loop resumable (snapshots are taken only then).

        Args:
            optimizer: a torch optimizer (its ``state_dict`` joins the snapshot).
            extra: ``(get, set)`` of any further state (tensors, NamedTuples, plain values), e.g. a solver state.
        """
        self._optimizer = optimizer
        self._extra = extra

    def _resumable(self) -> bool:
        return (self._optimizer is not None or self._extra is not None) and all(
            hasattr(s, "state_dict") and hasattr(s, "load_state_dict") for s in (self.ctx.forget, self.ctx.retain)
        )

    def state(self, model: nn.Module) -> dict[str, Any]:
        """The tree a snapshot holds (see the module docstring); needs :meth:`attach` first."""
        if self._optimizer is None and self._extra is None:
            raise ConfigError(f"{self.name}: a snapshot needs the loop's state (StepLoop.attach)")
        opt = None if self._optimizer is None else self._optimizer.state_dict()
        return {
            "step": self.steps_done,
            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": None if opt is None else {
                "state": {str(k): dict(v) for k, v in opt["state"].items()},
                "param_groups": [dict(g) for g in opt["param_groups"]],
            },
            "extra": None if self._extra is None else self._extra[0](),
            "forget": self.ctx.forget.state_dict(),  # type: ignore[attr-defined]
            "retain": self.ctx.retain.state_dict(),  # type: ignore[attr-defined]
            "generators": [g.get_state() for g in self.ctx._generators],
            "history": [dict(vars(h)) for h in self.history],
            "elapsed": self._elapsed(),
        }

    def start(self, model: nn.Module) -> int:
        """The first step to run: 0, or the step after the snapshot in ``ctx.resume`` (restored here)."""
        snap = self.ctx.resume
        if snap is None:
            return 0
        if not self._resumable():
            log.warning("%s: this loop cannot resume exactly; starting from step 0", self.name)
            return 0
        try:
            model.load_state_dict(snap["model"])
            opt = snap["optimizer"]
            if self._optimizer is not None:
                self._optimizer.load_state_dict(
                    {"state": {int(k): v for k, v in opt["state"].items()}, "param_groups": opt["param_groups"]}
                )
            self.ctx.forget.load_state_dict(snap["forget"])  # type: ignore[attr-defined]
            self.ctx.retain.load_state_dict(snap["retain"])  # type: ignore[attr-defined]
            gens = snap["generators"]
            if len(gens) != len(self.ctx._generators):
                raise ValueError(f"{len(gens)} generator states for {len(self.ctx._generators)} generators")
            for g, st in zip(self.ctx._generators, gens, strict=True):
                g.set_state(torch.as_tensor(st, dtype=torch.uint8).cpu())
            if self._extra is not None:
                self._extra[1](snap["extra"])
            self.history = [StepRecord(**h) for h in snap["history"]]
            self.steps_done = int(snap["step"])
            self._elapsed_before = float(snap["elapsed"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{self.name}: the snapshot does not match this run: {exc}") from exc
        log.info("%s: resumed after step %d", self.name, self.steps_done)
        return self.steps_done

    def _elapsed(self) -> float:
        return self._elapsed_before + max(0.0, time.perf_counter() - self._t0 - self._excluded)

    def _sync(self) -> None:
        if str(self.ctx.device).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.synchronize()

    def maybe_diagnose(self, step: int, forget_batch: Any, retain_batch: Any) -> None:
        """Measure the NLL-gradient diagnostics at this step when they are due (time excluded)."""
        every = self.ctx.diagnostics_every
        self._pending = None
        if self.ctx.diagnostics is None or every == 0 or step % every != 0:
            return
        t = time.perf_counter()
        self._pending = nll_gradient_diagnostics(self.ctx.model, self.ctx.adapter, forget_batch, retain_batch)
        self._sync()
        self._excluded += time.perf_counter() - t

    def record(self, step: int, loss: float, penalty: float | None = None) -> bool:
        """Record the step's loss; returns False (and sets status ``non_finite``) for a non-finite loss."""
        if not math.isfinite(loss):
            log.warning("%s: non-finite loss %r at step %d; stopping", self.name, loss, step)
            self.status = "non_finite"
            return False
        self.steps_done = step + 1
        if self._pending is not None:
            cos, nf, nr = self._pending
            rec = StepRecord(step, loss, cos, nf, nr, penalty)
            self.history.append(rec)
            if self.ctx.diagnostics is not None:
                self.ctx.diagnostics(rec)
        return True

    def after_step(self, step: int, model: nn.Module | None = None) -> None:
        """Call the checkpoint hook when due and tick the progress bar (time excluded)."""
        t = time.perf_counter()
        every = self.ctx.checkpoint_every
        due = every > 0 and (step + 1) % every == 0
        if self.ctx.checkpoint is not None and due:
            self.ctx.checkpoint(step + 1, model if model is not None else self.ctx.model)
        if self.ctx.snapshot is not None and due and self._resumable():
            self.ctx.snapshot(step + 1, self.state(model if model is not None else self.ctx.model))
        if self.ctx.progress is not None:
            self.ctx.progress(1)
        self._excluded += time.perf_counter() - t

    def finish(self, model: nn.Module, **info: Any) -> MethodResult:
        """Stop the clock and build the :class:`MethodResult`."""
        self._sync()
        return MethodResult(model, self.steps_done, self._elapsed(), self.status, self.history, dict(info))


@dataclass
class LossTerms:
    """A method's objective split into (already weighted) forget, retain and penalty terms."""

    forget: Tensor | None = None
    retain: Tensor | None = None
    penalty: Tensor | None = None

    def total(self) -> Tensor:
        """The sum of the terms that are set."""
        parts = [t for t in (self.forget, self.retain, self.penalty) if t is not None]
        if not parts:
            raise ConfigError("LossTerms: expected at least one term, received none")
        out = parts[0]
        for t in parts[1:]:
            out = out + t
        return out


def run_loss_method(
    ctx: UnlearnContext,
    cfg: MethodConfig,
    name: str,
    terms: Callable[[Any, Any, int], LossTerms],
    *,
    model: nn.Module | None = None,
    grad_mask: Sequence[Tensor] | None = None,
    loop: StepLoop | None = None,
) -> MethodResult:
    """The loop of every loss-based method: draw batches, descend ``terms(forget, retain, step)``.

    Args:
        ctx: the context.
        cfg: the method config (lr, steps, optimizer, clipping).
        name: the method's name.
        terms: builds the weighted loss terms of one step from a forget and a retain batch.
        model: the model to update (default ``ctx.model``; Retrain passes a fresh one).
        grad_mask: optional 0/1 tensors, one per trainable parameter: only masked entries move.
        loop: an existing :class:`StepLoop` (to include set-up time such as SalUn's mask in RTE).

    Returns:
        The :class:`MethodResult`.
    """
    model = ctx.model if model is None else model
    loop = loop if loop is not None else StepLoop(ctx, name)
    params = trainable_params(model)
    if grad_mask is not None and len(grad_mask) != len(params):
        raise ConfigError(f"grad_mask: expected {len(params)} tensors, received {len(grad_mask)}")
    opt = make_optimizer(params, cfg)
    loop.attach(opt)
    model.train()
    for step in range(loop.start(model), cfg.steps):
        fb, rb = next(ctx.forget), next(ctx.retain)
        loop.maybe_diagnose(step, fb, rb)
        t = terms(fb, rb, step)
        total = t.total()
        value = float(total.detach())
        if not math.isfinite(value):
            loop.record(step, value)
            break
        opt.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[no-untyped-call]
        if grad_mask is not None:
            for p, m in zip(params, grad_mask, strict=True):
                if p.grad is not None:
                    p.grad.mul_(m)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        pen = None if t.penalty is None else float(t.penalty.detach())
        loop.record(step, value, pen)
        loop.after_step(step, model)
    return loop.finish(model)


def run_gradient_method(
    ctx: UnlearnContext,
    cfg: MethodConfig,
    name: str,
    objectives: Callable[[Any, Any], tuple[Tensor, Tensor]],
    combine: Callable[[list[Tensor], list[Tensor]], list[Tensor]],
) -> MethodResult:
    """The loop of gradient-surgery methods (BLUR, NGDiff): combine two gradients, then step.

    Args:
        ctx: the context.
        cfg: the method config.
        name: the method's name.
        objectives: ``(forget_objective, retain_objective)`` scalars of one step's batches.
        combine: ``combine(g_forget, g_retain) -> update direction`` (lists of tensors, one per parameter).

    Returns:
        The :class:`MethodResult`; ``loss`` in the history is forget + retain objective.
    """
    model = ctx.model
    loop = StepLoop(ctx, name)
    params = trainable_params(model)
    opt = make_optimizer(params, cfg)
    loop.attach(opt)
    model.train()
    for step in range(loop.start(model), cfg.steps):
        fb, rb = next(ctx.forget), next(ctx.retain)
        loop.maybe_diagnose(step, fb, rb)
        f_obj, r_obj = objectives(fb, rb)
        value = float((f_obj + r_obj).detach())
        if not math.isfinite(value):
            loop.record(step, value)
            break
        g_f = _grads(f_obj, params)
        g_r = _grads(r_obj, params)
        with torch.no_grad():
            direction = combine(g_f, g_r)
        for p, g in zip(params, direction, strict=True):
            p.grad = g
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        loop.record(step, value)
        loop.after_step(step, model)
    return loop.finish(model)

"""The methods' loop machinery: :class:`StepLoop` and the two loops (gradient helpers: :mod:`.grads`).

:class:`StepLoop` keeps the book of a run: the loss of every step (:class:`StepRecord` rows in
``history``), the NLL-gradient diagnostics every ``ctx.diagnostics_every`` steps (0 = never), the
checkpoint hook, mid-run snapshots and resume, the progress tick and the run time (RTE). Every clock
read is preceded by a device synchronisation (:func:`device_synchronize`: ``torch.cuda.synchronize`` on
CUDA, nothing on CPU), so kernels queued by a training step are counted in the step's time and not in
the excluded time of the diagnostics or the hooks that follow it. The optimiser's construction is
excluded too (:meth:`StepLoop.untimed`): on a process's first run it includes torch's lazy imports.

:func:`run_loss_method` (descend a sum of loss terms) and :func:`run_gradient_method` (step along a
combination of two gradients) share one loop, :func:`optimise`.

Examples:
    >>> device_synchronize("cpu")  # nothing to wait for on the CPU
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ...errors import CheckpointError, ConfigError
from .contract import LossTerms, MethodConfig, MethodResult, StepRecord, UnlearnContext
from .grads import make_optimizer, nll_gradient_diagnostics, param_grads, trainable_params

__all__ = ["StepFn", "StepLoop", "device_synchronize", "optimise", "run_gradient_method", "run_loss_method"]

log = logging.getLogger(__name__)


def device_synchronize(device: torch.device | str) -> None:
    """Wait for the kernels queued on ``device`` (CUDA: ``torch.cuda.synchronize``; MPS likewise; CPU: nothing)."""
    kind = torch.device(device).type
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)
    elif kind == "mps" and torch.backends.mps.is_available():
        torch.mps.synchronize()


class StepLoop:
    """Book-keeping shared by the methods' loops: losses, timing (RTE), diagnostics, checkpoints, progress.

    Usage inside ``run``::

        loop = StepLoop(ctx, name="ga")
        for step in range(loop.start(model), steps):
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
        self._optimizer: torch.optim.Optimizer | None = None
        self._extra: tuple[Callable[[], Any], Callable[[Any], None]] | None = None
        self._elapsed_before = 0.0
        self._t0 = self._clock()

    def _clock(self) -> float:
        """The wall clock, read after the device has finished the work queued so far."""
        device_synchronize(self.ctx.device)
        return time.perf_counter()

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
        """The tree a snapshot holds (see :mod:`~ofmu_opt.unlearning.methods.base`); needs :meth:`attach` first."""
        if self._optimizer is None and self._extra is None:
            raise ConfigError(f"{self.name}: a snapshot needs the loop's state (StepLoop.attach)")
        opt = None if self._optimizer is None else self._optimizer.state_dict()
        return {
            "step": self.steps_done,
            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": None
            if opt is None
            else {
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

    @contextlib.contextmanager
    def untimed(self) -> Iterator[None]:
        """A block whose time is left out of the RTE (diagnostics, hooks, one-time set-up such as the
        optimiser's construction, which can include torch's lazy imports on a process's first run)."""
        t = self._clock()
        try:
            yield
        finally:
            self._excluded += self._clock() - t

    def _elapsed(self) -> float:
        return self._elapsed_before + max(0.0, self._clock() - self._t0 - self._excluded)

    def maybe_diagnose(self, step: int, forget_batch: Any, retain_batch: Any) -> None:
        """Measure the NLL-gradient diagnostics at this step when they are due (time excluded)."""
        every = self.ctx.diagnostics_every
        self._pending = None
        if self.ctx.diagnostics is None or every == 0 or step % every != 0:
            return
        with self.untimed():
            self._pending = nll_gradient_diagnostics(self.ctx.model, self.ctx.adapter, forget_batch, retain_batch)

    def record(self, step: int, loss: float, penalty: float | None = None) -> bool:
        """Record the step's loss (every step; diagnostics when measured at this step).

        Returns False (and sets status ``non_finite``) for a non-finite loss, which is not recorded. The
        ``ctx.diagnostics`` callback receives the records of the diagnostic steps.
        """
        if not math.isfinite(loss):
            log.warning("%s: non-finite loss %r at step %d; stopping", self.name, loss, step)
            self.status = "non_finite"
            return False
        self.steps_done = step + 1
        diag = self._pending
        rec = StepRecord(step, loss, penalty=penalty) if diag is None else StepRecord(step, loss, *diag, penalty)
        self.history.append(rec)
        if diag is not None and self.ctx.diagnostics is not None:
            self.ctx.diagnostics(rec)
        return True

    def after_step(self, step: int, model: nn.Module | None = None) -> None:
        """Call the checkpoint hook when due and tick the progress bar (time excluded)."""
        with self.untimed():
            every = self.ctx.checkpoint_every
            due = every > 0 and (step + 1) % every == 0
            if self.ctx.checkpoint is not None and due:
                self.ctx.checkpoint(step + 1, model if model is not None else self.ctx.model)
            if self.ctx.snapshot is not None and due and self._resumable():
                self.ctx.snapshot(step + 1, self.state(model if model is not None else self.ctx.model))
            if self.ctx.progress is not None:
                self.ctx.progress(1)

    def finish(self, model: nn.Module, **info: Any) -> MethodResult:
        """Stop the clock and build the :class:`MethodResult`."""
        return MethodResult(model, self.steps_done, self._elapsed(), self.status, self.history, dict(info))


StepFn = Callable[[Any, Any, int], tuple[float, float | None, Callable[[], None]]]
"""``step_fn(forget_batch, retain_batch, step) -> (loss value, penalty value, set_gradients)``."""


def optimise(
    ctx: UnlearnContext,
    cfg: MethodConfig,
    name: str,
    model: nn.Module,
    params: Sequence[nn.Parameter],
    step_fn: Callable[[torch.optim.Optimizer], StepFn],
    loop: StepLoop | None = None,
) -> MethodResult:
    """The loop every loss- and gradient-based method runs.

    Each step draws a forget and a retain batch, measures the diagnostics when due, asks ``step_fn`` for
    the loss value and a function that sets the parameters' ``.grad``; a non-finite loss stops the run
    (status ``non_finite``) before any update; otherwise the gradients are set, clipped (``grad_clip``)
    and the optimiser steps.

    Args:
        ctx: the context.
        cfg: the method config (lr, steps, optimizer, clipping).
        name: the method's name.
        model: the model to update.
        params: its trainable parameters (those the optimiser moves).
        step_fn: given the optimiser, returns the per-step function (see :data:`StepFn`).
        loop: an existing :class:`StepLoop` (to include set-up time in RTE).
    """
    loop = loop if loop is not None else StepLoop(ctx, name)
    with loop.untimed():
        opt = make_optimizer(params, cfg)
    loop.attach(opt)
    one_step = step_fn(opt)
    model.train()
    for step in range(loop.start(model), cfg.steps):
        fb, rb = next(ctx.forget), next(ctx.retain)
        loop.maybe_diagnose(step, fb, rb)
        value, penalty, set_grads = one_step(fb, rb, step)
        if not math.isfinite(value):
            loop.record(step, value)
            break
        set_grads()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        loop.record(step, value, penalty)
        loop.after_step(step, model)
    return loop.finish(model)


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
    params = trainable_params(model)
    if grad_mask is not None and len(grad_mask) != len(params):
        raise ConfigError(f"grad_mask: expected {len(params)} tensors, received {len(grad_mask)}")

    def step_fn(opt: torch.optim.Optimizer) -> StepFn:
        def one(fb: Any, rb: Any, step: int) -> tuple[float, float | None, Callable[[], None]]:
            t = terms(fb, rb, step)
            total = t.total()

            def set_grads() -> None:
                opt.zero_grad(set_to_none=True)
                total.backward()  # type: ignore[no-untyped-call]
                if grad_mask is not None:
                    for p, m in zip(params, grad_mask, strict=True):
                        if p.grad is not None:
                            p.grad.mul_(m)

            pen = None if t.penalty is None else float(t.penalty.detach())
            return float(total.detach()), pen, set_grads

        return one

    return optimise(ctx, cfg, name, model, params, step_fn, loop)


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
    params = trainable_params(ctx.model)

    def step_fn(opt: torch.optim.Optimizer) -> StepFn:
        def one(fb: Any, rb: Any, step: int) -> tuple[float, float | None, Callable[[], None]]:
            f_obj, r_obj = objectives(fb, rb)

            def set_grads() -> None:
                g_f, g_r = param_grads(f_obj, params), param_grads(r_obj, params)
                with torch.no_grad():
                    direction = combine(g_f, g_r)
                for p, g in zip(params, direction, strict=True):
                    p.grad = g

            return float((f_obj + r_obj).detach()), None, set_grads

        return one

    return optimise(ctx, cfg, name, ctx.model, params, step_fn)

r"""Forget objectives Φ for OFMU: what the inner problem maximizes on the forget set.

OFMU maximizes :math:`\Phi(\theta) - \beta\,\mathrm{sim}(\nabla\Phi, \nabla L_r)` and penalizes
:math:`\|\nabla(\cdot)\|^2` of that inner objective (OFMU_SPEC.md §1). The paper's Φ is the forget loss
itself (likelihood ascent); it has no maximizer and the trained model is nearly stationary for it, so
the stationarity penalty fights forgetting (docs/forget_objectives.md). The objectives here make Φ's
maximizers forgotten states. Each is a callable ``objective(model, batch) -> scalar`` (mean over the
batch, to be *maximized*) built by :func:`make_objective` from a name and the run's context.

===================  ===========  ==================================================================
name                 task         Φ (mean over the forget batch)
===================  ===========  ==================================================================
``ascent``           any          mean NLL of the true targets (the paper; unbounded, no maximizer)
``other_class``      classifier   Σ_{k≠y} log p_k / (K−1): cross-entropy toward the other classes
``uniform``          classifier   Σ_k log p_k / K: toward the uniform prediction
``calibrated``       classifier   toward "unseen data" behaviour, calibrated on held-out data: a
                                  fraction e (the held-out error) of the examples toward the other
                                  classes, the rest toward confidence c on the label
``idk``              lm           mean token log-prob of the item's "I don't know" answer
``npo``              any          (2/b)·log σ(−b·(log π_θ(y|x) − log π_ref(y|x))): a bounded
                                  likelihood-ratio term (sup 0, approached as π_θ(y|x) → 0)
``idk_npo``          lm           ``idk`` + ``npo``
``representation``   any          −mean ‖h_ℓ(x) − c·u‖²: forget activations toward a fixed random
                                  direction (RMU's forget term; maximizer h_ℓ = c·u)
===================  ===========  ==================================================================

``auto`` picks ``other_class`` for classifiers, ``idk_npo`` for language models whose batches carry QA
items with an "I don't know" answer (TOFU-style) and ``representation`` for corpus forgetting
(WMDP-style batches without items).

Examples:
    >>> sorted(OBJECTIVES)[:3]
    ['ascent', 'calibrated', 'idk']
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError, DataError, OfmuError
from .base import UnlearnContext

__all__ = [
    "OBJECTIVES", "ForgetObjective", "ObjectiveOptions", "applicable_objectives", "family", "make_objective",
    "resolve_objective",
]

log = logging.getLogger(__name__)

OBJECTIVES: dict[str, str] = {
    "ascent": "any",
    "other_class": "classifier",
    "uniform": "classifier",
    "calibrated": "classifier",
    "idk": "lm",
    "npo": "any",
    "idk_npo": "lm",
    "representation": "any",
}
CHOICES = ("auto", *OBJECTIVES)


@dataclass(frozen=True)
class ObjectiveOptions:
    """Options of the forget objectives (the OFMU config's fields of the same names).

    Attributes:
        npo_beta: b of the bounded likelihood-ratio term (``npo``, ``idk_npo``).
        layer: hidden layer of ``representation`` (negative = from the end).
        steering: c of ``representation``.
        target_confidence: ``calibrated``: label probability c of the correctly handled examples
            (``None``: measured on held-out data).
        target_error: ``calibrated``: fraction e of the examples pushed to the other classes (``None``:
            measured on held-out data).
        calibration_batches: held-out batches used to measure c and e.
    """

    npo_beta: float = 0.1
    layer: int = -1
    steering: float = 6.5
    target_confidence: float | None = None
    target_error: float | None = None
    calibration_batches: int = 8


ForgetObjective = Callable[[nn.Module, Any], Tensor]


def _logits(model: nn.Module, batch: Any) -> Tensor:
    x = getattr(batch, "x", None)
    if x is None:
        raise ConfigError("objective: this target objective needs classifier batches (fields x, y)")
    out: Tensor = model(x)
    return out


def _soft_target_value(logits: Tensor, q: Tensor) -> Tensor:
    """mean_i Σ_k q_ik log p_ik: −(cross-entropy toward q), maximized at p = q."""
    return (q * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def _other_class_q(y: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    q = torch.full((y.shape[0], k), 1.0 / (k - 1), dtype=dtype, device=y.device)
    q.scatter_(1, y[:, None], 0.0)
    return q


def _example_hash(ids: Tensor, salt: int) -> Tensor:
    """A deterministic number in [0, 1) per example id (golden-ratio sequence), independent of batching."""
    v = (ids.double() + 1.0) * 0.6180339887498949 + (salt % 9973) * 0.7548776662466927
    return v - torch.floor(v)


class _Cache:
    """Values that depend only on the batch (relabelled IDK batches, reference log-probs), keyed by identity."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.store: dict[int, tuple[Any, Any]] = {}

    def get(self, batch: Any, make: Callable[[], Any]) -> Any:
        key = id(batch)
        hit = self.store.get(key)
        if hit is not None and hit[0] is batch:
            return hit[1]
        val = make()
        if len(self.store) >= self.size:
            self.store.pop(next(iter(self.store)))
        self.store[key] = (batch, val)
        return val


def _has_idk(ctx: UnlearnContext, batch: Any) -> bool:
    """A language-model batch of QA items that all carry a non-empty "I don't know" answer (corpus documents
    carry empty ones: they relabel without error, but to nothing)."""
    if getattr(ctx.adapter, "task", "") != "lm":
        return False
    items = getattr(batch, "items", None)
    if not items or not all(str(getattr(it, "idk_answer", "") or "").strip() for it in items):
        return False
    try:
        ctx.adapter.relabel(batch, "idk", torch.Generator().manual_seed(0))
    except (ConfigError, DataError, AttributeError, TypeError):
        return False
    return True


def family(ctx: UnlearnContext, sample: Any) -> str:
    """The benchmark family of this context (``sample``: one forget batch): ``classifier``, ``qa`` (a language
    model on QA items with an "I don't know" answer, TOFU-style), ``corpus`` (a language model on text,
    WMDP-style) or ``generic`` (another task)."""
    task = getattr(ctx.adapter, "task", "")
    if task == "classifier":
        return "classifier"
    if task == "lm":
        return "qa" if _has_idk(ctx, sample) else "corpus"
    return "generic"


def applicable_objectives(fam: str) -> tuple[str, ...]:
    """The objectives that apply to a benchmark family (``classifier``, ``qa``, ``corpus``, ``generic``): the
    values a hyper-parameter search may draw (what :func:`resolve_objective` accepts in that family).

    Example:
        >>> applicable_objectives("corpus")
        ('ascent', 'npo', 'representation')
    """
    task = {"classifier": "classifier", "qa": "lm", "corpus": "lm"}.get(fam, "")
    out = [n for n, need in OBJECTIVES.items() if need in ("any", task)]
    if fam != "qa":
        out = [n for n in out if n not in ("idk", "idk_npo")]
    return tuple(out)


def resolve_objective(name: str, ctx: UnlearnContext, sample: Any) -> str:
    """The objective ``auto`` stands for in this context (``sample``: one forget batch); checks the task.

    ``auto`` on a classifier is ``calibrated`` when the forget set is a random subset
    (``ctx.forget_scope == "random"``) and held-out batches are there to calibrate on (``ctx.validation``),
    else ``other_class``: forgotten random samples should look like unseen data, not like another class
    (digits random10, validation score: −2.8 against −24.0 at the full size, −2.9 against −13.4 at
    ``--quick``; docs/forget_objectives.md). On language models it is ``idk_npo`` on QA batches with an
    "I don't know" answer, else ``representation``.

    Raises:
        ConfigError: unknown name, or an objective that does not apply to the adapter's task.
    """
    if name not in CHOICES:
        raise ConfigError(f"objective: expected one of {', '.join(CHOICES)}, received {name!r}")
    task = getattr(ctx.adapter, "task", "")
    if name == "auto":
        if task == "classifier":
            random_subset = getattr(ctx, "forget_scope", None) == "random"
            return "calibrated" if random_subset and getattr(ctx, "validation", None) is not None else "other_class"
        return "idk_npo" if _has_idk(ctx, sample) else "representation"
    need = OBJECTIVES[name]
    if need != "any" and need != task:
        raise ConfigError(f"objective: {name!r} applies to {need} tasks, this benchmark's task is {task!r}")
    if name in ("idk", "idk_npo") and not _has_idk(ctx, sample):
        raise ConfigError(f"objective: {name!r} needs QA batches with an 'I don't know' answer; these have none")
    return name


def _calibration(ctx: UnlearnContext, opts: ObjectiveOptions) -> tuple[float, float]:
    """(c, e): the reference model's mean label probability on correctly classified held-out examples and
    its held-out error rate; explicit options win."""
    c, e = opts.target_confidence, opts.target_error
    if c is not None and e is not None:
        return c, e
    val: Iterator[Any] | None = getattr(ctx, "validation", None)
    if val is None:
        raise ConfigError(
            "objective: 'calibrated' needs held-out data (the runner's validation stream) or both options "
            "target_confidence and target_error"
        )
    probs: list[Tensor] = []
    wrong = 0
    total = 0
    with torch.no_grad():
        for _ in range(opts.calibration_batches):
            b = next(val)
            logits = _logits(ctx.reference, b)
            p = F.softmax(logits.float(), dim=-1)
            pred = p.argmax(-1)
            ok = pred == b.y
            probs.append(p.gather(1, b.y[:, None]).squeeze(1)[ok])
            wrong += int((~ok).sum())
            total += int(b.y.shape[0])
    cat = torch.cat(probs) if probs else torch.zeros(0)
    c_m = float(cat.mean()) if cat.numel() else 1.0
    e_m = wrong / max(total, 1)
    log.info("calibrated objective: held-out confidence %.4f, error %.4f (%d examples)", c_m, e_m, total)
    return (c if c is not None else c_m), (e if e is not None else e_m)


def make_objective(name: str, ctx: UnlearnContext, sample: Any, opts: ObjectiveOptions) -> ForgetObjective:
    """Build the forget objective ``name`` (resolved with :func:`resolve_objective`) for this context.

    The returned callable maps ``(model, batch)`` to a scalar to maximize; it is called inside
    ``torch.func.functional_call`` with the current parameters, so it only reads the model through calls.

    Raises:
        ConfigError: unknown or inapplicable objective, or missing calibration data.
    """
    name = resolve_objective(name, ctx, sample)
    adapter = ctx.adapter
    cache = _Cache()

    def ascent(model: nn.Module, batch: Any) -> Tensor:
        return adapter.per_example_nll(model, batch).mean()

    if name == "ascent":
        return ascent

    if name in ("other_class", "uniform", "calibrated"):
        k = int(getattr(adapter, "num_classes", 0))
        if k < 2:
            raise ConfigError(f"objective: {name!r} needs an adapter with num_classes >= 2")
        if name == "calibrated":
            c, e = _calibration(ctx, opts)
            if not (0.0 < c <= 1.0 and 0.0 <= e <= 1.0):
                raise ConfigError(f"objective: calibration expected c in (0, 1], e in [0, 1], measured {c}, {e}")
            salt = int(ctx.seed)

        def target(model: nn.Module, batch: Any) -> Tensor:
            logits = _logits(model, batch)
            y = batch.y
            if name == "uniform":
                q = torch.full_like(logits, 1.0 / k)
            elif name == "other_class":
                q = _other_class_q(y, k, logits.dtype)
            else:
                def make() -> Tensor:
                    other = _other_class_q(y, k, logits.dtype)
                    conf = torch.full_like(other, (1.0 - c) / (k - 1))
                    conf.scatter_(1, y[:, None], c)
                    flip = (_example_hash(batch.ids.to(y.device), salt) < e)[:, None]
                    return torch.where(flip, other, conf)

                q = cache.get(batch, make)
            return _soft_target_value(logits, q)

        return target

    def ref_logprob(batch: Any) -> Tensor:
        def make() -> Tensor:
            with torch.no_grad():
                return adapter.per_example_logprob(ctx.reference, batch).detach()

        out: Tensor = cache.get(batch, make)
        return out

    b = opts.npo_beta

    def npo(model: nn.Module, batch: Any) -> Tensor:
        ratio = adapter.per_example_logprob(model, batch) - ref_logprob(batch)
        return (2.0 / b) * F.logsigmoid(-b * ratio).mean()

    idk_gen = ctx.generator(salt=59)
    idk_cache = _Cache()

    def idk(model: nn.Module, batch: Any) -> Tensor:
        rel = idk_cache.get(batch, lambda: adapter.relabel(batch, "idk", idk_gen))
        return -adapter.per_example_nll(model, rel).mean()

    if name == "npo":
        return npo
    if name == "idk":
        return idk
    if name == "idk_npo":
        return lambda model, batch: idk(model, batch) + npo(model, batch)
    if name == "representation":
        gen = ctx.generator(salt=61)
        state: dict[str, Tensor] = {}

        def representation(model: nn.Module, batch: Any) -> Tensor:
            h = adapter.hidden_states(model, batch, opts.layer)
            if "u" not in state:
                u = torch.rand(h.shape[-1], generator=gen, dtype=torch.float32)
                state["u"] = (u / u.norm()).to(device=h.device, dtype=h.dtype)
            return -(h - opts.steering * state["u"]).pow(2).sum(-1).mean()

        return representation
    raise OfmuError(f"objective {name!r} has no implementation")  # pragma: no cover - CHOICES is exhaustive


def check_options(opts: ObjectiveOptions) -> None:
    """Range checks of the objective options (ConfigError on bad values)."""
    if not (math.isfinite(opts.npo_beta) and opts.npo_beta > 0):
        raise ConfigError(f"npo_beta: expected a finite number > 0, received {opts.npo_beta}")
    if not (math.isfinite(opts.steering) and opts.steering >= 0):
        raise ConfigError(f"steering: expected a finite number >= 0, received {opts.steering}")
    if opts.target_confidence is not None and not 0.0 < opts.target_confidence <= 1.0:
        raise ConfigError(f"target_confidence: expected a probability in (0, 1], received {opts.target_confidence}")
    if opts.target_error is not None and not 0.0 <= opts.target_error <= 1.0:
        raise ConfigError(f"target_error: expected a fraction in [0, 1], received {opts.target_error}")
    if isinstance(opts.calibration_batches, bool) or opts.calibration_batches < 1:
        raise ConfigError(f"calibration_batches: expected an integer >= 1, received {opts.calibration_batches}")

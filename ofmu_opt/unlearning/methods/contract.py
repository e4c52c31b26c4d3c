"""The types of the method contract: task adapter, context, step record, result, configs, loss terms.

:mod:`ofmu_opt.unlearning.methods.base` documents the contract and re-exports these names; the loops
that use them are in :mod:`ofmu_opt.unlearning.methods.loop`.

Every method config derives from :class:`MethodConfig` (optimiser fields). Methods with a forget weight
γ and a retain weight α derive from :class:`WeightedConfig`; those whose retain term is a loss on the
retain batch (NLL, or KL to the original model) from :class:`ForgetRetainConfig`. A config only adds its
own fields, defaults and :attr:`~MethodConfig.SEARCH_SPACE`; the range checks of the inherited fields run
in the base ``__post_init__``.

Examples:
    >>> ForgetRetainConfig(gamma=0.5).retain_loss
    'nll'
    >>> search_space(lr=(1e-4, 1e-2), keep=("uniform", 0.1, 0.9))
    {'lr': ('log', 0.0001, 0.01), 'keep': ('uniform', 0.1, 0.9)}
    >>> search_space(steps=("choice", 0, 1, 5))
    {'steps': ('choice', 0, 1, 5)}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..._config import check_choice, check_range
from ...errors import ConfigError

if TYPE_CHECKING:
    from .objectives import ObjectiveOptions

__all__ = [
    "RETAIN_LOSSES",
    "ForgetRetainConfig",
    "LossTerms",
    "MethodConfig",
    "MethodResult",
    "ObjectiveConfig",
    "StepRecord",
    "TaskAdapter",
    "UnlearnContext",
    "UnlearningMethod",
    "WeightedConfig",
    "search_space",
]

RETAIN_LOSSES = ("nll", "kl")
"""The retain losses of :class:`ForgetRetainConfig`: mean NLL, or mean KL(p_ref || p_model)."""

SearchSpace = dict[str, tuple[Any, ...]]
"""A ``SEARCH_SPACE`` table: ``name -> ("log" | "uniform" | "int", low, high)`` or ``("choice", v1, v2, ...)``."""

SEARCH_KINDS = ("log", "uniform", "int", "choice")


def search_space(**ranges: tuple[Any, ...]) -> SearchSpace:
    """A ``SEARCH_SPACE`` table: ``name=(low, high)`` is log-uniform, ``name=(kind, low, high)`` as given
    (``kind``: ``log``, ``uniform`` or ``int``), ``name=("choice", v1, v2, ...)`` one of the listed values
    (categorical: drawn uniformly)."""
    out: SearchSpace = {}
    for name, r in ranges.items():
        if len(r) == 2 and not isinstance(r[0], str):
            out[name] = ("log", float(r[0]), float(r[1]))
        elif r and r[0] == "choice":
            if len(r) < 2:
                raise ValueError(f"search_space: {name}: a choice needs at least one value")
            out[name] = tuple(r)
        elif len(r) == 3 and r[0] in SEARCH_KINDS:
            out[name] = (str(r[0]), float(r[1]), float(r[2]))
        else:
            raise ValueError(f"search_space: {name}: expected (low, high), (kind, low, high) with kind in "
                             f"{SEARCH_KINDS[:3]} or ('choice', v1, ...), received {r!r}")
    return out


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
    """One step of a run: the loss (every step) and the gradient diagnostics (on diagnostic steps, else None)."""

    step: int
    loss: float
    cos: float | None = None
    grad_forget_norm: float | None = None
    grad_retain_norm: float | None = None
    penalty: float | None = None


@dataclass
class UnlearnContext:
    """Everything a method needs to run; built by the experiment runner of each benchmark.

    ``validation`` is an optional iterator of held-out batches (never forget or retain data), for
    methods and objectives that calibrate on held-out behaviour. ``forget_scope`` says what the forget
    set is when the benchmark knows it: ``"class"`` (whole classes), ``"random"`` (a random subset of the
    training data) or ``None`` (unknown); OFMU's ``auto`` objective reads it on classifiers.
    """

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
    validation: Iterator[Any] | None = None
    forget_scope: str | None = None
    _generators: list[torch.Generator] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.forget_scope not in (None, "class", "random"):
            raise ConfigError(f"forget_scope: expected 'class', 'random' or None, received {self.forget_scope!r}")
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

    SEARCH_SPACE: ClassVar[SearchSpace] = {"lr": ("log", 1e-4, 1e-2)}

    def __post_init__(self) -> None:
        check_range("lr", self.lr, low=0.0, low_open=True)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps: expected an integer >= 1, received {self.steps!r}")
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_range("weight_decay", self.weight_decay, low=0.0)
        check_range("grad_clip", self.grad_clip, low=0.0)


@dataclass(frozen=True)
class WeightedConfig(MethodConfig):
    """A config with a forget weight ``gamma`` (γ >= 0) and a retain weight ``alpha`` (α >= 0)."""

    gamma: float = 1.0
    alpha: float = 1.0
    SEARCH_SPACE: ClassVar[SearchSpace] = search_space(lr=(1e-4, 1e-2), gamma=(0.05, 2.0), alpha=(0.5, 5.0))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("gamma", self.gamma, low=0.0)
        check_range("alpha", self.alpha, low=0.0)


@dataclass(frozen=True)
class ForgetRetainConfig(WeightedConfig):
    """γ·(forget term) + α·L_r with ``retain_loss`` ``"nll"`` (mean NLL) or ``"kl"`` (KL to the original)."""

    retain_loss: str = "nll"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("retain_loss", self.retain_loss, RETAIN_LOSSES)


@dataclass(frozen=True)
class ObjectiveConfig(MethodConfig):
    """A config with a forget objective Φ (the options of :mod:`~ofmu_opt.unlearning.methods.objectives`).

    GA and GradDiff descend −Φ on the forget batch; a subclass may change the default ``objective``.

    Attributes:
        objective: ``"ascent"`` (Φ = mean NLL: plain gradient ascent, the default here) or an objective with
            a real maximizer: ``other_class``, ``uniform``, ``calibrated`` (classifiers), ``idk``, ``idk_npo``
            (QA language models), ``npo``, ``representation``, or ``auto`` (the task's default).
        npo_beta: b of ``npo``/``idk_npo``.
        layer: hidden layer of ``representation``.
        steering: c of ``representation``.
        target_confidence: ``calibrated``: label probability (None: measured on ``ctx.validation``).
        target_error: ``calibrated``: error rate (None: measured on ``ctx.validation``).
    """

    objective: str = "ascent"
    npo_beta: float = 0.1
    layer: int = -1
    steering: float = 6.5
    target_confidence: float | None = None
    target_error: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        from .objectives import CHOICES, check_options

        check_choice("objective", self.objective, CHOICES)
        check_options(self.objective_options())

    def objective_options(self) -> ObjectiveOptions:
        """The objective's options."""
        from .objectives import ObjectiveOptions

        return ObjectiveOptions(
            npo_beta=self.npo_beta,
            layer=self.layer,
            steering=self.steering,
            target_confidence=self.target_confidence,
            target_error=self.target_error,
        )


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

"""The :class:`Benchmark` protocol every unlearning benchmark implements, and the pieces they share.

A benchmark owns its data, its reference models and its metrics; the runner
(:mod:`ofmu_opt.unlearning.runner`) owns everything else: options, output directory, resume, the
hyper-parameter search, seeds, budget accounting, tables and plots. The runner talks to a benchmark
only through the protocol below, in this order::

    exp  = bench.experiment(run, seed)          # typed experiment config (flags, TOML, --option experiment.X)
    prep = bench.prepare(exp, run)              # data, splits, original + retain/Retrain models, their evals
    res, model = bench.run_method(prep, method, seed=s, split="val"|"test", hooks=hooks)
    ev   = bench.evaluate(prep, model, split="val"|"test", rte=res.wall_time_s)   # EVAL-format dict
    bench.score(prep, ev)                       # validation score of a candidate (higher is better)
    bench.reference_rows(prep)                  # the Retrain / target rows of the tables

An evaluation is a dict in open-unlearning's ``*_EVAL.json`` layout: ``{metric: {"agg_value": float |
None, "value_by_index": {...}}}``; the summary (``*_SUMMARY.json``) is ``{metric: agg_value}`` and the
table columns (``columns``, the summary schema) are a subset of its keys plus ``RTE``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ...errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch

    from ..methods.base import MethodResult
    from ..runner import RunConfig

__all__ = [
    "Benchmark",
    "Column",
    "Evaluation",
    "RunHooks",
    "cache_root",
    "count_gradient_evaluations",
    "history_dicts",
    "resolve_device",
    "row_from_eval",
    "summary_of",
    "write_eval",
]

log = logging.getLogger(__name__)

Evaluation = dict[str, dict[str, Any]]
"""``{metric: {"agg_value": float | None, "value_by_index": {...}}}`` (open-unlearning's EVAL layout)."""


@dataclass(frozen=True)
class Column:
    """One column of the results table (the summary schema): metric key, header, number format."""

    key: str
    label: str
    fmt: str = ".3f"


@dataclass
class RunHooks:
    """What the runner hands a benchmark's ``run_method``: progress tick and mid-run snapshots.

    ``snapshot(step, tree)`` is called every ``checkpoint_every`` steps by methods that can resume
    exactly; ``resume`` is a tree saved by it (continue after its step). See
    :mod:`ofmu_opt.unlearning.methods.base`.
    """

    progress: Callable[[int], None] | None = None
    snapshot: Callable[[int, dict[str, Any]], None] | None = None
    checkpoint_every: int = 0
    resume: dict[str, Any] | None = None


class Benchmark(Protocol):
    """An unlearning benchmark: data and splits, reference models, evaluation, validation score, schema.

    Attributes:
        name: registry name (``--benchmark``).
        prefix: artifact prefix (``<PREFIX>_EVAL.json``, ``<PREFIX>_SUMMARY.json``).
        task: ``"classifier"`` or ``"lm"`` (which methods apply).
        methods: the methods of ``--methods all``.
        columns: the results-table columns (metric keys of the evaluation, and ``RTE``).
        headline: the metrics printed after ``ofmu unlearn`` / ``ofmu eval``.
        rank_by: ``(column, descending)`` to order the method rows of the table, or None (run order).
        selection: how :meth:`score` ranks candidates (written into the results).
        shared_references: the reference models do not depend on the seed (prepared once).
        conflict_methods: the methods whose gradient-conflict history is plotted.
        commands: the commands it supports (``"unlearn"``, ``"bench"``, ``"eval"``).
        default_budget: ``(quick, full)`` hyper-parameter candidates per method.
        objective_family: the family of forget objectives that apply (``classifier``, ``qa``, ``corpus``;
            :func:`~ofmu_opt.unlearning.methods.objectives.applicable_objectives`).
    """

    name: str
    prefix: str
    task: str
    methods: tuple[str, ...]
    columns: tuple[Column, ...]
    headline: tuple[str, ...]
    rank_by: tuple[str, bool] | None
    selection: str
    shared_references: bool
    conflict_methods: tuple[str, ...]
    commands: tuple[str, ...]
    default_budget: tuple[int, int]
    objective_family: str

    def search_choices(self) -> dict[str, tuple[Any, ...]]:
        """The values a categorical search key may take on this benchmark (e.g. the applicable objectives)."""
        ...

    def uses(self, command: str) -> frozenset[str]:
        """The :class:`~ofmu_opt.unlearning.runner.RunConfig` options this benchmark reads for ``command``."""
        ...

    def experiment(self, run: RunConfig, seed: int) -> Any:
        """The typed experiment config: ``[experiment]`` of ``--config``, quick defaults, flags, ``experiment.X``."""
        ...

    def method_defaults(self, exp: Any, run: RunConfig) -> dict[str, Any]:
        """Method options the benchmark sets before the user's (e.g. ``steps``, the benchmark ``lr``)."""
        ...

    def cache_dir(self, exp: Any) -> Path | None:
        """Where the reference models are cached (checked before any work), or None."""
        ...

    def read_retain_logs(self, path: str) -> Any:
        """Read and check a ``--retain-logs`` file (before any work)."""
        ...

    def prepare(self, exp: Any, run: RunConfig) -> Any:
        """Data, splits, the original and retain/Retrain models and their evaluations (cached on disk)."""
        ...

    def run_method(
        self, prep: Any, method: Any, *, seed: int, split: str, hooks: RunHooks
    ) -> tuple[MethodResult, Any]:
        """Unlearn the ``split`` (``"test"``: the reported forget set; ``"val"``: the validation one)."""
        ...

    def evaluate(self, prep: Any, model: Any, *, split: str, rte: float | None = None) -> Evaluation:
        """Evaluate ``model`` on ``split``; the test evaluation includes the comparison with the reference."""
        ...

    def score(self, prep: Any, ev: Evaluation) -> float:
        """Validation score of a candidate's ``"val"`` evaluation; higher is better."""
        ...

    def reference_rows(self, prep: Any) -> dict[str, dict[str, float | None]]:
        """Table rows of the reference models (Retrain / target), keyed by label."""
        ...

    def save_model(self, prep: Any, model: Any, out: Path) -> None:
        """Save an unlearned model into the output directory ``out``."""
        ...

    def load_model(self, prep: Any, path: Path) -> Any:
        """Load a model saved by :meth:`save_model` (or a local model directory) for ``ofmu eval``."""
        ...

    def check_model(self, path: Path) -> None:
        """Check a ``--model`` path's files (not its tensors) before any work: a bad model fails in a second,
        not after the reference models were trained. Raises CheckpointError or ConfigError."""
        ...

    def describe(self, exp: Any) -> str:
        """A short name of the experiment (``"digits random10"``)."""
        ...

    def plot(
        self, out: Path, results: Mapping[str, Any], summary: Mapping[str, Mapping[str, tuple[float, float]]]
    ) -> list[Path]:
        """Draw the trade-off figure(s) into ``out``; returns the files written."""
        ...


class BenchmarkBase:
    """Defaults shared by the implementations (each overrides what differs)."""

    name: str = ""
    prefix: str = ""
    task: str = "lm"
    methods: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    headline: tuple[str, ...] = ()
    rank_by: tuple[str, bool] | None = None
    selection: str = ""
    shared_references: bool = True
    conflict_methods: tuple[str, ...] = ("ofmu", "graddiff")
    commands: tuple[str, ...] = ("unlearn", "bench", "eval")
    default_budget: tuple[int, int] = (2, 4)
    objective_family: str = "generic"
    COMMON: ClassVar[frozenset[str]] = frozenset(
        {"command", "benchmark", "config", "options", "seed", "quick", "out", "device", "threads", "quiet"}
    )
    PER_COMMAND: ClassVar[Mapping[str, frozenset[str]]] = {
        "unlearn": frozenset({"method", "resume", "checkpoint_every"}),
        "bench": frozenset({"methods", "seeds", "budget", "resume"}),
        "eval": frozenset({"model"}),
    }
    extra: Mapping[str, frozenset[str]] = {}  # the benchmark's own options per command

    def read_retain_logs(self, path: str) -> Any:
        """Read and check a ``--retain-logs`` file (a benchmark that reads one overrides this)."""
        raise ConfigError(f"--retain-logs: not used by benchmark {self.name!r}")

    def search_choices(self) -> dict[str, tuple[Any, ...]]:
        from ..methods.objectives import applicable_objectives

        return {"objective": applicable_objectives(self.objective_family)}

    def uses(self, command: str) -> frozenset[str]:
        return self.COMMON | self.PER_COMMAND.get(command, frozenset()) | self.extra.get(command, frozenset())

    def describe(self, exp: Any) -> str:
        return self.name

    def check_model(self, path: Path) -> None:
        if self.task == "classifier":
            _check_state_file(path / "model.safetensors")
            return
        from ..models.hf.loading import check_model_path
        from .lm_runs import model_dir_arg

        check_model_path(model_dir_arg(path))  # a GGUF file is converted (and its result checked) at load time


def _check_state_file(path: Path) -> None:
    """A classifier checkpoint: ``model.safetensors`` exists and its header parses (no tensor is read)."""
    from safetensors import safe_open

    if not path.is_file():
        raise ConfigError(f"--model: expected a directory with model.safetensors, received {str(path.parent)!r}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
    except Exception as exc:  # safetensors raises its own error types on damaged files
        raise CheckpointError(f"checkpoint {str(path)!r} is not a valid safetensors file: {exc}") from exc


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available else CPU; ``"cuda"`` without a GPU raises ConfigError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device: expected one of 'cpu', 'cuda', 'auto', received {name!r}")
    return torch.device(name)


def cache_root(configured: str, env: str, default: Path) -> Path:
    """The model cache directory: the configured one, else ``$env``, else ``default``."""
    if configured:
        return Path(configured)
    value = os.environ.get(env, "")
    return Path(value) if value else default


def history_dicts(records: Sequence[Any]) -> list[dict[str, Any]]:
    """Step records (StepRecord dataclasses or plain dicts) as JSON-ready dicts."""
    return [dict(h) if isinstance(h, Mapping) else dataclasses.asdict(h) for h in records]


def summary_of(ev: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """``{metric: agg_value}`` of an evaluation (the SUMMARY content)."""
    return {k: (None if v.get("agg_value") is None else float(v["agg_value"])) for k, v in ev.items()}


def row_from_eval(
    ev: Mapping[str, Mapping[str, Any]], columns: Sequence[Column], rte: float
) -> dict[str, float | None]:
    """One table row: the columns' aggregate values (None when absent or not finite) and ``RTE``."""
    row: dict[str, float | None] = {}
    for c in columns:
        if c.key == "RTE":
            row["RTE"] = rte
            continue
        v = ev.get(c.key, {}).get("agg_value")
        row[c.key] = None if v is None or not math.isfinite(float(v)) else float(v)
    return row


@contextlib.contextmanager
def count_gradient_evaluations(model: Any) -> Iterator[list[int]]:
    """Count the gradient evaluations w.r.t. ``model``'s trainable parameters inside the block.

    A gradient hook on the first trainable parameter fires once per backward pass (``loss.backward()``
    or ``torch.autograd.grad``) that reaches the parameters. The count (``box[0]``) includes the
    gradients of the conflict diagnostics (``diagnostics_every``); a method that trains a new model
    (Retrain) is not seen.
    """
    box = [0]
    params = [p for p in model.parameters() if p.requires_grad]
    handle = None
    if params:

        def hook(grad: Any) -> Any:
            box[0] += 1
            return grad

        handle = params[0].register_hook(hook)
    try:
        yield box
    finally:
        if handle is not None:
            handle.remove()


def write_eval(out: Path, prefix: str, ev: Mapping[str, Mapping[str, Any]]) -> tuple[Path, Path]:
    """Write ``<prefix>_EVAL.json`` (open-unlearning layout) and ``<prefix>_SUMMARY.json`` atomically.

    Raises:
        DataError: an entry lacks ``agg_value`` or ``value_by_index``.
    """
    from ..._io import atomic_write_json, safe_child
    from ...errors import DataError

    for k, v in ev.items():
        if not isinstance(v, Mapping) or "agg_value" not in v or "value_by_index" not in v:
            raise DataError(f"ev[{k!r}]: expected {{'agg_value', 'value_by_index'}}, received {v!r:.80}")
    p1 = atomic_write_json(safe_child(out, f"{prefix}_EVAL.json"), dict(ev))
    p2 = atomic_write_json(safe_child(out, f"{prefix}_SUMMARY.json"), summary_of(ev))
    return p1, p2

"""Vision benchmarks (digits built in, CIFAR-10 local files): the Benchmark protocol for classifiers.

Reference models: the *original* (trained on the full training split) and *Retrain* (trained from
scratch on the retain split), per seed (seed ``s`` trains its own pair). Metrics: UA, RA, TA and
MIA-efficacy (in %), their gaps to Retrain and the average gap. Validation proxies for the search: UA
and RA (forget and retain sets are training data), validation accuracy in place of TA, MIA-efficacy with
the validation split as non-members; the score is minus the average gap to Retrain on the same proxies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._config import config_from_dict, load_toml_file
from ...errors import ConfigError
from .base import BenchmarkBase, Column, Evaluation, RunHooks, resolve_device

if TYPE_CHECKING:
    from ..experiment import VisionData, VisionExperimentConfig
    from ..methods.base import MethodResult
    from ..runner import RunConfig

__all__ = ["CIFAR10", "DIGITS", "VisionBenchmark"]

QUICK_DIGITS: dict[str, Any] = {"hidden": 64, "train_steps": 400, "batch_size": 32, "diagnostics_every": 2}
# CIFAR-10 (no data augmentation): ResNet-18, ~10 epochs; a 5,000-image subsample and a narrow net for --quick
CIFAR_FULL: dict[str, Any] = {"model": "resnet18", "hidden": 64, "train_steps": 4000, "train_batch_size": 128,
                              "batch_size": 64}
CIFAR_QUICK: dict[str, Any] = {"model": "resnet18", "hidden": 16, "train_steps": 500, "data_limit": 5000,
                               "batch_size": 64}
QUICK_STEPS, FULL_STEPS = 60, 150


@dataclass
class VisionPrepared:
    """One seed's data, reference models and Retrain's evaluations (test and validation proxies)."""

    cfg: VisionExperimentConfig
    data: VisionData
    device: Any
    original: Any
    retrain: Any
    retrain_time: float
    rt_test: dict[str, float]
    rt_val: dict[str, float]


def retain_metrics(path: str) -> dict[str, float]:
    """UA, RA, TA and MIA of a Retrain evaluation file (``DIGITS_EVAL.json``/``_SUMMARY.json`` layout)."""
    from ..._io import read_json
    from ..metrics.vision import GAP_METRICS

    raw = read_json(path, "retain logs", error=ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError(f"--retain-logs: expected a JSON object of metrics, received {type(raw).__name__}")
    out: dict[str, float] = {}
    for k in GAP_METRICS:
        v = raw.get(k)
        v = v.get("agg_value") if isinstance(v, dict) else v
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"--retain-logs: expected the metrics {', '.join(GAP_METRICS)} as numbers (or "
                              f"{{'agg_value': number}}), received {k}={v!r}")
        out[k] = float(v)
    return out


class VisionBenchmark(BenchmarkBase):
    """digits / CIFAR-10 (see the module docstring)."""

    task = "classifier"
    objective_family = "classifier"
    columns = (Column("UA", "UA", ".2f"), Column("RA", "RA", ".2f"), Column("TA", "TA", ".2f"),
               Column("MIA", "MIA-efficacy", ".2f"), Column("avg_gap", "avg gap ↓", ".2f"),
               Column("RTE", "RTE (s)", ".3f"))
    headline = ("UA", "RA", "TA", "MIA")
    rank_by = ("avg_gap", False)
    selection = "mean |gap| to Retrain: validation-proxy UA, RA, val accuracy, MIA (val non-members)"
    shared_references = False
    default_budget = (6, 8)

    def __init__(self, name: str) -> None:
        from ..methods.registry import list_methods

        self.name = name
        self.prefix = name.upper()
        self.methods = tuple(m for m in list_methods("classifier") if m != "retrain")
        extra = {"scenario"} | ({"data"} if name == "cifar10" else set())
        self.extra = {"unlearn": frozenset(extra), "bench": frozenset(extra),
                      "eval": frozenset(extra | {"retain_logs"})}

    def read_retain_logs(self, path: str) -> dict[str, float]:
        return retain_metrics(path)

    def _quick(self, run: RunConfig) -> dict[str, Any]:
        if self.name == "cifar10":
            return CIFAR_QUICK if run.quick else CIFAR_FULL
        return QUICK_DIGITS if run.quick else {}

    def experiment(self, run: RunConfig, seed: int) -> VisionExperimentConfig:
        from ..experiment import VisionExperimentConfig
        from ..search import split_options

        data: dict[str, Any] = {}
        if run.command == "eval" and run.model and (Path(run.model) / "experiment.toml").is_file():
            saved = load_toml_file(Path(run.model) / "experiment.toml")
            data.update(saved.get("experiment", saved))  # new layout [experiment], old layout top level
        else:
            data.update(run.toml().get("experiment", {}))
            for k, v in self._quick(run).items():
                data.setdefault(k, v)
        data["benchmark"] = self.name
        if run.scenario:
            data["scenario"] = run.scenario
        if run.data:
            data["data_path"] = str(run.data)
        data["device"] = run.device
        if run.command != "eval" or "seed" not in data:
            data["seed"] = seed
        data.update(split_options(run.option_pairs)[0])
        return config_from_dict(VisionExperimentConfig, data, prefix="experiment.")

    def cache_dir(self, exp: VisionExperimentConfig) -> Path:
        from ..experiment import cache_dir

        return cache_dir(exp)

    def describe(self, exp: VisionExperimentConfig) -> str:
        return f"{exp.benchmark} {exp.scenario}"

    def method_defaults(self, exp: VisionExperimentConfig, run: RunConfig) -> dict[str, Any]:
        if run.command == "bench":
            return {"steps": QUICK_STEPS if run.quick else FULL_STEPS}
        return {"steps": QUICK_STEPS} if run.quick else {}

    def prepare(self, exp: VisionExperimentConfig, run: RunConfig) -> VisionPrepared:
        from ..._progress import progress
        from ..experiment import evaluate, load_data, reference_models

        logs = self.read_retain_logs(run.retain_logs) if run.retain_logs else None  # read and checked before any work
        device = resolve_device(exp.device)
        data = load_data(exp)
        if logs is not None:  # `eval --retain-logs`: no reference models needed
            return VisionPrepared(exp, data, device, None, None, float("nan"), logs, {})
        with progress("reference models", total=2 * exp.train_steps, unit="step") as bar:
            original, retrain, t = reference_models(exp, data, device, lambda desc, total: bar)
        rt_test, _ = evaluate(retrain, data, device)
        rt_test["RTE"] = t
        rt_val = evaluate(retrain, data, device, split="val")[0] if run.command == "bench" else {}
        return VisionPrepared(exp, data, device, original, retrain, t, rt_test, rt_val)

    def run_method(self, prep: VisionPrepared, method: Any, *, seed: int, split: str, hooks: RunHooks
                   ) -> tuple[MethodResult, Any]:
        from ..experiment import run_method
        from ..methods.base import MethodResult

        if getattr(method, "name", "") == "retrain":
            return MethodResult(prep.retrain, 0, prep.retrain_time), prep.retrain
        res = run_method(method, prep.original, prep.data, prep.cfg, prep.device, seed=seed, progress=hooks.progress,
                         snapshot=hooks.snapshot, checkpoint_every=hooks.checkpoint_every if hooks.snapshot else 0,
                         resume=hooks.resume)
        return res, res.model

    def evaluate(self, prep: VisionPrepared, model: Any, *, split: str, rte: float | None = None) -> Evaluation:
        from ..experiment import evaluate
        from ..metrics.vision import GAP_METRICS, gaps

        metrics, per = evaluate(model, prep.data, prep.device, split=split)
        summary: dict[str, float] = dict(metrics)
        if rte is not None:
            summary["RTE"] = rte
        g = gaps(metrics, prep.rt_test if split == "test" else prep.rt_val)
        summary.update({f"gap_{k}": g[k] for k in GAP_METRICS})
        summary["avg_gap"] = g["avg_gap"]
        return {k: {"agg_value": v, "value_by_index": dict(per.get(k, {}))} for k, v in summary.items()}

    def score(self, prep: VisionPrepared, ev: Evaluation) -> float:
        return -float(ev["avg_gap"]["agg_value"])

    def reference_rows(self, prep: VisionPrepared) -> dict[str, dict[str, float | None]]:
        return {"retrain": {**{c.key: prep.rt_test.get(c.key) for c in self.columns}, "avg_gap": 0.0}}

    def save_model(self, prep: VisionPrepared, model: Any, out: Path) -> None:
        from ..experiment import save_state

        save_state(model, out / "model.safetensors", {"benchmark": self.name})

    def load_model(self, prep: VisionPrepared, path: Path) -> Any:
        from ..experiment import load_state
        from ..models.vision import build_model

        if not (path / "model.safetensors").is_file():
            raise ConfigError(f"--model: expected a directory with model.safetensors, received {str(path)!r}")
        splits = prep.data.splits
        model = build_model(prep.cfg.model, splits.input_shape, splits.num_classes, 0, prep.cfg.hidden, prep.device)
        return load_state(model, path / "model.safetensors")

    def plot(self, out: Path, results: Mapping[str, Any],
             summary: Mapping[str, Mapping[str, tuple[float, float]]]) -> list[Path]:
        from ..plots import plot_tradeoff

        title = f"{results['experiment_name']}: forgetting vs utility (mean ± std)"
        return [plot_tradeoff(summary, out / "tradeoff.png", title=title)]


DIGITS = VisionBenchmark("digits")
CIFAR10 = VisionBenchmark("cifar10")

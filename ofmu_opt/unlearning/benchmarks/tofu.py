"""TOFU-style QA benchmarks: TinyTOFU (built in) and real TOFU files, as the Benchmark protocol.

**TinyTOFU** (``tinytofu``): the data, the cached target / retain / validation-retain models and the
validation split of :mod:`~ofmu_opt.unlearning.benchmarks.tofu_setup`. Seeds change the unlearning
(batch order, method randomness), not the reference models, which are shared.

**Real TOFU** (``tofu``): ``--model DIR`` is any local ``AutoModelForCausalLM`` directory, ``--data DIR``
a TOFU data directory (:func:`~ofmu_opt.unlearning.data.tofu_files.load_tofu_split`), ``--retain-logs
FILE`` a retain model's ``TOFU_EVAL.json`` (open-unlearning's or ours). Generation follows
open-unlearning (200 new tokens, length 512) unless ``--quick``. No validation split: ``unlearn`` and
``eval`` only.

The validation score of the search is ``log10(FQ_val) + log10(MU_val)`` (higher is better).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._config import config_from_dict
from ...errors import ConfigError, DataError
from .base import BenchmarkBase, Column, Evaluation, RunHooks, row_from_eval

if TYPE_CHECKING:
    from ..data.tinytofu import QAItem, TofuSplit
    from ..metrics.tofu import RetainLogs
    from ..runner import RunConfig
    from .tofu_setup import LMExperimentConfig, TinyData

__all__ = ["TINYTOFU", "TOFU", "TofuBenchmark"]

log = logging.getLogger(__name__)

QUICK = {"n_authors": 40, "train_epochs": 30, "n_retain_eval_authors": 5, "unlearn_steps": 20}
REAL_TOFU = {"max_new_tokens": 200, "max_length": 512}  # open-unlearning's TOFU generation settings
LM_METHODS = ("ga", "graddiff", "npo", "simnpo", "idk_dpo", "rmu", "blur", "ngdiff", "ofmu")


@dataclass
class TofuPrepared:
    """The split to unlearn and report, the model to start from, the reference logs and rows."""

    cfg: LMExperimentConfig
    split: TofuSplit
    target: Path
    logs: RetainLogs | None
    retain_items: tuple[QAItem, ...]
    tiny: TinyData | None = None
    val_logs: RetainLogs | None = None
    rows: dict[str, dict[str, float | None]] | None = None


class TofuBenchmark(BenchmarkBase):
    """TinyTOFU / real TOFU files (see the module docstring)."""

    prefix = "TOFU"
    objective_family = "qa"
    methods = LM_METHODS
    columns = (
        Column("forget_quality", "forget quality ↑", ".2e"), Column("model_utility", "model utility ↑"),
        Column("forget_truth_ratio", "forget TR"), Column("forget_Q_A_Prob", "forget prob"),
        Column("forget_Q_A_ROUGE", "forget ROUGE"), Column("retain_Q_A_Prob", "retain prob"),
        Column("mia_min_k", "MIA min-k AUC"), Column("privleak", "privleak", ".1f"),
        Column("extraction_strength", "extraction"), Column("RTE", "RTE (s)", ".2f"),
    )
    headline = ("forget_quality", "model_utility")
    selection = "max log10(FQ_val) + log10(MU_val) on a validation split with disjoint authors"
    conflict_methods = ("ofmu", "graddiff", "npo")

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "tofu":
            self.commands = ("unlearn", "eval")
            real = frozenset({"split", "model", "data", "retain_logs"})
            self.extra = {"unlearn": real, "eval": real}
        else:
            self.extra = {"unlearn": frozenset({"split", "retain_logs"}), "bench": frozenset({"split"}),
                          "eval": frozenset({"split", "retain_logs"})}

    def read_retain_logs(self, path: str) -> RetainLogs:
        from ..metrics.tofu import read_retain_logs

        return read_retain_logs(path)

    def experiment(self, run: RunConfig, seed: int) -> LMExperimentConfig:
        from ..search import split_options
        from .tofu_setup import LMExperimentConfig

        data: dict[str, Any] = dict(run.toml().get("experiment", {}))
        for k, v in (QUICK.items() if run.quick else ()):
            data.setdefault(k, v)
        if self.name == "tofu" and not run.quick:
            for k, v in REAL_TOFU.items():
                data.setdefault(k, v)
        data.update(benchmark=self.name, seed=seed, device=run.device, threads=run.threads)
        if run.split:
            data["split"] = run.split
        data.update(split_options(run.option_pairs)[0])
        return config_from_dict(LMExperimentConfig, data, prefix="experiment.")

    def cache_dir(self, exp: LMExperimentConfig) -> Path | None:
        return exp.cache if self.name == "tinytofu" else None

    def describe(self, exp: LMExperimentConfig) -> str:
        return f"{'TinyTOFU' if self.name == 'tinytofu' else 'TOFU'} {exp.split}"

    def method_defaults(self, exp: LMExperimentConfig, run: RunConfig) -> dict[str, Any]:
        return {"steps": exp.unlearn_steps, "lr": exp.unlearn_lr}

    def prepare(self, exp: LMExperimentConfig, run: RunConfig) -> TofuPrepared:
        logs = self.read_retain_logs(run.retain_logs) if run.retain_logs else None
        if self.name == "tofu":
            from ..data.tofu_files import load_tofu_split
            from .lm_runs import model_dir_arg

            if not run.model or not run.data:
                raise ConfigError("--benchmark tofu: expected --model DIR (a local causal LM) and --data DIR "
                                  "(TOFU files)")
            split = load_tofu_split(run.data, exp.split)
            retain = tuple(split.retain or split.retain_eval)
            return TofuPrepared(exp, split, model_dir_arg(run.model), logs, retain)
        return self._prepare_tiny(exp, run, logs)

    def _prepare_tiny(self, exp: LMExperimentConfig, run: RunConfig, logs: RetainLogs | None) -> TofuPrepared:
        from .tofu_setup import cached_eval, retain_logs_from_eval, tiny_data, tiny_model_dir

        tiny = tiny_data(exp)
        target = tiny_model_dir(exp, tiny, "target") if run.command != "eval" else Path()
        if logs is None:
            retain = tiny_model_dir(exp, tiny, "retain")
            logs = retain_logs_from_eval(cached_eval(exp, retain, tiny.split, exp.split), str(retain))
        prep = TofuPrepared(exp, tiny.split, target, logs, tuple(tiny.split.retain) + tiny.utility, tiny)
        if run.command == "bench":
            valretain = tiny_model_dir(exp, tiny, "valretain")
            prep.val_logs = retain_logs_from_eval(cached_eval(exp, valretain, tiny.val, "val"), str(valretain))
            retain_ev = cached_eval(exp, retain, tiny.split, exp.split + ".self", logs)
            target_ev = cached_eval(exp, target, tiny.split, exp.split + ".target", logs)
            prep.rows = {"retrain (retain model)": row_from_eval(retain_ev, self.columns, 0.0),
                         "target (no unlearning)": row_from_eval(target_ev, self.columns, 0.0)}
        return prep

    def run_method(self, prep: TofuPrepared, method: Any, *, seed: int, split: str, hooks: RunHooks
                   ) -> tuple[Any, Any]:
        from .tofu_setup import run_lm_method

        forget, retain = prep.split.forget, prep.retain_items
        if split == "val":
            assert prep.tiny is not None
            forget_authors = {x.author for x in prep.split.forget}
            val_retain = tuple(q for q in prep.tiny.val_retain_train if q.author not in forget_authors)
            forget, retain = prep.tiny.val.forget, val_retain + prep.tiny.utility
        if not retain:
            raise DataError("retain set: expected retainNN or retain_perturbed data for the retain loss, found none")
        res, model, tok = run_lm_method(method, prep.target, forget, retain, prep.cfg, seed, hooks)
        return res, (model, tok)

    def evaluate(self, prep: TofuPrepared, model: Any, *, split: str, rte: float | None = None) -> Evaluation:
        from .tofu_setup import evaluate_split

        m, tok = model
        if split == "val":
            assert prep.tiny is not None
            return evaluate_split(prep.cfg, m, tok, prep.tiny.val)
        return evaluate_split(prep.cfg, m, tok, prep.split, prep.logs)

    def score(self, prep: TofuPrepared, ev: Evaluation) -> float:
        from .tofu_setup import validation_score

        assert prep.val_logs is not None
        return validation_score(ev, prep.val_logs)[0]

    def reference_rows(self, prep: TofuPrepared) -> dict[str, dict[str, float | None]]:
        return dict(prep.rows or {})

    def save_model(self, prep: TofuPrepared, model: Any, out: Path) -> None:
        from .lm_runs import save_lm

        save_lm(model[0], model[1], out / "model", prep.cfg.lora_r)

    def load_model(self, prep: TofuPrepared, path: Path) -> Any:
        from ..models.hf import load_causal_lm
        from .base import resolve_device
        from .lm_runs import model_dir_arg

        mdir = model_dir_arg(path)
        if self.name == "tinytofu" and not _trained_by_ofmu(mdir, prep.cfg):
            log.warning("TinyTOFU's real-authors and world-facts sets are invented facts: a model not trained on "
                        "TinyTOFU (%s) scores model utility near 0 there; compare models trained by ofmu", mdir)
        return load_causal_lm(mdir, prep.cfg.dtype, str(resolve_device(prep.cfg.device)))

    def plot(self, out: Path, results: Mapping[str, Any],
             summary: Mapping[str, Mapping[str, tuple[float, float]]]) -> list[Path]:
        from ..plots import Axis, plot_tradeoff

        panel = (Axis("forget_quality", "forget quality (KS p-value vs retain model, log scale) →", log=True),
                 Axis("model_utility", "model utility →"))
        title = f"{results['experiment_name']}: forget quality vs model utility (mean ± std)"
        return [plot_tradeoff(summary, out / "tradeoff.png", title=title, panels=[panel],
                              references=("retrain", "target"))]


def _trained_by_ofmu(mdir: Path, cfg: LMExperimentConfig) -> bool:
    """The model is an ``ofmu unlearn`` output on TinyTOFU or lives in the TinyTOFU model cache."""
    from ..._config import load_toml_file

    exp = mdir.parent / "experiment.toml"
    try:
        if exp.is_file() and load_toml_file(exp).get("experiment", {}).get("benchmark") == "tinytofu":
            return True
    except ConfigError:
        return False
    return cfg.cache.resolve() in mdir.resolve().parents


TINYTOFU = TofuBenchmark("tinytofu")
TOFU = TofuBenchmark("tofu")

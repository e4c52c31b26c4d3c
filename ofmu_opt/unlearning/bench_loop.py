"""``ofmu bench``: the equal-budget comparison, the same for every benchmark.

Every method gets the same number of unlearning steps and the same hyper-parameter budget ``B``:
candidate 0 is its defaults (with the benchmark's defaults, e.g. its learning rate), then ``B - 1``
seeded draws from its ``SEARCH_SPACE`` (:func:`~ofmu_opt.unlearning.search.sample_configs`). Each
candidate unlearns the benchmark's *validation* split and is scored by
:meth:`~ofmu_opt.unlearning.benchmarks.base.Benchmark.score` (higher is better); the reported test
sets are never used for selection. The selected configuration runs on ``N`` seeds; tables report
mean ± std over seeds. Budget accounting: per method, the steps and the gradient evaluations (backward
passes through the model, diagnostics included) spent on the search and on the seeds.

Each run's record (``runs/<method>-search<i>.json``, ``runs/<method>-seed<s>.json``) carries a content
hash; with ``--resume`` a record of the same configuration is reused, and a damaged or edited one is
refused with the way out (never silently counted as a failure). A seed run's full evaluation is also
written to ``runs/<method>-seed<s>/<PREFIX>_EVAL.json``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._config import config_from_dict, config_to_dict
from .._io import atomic_write_record, read_record
from ..errors import ConfigError, DataError
from .benchmarks.base import Benchmark, RunHooks, history_dicts, row_from_eval, write_eval
from .methods.registry import MethodUnavailableError, get_method
from .report import aggregate, write_results
from .search import check_options, method_options, resolve_methods, sample_configs, split_options

if TYPE_CHECKING:
    from .runner import RunConfig, RunOutcome

__all__ = ["check_bench_options", "run_comparison"]

log = logging.getLogger(__name__)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _cached(path: Path, key: str, resume: bool, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` and keep its record at ``path``; with ``resume``, reuse a verified record of the same key."""
    if resume and path.is_file():
        rec = read_record(path, "bench run record", hint=f"delete {str(path)!r} to rerun that run")
        if rec.get("key") == key:
            log.info("resume: reusing %s", path)
            return rec
    rec = {**fn(), "key": key}
    atomic_write_record(path, rec)
    return rec


class _Budget:
    """Steps and gradient evaluations spent per method (search and seeds)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, int]] = {}

    def add(self, name: str, phase: str, rec: dict[str, Any]) -> None:
        row = self.rows.setdefault(name, {"search_steps": 0, "search_grad_evals": 0, "seed_steps": 0,
                                          "seed_grad_evals": 0, "runs": 0})
        row[f"{phase}_steps"] += int(rec.get("steps") or 0)
        row[f"{phase}_grad_evals"] += int(rec.get("grad_evals") or 0)
        row["runs"] += 1


def _one(bench_: Benchmark, prep: Any, spec: Any, mcfg: Any, seed: int, split: str,
         eval_dir: Path | None = None) -> dict[str, Any]:
    from .runner import attach_validation

    method = attach_validation(prep, spec.method_cls(mcfg), seed)
    res, model = bench_.run_method(prep, method, seed=seed, split=split, hooks=RunHooks())
    ev = bench_.evaluate(prep, model, split=split, rte=res.wall_time_s)
    ok = res.status == "completed"
    rec: dict[str, Any] = {"status": res.status, "steps": res.steps, "wall_time_s": res.wall_time_s,
                           **{k: v for k, v in res.info.items() if k.startswith("grad_evals")}}
    rec.setdefault("grad_evals", None)
    if split == "val":
        score = bench_.score(prep, ev) if ok else -math.inf
        rec["score"] = score if math.isfinite(score) else None
        rec["val"] = {k: v.get("agg_value") for k, v in ev.items()}
    else:
        if eval_dir is not None:  # the seed run's full evaluation: runs/<method>-seed<s>/<PREFIX>_EVAL.json
            write_eval(eval_dir, bench_.prefix, ev)
        row = row_from_eval(ev, bench_.columns, res.wall_time_s)
        rec["row"] = row if ok else {k: (v if k == "RTE" else None) for k, v in row.items()}
        rec["history"] = history_dicts(res.history)
    return rec


def _candidates(cfg: RunConfig, bench_: Benchmark, exp: Any, spec: Any, opts: dict[str, str],
                toml: dict[str, Any], budget: int) -> list[Any]:
    user = method_options(spec.name, opts, toml, single=False)
    defaults = bench_.method_defaults(exp, cfg)
    steps = defaults.pop("steps", None)
    if user:  # the user's options, checked on their own (a clearer message than from a draw)
        config_from_dict(spec.config_cls, {**defaults, **user, **({"steps": steps} if steps else {})},
                         prefix=f"{spec.name}.")
    return sample_configs(spec.config_cls, user, budget, seed=cfg.seed, steps=steps, defaults=defaults,
                          choices=bench_.search_choices())


def check_bench_options(cfg: RunConfig, bench_: Benchmark, exp: Any) -> list[str]:
    """The methods of the comparison, after checking every option and each method's fixed options."""
    methods = resolve_methods(cfg.methods, bench_.methods, bench_.task)
    toml = cfg.toml()
    _, opts = split_options(cfg.option_pairs)
    check_options(opts, toml, methods, single=False)
    for name in methods:
        try:
            spec = get_method(name)
        except MethodUnavailableError:
            continue
        _candidates(cfg, bench_, exp, spec, opts, toml, 1)
    return methods


def run_comparison(cfg: RunConfig, bench_: Benchmark, out: Path) -> RunOutcome:
    """Search (validation only), select, run every seed, aggregate, write results and plots."""
    from .._progress import progress
    from .runner import RunOutcome

    budget = cfg.budget or bench_.default_budget[0 if cfg.quick else 1]
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    methods = resolve_methods(cfg.methods, bench_.methods, bench_.task)
    toml = cfg.toml()
    _, opts = split_options(cfg.option_pairs)
    exps = {s: bench_.experiment(cfg, s) for s in seeds}
    preps: dict[int, Any] = {}
    for s in seeds:
        preps[s] = preps[seeds[0]] if bench_.shared_references and s != seeds[0] else bench_.prepare(exps[s], cfg)
    per_seed: dict[str, dict[int, dict[str, float | None]]] = {}
    for s in seeds:
        for label, row in bench_.reference_rows(preps[s]).items():
            per_seed.setdefault(label, {})[s] = row
    selected: dict[str, dict[str, Any]] = {}
    search: dict[str, list[dict[str, Any]]] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    skipped: list[str] = []
    failed: dict[str, str] = {}
    spent = _Budget()
    runs = out / "runs"
    exp0, prep0 = exps[seeds[0]], preps[seeds[0]]
    with progress("bench", total=len(methods) * (budget + len(seeds)), unit="run") as tick:
        for name in methods:
            try:
                spec = get_method(name)
            except MethodUnavailableError as exc:
                log.warning("skipping %s: %s", name, exc)
                skipped.append(name)
                tick(budget + len(seeds))
                continue
            try:
                cands = _candidates(cfg, bench_, exp0, spec, opts, toml, budget)
                rows: list[dict[str, Any]] = []
                for i, mc in enumerate(cands):
                    key = _key(config_to_dict(exp0), name, config_to_dict(mc), "val")
                    rec = _cached(runs / f"{name}-search{i}.json", key, cfg.resume,
                                  functools.partial(_one, bench_, prep0, spec, mc, seeds[0], "val"))
                    spent.add(name, "search", rec)
                    rows.append({"config": config_to_dict(mc), "score": rec.get("score"), "status": rec.get("status"),
                                 "val": rec.get("val")})
                    tick(1)
                scores = [float(r["score"]) if r["score"] is not None else -math.inf for r in rows]
                best = cands[int(np.argmax(scores))]
                search[name], selected[name] = rows, config_to_dict(best)
                per_seed[name] = {}
                for s in seeds:
                    key = _key(config_to_dict(exps[s]), name, config_to_dict(best), "test", s)
                    rec = _cached(runs / f"{name}-seed{s}.json", key, cfg.resume,
                                  functools.partial(_one, bench_, preps[s], spec, best, s, "test",
                                                    runs / f"{name}-seed{s}"))
                    spent.add(name, "seed", rec)
                    per_seed[name][s] = dict(rec["row"])
                    if s == seeds[0]:
                        histories[name] = list(rec.get("history") or [])
                    tick(1)
            except (ConfigError, DataError):
                raise  # a bad option, bad data or a damaged record is the user's to fix, not a method failure
            except Exception as exc:  # one broken method must not lose the others' results
                log.error("method %s failed: %s: %s", name, type(exc).__name__, exc, exc_info=True)
                failed[name] = f"{type(exc).__name__}: {exc}"[:300]
                per_seed.pop(name, None)
                selected.pop(name, None)
    summary = {n: aggregate(d, seeds, bench_.columns) for n, d in per_seed.items()}
    results = {
        "benchmark": bench_.name, "experiment_name": bench_.describe(exp0), "seeds": seeds, "budget": budget,
        "steps": {n: c.get("steps") for n, c in selected.items()}, "quick": cfg.quick,
        "experiment": config_to_dict(exp0), "selection": bench_.selection, "selected": selected, "search": search,
        "budget_spent": spent.rows,
        "per_seed": {n: {str(s): v for s, v in d.items()} for n, d in per_seed.items()},
        "summary": {n: {k: list(v) for k, v in d.items()} for n, d in summary.items()},
        "skipped": skipped, "failed": failed,
    }
    files = write_results(out, bench_, results, summary, histories)
    table = (out / "results.md").read_text(encoding="utf-8")
    msg = table + "\nresults and plots: " + ", ".join(str(p) for p in files)
    n_methods = len([n for n in summary if n in methods])
    return RunOutcome(1 if failed or n_methods == 0 else 0, msg, out, results)

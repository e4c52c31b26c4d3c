"""Vision benchmarks (digits, CIFAR-10): the ``unlearn``, ``bench`` and ``eval`` entry points.

``bench`` compares methods fairly: every method gets the same number of unlearning steps and the same
hyper-parameter search budget ``B`` (its defaults plus ``B − 1`` configurations drawn, with a seed, from the
method config's ``SEARCH_SPACE``). Each candidate is scored on **validation proxies only** — UA and RA
(forget and retain sets are training data), validation accuracy in place of TA, and MIA-efficacy with the
validation split as the non-members — by its average absolute gap to the Retrain model on the same
proxies (:func:`~ofmu_opt.unlearning.experiment.selection_score`; lower is better). The test split is
never used for selection. The selected configuration then runs on ``N`` seeds (seed ``s`` trains its own
original and Retrain models); the tables report mean ± std over seeds.

The ``*_main`` functions are command entry points: they take the ``argparse`` namespace of ``ofmu
unlearn|bench|eval``, write artifacts, print the result table (bench) to stdout and return an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import functools
import hashlib
import io
import json
import logging
import math
import shutil
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._config import config_from_dict, config_to_dict, config_to_toml, load_toml_file, parse_option_pairs
from .._io import atomic_write_json, atomic_write_text, check_output_dir, read_json
from ..backends.checkpoint import save_checkpoint
from ..errors import CheckpointError, ConfigError
from .experiment import (
    VisionData,
    VisionExperimentConfig,
    evaluate,
    load_data,
    load_state,
    reference_models,
    resolve_device,
    run_method,
    save_state,
    selection_score,
    write_eval,
)
from .methods.registry import MethodUnavailableError, get_method, list_methods
from .metrics.vision import GAP_METRICS, gaps

__all__ = ["bench_main", "eval_main", "experiment_config", "run_bench", "sample_configs", "unlearn_main"]

log = logging.getLogger(__name__)

QUICK_EXPERIMENT: dict[str, Any] = {"hidden": 64, "train_steps": 400, "batch_size": 32, "diagnostics_every": 2}
# CIFAR-10 defaults (no data augmentation): ResNet-18, ~10 epochs for the full setting; a 5,000-image
# subsample and a narrow ResNet-18 for --quick.
CIFAR_FULL: dict[str, Any] = {
    "model": "resnet18",
    "hidden": 64,
    "train_steps": 4000,
    "train_batch_size": 128,
    "batch_size": 64,
}
CIFAR_QUICK: dict[str, Any] = {
    "model": "resnet18",
    "hidden": 16,
    "train_steps": 500,
    "data_limit": 5000,
    "batch_size": 64,
}
QUICK_STEPS = 60
FULL_STEPS = 150
METRICS = ("UA", "RA", "TA", "MIA", "RTE", "avg_gap")


# ---------------------------------------------------------------- helpers shared by the entry points


def _get(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    v = getattr(args, name, default)
    return default if v is None else v


def _parse_options(items: list[str] | None) -> dict[str, str]:
    return parse_option_pairs(items)


def _toml(args: argparse.Namespace) -> dict[str, Any]:
    path = _get(args, "config")
    return load_toml_file(path) if path else {}


def experiment_config(args: argparse.Namespace, seed: int | None = None) -> VisionExperimentConfig:
    """Build the experiment config from ``--config [experiment]``, ``--option experiment.X=...`` and flags."""
    data: dict[str, Any] = dict(_toml(args).get("experiment", {}))
    if _get(args, "quick", False) and args.benchmark == "digits":
        for k, v in QUICK_EXPERIMENT.items():
            data.setdefault(k, v)
    data["benchmark"] = args.benchmark
    if _get(args, "scenario"):
        data["scenario"] = args.scenario
    if _get(args, "data"):
        data["data_path"] = str(args.data)
    if _get(args, "device"):
        data["device"] = args.device
    data["seed"] = int(seed if seed is not None else _get(args, "seed", data.get("seed", 0)))
    for key, val in _parse_options(_get(args, "option")).items():
        if key.startswith("experiment."):
            data[key.split(".", 1)[1]] = val
    if data.get("benchmark") == "cifar10":
        for k, v in (CIFAR_QUICK if _get(args, "quick", False) else CIFAR_FULL).items():
            data.setdefault(k, v)
    return config_from_dict(VisionExperimentConfig, data, prefix="experiment.")


def _method_options(args: argparse.Namespace, name: str, fields: set[str]) -> dict[str, Any]:
    """Fixed options of one method: ``[method]`` / ``[methods.NAME]`` tables and ``--option``."""
    toml = _toml(args)
    opts: dict[str, Any] = {}
    if _get(args, "method") == name:
        opts.update({k: v for k, v in toml.items() if not isinstance(v, dict)})
        opts.update(toml.get("method", {}))
    opts.update(toml.get("methods", {}).get(name, {}))
    for k, v in _parse_options(_get(args, "option")).items():
        if k.startswith("experiment."):
            continue
        if "." in k:
            m, f = k.split(".", 1)
            if m == name:
                opts[f] = v
        elif k in fields:
            opts[k] = v
        elif _get(args, "method") == name:
            opts[k] = v  # single-method run: unknown names must fail loudly in config_from_dict
    return opts


def _check_bench_options(args: argparse.Namespace, methods: list[str]) -> None:
    """Every plain ``--option`` must name a field of at least one benchmarked method; prefixes must be known."""
    fields: set[str] = set()
    for name in methods:
        try:
            fields |= {f.name for f in dataclasses.fields(get_method(name).config_cls)}
        except MethodUnavailableError:
            continue
    for key in _parse_options(_get(args, "option")):
        prefix, _, rest = key.partition(".")
        if rest and prefix != "experiment" and prefix not in list_methods():
            raise ConfigError(f"--option {key!r}: expected 'experiment.' or a method name before the dot")
        if not rest and key not in fields:
            raise ConfigError(
                f"--option {key!r}: no benchmarked method has this option; known: {', '.join(sorted(fields))}"
            )


def _threads(args: argparse.Namespace) -> None:
    import torch

    if _get(args, "split"):
        log.warning("--split applies to language-model benchmarks; ignored for %s", args.benchmark)

    n = int(_get(args, "threads", 1))
    if n < 1:
        raise ConfigError(f"--threads: expected >= 1, received {n}")
    torch.set_num_threads(n)


class _Progress:
    """tqdm bars on stderr, only when enabled (a TTY and not --quiet)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.enabled = not _get(args, "quiet", False) and sys.stderr.isatty()
        self._bars: list[Any] = []

    def factory(self, desc: str, total: int) -> Callable[[int], None] | None:
        if not self.enabled:
            return None
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
        self._bars.append(bar)
        return lambda n: bar.update(n)

    @contextlib.contextmanager
    def bar(self, desc: str, total: int) -> Iterator[Callable[[int], None] | None]:
        tick = self.factory(desc, total)
        try:
            yield tick
        finally:
            self.close()

    def close(self) -> None:
        for b in self._bars:
            b.close()
        self._bars.clear()


def _prefix(cfg: VisionExperimentConfig) -> str:
    return cfg.benchmark.upper()


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


# ---------------------------------------------------------------- unlearn


def unlearn_main(args: argparse.Namespace) -> int:
    """``ofmu unlearn`` for digits/CIFAR-10: one method, one seed; writes eval, summary and checkpoint."""
    _threads(args)
    if not _get(args, "method"):
        raise ConfigError("--method: expected a method name, received none")
    cfg = experiment_config(args)
    out = check_output_dir(_get(args, "out", f"unlearn_{cfg.benchmark}_{args.method}"))
    spec = get_method(args.method)
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    opts = _method_options(args, spec.name, fields)
    if _get(args, "quick", False):
        opts.setdefault("steps", QUICK_STEPS)
    mcfg = config_from_dict(spec.config_cls, opts)
    every = int(_get(args, "checkpoint_every", 0))
    if every < 0:
        raise ConfigError(f"--checkpoint-every: expected >= 0 (0 = never), received {every}")
    key = _key(config_to_dict(cfg), spec.name, config_to_dict(mcfg))
    summary_path = out / f"{_prefix(cfg)}_SUMMARY.json"
    state_path = out / "run.json"
    ckpt_dir = out / "checkpoint"
    resume = bool(_get(args, "resume", False))
    if resume and summary_path.is_file() and state_path.is_file():
        rec = read_json(state_path, "run record")
        if isinstance(rec, dict) and rec.get("key") == key:
            log.info("resume: %s is complete for this configuration; nothing to do", out)
            sys.stdout.write(f"{summary_path} (already complete)\n")
            return 0
    snapshot = _load_snapshot(ckpt_dir, key) if resume else None
    device = resolve_device(cfg.device)
    prog = _Progress(args)
    data = load_data(cfg)
    original, retrain, retrain_time = reference_models(cfg, data, device, prog.factory)
    prog.close()
    rt_metrics, _ = evaluate(retrain, data, device)
    rt_metrics["RTE"] = retrain_time
    if spec.name == "retrain":
        model, wall, hist, status = retrain, retrain_time, [], "completed"
    else:
        method = spec.method_cls(mcfg)

        def save_snapshot(step: int, tree: dict[str, Any]) -> None:
            save_checkpoint(ckpt_dir, tree, meta={"key": key, "step": step, "method": spec.name})

        with prog.bar(f"unlearn {spec.name}", mcfg.steps) as tick:
            res = run_method(
                method, original, data, cfg, device, seed=cfg.seed, progress=tick,
                snapshot=save_snapshot if every > 0 else None, checkpoint_every=every, resume=snapshot,
            )
        model, wall, status = res.model, res.wall_time_s, res.status
        hist = _history(res.history)
        if status == "non_finite":
            log.warning(
                "%s diverged: a non-finite loss after %d of %d steps; the metrics are those of the last finite model",
                spec.name, res.steps, mcfg.steps,
            )
    metrics, per = evaluate(model, data, device)
    metrics["RTE"] = wall
    write_eval(out, _prefix(cfg), metrics, per, rt_metrics)
    save_state(model, out / "model.safetensors", {"method": spec.name})
    atomic_write_text(out / "experiment.toml", config_to_toml(cfg))
    atomic_write_text(out / "method.toml", config_to_toml(mcfg))
    atomic_write_json(out / "history.json", hist)
    atomic_write_json(
        state_path,
        {"key": key, "method": spec.name, "status": status, "retrain": rt_metrics, "metrics": metrics},
    )
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # the finished run supersedes the mid-run checkpoint
    note = "" if status == "completed" else f"\nstatus: {status}" + (
        f" (the loss became non-finite after {res.steps} of {mcfg.steps} steps: the run diverged; "
        "try a smaller lr)" if status == "non_finite" else ""
    )
    sys.stdout.write(
        f"{spec.name} on {cfg.benchmark} {cfg.scenario} (seed {cfg.seed}): "
        + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items())
        + note
        + f"\nwrote {summary_path}\n"
    )
    return 0 if status == "completed" else 1


def _load_snapshot(ckpt_dir: Path, key: str) -> dict[str, Any] | None:
    """The mid-run snapshot in ``ckpt_dir`` if it belongs to this configuration, else None."""
    from ..backends.checkpoint import load_checkpoint

    if not ckpt_dir.exists():
        return None
    try:
        tree, meta = load_checkpoint(ckpt_dir)  # every tensor back on the device it was saved from
    except CheckpointError as exc:
        raise CheckpointError(f"--resume: {exc}; delete {str(ckpt_dir)!r} to start over") from exc
    if meta.get("key") != key or not isinstance(tree, dict):
        log.warning("resume: %s belongs to another configuration; starting from step 0", ckpt_dir)
        return None
    log.info("resume: continuing from the checkpoint after step %s", meta.get("step"))
    return tree


# ---------------------------------------------------------------- eval


def eval_main(args: argparse.Namespace) -> int:
    """``ofmu eval``: evaluate the checkpoint in ``--model DIR`` (an ``unlearn`` output directory)."""
    _threads(args)
    mdir = Path(_get(args, "model", ""))
    if not str(mdir) or not (mdir / "model.safetensors").is_file():
        raise ConfigError(f"--model: expected a directory with model.safetensors, received {str(mdir)!r}")
    out = check_output_dir(_get(args, "out", mdir))
    base: dict[str, Any] = {}
    if (mdir / "experiment.toml").is_file():
        base = load_toml_file(mdir / "experiment.toml")
    if _get(args, "scenario"):
        base["scenario"] = args.scenario
    if _get(args, "device"):
        base["device"] = args.device
    if _get(args, "data"):
        base["data_path"] = str(args.data)
    base["benchmark"] = args.benchmark
    cfg = config_from_dict(VisionExperimentConfig, base, prefix="experiment.")
    device = resolve_device(cfg.device)
    data = load_data(cfg)
    from .models.vision import build_model

    model = build_model(cfg.model, data.splits.input_shape, data.splits.num_classes, 0, cfg.hidden, device)
    load_state(model, mdir / "model.safetensors")
    metrics, per = evaluate(model, data, device)
    rt: Mapping[str, float] | None
    if _get(args, "retain_logs"):
        raw = read_json(args.retain_logs, "retain logs")
        rt = {k: float(v["agg_value"] if isinstance(v, dict) else v) for k, v in raw.items() if k in GAP_METRICS}
        if set(rt) != set(GAP_METRICS):
            raise ConfigError(f"--retain-logs: expected the metrics {', '.join(GAP_METRICS)}, received {sorted(rt)}")
    else:
        prog = _Progress(args)
        _, retrain, _ = reference_models(cfg, data, device, prog.factory)
        prog.close()
        rt, _ = evaluate(retrain, data, device)
    p1, _ = write_eval(out, _prefix(cfg), metrics, per, rt)
    sys.stdout.write(", ".join(f"{k} {v:.2f}" for k, v in metrics.items()) + f"\nwrote {p1}\n")
    return 0


# ---------------------------------------------------------------- bench


def sample_configs(config_cls: type[Any], fixed: Mapping[str, Any], budget: int, seed: int, steps: int) -> list[Any]:
    """The ``budget`` candidate configs of one method: defaults first, then seeded draws from SEARCH_SPACE.

    Keys given in ``fixed`` are never searched. ``"log"`` draws log-uniformly, ``"uniform"`` uniformly,
    ``"int"`` uniform integers in [low, high].

    Example:
        >>> from ofmu_opt.unlearning.methods.ascent import GradDiffConfig
        >>> cs = sample_configs(GradDiffConfig, {}, budget=3, seed=0, steps=5)
        >>> (len(cs), cs[0].gamma, cs[1].steps, cs[1] == sample_configs(GradDiffConfig, {}, 3, 0, 5)[1])
        (3, 1.0, 5, True)
    """
    if budget < 1:
        raise ConfigError(f"--budget: expected >= 1, received {budget}")
    fields = {f.name for f in dataclasses.fields(config_cls)}
    base = {"steps": steps, **fixed} if "steps" in fields else dict(fixed)
    space: dict[str, tuple[str, float, float]] = dict(getattr(config_cls, "SEARCH_SPACE", {}) or {})
    if not space and "lr" in fields:
        default_lr = float(config_from_dict(config_cls, base).lr)
        space = {"lr": ("log", default_lr / 10, default_lr * 10)}
    space = {k: v for k, v in space.items() if k in fields and k not in fixed}
    rng = np.random.default_rng([seed, zlib.crc32(config_cls.__name__.encode())])
    out = [config_from_dict(config_cls, base)]
    for _ in range(budget - 1):
        draw: dict[str, Any] = dict(base)
        for k, (kind, lo, hi) in sorted(space.items()):
            if kind == "log":
                draw[k] = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            elif kind == "int":
                draw[k] = int(rng.integers(int(lo), int(hi) + 1))
            else:
                draw[k] = float(rng.uniform(lo, hi))
        out.append(config_from_dict(config_cls, draw))
    return out


def _fmt(mean: float, std: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _agg(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _resolve_methods(spec: str) -> list[str]:
    known = [m for m in list_methods("classifier") if m != "retrain"]
    if spec.strip().lower() == "all":
        return known
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if not names:
        raise ConfigError(f"--methods: expected 'all' or a comma-separated list, received {spec!r}")
    for n in names:
        if n not in list_methods():
            raise ConfigError(f"--methods: unknown method {n!r}; known: {', '.join(list_methods())}")
        if n not in list_methods("classifier"):
            raise ConfigError(f"--methods: {n!r} does not apply to classifiers; use one of {', '.join(known)}")
    return [n for n in names if n != "retrain"]


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run the fair comparison described in the module docstring; returns the results dictionary."""
    _threads(args)
    quick = bool(_get(args, "quick", False))
    n_seeds = int(_get(args, "seeds", 3))
    budget = int(_get(args, "budget", 6 if quick else 8))
    if n_seeds < 1:
        raise ConfigError(f"--seeds: expected >= 1, received {n_seeds}")
    if budget < 1:
        raise ConfigError(f"--budget: expected >= 1, received {budget}")
    steps = QUICK_STEPS if quick else FULL_STEPS
    base_seed = int(_get(args, "seed", 0))
    seeds = [base_seed + i for i in range(n_seeds)]
    methods = _resolve_methods(str(_get(args, "methods", "all")))
    _check_bench_options(args, methods)
    out = check_output_dir(_get(args, "out", "bench_out"))
    resume = bool(_get(args, "resume", False))
    cfgs = {s: experiment_config(args, seed=s) for s in seeds}
    cfg0 = cfgs[seeds[0]]
    device = resolve_device(cfg0.device)
    prog = _Progress(args)
    data: VisionData = load_data(cfg0)
    originals, rt_test, rt_val = {}, {}, {}
    for s in seeds:
        original, retrain, rt_time = reference_models(cfgs[s], data, device, prog.factory)
        prog.close()
        originals[s] = original
        rt_test[s], _ = evaluate(retrain, data, device)
        rt_test[s]["RTE"] = rt_time
        rt_val[s], _ = evaluate(retrain, data, device, split="val")
    runs_dir = out / "runs"
    per_seed: dict[str, dict[int, dict[str, float]]] = {"retrain": {}}
    for s in seeds:
        per_seed["retrain"][s] = {**rt_test[s], **{"avg_gap": 0.0}}
    selected: dict[str, dict[str, Any]] = {}
    search: dict[str, list[dict[str, Any]]] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    skipped: list[str] = []
    failed: dict[str, str] = {}
    total_runs = len(methods) * (budget + n_seeds)
    with prog.bar("bench", total_runs) as tick:
        for name in methods:
            try:
                spec = get_method(name)
            except MethodUnavailableError as exc:
                log.warning("skipping %s: %s", name, exc)
                skipped.append(name)
                if tick:
                    tick(budget + n_seeds)
                continue
            try:
                rows, best, seed_metrics, hist = _bench_method(
                    args,
                    name,
                    spec,
                    budget,
                    base_seed,
                    steps,
                    seeds,
                    cfgs,
                    originals,
                    data,
                    device,
                    rt_val,
                    rt_test,
                    runs_dir,
                    resume,
                    tick,
                )
            except ConfigError:
                raise
            except Exception as exc:  # one broken method must not lose the others' results
                log.error("method %s failed: %s: %s", name, type(exc).__name__, exc, exc_info=True)
                failed[name] = f"{type(exc).__name__}: {exc}"
                continue
            search[name] = rows
            selected[name] = config_to_dict(best)
            per_seed[name] = seed_metrics
            histories[name] = hist
    summary = {n: {k: _agg([per_seed[n][s][k] for s in seeds]) for k in METRICS} for n in per_seed}
    results = {
        "benchmark": cfg0.benchmark,
        "scenario": cfg0.scenario,
        "seeds": seeds,
        "budget": budget,
        "steps": steps,
        "quick": quick,
        "experiment": config_to_dict(cfg0),
        "selection": "mean |gap| to Retrain: validation-proxy UA, RA, val accuracy, MIA (val non-members)",
        "selected": selected,
        "search": search,
        "per_seed": {n: {str(s): v for s, v in d.items()} for n, d in per_seed.items()},
        "summary": {n: {k: list(v) for k, v in d.items()} for n, d in summary.items()},
        "skipped": skipped,
        "failed": failed,
    }
    _write_bench(out, results, summary, per_seed, histories, seeds)
    return results


def _bench_method(
    args: argparse.Namespace,
    name: str,
    spec: Any,
    budget: int,
    base_seed: int,
    steps: int,
    seeds: list[int],
    cfgs: Mapping[int, VisionExperimentConfig],
    originals: Mapping[int, Any],
    data: VisionData,
    device: Any,
    rt_val: Mapping[int, Mapping[str, float]],
    rt_test: Mapping[int, Mapping[str, float]],
    runs_dir: Path,
    resume: bool,
    tick: Callable[[int], None] | None,
) -> tuple[list[dict[str, Any]], Any, dict[int, dict[str, float]], list[dict[str, Any]]]:
    """Search (validation only) then run the selected config on every seed, for one method."""
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    fixed = _method_options(args, name, fields)
    cands = sample_configs(spec.config_cls, fixed, budget, seed=base_seed, steps=steps)
    cfg0 = cfgs[seeds[0]]
    rows: list[dict[str, Any]] = []
    for i, mc in enumerate(cands):
        run_fn = functools.partial(_one_run, spec, mc, originals[seeds[0]], data, cfg0, device, seeds[0], "val")
        rec = _cached_run(runs_dir / f"{name}-search{i}.json", resume, cfg0, name, mc, "val", run_fn)
        score = selection_score(rec["metrics"], rt_val[seeds[0]])
        rows.append({"config": config_to_dict(mc), "score": score, "val": rec["metrics"]})
        if tick:
            tick(1)
    scores = [r["score"] if math.isfinite(r["score"]) else math.inf for r in rows]
    best = cands[int(np.argmin(scores))]
    seed_metrics: dict[int, dict[str, float]] = {}
    hist: list[dict[str, Any]] = []
    for s in seeds:
        run_fn = functools.partial(_one_run, spec, best, originals[s], data, cfgs[s], device, s, "test")
        rec = _cached_run(runs_dir / f"{name}-seed{s}.json", resume, cfgs[s], name, best, "test", run_fn)
        m = dict(rec["metrics"])
        m["avg_gap"] = gaps(m, rt_test[s])["avg_gap"]
        seed_metrics[s] = m
        if s == seeds[0]:
            hist = rec["history"]
        if tick:
            tick(1)
    return rows, best, seed_metrics, hist


def _history(records: Any) -> list[dict[str, Any]]:
    """Step records (StepRecord dataclasses or plain dicts) as JSON-ready dicts."""
    return [dict(h) if isinstance(h, Mapping) else dataclasses.asdict(h) for h in records]


def _one_run(
    spec: Any,
    mcfg: Any,
    original: Any,
    data: VisionData,
    cfg: VisionExperimentConfig,
    device: Any,
    seed: int,
    split: str,
) -> dict[str, Any]:
    res = run_method(spec.method_cls(mcfg), original, data, cfg, device, seed=seed)
    metrics, _ = evaluate(res.model, data, device, split=split)
    metrics["RTE"] = res.wall_time_s
    if res.status != "completed":
        metrics = {k: (v if k == "RTE" else float("nan")) for k, v in metrics.items()}
    return {"metrics": metrics, "status": res.status, "history": _history(res.history)}


def _cached_run(
    path: Path,
    resume: bool,
    cfg: VisionExperimentConfig,
    name: str,
    mcfg: Any,
    split: str,
    fn: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    key = _key(config_to_dict(cfg), name, config_to_dict(mcfg), split)
    if resume and path.is_file():
        rec = read_json(path, "bench run record")
        if isinstance(rec, dict) and rec.get("key") == key:
            rec["metrics"] = {k: (float("nan") if v is None else float(v)) for k, v in rec["metrics"].items()}
            return rec
    rec = fn()
    rec["key"] = key
    atomic_write_json(path, rec)
    return rec


def results_markdown(results: Mapping[str, Any], summary: Mapping[str, Mapping[str, tuple[float, float]]]) -> str:
    """The results table (mean ± std over seeds) as Markdown."""
    lines = [
        f"# {results['benchmark']} {results['scenario']}: {len(results['seeds'])} seeds, "
        f"budget {results['budget']} configs/method, {results['steps']} steps",
        "",
        "| method | UA | RA | TA | MIA-efficacy | avg gap ↓ | RTE (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    order = ["retrain"] + sorted((n for n in summary if n != "retrain"), key=lambda n: summary[n]["avg_gap"][0])
    for n in order:
        s = summary[n]
        cells = [_fmt(*s[k]) for k in ("UA", "RA", "TA", "MIA", "avg_gap")] + [_fmt(*s["RTE"], digits=3)]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Selected configurations (by validation score, never test):")
    lines.append("")
    for n, c in results["selected"].items():
        shown = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in c.items()}
        lines.append(f"- {n}: {shown}")
    for n, msg in results.get("failed", {}).items():
        lines.append("")
        lines.append(f"Failed: {n}: {msg}")
    if results["skipped"]:
        lines.append("")
        lines.append(f"Skipped (not available): {', '.join(results['skipped'])}")
    return "\n".join(lines) + "\n"


def _write_bench(
    out: Path,
    results: dict[str, Any],
    summary: Mapping[str, Mapping[str, tuple[float, float]]],
    per_seed: Mapping[str, Mapping[int, Mapping[str, float]]],
    histories: Mapping[str, list[dict[str, Any]]],
    seeds: list[int],
) -> None:
    from .plots import plot_conflict, plot_tradeoff

    md = results_markdown(results, summary)
    atomic_write_text(out / "results.md", md)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "seed", *METRICS])
    for n, d in per_seed.items():
        for s in seeds:
            w.writerow([n, s, *(f"{d[s][k]:.6g}" for k in METRICS)])
    atomic_write_text(out / "results.csv", buf.getvalue())
    atomic_write_json(out / "results.json", results)
    title = f"{results['benchmark']} {results['scenario']}"
    plot_tradeoff(summary, out / "tradeoff.png", title=f"{title}: forgetting vs utility (mean ± std)")
    conflict = {n: histories[n] for n in ("ofmu", "graddiff") if n in histories}
    note = "" if "ofmu" in conflict else " (ofmu not available)"
    plot_conflict(conflict, out / "conflict.png", title=f"{title}: cos(∇L_f, ∇L_r), seed {seeds[0]}{note}")


def bench_main(args: argparse.Namespace) -> int:
    """``ofmu bench`` for digits/CIFAR-10: runs :func:`run_bench`, prints the table and the artifact paths."""
    out = Path(_get(args, "out", "bench_out"))
    args.out = str(out)
    results = run_bench(args)
    sys.stdout.write((out / "results.md").read_text(encoding="utf-8"))
    sys.stdout.write(
        f"\nresults: {out / 'results.md'}, {out / 'results.csv'}, {out / 'results.json'}\n"
        f"plots: {out / 'tradeoff.png'}, {out / 'conflict.png'}\n"
    )
    return 1 if results["failed"] or len(results["summary"]) < 2 else 0

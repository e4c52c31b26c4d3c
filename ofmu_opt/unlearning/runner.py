"""The one runner behind ``ofmu unlearn``, ``ofmu bench`` and ``ofmu eval``: typed config in, artifacts out.

:class:`RunConfig` is the whole request (the command line parses into it; tests and scripts build it
directly). :func:`run` checks it against the benchmark (an option the benchmark does not read is an
error, not ignored), checks every path before any work, takes the output directory's lock and calls
:func:`unlearn`, :func:`bench` or :func:`evaluate`, which talk to the benchmark only through the
:class:`~ofmu_opt.unlearning.benchmarks.base.Benchmark` protocol.

``unlearn``: one method, one seed → ``<PREFIX>_EVAL.json``, ``<PREFIX>_SUMMARY.json``, the model,
``experiment.toml``, ``method.toml``, ``history.json`` and ``run.json`` (a hashed record); a resumable
mid-run checkpoint every ``checkpoint_every`` steps, removed when the run finishes.
``bench``: the equal-budget comparison (:mod:`~ofmu_opt.unlearning.bench_loop`). ``eval``: evaluate a
saved model.

Example:
    >>> cfg = RunConfig(command="unlearn", benchmark="digits", method="ga", quick=True)
    >>> (cfg.seed, cfg.checkpoint_every, cfg.device)
    (0, 10, 'cpu')
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le

from .._config import Validated, config_from_dict, config_to_dict, config_to_toml, load_toml_file, parse_option_pairs
from .._io import atomic_write_json, atomic_write_record, atomic_write_text, read_record
from ..errors import CheckpointError, ConfigError
from .benchmarks import get_benchmark
from .benchmarks.base import Benchmark, RunHooks, history_dicts, summary_of, write_eval
from .paths import check_paths, check_writable_dir
from .search import applicable_methods, check_options, method_options, split_options

__all__ = ["RunConfig", "RunOutcome", "attach_validation", "bench", "evaluate", "prepare_run", "run", "unlearn"]

log = logging.getLogger(__name__)

Seed = Annotated[int, Ge(0), Le(2**32 - 1)]


@dataclass(frozen=True)
class RunConfig(Validated):
    """One request to the runner (``ofmu unlearn | bench | eval``).

    Attributes:
        command: ``"unlearn"``, ``"bench"`` or ``"eval"``.
        benchmark: a registered benchmark (``ofmu_opt.unlearning.benchmarks.list_benchmarks()``).
        method: unlearn: the method.
        methods: bench: ``"all"`` or a comma-separated list.
        scenario: vision: ``random<P>`` or ``class:K``.
        split: language models: ``forget01``, ``forget05``, ``forget10``.
        config: a TOML file with ``[experiment]``, ``[method]``, ``[methods.NAME]``.
        options: ``NAME=VALUE`` strings (``METHOD.NAME``, ``experiment.NAME``, or a plain method option).
        seed: base seed; bench runs ``seed .. seed + seeds - 1``.
        seeds: bench: number of seeds.
        budget: bench: hyper-parameter candidates per method (None = the benchmark's default).
        quick: small models and few steps.
        out: output directory (None = a name from the command).
        resume: reuse finished runs in ``out``; continue from a mid-run checkpoint.
        checkpoint_every: unlearn: a resumable checkpoint every N steps (0 = never).
        model: a model directory (eval; real-data LM benchmarks).
        data: local data (CIFAR-10 directory, TOFU directory, MCQ file).
        retain_logs: the evaluation of a retain model to compare against.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        threads: torch CPU threads.
        quiet: no progress output.
    """

    command: Literal["unlearn", "bench", "eval"] = "unlearn"
    benchmark: str = "digits"
    method: str | None = None
    methods: str = "all"
    scenario: str | None = None
    split: str | None = None
    config: str | None = None
    options: tuple[str, ...] = ()
    seed: Seed = 0
    seeds: Annotated[int, Ge(1), Le(1000)] = 3
    budget: Annotated[int, Ge(1), Le(10_000)] | None = None
    quick: bool = False
    out: str | None = None
    resume: bool = False
    checkpoint_every: Annotated[int, Ge(0), Le(10**9)] = 10
    model: str | None = None
    data: str | None = None
    retain_logs: str | None = None
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    threads: Annotated[int, Ge(1), Le(4096)] = 1
    quiet: bool = False

    @property
    def option_pairs(self) -> dict[str, str]:
        """``options`` as a dict (later pairs win)."""
        return parse_option_pairs(self.options)

    def toml(self) -> dict[str, Any]:
        """The ``--config`` file's content ({} without one)."""
        return load_toml_file(self.config) if self.config else {}

    def set_fields(self) -> set[str]:
        """The fields that differ from their defaults (what the user asked for)."""
        default = RunConfig(command=self.command, benchmark=self.benchmark)
        return {k for k, v in config_to_dict(self).items() if v != config_to_dict(default)[k]}


@dataclass
class RunOutcome:
    """What a command produced: exit code, a short report for the terminal, the output directory, results."""

    code: int
    message: str
    out: Path
    results: dict[str, Any] = field(default_factory=dict)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _check_uses(cfg: RunConfig, bench_: Benchmark) -> None:
    if cfg.command not in bench_.commands:
        raise ConfigError(f"benchmark {bench_.name!r} does not support '{cfg.command}'; it supports: "
                          + ", ".join(bench_.commands))
    unused = sorted(cfg.set_fields() - bench_.uses(cfg.command))
    if unused:
        flags = ", ".join("--" + u.replace("_", "-").replace("options", "option") for u in unused)
        raise ConfigError(f"{flags}: not used by 'ofmu {cfg.command} --benchmark {bench_.name}' (rejected rather "
                          f"than ignored); it reads: "
                          + ", ".join(sorted("--" + u.replace("_", "-") for u in bench_.uses(cfg.command)
                                             if u not in ("command", "benchmark", "options"))))


def prepare_run(cfg: RunConfig) -> tuple[Benchmark, Path]:
    """Resolve the benchmark, reject options it does not read, check every path; no work, no writes."""
    import torch

    bench_ = get_benchmark(cfg.benchmark)
    _check_uses(cfg, bench_)
    default_out = {"unlearn": f"unlearn_{cfg.benchmark}_{cfg.method}", "bench": f"bench_{cfg.benchmark}",
                   "eval": "eval_out"}[cfg.command]
    out = check_paths(cfg, Path(cfg.out or (cfg.model if cfg.command == "eval" and bench_.task == "classifier"
                                            and cfg.model else default_out)))
    exp = bench_.experiment(cfg, cfg.seed)  # every experiment option checked before any work
    cache = bench_.cache_dir(exp)
    if cache is not None:
        check_writable_dir(cache, "cache directory")
    if cfg.retain_logs:
        bench_.read_retain_logs(cfg.retain_logs)  # read and checked before any evaluation
    if cfg.model and cfg.command in ("eval", "unlearn"):
        bench_.check_model(Path(cfg.model))  # files checked before any reference model is trained
    if cfg.command == "eval":  # eval runs no method: every method option is an error
        check_options(split_options(cfg.option_pairs)[1], cfg.toml(), [], single=False)
    elif cfg.command == "unlearn":
        _method_cfg(cfg, bench_, exp)
    elif cfg.command == "bench":
        from .bench_loop import check_bench_options

        check_bench_options(cfg, bench_, exp)
    torch.set_num_threads(cfg.threads)
    return bench_, out


def run(cfg: RunConfig) -> RunOutcome:
    """Check ``cfg`` and every path, lock the output directory, run ``cfg.command``."""
    from .._io import output_lock

    if not isinstance(cfg, RunConfig):
        raise TypeError(f"run: expected a RunConfig, received {type(cfg).__name__}")
    bench_, out = prepare_run(cfg)
    fn = {"unlearn": _unlearn, "bench": _bench, "eval": _evaluate}[cfg.command]
    with output_lock(out, what="--out"):
        return fn(cfg, bench_, out)


def _as(cfg: RunConfig, command: str) -> RunConfig:
    if not isinstance(cfg, RunConfig):
        raise TypeError(f"expected a RunConfig, received {type(cfg).__name__}")
    return dataclasses.replace(cfg, command=command)  # type: ignore[arg-type]


def unlearn(cfg: RunConfig) -> RunOutcome:
    """``ofmu unlearn``: one method, one seed; see the module docstring for the files written."""
    return run(_as(cfg, "unlearn"))


def bench(cfg: RunConfig) -> RunOutcome:
    """``ofmu bench``: the equal-budget comparison (see :mod:`ofmu_opt.unlearning.bench_loop`)."""
    return run(_as(cfg, "bench"))


def evaluate(cfg: RunConfig) -> RunOutcome:
    """``ofmu eval``: evaluate the model in ``cfg.model``; writes ``<PREFIX>_EVAL.json`` / ``_SUMMARY.json``."""
    return run(_as(cfg, "eval"))


def _method_cfg(cfg: RunConfig, bench_: Benchmark, exp: Any) -> tuple[Any, Any]:
    from .methods.registry import get_method

    if not cfg.method:
        raise ConfigError("--method: expected a method name, received none")
    spec = get_method(cfg.method)
    applicable = applicable_methods(bench_.task)
    if spec.name not in applicable:
        raise ConfigError(f"--method: {spec.name!r} does not apply to benchmark {bench_.name!r} ({bench_.task}); "
                          "choose from " + ", ".join(applicable))
    toml = cfg.toml()
    _, opts = split_options(cfg.option_pairs)
    check_options(opts, toml, [spec.name], single=True)
    data = {**bench_.method_defaults(exp, cfg), **method_options(spec.name, opts, toml, single=True)}
    return spec, config_from_dict(spec.config_cls, data, prefix=f"{spec.name}.")


RESOLVED_INFO = ("objective", "family", "inner_steps", "rho0")
"""``MethodResult.info`` keys copied into ``run.json``: what a method resolved at run time (OFMU's ``auto``)."""


def attach_validation(prep: Any, method: Any, seed: int) -> Any:
    """Give a method that reads held-out data (``method.validation``, e.g. OFMU for its ``calibrated``
    objective) a seeded stream of the benchmark's validation split when the prepared data has one
    (``x_val``/``y_val``: the vision benchmarks); returns ``method``. Other methods are left alone."""
    data = getattr(prep, "data", None)
    x, y = getattr(data, "x_val", None), getattr(data, "y_val", None)
    if x is None or y is None or not hasattr(method, "validation") or getattr(method, "validation", None) is not None:
        return method
    from .data.common import BatchStream

    batch = int(getattr(getattr(prep, "cfg", None), "batch_size", 64))
    method.validation = BatchStream(x, y, batch, seed=seed * 2 + 13,
                                    device=getattr(prep, "device", None) or "cpu")
    return method


def _load_snapshot(ckpt: Path, key: str) -> dict[str, Any] | None:
    from ..backends.checkpoint import load_checkpoint

    if not ckpt.exists():
        return None
    try:
        tree, meta = load_checkpoint(ckpt)
    except CheckpointError as exc:
        raise CheckpointError(f"--resume: {exc}; delete {str(ckpt)!r} to start over") from exc
    if meta.get("key") != key or not isinstance(tree, dict):
        log.warning("resume: %s belongs to another configuration; starting from step 0", ckpt)
        return None
    log.info("resume: continuing from the checkpoint after step %s", meta.get("step"))
    return tree


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4g}" if abs(v) < 1e-2 and v != 0 else f"{v:.3f}"


def _unlearn(cfg: RunConfig, bench_: Benchmark, out: Path) -> RunOutcome:
    from .._progress import progress
    from ..backends.checkpoint import save_checkpoint

    exp = bench_.experiment(cfg, cfg.seed)
    spec, mcfg = _method_cfg(cfg, bench_, exp)
    key = _key(config_to_dict(exp), spec.name, config_to_dict(mcfg))
    summary_path, record_path, ckpt = out / f"{bench_.prefix}_SUMMARY.json", out / "run.json", out / "checkpoint"
    if cfg.resume and summary_path.is_file() and record_path.is_file():
        rec = read_record(record_path, "run record", hint=f"delete {str(out)!r} or rerun without --resume")
        if rec.get("key") == key:
            return RunOutcome(0, f"{summary_path} (already complete)", out, rec)
    snapshot = _load_snapshot(ckpt, key) if cfg.resume else None
    prep = bench_.prepare(exp, cfg)

    def save_snapshot(step: int, tree: dict[str, Any]) -> None:
        save_checkpoint(ckpt, tree, meta={"key": key, "step": step, "method": spec.name})

    with progress(f"unlearn {spec.name}", total=getattr(mcfg, "steps", None), unit="step") as bar:
        hooks = RunHooks(bar, save_snapshot if cfg.checkpoint_every > 0 else None, cfg.checkpoint_every, snapshot)
        method = attach_validation(prep, spec.method_cls(mcfg), cfg.seed)
        res, model = bench_.run_method(prep, method, seed=cfg.seed, split="test", hooks=hooks)
    ev = bench_.evaluate(prep, model, split="test", rte=res.wall_time_s)
    write_eval(out, bench_.prefix, ev)
    bench_.save_model(prep, model, out)
    atomic_write_text(out / "experiment.toml", config_to_toml({"experiment": config_to_dict(exp)}))
    atomic_write_text(out / "method.toml", config_to_toml({"method": config_to_dict(mcfg)}))
    atomic_write_json(out / "history.json", history_dicts(res.history))
    summary = summary_of(ev)
    record = {"key": key, "method": spec.name, "status": res.status, "steps": res.steps,
              "grad_evals": res.info.get("grad_evals"), "wall_time_s": res.wall_time_s, "metrics": summary,
              **{k: v for k, v in res.info.items() if k.startswith("grad_evals_")},
              # the options a method resolved at run time (OFMU: its forget objective and family defaults)
              **{k: res.info[k] for k in RESOLVED_INFO if isinstance(res.info.get(k), (str, int, float))}}
    atomic_write_record(record_path, record)
    shutil.rmtree(ckpt, ignore_errors=True)  # the finished run supersedes the mid-run checkpoint
    note = ""
    if res.status == "non_finite":
        note = (f"\nstatus: non_finite (the loss became non-finite after {res.steps} of {mcfg.steps} steps: "
                "the run diverged; try a smaller lr)")
    elif res.status != "completed":
        note = f"\nstatus: {res.status}"
    shown = ", ".join(f"{k} {_fmt(summary.get(k))}" for k in bench_.headline)
    msg = (f"{spec.name} on {bench_.describe(exp)} (seed {cfg.seed}): {shown}, RTE {res.wall_time_s:.2f}s{note}"
           f"\nwrote {summary_path}")
    return RunOutcome(0 if res.status == "completed" else 1, msg, out, record)


def _evaluate(cfg: RunConfig, bench_: Benchmark, out: Path) -> RunOutcome:
    if not cfg.model:
        raise ConfigError("--model: expected a model directory, received none")
    exp = bench_.experiment(cfg, cfg.seed)
    prep = bench_.prepare(exp, cfg)
    model = bench_.load_model(prep, Path(cfg.model))
    ev = bench_.evaluate(prep, model, split="test")
    p1, _ = write_eval(out, bench_.prefix, ev)
    summary = summary_of(ev)
    shown = ", ".join(f"{k} {_fmt(summary.get(k))}" for k in bench_.headline if k in summary)
    return RunOutcome(0, f"{shown}\nwrote {p1}", out, {"summary": summary})


def _bench(cfg: RunConfig, bench_: Benchmark, out: Path) -> RunOutcome:
    from .bench_loop import run_comparison

    return run_comparison(cfg, bench_, out)


"""The vision experiment runner: config → data → original model → Retrain → method → metrics → artifacts.

The original model (trained on the full training split) and the Retrain model (trained from scratch on
the retain split) are cached on disk as safetensors files named by a SHA-256 hash of their recipe (data,
scenario, split seed, architecture, training hyper-parameters, seed), with a JSON side file holding the
recipe and the training wall-clock time; repeated runs load them instead of retraining. Loading uses
``safetensors`` only (no pickle).

Example:
    >>> cfg = VisionExperimentConfig(scenario="class:3", train_steps=10)
    >>> cfg.scenario, cfg.model
    ('class:3', 'mlp')
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._config import check_choice, check_range, config_to_dict
from .._io import atomic_write_bytes, atomic_write_json, read_json
from ..errors import CheckpointError, ConfigError, DataError
from .data.common import BatchStream, ClassificationSplits, ForgetScenario, make_scenario, parse_scenario
from .methods.base import MethodResult, StepRecord, UnlearnContext, UnlearningMethod
from .metrics.vision import GAP_METRICS, gaps, mia_efficacy, predict
from .models.vision import MODEL_NAMES, ClassifierAdapter, build_model

__all__ = [
    "VisionData",
    "VisionExperimentConfig",
    "evaluate",
    "load_data",
    "load_state",
    "reference_models",
    "resolve_device",
    "run_method",
    "save_state",
    "selection_score",
    "train_classifier",
    "write_eval",
]

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
BENCHMARKS = ("digits", "cifar10")


@dataclass(frozen=True)
class VisionExperimentConfig:
    """One vision unlearning experiment (stored as ``experiment.toml`` with every result).

    Attributes:
        benchmark: ``"digits"`` (bundled) or ``"cifar10"`` (local pickle batches at ``data_path``).
        scenario: ``"random<P>"`` or ``"class:K"``.
        data_path: CIFAR-10 directory (ignored for digits).
        data_seed: seed of the train/val/test split, the random forget set and the MIA shadow draw.
        data_limit: cap on CIFAR-10 training images (0 = all).
        model: ``"mlp"``, ``"cnn"`` or ``"resnet18"``.
        hidden: hidden width of the model.
        train_steps, train_lr, train_batch_size: training recipe of the original and Retrain models.
        batch_size: unlearning mini-batch size (forget and retain).
        seed: seed of the original/Retrain initialisation and training and of the unlearning run.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        cache_dir: model cache ('' = ``$OFMU_CACHE_DIR`` or ``~/.cache/ofmu_opt``).
        diagnostics_every: record gradient diagnostics every this many steps (0 = never).
    """

    benchmark: str = "digits"
    scenario: str = "random10"
    data_path: str = ""
    data_seed: int = 0
    data_limit: int = 0
    model: str = "mlp"
    hidden: int = 128
    train_steps: int = 600
    train_lr: float = 1e-3
    train_batch_size: int = 64
    batch_size: int = 32
    seed: int = 0
    device: str = "cpu"
    cache_dir: str = ""
    diagnostics_every: int = 1

    def __post_init__(self) -> None:
        check_choice("benchmark", self.benchmark, BENCHMARKS)
        parse_scenario(self.scenario)
        check_choice("model", self.model, MODEL_NAMES)
        check_choice("device", self.device, ("cpu", "cuda", "auto"))
        for name in ("data_seed", "seed", "data_limit", "diagnostics_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name}: expected a non-negative integer, received {v!r}")
        for name in ("hidden", "train_steps", "train_batch_size", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, received {v!r}")
        check_range("train_lr", self.train_lr, low=0.0, low_open=True)
        if self.benchmark == "cifar10" and not self.data_path:
            raise ConfigError("data_path: expected the CIFAR-10 directory for benchmark 'cifar10', received ''")
        if self.benchmark == "digits" and self.model == "resnet18":
            raise ConfigError("model: resnet18 needs 32×32 images (cifar10); use 'mlp' or 'cnn' for digits")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available else CPU; ``"cuda"`` without a GPU raises ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available")
    check_choice("device", name, ("cpu", "cuda"))
    return torch.device(name)


def _cache_dir(cfg: VisionExperimentConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    env = os.environ.get("OFMU_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ofmu_opt"


@dataclass
class VisionData:
    """Tensors of one experiment's splits and forget scenario (CPU)."""

    splits: ClassificationSplits
    scenario: ForgetScenario
    x_forget: torch.Tensor
    y_forget: torch.Tensor
    x_retain: torch.Tensor
    y_retain: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    shadow_test: np.ndarray[Any, Any]
    shadow_val: np.ndarray[Any, Any]
    fingerprint: str = ""
    forget_idx: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def test_keep(self) -> np.ndarray[Any, Any]:
        return self.scenario.test_keep

    @property
    def val_keep(self) -> np.ndarray[Any, Any]:
        return self.scenario.val_keep


def load_data(cfg: VisionExperimentConfig) -> VisionData:
    """Load the data set, choose the forget set and the MIA shadow members (all seeded by ``data_seed``)."""
    flat = cfg.model == "mlp"
    if cfg.benchmark == "digits":
        from .data.digits import load_digits_splits

        splits = load_digits_splits(seed=cfg.data_seed, flat=flat)
    else:
        from .data.cifar10 import load_cifar10_splits

        splits = load_cifar10_splits(cfg.data_path, seed=cfg.data_seed, limit=cfg.data_limit or None)
        if flat:
            n = int(np.prod(splits.input_shape))
            splits = ClassificationSplits(
                splits.name,
                splits.x_train.reshape(-1, n),
                splits.y_train,
                splits.x_val.reshape(-1, n),
                splits.y_val,
                splits.x_test.reshape(-1, n),
                splits.y_test,
                splits.num_classes,
                (n,),
            )
    sc = make_scenario(splits, parse_scenario(cfg.scenario), seed=cfg.data_seed)
    rng = np.random.default_rng([cfg.data_seed, 7])
    n_ret = sc.retain_idx.size

    def shadow(n: int) -> np.ndarray[Any, Any]:
        return np.sort(rng.choice(n_ret, size=min(n, n_ret), replace=False))

    t = torch.from_numpy
    h = hashlib.sha256()
    for a in (splits.x_train, splits.y_train, splits.x_test, splits.y_test):
        h.update(np.ascontiguousarray(a).tobytes())
    return VisionData(
        splits,
        sc,
        t(splits.x_train[sc.forget_idx]),
        t(splits.y_train[sc.forget_idx]),
        t(splits.x_train[sc.retain_idx]),
        t(splits.y_train[sc.retain_idx]),
        t(splits.x_test),
        t(splits.y_test),
        t(splits.x_val),
        t(splits.y_val),
        shadow(splits.y_test.size),
        shadow(splits.y_val.size),
        h.hexdigest()[:16],
        sc.forget_idx,
    )


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> float:
    """Train ``model`` with Adam on ``(x, y)`` for ``steps`` mini-batches; returns the wall-clock time."""
    stream = BatchStream(x, y, batch_size, seed=seed, device=device)
    adapter = ClassifierAdapter(int(y.max()) + 1 if y.numel() else 2)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        b = next(stream)
        loss = adapter.per_example_nll(model, b).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if progress is not None:
            progress(1)
    return time.perf_counter() - t0


def save_state(model: nn.Module, path: Path, metadata: Mapping[str, str] | None = None) -> Path:
    """Save ``model``'s state dict as safetensors, atomically."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return atomic_write_bytes(path, save(state, metadata=dict(metadata or {})))


def load_state(model: nn.Module, path: Path) -> nn.Module:
    """Load a safetensors state dict into ``model`` (strict); any mismatch raises CheckpointError."""
    from safetensors.torch import load

    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = load(path.read_bytes())
    except Exception as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a valid safetensors file: {exc}") from exc
    own = model.state_dict()
    if set(state) != set(own):
        missing = sorted(set(own) - set(state))[:3]
        extra = sorted(set(state) - set(own))[:3]
        raise CheckpointError(f"checkpoint {str(path)!r} does not match the model: missing {missing}, extra {extra}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: tensor {k!r} expected shape {tuple(own[k].shape)}, "
                f"received {tuple(v.shape)}"
            )
    model.load_state_dict(state)
    return model


def _recipe(cfg: VisionExperimentConfig, data: VisionData, kind: str) -> dict[str, Any]:
    r: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "kind": kind,
        "benchmark": cfg.benchmark,
        "data_fingerprint": data.fingerprint,
        "data_seed": cfg.data_seed,
        "model": cfg.model,
        "hidden": cfg.hidden,
        "train_steps": cfg.train_steps,
        "train_lr": cfg.train_lr,
        "train_batch_size": cfg.train_batch_size,
        "seed": cfg.seed,
    }
    if kind == "retrain":
        r["scenario"] = cfg.scenario
    return r


def _fresh(cfg: VisionExperimentConfig, data: VisionData, device: torch.device, seed: int) -> nn.Module:
    return build_model(cfg.model, data.splits.input_shape, data.splits.num_classes, seed, cfg.hidden, device)


def _cached_model(
    cfg: VisionExperimentConfig,
    data: VisionData,
    kind: str,
    device: torch.device,
    progress_factory: Callable[[str, int], Callable[[int], None] | None] | None,
) -> tuple[nn.Module, float]:
    recipe = _recipe(cfg, data, kind)
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:24]
    d = _cache_dir(cfg)
    wpath, mpath = d / f"{kind}-{key}.safetensors", d / f"{kind}-{key}.json"
    model = _fresh(cfg, data, device, cfg.seed)
    if wpath.is_file() and mpath.is_file():
        meta = read_json(mpath, "model cache metadata")
        if isinstance(meta, dict) and meta.get("recipe") == recipe:
            try:
                load_state(model, wpath)
                log.info("loaded cached %s model %s", kind, wpath.name)
                return model, float(meta.get("train_time_s", float("nan")))
            except CheckpointError as exc:
                log.warning("ignoring unreadable cached model (%s); retraining", exc)
    if kind == "original":
        x = torch.cat([data.x_forget, data.x_retain])
        y = torch.cat([data.y_forget, data.y_retain])
    else:
        x, y = data.x_retain, data.y_retain
    tick = progress_factory(f"train {kind}", cfg.train_steps) if progress_factory else None
    elapsed = train_classifier(
        model,
        x,
        y,
        steps=cfg.train_steps,
        lr=cfg.train_lr,
        batch_size=cfg.train_batch_size,
        seed=cfg.seed + (0 if kind == "original" else 1),
        device=device,
        progress=tick,
    )
    save_state(model, wpath, {"kind": kind})
    atomic_write_json(mpath, {"recipe": recipe, "train_time_s": elapsed})
    return model, elapsed


def reference_models(
    cfg: VisionExperimentConfig,
    data: VisionData,
    device: torch.device,
    progress_factory: Callable[[str, int], Callable[[int], None] | None] | None = None,
) -> tuple[nn.Module, nn.Module, float]:
    """The original and Retrain models (from the cache, or trained and cached) and Retrain's train time."""
    original, _ = _cached_model(cfg, data, "original", device, progress_factory)
    retrain, t = _cached_model(cfg, data, "retrain", device, progress_factory)
    return original, retrain, t


def evaluate(
    model: nn.Module, data: VisionData, device: torch.device, *, split: str = "test"
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """UA, RA, TA and MIA-efficacy of ``model`` (in %), plus per-sample values for the forget set.

    With ``split="val"`` the test split is replaced by the validation split everywhere (TA becomes
    validation accuracy, the MIA's non-members are validation samples): the selection proxy.

    Returns:
        ``(metrics, value_by_index)``; ``value_by_index`` maps ``"UA"`` and ``"MIA"`` to per-forget-sample
        dicts keyed by the sample's training index. A model with non-finite outputs (a diverged run) gets
        NaN metrics (``member_pred`` −1) instead of an error.
    """
    check_choice("split", split, ("test", "val"))
    x_e, y_e = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    keep = data.test_keep if split == "test" else data.val_keep
    shadow = data.shadow_test if split == "test" else data.shadow_val
    pred_f, prob_f = predict(model, data.x_forget, device=device)
    pred_r, prob_r = predict(model, data.x_retain, device=device)
    pred_e, prob_e = predict(model, x_e, device=device)
    yf, yr, ye = data.y_forget.numpy(), data.y_retain.numpy(), y_e.numpy()
    conf_f = prob_f[np.arange(yf.size), yf]
    conf_r = prob_r[np.arange(yr.size), yr]
    conf_e = prob_e[np.arange(ye.size), ye]
    correct_f = pred_f == yf
    if not keep.any():
        raise DataError("evaluate: no evaluation samples left after removing the forgotten class")
    if not all(np.isfinite(p).all() for p in (prob_f, prob_r, prob_e)):
        # a diverged model (non-finite weights or outputs): no metric means anything; report NaN, never crash
        log.warning("evaluate: the model's outputs are not finite; every metric is NaN")
        nan = float("nan")
        metrics = {"UA": nan, "RA": nan, "TA": nan, "MIA": nan}
        mia_pred = np.full(yf.size, -1, dtype=np.int64)
        conf_f = np.full(yf.size, nan)
    else:
        mia, mia_pred = mia_efficacy(conf_r[shadow], conf_e, conf_f)
        metrics = {
            "UA": float(100.0 * (1.0 - correct_f.mean())),
            "RA": float(100.0 * np.mean(pred_r == yr)),
            "TA": float(100.0 * np.mean(pred_e[keep] == ye[keep])),
            "MIA": mia,
        }
    idx = data.forget_idx.tolist()
    per: dict[str, dict[str, Any]] = {
        "UA": {str(i): {"forgotten": int(not c)} for i, c in zip(idx, correct_f.tolist(), strict=True)},
        "MIA": {
            str(i): {"member_pred": int(p), "confidence": float(c)}
            for i, p, c in zip(idx, mia_pred.tolist(), conf_f.tolist(), strict=True)
        },
    }
    return metrics, per


def selection_score(val_metrics: Mapping[str, float], retrain_val_metrics: Mapping[str, float]) -> float:
    """Average gap to Retrain over validation-proxy UA, RA, TA (val accuracy) and MIA; lower is better."""
    return gaps(val_metrics, retrain_val_metrics)["avg_gap"]


def run_method(
    method: UnlearningMethod,
    original: nn.Module,
    data: VisionData,
    cfg: VisionExperimentConfig,
    device: torch.device,
    *,
    seed: int,
    progress: Callable[[int], None] | None = None,
    checkpoint: Callable[[int, nn.Module], None] | None = None,
    checkpoint_every: int = 0,
    snapshot: Callable[[int, dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> MethodResult:
    """Run ``method`` on a copy of ``original`` with seeded forget/retain streams and diagnostics on.

    ``snapshot``/``resume`` are the context's mid-run snapshot hook and the snapshot to continue from
    (see :mod:`ofmu_opt.unlearning.methods.base`).
    """
    model = copy.deepcopy(original).to(device)
    reference = copy.deepcopy(original).to(device).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    records: list[StepRecord] = []
    ctx = UnlearnContext(
        model=model,
        reference=reference,
        adapter=ClassifierAdapter(data.splits.num_classes),
        forget=BatchStream(data.x_forget, data.y_forget, cfg.batch_size, seed=seed * 2 + 11, device=device),
        retain=BatchStream(data.x_retain, data.y_retain, cfg.batch_size, seed=seed * 2 + 12, device=device),
        seed=seed,
        device=device,
        diagnostics=records.append,
        diagnostics_every=cfg.diagnostics_every,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        progress=progress,
        fresh_model=lambda: _fresh(cfg, data, device, seed + 1),
        snapshot=snapshot,
        resume=resume,
    )
    return method.run(ctx)


def write_eval(
    out: Path,
    prefix: str,
    metrics: Mapping[str, float],
    per_sample: Mapping[str, Mapping[str, Any]],
    retrain_metrics: Mapping[str, float] | None,
) -> tuple[Path, Path]:
    """Write ``<PREFIX>_EVAL.json`` (open-unlearning schema) and ``<PREFIX>_SUMMARY.json``."""
    summary: dict[str, float] = dict(metrics)
    if retrain_metrics is not None:
        g = gaps(metrics, retrain_metrics)
        summary.update({f"gap_{k}": g[k] for k in GAP_METRICS})
        summary["avg_gap"] = g["avg_gap"]
    ev = {k: {"agg_value": v, "value_by_index": dict(per_sample.get(k, {}))} for k, v in summary.items()}
    p1 = atomic_write_json(out / f"{prefix}_EVAL.json", ev)
    p2 = atomic_write_json(out / f"{prefix}_SUMMARY.json", summary)
    return p1, p2


def experiment_dict(cfg: VisionExperimentConfig) -> dict[str, Any]:
    """The config as a plain dict (for JSON/TOML artifacts)."""
    return config_to_dict(cfg)

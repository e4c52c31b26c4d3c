"""Vision reference models and runs: training, safetensors state files, the recipe-keyed model cache.

The original model (trained on the full training split) and the Retrain model (trained from scratch on
the retain split) are cached on disk as safetensors files named by a SHA-256 hash of their recipe (data,
scenario, split seed, architecture, training hyper-parameters, seed), with a JSON side file holding the
recipe and the training wall-clock time; repeated runs load them instead of retraining. Loading uses
``safetensors`` only (no pickle). Re-exported by :mod:`ofmu_opt.unlearning.experiment`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..._io import atomic_write_bytes, atomic_write_json, read_json
from ...errors import CheckpointError
from ..data.common import BatchStream
from ..methods.base import MethodResult, StepRecord, UnlearnContext, UnlearningMethod
from ..models.vision import ClassifierAdapter, build_model
from .base import count_gradient_evaluations

if TYPE_CHECKING:
    from ..experiment import VisionData, VisionExperimentConfig

__all__ = ["load_state", "reference_models", "run_method", "save_state", "train_classifier"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def _cache(cfg: VisionExperimentConfig) -> Path:
    from ..experiment import cache_dir

    return cache_dir(cfg)


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
        # the original model trains on forget + retain in that order, so its weights depend on the scenario
        # too: without it in the key, the cached original was whichever scenario trained it first
        "scenario": cfg.scenario,
    }
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
    d = _cache(cfg)
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
        forget_scope="class" if data.scenario.spec.kind == "class" else "random",
    )
    with count_gradient_evaluations(model) as n_grad:
        res = method.run(ctx)
    res.info.setdefault("grad_evals", n_grad[0])
    return res

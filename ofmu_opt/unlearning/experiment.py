"""The vision experiment: config → data and forget scenario → original / Retrain models → run → metrics.

The configuration, the data and the evaluation live here; training, the safetensors model cache and
the method run are in :mod:`ofmu_opt.unlearning.benchmarks.vision_models` (re-exported), and the
``unlearn | bench | eval`` commands go through :mod:`ofmu_opt.unlearning.benchmarks.vision`.

Example:
    >>> cfg = VisionExperimentConfig(scenario="class:3", train_steps=10)
    >>> cfg.scenario, cfg.model
    ('class:3', 'mlp')
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from annotated_types import Ge, Gt, Le
from torch import nn

from .._config import Validated, check_choice
from ..errors import ConfigError
from .benchmarks.base import cache_root, resolve_device
from .benchmarks.vision_models import load_state, reference_models, run_method, save_state, train_classifier
from .data.common import ClassificationSplits, ForgetScenario, make_scenario, parse_scenario
from .metrics.vision import VisionEvalContext, evaluate_vision, gaps

__all__ = [
    "VisionData",
    "VisionExperimentConfig",
    "cache_dir",
    "evaluate",
    "load_data",
    "load_state",
    "reference_models",
    "resolve_device",
    "run_method",
    "save_state",
    "selection_score",
    "train_classifier",
]

log = logging.getLogger(__name__)

Seed = Annotated[int, Ge(0), Le(2**32 - 1)]


@dataclass(frozen=True)
class VisionExperimentConfig(Validated):
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
        svc_gamma: the MIA-efficacy SVC's RBF width rule: ``"auto"`` (1/n_features, the default) or
            ``"scale"`` (scikit-learn's default, 1/(n_features·Var x)); see docs/deviations.md.
    """

    benchmark: Literal["digits", "cifar10"] = "digits"
    scenario: str = "random10"
    data_path: str = ""
    data_seed: Seed = 0
    data_limit: Annotated[int, Ge(0), Le(10**8)] = 0
    model: Literal["mlp", "cnn", "resnet18"] = "mlp"
    hidden: Annotated[int, Ge(1), Le(65_536)] = 128
    train_steps: Annotated[int, Ge(1), Le(10**8)] = 600
    train_lr: Annotated[float, Gt(0.0), Le(1e3)] = 1e-3
    train_batch_size: Annotated[int, Ge(1), Le(1 << 20)] = 64
    batch_size: Annotated[int, Ge(1), Le(1 << 20)] = 32
    seed: Seed = 0
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    cache_dir: str = ""
    diagnostics_every: Annotated[int, Ge(0), Le(10**9)] = 1
    svc_gamma: Literal["auto", "scale"] = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_scenario(self.scenario)
        if self.benchmark == "cifar10" and not self.data_path:
            raise ConfigError("data_path: expected the CIFAR-10 directory for benchmark 'cifar10', received ''")
        if self.benchmark == "digits" and self.model == "resnet18":
            raise ConfigError("model: resnet18 needs 32×32 images (cifar10); use 'mlp' or 'cnn' for digits")


def cache_dir(cfg: VisionExperimentConfig) -> Path:
    """The model cache: ``cache_dir``, else ``$OFMU_CACHE_DIR``, else ``~/.cache/ofmu_opt``."""
    return cache_root(cfg.cache_dir, "OFMU_CACHE_DIR", Path.home() / ".cache" / "ofmu_opt")


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
    svc_gamma: str = "auto"

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
        cfg.svc_gamma,
    )


def evaluate(
    model: nn.Module, data: VisionData, device: torch.device, *, split: str = "test"
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """UA, RA, TA and MIA-efficacy of ``model`` (in %), plus per-sample values for the forget set.

    With ``split="val"`` the test split is replaced by the validation split everywhere (TA becomes
    validation accuracy, the MIA's non-members are validation samples): the selection proxy. The metrics
    come from the vision family of the metric registry (:func:`~ofmu_opt.unlearning.metrics.vision.evaluate_vision`).

    Returns:
        ``(metrics, value_by_index)``; ``value_by_index`` maps ``"UA"`` and ``"MIA"`` to per-forget-sample
        dicts keyed by the sample's training index. A model with non-finite outputs (a diverged run) gets
        NaN metrics (``member_pred`` −1) instead of an error.
    """
    check_choice("split", split, ("test", "val"))
    test = split == "test"
    ctx = VisionEvalContext(
        model, data.x_forget, data.y_forget, data.x_retain, data.y_retain,
        data.x_test if test else data.x_val, data.y_test if test else data.y_val,
        data.test_keep if test else data.val_keep, data.shadow_test if test else data.shadow_val,
        data.forget_idx, device, svc_gamma=data.svc_gamma,
    )
    return evaluate_vision(ctx)


def selection_score(val_metrics: Mapping[str, float], retrain_val_metrics: Mapping[str, float]) -> float:
    """Average gap to Retrain over validation-proxy UA, RA, TA (val accuracy) and MIA; lower is better."""
    return gaps(val_metrics, retrain_val_metrics)["avg_gap"]

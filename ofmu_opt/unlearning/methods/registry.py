"""Registry of unlearning methods: names → (module, method class, config class), imported lazily.

``ofmu`` lives in ``ofmu_opt.unlearning.methods.ofmu`` (classes ``OfmuMethod`` and ``OfmuConfig``,
built on the generic solver); while that module is missing, asking for it raises
:class:`MethodUnavailableError` (a :class:`~ofmu_opt.errors.ConfigError`) so a benchmark can skip it.

Examples:
    >>> "graddiff" in list_methods()
    True
    >>> m = make_method("ga", {"lr": "1e-4", "steps": 3})
    >>> (m.name, m.config.steps)
    ('ga', 3)
    >>> make_method("nope")
    Traceback (most recent call last):
    ...
    ofmu_opt.errors.ConfigError: method: expected one of ...
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..._config import config_from_dict
from ...errors import ConfigError
from .base import UnlearningMethod

__all__ = ["MethodSpec", "MethodUnavailableError", "get_method", "list_methods", "make_method"]

log = logging.getLogger(__name__)

_PKG = "ofmu_opt.unlearning.methods"
_BOTH = ("classifier", "lm")

# name: (module, method class, config class, tasks it applies to)
_TABLE: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "retrain": ("finetune", "RetrainMethod", "RetrainConfig", _BOTH),
    "ft": ("finetune", "FTMethod", "FTConfig", _BOTH),
    "ga": ("ascent", "GAMethod", "GAConfig", _BOTH),
    "graddiff": ("ascent", "GradDiffMethod", "GradDiffConfig", _BOTH),
    "npo": ("ascent", "NPOMethod", "NPOConfig", _BOTH),
    "simnpo": ("ascent", "SimNPOMethod", "SimNPOConfig", _BOTH),
    "idk_dpo": ("ascent", "IdkDPOMethod", "IdkDPOConfig", ("lm",)),
    "rmu": ("representation", "RMUMethod", "RMUConfig", _BOTH),
    "rl": ("finetune", "RLMethod", "RLConfig", ("classifier",)),
    "salun": ("finetune", "SalUnMethod", "SalUnConfig", ("classifier",)),
    "l1_sparse": ("finetune", "L1SparseMethod", "L1SparseConfig", _BOTH),
    "blur": ("projection", "BlurMethod", "BlurConfig", _BOTH),
    "ngdiff": ("projection", "NGDiffMethod", "NGDiffConfig", _BOTH),
    "ofmu": ("ofmu", "OfmuMethod", "OfmuConfig", _BOTH),
}


class MethodUnavailableError(ConfigError):
    """A registered method whose module is not installed yet (``ofmu`` before its module exists)."""


@dataclass(frozen=True)
class MethodSpec:
    """A resolved registry entry."""

    name: str
    method_cls: type[Any]
    config_cls: type[Any]
    tasks: tuple[str, ...]


def list_methods(task: str | None = None) -> list[str]:
    """Registered method names (all, or those applying to ``task``: ``"classifier"`` or ``"lm"``)."""
    if task is not None and task not in _BOTH:
        raise ConfigError(f"task: expected one of {', '.join(_BOTH)}, received {task!r}")
    return [n for n, row in _TABLE.items() if task is None or task in row[3]]


def get_method(name: str) -> MethodSpec:
    """Resolve ``name`` (importing its module).

    Raises:
        ConfigError: unknown name (the message lists the known ones).
        MethodUnavailableError: known name whose module is not installed.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _TABLE:
        raise ConfigError(f"method: expected one of {', '.join(_TABLE)}, received {name!r}")
    mod_name, cls_name, cfg_name, tasks = _TABLE[key]
    full = f"{_PKG}.{mod_name}"
    try:
        module = importlib.import_module(full)
    except ModuleNotFoundError as exc:
        if exc.name != full:
            raise
        raise MethodUnavailableError(f"method {key!r}: its module {full} is not available yet") from exc
    try:
        return MethodSpec(key, getattr(module, cls_name), getattr(module, cfg_name), tasks)
    except AttributeError as exc:
        raise MethodUnavailableError(f"method {key!r}: {full} lacks {cls_name} or {cfg_name}") from exc


def make_method(name: str, options: Mapping[str, Any] | None = None) -> UnlearningMethod:
    """Build method ``name`` with its config from ``options`` (unknown keys raise ConfigError)."""
    spec = get_method(name)
    cfg = config_from_dict(spec.config_cls, dict(options or {}))
    method: UnlearningMethod = spec.method_cls(cfg)
    return method

"""Registry of unlearning benchmarks: name → a :class:`~ofmu_opt.unlearning.benchmarks.base.Benchmark`.

One module per family implements the protocol (:mod:`.vision`: digits, CIFAR-10; :mod:`.tofu`:
TinyTOFU, real TOFU files; :mod:`.wmdp`: TinyWMDP, MCQ files); a row here names the object. Modules
are imported only when their benchmark is asked for (torch and transformers stay unimported until then).

Example:
    >>> list_benchmarks()
    ['digits', 'cifar10', 'tinytofu', 'tofu', 'tinywmdp', 'mcq']
    >>> get_benchmark("mnist")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ofmu_opt.errors.ConfigError: benchmark: expected one of digits, cifar10, ..., received 'mnist'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ...errors import ConfigError

if TYPE_CHECKING:
    from .base import Benchmark

__all__ = ["BENCHMARKS", "get_benchmark", "list_benchmarks"]

BENCHMARKS: dict[str, str] = {
    "digits": "vision:DIGITS",
    "cifar10": "vision:CIFAR10",
    "tinytofu": "tofu:TINYTOFU",
    "tofu": "tofu:TOFU",
    "tinywmdp": "wmdp:TINYWMDP",
    "mcq": "wmdp:MCQ",  # `ofmu eval --benchmark mcq --model DIR --data FILE`
}


def list_benchmarks() -> list[str]:
    """Registered benchmark names."""
    return list(BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark registered as ``name`` (imports its module).

    Raises:
        ConfigError: unknown name (the message lists the registered ones).
    """
    if name not in BENCHMARKS:
        raise ConfigError(f"benchmark: expected one of {', '.join(BENCHMARKS)}, received {name!r}")
    module, attr = BENCHMARKS[name].split(":")
    bench: Benchmark = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    return bench

"""Registry of unlearning benchmarks: name → module, imported only when asked for.

Each benchmark module exposes the command entry points ``unlearn_main(args) -> int`` and
``bench_main(args) -> int`` and optionally ``eval_main(args) -> int``, where ``args`` is the
``argparse.Namespace`` of ``ofmu unlearn|bench|eval`` (options: benchmark, scenario, split, method,
methods, config, seed, seeds, budget, quick, out, resume, model, data, retain_logs, device, option,
quiet, threads).

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
import importlib.util
from types import ModuleType

from ..errors import ConfigError

__all__ = ["BENCHMARKS", "get_benchmark", "list_benchmarks"]

BENCHMARKS: dict[str, str] = {
    "digits": "ofmu_opt.unlearning.vision_bench",
    "cifar10": "ofmu_opt.unlearning.vision_bench",
    "tinytofu": "ofmu_opt.unlearning.lm_bench",
    "tofu": "ofmu_opt.unlearning.lm_bench",
    "tinywmdp": "ofmu_opt.unlearning.wmdp_bench",
    "mcq": "ofmu_opt.unlearning.wmdp_bench",  # `ofmu eval --benchmark mcq --model DIR --data FILE`
}


def list_benchmarks() -> list[str]:
    """Registered benchmark names (some may not be installed yet)."""
    return list(BENCHMARKS)


def get_benchmark(name: str) -> ModuleType:
    """Import and return the module of benchmark ``name``.

    Raises:
        ConfigError: unknown name, or its module is not installed yet (the message lists the names).
    """
    if name not in BENCHMARKS:
        raise ConfigError(f"benchmark: expected one of {', '.join(BENCHMARKS)}, received {name!r}")
    mod = BENCHMARKS[name]
    try:
        return importlib.import_module(mod)
    except ModuleNotFoundError as exc:
        if exc.name != mod:
            raise
        raise ConfigError(
            f"benchmark {name!r}: its module {mod} is not available yet; available: "
            + ", ".join(n for n, m in BENCHMARKS.items() if importlib.util.find_spec(m) is not None)
        ) from exc

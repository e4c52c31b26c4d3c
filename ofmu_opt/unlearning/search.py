"""Method options and the equal-budget hyper-parameter search shared by every benchmark.

Where a method's options come from (later wins): the benchmark's defaults
(:meth:`~ofmu_opt.unlearning.benchmarks.base.Benchmark.method_defaults`, e.g. ``steps`` and the
benchmark ``lr``), then ``--config`` (top-level keys and ``[method]`` for a single-method run,
``[methods.NAME]``), then ``--option NAME=VALUE`` / ``--option METHOD.NAME=VALUE``. Every key is
checked: an unknown method prefix, a plain option no method of the run has, or an unknown TOML table is
a :class:`~ofmu_opt.errors.ConfigError`, never silently ignored.

The search: candidate 0 is the method's defaults with the benchmark's defaults and the user's options;
candidates 1..B-1 are seeded draws from the config's ``SEARCH_SPACE`` (``"log"``, ``"uniform"``,
``"int"`` or a categorical ``"choice"``), never touching a key the user fixed. A benchmark may narrow a
choice to the values that apply to it (e.g. OFMU's forget objective: only the objectives of its task,
:meth:`~ofmu_opt.unlearning.benchmarks.base.Benchmark.search_choices`).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._config import config_from_dict
from ..errors import ConfigError
from .methods.registry import MethodUnavailableError, get_method, list_methods

__all__ = [
    "applicable_methods", "check_options", "method_options", "resolve_methods", "sample_configs", "split_options",
]

EXPERIMENT = "experiment"


def split_options(options: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(experiment options, method options)`` of the ``--option`` pairs (prefix ``experiment.`` stripped)."""
    exp = {k.split(".", 1)[1]: v for k, v in options.items() if k.startswith(EXPERIMENT + ".")}
    rest = {k: v for k, v in options.items() if not k.startswith(EXPERIMENT + ".")}
    return exp, rest


def _fields(name: str) -> set[str]:
    try:
        return {f.name for f in dataclasses.fields(get_method(name).config_cls)}
    except MethodUnavailableError:
        return set()


def check_options(options: Mapping[str, str], toml: Mapping[str, Any], methods: Sequence[str], single: bool) -> None:
    """Reject every option and TOML key no method of the run (``methods``) would read.

    Raises:
        ConfigError: a prefix that is neither ``experiment`` nor a method of the run (the message lists
            the valid prefixes), a plain option that no method of the run has, an unknown TOML table.
    """
    valid = ", ".join([f"'{EXPERIMENT}.'", *(f"'{m}.'" for m in methods)])
    fields: set[str] = set()
    for m in methods:
        fields |= _fields(m)
    for key in options:
        prefix, dot, rest = key.partition(".")
        if dot and prefix == EXPERIMENT:
            continue
        if dot:
            if prefix not in methods:
                known = " (a known method, but not one this run uses)" if prefix in list_methods() else ""
                raise ConfigError(f"--option {key!r}: unknown prefix {prefix!r}{known}; valid prefixes: {valid}")
            if rest not in _fields(prefix) and _fields(prefix):
                raise ConfigError(
                    f"--option {key!r}: {prefix} has no option {rest!r}; valid options: "
                    f"{', '.join(sorted(_fields(prefix)))}"
                )
        elif not single and key not in fields:
            raise ConfigError(
                f"--option {key!r}: no method of this run has this option; known: {', '.join(sorted(fields))}"
            )
    allowed_tables = {EXPERIMENT, "methods"} | ({"method"} if single else set())
    for key, value in toml.items():
        if isinstance(value, Mapping) and key not in allowed_tables:
            raise ConfigError(f"--config: unknown table [{key}]; expected one of "
                              + ", ".join(f"[{t}]" for t in sorted(allowed_tables)))
        if not isinstance(value, Mapping) and not single:
            raise ConfigError(f"--config: top-level key {key!r} applies to a single-method run only; "
                              "use [methods.NAME] in a comparison")
    for name in (toml.get("methods") or {}):
        if name not in methods:
            raise ConfigError(f"--config: [methods.{name}]: {name!r} is not a method of this run; "
                              f"methods: {', '.join(methods)}")


def method_options(
    name: str, options: Mapping[str, str], toml: Mapping[str, Any], single: bool
) -> dict[str, Any]:
    """The user's options for method ``name`` (TOML then ``--option``); see the module docstring."""
    opts: dict[str, Any] = {}
    if single:
        opts.update({k: v for k, v in toml.items() if not isinstance(v, Mapping)})
        opts.update(toml.get("method") or {})
    opts.update((toml.get("methods") or {}).get(name) or {})
    fields = _fields(name)
    for key, value in options.items():
        prefix, dot, rest = key.partition(".")
        if dot:
            if prefix == name:
                opts[rest] = value
        elif single or key in fields:
            opts[key] = value
    return opts


def applicable_methods(task: str) -> list[str]:
    """The methods that apply to ``task`` (``"classifier"`` or ``"lm"``); Retrain only for classifiers."""
    return [m for m in list_methods(task) if m != "retrain" or task == "classifier"]


def resolve_methods(spec: str, default: Sequence[str], task: str) -> list[str]:
    """``--methods``: ``"all"`` (the benchmark's ``default`` list) or a comma-separated list of methods."""
    if spec.strip().lower() == "all":
        return list(default)
    applicable = [m for m in applicable_methods(task) if m != "retrain"]
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if not names:
        raise ConfigError(f"--methods: expected 'all' or a comma-separated list, received {spec!r}")
    for n in names:
        if n not in list_methods():
            raise ConfigError(f"--methods: unknown method {n!r}; known: {', '.join(list_methods())}")
        if n not in applicable:
            raise ConfigError(f"--methods: {n!r} does not apply to this benchmark ({task}); "
                              f"choose from {', '.join(applicable)}")
    return list(dict.fromkeys(names))


def sample_configs(
    config_cls: type[Any], fixed: Mapping[str, Any], budget: int, seed: int, steps: int | None = None,
    defaults: Mapping[str, Any] | None = None, choices: Mapping[str, Sequence[Any]] | None = None,
) -> list[Any]:
    """The ``budget`` candidate configs of one method: defaults first, then seeded draws from SEARCH_SPACE.

    Keys in ``fixed`` (the user's options, and ``steps``) are never searched; ``defaults`` (the
    benchmark's, e.g. its ``lr``) apply to candidate 0 and are searched in the others. ``"log"`` draws
    log-uniformly, ``"uniform"`` uniformly, ``"int"`` uniform integers in [low, high], ``"choice"`` one of
    its values uniformly. ``choices`` narrows a ``"choice"`` key to the listed values that it also has
    (the benchmark's applicable values; a key left with no value is not searched).

    Example:
        >>> from ofmu_opt.unlearning.methods.ascent import GradDiffConfig
        >>> cs = sample_configs(GradDiffConfig, {}, budget=3, seed=0, steps=5)
        >>> (len(cs), cs[0].gamma, cs[1].steps, cs[1] == sample_configs(GradDiffConfig, {}, 3, 0, 5)[1])
        (3, 1.0, 5, True)
    """
    if budget < 1:
        raise ConfigError(f"--budget: expected >= 1, received {budget}")
    fields = {f.name for f in dataclasses.fields(config_cls)}
    base = {"steps": steps, **fixed} if steps is not None and "steps" in fields else dict(fixed)
    first = {**{k: v for k, v in (defaults or {}).items() if k in fields and k not in fixed}, **base}
    space: dict[str, tuple[Any, ...]] = dict(getattr(config_cls, "SEARCH_SPACE", {}) or {})
    if not space and "lr" in fields:
        default_lr = float(config_from_dict(config_cls, first).lr)
        space = {"lr": ("log", default_lr / 10, default_lr * 10)}
    space = {k: v for k, v in space.items() if k in fields and k not in fixed}
    for k, allowed in (choices or {}).items():
        if k in space and space[k][0] == "choice":
            ok = tuple(allowed)
            kept = tuple(v for v in space[k][1:] if v in ok)
            if kept:
                space[k] = ("choice", *kept)
            else:
                del space[k]
    rng = np.random.default_rng([seed, zlib.crc32(config_cls.__name__.encode())])
    out = [config_from_dict(config_cls, first)]
    for _ in range(budget - 1):
        draw: dict[str, Any] = dict(base)
        for k, (kind, *args) in sorted(space.items()):
            if kind == "choice":
                draw[k] = args[int(rng.integers(len(args)))]
            elif kind == "log":
                draw[k] = float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
            elif kind == "int":
                draw[k] = int(rng.integers(int(args[0]), int(args[1]) + 1))
            else:
                draw[k] = float(rng.uniform(args[0], args[1]))
        out.append(config_from_dict(config_cls, draw))
    return out

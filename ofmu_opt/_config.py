"""Configuration: frozen dataclasses whose fields pydantic validates, TOML read by tomllib, written by tomli-w.

Every configuration object in the package is a frozen dataclass. Constraints live in the annotations
(``Annotated[int, Ge(1), Le(4096)]`` with the ``annotated_types`` markers that pydantic understands), so a
config states its valid ranges once instead of in a loop of checks. :func:`config_from_dict` builds a
config from a mapping whose values may be command-line strings (unknown keys raise
:class:`~ofmu_opt.errors.ConfigError` naming the key and listing the valid ones; bad values name the
field, what was expected and what was received); :class:`Validated` is a mixin whose
``__post_init__`` checks the same constraints when a config is built directly in Python.
:func:`config_to_toml` / :func:`config_from_toml` round-trip a config through TOML.

pydantic is imported lazily (on the first validation): ``import ofmu_opt`` stays light.

Examples:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class C:
    ...     lr: float = 0.1
    ...     name: str = "a"
    >>> config_from_dict(C, {"lr": "0.5"})
    C(lr=0.5, name='a')
    >>> config_from_toml(C, config_to_toml(C(lr=2.0)))
    C(lr=2.0, name='a')
    >>> config_from_dict(C, {"lr": "fast"})
    Traceback (most recent call last):
    ...
    ofmu_opt.errors.ConfigError: lr: expected a number, received 'fast'
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = [
    "MAX_INT",
    "Validated",
    "check_choice",
    "check_range",
    "coerce_value",
    "config_from_dict",
    "config_from_toml",
    "config_to_dict",
    "config_to_toml",
    "load_toml_file",
    "parse_option_pairs",
    "validate_fields",
]

T = TypeVar("T")

MAX_INT = 2**63 - 1
"""Bound of every integer field without a tighter one (a larger value cannot reach torch or numpy)."""
MAX_TOML_BYTES = 1 << 20


def parse_option_pairs(items: typing.Iterable[str] | None, flag: str = "--option") -> dict[str, str]:
    """Split command-line ``NAME=VALUE`` strings into a dict (later pairs win); values stay strings.

    Raises:
        ConfigError: an item without ``=`` or with an empty name.

    Examples:
        >>> parse_option_pairs(["lr=0.1", "method.beta = 2"])
        {'lr': '0.1', 'method.beta': '2'}
    """
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"{flag}: expected NAME=VALUE, received {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def check_range(
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise ConfigError unless ``low <= value <= high`` (open ends when asked) and value is finite."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name}: expected a finite number, received {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{name}: expected a value {'>' if low_open else '>='} {low}, received {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        raise ConfigError(f"{name}: expected a value {'<' if high_open else '<='} {high}, received {value!r}")


def check_choice(name: str, value: object, choices: typing.Iterable[str]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    options = tuple(choices)
    if value not in options:
        raise ConfigError(f"{name}: expected one of {', '.join(map(repr, options))}, received {value!r}")


# ---------------------------------------------------------------- validation (pydantic)

_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "string": "a string",
    "tuple": "a list",
    "list": "a list",
    "finite": "a finite number",
}


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) != len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return typing.Union[tuple(args)], optional  # noqa: UP007 - a runtime-built union
    return tp, False


def _base_type(tp: Any) -> Any:
    """``Annotated[X, ...]`` → ``X``."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


@functools.lru_cache(maxsize=512)
def _adapter(tp: Any) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    base = _base_type(tp)
    if base is int and tp is base:  # an unconstrained integer still has to fit in 64 bits
        import annotated_types

        tp = typing.Annotated[int, annotated_types.Interval(ge=-MAX_INT, le=MAX_INT)]
    if dataclasses.is_dataclass(base):
        return TypeAdapter(tp)
    return TypeAdapter(tp, config=ConfigDict(arbitrary_types_allowed=True))


def _non_finite(value: Any) -> bool:
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _message(name: str, err: Mapping[str, Any], value: Any) -> str:
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind.startswith(("greater", "less")) and isinstance(value, str | float) and _non_finite(value):
        return f"{name}: expected a finite number, received {value!r}"
    for op, key in ((">=", "ge"), (">", "gt"), ("<=", "le"), ("<", "lt")):
        if key in ctx and kind.endswith(("than", "than_equal")):
            return f"{name}: expected a value {op} {ctx[key]}, received {value!r}"
    if kind == "literal_error":
        return f"{name}: expected one of {ctx.get('expected', '')}, received {value!r}"
    if kind == "finite_number":
        return f"{name}: expected a finite number, received {value!r}"
    for prefix, what in _EXPECTED.items():
        if kind.startswith(prefix):
            return f"{name}: expected {what}, received {value!r}"
    return f"{name}: {err.get('msg', 'invalid value')}, received {value!r}"


def _validate(name: str, tp: Any, value: Any) -> Any:
    from pydantic import ValidationError

    try:
        return _adapter(tp).validate_python(value)
    except ValidationError as exc:
        errs = exc.errors()
        raise ConfigError(_message(name, errs[0] if errs else {}, value)) from None
    except RecursionError:
        raise ConfigError(f"{name}: the value is nested too deeply") from None


def coerce_value(name: str, tp: Any, value: Any) -> Any:
    """Coerce ``value`` (possibly a command-line string) to the annotated type ``tp`` and check its constraints.

    Command-line conveniences on top of pydantic's lax mode: ``"none"``/``"null"`` for an optional field,
    ``"a,b"`` for a list or tuple; a boolean is never taken for a number.
    """
    base, optional = _strip_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{name}: expected {getattr(_base_type(base), '__name__', base)}, received None")
    plain = _base_type(base)
    if plain is Any:
        return value
    origin = typing.get_origin(plain)
    if origin in (tuple, list) and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if plain in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{name}: expected {_EXPECTED['int' if plain is int else 'float']}, received {value!r}")
    if dataclasses.is_dataclass(plain) and isinstance(plain, type):
        if isinstance(value, plain):
            return value
        if isinstance(value, Mapping):
            return config_from_dict(plain, value, prefix=f"{name}.")
        raise ConfigError(f"{name}: expected a table of {plain.__name__} fields, received {value!r}")
    return _validate(name, base, value)


def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _cached_hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = _hints(cls)
    return _HINTS[cls]


def validate_fields(obj: Any, prefix: str = "") -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation (type and constraints)."""
    hints = _cached_hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name in hints:
            coerce_value(f"{prefix}{f.name}", hints[f.name], getattr(obj, f.name))


class Validated:
    """Mixin for frozen dataclass configs: ``__post_init__`` checks every field's annotated constraints.

    A subclass with its own ``__post_init__`` calls ``super().__post_init__()`` first.
    """

    def __post_init__(self) -> None:
        validate_fields(self)


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``data``; unknown keys and bad values raise ConfigError."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not a dataclass type")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a table of options, received {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown option {prefix}{unknown[0]!r} for {cls.__name__}; valid options: {', '.join(sorted(fields))}"
        )
    hints = _cached_hints(cls)
    kwargs = {k: coerce_value(f"{prefix}{k}", hints[k], v) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if prefix and not str(exc).startswith(prefix):
            raise ConfigError(f"{prefix}{exc}") from None
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from exc


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Return the dataclass ``cfg`` as a plain dict (nested dataclasses become dicts, tuples lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            v = config_to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


# ---------------------------------------------------------------- TOML


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    """TOML has no null: an omitted key falls back to its default."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            out[str(k)] = _drop_none(v)
        elif isinstance(v, tuple | list):
            out[str(k)] = [_drop_none(x) if isinstance(x, Mapping) else x for x in v]
        else:
            out[str(k)] = v
    return out


def config_to_toml(cfg: Any) -> str:
    """Serialise a config dataclass (or a mapping) to TOML text. ``None`` values are omitted."""
    import tomli_w

    d = cfg if isinstance(cfg, Mapping) else config_to_dict(cfg)
    try:
        return tomli_w.dumps(_drop_none(d))
    except TypeError as exc:
        raise ConfigError(f"cannot write the configuration to TOML: {exc}") from exc


def load_toml_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file; missing, oversized, too deeply nested, non-UTF-8 and malformed files raise
    ConfigError naming the file (size and depth limits of :func:`ofmu_opt._io.read_toml`)."""
    from ._io import read_toml

    return read_toml(path, "config file", max_bytes=MAX_TOML_BYTES, error=ConfigError)


def config_from_toml(cls: type[T], text: str) -> T:
    """Parse TOML ``text`` into the config dataclass ``cls``."""
    from ._io import loads_toml

    return config_from_dict(cls, loads_toml(text, f"TOML for {cls.__name__}", error=ConfigError))

"""Frozen-dataclass configuration helpers: strict loading, type checks, TOML round trip.

Every configuration object in the package is a frozen dataclass. :func:`config_from_dict` builds one
from a mapping (unknown keys raise :class:`~ofmu_opt.errors.ConfigError` naming the key and listing
the valid ones); :func:`config_to_toml` / :func:`config_from_toml` round-trip it through TOML.

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
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = [
    "parse_option_pairs",
    "check_choice",
    "check_range",
    "coerce_value",
    "config_from_dict",
    "config_from_toml",
    "config_to_dict",
    "config_to_toml",
    "load_toml_file",
]

T = TypeVar("T")


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


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) != len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return tp, optional
    return tp, False


def coerce_value(name: str, tp: Any, value: Any) -> Any:
    """Coerce ``value`` (possibly a string from the command line) to the annotated type ``tp``."""
    base, optional = _strip_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{name}: expected {getattr(base, '__name__', base)}, received None")
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        allowed = typing.get_args(base)
        if value not in allowed:
            raise ConfigError(f"{name}: expected one of {', '.join(map(repr, allowed))}, received {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(base):
            if arg is type(None):
                continue
            try:
                return coerce_value(name, arg, value)
            except ConfigError:
                continue
        raise ConfigError(f"{name}: cannot interpret {value!r} as {base}")
    if origin in (tuple, list):
        args = typing.get_args(base)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: expected a list, received {value!r}")
        inner = args[0] if args else Any
        items = [coerce_value(f"{name}[{i}]", inner, v) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if base is Any:
        return value
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{name}: expected a boolean, received {value!r}")
    if base is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer, received {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
            try:
                f = float(value)
            except ValueError:
                f = math.nan
            if math.isfinite(f) and f.is_integer():
                return int(f)
        raise ConfigError(f"{name}: expected an integer, received {value!r}")
    if base is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, received {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: expected a number, received {value!r}")
    if base is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: expected a string, received {value!r}")
    if dataclasses.is_dataclass(base) and isinstance(base, type):
        if isinstance(value, base):
            return value
        if isinstance(value, Mapping):
            return config_from_dict(base, value, prefix=f"{name}.")
        raise ConfigError(f"{name}: expected a table of {base.__name__} fields, received {value!r}")
    return value


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``data``; unknown keys and bad values raise ConfigError."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not a dataclass type")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a table of options, received {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown option {prefix}{unknown[0]!r} for {cls.__name__}; valid options: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: coerce_value(f"{prefix}{k}", hints[k], v) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
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


_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _toml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):  # a TOML basic string: escape backslash, quote and every control character
        return '"' + "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                             for c in v) + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_scalar(x) for x in v) + "]"
    raise ConfigError(f"cannot write {v!r} ({type(v).__name__}) to TOML")


def _dict_to_toml(d: Mapping[str, Any], table: str = "") -> str:
    lines: list[str] = []
    subtables: list[tuple[str, Mapping[str, Any]]] = []
    for k, v in d.items():
        if v is None:
            continue  # TOML has no null: an omitted key falls back to its default
        if isinstance(v, Mapping):
            subtables.append((k, v))
        else:
            lines.append(f"{k} = {_toml_scalar(v)}")
    text = "\n".join(lines)
    for k, v in subtables:
        name = f"{table}.{k}" if table else k
        text += f"\n\n[{name}]\n" + _dict_to_toml(v, name)
    return text.strip() + "\n"


def config_to_toml(cfg: Any) -> str:
    """Serialise a config dataclass (or a mapping) to TOML text. ``None`` values are omitted."""
    d = cfg if isinstance(cfg, Mapping) else config_to_dict(cfg)
    return _dict_to_toml(d)


def load_toml_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file; missing, non-UTF-8 and malformed files raise ConfigError naming the file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r}: expected a file, received a directory")
    try:
        return tomllib.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from exc


def config_from_toml(cls: type[T], text: str) -> T:
    """Parse TOML ``text`` into the config dataclass ``cls``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML for {cls.__name__}: {exc}") from exc
    return config_from_dict(cls, data)

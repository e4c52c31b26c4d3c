"""Property-based fuzzing of config parsing and problem specifications.

One property throughout: any input either works or raises an :class:`~ofmu_opt.errors.OfmuError`
subclass, never an unrelated exception (TypeError, KeyError, AttributeError, OverflowError ...).
The derandomized CI profile of ``tests/conftest.py`` applies; the example counts are raised here.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ofmu_opt._config import config_from_dict, config_from_toml, config_to_toml
from ofmu_opt.backends import NumpySpace
from ofmu_opt.core import PenaltySolver, gpbgd, ofmu
from ofmu_opt.errors import OfmuError
from ofmu_opt.problem import BilevelProblem, FunctionObjective
from ofmu_opt.reference.solvers import parse_options

FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def _method_config_classes() -> list[type[Any]]:
    from ofmu_opt.unlearning.methods.registry import get_method, list_methods

    return [get_method(n).config_cls for n in list_methods()]


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["none", "inf", "-1", "1e999", "adam", "sgd", "true", "0x10", "1,2", "", "nan"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(st.text(max_size=5), SCALARS, max_size=2))


def _options(cls: type[Any]) -> st.SearchStrategy[dict[str, Any]]:
    names = [f.name for f in dataclasses.fields(cls)]
    keys = st.one_of(st.sampled_from(names), st.text(max_size=8))
    return st.dictionaries(keys, VALUES, max_size=5)


def _works_or_package_error(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except OfmuError:
        return None


@FUZZ
@given(data=_options(PenaltySolver))
@example(data={"name": "a\x1fb\x7f"})  # found by fuzzing: control characters were written to TOML unescaped
def test_solver_config_from_any_dict_works_or_raises_a_package_error(data: dict[str, Any]) -> None:
    cfg = _works_or_package_error(config_from_dict, PenaltySolver, data)
    if cfg is not None:  # what is accepted round-trips through TOML
        assert config_from_toml(PenaltySolver, config_to_toml(cfg)) == cfg


@FUZZ
@given(cls=st.sampled_from(_method_config_classes()), data=st.data())
def test_method_config_from_any_dict_works_or_raises_a_package_error(cls: type[Any], data: st.DataObject) -> None:
    opts = data.draw(_options(cls))
    _works_or_package_error(config_from_dict, cls, opts)


TOML_ATOMS = st.sampled_from(
    ["beta", "maxiter", "=", " ", "\n", "[", "]", '"', "'", "1", "-", ".", "e", "inf", "nan", "true", "x", ",",
     "{", "}", "#", "\\", "penalty", "similarity", "\"signed\"", "[tbl]", "0.5", "é", "\x00"]
)


@FUZZ
@given(text=st.one_of(st.text(max_size=60), st.lists(TOML_ATOMS, max_size=25).map("".join)))
def test_toml_text_works_or_raises_a_package_error(text: str) -> None:
    _works_or_package_error(config_from_toml, PenaltySolver, text)


@FUZZ
@given(pairs=st.lists(
    st.one_of(
        st.text(alphabet=string.printable, max_size=20),
        st.builds(lambda k, v: f"{k}={v}", st.sampled_from([f.name for f in dataclasses.fields(PenaltySolver)]),
                  st.text(alphabet=string.printable, max_size=10)),
    ),
    max_size=4,
))
def test_parse_options_works_or_raises_a_package_error(pairs: list[str]) -> None:
    opts = _works_or_package_error(parse_options, pairs)
    if opts is not None:
        _works_or_package_error(lambda: PenaltySolver(**opts))


# ------------------------------------------------------------------------------ problem specifications

N = 3
RETURNS = st.sampled_from(
    ["ok", "nan", "inf", "short", "long", "2d", "list", "str", "none", "int-array", "scalar", "pair-3", "raise"]
)


def _vector(kind: str, y: np.ndarray) -> Any:
    return {
        "ok": 2.0 * y,
        "nan": np.full_like(y, np.nan),
        "inf": np.full_like(y, np.inf),
        "short": y[:-1].copy(),
        "long": np.concatenate([y, y]),
        "2d": np.outer(y, y),
        "list": list(y),
        "str": "grad",
        "none": None,
        "int-array": np.ones(N, dtype=np.int64),
        "scalar": 1.0,
    }.get(kind, 2.0 * y)


def _grad(kind: str) -> Any:
    def g(x: Any, y: np.ndarray, b: Any) -> Any:
        if kind == "raise":
            raise ValueError("oracle failure")  # a user oracle's own ValueError is not the package's business
        if kind == "pair-3":
            return (None, 2.0 * y, 0)
        if kind == "none":
            return None
        return (None, _vector(kind, y))

    return g


def _value(kind: str) -> Any:
    def v(x: Any, y: np.ndarray, b: Any) -> Any:
        return {"ok": float(y @ y), "nan": float("nan"), "inf": float("inf"), "str": "v", "none": None,
                "list": [1.0, 2.0], "2d": np.ones((2, 2))}.get(kind, float(y @ y))

    return v


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(
    outer_v=RETURNS, outer_g=RETURNS, inner_v=RETURNS, inner_g=RETURNS,
    preset=st.sampled_from(["gpbgd", "ofmu"]), sense=st.sampled_from(["min", "max"]),
)
@example(outer_v="ok", outer_g="ok", inner_v="ok", inner_g="inf", preset="gpbgd", sense="min")  # found by fuzzing:
# an Inf inner gradient made the finite-difference HVP divide by zero (ZeroDivisionError)
def test_problem_with_misbehaving_oracles_runs_or_raises_a_package_error(
    outer_v: str, outer_g: str, inner_v: str, inner_g: str, preset: str, sense: str
) -> None:
    outer = FunctionObjective(_value(outer_v), _grad(outer_g))
    inner = FunctionObjective(_value(inner_v), _grad(inner_g))
    solver = (gpbgd if preset == "gpbgd" else ofmu)(maxiter=3, inner_steps=1)
    try:
        prob = BilevelProblem(outer, inner, NumpySpace(), sense, has_x=False)
        with np.errstate(all="ignore"):
            res = solver.run(prob, None, np.ones(N))
    except OfmuError:
        return
    except ValueError as exc:
        if str(exc) == "oracle failure":  # the oracle's own exception propagates unchanged
            return
        raise
    assert res.status is not None and isinstance(res.message, str)


@pytest.mark.parametrize("bad", [None, 3, "problem", object()])
def test_problem_with_a_non_objective_is_a_package_error(bad: Any) -> None:
    good = FunctionObjective(_value("ok"), _grad("ok"))
    with pytest.raises(OfmuError):
        BilevelProblem(good, bad, NumpySpace(), "min", has_x=False)

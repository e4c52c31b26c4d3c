"""The categorical ("choice") kind of the equal-budget search and OFMU's search space (issue #14: the
objective, T and β = 0 are candidates of one search, narrowed to what applies to the benchmark)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest

from ofmu_opt.unlearning.benchmarks import get_benchmark
from ofmu_opt.unlearning.methods.ascent import GradDiffConfig
from ofmu_opt.unlearning.methods.contract import MethodConfig, SearchSpace, search_space
from ofmu_opt.unlearning.methods.objectives import applicable_objectives
from ofmu_opt.unlearning.methods.ofmu import OfmuConfig
from ofmu_opt.unlearning.search import sample_configs


@dataclasses.dataclass(frozen=True)
class _Cfg(MethodConfig):
    mode: str = "a"
    depth: int = 1
    SEARCH_SPACE: ClassVar[SearchSpace] = search_space(
        lr=(1e-4, 1e-2), mode=("choice", "a", "b", "c"), depth=("choice", 0, 1, 5))


def test_search_space_accepts_choices_and_rejects_malformed_entries() -> None:
    assert search_space(t=("choice", 0, 1, 5), lr=(1e-3, 1e-1)) == {"t": ("choice", 0, 1, 5),
                                                                      "lr": ("log", 1e-3, 1e-1)}
    for bad in (("choice",), ("cubic", 1.0, 2.0), (1.0, 2.0, 3.0)):
        with pytest.raises(ValueError, match="search_space"):
            search_space(x=bad)


def test_choice_draws_only_listed_values_and_covers_them() -> None:
    cs = sample_configs(_Cfg, {}, budget=60, seed=3)
    assert (cs[0].mode, cs[0].depth) == ("a", 1)  # candidate 0: the defaults
    modes = {c.mode for c in cs[1:]}
    depths = {c.depth for c in cs[1:]}
    assert modes == {"a", "b", "c"} and depths == {0, 1, 5}
    assert all(isinstance(c.depth, int) for c in cs)
    again = sample_configs(_Cfg, {}, budget=60, seed=3)
    assert [(c.mode, c.depth, c.lr) for c in cs] == [(c.mode, c.depth, c.lr) for c in again]


def test_choices_narrow_a_key_and_a_fixed_key_is_never_drawn() -> None:
    cs = sample_configs(_Cfg, {"depth": 5}, budget=30, seed=0, choices={"mode": ("b", "zzz")})
    assert {c.mode for c in cs[1:]} == {"b"}
    assert {c.depth for c in cs} == {5}
    # a key narrowed to nothing is not searched (candidates keep the default)
    cs = sample_configs(_Cfg, {}, budget=10, seed=0, choices={"mode": ("zzz",)})
    assert {c.mode for c in cs} == {"a"}


def test_numeric_draws_do_not_depend_on_choices_of_other_methods() -> None:
    """Narrowing affects only choice keys: a baseline's candidates (no choice keys) stay as they were."""
    a = sample_configs(GradDiffConfig, {}, budget=4, seed=1, steps=5)
    b = sample_configs(GradDiffConfig, {}, budget=4, seed=1, steps=5, choices={"objective": ("npo",)})
    assert a == b


@pytest.mark.parametrize(("bench", "family"), [("digits", "classifier"), ("tinytofu", "qa"), ("tinywmdp", "corpus")])
def test_ofmu_search_covers_the_issue_space_within_the_benchmark_family(bench: str, family: str) -> None:
    b = get_benchmark(bench)
    assert b.objective_family == family
    allowed = applicable_objectives(family)
    cs = sample_configs(OfmuConfig, {}, budget=80, seed=0, steps=3, choices=b.search_choices())
    drawn: dict[str, set[Any]] = {k: {getattr(c, k) for c in cs[1:]} for k in ("objective", "inner_steps", "beta")}
    assert drawn["objective"] == set(allowed)
    assert drawn["inner_steps"] == {0, 1, 5}
    assert 0.0 in drawn["beta"] and max(drawn["beta"]) == 1.0
    assert min(c.penalty for c in cs[1:] if c.penalty is not None) >= 0.01
    assert cs[0].objective == "auto" and cs[0].inner_steps is None  # candidate 0: the family defaults


def test_applicable_objectives_per_family() -> None:
    assert applicable_objectives("classifier") == ("ascent", "other_class", "uniform", "calibrated", "npo",
                                                   "representation")
    assert applicable_objectives("qa") == ("ascent", "idk", "npo", "idk_npo", "representation")
    assert applicable_objectives("corpus") == ("ascent", "npo", "representation")

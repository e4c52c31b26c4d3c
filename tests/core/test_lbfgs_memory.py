"""The level solver's L-BFGS memory: sized from the problem (50 pairs up to 50 variables, down to 10 from 250 on),
or set with ``lbfgs_memory``; more pairs mean fewer rounds on the quadratic penalty levels."""

from __future__ import annotations

import numpy as np
import pytest

import ofmu_opt as oo
from ofmu_opt.backends.numpy_backend import NumpySpace
from ofmu_opt.core import Status
from ofmu_opt.core.steps import Lbfgs, lbfgs_memory
from ofmu_opt.reference import get_reference
from ofmu_opt.reference.solvers import solver_for_reference


def test_memory_is_sized_from_the_point_unless_given() -> None:
    assert [lbfgs_memory(n) for n in (1, 15, 50, 51, 100, 250, 10**6)] == [50, 50, 50, 49, 25, 10, 10]
    sp = NumpySpace()
    assert Lbfgs().init(sp, (np.zeros(5), np.zeros(10))).memory == 50
    assert Lbfgs().init(sp, (None, np.zeros(1000))).memory == 10
    assert Lbfgs(7).init(sp, (np.zeros(5), np.zeros(10))).memory == 7


def test_the_two_loop_keeps_at_most_memory_pairs() -> None:
    sp, rule = NumpySpace(), Lbfgs(3)
    st = rule.init(sp, (None, np.zeros(2)))
    rng = np.random.default_rng(0)
    for _ in range(6):
        p = rng.standard_normal(2)
        st = rule.observe(sp, (None, p), (None, 2.0 * p), st)  # gradient of |p|^2: every pair has s'y > 0
    assert len(st.pairs) == 3


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_lbfgs_memory_is_validated(bad: object) -> None:
    with pytest.raises(oo.ConfigError, match="lbfgs_memory"):
        oo.gpbgd(lbfgs_memory=bad)


def test_more_pairs_take_fewer_rounds_to_the_same_answer() -> None:
    """P3 (8 variables), gpbgd in continuation: 222 rounds with the former 10 pairs, 136 with the default 50."""
    ref = get_reference("P3")
    default = solver_for_reference("gpbgd", ref).run(ref.problem, ref.x0, ref.y0)
    ten = solver_for_reference("gpbgd", ref, options={"lbfgs_memory": 10}).run(ref.problem, ref.x0, ref.y0)
    assert default.status is Status.CONVERGED and ten.status is Status.CONVERGED
    assert ref.distance(default.x, default.y) <= 1e-6 and ref.distance(ten.x, ten.y) <= 1e-6
    assert default.nit < 0.7 * ten.nit, (default.nit, ten.nit)
    assert default.config["lbfgs_memory"] is None and ten.config["lbfgs_memory"] == 10

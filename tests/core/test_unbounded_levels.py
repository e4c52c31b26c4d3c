"""Continuation's early unboundedness test: a level whose solver steps along negative curvature of the penalized
objective and has moved 1e2 × max(1, ‖level start‖) away restarts at γρ (before the 1e6 catch-all), while a
genuinely non-convex level that stays bounded keeps its outcome."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import ofmu_opt as oo
import ofmu_opt.core.continuation as continuation
from ofmu_opt.core import IntermediateResult, Status
from ofmu_opt.core.solver import step_curvature
from ofmu_opt.problem import BilevelProblem, FunctionObjective
from ofmu_opt.reference import get_reference
from ofmu_opt.reference.solvers import solver_for_reference

K = 0.4


def _unbounded_first_level() -> BilevelProblem:
    """min ½(x−1)² − K·y²  s.t.  y ∈ argmin ½(y − x)²  (y*(x) = x; h(x) = ½(x−1)² − K·x², minimum at x = y = 5).

    The stationarity penalty ``ρ(y − x)²`` gives ``F`` the Hessian ``[[1+2ρ, −2ρ], [−2ρ, 2ρ−2K]]``, whose
    determinant ``(1−2K)·2ρ − 2K`` is negative for ρ < 2: ofmu's first level (ρ0 = 1) is unbounded below along a
    direction of negative curvature; ρ = 4 is strongly convex."""
    outer = FunctionObjective(lambda x, y, b: float(0.5 * (x[0] - 1.0) ** 2 - K * y[0] ** 2),
                              lambda x, y, b: (x - 1.0, -2.0 * K * y),
                              hvp_fn=lambda x, y, v, b: (np.zeros_like(x), -2.0 * K * v), quadratic=True)
    inner = FunctionObjective(lambda x, y, b: float(0.5 * (y[0] - x[0]) ** 2), lambda x, y, b: (x - y, y - x),
                              hvp_fn=lambda x, y, v, b: (-v, v.copy()), quadratic=True)
    return BilevelProblem(outer, inner, oo.NumpySpace(), local_is_global=True)


def _trace(solver: oo.PenaltySolver, prob: BilevelProblem) -> tuple[oo.BilevelResult, list[tuple[int, float, float,
                                                                                                   float]]]:
    rows: list[tuple[int, float, float, float]] = []

    def cb(r: IntermediateResult) -> None:
        st = r.state
        rows.append((st.level, st.penalty, float(np.hypot(st.x[0], st.y[0])), st.curvature))

    return solver.run(prob, np.zeros(1), np.zeros(1), callback=cb), rows


def test_an_unbounded_first_level_restarts_before_the_iterate_runs_100x_away() -> None:
    prob = _unbounded_first_level()
    res, rows = _trace(oo.ofmu(beta=0.0), prob)
    assert res.status is Status.CONVERGED and abs(res.x[0] - 5.0) < 1e-6 and abs(res.y[0] - 5.0) < 1e-6
    first = [r for r in rows if r[0] == 0]
    # the level at ρ0 = 1 was restarted at 4ρ: level 0 was solved at ρ = 4, after steps along negative curvature
    assert first[-1][1] == 4.0 and any(r[3] < 0 for r in first if r[1] == 1.0)
    # every state the run reported stayed within 1e2 × max(1, ‖start‖) = 100 of the origin (measured: 80.8)
    assert max(r[2] for r in rows) <= continuation.NEGATIVE_CURVATURE_FACTOR


def test_without_the_curvature_test_the_same_level_runs_to_the_1e6_catch_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(continuation, "NEGATIVE_CURVATURE_FACTOR", math.inf)
    res, rows = _trace(oo.ofmu(beta=0.0), _unbounded_first_level())
    # same answer, but the first level ran ~1e6 away before its restart (measured: 9.3e5, 82 rounds instead of 64)
    assert res.status is Status.CONVERGED and abs(res.x[0] - 5.0) < 1e-6
    assert max(r[2] for r in rows) > 1e5


def test_a_bounded_non_convex_trap_level_keeps_its_outcome() -> None:
    """AnandalinghamWhite1990 (a local-minimum trap): ofmu's level solver steps along negative curvature of F, within
    4x of the level start, and the run still ends stationary at the same local point without any restart."""
    ref = get_reference("AnandalinghamWhite1990")
    solver = solver_for_reference("ofmu", ref)
    rows: list[tuple[int, float, float]] = []
    res = solver.run(ref.problem, ref.x0, ref.y0,
                     callback=lambda r: rows.append((r.state.level, r.state.penalty, r.state.curvature)))
    assert any(c < 0 for _, _, c in rows)  # the penalized objective is non-convex along the level solver's steps
    # no level was restarted: the penalty changes only when the level counter does
    for (lev_a, rho_a, _), (lev_b, rho_b, _) in zip(rows, rows[1:], strict=False):
        assert rho_a == rho_b or lev_b == lev_a + 1
    # the same outcome as without the rule (measured before it: stationary, relative distance 0.88, 41 rounds)
    assert res.status is Status.STATIONARY and res.nit == 41
    assert ref.distance(res.x, res.y) == pytest.approx(0.88, abs=0.01)


def test_step_curvature_reads_the_sign_and_ignores_round_off() -> None:
    # F(t) = −t²/2 along a unit step from a stationary point: curvature −1
    assert step_curvature(0.0, -0.5, 0.0, 1.0, 2.0**-52) == pytest.approx(-1.0)
    # F linear along the step: the remainder is round-off, the sign is unknown
    assert math.isnan(step_curvature(1.0, 0.0, -1.0, 1.0, 2.0**-52))
    assert math.isnan(step_curvature(1.0, 0.5, -0.5, 0.0, 2.0**-52))  # zero step
    # float32 round-off hides a remainder that float64 resolves
    assert math.isnan(step_curvature(1.0, 1.0 - 1e-6, 0.0, 1.0, 2.0**-23))
    assert step_curvature(1.0, 1.0 - 1e-6, 0.0, 1.0, 2.0**-52) < 0


def test_a_single_long_negative_curvature_step_into_a_bounded_basin_is_not_unbounded() -> None:
    """Outrata1990Ex1a with g·100 (gpbgd): the first step of the first level jumps ~180x its start along negative
    curvature into a far basin where the level then stays (before the rule, and with a one-step rule restarted at
    every penalty up to penalty_max: status unbounded). One outward step is not evidence of unboundedness."""
    from benchmarks.bench_robust_defaults import Scaled

    ref = get_reference("Outrata1990Ex1a")
    prob = dataclasses.replace(ref.problem, inner=Scaled(ref.problem.inner, 100.0))
    start = math.hypot(float(np.linalg.norm(ref.x0)), float(np.linalg.norm(ref.y0)))
    rows: list[tuple[float, float, float, int]] = []

    def cb(r: IntermediateResult) -> None:
        st = r.state
        rows.append((st.penalty, math.hypot(float(np.linalg.norm(st.x)), float(np.linalg.norm(st.y))), st.curvature,
                     st.outward))

    oo.gpbgd(maxiter=12).run(prob, ref.x0, ref.y0, callback=cb)
    _, norm, curvature, outward = rows[0]
    assert norm > continuation.NEGATIVE_CURVATURE_FACTOR * max(1.0, start) and curvature < 0 and outward == 1
    assert all(rho == 10.0 for rho, _, _, _ in rows)  # no restart: every round at the first penalty

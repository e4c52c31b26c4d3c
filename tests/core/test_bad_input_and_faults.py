"""Bad inputs give clear errors; non-finite values end the run with NUMERICAL_ERROR."""

import numpy as np
import pytest

from ofmu_opt.backends import NumpySpace
from ofmu_opt.core import PenaltySolver, Status, gpbgd, ofmu, vpbgd, with_continuation
from ofmu_opt.errors import ConfigError, OracleError, ProblemSpecError
from ofmu_opt.problem import BilevelProblem, FunctionObjective
from ofmu_opt.reference import get_reference

SP = NumpySpace()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": -0.1}, r"beta: expected a value >= 0.0, received -0.1"),
        ({"maxiter": 0}, r"maxiter: expected an integer >= 1, received 0"),
        ({"similarity": "cosine"}, r"similarity: expected one of 'signed', 'abs', 'squared', 'none'"),
        ({"hvp": "magic"}, r"hvp: expected one of"),
        ({"penalty": 0.0}, r"penalty: expected a value > 0.0"),
        ({"penalty_growth": 0.5}, r"penalty_growth: expected a value >= 1.0"),
        ({"schedule": "linear"}, r"penalty_max: the linear schedule needs a final penalty"),
        ({"extrapolation": 2}, r"extrapolation: needs strategy='continuation'"),
        ({"penalty_type": "value_gap", "base": "inner"}, r"cannot be combined with penalty_type='value_gap'"),
        ({"inner_steps": 2.5}, r"inner_steps: expected an integer"),
        ({"outer_lr": float("nan")}, r"outer_lr: expected a finite number"),
    ],
)
def test_bad_options_raise_config_error_naming_the_option(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PenaltySolver(**kwargs)


def test_unknown_option_in_preset_and_replace():
    with pytest.raises(ConfigError, match=r"unknown option 'betta' for ofmu\(\)"):
        ofmu(betta=1.0)
    with pytest.raises(ConfigError, match=r"unknown option 'rho'"):
        gpbgd().replace(rho=3.0)


def test_starting_point_mismatches():
    ref = get_reference("P3")
    with pytest.raises(ProblemSpecError, match="x0: the problem has an outer variable x"):
        gpbgd().run(ref.problem, None, ref.y0)
    q = get_reference("QOFMU")
    with pytest.raises(ProblemSpecError, match="x0: the problem has no outer variable x"):
        gpbgd().run(q.problem, np.zeros(2), q.y0)


def test_oracle_returning_the_wrong_shape_is_named():
    good = FunctionObjective(lambda x, y, b: float(y @ y), lambda x, y, b: (None, 2 * y))
    bad = FunctionObjective(lambda x, y, b: float(y @ y), lambda x, y, b: (None, np.zeros(y.size + 1)))
    prob = BilevelProblem(good, bad, SP, "min", has_x=False)
    with pytest.raises(OracleError, match=r"inner.grad: y-gradient has shape \(4,\) float64, expected .*\(3,\)"):
        gpbgd().run(prob, None, np.ones(3))
    notpair = FunctionObjective(lambda x, y, b: 0.0, lambda x, y, b: 2 * y)
    with pytest.raises(OracleError, match=r"outer.grad: expected a pair"):
        gpbgd().run(BilevelProblem(notpair, good, SP, "min", has_x=False), None, np.ones(3))


def test_problem_spec_errors():
    good = FunctionObjective(lambda x, y, b: 0.0, lambda x, y, b: (None, y))
    with pytest.raises(ProblemSpecError, match="sense: expected 'min' or 'max'"):
        BilevelProblem(good, good, SP, "maximize")
    with pytest.raises(ProblemSpecError, match="inner: expected an objective with value"):
        BilevelProblem(good, object(), SP)
    with pytest.raises(ProblemSpecError, match=r"problem id: expected one of .*received 'P42'"):
        get_reference("P42")


def _nan_after(k_bad: int):
    calls = {"n": 0}

    def grad(x, y, b):
        calls["n"] += 1
        return None, (y - 1.0) if calls["n"] < k_bad else np.full_like(y, np.nan)

    return FunctionObjective(lambda x, y, b: float(0.5 * np.sum((y - 1.0) ** 2)), grad,
                             lambda x, y, v, b: (None, v.copy()))


def test_nan_from_an_oracle_ends_with_numerical_error_and_keeps_the_last_finite_iterate():
    inner = FunctionObjective(lambda x, y, b: float(0.5 * y @ y), lambda x, y, b: (None, y.copy()),
                              lambda x, y, v, b: (None, v.copy()), quadratic=True)
    prob = BilevelProblem(_nan_after(6), inner, SP, "min", has_x=False)
    seen = []
    res = gpbgd(maxiter=50).run(prob, None, np.zeros(3), callback=lambda r: seen.append(r.y.copy()))
    assert res.status is Status.NUMERICAL_ERROR and not res.success
    assert np.all(np.isfinite(res.y))
    np.testing.assert_array_equal(res.y, seen[-1])  # the last finite iterate, not a NaN one
    assert "non-finite" in res.message


def test_non_finite_start_is_reported_not_raised():
    ref = get_reference("QOFMU")
    y0 = ref.y0.copy()
    y0[0] = np.inf
    res = gpbgd().run(ref.problem, None, y0)
    assert res.status is Status.NUMERICAL_ERROR


def test_diverging_step_is_named_diverged_not_numerical_error():
    ref = get_reference("QOFMU")
    s = gpbgd(strategy="paper", adaptive_step=False, outer_lr=1e6, scale_step_by_penalty=False, maxiter=500)
    res = s.run(ref.problem, None, ref.y0)
    assert res.status is Status.DIVERGED and np.all(np.isfinite(res.y)) and "grew" in res.message


def test_too_long_step_is_capped_by_the_curvature_estimate_or_backtracked():
    ref = get_reference("QOFMU")
    for s in (gpbgd(strategy="paper", outer_lr=1e6, scale_step_by_penalty=False, maxiter=3000),
              gpbgd(outer_lr=1e6)):
        res = s.run(ref.problem, None, ref.y0)
        assert res.status in (Status.PENALIZED, Status.CONVERGED), res.message
        assert np.all(np.isfinite(res.y))


def test_max_time_and_maxiter_statuses():
    ref = get_reference("P3")
    assert gpbgd(maxiter=3).run(ref.problem, ref.x0, ref.y0).status is Status.MAXITER
    res = with_continuation(vpbgd(), tol=1e-12).replace(max_time=0.05).run(ref.problem, ref.x0, ref.y0)
    assert res.status is Status.MAXTIME and res.nit >= 1  # stopped by the clock, not by the (huge) maxiter


def test_base_inner_with_outer_variable_is_rejected_with_the_reason():
    ref = get_reference("P3")
    with pytest.raises(ConfigError, match="converges to a wrong point"):
        ofmu(base="inner", beta=0.0).run(ref.problem, ref.x0, ref.y0)
    assert ofmu(beta=0.0).resolved_base(ref.problem) == "outer"
    assert ofmu(beta=0.0, strategy="paper").resolved_base(get_reference("QOFMU").problem) == "inner"
    # the default level solver, L-BFGS, steps from the current point: base auto is then 'outer'
    assert ofmu(beta=0.0).resolved_base(get_reference("QOFMU").problem) == "outer"


def test_why_base_inner_is_rejected_it_converges_to_a_wrong_point_on_p3():
    """OFMU_SPEC.md §2: with x present, base='inner' does not approach the bi-level solution as ρ grows,
    while base='outer' shows the Θ(1/ρ) penalty bias."""
    ref = get_reference("P3")
    lr_in = ref.hints["inner_lr"]
    dist = {}
    for base in ("outer", "inner"):
        for rho in (10.0, 100.0):
            s = gpbgd(strategy="paper", adaptive_step=False, base=base, penalty=rho, inner_steps=5, inner_lr=lr_in,
                      line_search=True,
                      scale_step_by_penalty=False, outer_rule="nesterov", maxiter=20000, tol=1e-9,
                      allow_inner_base_with_x=True)
            res = s.run(ref.problem, ref.x0, ref.y0)
            dist[base, rho] = ref.distance(res.x, res.y)
    assert dist["outer", 100.0] < 0.2 * dist["outer", 10.0]  # Θ(1/ρ): ten times ρ, about a tenth of the bias
    assert dist["inner", 10.0] > 0.3 and dist["inner", 100.0] > 0.3  # stuck far away for every ρ

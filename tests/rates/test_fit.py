"""The rate fits on synthetic data with known exponents and ratios, including the window selection."""

import math

import numpy as np
import pytest

from ofmu_opt.errors import ConfigError
from ofmu_opt.rates.fit import (
    fit_linear_rate,
    fit_power_law,
    r_squared,
    ratio_log_error,
    running_mean,
    running_min,
    select_window,
)
from ofmu_opt.rates.report import bound_record, claim_record, law_record

RTOL = 4 * math.sqrt(np.finfo(float).eps)


@pytest.mark.parametrize("p", [-2.0, -1.0, -0.5, 1.0])
def test_power_law_recovers_the_exponent_exactly(p):
    t = np.logspace(0, 4, 30)
    fit = fit_power_law(t, 3.0 * t**p)
    assert fit.slope == pytest.approx(p, rel=RTOL, abs=RTOL)
    assert math.exp(fit.intercept) == pytest.approx(3.0, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)


def test_power_law_window_drops_the_transient():
    # e = 1/k + 100/k^2: the first points follow the 1/k^2 transient; the tail follows 1/k
    t = np.logspace(0, 8, 40)
    e = 1.0 / t + 100.0 / t**2
    whole = fit_power_law(t, e)
    tail = fit_power_law(t, e, drop=0.5)
    assert abs(whole.slope + 1.0) > 0.15  # the transient biases a fit of everything
    assert abs(tail.slope + 1.0) < 0.01
    assert tail.start == 20 and tail.stop == 40


def test_linear_rate_recovers_the_ratio_and_stops_before_the_float_floor():
    k = np.arange(400, dtype=float)
    e = 2.0 * 0.93**k + 0.5 * 0.5**k  # a fast transient mode on top of the slow one
    e[300:] = 1e-17  # a float-floor plateau
    fit = fit_linear_rate(k, e, drop=0.2, floor=1e-14)
    assert fit.stop == 300 and fit.start == 60
    assert fit.ratio == pytest.approx(0.93, rel=1e-9)
    # without the floor cut the plateau ruins the fit
    bad = fit_linear_rate(k, e, drop=0.2, floor=0.0)
    assert abs(bad.ratio - 0.93) > 0.01 and bad.r2 < fit.r2


def test_linear_rate_with_multiplicative_noise_has_r2_below_one_but_the_right_ratio():
    rng = np.random.default_rng(0)
    k = np.arange(200, dtype=float)
    e = 0.8**k * np.exp(0.05 * rng.standard_normal(k.size))
    fit = fit_linear_rate(k, e, drop=0.0)
    assert 0.99 < fit.r2 < 1.0
    assert ratio_log_error(fit.ratio, 0.8) < 0.01


def test_select_window_rules():
    assert select_window([1.0, 0.5, 0.25, 0.125, 1e-17, 1e-17], drop=0.25, floor=1e-15) == (1, 4)
    with pytest.raises(ConfigError, match="at least 3 points"):
        select_window([1.0, 0.5, math.nan, 0.1, 0.1])
    with pytest.raises(ConfigError, match="drop"):
        select_window([1.0, 0.5, 0.25], drop=1.0)
    with pytest.raises(ConfigError, match="same length"):
        fit_power_law([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ConfigError, match="positive"):
        fit_power_law([0.0, 2.0, 3.0], [1.0, 2.0, 3.0])


def test_r_squared_hand_computed():
    u = np.array([0.0, 1.0, 2.0])
    v = np.array([0.0, 2.0, 1.0])  # mean 1, ss_tot = 2; line v = 0.5 + 0.5u: residuals -0.5, 1, -0.5 → ss_res 1.5
    assert r_squared(u, v, 0.5, 0.5) == pytest.approx(1.0 - 1.5 / 2.0, rel=RTOL)


def test_running_min_and_mean():
    assert running_min([3.0, 4.0, 1.0, 2.0]).tolist() == [3.0, 3.0, 1.0, 1.0]
    assert running_mean([2.0, 4.0, 0.0]).tolist() == [2.0, 3.0, 2.0]


def test_record_verdicts_follow_the_stated_criteria():
    ok = law_record("e", "q", fitted=-0.86, expected=-1.0, r2=0.96, measure="exponent")
    assert ok.verdict == "holds"
    assert law_record("e", "q", fitted=-0.84, expected=-1.0, r2=0.99, measure="exponent").verdict == "fails"
    assert law_record("e", "q", fitted=-1.0, expected=-1.0, r2=0.94, measure="exponent").verdict == "fails"
    # ratio: log factors within 15 %: log 0.9 = -0.1054; 0.9^1.14 ≈ 0.8867 holds, 0.9^1.16 ≈ 0.8849 fails
    assert law_record("e", "q", fitted=0.9**1.14, expected=0.9, r2=0.99, measure="ratio").verdict == "holds"
    assert law_record("e", "q", fitted=0.9**1.16, expected=0.9, r2=0.99, measure="ratio").verdict == "fails"
    assert bound_record("e", "q", fitted=-3.0, expected=-1.0, r2=0.5, max_ratio=1.0).verdict == "holds"
    assert bound_record("e", "q", fitted=-1.0, expected=-1.0, r2=1.0, max_ratio=1.01).verdict == "fails"
    c = claim_record("e", "q", fitted=0.0, expected=-1.0, r2=0.1, holds=False, criterion="c", finding="f")
    assert c.verdict == "fails" and c.details["finding"] == "f"
    with pytest.raises(ConfigError, match="measure"):
        law_record("e", "q", fitted=1.0, expected=1.0, r2=1.0, measure="slope")

"""Empirical convergence-rate verification: experiments that sweep K, T or ρ, fit the law on the asymptotic
window, and compare with the value computed from the problem's constants (``ofmu rates``).

Example:
    >>> from ofmu_opt.rates import EXPERIMENTS, fit_power_law
    >>> sorted(EXPERIMENTS)[:2]
    ['base_choice', 'inner_contraction']
"""

from .experiments import (
    EXPERIMENTS,
    base_choice,
    inner_contraction,
    nonconvex_min_grad,
    outer_linear,
    paper_convex_claim,
    penalty_bias,
    resolve_names,
    run_experiments,
)
from .fit import FitResult, fit_linear_rate, fit_power_law, running_mean, running_min, select_window
from .report import ExperimentResult, RateRecord, format_table, write_summary

__all__ = [
    "EXPERIMENTS",
    "ExperimentResult",
    "FitResult",
    "RateRecord",
    "base_choice",
    "fit_linear_rate",
    "fit_power_law",
    "format_table",
    "inner_contraction",
    "nonconvex_min_grad",
    "outer_linear",
    "paper_convex_claim",
    "penalty_bias",
    "resolve_names",
    "run_experiments",
    "running_mean",
    "running_min",
    "select_window",
    "write_summary",
]

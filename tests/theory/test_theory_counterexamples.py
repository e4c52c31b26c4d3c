"""Where the paper's stated theory fails, and the bookkeeping of assumptions (theory.assumptions)."""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest
import sympy as sp

import theory
from theory import PAPER_ISSUES, Derivation
from theory.counterexamples import (
    RHO,
    THETA,
    convex_maximization_unbounded,
    stationarity_counterexample_phi,
    stationarity_not_maximality,
)


def test_convex_phi_has_no_maximizer():
    """sup of the convex Φ(θ) = θ²/2 + θ over R is +∞ (sympy's maximum)."""
    assert convex_maximization_unbounded().expr == sp.oo


def test_penalized_minimizer_is_a_minimum_of_phi(assert_zero):
    """Φ = θ³/3 − θ, F = ½(θ−1)² + ρΦ'²: F(1) = 0 and F'(1) = 0 for symbolic ρ, while Φ''(1) = 2 > 0 and
    Φ(1) < Φ(−1): the penalized solution sits at a local minimum of the maximized objective."""
    F, phi = stationarity_not_maximality().expr, stationarity_counterexample_phi().expr
    assert_zero(F.subs(THETA, 1), sp.Integer(0))
    assert_zero(sp.diff(F, THETA).subs(THETA, 1), sp.Integer(0))
    assert sp.diff(phi, THETA, 2).subs(THETA, 1) == 2
    assert phi.subs(THETA, 1) < phi.subs(THETA, -1)
    assert RHO in F.free_symbols


@pytest.mark.parametrize("rho", [0.1, 1.0, 100.0])
def test_penalized_global_minimizer_is_one_numerically(rho):
    """On a fine grid of [−3, 3], the lambdified F is smallest at θ = 1 for every ρ."""
    grid = np.linspace(-3, 3, 60001)
    values = stationarity_not_maximality().numeric(grid, rho)
    assert abs(grid[np.argmin(values)] - 1.0) < 1e-3


def test_derivation_rejects_unknown_assumptions():
    with pytest.raises(ValueError, match="assumptions"):
        Derivation("x", sp.Integer(0), lambda: 0.0, (), "somewhere", ("A99_missing",))
    with pytest.raises(ValueError, match="cites"):
        Derivation("x", sp.Integer(0), lambda: 0.0, (), "", ())


def test_every_paper_issue_points_to_existing_evidence():
    """Each PAPER_ISSUES entry names functions (theory.module.function) that exist."""
    for issue in PAPER_ISSUES:
        for ref in issue.evidence.split(","):
            ref = ref.strip().split(" and ")[0]
            if not ref.startswith("theory."):
                continue
            module, name = ref.rsplit(".", 1)
            assert callable(getattr(importlib.import_module(module), name)), ref


def test_every_public_derivation_documents_its_reference():
    """Every public function of theory/ that returns a Derivation has a docstring with an Example and a
    References section (its citation and assumption keys are validated when the Derivation is built)."""
    checked = 0
    for name in theory.__all__:
        fn = inspect.unwrap(getattr(theory, name))
        if not inspect.isfunction(fn) or inspect.signature(fn).return_annotation != "Derivation":
            continue
        doc = fn.__doc__ or ""
        assert "References:" in doc and "Example:" in doc, name
        checked += 1
    assert checked >= 30

"""Every solver row of the common harness on every reference problem it applies to."""

import numpy as np
import pytest

from ofmu_opt.core import Status, gpbgd, ofmu, vpbgd
from ofmu_opt.reference import REFERENCES, get_reference
from ofmu_opt.reference.solvers import solver_for_reference
from ofmu_opt.testing import (
    SOLVER_CASES,
    check_deterministic,
    check_oracles_fd,
    check_run_equals_manual_loop,
    check_solves_reference,
    check_state_structure,
    check_stop_iteration,
)

PRESET_ROWS = ["ofmu", "gpbgd", "vpbgd", "scalarized"]
APPLICABLE = [
    (case, pid)
    for pid in REFERENCES
    for case in PRESET_ROWS
    if get_reference(pid).applies.get(case) is None
]


@pytest.mark.parametrize("pid", list(REFERENCES))
def test_oracles_pass_finite_difference_checks(pid):
    check_oracles_fd(get_reference(pid))


@pytest.mark.parametrize(("case", "pid"), APPLICABLE)
def test_preset_solves_reference_to_its_tolerance(case, pid):
    ref = get_reference(pid)
    d = check_solves_reference(SOLVER_CASES[case](ref), ref)
    assert d <= ref.tol


def test_ofmu_with_similarity_solves_the_orthogonal_block_reference():
    ref = get_reference("QOFMU-orth")
    for kind in ("signed", "abs", "squared"):
        s = solver_for_reference("ofmu", ref, options={"beta": 0.7, "similarity": kind, "hvp": "exact"})
        assert check_solves_reference(s, ref) <= ref.tol


def test_every_reference_has_an_applicable_preset_or_a_reason():
    for pid in REFERENCES:
        ref = get_reference(pid)
        for preset, reason in ref.applies.items():
            assert reason is None or len(reason) > 20, (pid, preset)
    p5 = get_reference("P5").applies  # constrained: solvable by every penalty preset since issue 13
    assert all(p5[p] is None for p in ("ofmu", "gpbgd", "vpbgd"))


@pytest.mark.parametrize("case", list(SOLVER_CASES))
@pytest.mark.parametrize("pid", ["P3", "QOFMU"])
def test_harness_structure_loop_stop_determinism(case, pid):
    ref = get_reference(pid)
    if case == "ofmu_beta" and pid == "P3":
        pytest.skip("the similarity term on P3 has no known solution; structure is covered on QOFMU")
    s = SOLVER_CASES[case](ref)
    check_state_structure(s, ref)
    check_run_equals_manual_loop(s, ref)
    check_stop_iteration(s, ref)
    check_deterministic(s, ref)


def test_scalarized_baseline_at_a_fixed_weight_is_biased_and_says_so():
    ref = get_reference("QOFMU")
    res = SOLVER_CASES["scalarized"](ref).replace(strategy="paper").run(ref.problem, ref.x0, ref.y0)
    # it solves its own weighted-sum problem, and says it stopped at a penalized point, not the solution ...
    assert res.status is Status.PENALIZED and not res.success and "Θ(1/penalty)" in res.message
    assert ref.distance(res.x, res.y) > 1e-2  # ... whose minimizer is not the bi-level solution


def test_scalarized_in_continuation_claims_convergence_only_on_the_value_gap_path():
    # QOFMU has no upper-level variable (v is a constant): the weights' limit is min f over argmin g, the solution
    ref = get_reference("QOFMU")
    res = SOLVER_CASES["scalarized"](ref).run(ref.problem, ref.x0, ref.y0)
    assert res.status is Status.CONVERGED and ref.distance(res.x, res.y) <= ref.tol
    # AnandalinghamWhite1990: weight·‖∇v(x)‖ does not decay along the path, so the run stops 'penalized' early (not
    # at penalty_max), far from the solution, and says why
    ref = get_reference("AnandalinghamWhite1990")
    res = SOLVER_CASES["scalarized"](ref).run(ref.problem, ref.x0, ref.y0)
    assert res.status is Status.PENALIZED and ref.distance(res.x, res.y) > 1e-2
    assert "off the value-gap penalty's path" in res.message and res.penalty < 1e6


def test_paper_presets_run_with_their_own_defaults():
    ref = get_reference("QOFMU")
    paper = {"strategy": "paper"}
    for s in (ofmu(beta=0.0, inner_lr=ref.hints["inner_lr"], **paper), gpbgd(**paper),
              vpbgd(inner_lr=ref.hints["inner_lr"], **paper)):
        res = s.replace(maxiter=300).run(ref.problem, ref.x0, ref.y0)
        d0 = ref.distance(ref.x0, ref.y0)
        assert np.isfinite(res.fun) and ref.distance(res.x, res.y) < d0

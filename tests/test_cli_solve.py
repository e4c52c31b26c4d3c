"""The `ofmu references` / `ofmu solve` contract."""

import json
import subprocess
import sys

import pytest

from ofmu_opt.cli import main

OFMU = [sys.executable, "-m", "ofmu_opt.cli"]


def _solve(capsys, *args):
    code = main(["solve", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("solver", ["gpbgd", "vpbgd", "ofmu"])
def test_solve_p3_default_and_tight_tolerance(capsys, solver):
    extra = ["--option", "beta=0"] if solver == "ofmu" else []
    code, rec = _solve(capsys, "P3", "--solver", solver, *extra)
    assert code == 0 and rec["success"] and rec["distance"] <= 1e-4 and rec["wall_time_s"] > 0
    for key in ("problem", "solver", "backend", "status", "nit", "fun", "counts", "wall_time_s"):
        assert key in rec
    code, rec = _solve(capsys, "P3", "--solver", solver, "--tol", "1e-6", *extra)
    assert code == 0 and rec["distance"] <= 1e-6


def test_penalized_target_solved_at_its_penalty_exits_0(capsys):
    # P9's known solution is the penalized problem's minimizer: status "penalized" is the posed problem solved
    code, rec = _solve(capsys, "P9", "--solver", "vpbgd")
    assert rec["target"] == "penalized" and rec["solved"] and code == 0 and rec["distance"] <= 1e-4


def test_not_converged_exits_1(capsys):
    code, rec = _solve(capsys, "P3", "--solver", "gpbgd", "--maxiter", "5")
    assert code == 1 and rec["status"] == "maxiter" and not rec["success"]


def test_references_json(capsys):
    assert main(["references", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"P1b", "P2", "P3", "P4", "P5", "P9", "QOFMU", "QOFMU-orth"} <= {r["id"] for r in rows}
    constrained = [r for r in rows if r["constrained"]]
    assert len(constrained) >= 9 and {"P5", "ClarkWesterberg1990a", "FalkLiu1995"} <= {r["id"] for r in constrained}
    for r in constrained:  # each names its source and how the optimum was verified
        assert "enumeration" in r["source"] and r["traps"]
        assert r["id"] == "P5" or "via BOLIB" in r["description"]


def test_references_text_tags_constrained_problems(capsys):
    assert main(["references"]) == 0
    out = capsys.readouterr().out
    assert "ShimizuAiyoshi1981Ex1" in out and "[constrained]" in out


@pytest.mark.parametrize("solver", ["gpbgd", "vpbgd", "ofmu", "scalarized"])
def test_solve_p5_constrained_reaches_the_solution(capsys, solver):
    code, rec = _solve(capsys, "P5", "--solver", solver)  # the presets as the CLI configures them, no options
    assert code == 0 and rec["success"] and rec["status"] == "converged" and rec["distance"] <= 1e-4, rec["distance"]
    assert rec["constrained"] and rec["applies"] and rec["solved"] and rec["reason"] is None
    assert max(rec["feasibility"].values()) <= 1e-8  # y >= 0 holds at the returned point
    if solver == "ofmu":
        assert rec["options"]["beta"] == 0.0  # the reference poses the problem without OFMU's similarity term


def test_scalarized_says_plainly_where_its_weights_limit_is_not_the_solution(capsys):
    # Bard1988Ex1 is off the value-gap path: the weighted sum's limit is not the bi-level solution, and it says so
    code, rec = _solve(capsys, "FalkLiu1995", "--solver", "scalarized")
    assert code == 0 and rec["status"] == "converged" and rec["distance"] <= 1e-4  # on the path: certified
    code, rec = _solve(capsys, "Bard1988Ex1", "--solver", "scalarized")
    assert code == 1 and rec["status"] == "penalized" and not rec["solved"] and rec["distance"] > 0.1
    assert "value-gap penalty's path" in rec["message"] and "no convergence is claimed" in rec["message"]
    assert rec["reason"] and "\n" not in rec["reason"]
    code, rec = _solve(capsys, "P5", "--solver", "scalarized", "--option", "strategy=paper")
    assert code == 1 and rec["status"] == "penalized" and rec["distance"] > 0.1  # the fixed weight: biased
    assert "weighted-sum (scalarized) baseline" in rec["message"]
    assert main(["solve", "P3", "--solver", "scalarized"]) == 1
    text = capsys.readouterr().out
    assert "unbounded" in text and "scalarized does not apply" in text


@pytest.mark.slow  # ~10-20 s: ofmu with the similarity term runs to convergence on the changed problem
def test_a_similarity_term_that_changes_the_posed_problem_is_not_reported_solved(capsys):
    code, rec = _solve(capsys, "P5", "--solver", "ofmu", "--option", "beta=0.1")
    assert rec["distance"] > 1e-2 and not rec["solved"] and code == 1
    assert "beta" in rec["reason"]


def test_trap_reference_reports_stationary_not_converged(capsys):
    # ofmu stops at the local minimum x = 0 of LamparielloSagratella2017Ex35: stationary, not solved
    code, rec = _solve(capsys, "LamparielloSagratella2017Ex35", "--solver", "ofmu")
    assert code == 1 and rec["status"] == "stationary" and not rec["success"] and not rec["solved"]
    assert rec["distance"] > 0.5 and "local" in rec["reason"]
    # gpbgd reaches the global minimum x = 0.8: still "stationary" (nothing certifies it), but solved, verified
    # against the reference's known solution
    code, rec = _solve(capsys, "LamparielloSagratella2017Ex35", "--solver", "gpbgd")
    assert code == 0 and rec["status"] == "stationary" and not rec["success"] and rec["solved"]
    assert rec["distance"] <= 1e-4 and rec["reason"] is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["solve", "P42"], "problem id"),
        (["solve", "P3", "--option", "beta=-1"], "beta"),
        (["solve", "P3", "--maxiter", "0"], "--maxiter"),
        (["solve", "P3", "--option", "nonsense"], "NAME=VALUE"),
        (["solve", "P3", "--solver", "sgd"], "solver"),
        (["solve", "P3", "--tol", "2"], "--tol"),
    ],
)
def test_bad_input_exit_2_one_line_no_traceback(args, needle):
    p = subprocess.run([*OFMU, *args], capture_output=True, text=True, timeout=1800)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.count("\n") == 1 and needle in p.stderr


def test_solve_reports_progress_per_round_without_changing_the_run(capsys, caplog, monkeypatch):
    """A long solve is not silent: one progress count per round (log lines off a terminal), same result."""
    import logging

    from ofmu_opt._progress import settings

    monkeypatch.delenv("OFMU_PROGRESS", raising=False)
    with settings(quiet=True):
        _, quiet = _solve(capsys, "P5", "--solver", "gpbgd")
    with settings(mode="log", log_every_s=1e-9, min_phase_s=0.0), caplog.at_level(logging.INFO,
                                                                                     logger="ofmu_opt.progress"):
        _, shown = _solve(capsys, "P5", "--solver", "gpbgd")
    lines = [r.getMessage() for r in caplog.records if r.name == "ofmu_opt.progress"]
    assert lines and all(ln.startswith("solve P5 (gpbgd): ") for ln in lines)
    assert lines[-1].startswith(f"solve P5 (gpbgd): {shown['nit']} round") and lines[-1].endswith("(done)")
    assert "rho=" in lines[0]
    for key in ("nit", "counts", "distance", "y", "status"):
        assert shown[key] == quiet[key]

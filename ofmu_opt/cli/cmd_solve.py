"""``ofmu references`` and ``ofmu solve``: list the reference problems; solve one with a preset."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Any

from ..errors import ConfigError

__all__ = ["register", "solve_reference"]


def _references(args: argparse.Namespace) -> int:
    from ..reference import list_references

    rows = list_references()
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    width = max(len(r["id"]) for r in rows)
    for r in rows:
        tag = " [constrained]" if r.get("constrained") else ""
        sys.stdout.write(f"{r['id']:<{width}}  {r['description']}{tag}\n{'':<{width}}  known solution: {r['source']}\n")
    return 0


def solve_reference(
    problem_id: str, solver_name: str, *, backend: str = "numpy", options: list[str] | None = None,
    maxiter: int | None = None, tol: float = 1e-4, seed: int = 0,
) -> dict[str, Any]:
    """Solve a reference problem and return the JSON record that ``ofmu solve --json`` prints."""
    import numpy as np

    from ..reference import get_reference
    from ..reference.solvers import parse_options, solver_for_reference

    if not (isinstance(tol, float) and 0 < tol < 1):
        raise ConfigError(f"--tol: expected a relative accuracy in (0, 1), received {tol!r}")
    if maxiter is not None and maxiter < 1:
        raise ConfigError(f"--maxiter: expected an integer >= 1, received {maxiter}")
    ref = get_reference(problem_id, seed=seed)
    solver = solver_for_reference(solver_name, ref, tol=tol, options=parse_options(options or []), maxiter=maxiter)
    run_ref: Any = ref
    if backend == "torch":
        try:
            torch_reference = importlib.import_module("ofmu_opt.reference.torch_refs").torch_reference
        except ImportError as exc:  # torch not installed: one line naming the extra
            from ..errors import BackendError
            from . import missing_extra

            why = missing_extra(exc) or f"the torch backend is not available ({exc})"
            raise BackendError(f"--backend torch: {why}") from exc
        run_ref = torch_reference(ref)
    elif backend != "numpy":
        raise ConfigError(f"--backend: expected 'numpy' or 'torch', received {backend!r}")
    from .._progress import progress

    t0 = time.perf_counter()
    # a bar (terminal) or a log line every 30 s: some references take a minute (Outrata1990Ex1a)
    with np.errstate(all="ignore"), progress(f"solve {ref.id} ({solver_name})", unit="round") as bar:
        # a diverging baseline (scalarized) overflows; its status says so
        res = solver.run(run_ref.problem, run_ref.x0, run_ref.y0, callback=lambda r: bar.update(1, rho=r.penalty))
        wall = time.perf_counter() - t0
        sp = run_ref.problem.space
        x = None if res.x is None else sp.to_host(res.x)
        y = sp.to_host(res.y)
        distance = ref.distance(None if x is None else np.asarray(x), np.asarray(y))
    why_not = _why_not(ref, solver)
    within = bool(distance <= tol)
    # a run whose options change the posed problem (a similarity term on a beta = 0 reference) solved it only if it
    # also landed on its solution
    solved = _solved(ref, res, within) and (within or why_not is None or ref.applies.get(solver_name) is not None)
    return {
        "problem": ref.id, "solver": solver_name, "backend": backend, "status": res.status.value,
        "success": res.success, "solved": solved, "reason": _reason(res, solved, why_not),
        "message": res.message, "nit": res.nit, "fun": res.fun, "f_star": ref.f_star,
        "distance": distance, "tol": tol, "within_tol": within, "target": ref.target,
        "applies": ref.applies.get(solver_name) is None, "not_applicable_because": why_not,
        "counts": res.counts, "oracle_calls": sum(res.counts.values()), "penalty": res.penalty,
        "constrained": ref.constrained, "feasibility": _feasibility(run_ref.problem, res),
        "multipliers": _plain(getattr(res, "multipliers", None)),
        "residuals": res.residuals, "wall_time_s": wall, "x": x, "y": y, "options": res.config,
    }


def _solved(ref: Any, res: Any, within: bool) -> bool:
    """Whether the run solved the posed problem: converged; or, for a ``"penalized"`` target (the minimizer at a
    fixed penalty, e.g. P9), stopped at a stationary point of that penalized problem; or, on a problem with local
    minima, stopped ``stationary`` within ``--tol`` of the reference's known global solution (verified, not
    certified)."""
    status = res.status.value
    return bool(res.success or (ref.target == "penalized" and status == "penalized")
                or (ref.target == "bilevel" and status == "stationary" and within))


def _reason(res: Any, solved: bool, why_not: str | None) -> str | None:
    """One line saying why a run did not solve the posed problem (``None`` when it did): the preset's or the
    option's known reason when there is one (e.g. the scalarized baseline's bias), else the status's message."""
    if solved:
        return None
    if why_not:
        return why_not
    return str(res.message).split(". ")[0].rstrip(".") + "."


def _plain(v: Any) -> Any:
    """JSON-ready copy of a result field (tuples to lists, numbers to floats)."""
    if v is None:
        return None
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def _feasibility(problem: Any, res: Any) -> dict[str, float] | None:
    """Largest constraint violation per kind at the returned point (``None`` for an unconstrained problem)."""
    reported = getattr(res, "feasibility", None)
    if reported:
        return {str(k): float(v) for k, v in reported.items()}
    if all(getattr(problem, k, None) is None for k in ("x_set", "y_set", "inner_constraints", "outer_constraints")):
        return None
    from ..problem.constraints import feasibility

    return {str(k): float(v) for k, v in feasibility(problem, res.x, res.y).items()}


def _why_not(ref: Any, solver: Any) -> str | None:
    reason: str | None = ref.applies.get(solver.name)
    if reason is None and solver.similarity != "none" and solver.beta > 0 and ref.id != "QOFMU-orth":
        return (f"{ref.id}'s known solution is for beta = 0; with beta = {solver.beta:g} the similarity term changes "
                "the inner problem, so the distance measures its effect (use --option beta=0)")
    return reason


def _solve(args: argparse.Namespace) -> int:
    rec = solve_reference(
        args.problem, args.solver, backend=args.backend, options=args.option, maxiter=args.maxiter,
        tol=args.tol, seed=args.seed,
    )
    if args.json:
        sys.stdout.write(json.dumps(rec, allow_nan=True) + "\n")
    else:
        sys.stdout.write(
            f"{rec['problem']} / {rec['solver']} ({rec['backend']}): {rec['status']} after {rec['nit']} rounds, "
            f"distance {rec['distance']:.3e}, {rec['oracle_calls']} oracle calls, {rec['wall_time_s']:.2f} s\n"
            f"{rec['message']}\n"
        )
        if rec["reason"]:
            sys.stdout.write(f"not solved: {rec['reason']}\n")
        elif rec["not_applicable_because"]:
            sys.stdout.write(f"note: {rec['not_applicable_because']}\n")
    return 0 if rec["solved"] else 1


def register(sub: Any) -> None:
    p = sub.add_parser("references", help="list the reference problems with known solutions")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_references)

    s = sub.add_parser("solve", help="solve a reference problem with a solver preset")
    s.add_argument("problem", help="reference problem id (see `ofmu references`)")
    s.add_argument("--solver", default="ofmu", help="ofmu | gpbgd | vpbgd | scalarized (default ofmu)")
    s.add_argument("--backend", default="numpy", help="numpy | torch")
    s.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="set any solver option (repeatable), e.g. --option beta=0")
    s.add_argument("--maxiter", type=int, default=None, help="most rounds")
    s.add_argument("--tol", type=float, default=1e-4, help="target relative accuracy (default 1e-4)")
    s.add_argument("--seed", type=int, default=0, help="seed of the problem instance")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(handler=_solve)

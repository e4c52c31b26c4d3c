"""Verify a convergence rate yourself: the Θ(1/ρ) penalty bias of OFMU's stationarity penalty.

OFMU relaxes "θ maximizes the forget objective" into a penalty ρ‖∇Φ(θ)‖². At any finite ρ the penalized
minimizer θ(ρ) is biased; theory (docs/theory.md) says the bias is Θ(1/ρ): slope −1 on a log-log plot.
This script measures it on the Q-OFMU reference problem with the package's own solver, fits the slope on
the asymptotic window, and compares with −1. Then it runs the packaged experiments the same way
(`ofmu rates penalty_bias inner_contraction --quick`).

Run:  python examples/01_verify_a_rate.py [--smoke]
"""

from __future__ import annotations

import argparse

import numpy as np

import ofmu_opt as oo
from ofmu_opt.rates import fit_power_law, run_experiments


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="fewer penalty values (CPU, seconds)")
    a = p.parse_args(argv)
    ref = oo.get_reference("QOFMU")
    rhos = np.logspace(0, 3, 5 if a.smoke else 10)
    bias = []
    for rho in rhos:
        # solve the penalized problem at fixed ρ accurately: constant penalty (strategy="paper", not the
        # presets' default continuation in ρ, which would solve the bi-level problem itself), Nesterov + backtracking
        solver = oo.gpbgd(penalty=float(rho), strategy="paper", line_search=True, outer_rule="nesterov",
                          scale_step_by_penalty=False, tol=1e-12, maxiter=200_000)
        res = solver.run(ref.problem, None, ref.y0)
        bias.append(ref.distance(None, res.y))
        print(f"rho = {rho:9.2f}   {res.status.value:9s} rounds {res.nit:6d}   bias ‖θ(ρ) − θ*‖/‖θ*‖ = {bias[-1]:.3e}")
    fit = fit_power_law(rhos, np.array(bias), drop=0.3)
    verdict = "holds" if abs(fit.slope + 1) <= 0.15 and fit.r2 >= 0.95 else "fails"
    print(f"fitted slope {fit.slope:.3f} (expected -1), R² {fit.r2:.4f}: {verdict}")

    print("\nThe packaged experiments (same fits, JSON + PNG under ./rates_out):")
    results = run_experiments(["penalty_bias", "inner_contraction"], quick=True, out="rates_out")
    failed = False
    for r in results:
        for rec in r.records:
            print(f"  {rec.experiment:18s} {rec.kind:5s} fitted {rec.fitted:9.4f} "
                  f"expected {rec.expected:9.4f}  {rec.verdict}")
            failed |= rec.verdict != "holds"
    return 1 if (verdict != "holds" or failed) else 0


if __name__ == "__main__":
    raise SystemExit(main())

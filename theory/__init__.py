"""Symbolic derivations behind OFMU (arXiv 2509.22483) and the penalty method, checked with sympy.

Each function returns a :class:`Derivation`: a sympy expression derived by sympy (``diff``, ``solve``,
``limit``, Taylor coefficients), its lambdified numeric form, the equation it covers and the assumptions
(:mod:`theory.assumptions`) under which it holds. Identities carry the closed form they must equal; the
tests assert ``sympy.simplify(lhs - rhs) == 0`` and compare the numeric forms with independent numpy
computations and with the package ``ofmu_opt``. The package never imports this one.

Modules:
    similarity: ∂ sim/∂(a, b) for the kinds signed/abs/squared; the spec's ∇c = H_f u_f + H_r u_r.
    penalty: ∇F = ∇L_r + 2ρ∇²Φ∇Φ (paper Eq. 7) and ∇²F.
    closed_forms: penalized minimizers of Q-OFMU and P3 (stationarity and value-gap penalties), their
        limits and their Θ(1/ρ) bias coefficients.
    smoothness: L_ρ = λ_max(H_out + 2ρM), L_ρ/ρ → 2λ_max(M).
    contraction: (1 − μ/L)^T for T gradient steps.
    bounds: K* ∝ T and O(1/T) in the convex bound, the non-convex floor, Eq. 35.
    counterexamples: where the paper's stated theory fails.
    assumptions: the assumptions of every result and the list of the paper's issues.

Example:
    >>> from theory import similarity_partials
    >>> similarity_partials("signed", 2).cites.startswith("OFMU_SPEC.md")
    True
"""

from ._derivation import Derivation
from .assumptions import ASSUMPTIONS, PAPER_ISSUES
from .bounds import (
    convex_bound_in_budget,
    convex_bound_minimum,
    convex_bound_optimal_K,
    eq35_bound,
    eq35_sides_np,
    eq35_slack,
    nonconvex_bound,
    nonconvex_bound_in_budget,
    parallelogram_slack,
)
from .closed_forms import (
    p3_base_inner_gradient,
    p3_bias_coefficient,
    p3_limit,
    p3_penalized_minimizer,
    qofmu_bias_coefficient,
    qofmu_limit,
    qofmu_penalized_minimizer,
    quadratic_penalty_bias,
)
from .contraction import contraction_factor, gd_error_after_steps, gd_step_map
from .counterexamples import (
    convex_maximization_unbounded,
    stationarity_counterexample_phi,
    stationarity_not_maximality,
)
from .penalty import penalized_hessian_generic, penalized_objective, penalty_gradient, penalty_gradient_generic
from .similarity import cosine_theta_gradient, similarity_hessian, similarity_partials, similarity_value
from .smoothness import lambda_max_2x2, qofmu_penalized_hessian, smoothness_growth

__all__ = [
    "ASSUMPTIONS",
    "PAPER_ISSUES",
    "Derivation",
    "contraction_factor",
    "convex_bound_in_budget",
    "convex_bound_minimum",
    "convex_bound_optimal_K",
    "convex_maximization_unbounded",
    "cosine_theta_gradient",
    "eq35_bound",
    "eq35_sides_np",
    "eq35_slack",
    "gd_error_after_steps",
    "gd_step_map",
    "lambda_max_2x2",
    "nonconvex_bound",
    "nonconvex_bound_in_budget",
    "p3_base_inner_gradient",
    "p3_bias_coefficient",
    "p3_limit",
    "p3_penalized_minimizer",
    "parallelogram_slack",
    "penalized_hessian_generic",
    "penalized_objective",
    "penalty_gradient",
    "penalty_gradient_generic",
    "qofmu_bias_coefficient",
    "qofmu_limit",
    "qofmu_penalized_hessian",
    "qofmu_penalized_minimizer",
    "quadratic_penalty_bias",
    "similarity_hessian",
    "similarity_partials",
    "similarity_value",
    "smoothness_growth",
    "stationarity_counterexample_phi",
    "stationarity_not_maximality",
]

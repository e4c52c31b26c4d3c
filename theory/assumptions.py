"""Precise assumptions for each result in :mod:`theory`, and where the paper's stated theory is inconsistent.

Every :class:`~theory.Derivation` names the keys of :data:`ASSUMPTIONS` under which it holds. The results
of this package hold exactly under those assumptions and are not claimed beyond them. :data:`PAPER_ISSUES`
lists the points where the theory stated in the paper (OFMU_SPEC.md §3) does not hold as stated, each with
the function of :mod:`theory` that demonstrates it.

Notation: θ the parameters (``y`` in code), L_f / L_r the forget / retain losses, Φ = L_f − β·sim the
inner objective (maximized), F = L_r + ρ‖∇Φ‖² the penalized objective, c = cos(∇L_f, ∇L_r).

Example:
    >>> list(ASSUMPTIONS)[:2]
    ['A1_smooth', 'A2_nonzero_gradients']
    >>> ASSUMPTIONS['A6_strongly_concave_inner'].statement.startswith('−Φ')
    True
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ASSUMPTIONS", "PAPER_ISSUES", "Assumption", "PaperIssue"]


@dataclass(frozen=True)
class Assumption:
    """One assumption: its key, its statement, and why the results that cite it need it."""

    key: str
    statement: str
    why: str


@dataclass(frozen=True)
class PaperIssue:
    """A point where the paper's stated theory fails as stated, and the evidence in :mod:`theory`."""

    key: str
    claim: str
    problem: str
    consequence: str
    evidence: str


_A = [
    Assumption(
        "A1_smooth",
        "L_f and L_r are three times continuously differentiable on an open set containing the points "
        "considered (so ∇Φ, ∇²Φ and ∇F exist and the Hessians are symmetric).",
        "∇F = ∇L_r + 2ρ∇²Φ∇Φ differentiates ∇Φ, which already contains ∇²L_f and ∇²L_r through the "
        "similarity term; the chain rule H_f ∂s/∂a + H_r ∂s/∂b uses the symmetry of the Hessians.",
    ),
    Assumption(
        "A2_nonzero_gradients",
        "With eps = 0: ∇L_f(θ) ≠ 0 and ∇L_r(θ) ≠ 0. With eps > 0: the closed form of ∂c/∂a needs a ≠ 0 "
        "(its second term p‖b‖a/(‖a‖D²) has the limit 0 as a → 0, which is the value the package uses).",
        "c = <a,b>/(‖a‖‖b‖ + eps) and its derivatives divide by ‖a‖, ‖b‖.",
    ),
    Assumption(
        "A3_abs_nonzero_cos",
        "Kind 'abs' only: c ≠ 0. |c| is not differentiable where c = 0; there sign(0) = 0 gives one element "
        "of the Clarke subdifferential, not a gradient.",
        "∂|c| = sign(c)∂c holds only where c ≠ 0; the symbolic check replaces sign(c) by a symbol "
        "σ ∈ {−1, 1}.",
    ),
    Assumption(
        "A4_quadratic_models",
        "L_f and L_r (or f and g) are quadratic: constant Hessians, zero third derivatives.",
        "Closed-form penalized minimizers are linear solves only for quadratic models; for them "
        "∇²F = ∇²L_r + 2ρ(∇²Φ)² exactly (the term 2ρ∇³Φ[∇Φ] vanishes).",
    ),
    Assumption(
        "A5_beta_zero",
        "β = 0 (no similarity term) in the closed forms. The cosine term is not quadratic, so with β ≠ 0 "
        "Φ is not quadratic and F has no closed-form minimizer.",
        "Q-OFMU and P3 closed forms.",
    ),
    Assumption(
        "A6_strongly_concave_inner",
        "−Φ is μ-strongly convex (Q-OFMU: A ≻ 0 at β = 0). Then Φ has exactly one stationary point, which "
        "is its unique maximizer, so the constraint ∇Φ(θ) = 0 is equivalent to θ ∈ argmax Φ.",
        "Only under this assumption does the stationarity penalty ‖∇Φ‖² enforce maximality (see "
        "PAPER_ISSUES 'stationarity_not_maximality').",
    ),
    Assumption(
        "A7_affine_inner_set",
        "Q-OFMU with A ⪰ 0 singular (β = 0): Φ is concave, its maximizers form the affine set "
        "{θ : A(θ − a) = 0} = a + null(A), and B is positive definite on null(A).",
        "The bi-level solution is then the minimizer of L_r over that set, which the outer level selects.",
    ),
    Assumption(
        "A8_p3",
        "P3: Q ≻ 0 (the inner problem is strongly convex in y for every x), H ⪰ 0 and P = JᵀJ + H ≻ 0 with "
        "J = −Q⁻¹Cᵀ (the reduced outer problem is strongly convex).",
        "y*(x) = Jx + c is unique and the bi-level solution x* = −P⁻¹q exists and is unique.",
    ),
    Assumption(
        "A9_penalty_regular",
        "Penalty of an affine constraint Gz = r, f quadratic with Hessian P: G has full row rank and P is "
        "positive definite on null(G); for an exact Θ(1/ρ) (not only O(1/ρ)) the multiplier λ* of the "
        "constraint at the solution is nonzero (equivalently, the constraint is active: the unconstrained "
        "minimizer of f violates it).",
        "z(ρ) = z* + w/ρ + O(1/ρ²) with w from a KKT solve; w ≠ 0 iff λ* ≠ 0.",
    ),
    Assumption(
        "A10_smooth_strongly_convex",
        "The objective minimized by the inner loop (−Φ for the ascent on Φ) is twice continuously "
        "differentiable with μI ⪯ ∇² ⪯ LI, μ > 0; gradients are exact (deterministic) and the step is 1/L.",
        "The step map z ↦ z − ∇(−Φ)(z)/L has Jacobian I − ∇²/L with eigenvalues in [0, 1 − μ/L], so by the "
        "integral mean-value theorem it contracts distances by 1 − μ/L; for a quadratic the factor is "
        "attained along the μ-eigenvector. Stochastic gradients add a variance floor not covered here.",
    ),
    Assumption(
        "A11_paper_constants",
        "The paper's bounds are taken as given with positive constants C1, C2 (C3) that do not depend on "
        "K and T. This package derives only what follows from the bound's form (K*, the minimal value); it "
        "does not re-prove the bound, and the constants do depend on ρ (see PAPER_ISSUES "
        "'constants_depend_on_rho').",
        "K* = T·sqrt(C1/C2) and 2·sqrt(C1·C2)/T use nothing but the form C1/K + C2·K/T².",
    ),
    Assumption(
        "A12_eq35_bounds",
        "Along the iterates ‖∇L_r(θ)‖ ≤ G_r and ‖∇²Φ(θ)‖₂ ≤ H (spectral norm).",
        "Eq. 35 replaces ‖∇L_r‖ and ‖∇²Φ∇Φ‖ by these bounds after ‖a+b‖² ≤ 2‖a‖² + 2‖b‖².",
    ),
    Assumption(
        "A13_exact_inner_solve",
        "P3 with base='inner': the inner loop returns y = y*(x) exactly (T → ∞, or a direct solve).",
        "The outer step then reads ∇_y g = 0, so the penalty term carries no hyper-gradient to x.",
    ),
]

ASSUMPTIONS: dict[str, Assumption] = {a.key: a for a in _A}
"""Assumption key -> :class:`Assumption`."""

PAPER_ISSUES: tuple[PaperIssue, ...] = (
    PaperIssue(
        "convex_phi_maximized",
        "Convex case: error O(1/K) + O(K/T²), under the assumption that Φ is convex.",
        "The inner problem maximizes Φ. A convex function that is not constant along some line is "
        "unbounded above along it, so max Φ has no solution (the paper's convex case is vacuous or "
        "contradictory). The consistent assumption is −Φ convex (Φ concave), strongly for a unique inner "
        "solution.",
        "The convex-case rate holds in this package's reading only with −Φ (strongly) convex "
        "(A6_strongly_concave_inner), i.e. the inner problem is a concave maximization.",
        "theory.counterexamples.convex_maximization_unbounded",
    ),
    PaperIssue(
        "stationarity_not_maximality",
        "The penalty ρ‖∇Φ‖² relaxes the constraint θ ∈ argmax Φ.",
        "‖∇Φ‖² vanishes at every stationary point of Φ: minima and saddles as well as maxima. For "
        "Φ(θ) = θ³/3 − θ and L_r = ½(θ − 1)², F(1) = 0 for every ρ, so θ = 1 minimizes F, yet θ = 1 is a "
        "strict local minimum of Φ (Φ''(1) = 2): the penalized solution 'forgets' nothing.",
        "The penalty formulation equals the bi-level problem only when Φ has no stationary points other "
        "than maximizers (A6_strongly_concave_inner, or Φ concave as in A7_affine_inner_set).",
        "theory.counterexamples.stationarity_not_maximality",
    ),
    PaperIssue(
        "eq35_floor",
        "Eq. 35: E‖∇F‖² ≤ 2G_r² + 8ρ²H²E‖∇Φ‖².",
        "The inequality is correct (‖a+b‖² ≤ 2‖a‖² + 2‖b‖²), but its term 2G_r² does not vanish: at the "
        "penalized minimizer ∇F = 0, while 2‖∇L_r(θ_ρ)‖² → 2‖∇L_r(θ*)‖² > 0 whenever the constraint is "
        "active. The bound therefore cannot show ‖∇F‖ → 0; any rate built on it has a floor 2G_r².",
        "Eq. 35 is a valid but loose a-priori bound; it is checked numerically at iterates, not used to "
        "claim convergence.",
        "theory.bounds.eq35_bound and tests/theory/test_bounds.py::test_eq35_floor_does_not_vanish",
    ),
    PaperIssue(
        "constants_depend_on_rho",
        "Rates O(1/K) + O(K/T²) and O(1/K) + O(1/T) + O(σ²) stated without the dependence on ρ.",
        "The smoothness of F grows like ρ (L_ρ/ρ → 2λ_max(M)), so a fixed-step gradient method on F needs "
        "steps O(1/ρ), and Eq. 35's right-hand side grows like ρ². Constants that hide ρ cannot be uniform "
        "under the paper's schedule ρ_k = ρ0·γ^k.",
        "Read every rate at fixed ρ; with a growing ρ the constants grow too.",
        "theory.smoothness.smoothness_growth",
    ),
    PaperIssue(
        "penalty_bias",
        "Convergence of the penalty method to the bi-level solution.",
        "At a fixed ρ the penalized minimizer differs from the bi-level solution by Θ(1/ρ) (quadratic "
        "models, A9_penalty_regular); the rates describe convergence to the penalized minimizer.",
        "The bi-level solution is reached only as ρ → ∞ (or by extrapolation in 1/ρ).",
        "theory.closed_forms.qofmu_bias_coefficient, theory.closed_forms.p3_bias_coefficient",
    ),
    PaperIssue(
        "signed_cosine_anti_aligns",
        "The similarity term decorrelates the forget and retain gradients.",
        "With the signed cosine, maximizing Φ = L_f − β·cos pushes cos → −1 (anti-alignment), not to 0. "
        "Only the 'abs' and 'squared' kinds have orthogonality (cos = 0) as their optimum.",
        "The package offers all three kinds; the symbolic gradients of each are derived here.",
        "theory.similarity.similarity_partials",
    ),
    PaperIssue(
        "base_inner_with_outer_variable",
        "The outer step starts from the inner result (base='inner').",
        "With a separate outer variable x (P3), resetting y to y*(x) makes ∇_y g = 0, so the outer "
        "x-gradient of the penalized objective is ∇_x f(x, y*(x)) = Hx only: the hyper-gradient "
        "term Jᵀ(y*(x) − t) is lost and x tends to 0 instead of x* = −P⁻¹q.",
        "base='inner' must not be used when x is present (OFMU_SPEC.md §2).",
        "theory.closed_forms.p3_base_inner_gradient",
    ),
)
"""Where the stated theory fails, with the evidence in this package."""

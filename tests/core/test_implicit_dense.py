"""ImplicitDiff(inner_solver="dense"): dense inner Hessian, Cholesky Newton steps and adjoint.

Reference: the cg variant (Newton-CG through HVPs) on the same problems; on a quadratic inner problem both solve
every linear system to round-off, so their iterates agree to round-off.
"""

import dataclasses

import numpy as np
import pytest

from ofmu_opt.backends.numpy_backend import NumpySpace
from ofmu_opt.core.comparison import DenseHessian, ImplicitDiff
from ofmu_opt.core.result import Status
from ofmu_opt.errors import ConfigError, OracleError
from ofmu_opt.problem.bilevel import BilevelProblem
from ofmu_opt.problem.oracles import CallCounter, CountingObjective, FunctionObjective
from ofmu_opt.reference import get_reference
from ofmu_opt.reference.problems import make_p3
from ofmu_opt.testing import (
    check_deterministic,
    check_run_equals_manual_loop,
    check_solves_reference,
    check_state_structure,
    check_stop_iteration,
)

SP = NumpySpace()


class _WithHessian:
    """An objective with a dense ``hessian`` oracle next to value/grad/hvp."""

    def __init__(self, base, hessian):
        self.base, self._hessian = base, hessian
        self.calls = 0

    def value(self, x, y, *, batch=None):
        return self.base.value(x, y, batch=batch)

    def grad(self, x, y, *, batch=None):
        return self.base.grad(x, y, batch=batch)

    def hvp(self, x, y, v, *, batch=None):
        return self.base.hvp(x, y, v, batch=batch)

    def hessian(self, x, y, *, batch=None):
        self.calls += 1
        return self._hessian(x, y)


def _p3_like(seed=0, nx=3, ny=5, hessian=False, space=SP):
    ref = make_p3(seed, nx, ny)
    inner = ref.problem.inner
    if hessian:
        Q, C = ref.data["Q"], ref.data["C"]
        inner = _WithHessian(inner, lambda x, y: (C.copy(), Q.copy()))
    return ref, dataclasses.replace(ref.problem, inner=inner, space=space)


def _softplus_problem(sense="min", hessian=True):
    """A non-quadratic, strongly convex lower level: g = ½yᵀQy + xᵀCy + Σ softplus(y) (negated for sense="max");
    f = ½‖y − t‖² + ½‖x‖²."""
    rng = np.random.default_rng(7)
    nx, ny = 3, 4
    A = rng.standard_normal((ny, ny))
    Q = A @ A.T / ny + 0.5 * np.eye(ny)
    C = rng.standard_normal((nx, ny))
    t = rng.standard_normal(ny)
    s = 1.0 if sense == "min" else -1.0
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    base = FunctionObjective(
        value_fn=lambda x, y, _b: s * float(0.5 * y @ Q @ y + x @ C @ y + np.sum(np.logaddexp(0.0, y))),
        grad_fn=lambda x, y, _b: (s * (C @ y), s * (Q @ y + C.T @ x + sig(y))),
        hvp_fn=lambda x, y, v, _b: (s * (C @ v), s * (Q @ v + sig(y) * (1 - sig(y)) * v)),
    )
    inner = base if not hessian else _WithHessian(
        base, lambda x, y: (s * C, s * (Q + np.diag(sig(y) * (1 - sig(y))))))
    outer = FunctionObjective(
        value_fn=lambda x, y, _b: float(0.5 * np.sum((y - t) ** 2) + 0.5 * x @ x),
        grad_fn=lambda x, y, _b: (x.copy(), y - t),
        hvp_fn=lambda x, y, v, _b: (np.zeros(nx), v.copy()),
    )
    return BilevelProblem(outer, inner, SP, sense, has_x=True, name="softplus"), np.ones(nx), np.zeros(ny)


def _trajectory(solver, problem, x0, y0, rounds):
    st = solver.init_state(problem, x0, y0)
    out = []
    for _ in range(rounds):
        st = solver.update(problem, st)
        out.append((st.x.copy(), st.y.copy(), st.terminal))
        if st.terminal:
            break
    return out


@pytest.mark.parametrize("rule", ["lbfgs", "nesterov"])
@pytest.mark.parametrize(("seed", "nx", "ny"), [(0, 3, 5), (1, 4, 8)])
def test_dense_iterates_match_cg_on_p3(rule, seed, nx, ny):
    ref, prob = _p3_like(seed, nx, ny)
    kw = {"outer_rule": rule, "tol": 1e-10, "lr": 0.2}
    cg = _trajectory(ImplicitDiff(inner_solver="cg", **kw), prob, ref.x0, ref.y0, 12)
    dense = _trajectory(ImplicitDiff(inner_solver="dense", **kw), prob, ref.x0, ref.y0, 12)
    assert len(cg) == len(dense) >= 5
    for (xc, yc, tc), (xd, yd, td) in zip(cg, dense, strict=True):
        assert tc == td
        np.testing.assert_allclose(xd, xc, rtol=0, atol=1e-9)
        np.testing.assert_allclose(yd, yc, rtol=0, atol=1e-9)


@pytest.mark.parametrize("pid", ["P3", "P9"])
def test_dense_answer_equals_cg_on_references(pid):
    """P3 and P9 share P3's strongly convex lower level; ImplicitDiff solves the bi-level problem on both (P9's
    own target is the penalized point, which no implicit method aims at), so both variants land on P3's x*."""
    ref = get_reference(pid)
    prob = dataclasses.replace(ref.problem, space=SP)
    a = ImplicitDiff(inner_solver="cg", outer_rule="lbfgs", tol=1e-10).run(prob, ref.x0, ref.y0)
    b = ImplicitDiff(inner_solver="dense", outer_rule="lbfgs", tol=1e-10).run(prob, ref.x0, ref.y0)
    p3 = get_reference("P3")
    assert a.status is b.status is Status.CONVERGED
    assert a.nit == b.nit
    assert p3.distance(b.x, b.y) < 1e-9
    np.testing.assert_allclose(b.x, a.x, atol=1e-10)


def test_dense_matches_cg_on_a_non_quadratic_lower_level():
    prob, x0, y0 = _softplus_problem()
    a = ImplicitDiff(inner_solver="cg", outer_rule="lbfgs", tol=1e-10).run(prob, x0, y0)
    b = ImplicitDiff(inner_solver="dense", outer_rule="lbfgs", tol=1e-10).run(prob, x0, y0)
    # the problem does not declare local_is_global: a met stopping test is reported as "stationary"
    assert a.status is b.status is Status.STATIONARY and a.nit == b.nit
    np.testing.assert_allclose(b.x, a.x, atol=1e-8)
    np.testing.assert_allclose(b.y, a.y, atol=1e-8)
    # the answer is a stationary point of h(x) = f(x, y*(x)): central differences of h through a tight inner solve
    g = prob.inner

    def ystar(x):
        y = b.y.copy()
        for _ in range(50):
            y = y - np.linalg.solve(g.hessian(x, y)[1], g.grad(x, y)[1])
        return y

    def h(x):
        return prob.outer.value(x, ystar(x))

    e = 1e-5
    fd = np.array([(h(b.x + e * u) - h(b.x - e * u)) / (2 * e) for u in np.eye(len(b.x))])
    assert np.linalg.norm(fd) < 1e-7


def test_sense_max_gives_the_same_run_as_min():
    _, x0, y0 = _softplus_problem()
    for hess in (True, False):
        pmin, _, _ = _softplus_problem("min", hessian=hess)
        pmax, _, _ = _softplus_problem("max", hessian=hess)
        s = ImplicitDiff(inner_solver="dense", outer_rule="lbfgs", tol=1e-10)
        a, b = s.run(pmin, x0, y0), s.run(pmax, x0, y0)
        assert a.status is b.status is Status.STATIONARY and a.nit == b.nit
        np.testing.assert_allclose(b.x, a.x, atol=1e-12)


def test_hessian_oracle_and_hvp_assembly_agree_and_are_counted():
    ref, with_oracle = _p3_like(hessian=True)
    _, without = _p3_like(hessian=False)
    s = ImplicitDiff(inner_solver="dense", outer_rule="lbfgs", tol=1e-10)
    a, b = s.run(with_oracle, ref.x0, ref.y0), s.run(without, ref.x0, ref.y0)
    assert a.success and b.success and a.nit == b.nit
    np.testing.assert_allclose(a.x, b.x, atol=1e-12)
    ny = len(ref.y0)
    # one counted hessian call per dense Hessian, each replacing ny HVPs along the unit vectors; the other
    # oracles are asked exactly as often on both paths
    assert a.counts["g_hessian"] > 0 and "g_hvp" not in a.counts and "g_hessian" not in b.counts
    assert b.counts["g_hvp"] == ny * a.counts["g_hessian"]
    assert {k: v for k, v in a.counts.items() if k != "g_hessian"} == {
        k: v for k, v in b.counts.items() if k != "g_hvp"}
    assert with_oracle.inner.calls == a.counts["g_hessian"]
    # fewer linear-algebra oracle calls than the cg variant, which pays one HVP per CG iteration
    c = ImplicitDiff(inner_solver="cg", outer_rule="lbfgs", tol=1e-10).run(without, ref.x0, ref.y0)
    assert a.counts["g_hessian"] < c.counts["g_hvp"]


def test_hessian_reuse_forms_one_hessian_per_round_on_a_quadratic_and_keeps_the_iterates():
    ref, prob = _p3_like(hessian=True)
    kw = {"inner_solver": "dense", "outer_rule": "lbfgs", "tol": 1e-10}
    reuse = ImplicitDiff(**kw).run(prob, ref.x0, ref.y0)
    fresh = ImplicitDiff(hessian_reuse=False, **kw).run(prob, ref.x0, ref.y0)
    assert reuse.success and fresh.success and reuse.nit == fresh.nit
    np.testing.assert_allclose(reuse.x, fresh.x, atol=1e-12)
    # a quadratic inner problem: the adjoint's Hessian also serves the next round's Newton steps exactly, so one
    # Hessian per round (the adjoint's) plus the first Newton step's; without reuse every Newton step forms its own
    assert reuse.counts["g_hessian"] == reuse.nit + 1
    assert fresh.counts["g_hessian"] > reuse.counts["g_hessian"] + reuse.nit // 2
    # line-search trials start from the implicit-function predictor, which is exact here: the trial's first
    # gradient already meets the inner tolerance, one gradient call fewer per round after the first
    assert reuse.counts["g_grad"] == fresh.counts["g_grad"] - (reuse.nit - 1)
    assert {k: reuse.counts[k] for k in ("f_grad", "f_value")} == {k: fresh.counts[k] for k in ("f_grad", "f_value")}


def test_hessian_reuse_on_a_non_quadratic_lower_level_reaches_the_same_answer():
    prob, x0, y0 = _softplus_problem()
    kw = {"inner_solver": "dense", "outer_rule": "lbfgs", "tol": 1e-10}
    reuse = ImplicitDiff(**kw).run(prob, x0, y0)
    fresh = ImplicitDiff(hessian_reuse=False, **kw).run(prob, x0, y0)
    assert reuse.status is fresh.status is Status.STATIONARY
    np.testing.assert_allclose(reuse.x, fresh.x, atol=1e-8)
    np.testing.assert_allclose(reuse.y, fresh.y, atol=1e-8)
    # the inner solutions are as tight as with fresh Newton steps (the check undoes chord steps that stall)
    assert np.linalg.norm(prob.inner.grad(reuse.x, reuse.y)[1]) < 1e-10
    assert reuse.counts["g_hessian"] < fresh.counts["g_hessian"]


def test_a_stalling_reused_factorization_is_replaced():
    """A chord step from a badly wrong factorization (100·I, from some other point) that does not halve the
    gradient is undone and retaken with the Hessian of its own point."""
    prob, x0, y0 = _softplus_problem()
    s = ImplicitDiff(inner_solver="dense")
    g = prob.inner
    n = len(y0)
    wrong = DenseHessian(x0.copy(), y0.copy(), [[10.0 * (i == j) for j in range(n)] for i in range(n)],
                         [[0.0] * n for _ in x0])
    y = s._dense_newton(prob, g, x0, y0 - 3.0, None, [wrong])
    assert np.linalg.norm(g.grad(x0, y)[1]) < 1e-10
    assert g.calls >= 1  # fresh Hessians were formed
    # and without the check a chord iteration with 100·I would need hundreds of steps: the solve took few
    counted = ImplicitDiff(inner_solver="dense", inner_maxiter=8)
    y8 = counted._dense_newton(prob, g, x0, y0 - 3.0, None, [wrong])
    assert np.linalg.norm(g.grad(x0, y8)[1]) < 1e-10


def test_a_factorization_is_reused_at_the_same_point_only():
    ref, prob = _p3_like(hessian=True)
    s = ImplicitDiff(inner_solver="dense")
    g = prob.inner
    x, y = ref.x0 + 1.0, ref.y0 + 1.0
    memo = [None]
    h1 = s._dense_hessian(prob, g, x, y, None, memo)
    assert isinstance(h1, DenseHessian) and g.calls == 1
    assert s._dense_hessian(prob, g, x, y, None, memo) is h1 and g.calls == 1
    s._dense_hessian(prob, g, x.copy(), y, None, memo)  # equal values, another point object: a new call
    assert g.calls == 2


def test_dense_passes_the_harness_on_p3():
    ref = get_reference("P3")
    ref = dataclasses.replace(ref, problem=dataclasses.replace(ref.problem, space=SP))
    s = ImplicitDiff(inner_solver="dense", outer_rule="lbfgs", tol=1e-10)
    check_state_structure(s, ref)
    check_run_equals_manual_loop(s, ref)
    check_stop_iteration(s, ref)
    check_deterministic(s, ref)
    assert check_solves_reference(s, ref) < 1e-9
    check_state_structure(ImplicitDiff(inner_solver="dense", outer_rule="nesterov", lr=0.2), ref)


def test_not_positive_definite_lower_level_is_not_convex():
    # P4: the inner Hessian diag(1, 0) is singular
    ref = get_reference("P4")
    res = ImplicitDiff(inner_solver="dense", outer_rule="lbfgs").run(
        dataclasses.replace(ref.problem, space=SP), ref.x0, ref.y0)
    assert res.status is Status.NOT_CONVEX and res.nit == 1
    # an indefinite lower level (a saddle in y), from the hessian oracle
    ref3, prob = _p3_like(hessian=True)
    Q, C = ref3.data["Q"], ref3.data["C"]
    Qn = Q - 2 * np.linalg.eigvalsh(Q).max() * np.eye(len(Q))
    bad = _WithHessian(prob.inner, lambda x, y: (C, Qn))
    res = ImplicitDiff(inner_solver="dense").run(dataclasses.replace(prob, inner=bad), ref3.x0, ref3.y0 + 1.0)
    assert res.status is Status.NOT_CONVEX


def test_non_finite_hessian_is_numerical_error():
    ref, prob = _p3_like()
    C = ref.data["C"]
    nan = _WithHessian(prob.inner, lambda x, y: (C, np.full((5, 5), np.nan)))
    res = ImplicitDiff(inner_solver="dense").run(dataclasses.replace(prob, inner=nan), ref.x0, ref.y0 + 1.0)
    assert res.status is Status.NUMERICAL_ERROR


@pytest.mark.parametrize("value", [0, -3, True, 2.5])
def test_bad_dense_max_dim(value):
    with pytest.raises(ConfigError, match="dense_max_dim"):
        ImplicitDiff(inner_solver="dense", dense_max_dim=value)


@pytest.mark.parametrize("value", [1, "yes", None])
def test_bad_hessian_reuse(value):
    with pytest.raises(ConfigError, match="hessian_reuse"):
        ImplicitDiff(inner_solver="dense", hessian_reuse=value)


def test_inner_dimension_above_the_cap_is_refused():
    ref, prob = _p3_like(nx=2, ny=12)
    with pytest.raises(ConfigError, match="12 entries, above dense_max_dim=10"):
        ImplicitDiff(inner_solver="dense", dense_max_dim=10).run(prob, ref.x0, ref.y0)
    assert ImplicitDiff(inner_solver="dense", dense_max_dim=12, maxiter=2).run(prob, ref.x0, ref.y0).nit == 2


def test_space_without_from_host_is_refused():
    class Bare(NumpySpace):
        from_host = None

    ref, prob = _p3_like(space=Bare())
    with pytest.raises(ConfigError, match="from_host"):
        ImplicitDiff(inner_solver="dense").run(prob, ref.x0, ref.y0)


@pytest.mark.parametrize(
    ("blocks", "match"),
    [
        (lambda C, Q: (C, Q[:4, :4]), "y block has 16 entries, expected 5 × 5"),
        (lambda C, Q: (C[:, :2], Q), "mixed block has 6 entries, expected 3 × 5"),
        (lambda C, Q: (C, Q.astype(complex)), "y block: expected a real 2-D array"),
        (lambda C, Q: (C, Q.ravel()), "y block: expected a real 2-D array"),
        (lambda C, Q: (C, None), "the y block is None"),
        (lambda C, Q: Q, "expected a pair"),
    ],
)
def test_bad_hessian_oracle_output_is_an_oracle_error(blocks, match):
    ref, prob = _p3_like()
    Q, C = ref.data["Q"], ref.data["C"]
    bad = _WithHessian(prob.inner, lambda x, y: blocks(C, Q))
    with pytest.raises(OracleError, match=match):
        ImplicitDiff(inner_solver="dense").run(dataclasses.replace(prob, inner=bad), ref.x0, ref.y0 + 1.0)


def test_counting_objective_forwards_the_hessian_oracle():
    ref, prob = _p3_like(hessian=True)
    counter = CallCounter()
    wrapped = CountingObjective(prob.inner, "g", counter)
    assert wrapped.hessian_available
    cross, yy = wrapped.hessian(ref.x0, ref.y0)
    np.testing.assert_array_equal(yy, ref.data["Q"])
    np.testing.assert_array_equal(cross, ref.data["C"])
    assert counter.snapshot() == {"g_hessian": 1}
    assert not CountingObjective(ref.problem.inner, "g", CallCounter()).hessian_available


def test_torch_backend_with_a_tuple_inner_variable_matches_numpy():
    """The dense solves go through the space's to_host/from_host, so a torch problem whose y is a tuple of two
    tensors (no hessian oracle: the blocks come from HVPs) lands where the numpy run does."""
    torch = pytest.importorskip("torch")
    from ofmu_opt.backends.torch_autodiff import TorchObjective
    from ofmu_opt.backends.torch_backend import TorchSpace

    ref = get_reference("P3")
    d = {k: torch.tensor(v, dtype=torch.float64) for k, v in ref.data.items()}

    def cat(y):
        return torch.cat(y)

    def inner(x, y, _b):
        z = cat(y)
        return 0.5 * z @ d["Q"] @ z + x @ d["C"] @ z + d["a"] @ z

    def outer(x, y, _b):
        return 0.5 * ((cat(y) - d["t"]) ** 2).sum() + 0.5 * x @ d["H"] @ x

    space = TorchSpace()
    prob = BilevelProblem(TorchObjective(outer, has_x=True), TorchObjective(inner, has_x=True), space, "min",
                          has_x=True, local_is_global=True)
    x0 = torch.zeros(3, dtype=torch.float64)
    y0 = (torch.zeros(2, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    res = ImplicitDiff(inner_solver="dense", outer_rule="lbfgs", tol=1e-10).run(prob, x0, y0)
    assert res.success and isinstance(res.y, tuple) and res.y[0].shape == (2,)
    assert ref.distance(res.x.numpy(), torch.cat(res.y).numpy()) < 1e-9
    assert "g_hessian" not in res.counts and res.counts["g_hvp"] % 5 == 0  # assembled from 5 HVPs per Hessian


# ---------------------------------------------------------------------- outer_rule="newton"


class _OuterWithHessian(_WithHessian):
    """An outer objective with dense ``hessian`` (mixed, y) and ``hessian_xx`` oracles."""

    def __init__(self, base, hessian, hessian_xx):
        super().__init__(base, hessian)
        self._hessian_xx = hessian_xx

    def hessian_xx(self, x, y, *, batch=None):
        return self._hessian_xx(x, y)


def test_newton_solves_p3_in_two_rounds_and_passes_the_harness():
    ref = get_reference("P3")
    ref = dataclasses.replace(ref, problem=dataclasses.replace(ref.problem, space=SP))
    newton = ImplicitDiff(inner_solver="dense", outer_rule="newton", tol=1e-10)
    res = newton.run(ref.problem, ref.x0, ref.y0)
    lb = ImplicitDiff(inner_solver="dense", outer_rule="lbfgs", tol=1e-10).run(ref.problem, ref.x0, ref.y0)
    # f and g are quadratic: the Hessian model is the exact Hessian of h, one Newton step solves the outer problem
    # and the next round only confirms it
    assert res.status is Status.CONVERGED and res.nit <= 2 < lb.nit
    assert ref.distance(res.x, res.y) < 1e-10
    np.testing.assert_allclose(res.x, lb.x, atol=1e-8)
    check_state_structure(newton, ref)
    check_run_equals_manual_loop(newton, ref)
    check_stop_iteration(newton, ref)
    check_deterministic(newton, ref)
    assert check_solves_reference(newton, ref) < 1e-9


def test_newton_outer_hessian_oracles_replace_hvps_and_differences():
    plain, x0, y0 = _softplus_problem()
    nx, ny = len(x0), len(y0)
    outer = _OuterWithHessian(plain.outer, lambda x, y: (np.zeros((nx, ny)), np.eye(ny)), lambda x, y: np.eye(nx))
    with_oracles = dataclasses.replace(plain, outer=outer)
    s = ImplicitDiff(inner_solver="dense", outer_rule="newton", tol=1e-10)
    a, b = s.run(with_oracles, x0, y0), s.run(plain, x0, y0)
    assert a.status is b.status is Status.STATIONARY  # the problem does not declare local_is_global
    np.testing.assert_allclose(a.x, b.x, atol=1e-8)
    # with the oracles: one f_hessian and one f_hessian_xx call per Newton direction, no f HVPs; without them the
    # mixed and y blocks come from ny HVPs and the x block from 2·nx gradient differences per direction
    assert a.counts["f_hessian"] == a.counts["f_hessian_xx"] > 0 and "f_hvp" not in a.counts
    assert "f_hessian" not in b.counts and b.counts["f_hvp"] == ny * a.counts["f_hessian"]
    assert outer.calls == a.counts["f_hessian"]
    # the lower level is not quadratic (softplus): the model drops g's third derivatives, and Newton still needs
    # fewer rounds than L-BFGS on h
    lb = ImplicitDiff(inner_solver="dense", outer_rule="lbfgs", tol=1e-10).run(plain, x0, y0)
    np.testing.assert_allclose(a.x, lb.x, atol=1e-7)
    assert a.nit < lb.nit


def test_newton_takes_gradient_steps_where_the_model_is_not_positive_definite():
    # h(x) = (x² − 1)² through y*(x) = x: at x0 = 0.1 the model (12x² − 4) is negative, so the first steps are
    # gradient steps with the line search; near x = 1 Newton takes over
    outer = FunctionObjective(
        value_fn=lambda x, y, _b: float((y[0] ** 2 - 1.0) ** 2),
        grad_fn=lambda x, y, _b: (np.zeros(1), np.array([4.0 * y[0] * (y[0] ** 2 - 1.0)])),
        hvp_fn=lambda x, y, v, _b: (np.zeros(1), (12.0 * y[0] ** 2 - 4.0) * v),
    )
    inner = FunctionObjective(
        value_fn=lambda x, y, _b: float(0.5 * (y[0] - x[0]) ** 2),
        grad_fn=lambda x, y, _b: (np.array([x[0] - y[0]]), np.array([y[0] - x[0]])),
        hvp_fn=lambda x, y, v, _b: (-v.copy(), v.copy()),
    )
    problem = BilevelProblem(outer, inner, SP, "min", has_x=True, name="quartic")
    s = ImplicitDiff(inner_solver="dense", outer_rule="newton", tol=1e-10, lr=0.1)
    first = _trajectory(s, problem, np.array([0.1]), np.array([0.0]), 1)
    assert first[0][0][0] == pytest.approx(0.1 + 0.1 * 0.396, rel=1e-12)  # x − lr·h'(x), h'(0.1) = −0.396
    res = s.run(problem, np.array([0.1]), np.array([0.0]))
    assert res.status is Status.STATIONARY and abs(res.x[0] - 1.0) < 1e-8  # not declared local_is_global


def test_newton_needs_the_dense_inner_solver_and_second_order_outer_oracles():
    with pytest.raises(ConfigError, match="inner_solver='dense'"):
        ImplicitDiff(inner_solver="cg", outer_rule="newton")
    ref, problem = _p3_like()
    outer = FunctionObjective(value_fn=lambda x, y, b: problem.outer.value(x, y, batch=b),
                              grad_fn=lambda x, y, b: problem.outer.grad(x, y, batch=b))
    with pytest.raises(ConfigError, match="neither a hessian nor an hvp oracle"):
        ImplicitDiff(inner_solver="dense", outer_rule="newton").run(
            dataclasses.replace(problem, outer=outer), ref.x0, ref.y0)


def test_counting_objective_forwards_hessian_xx():
    counter = CallCounter()
    base = _OuterWithHessian(FunctionObjective(value_fn=lambda x, y, b: 0.0, grad_fn=lambda x, y, b: (x, y)),
                             lambda x, y: (np.zeros((2, 1)), np.eye(1)), lambda x, y: np.eye(2))
    wrapped = CountingObjective(base, "f", counter)
    assert wrapped.hessian_xx_available
    np.testing.assert_array_equal(wrapped.hessian_xx(np.zeros(2), np.zeros(1)), np.eye(2))
    assert counter.snapshot()["f_hessian_xx"] == 1
    bad = _OuterWithHessian(base.base, base._hessian, lambda x, y: np.zeros(3))
    with pytest.raises(OracleError, match="hessian_xx"):
        CountingObjective(bad, "f", counter).hessian_xx(np.zeros(2), np.zeros(1))
    assert not CountingObjective(base.base, "f", counter).hessian_xx_available


# ---------------------------------------------------------------------- host linear algebra (space.linalg)


class _NoLinalg(NumpySpace):
    """A numpy space without the ``linalg`` capability: the dense solver falls back to PythonLinalg."""

    linalg = None


def _float32(problem):
    """``problem`` with float32 oracle outputs (values stay Python floats)."""

    def cast(out):
        return tuple(None if a is None else np.asarray(a, np.float32) for a in out)

    def wrap(obj):
        base = FunctionObjective(lambda x, y, b: obj.value(x, y, batch=b),
                                 lambda x, y, b: cast(obj.grad(x, y, batch=b)),
                                 lambda x, y, v, b: cast(obj.hvp(x, y, v, batch=b)))
        if not hasattr(obj, "hessian"):
            return base
        return _WithHessian(base, lambda x, y: cast(obj.hessian(x, y)))

    return dataclasses.replace(problem, outer=wrap(problem.outer), inner=wrap(problem.inner))


def _runs(make):
    """The same run on the numpy capability and on the Python fallback: ``(numpy, fallback)`` trajectories."""
    out = []
    for space in (SP, _NoLinalg()):
        solver, problem, x0, y0, rounds = make(space)
        out.append(_trajectory(solver, problem, x0, y0, rounds))
    return out


@pytest.mark.parametrize("rule", ["lbfgs", "newton"])
@pytest.mark.parametrize("case", ["p3_hvp", "p3_hessian", "softplus_max", "p3_float32"])
def test_numpy_linalg_and_the_python_fallback_give_the_same_iterates(rule, case):
    def make(space):
        if case == "softplus_max":
            problem, x0, y0 = _softplus_problem("max", hessian=True)
            problem = dataclasses.replace(problem, space=space)
        else:
            ref, problem = _p3_like(seed=1, nx=4, ny=6, hessian=case != "p3_hvp", space=space)
            x0, y0 = ref.x0, ref.y0 + 0.5
            if case == "p3_float32":
                problem = _float32(problem)
                x0, y0 = x0.astype(np.float32), y0.astype(np.float32)
        return ImplicitDiff(inner_solver="dense", outer_rule=rule, lr=0.2, tol=1e-12), problem, x0, y0, 12

    fast, slow = _runs(make)
    assert len(fast) == len(slow) > 1
    tol = 1e-5 if case == "p3_float32" else 1e-10
    for (xa, ya, ta), (xb, yb, tb) in zip(fast, slow, strict=True):
        assert ta == tb and xa.dtype == xb.dtype and ya.dtype == yb.dtype
        np.testing.assert_allclose(xa, xb, rtol=tol, atol=tol)
        np.testing.assert_allclose(ya, yb, rtol=tol, atol=tol)


def test_the_python_fallback_keeps_the_statuses_and_counts():
    for space in (SP, _NoLinalg()):
        ref = get_reference("P4")  # singular inner Hessian
        res = ImplicitDiff(inner_solver="dense", outer_rule="lbfgs").run(
            dataclasses.replace(ref.problem, space=space), ref.x0, ref.y0)
        assert res.status is Status.NOT_CONVEX and res.nit == 1
        ref3, prob = _p3_like(space=space)
        c = ref3.data["C"]
        nan = _WithHessian(prob.inner, lambda x, y, c=c: (c, np.full((5, 5), np.nan)))
        res = ImplicitDiff(inner_solver="dense").run(dataclasses.replace(prob, inner=nan), ref3.x0, ref3.y0 + 1.0)
        assert res.status is Status.NUMERICAL_ERROR
    ref3 = get_reference("P3")
    runs = [ImplicitDiff(inner_solver="dense", outer_rule="newton", tol=1e-10).run(
        dataclasses.replace(ref3.problem, space=space), ref3.x0, ref3.y0) for space in (SP, _NoLinalg())]
    assert runs[0].status is runs[1].status is Status.CONVERGED
    assert runs[0].counts == runs[1].counts and runs[0].nit == runs[1].nit
    assert ref3.distance(runs[1].x, runs[1].y) < 1e-10


def test_numpy_linalg_agrees_with_python_linalg_operation_by_operation():
    from ofmu_opt.backends.numpy_backend import NumpyLinalg
    from ofmu_opt.core.comparison import PythonLinalg

    fast, slow = NumpyLinalg(), PythonLinalg()
    rng = np.random.default_rng(5)
    n, m = 6, 3
    a = rng.standard_normal((n, n))
    spd = a @ a.T + 0.1 * np.eye(n)
    rows = spd.tolist()
    lf, ls = fast.cholesky(spd, 1e-12), slow.cholesky(rows, 1e-12)
    np.testing.assert_allclose(lf, np.array(ls), rtol=1e-12, atol=1e-12)
    b = rng.standard_normal(n)
    np.testing.assert_allclose(fast.solve(lf, b), slow.solve(ls, b.tolist()), rtol=1e-10)
    cross = rng.standard_normal((m, n))
    np.testing.assert_allclose(fast.solve_rows(lf, cross), slow.solve_rows(ls, cross.tolist()), rtol=1e-10)
    v, w = rng.standard_normal(n), rng.standard_normal(m)
    np.testing.assert_allclose(fast.matvec(cross, v), slow.matvec(cross.tolist(), v.tolist()), rtol=1e-12)
    np.testing.assert_allclose(fast.rmatvec(cross, w), slow.rmatvec(cross.tolist(), w.tolist()), rtol=1e-12)
    np.testing.assert_allclose(fast.axpy(0.3, v, b), slow.axpy(0.3, v.tolist(), b.tolist()), rtol=1e-15)
    fxx = rng.standard_normal((m, m))
    np.testing.assert_allclose(fast.newton_model(fxx, cross, spd, cross),
                               slow.newton_model(fxx.tolist(), cross.tolist(), rows, cross.tolist()), rtol=1e-10)
    np.testing.assert_array_equal(fast.symmetric_part(a), slow.symmetric_part(a.tolist()))
    assert fast.max_abs_diag(a) == slow.max_abs_diag(a.tolist())
    assert fast.finite(a) and not fast.finite(np.array([[np.inf]])) and not slow.finite([[np.nan]])
    # the same refusals: indefinite, singular, and a pivot at the threshold
    for bad in (np.diag([1.0, -1.0]), np.diag([1.0, 0.0]), np.array([[1.0, 1.0], [1.0, 1.0 + 1e-13]])):
        assert fast.cholesky(bad, 1e-12) is None and slow.cholesky(bad.tolist(), 1e-12) is None
    assert fast.cholesky(np.diag([1.0, 2e-12]), 1e-12) is not None
    assert slow.cholesky([[1.0, 0.0], [0.0, 2e-12]], 1e-12) is not None
    # host/backend conversions: float32 vectors come back float32, shapes are kept
    like = np.zeros((2, 3), np.float32)
    out = fast.to_space(SP, np.arange(6.0), like)
    assert out.dtype == np.float32 and out.shape == (2, 3) and out.flags.writeable
    np.testing.assert_array_equal(fast.vector(SP, out), np.arange(6.0))
    with pytest.raises(OracleError, match="has 6 entries, expected 2 × 2"):
        fast.matrix(SP, like, 2, 2, "blk")
    with pytest.raises(OracleError, match="blk: cannot read its entries"):
        fast.matrix(SP, np.zeros(4, complex), 2, 2, "blk")

"""The benchopt plug-in's fused-oracle adapter (benchmarks/benchopt/fused.py) and ImplicitDiff's CG/L-BFGS mode.

The caching logic is checked with numpy bundles (no jax, no benchopt): every oracle it serves equals the
separate oracle at that point, an HVP along another vector is never answered from the cache, and a penalty
round costs one fused call per point. With jax installed, the jax bundles are checked against the per-oracle
jax adapter on a small random problem shaped like benchmark_bilevel's ``simulated`` dataset.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks.benchopt.fused import Bundles, FusedOracles, HessianObjective
from ofmu_opt.backends.numpy_backend import NumpySpace
from ofmu_opt.core.comparison import ImplicitDiff
from ofmu_opt.core.solver import gpbgd
from ofmu_opt.problem.bilevel import BilevelProblem
from ofmu_opt.problem.oracles import FunctionObjective

NY, NX = 4, 3


def _quad(seed: int, mu: float) -> tuple[np.ndarray, np.ndarray]:
    """A quadratic ``½ zᵀHz + bᵀz`` in ``z = (y, x)`` with ``H_yy ⪰ mu``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(NY + NX, NY + NX))
    h = a @ a.T / (NY + NX)
    h[:NY, :NY] += mu * np.eye(NY)
    return h, rng.normal(size=NY + NX)


HF, BF = _quad(0, 0.5)
HG, BG = _quad(1, 0.5)


def _value(h: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    z = np.concatenate([y, x])
    return float(0.5 * z @ h @ z + b @ z)


def _grad(h: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = h @ np.concatenate([y, x]) + b
    return g[NY:], g[:NY]


def _hvp(h: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = h[:, :NY] @ v
    return r[NY:], r[:NY]


def _separate(h: np.ndarray, b: np.ndarray) -> FunctionObjective:
    return FunctionObjective(lambda x, y, _: _value(h, b, x, y), lambda x, y, _: _grad(h, b, x, y),
                             lambda x, y, v, _: _hvp(h, v))


def _blocks(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(∇²_xy, ∇²_yy)`` of the quadratic (``dx × dy`` and ``dy × dy``)."""
    return h[NY:, :NY].copy(), h[:NY, :NY].copy()


def _numpy_bundles() -> Bundles:
    def both(x: np.ndarray, y: np.ndarray) -> tuple[object, ...]:
        ggx, ggy = _grad(HG, BG, x, y)
        return (_value(HF, BF, x, y), *_grad(HF, BF, x, y), _value(HG, BG, x, y), ggx, ggy, *_hvp(HG, ggy))

    return Bundles(
        both=both,
        inner=lambda x, y: (_value(HG, BG, x, y), *_grad(HG, BG, x, y)),
        outer=lambda x, y: (_value(HF, BF, x, y), *_grad(HF, BF, x, y)),
        hvp_inner=lambda x, y, v: _hvp(HG, v),
        hvp_outer=lambda x, y, v: _hvp(HF, v),
        hessian_inner=lambda x, y: _blocks(HG),
        outer_hessian=lambda x, y: (_value(HF, BF, x, y), *_grad(HF, BF, x, y), *_blocks(HG)),
        hessian_outer=lambda x, y: _fblocks(HF),
        newton=lambda x, y: (_value(HF, BF, x, y), *_grad(HF, BF, x, y), *_blocks(HG), *_fblocks(HF)),
    )


def _fblocks(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(∇²_xx, ∇²_xy, ∇²_yy)`` of the quadratic."""
    return h[NY:, NY:].copy(), h[NY:, :NY].copy(), h[:NY, :NY].copy()


def _problem(f: FunctionObjective, g: FunctionObjective) -> BilevelProblem:
    return BilevelProblem(f, g, NumpySpace(), "min", has_x=True)


def test_fused_oracles_equal_the_separate_ones_and_the_cache_never_answers_another_vector() -> None:
    fused = FusedOracles(_numpy_bundles())
    f, g = fused.objectives()
    rng = np.random.default_rng(2)
    x, y, v = rng.normal(size=NX), rng.normal(size=NY), rng.normal(size=NY)
    assert f.value(x, y) == _value(HF, BF, x, y)
    np.testing.assert_array_equal(np.concatenate(f.grad(x, y)), np.concatenate(_grad(HF, BF, x, y)))
    np.testing.assert_array_equal(np.concatenate(g.grad(x, y)), np.concatenate(_grad(HG, BG, x, y)))
    assert g.value(x, y) == _value(HG, BG, x, y)
    gy = g.grad(x, y)[1]
    np.testing.assert_array_equal(np.concatenate(g.hvp(x, y, gy)), np.concatenate(_hvp(HG, gy)))
    assert fused.calls == {"both": 1}  # all of the above came from one fused call
    # another vector at the same point is a real HVP call with the right answer
    np.testing.assert_array_equal(np.concatenate(g.hvp(x, y, v)), np.concatenate(_hvp(HG, v)))
    np.testing.assert_array_equal(np.concatenate(f.hvp(x, y, v)), np.concatenate(_hvp(HF, v)))
    assert fused.calls == {"both": 1, "hvp_inner": 1, "hvp_outer": 1}
    # a point that differs in one bit is a new point
    y2 = y.copy()
    y2[0] = np.nextafter(y2[0], np.inf)
    assert g.value(x, y2) == _value(HG, BG, x, y2)
    assert fused.calls["inner"] == 1
    # f after g at a point: only f's part is computed
    f.grad(x, y2)
    assert fused.calls["outer"] == 1
    # served arrays are read-only, so a caller cannot corrupt the cache
    with pytest.raises(ValueError):
        f.grad(x, y)[0][0] = 1.0


def test_a_penalty_run_on_fused_oracles_has_the_same_iterates_and_one_call_per_point() -> None:
    x0, y0 = np.zeros(NX), np.zeros(NY)
    solver = gpbgd(maxiter=60)
    ref = solver.run(_problem(_separate(HF, BF), _separate(HG, BG)), x0, y0)
    fused = FusedOracles(_numpy_bundles())
    got = solver.run(_problem(*fused.objectives()), x0, y0)
    np.testing.assert_array_equal(got.x, ref.x)
    np.testing.assert_array_equal(got.y, ref.y)
    assert got.counts == ref.counts  # the solver asked for the same oracles
    points = ref.counts["f_grad"]  # every point the stationarity penalty visits needs f's gradient
    assert fused.calls.get("both", 0) <= points
    assert sum(fused.calls.values()) < sum(ref.counts.values()) / 3


def test_hessian_oracle_is_one_call_per_point_and_dense_mode_fuses_it_with_f() -> None:
    rng = np.random.default_rng(4)
    x, y, v = rng.normal(size=NX), rng.normal(size=NY), rng.normal(size=NY)
    plain = FusedOracles(dataclasses.replace(_numpy_bundles(), hessian_outer=None, newton=None))
    f, g = plain.objectives()
    assert g.hessian_available and not f.hessian_available
    g.grad(x, y)
    cross, yy = g.hessian(x, y)
    np.testing.assert_array_equal(cross, HG[NY:, :NY])
    np.testing.assert_array_equal(yy, HG[:NY, :NY])
    g.hessian(x, y)
    f.grad(x, y)
    assert plain.calls == {"inner": 1, "hessian_inner": 1, "outer": 1}  # the second Hessian came from the cache
    # dense mode: f asked where g was evaluated first comes with g's Hessian blocks, in one call
    dense = FusedOracles(_numpy_bundles(), dense=True)
    f, g = dense.objectives()
    np.testing.assert_array_equal(np.concatenate(g.grad(x, y)), np.concatenate(_grad(HG, BG, x, y)))
    assert f.value(x, y) == _value(HF, BF, x, y)
    np.testing.assert_array_equal(np.concatenate(f.grad(x, y)), np.concatenate(_grad(HF, BF, x, y)))
    np.testing.assert_array_equal(g.hessian(x, y)[1], HG[:NY, :NY])
    assert dense.calls == {"inner": 1, "outer_hessian": 1}
    np.testing.assert_array_equal(np.concatenate(g.hvp(x, y, v)), np.concatenate(_hvp(HG, v)))
    assert dense.calls["hvp_inner"] == 1  # an HVP is still a real call
    # f first at a point: the ordinary fused bundle, and the Hessian when asked
    x2 = x + 1.0
    f.grad(x2, y)
    g.hessian(x2, y)
    assert dense.calls["both"] == 1 and dense.calls["hessian_inner"] == 1
    with pytest.raises(ValueError, match="outer_hessian"):
        FusedOracles(Bundles(**{k: getattr(_numpy_bundles(), k) for k in
                                ("both", "inner", "outer", "hvp_inner", "hvp_outer")}), dense=True)
    with pytest.raises(NotImplementedError):
        FusedOracles(_numpy_bundles(), _separate(HF, BF), _separate(HG, BG)).objectives()[1].hessian(
            x, y, batch=slice(0, 2))


def test_dense_implicit_run_on_fused_oracles_has_the_same_iterates_and_one_call_per_point() -> None:
    x0, y0 = np.zeros(NX), np.zeros(NY)
    sep_g = HessianObjective(lambda x, y, _: _value(HG, BG, x, y), lambda x, y, _: _grad(HG, BG, x, y),
                             lambda x, y, v, _: _hvp(HG, v), hessian_fn=lambda x, y, _: _blocks(HG))
    solver = ImplicitDiff(inner_solver="dense", outer_rule="lbfgs", tol=1e-10)
    ref = solver.run(_problem(_separate(HF, BF), sep_g), x0, y0)
    fused = FusedOracles(_numpy_bundles(), dense=True)
    got = solver.run(_problem(*fused.objectives()), x0, y0)
    assert got.status.value == ref.status.value == "stationary"  # its stopping test was met
    np.testing.assert_array_equal(got.x, ref.x)
    np.testing.assert_array_equal(got.y, ref.y)
    assert got.counts == ref.counts and got.counts["g_hessian"] > 0 and "g_hvp" not in got.counts
    # every Hessian the run asked came with f's oracles at an accepted line-search candidate, except the first
    # point's: one call per Hessian
    assert fused.calls.get("hessian_inner", 0) + fused.calls["outer_hessian"] >= got.counts["g_hessian"]
    assert fused.calls.get("hessian_inner", 0) <= 1 and "outer" not in fused.calls
    cg = FusedOracles(_numpy_bundles())
    ImplicitDiff(inner_solver="cg", outer_rule="lbfgs", tol=1e-10).run(_problem(*cg.objectives()), x0, y0)
    assert sum(fused.calls.values()) < sum(cg.calls.values()) / 2


def test_newton_mode_fuses_both_hessians_with_the_adjoints_f_gradient_and_nothing_at_a_candidate() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=NX), rng.normal(size=NY)
    fused = FusedOracles(_numpy_bundles(), newton=True)
    f, g = fused.objectives()
    # a line-search candidate: g, then f's value — f's value and gradient only
    g.grad(x, y)
    assert f.value(x, y) == _value(HF, BF, x, y)
    assert fused.calls == {"inner": 1, "outer": 1}
    # the adjoint's point: g, then f's gradient — one call serves f and both objectives' Hessian blocks
    x2 = x + 1.0
    g.grad(x2, y)
    np.testing.assert_array_equal(np.concatenate(f.grad(x2, y)), np.concatenate(_grad(HF, BF, x2, y)))
    assert f.value(x2, y) == _value(HF, BF, x2, y)
    for got, want in zip((*g.hessian(x2, y), *f.hessian(x2, y), f.hessian_xx(x2, y)),
                         (*_blocks(HG), *_fblocks(HF)[1:], _fblocks(HF)[0]), strict=True):
        np.testing.assert_array_equal(got, want)
    assert fused.calls == {"inner": 2, "outer": 1, "newton": 1}
    # a Hessian already served at a point stays the one served
    x3 = x + 2.0
    g.grad(x3, y)
    first = g.hessian(x3, y)
    f.grad(x3, y)
    assert g.hessian(x3, y)[1] is first[1] and fused.calls["newton"] == 2
    with pytest.raises(ValueError, match="newton=True needs"):
        FusedOracles(Bundles(**{k: getattr(_numpy_bundles(), k) for k in
                                ("both", "inner", "outer", "hvp_inner", "hvp_outer")}), newton=True)


def test_newton_implicit_run_on_fused_oracles_has_the_same_iterates_and_fewer_calls() -> None:
    x0, y0 = np.zeros(NX), np.zeros(NY)
    sep_f = HessianObjective(lambda x, y, _: _value(HF, BF, x, y), lambda x, y, _: _grad(HF, BF, x, y),
                             lambda x, y, v, _: _hvp(HF, v), hessian_fn=lambda x, y, _: _fblocks(HF)[1:],
                             hessian_xx_fn=lambda x, y, _: _fblocks(HF)[0])
    sep_g = HessianObjective(lambda x, y, _: _value(HG, BG, x, y), lambda x, y, _: _grad(HG, BG, x, y),
                             lambda x, y, v, _: _hvp(HG, v), hessian_fn=lambda x, y, _: _blocks(HG))
    solver = ImplicitDiff(inner_solver="dense", outer_rule="newton", tol=1e-10)
    ref = solver.run(_problem(sep_f, sep_g), x0, y0)
    fused = FusedOracles(_numpy_bundles(), newton=True)
    got = solver.run(_problem(*fused.objectives()), x0, y0)
    assert got.status.value == ref.status.value == "stationary"
    np.testing.assert_array_equal(got.x, ref.x)
    np.testing.assert_array_equal(got.y, ref.y)
    assert got.counts == ref.counts and got.counts["f_hessian"] > 0
    # every f Hessian came with the adjoint's f gradient and g's blocks, in one call
    assert fused.calls["newton"] == got.counts["f_hessian"] and "hessian_outer" not in fused.calls
    # and no Hessian was formed that the run did not ask for (dense mode forms g's at every line-search candidate)
    assert fused.calls.get("hessian_inner", 0) + fused.calls["newton"] == got.counts["g_hessian"]
    # in a run stopped after its first round (as a benchmark stops at its threshold), dense mode has also formed g's
    # Hessian at the accepted candidate, for a round that never came
    one = ImplicitDiff(inner_solver="dense", outer_rule="newton", tol=1e-10, maxiter=1)
    for mode, extra in (({"newton": True}, 0), ({"dense": True}, 1)):
        oracles = FusedOracles(_numpy_bundles(), **mode)
        res = one.run(_problem(*oracles.objectives()), x0, y0)
        formed = sum(oracles.calls.get(k, 0) for k in ("hessian_inner", "outer_hessian", "newton"))
        assert res.nit == 1 and formed == res.counts["g_hessian"] + extra


def test_implicit_diff_cg_lbfgs_solves_a_quadratic_bilevel_problem_in_few_rounds() -> None:
    prob = _problem(_separate(HF, BF), _separate(HG, BG))
    x0, y0 = np.zeros(NX), np.zeros(NY)
    res = ImplicitDiff(inner_solver="cg", outer_rule="lbfgs", tol=1e-10).run(prob, x0, y0)
    # the bi-level solution in closed form: y*(x) = -H_yy⁻¹(H_yx x + b_y), h(x) = f(x, y*(x)) quadratic
    gyy, gyx = HG[:NY, :NY], HG[:NY, NY:]
    jac = -np.linalg.solve(gyy, gyx)
    yc = -np.linalg.solve(gyy, BG[:NY])
    m = np.vstack([jac, np.eye(NX)])  # z = (y, x) = m x + (yc, 0)
    c = np.concatenate([yc, np.zeros(NX)])
    x_star = np.linalg.solve(m.T @ HF @ m, -m.T @ (HF @ c + BF))
    assert res.status.value in ("converged", "stationary")  # its stopping test was met (not a limit or a fault)
    np.testing.assert_allclose(res.x, x_star, atol=1e-8)
    np.testing.assert_allclose(res.y, jac @ res.x + yc, atol=1e-8)
    assert res.nit <= 3 * NX  # L-BFGS on a quadratic in NX variables, exact inner and adjoint solves
    slow = ImplicitDiff(lr=0.2, inner_lr=0.2, tol=1e-10, maxiter=100_000).run(prob, x0, y0)
    assert sum(res.counts.values()) < sum(slow.counts.values()) / 10


def test_jax_bundles_agree_with_the_per_oracle_jax_adapter() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from benchmarks.benchopt.fused import jax_bundles, jax_objective

    n = 8
    rng = np.random.default_rng(3)
    a = rng.normal(size=(n, NY, NY))
    hess = jnp.asarray(np.einsum("nij,nkj->nik", a, a) / NY + 0.1 * np.eye(NY))
    cross = jnp.asarray(rng.normal(size=(n, NX, NY)))
    lin = jnp.asarray(rng.normal(size=(n, NY)))

    def make(scale: float):  # the benchmark's signature: f(inner_var, outer_var, start, batch_size)
        def f(y, x, start=0, batch_size=1):
            h = jax.lax.dynamic_slice(hess, (start, 0, 0), (batch_size, NY, NY))
            c = jax.lax.dynamic_slice(cross, (start, 0, 0), (batch_size, NX, NY))
            b = jax.lax.dynamic_slice(lin, (start, 0), (batch_size, NY))
            per = 0.5 * jnp.einsum("i,nij,j->n", y, h, y) + jnp.einsum("i,nij,j->n", x, c, y) + b @ y
            return scale * jnp.mean(per) + 0.5 * scale * x @ x

        return f

    f_out, f_in = make(2.0), make(1.0)
    fused = FusedOracles(jax_bundles(f_out, f_in, n, n))
    f, g = fused.objectives()
    ref_f, ref_g = jax_objective(f_out, n), jax_objective(f_in, n)
    dt = np.asarray(jnp.zeros(1)).dtype
    x, y, v = (rng.normal(size=k).astype(dt) for k in (NX, NY, NY))
    tol = dict(rtol=1e-5, atol=1e-5) if dt == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for new, old in ((f, ref_f), (g, ref_g)):
        np.testing.assert_allclose(new.value(x, y), old.value(x, y), **tol)
        for a_new, a_old in zip(new.grad(x, y), old.grad(x, y), strict=True):
            np.testing.assert_allclose(a_new, a_old, **tol)
        for a_new, a_old in zip(new.hvp(x, y, v), old.hvp(x, y, v), strict=True):
            np.testing.assert_allclose(a_new, a_old, **tol)
    gy = g.grad(x, y)[1]
    for a_new, a_old in zip(g.hvp(x, y, gy), ref_g.hvp(x, y, gy), strict=True):
        np.testing.assert_allclose(a_new, a_old, **tol)
    # mini-batches go to the per-oracle adapter given for them
    fb = FusedOracles(jax_bundles(f_out, f_in, n, n), ref_f, ref_g).objectives()[0]
    np.testing.assert_allclose(fb.value(x, y, batch=slice(2, 5)), ref_f.value(x, y, batch=slice(2, 5)), **tol)
    # the dense bundle: its values and gradients equal the adapter's, its Hessian blocks equal HVPs along the unit
    # vectors (column j of both blocks)
    dense = FusedOracles(jax_bundles(f_out, f_in, n, n), dense=True)
    fd, gd = dense.objectives()
    np.testing.assert_allclose(gd.value(x, y), ref_g.value(x, y), **tol)
    np.testing.assert_allclose(fd.grad(x, y)[0], ref_f.grad(x, y)[0], **tol)
    np.testing.assert_allclose(fd.value(x, y), ref_f.value(x, y), **tol)
    at_x = gd.hessian(x, y)
    assert dense.calls == {"inner": 1, "outer_hessian": 1}
    x2 = x + 1
    at_x2 = gd.hessian(x2, y)
    assert dense.calls["hessian_inner"] == 1
    for blocks, xx in ((at_x, x), (at_x2, x2)):
        assert blocks[0].shape == (NX, NY) and blocks[1].shape == (NY, NY)
        for j, e in enumerate(np.eye(NY, dtype=dt)):
            hx, hy = ref_g.hvp(xx, y, e)
            np.testing.assert_allclose(blocks[0][:, j], hx, **tol)
            np.testing.assert_allclose(blocks[1][:, j], hy, **tol)
    # f's blocks (the outer rule "newton"): one call serves hessian and hessian_xx; the mixed and y blocks equal
    # f's HVPs along the unit vectors; f = 2·(the inner form) + x·x, so ∇²_xx f = 2·I
    n_calls = dense.calls.get("hessian_outer", 0)
    fxy, fyy = fd.hessian(x, y)
    fxx = fd.hessian_xx(x, y)
    assert dense.calls["hessian_outer"] == n_calls + 1
    np.testing.assert_allclose(fxx, 2.0 * np.eye(NX), **tol)
    for j, e in enumerate(np.eye(NY, dtype=dt)):
        hx, hy = ref_f.hvp(x, y, e)
        np.testing.assert_allclose(fxy[:, j], hx, **tol)
        np.testing.assert_allclose(fyy[:, j], hy, **tol)
    # the newton bundle: f's value and gradient and both objectives' blocks, equal to the separate bundles'
    newton = FusedOracles(jax_bundles(f_out, f_in, n, n), newton=True)
    fn, gn = newton.objectives()
    gn.grad(x2, y)
    for a_new, a_old in zip(fn.grad(x2, y), ref_f.grad(x2, y), strict=True):
        np.testing.assert_allclose(a_new, a_old, **tol)
    for a_new, a_old in zip((*gn.hessian(x2, y), *fn.hessian(x2, y), fn.hessian_xx(x2, y)),
                            (*at_x2, *fd.hessian(x2, y), fd.hessian_xx(x2, y)), strict=True):
        np.testing.assert_allclose(a_new, a_old, **tol)
    assert newton.calls == {"inner": 1, "newton": 1}


def test_report_names_every_plug_in_configuration_apart() -> None:
    from benchmarks.benchopt.report import _short

    names = {
        _short("ofmu_opt[batch_size=64,fused=True,level_tol=None,preset=gpbgd,step=0.1]"),
        _short("ofmu_opt[batch_size=64,fused=True,level_tol=0.001,preset=gpbgd,step=0.1]"),
        _short("ofmu_opt[batch_size=64,fused=False,level_tol=None,preset=gpbgd,step=0.1]"),
        _short("ofmu_opt[batch_size=64,fused=True,level_tol=None,preset=implicit,step=0.1]"),
        _short("ofmu_opt[batch_size=64,fused=True,level_tol=None,preset=implicit_dense,step=0.1]"),
        _short("ofmu_opt[batch_size=64,fused=True,level_tol=None,preset=implicit_newton,step=0.1]"),
        _short("SABA[batch_size=64,eval_freq=128]"),
    }
    assert names == {"ofmu_opt gpbgd", "ofmu_opt gpbgd (level_tol=0.001)", "ofmu_opt gpbgd (unfused)",
                     "ofmu_opt implicit", "ofmu_opt implicit (dense)", "ofmu_opt implicit (newton)", "SABA"}


def test_plug_in_evaluates_every_round_first_then_every_tenth_more() -> None:
    pytest.importorskip("benchopt")
    pytest.importorskip("jax")
    from benchmarks.benchopt.solver_ofmu import Solver, make_solver

    seq = [1]
    while seq[-1] < 1000:
        seq.append(Solver.get_next(seq[-1]))
    assert seq[:10] == list(range(1, 11))
    assert all(1 < b / a <= 1.1 + 1e-9 or b == a + 1 for a, b in zip(seq, seq[1:], strict=False))
    assert len(seq) < 70  # ~10 % steps: a run of 1000 rounds is evaluated at fewer than 70 points
    with pytest.raises(ValueError, match="preset"):
        make_solver("nope", None, 8, 8, 4, 0.1)
    assert make_solver("gpbgd", 1e-3, 8, 8, 4, 0.1).level_tol == 1e-3
    assert make_solver("implicit_dense", None, 8, 8, 4, 0.1).inner_solver == "dense"

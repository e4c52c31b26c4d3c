"""benchopt solver plug-in: ofmu_opt's solvers inside benchopt's ``benchmark_bilevel``.

benchopt (>= 1.8) loads a Solver class from any file given to ``-s``, so nothing is copied into the
benchmark: from a checkout of benchmark_bilevel,

.. code-block:: bash

    PYTHONPATH=/path/to/ofmu_opt benchopt run /path/to/benchmark_bilevel \\
        -d "simulated[dim_inner=10,dim_outer=5]" \\
        -s "/path/to/ofmu_opt/benchmarks/benchopt/solver_ofmu.py[preset=gpbgd]" -s SABA ...

(``benchmarks/benchopt/run_simulated.sh`` is the full command used for docs/performance.md). The
benchmark hands the solver two jax functions ``f(inner_var, outer_var, start, batch_size)`` (means over
``batch_size`` consecutive samples from ``start``) and the numbers of samples. The plug-in turns them into
ofmu_opt oracles (value, gradient and Hessian-vector product, each one jitted jax call) on numpy arrays of
the oracle's dtype (float32 unless ``JAX_ENABLE_X64=1``), so the solvers see exactly the precision the
benchmark runs in. The benchmark's ``inner_var`` is ofmu_opt's ``y`` and its ``outer_var`` is ``x``.

Presets (parameter ``preset``): ``gpbgd``, ``vpbgd``, ``ofmu`` (β = 0: the benchmark's problem has no
similarity term) at their defaults, plus the stochastic solvers of :mod:`ofmu_opt.core.stochastic` on
mini-batches of ``batch_size``: ``saba`` and ``soba`` (our implementations, for comparison with the
benchmark's own) and ``gpbgd_saga`` (G-PBGD on SAGA variance-reduced oracles). Every round calls benchopt's
callback; a ``False`` from it ends the run through the solvers' StopIteration protocol.
"""

from benchopt import BaseSolver, safe_import_context
from benchopt.stopping_criterion import SufficientProgressCriterion

# benchopt's import guard: a missing package marks the solver as not installed instead of failing
with safe_import_context() as import_ctx:
    import jax
    import numpy as np

    from ofmu_opt.backends.numpy_backend import NumpySpace
    from ofmu_opt.core.solver import gpbgd, ofmu, vpbgd
    from ofmu_opt.core.stochastic import Saba, Soba, VarianceReduced
    from ofmu_opt.problem.bilevel import BilevelProblem
    from ofmu_opt.problem.oracles import FunctionObjective


def _jax_objective(f, n, nx):
    """An ofmu_opt objective from the benchmark's ``f(inner, outer, start, batch_size)``; a batch is a slice
    of consecutive samples (``None`` = all ``n``)."""
    grad = jax.jit(jax.grad(f, argnums=(0, 1)), static_argnames=("batch_size",))

    def _hvp_impl(y, x, v, start, batch_size):
        def gy(yy, xx):
            return jax.grad(f, argnums=0)(yy, xx, start, batch_size)

        _, vjp = jax.vjp(gy, y, x)
        return vjp(v)

    hvp = jax.jit(_hvp_impl, static_argnames=("batch_size",))
    value = jax.jit(f, static_argnames=("batch_size",))

    def window(b):
        if b is None:
            return 0, n
        return b.start, b.stop - b.start

    def val(x, y, b):
        s, m = window(b)
        return float(value(y, x, s, batch_size=m))

    def grd(x, y, b):
        s, m = window(b)
        gy, gx = grad(y, x, s, batch_size=m)
        return np.asarray(gx), np.asarray(gy)

    def hv(x, y, v, b):
        s, m = window(b)
        hy, hx = hvp(y, x, v, s, batch_size=m)
        return np.asarray(hx), np.asarray(hy)

    return FunctionObjective(val, grd, hv)


class Solver(BaseSolver):
    """ofmu_opt (penalty-based bi-level solvers; SOBA/SABA reimplemented from Dagréou et al. 2022)."""

    name = "ofmu_opt"
    parameters = {"preset": ["gpbgd", "vpbgd", "ofmu"], "batch_size": [64], "step": [0.1]}
    # the same patience as the benchmark's own solvers (benchmark_utils.constants.PATIENCE), so a plateau ends no
    # run earlier than theirs
    stopping_criterion = SufficientProgressCriterion(patience=12_800, strategy="callback")
    requirements = ["jax", "jaxlib"]

    def set_objective(self, f_inner, f_outer, n_inner_samples, n_outer_samples, inner_var0, outer_var0):
        self.y0 = np.asarray(inner_var0)
        self.x0 = np.asarray(outer_var0)
        nx = self.x0.size
        self.n_in, self.n_out = n_inner_samples, n_outer_samples
        self.problem = BilevelProblem(
            _jax_objective(f_outer, n_outer_samples, nx), _jax_objective(f_inner, n_inner_samples, nx),
            NumpySpace(), "min", has_x=True, name="benchopt-simulated",
        )
        self.solver = self._make_solver()
        # compile every jitted oracle once outside the timed run
        for obj in (self.problem.outer, self.problem.inner):
            obj.value(self.x0, self.y0)
            obj.grad(self.x0, self.y0)
            obj.hvp(self.x0, self.y0, self.y0)
            if self.preset in ("saba", "soba", "gpbgd_saga"):
                b = slice(0, min(self.batch_size, n_inner_samples))
                obj.value(self.x0, self.y0, batch=b)
                obj.grad(self.x0, self.y0, batch=b)
                obj.hvp(self.x0, self.y0, self.y0, batch=b)
        self.x, self.y = self.x0, self.y0

    def _make_solver(self):
        big = 10**9
        if self.preset == "gpbgd":
            return gpbgd(maxiter=big)
        if self.preset == "vpbgd":
            return vpbgd(maxiter=big)
        if self.preset == "ofmu":
            return ofmu(beta=0.0, maxiter=big)
        sizes = dict(inner_samples=self.n_in, outer_samples=self.n_out, batch_size=self.batch_size)
        if self.preset == "saba":
            return Saba(step=self.step, maxiter=big, tol=1e-30, **sizes)
        if self.preset == "soba":
            return Soba(step=self.step, maxiter=big, **sizes)
        if self.preset == "gpbgd_saga":
            base = gpbgd(strategy="paper", penalty=10.0, outer_lr=self.step, maxiter=big, tol=1e-30)
            return VarianceReduced(base, **sizes)
        raise ValueError(f"preset: expected gpbgd, vpbgd, ofmu, saba, soba or gpbgd_saga, received {self.preset!r}")

    def run(self, callback):
        def cb(r):
            x, y = self.solver.point(r.state)
            self.x, self.y = x, y
            if not callback():
                raise StopIteration

        if not callback():
            return
        res = self.solver.run(self.problem, self.x0, self.y0, callback=cb)
        self.x, self.y = res.x, res.y
        self.status = res.status.value

    def get_result(self):
        return dict(inner_var=jax.numpy.asarray(self.y), outer_var=jax.numpy.asarray(self.x))


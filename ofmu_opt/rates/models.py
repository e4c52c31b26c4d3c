r"""Exact linear algebra of the stationarity-penalized quadratic models, and the smooth non-convex test problem.

For the quadratic references (P3 with θ = (x, y); Q-OFMU with θ = y) the stationarity residual is affine,
:math:`r(\theta) = \nabla_y\varphi(\theta) = D\theta + r_0`, and the outer objective is quadratic,
:math:`f(\theta) = \tfrac12\theta^\top H_f\theta + g_0^\top\theta + \text{const}`, so the penalized objective

.. math::  F_\rho(\theta) = f(\theta) + \rho\,\|D\theta + r_0\|^2, \qquad
           \nabla^2 F_\rho = H_f + 2\rho\,D^\top D

is a quadratic whose minimizer :math:`\theta_\rho`, smoothness :math:`L_\rho = \lambda_{\max}(\nabla^2F_\rho)` and
strong convexity :math:`\mu_\rho = \lambda_{\min}` are computed exactly here. The penalty bias has the
expansion :math:`\theta_\rho = \theta^* + \delta/\rho + O(\rho^{-2})` with :math:`\delta` from the KKT system

.. math::  \begin{pmatrix} H_f & D^\top \\ D & 0\end{pmatrix}\begin{pmatrix}\delta\\ \nu\end{pmatrix}
           = \begin{pmatrix} 0 \\ \lambda/2 \end{pmatrix}, \qquad D^\top\lambda = -\nabla f(\theta^*)

(λ the minimum-norm multiplier), obtained by inserting the expansion into
:math:`\nabla f(\theta_\rho) + 2\rho D^\top(D\theta_\rho + r_0) = 0` and matching the powers of ρ.

Example:
    >>> from ofmu_opt.reference import get_reference
    >>> m = PenalizedQuadratic.from_reference(get_reference("QOFMU"))
    >>> bool(np.linalg.norm(1e4 * (m.minimizer(1e4) - m.star) - m.bias_direction()) < 1e-3)
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends.numpy_backend import NumpySpace
from ..errors import ProblemSpecError
from ..problem.bilevel import BilevelProblem
from ..problem.oracles import FunctionObjective
from ..reference.problems import ReferenceProblem

__all__ = ["NonconvexModel", "PenalizedQuadratic", "make_nonconvex"]


@dataclass(frozen=True)
class PenalizedQuadratic:
    """The stationarity-penalized model of a quadratic reference problem (see the module docstring)."""

    ref: ReferenceProblem
    Hf: np.ndarray
    g0: np.ndarray
    D: np.ndarray
    r0: np.ndarray
    nx: int

    @classmethod
    def from_reference(cls, ref: ReferenceProblem) -> PenalizedQuadratic:
        """Build the model of P3 (any size) or Q-OFMU from the reference's ``data``.

        Raises:
            ProblemSpecError: the reference is neither P3-shaped nor Q-OFMU-shaped.
        """
        d = ref.data
        if {"Q", "C", "a", "t", "H"} <= set(d):
            Q, C, a, t, H = (np.asarray(d[k], dtype=float) for k in ("Q", "C", "a", "t", "H"))
            nx, ny = C.shape
            Hf = np.block([[H, np.zeros((nx, ny))], [np.zeros((ny, nx)), np.eye(ny)]])
            g0 = np.concatenate([np.zeros(nx), -t])
            return cls(ref, Hf, g0, np.hstack([C.T, Q]), a, nx)
        if {"A", "d", "B", "b"} <= set(d):
            A, dd, B, b = (np.asarray(d[k], dtype=float) for k in ("A", "d", "B", "b"))
            # inner in minimization form: φ = −L_f = ½θᵀAθ − dᵀθ, ∇φ = Aθ − d
            return cls(ref, B, -B @ b, A, -dd, 0)
        raise ProblemSpecError(f"reference {ref.id!r}: expected P3-shaped (Q, C, a, t, H) or Q-OFMU-shaped "
                               f"(A, d, B, b) data, received keys {sorted(d)}")

    @property
    def n(self) -> int:
        return int(self.Hf.shape[0])

    @property
    def star(self) -> np.ndarray:
        """The bi-level solution θ* = (x*, y*)."""
        parts = [] if self.ref.x_star is None else [np.asarray(self.ref.x_star, dtype=float)]
        return np.concatenate([*parts, np.asarray(self.ref.y_star, dtype=float)])

    def split(self, theta: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """θ → (x, y) (x is ``None`` without an outer-only variable)."""
        return (theta[: self.nx] if self.nx else None), theta[self.nx:]

    def join(self, x: Any, y: Any) -> np.ndarray:
        parts = [] if x is None else [np.asarray(x, dtype=float)]
        return np.concatenate([*parts, np.asarray(y, dtype=float)])

    def distance(self, theta: np.ndarray) -> float:
        """The reference's relative distance of θ to the bi-level solution."""
        x, y = self.split(theta)
        return self.ref.distance(x, y)

    def hessian(self, rho: float) -> np.ndarray:
        """∇²F_ρ = H_f + 2ρ DᵀD."""
        return self.Hf + 2.0 * rho * self.D.T @ self.D

    def curvature(self, rho: float) -> tuple[float, float]:
        """(μ_ρ, L_ρ): the extreme eigenvalues of ∇²F_ρ."""
        w = np.linalg.eigvalsh(self.hessian(rho))
        return float(w[0]), float(w[-1])

    def minimizer(self, rho: float) -> np.ndarray:
        """θ_ρ = argmin F_ρ (one linear solve)."""
        return np.linalg.solve(self.hessian(rho), -self.g0 - 2.0 * rho * self.D.T @ self.r0)

    def bias_direction(self) -> np.ndarray:
        """δ = lim ρ(θ_ρ − θ*) from the KKT system of the module docstring."""
        star = self.star
        lam = np.linalg.lstsq(self.D.T, -(self.Hf @ star + self.g0), rcond=None)[0]
        m = self.D.shape[0]
        kkt = np.block([[self.Hf, self.D.T], [self.D, np.zeros((m, m))]])
        rhs = np.concatenate([np.zeros(self.n), 0.5 * lam])
        return np.linalg.lstsq(kkt, rhs, rcond=None)[0][: self.n]

    def scale(self) -> float:
        """The normalisation of the reference's relative distance, ``max(1, ‖θ*‖)``."""
        return max(1.0, float(np.linalg.norm(self.star)))


@dataclass(frozen=True)
class NonconvexModel:
    r"""A smooth non-convex penalized objective with a certified smoothness constant and lower bound.

    Retain loss (non-convex), forget loss (strongly concave), and the stationarity-penalized objective:

    .. math::
        L_r(\theta) = \sum_i \log\cosh(\theta_i - b_i) + c\sum_j \sin(w_j^\top\theta), \qquad
        L_f(\theta) = -\tfrac12(\theta - a)^\top A(\theta - a),

        F(\theta) = L_r(\theta) + \rho\,\|A(\theta - a)\|^2 .

    Constants: :math:`0 \le \log\cosh'' = \operatorname{sech}^2 \le 1`; for unit v,
    :math:`|v^\top \nabla^2(c\sum_j\sin(w_j^\top\theta))v| \le c\sum_j (w_j^\top v)^2 \le c\|W\|_2^2`; the penalty's
    Hessian is :math:`2\rho A^2`. Hence :math:`\|\nabla^2 F\| \le L = 1 + c\|W\|_2^2 + 2\rho\lambda_{\max}(A)^2`, and
    :math:`F \ge F_{\inf} = -c\,m` (log cosh ≥ 0, sin ≥ −1, the penalty ≥ 0).
    """

    A: np.ndarray
    a: np.ndarray
    W: np.ndarray
    b: np.ndarray
    c: float
    rho: float

    @property
    def n(self) -> int:
        return int(self.A.shape[0])

    @property
    def lipschitz(self) -> float:
        """L = 1 + c‖W‖₂² + 2ρ λ_max(A)² (a certified bound on ‖∇²F‖)."""
        wn = float(np.linalg.norm(self.W, 2))
        return 1.0 + self.c * wn**2 + 2.0 * self.rho * float(np.linalg.eigvalsh(self.A).max()) ** 2

    @property
    def f_inf(self) -> float:
        """A certified lower bound of F: −c·m."""
        return -self.c * self.W.shape[0]

    def retain_value(self, y: np.ndarray) -> float:
        u = y - self.b
        return float(np.sum(np.logaddexp(u, -u) - math.log(2.0)) + self.c * np.sum(np.sin(self.W @ y)))

    def retain_grad(self, y: np.ndarray) -> np.ndarray:
        return np.tanh(y - self.b) + self.c * self.W.T @ np.cos(self.W @ y)

    def retain_hessian(self, y: np.ndarray) -> np.ndarray:
        s = 1.0 / np.cosh(y - self.b) ** 2
        return np.diag(s) - self.c * (self.W.T * np.sin(self.W @ y)) @ self.W

    def value(self, y: np.ndarray) -> float:
        """F(θ)."""
        r = self.A @ (y - self.a)
        return self.retain_value(y) + self.rho * float(r @ r)

    def grad(self, y: np.ndarray) -> np.ndarray:
        """∇F(θ) = ∇L_r + 2ρA²(θ − a), written independently of the solver's composition."""
        return self.retain_grad(y) + 2.0 * self.rho * self.A @ (self.A @ (y - self.a))

    def hessian(self, y: np.ndarray) -> np.ndarray:
        return self.retain_hessian(y) + 2.0 * self.rho * self.A @ self.A

    def problem(self) -> BilevelProblem:
        """The bi-level problem (retain outer, forget inner with ``sense="max"``). A ``batch`` passed to the
        retain loss's gradient is an additive noise vector (the stochastic-gradient model)."""
        A, a = self.A, self.a

        def rgrad(x: Any, y: np.ndarray, batch: Any) -> tuple[None, np.ndarray]:
            g = self.retain_grad(y)
            return None, (g if batch is None else g + np.asarray(batch, dtype=float))

        retain = FunctionObjective(
            value_fn=lambda x, y, _b: self.retain_value(y), grad_fn=rgrad,
            hvp_fn=lambda x, y, v, _b: (None, self.retain_hessian(y) @ v),
        )
        forget = FunctionObjective(
            value_fn=lambda x, y, _b: float(-0.5 * (y - a) @ A @ (y - a)),
            grad_fn=lambda x, y, _b: (None, -A @ (y - a)),
            hvp_fn=lambda x, y, v, _b: (None, -A @ v),
            quadratic=True,
        )
        return BilevelProblem(retain, forget, NumpySpace(), "max", has_x=False, name="nonconvex-logcosh-sin")


def make_nonconvex(seed: int = 0, n: int = 6, m: int = 4, c: float = 1.0, rho: float = 0.5) -> NonconvexModel:
    """A random instance of :class:`NonconvexModel` (deterministic in ``seed``): ``A = 0.3·I + 0.2·BBᵀ/n``
    (weak forget curvature, so the sine terms make F non-convex), ``w_j ~ N(0, I/n)·1.5``.

    Example:
        >>> mdl = make_nonconvex(0)
        >>> mdl.lipschitz > 0 and mdl.f_inf == -4.0
        True
    """
    rng = np.random.default_rng(seed + 101)
    B = rng.standard_normal((n, n))
    A = 0.3 * np.eye(n) + 0.2 * B @ B.T / n
    W = 1.5 * rng.standard_normal((m, n)) / math.sqrt(n)
    return NonconvexModel(A=A, a=rng.standard_normal(n), W=W, b=rng.standard_normal(n), c=c, rho=rho)

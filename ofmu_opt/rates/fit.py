r"""Least-squares rate fits on the asymptotic window, with R².

Two laws (REFERENCE_PROBLEMS.md, "Practice for empirical rate checks"):

- sublinear (power) law :math:`e_k \approx C k^{p}`: least squares of :math:`\log e_k` on :math:`\log k`;
  the fitted exponent is the slope :math:`p`;
- linear (geometric) law :math:`e_k \approx C r^{k}`: least squares of :math:`\log e_k` on :math:`k`;
  the fitted ratio is :math:`r = \exp(\text{slope})`.

Only the asymptotic window is fitted: the first ``drop`` fraction of the points is discarded (the
transient), and the sequence is cut before it first reaches the float floor (``floor``), where round-off,
not the law, decides the values.

Example:
    >>> import numpy as np
    >>> k = np.arange(1, 200)
    >>> fit = fit_linear_rate(k, 3.0 * 0.9 ** k)
    >>> round(fit.ratio, 12), fit.r2 > 0.999999
    (0.9, True)
    >>> fit_power_law(np.logspace(0, 4, 20), 5.0 / np.logspace(0, 4, 20)).slope
    -1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = [
    "FitResult",
    "exponent_agrees",
    "fit_linear_rate",
    "fit_power_law",
    "log_factor_agrees",
    "r_squared",
    "ratio_log_error",
    "running_mean",
    "running_min",
    "select_window",
]


@dataclass(frozen=True)
class FitResult:
    """A straight-line fit in log space on a window of the data.

    Attributes:
        slope: the fitted slope (the exponent for a power law; ``log r`` for a linear law).
        intercept: the fitted intercept (``log C``).
        r2: coefficient of determination on the window.
        start, stop: the window is ``[start, stop)`` in the indices of the input arrays.
        law: ``"power"`` or ``"linear"``.
    """

    slope: float
    intercept: float
    r2: float
    start: int
    stop: int
    law: str

    @property
    def ratio(self) -> float:
        """The contraction factor ``exp(slope)`` of a linear law."""
        return math.exp(self.slope)

    @property
    def n(self) -> int:
        """The number of fitted points."""
        return self.stop - self.start

    def predict(self, t: Any) -> np.ndarray:
        """The fitted line at the abscissae ``t`` (iterations for a linear law, anything positive for a power law)."""
        t = np.asarray(t, dtype=float)
        u = np.log(t) if self.law == "power" else t
        return np.asarray(np.exp(self.intercept + self.slope * u))

    def as_dict(self) -> dict[str, Any]:
        return {"slope": self.slope, "intercept": self.intercept, "r2": self.r2, "start": self.start,
                "stop": self.stop, "law": self.law}


def r_squared(u: np.ndarray, v: np.ndarray, slope: float, intercept: float) -> float:
    """Coefficient of determination of the line ``v ≈ intercept + slope·u``.

    A constant ``v`` fitted exactly has R² = 1 (nothing left to explain).

    Example:
        >>> r_squared(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]), 2.0, 1.0)
        1.0
    """
    resid = v - (intercept + slope * u)
    ss_res = float(np.sum(resid**2))
    ss_tot = float(np.sum((v - v.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def _as_pair(t: Any, e: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t, dtype=float).ravel()
    e = np.asarray(e, dtype=float).ravel()
    if t.shape != e.shape:
        raise ConfigError(f"rate fit: abscissae and values must have the same length, received {t.size} and {e.size}")
    return t, e


def select_window(e: Any, *, drop: float = 0.2, floor: float = 0.0, min_points: int = 3) -> tuple[int, int]:
    """The asymptotic window ``[start, stop)`` of a sequence of errors.

    ``stop`` is the first index whose value is not finite or is ``<= floor`` (the float floor: the law
    no longer decides the values); ``start`` drops the first ``drop`` fraction of ``[0, stop)``.

    Args:
        e: the error sequence, in the order of increasing k (or ρ, T ...).
        drop: fraction of the leading points to discard, in ``[0, 1)``.
        floor: values at or below it end the window (e.g. ``1e-12 · scale`` in float64).
        min_points: fewest points a fit needs.

    Returns:
        ``(start, stop)``.

    Raises:
        ConfigError: ``drop`` out of range, or fewer than ``min_points`` points left.

    Example:
        >>> select_window([1.0, 0.5, 0.25, 0.125, 1e-17, 1e-17], drop=0.25, floor=1e-15)
        (1, 4)
    """
    e = np.asarray(e, dtype=float).ravel()
    if not 0.0 <= drop < 1.0:
        raise ConfigError(f"drop: expected a fraction in [0, 1), received {drop!r}")
    bad = ~np.isfinite(e) | (e <= floor)
    stop = int(np.argmax(bad)) if bad.any() else e.size
    start = int(math.floor(drop * stop))
    if stop - start < min_points:
        raise ConfigError(
            f"rate fit: expected at least {min_points} points above the floor {floor:.3g} in the window, "
            f"received {stop - start} (of {e.size})"
        )
    return start, stop


def _fit(u: np.ndarray, v: np.ndarray, start: int, stop: int, law: str) -> FitResult:
    uu, vv = u[start:stop], v[start:stop]
    slope, intercept = np.polyfit(uu, vv, 1)
    return FitResult(float(slope), float(intercept), r_squared(uu, vv, float(slope), float(intercept)), start, stop,
                     law)


def fit_power_law(
    t: Any, e: Any, *, drop: float = 0.0, floor: float = 0.0, window: tuple[int, int] | None = None
) -> FitResult:
    """Fit ``e ≈ C t^p`` by least squares of ``log e`` on ``log t`` on the asymptotic window.

    Args:
        t: positive abscissae (k, ρ, T), preferably log-spaced.
        e: positive values.
        drop: see :func:`select_window`.
        floor: see :func:`select_window`.
        window: an explicit ``(start, stop)`` instead of :func:`select_window`.

    Returns:
        A :class:`FitResult` whose ``slope`` is the exponent ``p``.

    Raises:
        ConfigError: lengths differ, a non-positive abscissa, or too few points.
    """
    t, e = _as_pair(t, e)
    if np.any(t <= 0):
        raise ConfigError("fit_power_law: abscissae must be positive")
    start, stop = window if window is not None else select_window(e, drop=drop, floor=floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _fit(np.log(t), np.log(e), start, stop, "power")


def fit_linear_rate(
    k: Any, e: Any, *, drop: float = 0.2, floor: float = 0.0, window: tuple[int, int] | None = None
) -> FitResult:
    """Fit ``e ≈ C r^k`` by least squares of ``log e`` on ``k`` on the asymptotic window.

    Args:
        k: iteration counts.
        e: positive errors.
        drop: see :func:`select_window` (the default drops the first 20 %).
        floor: see :func:`select_window`.
        window: an explicit ``(start, stop)``.

    Returns:
        A :class:`FitResult`; ``ratio`` is the contraction factor ``r``.
    """
    k, e = _as_pair(k, e)
    start, stop = window if window is not None else select_window(e, drop=drop, floor=floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _fit(k, np.log(e), start, stop, "linear")


def running_min(v: Any) -> np.ndarray:
    """``min_{j ≤ k} v_j`` for every k (non-convex guarantees bound a minimum).

    Example:
        >>> running_min([3.0, 1.0, 2.0]).tolist()
        [3.0, 1.0, 1.0]
    """
    return np.minimum.accumulate(np.asarray(v, dtype=float))


def running_mean(v: Any) -> np.ndarray:
    """``(1/(k+1)) Σ_{j ≤ k} v_j`` for every k (stochastic guarantees bound an average).

    Example:
        >>> running_mean([3.0, 1.0, 2.0]).tolist()
        [3.0, 2.0, 2.0]
    """
    v = np.asarray(v, dtype=float)
    return np.cumsum(v) / np.arange(1, v.size + 1)


def exponent_agrees(fitted: float, expected: float, tol: float = 0.15) -> bool:
    """``|fitted − expected| ≤ tol`` (exponents of power laws)."""
    return bool(math.isfinite(fitted) and abs(fitted - expected) <= tol)


def ratio_log_error(fitted: float, expected: float) -> float:
    """Relative error of the log contraction factors, ``|log fitted − log expected| / |log expected|``."""
    if not (0.0 < fitted and 0.0 < expected < 1.0):
        return math.inf
    return abs(math.log(fitted) - math.log(expected)) / abs(math.log(expected))


def log_factor_agrees(fitted: float, expected: float, rel: float = 0.15) -> bool:
    """The log contraction factors agree within ``rel`` (relative)."""
    return ratio_log_error(fitted, expected) <= rel

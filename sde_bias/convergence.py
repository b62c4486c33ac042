"""Estimators of a step-size study (pure numpy): weak and strong errors over refinements
of ``dt``, fitted convergence orders with confidence intervals, Richardson extrapolation.

A study has ``L`` levels with step sizes ``h[0] > h[1] > ... > h[L-1]`` (coarse to fine),
all run on the same ``N`` Brownian paths (see :mod:`sde_bias.refine`). A moment of an
observable at one time is the mean over paths of per-path *contributions*
``y[l, i]`` (:func:`contributions`):

* ``mean``: ``y = X``;
* ``variance``: ``y = (X - mean_i X)^2 N / (N - 1)``: the mean of these is the unbiased
  sample variance, and their covariance over paths is its first-order (delta-method)
  variance.

Because the levels share paths, the estimates at different levels are correlated:
every standard error below comes from the full covariance of the level means over
paths, ``Cov[y_l, y_m] / N``, so differences between levels are as precise as the paths
make them (a difference of two independent ensembles would be far noisier).

Weak error of order ``p``: ``E f(X_h) - E f(X) = c h^p + O(h^{p+1})``. Strong error of
order ``q``: ``E |X_h - X| = O(h^q)`` on the same path. Orders are the least-squares
slope of ``log |error|`` against ``log h`` (:func:`fit_order`), with a delta-method
standard error from the covariance above, inflated by the lack of fit when the points
scatter more than their errors allow; the confidence interval is normal.

Richardson extrapolation (:func:`richardson`): with ``X_h = X_0 + sum_{j<J} c_j h^{p+j}``
the finest ``J + 1`` levels determine ``X_0`` as a fixed linear combination
``sum_l w_l X_{h_l}`` (``sum_l w_l = 1``); ``J = 1``, ratio 2, ``p = 1`` is the classic
``2 X_{h/2} - X_h``. Its standard error follows from the same per-path combination.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from jaxtyping import Float

Moment = Literal["mean", "variance"]


# ---------------------------------------------------------------------------- moments
def contributions(x: Float[np.ndarray, "L N"], moment: Moment = "mean") -> Float[np.ndarray, "L N"]:
    """Per-path contributions ``y[l, i]`` whose mean over paths is the moment at level ``l``
    (see the module docstring). Non-finite paths must be removed before."""
    x = np.asarray(x, float)
    if moment == "mean":
        return x
    if moment == "variance":
        n = x.shape[1]
        if n < 2:
            raise ValueError("a variance needs at least 2 paths")
        return (x - x.mean(axis=1, keepdims=True)) ** 2 * (n / (n - 1))
    raise ValueError(f"unknown moment {moment!r}")


def mean_cov(y: Float[np.ndarray, "L N"]) -> tuple[np.ndarray, np.ndarray]:
    """Level means ``[L]`` and the covariance of those means ``[L, L]`` (over paths / N)."""
    y = np.asarray(y, float)
    n = y.shape[1]
    m = y.mean(axis=1)
    c = np.atleast_2d(np.cov(y, ddof=1)) / n if n > 1 else np.zeros((y.shape[0], y.shape[0]))
    return m, c


# ---------------------------------------------------------------------------- order fit
class OrderFit(NamedTuple):
    """``|error| ~ constant * h^order`` fitted on ``(h, error)``."""

    order: float
    se: float
    ci: tuple[float, float]  # two-sided, at ``level``
    level: float
    constant: float
    inflation: float  # sqrt(chi2 / dof) of the fit when > 1 (lack of fit), else 1
    points: int

    def excludes(self, order: float) -> bool:
        """Whether the confidence interval excludes ``order``."""
        return not (self.ci[0] <= order <= self.ci[1])


def _normal_quantile(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def fit_order(
    h: Float[np.ndarray, " L"],
    err: Float[np.ndarray, " L"],
    cov: Float[np.ndarray, "L L"],
    level: float = 0.95,
) -> OrderFit:
    """Least-squares slope of ``log |err|`` on ``log h`` with its standard error.

    ``cov`` is the covariance of the estimates ``err``; the covariance of ``log |err|`` is
    ``J cov J`` with ``J = diag(1 / err)`` (delta method). With three or more points the
    variance is multiplied by ``chi2 / dof`` of the residuals when that exceeds 1, so a
    curve that is not yet a power law widens the interval instead of narrowing it."""
    h = np.asarray(h, float)
    err = np.asarray(err, float)
    cov = np.asarray(cov, float)
    ok = np.isfinite(err) & (err != 0) & (h > 0)
    if ok.sum() < 2:
        nan = float("nan")
        return OrderFit(nan, nan, (nan, nan), level, nan, nan, int(ok.sum()))
    h, err, cov = h[ok], err[ok], cov[np.ix_(ok, ok)]
    x, y = np.log(h), np.log(np.abs(err))
    xc = x - x.mean()
    w = xc / np.sum(xc**2)
    slope = float(w @ y)
    icpt = float(y.mean() - slope * x.mean())
    J = np.diag(1.0 / err)
    V = J @ cov @ J
    var = float(w @ V @ w)
    infl = 1.0
    n = len(h)
    if n >= 3:
        resid = y - (icpt + slope * x)
        try:
            chi2 = float(resid @ np.linalg.solve(V + 1e-300 * np.eye(n), resid))
        except np.linalg.LinAlgError:
            chi2 = float("inf")
        if np.isfinite(chi2) and chi2 / (n - 2) > 1:
            infl = math.sqrt(chi2 / (n - 2))
        elif not np.isfinite(chi2):
            infl = float("inf")
    se = math.sqrt(max(var, 0.0)) * infl
    z = _normal_quantile(level)
    return OrderFit(slope, se, (slope - z * se, slope + z * se), level, math.exp(icpt), infl, n)


# ---------------------------------------------------------------------------- Richardson
def richardson_weights(h: Float[np.ndarray, " L"], order: float, terms: int = 1) -> np.ndarray:
    """Weights ``w`` [L] with ``sum_l w_l X_{h_l} = X_0`` for every
    ``X_h = X_0 + sum_{j < terms} c_j h^{order + j}``, using the finest ``terms + 1``
    levels (the others get weight 0)."""
    h = np.asarray(h, float)
    L = len(h)
    if terms < 1 or terms + 1 > L:
        raise ValueError(f"Richardson with {terms} term(s) needs {terms + 1} levels, have {L}")
    idx = np.argsort(h)[: terms + 1]  # the finest levels
    hs = h[idx]
    # rows: X_0 coefficient 1, then h^{order + j}
    M = np.stack([np.ones_like(hs)] + [hs ** (order + j) for j in range(terms)], axis=1)
    e0 = np.zeros(terms + 1)
    e0[0] = 1.0
    # X = M c  =>  c = M^{-1} X, and X_0 = c[0] = (M^{-T} e0) . X
    w_sub = np.linalg.solve(M.T, e0)
    w = np.zeros(L)
    w[idx] = w_sub
    return w


class Extrapolation(NamedTuple):
    value: float
    se: float
    order: float
    terms: int
    weights: np.ndarray


def richardson(h, y: Float[np.ndarray, "L N"], order: float, terms: int = 1) -> Extrapolation:
    """The ``dt -> 0`` value of the moment whose per-path contributions at each level are
    ``y`` (Richardson with an error expansion starting at ``h^order``)."""
    w = richardson_weights(h, order, terms)
    comb = w @ np.asarray(y, float)  # per path
    n = comb.shape[0]
    se = float(comb.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return Extrapolation(float(comb.mean()), se, float(order), terms, w)


# ---------------------------------------------------------------------------- weak
class WeakStudy(NamedTuple):
    """Weak errors of one moment over the levels of a study."""

    h: np.ndarray  # [L]
    estimate: np.ndarray  # [L] the moment at each level
    estimate_se: np.ndarray  # [L]
    reference: float  # closed form, or the Richardson value
    reference_se: float  # 0 for a closed form
    reference_kind: str  # "closed form" or "Richardson (order p, J terms)"
    error: np.ndarray  # [L] estimate - reference
    error_se: np.ndarray  # [L]
    fit: OrderFit  # weak order (see weak_study)
    extrapolated: Extrapolation


def weak_study(
    h: Float[np.ndarray, " L"],
    y: Float[np.ndarray, "L N"],
    *,
    reference: float | None = None,
    order: float = 1.0,
    terms: int = 1,
    level: float = 0.95,
) -> WeakStudy:
    """Weak errors of a moment (per-path contributions ``y`` [L, N], levels coarse to fine).

    With a closed-form ``reference`` the errors are ``estimate - reference`` and the order
    is fitted on them. Without one the order is fitted on the differences of successive
    levels ``E f(X_{h_l}) - E f(X_{h_{l+1}})`` (``= c h_l^p (1 - (h_{l+1}/h_l)^p)`` for a
    power law: same slope when the refinement ratio is constant), which need no reference
    and are as precise as the shared paths make them; the reference is then the Richardson
    extrapolation with the given (known) ``order`` and ``terms``, and the errors are
    measured from it. ``extrapolated`` is that Richardson value in both cases."""
    h = np.asarray(h, float)
    y = np.asarray(y, float)
    m, c = mean_cov(y)
    ext = richardson(h, y, order, terms)
    if reference is not None:
        err = m - reference
        err_se = np.sqrt(np.diag(c))
        fit = fit_order(h, err, c, level)
        return WeakStudy(h, m, np.sqrt(np.diag(c)), float(reference), 0.0, "closed form", err, err_se, fit, ext)
    dy = y[:-1] - y[1:]
    dm, dc = mean_cov(dy)
    fit = fit_order(h[:-1], dm, dc, level)
    resid = y - ext.weights @ y  # per-path estimate minus per-path extrapolation
    em, ec = mean_cov(resid)
    kind = f"Richardson (order {order:g}, {terms} term{'s' if terms > 1 else ''})"
    return WeakStudy(h, m, np.sqrt(np.diag(c)), ext.value, ext.se, kind, em, np.sqrt(np.diag(ec)), fit, ext)


# ---------------------------------------------------------------------------- strong
class StrongStudy(NamedTuple):
    h: np.ndarray  # [L'] levels compared (all but the reference level)
    error: np.ndarray  # [L'] E |X_h - X_ref|
    error_se: np.ndarray
    reference_kind: str  # "finest level" or "exact solution"
    fit: OrderFit


def strong_study(
    h: Float[np.ndarray, " L"],
    states: Float[np.ndarray, "L N *d"],
    reference: Float[np.ndarray, "N *d"] | None = None,
    level: float = 0.95,
) -> StrongStudy:
    """Strong errors ``E |X_h - X_ref|`` (Euclidean norm over the trailing axes, mean over
    paths) against the exact solution on the same path when given, else against the
    finest level (which is then left out). Against the finest level the errors of the
    levels next to it are biased low (``|X_h - X_f| ~ h^q - h_f^q``), which flattens the
    fitted slope; refine by at least 8x between coarsest and finest."""
    h = np.asarray(h, float)
    X = np.asarray(states, float)
    if reference is None:
        ref, X, h, kind = X[-1], X[:-1], h[:-1], "finest level"
    else:
        ref, kind = np.asarray(reference, float), "exact solution"
    d = (X - ref[None]).reshape(X.shape[0], X.shape[1], -1)
    e = np.linalg.norm(d, axis=-1)  # [L', N]
    m, c = mean_cov(e)
    return StrongStudy(h, m, np.sqrt(np.diag(c)), kind, fit_order(h, m, c, level))


# ---------------------------------------------------------------------------- dt halving
class HalvingEstimate(NamedTuple):
    """Estimated discretisation error ``X_h - X_0`` of a quantity at step ``h`` from its
    values at ``h`` and ``h / 2`` on the same paths: ``(X_h - X_{h/2}) / (1 - 2^-p)``."""

    error: float
    se: float
    order: float
    extrapolated: float
    extrapolated_se: float


def halving_estimate(x_h: np.ndarray, x_half: np.ndarray, order: float) -> HalvingEstimate:
    """:class:`HalvingEstimate` from per-path values at ``h`` and ``h / 2`` (same paths)."""
    x_h, x_half = np.asarray(x_h, float), np.asarray(x_half, float)
    ok = np.isfinite(x_h) & np.isfinite(x_half)
    x_h, x_half = x_h[ok], x_half[ok]
    k = 1.0 / (1.0 - 2.0 ** (-order))
    e = k * (x_h - x_half)
    x0 = x_h - e
    n = e.shape[0]
    sq = math.sqrt(n) if n > 1 else float("nan")
    return HalvingEstimate(
        float(e.mean()), float(e.std(ddof=1) / sq) if n > 1 else float("nan"), float(order),
        float(x0.mean()), float(x0.std(ddof=1) / sq) if n > 1 else float("nan"),
    )


__all__ = [
    "contributions", "mean_cov", "OrderFit", "fit_order", "richardson_weights", "Extrapolation", "richardson",
    "WeakStudy", "weak_study", "StrongStudy", "strong_study", "HalvingEstimate", "halving_estimate",
]

"""Statistics for the cross-checks of docs/theory.md section 5.

* :func:`binned_conditional_mean` estimates ``E[dq | q in bin]``; with
  ``dq = q(t + h) - q(t)`` and ``q = q(t)`` from an ensemble, ``mean / h`` estimates the
  effective drift ``a(q)`` of section 3 (bias ``O(h)``, plus the within-bin variation
  of ``a``).
* :func:`chi2_goodness_of_fit` and :func:`ks_test_against_density` test samples (long
  trajectories, ensembles) against a stationary density from section 4;
  :func:`two_sample_test` compares two sets of samples (e.g. SGD against SDE).
* :func:`mean_and_se` and :func:`standard_error_discrepancy` summarise error bars over
  seeds.

Samples fed to the tests are assumed independent; correlated trajectory samples must be
thinned (by more than the autocorrelation time) first, otherwise p-values are too small.

Host-side numpy/scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
from scipy import stats as _st

__all__ = [
    "BinnedMean",
    "binned_conditional_mean",
    "GoodnessOfFit",
    "chi2_goodness_of_fit",
    "StatTestResult",
    "ks_test_against_density",
    "two_sample_test",
    "standard_error_discrepancy",
    "mean_and_se",
]


class StatTestResult(NamedTuple):
    """A test statistic and its p-value."""

    statistic: float
    pvalue: float


class GoodnessOfFit(NamedTuple):
    """Chi-square goodness of fit: statistic, degrees of freedom, p-value, and the
    observed / expected counts of the merged bins actually used."""

    statistic: float
    dof: int
    pvalue: float
    observed: np.ndarray
    expected: np.ndarray


# ----------------------------------------------------------------------------- moments


def mean_and_se(x, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and its standard error ``s / sqrt(n)`` (``s`` with ``ddof = 1``) along ``axis``."""
    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    if n < 2:
        raise ValueError("need at least 2 samples for a standard error")
    return x.mean(axis=axis), x.std(axis=axis, ddof=1) / np.sqrt(n)


def standard_error_discrepancy(a, se_a, b, se_b) -> np.ndarray:
    """``(a - b) / sqrt(se_a^2 + se_b^2)``: the difference in units of its standard error.

    For independent, approximately normal estimates with equal expectations this is
    approximately ``N(0, 1)``; ``|z| > 3`` is a significant discrepancy. Broadcasts.
    """
    a, se_a, b, se_b = (np.asarray(v, dtype=float) for v in (a, se_a, b, se_b))
    return (a - b) / np.sqrt(se_a**2 + se_b**2)


# ----------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class BinnedMean:
    """Result of :func:`binned_conditional_mean`.

    Attributes:
        edges: bin edges.
        centres: bin centres.
        mean: ``E[dq | q in bin]``, shape ``[nbins]`` (1-D ``dq``) or ``[nbins, k]``;
            NaN where ``count < min_count``.
        se: standard error of ``mean`` (sample std with ``ddof = 1`` over
            ``sqrt(count)``), same shape; NaN where ``count < min_count``.
        count: samples per bin, ``[nbins]``.
        valid: ``count >= min_count``, ``[nbins]``.
    """

    edges: np.ndarray
    centres: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    count: np.ndarray
    valid: np.ndarray


def binned_conditional_mean(q, dq, edges, min_count: int = 10) -> BinnedMean:
    """Estimate ``E[dq | q]`` by the mean of ``dq`` over samples with ``q`` in each bin.

    Bins are ``[e_k, e_{k+1})``, the last one closed; samples with ``q`` outside
    ``[e_0, e_-1]`` are dropped. Per bin the estimator is the sample mean, with standard
    error ``s / sqrt(n)``; it is unbiased for the bin average of ``E[dq | q]`` under the
    sampling distribution of ``q`` (not for its value at the bin centre: the difference
    is ``O(bin width^2)`` for a smooth conditional mean and roughly uniform ``q``).

    Used with ``dq = q(t + h) - q(t)``, ``mean / h`` (``se / h``) estimates the effective
    drift on the quotient (docs/theory.md section 5.2).

    Args:
        q: ``[N]`` conditioning values.
        dq: ``[N]`` or ``[N, k]`` increments.
        edges: strictly increasing bin edges.
        min_count: bins with fewer samples are reported as NaN (``min_count >= 2``).

    Returns:
        :class:`BinnedMean`.
    """
    q = np.asarray(q, dtype=float)
    dq = np.asarray(dq, dtype=float)
    edges = np.asarray(edges, dtype=float)
    if q.ndim != 1 or dq.shape[0] != q.shape[0] or dq.ndim not in (1, 2):
        raise ValueError("q must be [N] and dq [N] or [N, k]")
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be strictly increasing")
    min_count = max(int(min_count), 2)
    vec = dq.ndim == 2
    y = dq if vec else dq[:, None]
    nb = edges.size - 1

    inside = (q >= edges[0]) & (q <= edges[-1])
    q, y = q[inside], y[inside]
    idx = np.clip(np.searchsorted(edges, q, side="right") - 1, 0, nb - 1)

    count = np.bincount(idx, minlength=nb)
    s1 = np.stack([np.bincount(idx, weights=y[:, c], minlength=nb) for c in range(y.shape[1])], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / count[:, None]
        # Two-pass variance for accuracy: centre each sample on its bin mean.
        r = y - mean[idx]
        ss = np.stack([np.bincount(idx, weights=r[:, c] ** 2, minlength=nb) for c in range(y.shape[1])], -1)
        se = np.sqrt(ss / (count[:, None] - 1) / count[:, None])
    valid = count >= min_count
    mean[~valid] = np.nan
    se[~valid] = np.nan
    if not vec:
        mean, se = mean[:, 0], se[:, 0]
    return BinnedMean(
        edges=edges,
        centres=0.5 * (edges[1:] + edges[:-1]),
        mean=mean,
        se=se,
        count=count,
        valid=valid,
    )


# ----------------------------------------------------------------------------- chi2


def _cell_probs_from_density(fn: Callable, edges: Sequence[np.ndarray], nquad: int) -> np.ndarray:
    """Integrate ``fn`` over each cell of a tensor grid by Gauss-Legendre (``nquad`` per axis)."""
    x, w = np.polynomial.legendre.leggauss(nquad)
    d = len(edges)
    nodes, weights = [], []
    for e in edges:
        lo, hi = e[:-1, None], e[1:, None]
        nodes.append((0.5 * (hi - lo) * x[None] + 0.5 * (hi + lo)).ravel())  # [n * nquad]
        weights.append((0.5 * (hi - lo) * w[None]).ravel())
    mesh = np.meshgrid(*nodes, indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], -1)
    vals = np.asarray(fn(pts[:, 0] if d == 1 else pts), dtype=float)
    wt = weights[0]
    for wk in weights[1:]:
        wt = np.multiply.outer(wt, wk)
    integrand = (vals.reshape(wt.shape) * wt)
    shape = []
    for e in edges:
        shape += [e.size - 1, nquad]
    return integrand.reshape(shape).sum(axis=tuple(range(1, 2 * d, 2)))


def _merge_sparse(expected: np.ndarray, min_expected: float) -> np.ndarray:
    """Group labels over consecutive (flattened C-order) cells, each group with expected
    count ``>= min_expected``; a short final group is merged into the previous one.
    Depends only on the expected counts, so the partition is fixed before the data."""
    labels = np.empty(expected.size, dtype=int)
    g, acc = 0, 0.0
    for k, e in enumerate(expected):
        labels[k] = g
        acc += e
        if acc >= min_expected:
            g, acc = g + 1, 0.0
    if acc > 0 and g > 0 and acc < min_expected:  # trailing short group
        labels[labels == g] = g - 1
    return labels


def chi2_goodness_of_fit(
    samples,
    density_fn_or_cell_probs,
    edges,
    min_expected: float = 5.0,
    *,
    ddof: int = 0,
    nquad: int = 5,
) -> GoodnessOfFit:
    """Pearson chi-square test of binned samples against a density.

    Model probabilities per cell are either given (an array shaped like the grid) or
    integrated from a density callable by tensor Gauss-Legendre quadrature. The test is
    conditional on the box spanned by ``edges``: samples outside are dropped and the cell
    probabilities renormalised to sum to 1. Consecutive cells (C order) are merged until
    each group expects ``>= min_expected`` samples (Cochran's rule; Cochran, Ann. Math.
    Stat. 23, 315 (1952)), then ``X^2 = sum (O - E)^2 / E`` is referred to ``chi^2``
    with ``groups - 1 - ddof`` degrees of freedom.

    Args:
        samples: ``[N]`` (1-D) or ``[N, d]``.
        density_fn_or_cell_probs: callable density (``[M] -> [M]`` in 1-D, ``[M, d] ->
            [M]`` otherwise; normalisation irrelevant), or an array of non-negative cell
            probabilities / masses of the grid's shape.
        edges: 1-D array of edges (1-D), or a list of ``d`` edge arrays.
        min_expected: minimum expected count per merged group.
        ddof: number of parameters fitted to the same samples.
        nquad: Gauss-Legendre points per axis and cell when integrating a callable.

    Returns:
        :class:`GoodnessOfFit`.
    """
    x = np.asarray(samples, dtype=float)
    if isinstance(edges, np.ndarray) and edges.ndim == 1:
        edges = [edges]
    edges = [np.asarray(e, dtype=float) for e in edges]
    d = len(edges)
    x = x.reshape(-1, d) if x.ndim == 1 else x
    if x.shape[1] != d:
        raise ValueError(f"samples have dimension {x.shape[1]}, edges {d}")
    observed, _ = np.histogramdd(x, bins=edges)
    if callable(density_fn_or_cell_probs):
        probs = _cell_probs_from_density(density_fn_or_cell_probs, edges, nquad)
    else:
        probs = np.asarray(density_fn_or_cell_probs, dtype=float)
        if probs.shape != observed.shape:
            raise ValueError(f"cell probabilities have shape {probs.shape}, grid {observed.shape}")
    if np.any(probs < 0) or probs.sum() <= 0:
        raise ValueError("cell probabilities must be non-negative with positive sum")
    n = observed.sum()
    expected = (probs / probs.sum() * n).ravel()
    observed = observed.ravel()
    labels = _merge_sparse(expected, min_expected)
    O = np.bincount(labels, weights=observed)
    E = np.bincount(labels, weights=expected)
    dof = O.size - 1 - int(ddof)
    if dof < 1:
        raise ValueError("too few merged bins for a chi-square test; use more samples")
    stat = float(np.sum((O - E) ** 2 / E))
    return GoodnessOfFit(stat, dof, float(_st.chi2.sf(stat, dof)), O, E)


# ----------------------------------------------------------------------------- KS


def _cdf_from_grid(grid: np.ndarray, density: np.ndarray) -> Callable:
    """CDF of the piecewise-linear interpolant of ``density`` on ``grid``, normalised.

    Within ``[x_k, x_k+1]`` the CDF is the exact integral of the linear interpolant,
    ``C_k + p_k t + (p_k+1 - p_k) t^2 / (2 h_k)``, ``t = x - x_k``; 0 below the grid and
    1 above it.
    """
    h = np.diff(grid)
    cell = 0.5 * (density[1:] + density[:-1]) * h
    total = cell.sum()
    C = np.concatenate([[0.0], np.cumsum(cell)]) / total
    p = density / total
    slope = (p[1:] - p[:-1]) / h

    def cdf(x):
        x = np.asarray(x, dtype=float)
        k = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, grid.size - 2)
        t = np.clip(x - grid[k], 0.0, h[k])
        out = C[k] + p[k] * t + 0.5 * slope[k] * t * t
        return np.clip(out, 0.0, 1.0)

    return cdf


def ks_test_against_density(samples, grid, density) -> StatTestResult:
    """One-sample Kolmogorov-Smirnov test of 1-D samples against a density on a grid.

    The CDF is that of the piecewise-linear interpolant of ``density`` on ``grid``
    (normalised to unit mass on the grid; zero below, one above), which is accurate to
    ``O(h^2)`` for a smooth density. Uses ``scipy.stats.kstest`` with that callable CDF.
    Samples outside the grid contribute the CDF values 0 or 1, so a grid that misses
    real mass is detected rather than hidden.

    Args:
        samples: ``[N]`` samples.
        grid: strictly increasing nodes (e.g. the ``centres`` of a
            :class:`~sde_bias.fokker_planck.StationaryDensity` marginal).
        density: non-negative values at ``grid`` (normalisation irrelevant).

    Returns:
        :class:`StatTestResult` (statistic, p-value).
    """
    grid = np.asarray(grid, dtype=float)
    density = np.asarray(density, dtype=float)
    if grid.ndim != 1 or density.shape != grid.shape or grid.size < 2:
        raise ValueError("grid and density must be 1-D arrays of the same length >= 2")
    if np.any(np.diff(grid) <= 0) or np.any(density < 0):
        raise ValueError("grid must be increasing and density non-negative")
    res = _st.kstest(np.asarray(samples, dtype=float).ravel(), _cdf_from_grid(grid, density))
    return StatTestResult(float(res.statistic), float(res.pvalue))


def two_sample_test(x, y) -> StatTestResult:
    """Two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``) of 1-D samples ``x``, ``y``.

    Null hypothesis: both come from the same continuous distribution (docs/theory.md section
    5.3: a histogram of simulated quotient trajectories against another simulation).
    """
    res = _st.ks_2samp(np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel())
    return StatTestResult(float(res.statistic), float(res.pvalue))

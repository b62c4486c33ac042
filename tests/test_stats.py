"""Statistics for the cross-checks (docs/theory.md section 5): calibration under the null,
power under a wrong model. All seeds fixed, so every test is deterministic."""

import numpy as np
import pytest
from scipy.stats import chi2, norm

from sde_bias.stats import (
    binned_conditional_mean,
    chi2_goodness_of_fit,
    ks_test_against_density,
    mean_and_se,
    standard_error_discrepancy,
    two_sample_test,
)

REPS = 200
ALPHA = 0.05


def _calibrated(pvalues, level=ALPHA):
    """Under the null the number of p-values below ``level`` over REPS independent tests
    is Binomial(REPS, level) (at 0.05: mean 10, sd 3.08); accept within 4 sd."""
    k = np.sum(np.asarray(pvalues) < level)
    return abs(k - REPS * level) <= 4 * np.sqrt(REPS * level * (1 - level))


# ----------------------------------------------------------------------------- drift


def _drift(q):
    return -q + 0.3 * q**3


def _bin_average_drift(edges):
    """Exact average of _drift over each bin (q uniform): antiderivative differences."""
    F = lambda q: -(q**2) / 2 + 0.3 * q**4 / 4
    return (F(edges[1:]) - F(edges[:-1])) / np.diff(edges)


def test_binned_conditional_mean_recovers_drift():
    rng = np.random.default_rng(0)
    n, h = 200_000, 0.1
    q = rng.uniform(-2, 2, n)
    # Euler increments with state-dependent noise: E[dq | q] = a(q) h exactly.
    dq = _drift(q) * h + np.sqrt(2 * h * (0.5 + 0.2 * q**2)) * rng.standard_normal(n)
    edges = np.linspace(-2, 2, 41)
    res = binned_conditional_mean(q, dq, edges)
    truth = _bin_average_drift(edges) * h
    z = (res.mean - truth) / res.se
    assert res.valid.all() and res.count.sum() == n
    assert np.mean(np.abs(z) < 3) >= 0.95
    # And the estimate is informative: a drift off by 30% is rejected overwhelmingly by
    # the combined statistic sum z^2, which is chi^2(40) under the null.
    z_wrong = (res.mean - 1.3 * truth) / res.se
    assert chi2.sf(np.sum(z**2), z.size) > 1e-3
    assert chi2.sf(np.sum(z_wrong**2), z.size) < 1e-12
    # Standard errors match the known conditional variance 2 h D(q) / count.
    se_expected = np.sqrt(2 * h * (0.5 + 0.2 * res.centres**2) / res.count)
    np.testing.assert_allclose(res.se, se_expected, rtol=0.1)


def test_binned_conditional_mean_vector_increments_and_sparse_bins():
    rng = np.random.default_rng(1)
    n = 50_000
    q = rng.normal(size=n)
    dq = np.stack([q + 0.1 * rng.standard_normal(n), -2 * q + 0.1 * rng.standard_normal(n)], -1)
    edges = np.linspace(-6, 6, 25)
    res = binned_conditional_mean(q, dq, edges, min_count=20)
    assert res.mean.shape == (24, 2) and res.se.shape == (24, 2)
    assert np.all(np.isnan(res.mean[~res.valid])) and np.all(res.count[~res.valid] < 20)
    assert (~res.valid).any() and res.valid.sum() >= 8
    # Linear conditional mean: the bin mean is E[q | bin] times the slope.
    qbar = np.array([q[(q >= lo) & (q < hi)].mean() if c >= 20 else np.nan
                     for lo, hi, c in zip(edges[:-1], edges[1:], res.count)])
    z = (res.mean[res.valid] - qbar[res.valid, None] * np.array([1.0, -2.0])) / res.se[res.valid]
    assert np.mean(np.abs(z) < 3) >= 0.95
    # Samples outside the edges are dropped.
    out = binned_conditional_mean(np.array([-10.0, 0.1, 0.2, 10.0]), np.ones(4), [0, 1], min_count=2)
    assert out.count.tolist() == [2]


# ----------------------------------------------------------------------------- chi2


def test_chi2_calibrated_under_null_and_powerful_under_wrong_density():
    rng = np.random.default_rng(2)
    edges = np.linspace(-4, 4, 33)
    # Tail cells expect < 5 samples and get merged; the rule depends on expected
    # counts only, so the null distribution stays chi^2.
    ps = [chi2_goodness_of_fit(rng.normal(size=400), norm.pdf, edges).pvalue for _ in range(REPS)]
    assert _calibrated(ps)
    assert _calibrated(ps, level=0.5)
    res = chi2_goodness_of_fit(rng.normal(size=400), norm.pdf, edges)
    assert res.dof < 31 and res.expected.min() >= 5
    # Degrees of freedom: with few bins the mean statistic under the null must equal
    # the reported dof (E chi^2_k = k, sd of the mean over REPS = sqrt(2 k / REPS)).
    coarse = np.array([-3.0, -1.0, -0.3, 0.3, 1.0, 3.0])
    fits = [chi2_goodness_of_fit(rng.normal(size=400), norm.pdf, coarse) for _ in range(REPS)]
    k = fits[0].dof
    assert k == 4
    assert abs(np.mean([f.statistic for f in fits]) - k) < 4 * np.sqrt(2 * k / REPS)
    # Wrong width by 20%.
    wrong = chi2_goodness_of_fit(rng.normal(scale=1.2, size=4000), norm.pdf, edges)
    assert wrong.pvalue < 1e-6


def test_chi2_with_cell_probabilities_2d():
    rng = np.random.default_rng(3)
    ex, ey = np.linspace(-3, 3, 9), np.linspace(-3, 3, 7)
    px, py = np.diff(norm.cdf(ex)), np.diff(norm.cdf(ey))
    probs = np.outer(px, py)
    ps = [chi2_goodness_of_fit(rng.normal(size=(500, 2)), probs, [ex, ey]).pvalue for _ in range(REPS)]
    assert _calibrated(ps)
    # The same via a density callable on [N, 2] points.
    x = rng.normal(size=(500, 2))
    a = chi2_goodness_of_fit(x, probs, [ex, ey])
    b = chi2_goodness_of_fit(x, lambda p: norm.pdf(p[:, 0]) * norm.pdf(p[:, 1]), [ex, ey])
    assert a.dof == b.dof and abs(a.statistic - b.statistic) < 1e-6 * a.statistic
    # Correlated samples against the independent law.
    c = rng.normal(size=(3000, 2))
    c[:, 1] = 0.6 * c[:, 0] + 0.8 * c[:, 1]
    assert chi2_goodness_of_fit(c, probs, [ex, ey]).pvalue < 1e-6
    with pytest.raises(ValueError):
        chi2_goodness_of_fit(x, probs.T, [ex, ey])


# ----------------------------------------------------------------------------- KS


def _gamma_density(x, k=3.0):
    return np.where(x > 0, x ** (k - 1) * np.exp(-x), 0.0)


def test_ks_against_grid_density():
    rng = np.random.default_rng(4)
    grid = np.linspace(0, 25, 501)
    dens = _gamma_density(grid)  # unnormalised on purpose
    ps = [ks_test_against_density(rng.gamma(3.0, size=300), grid, dens).pvalue for _ in range(REPS)]
    assert _calibrated(ps)
    assert _calibrated(ps, level=0.5)
    # Shape 3.3 instead of 3.
    assert ks_test_against_density(rng.gamma(3.3, size=3000), grid, dens).pvalue < 1e-6
    # Coarse grid: the piecewise-linear CDF is still close (statistic for a huge
    # sample ~ the sup CDF error, O(h^2)).
    coarse = np.linspace(0, 25, 51)
    big = rng.gamma(3.0, size=200_000)
    assert ks_test_against_density(big, coarse, _gamma_density(coarse)).statistic < 5e-3


# ----------------------------------------------------------------------------- two-sample


def test_two_sample_detects_shift():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=2000), rng.normal(loc=0.2, size=2000)
    assert two_sample_test(x, y).pvalue < 1e-4
    ps = [two_sample_test(rng.normal(size=300), rng.normal(size=400)).pvalue for _ in range(REPS)]
    assert _calibrated(ps)


# ----------------------------------------------------------------------------- moments


def test_mean_and_se_and_discrepancy():
    x = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])
    m, se = mean_and_se(x)
    np.testing.assert_allclose(m, [3.0, 2.0])
    np.testing.assert_allclose(se, [2.0 / np.sqrt(3), 0.0])
    m1, se1 = mean_and_se(x.T, axis=1)
    np.testing.assert_allclose(m1, m)
    np.testing.assert_allclose(standard_error_discrepancy(3.0, 3.0, 1.0, 4.0), 0.4)
    # z of two independent estimates of the same mean is ~N(0, 1).
    rng = np.random.default_rng(6)
    a = rng.normal(size=(1000, 20))
    b = rng.normal(loc=0.0, scale=2.0, size=(1000, 50))
    (ma, sa), (mb, sb) = mean_and_se(a, axis=1), mean_and_se(b, axis=1)
    z = standard_error_discrepancy(ma, sa, mb, sb)
    assert abs(z.std() - 1) < 0.1 and abs(z.mean()) < 0.15
    with pytest.raises(ValueError):
        mean_and_se(np.ones(1))

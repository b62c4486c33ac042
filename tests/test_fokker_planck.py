"""Stationary Fokker-Planck densities (docs/theory.md section 4) against closed forms.

Accuracy model. The finite-volume scheme of ``stationary_density`` is second order in
the cell width h for smooth coefficients, so the L1 distance to the exact law on the
grid behaves like C h^2. Each tolerance below is ~2-3x the value measured when the
test was written (quoted in the comment), and ``test_*_refinement`` checks the h^2
behaviour directly (halving h must cut the error by > 3; the ideal factor is 4).
L1 distance: sum over cells |p - p_exact| * cell volume, with p_exact evaluated at the
cell centres and normalised on the same grid (the box is reflecting, so the exact law
of the reflected process is the free law restricted to the box).
"""

import numpy as np
import pytest
from scipy.linalg import solve_continuous_lyapunov
from scipy.stats import norm

from sde_bias.fokker_planck import (
    bernoulli_function,
    curl_diagnostic,
    stationary_density,
    stationary_density_1d,
)


def _centre_points(res):
    mesh = np.meshgrid(*res.centres, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=-1)


def _l1(res, unnormalised_density):
    pe = unnormalised_density(_centre_points(res)).reshape(res.density.shape)
    pe = pe / np.sum(pe * res.cell_volume)
    return float(np.sum(np.abs(res.density - pe) * res.cell_volume))


def _const(M):
    M = np.asarray(M, dtype=float)
    return lambda x: np.broadcast_to(M, (x.shape[0],) + M.shape)


# ----------------------------------------------------------------------------- 1-D

K_OU, S_OU = 2.0, 0.7
VAR_OU = S_OU**2 / (2 * K_OU)  # docs/theory.md section 7: N(0, s^2 / (2k))


def test_ou_1d_closed_form():
    grid = np.linspace(-7, 7, 201) * np.sqrt(VAR_OU)
    exact = norm.pdf(grid, scale=np.sqrt(VAR_OU))
    # Callables and arrays on the grid must agree.
    p = stationary_density_1d(lambda q: -K_OU * q, lambda q: np.full_like(q, S_OU**2 / 2), grid)
    p_arr = stationary_density_1d(-K_OU * grid, S_OU**2 / 2 * np.ones_like(grid), grid)
    np.testing.assert_allclose(p, p_arr, rtol=1e-13)
    # The trapezoid integral of a linear a/D is exact, and the trapezoid normalisation
    # of a Gaussian over +-7 sd is accurate to ~1e-11: only round-off remains.
    assert np.trapezoid(np.abs(p - exact), grid) < 1e-9
    var = np.trapezoid(grid**2 * p, grid)
    assert abs(var / VAR_OU - 1) < 1e-8


def test_ou_1d_stable_far_from_origin():
    # Sharp density centred far from the first node: exp(integral a/D) spans ~1e5 in
    # the exponent; the max-subtraction must keep it finite.
    grid = np.linspace(0.0, 200.0, 4001)
    p = stationary_density_1d(lambda q: -50.0 * (q - 190.0), 0.5, grid)
    assert np.all(np.isfinite(p))
    mean = np.trapezoid(grid * p, grid)
    assert abs(mean - 190.0) < 1e-6


def test_ou_1d_finite_volume():
    edges = np.linspace(-7, 7, 81) * np.sqrt(VAR_OU)
    res = stationary_density(lambda x: -K_OU * x, _const([[S_OU**2 / 2]]), [edges])
    exact = norm.pdf(res.centres[0], scale=np.sqrt(VAR_OU))
    # Scharfetter-Gummel is exact for linear drift, constant D on a uniform grid
    # (p_R / p_L = exp(P) with P the exact exponent increment), and the midpoint sum
    # of a Gaussian is spectrally accurate: only round-off remains.
    assert np.sum(np.abs(res.density - exact) * res.cell_volume) < 1e-9
    assert res.residual < 1e-12
    assert res.min_density > 0


def _state_dependent_1d(n, L=5.0):
    # a = -q, D = (1 + q^2)/2:  a/D = -2q/(1+q^2), exp(int a/D) = 1/(1+q^2), so
    # p = (1/D) exp(int a/D) is proportional to (1 + q^2)^-2 (Risken eq. 5.13).
    exact = lambda q: (1 + q**2) ** -2
    grid = np.linspace(-L, L, n)
    p = stationary_density_1d(lambda q: -q, lambda q: (1 + q**2) / 2, grid)
    ex = exact(grid) / np.trapezoid(exact(grid), grid)
    err_1d = float(np.trapezoid(np.abs(p - ex), grid))
    res = stationary_density(lambda x: -x, lambda x: ((1 + x**2) / 2)[:, :, None], [np.linspace(-L, L, n + 1)])
    err_fv = _l1(res, lambda x: exact(x[:, 0]))
    return err_1d, err_fv, res


def test_state_dependent_diffusion_1d():
    err_1d, err_fv, res = _state_dependent_1d(40)
    # Measured (h = 0.25): 3.9e-3 (trapezoid formula), 3.8e-3 (finite volumes), i.e.
    # C ~ 0.062 in C h^2; tolerance 0.15 h^2 = 9.4e-3.
    h = 0.25
    assert err_1d < 0.15 * h**2
    assert err_fv < 0.15 * h**2
    assert res.min_density > 0


def test_state_dependent_diffusion_1d_refinement():
    coarse = _state_dependent_1d(40)
    fine = _state_dependent_1d(80)
    # Second order: measured ratios 4.2 (formula) and 4.1 (finite volumes).
    assert coarse[0] / fine[0] > 3.0
    assert coarse[1] / fine[1] > 3.0


# ----------------------------------------------------------------------------- 2-D

D_FULL = np.array([[1.0, 0.6], [0.6, 0.8]])  # anisotropic, cross terms, SPD
A_U = np.array([[2.0, 0.5], [0.5, 1.0]])
OMEGA = np.array([[0.0, 1.5], [-1.5, 0.0]])


def _U(x):
    return 0.5 * np.einsum("ni,ij,nj->n", x, A_U, x) + 0.05 * x[:, 0] ** 4


def _grad_U(x):
    g = x @ A_U
    g[:, 0] += 0.2 * x[:, 0] ** 3
    return g


def _gradient_drift(x):  # a = -D grad U  ->  Gibbs law exp(-U)
    return -_grad_U(x) @ D_FULL.T


def _nongradient_drift(x):  # a = -(D + Omega) grad U  ->  still exp(-U), with a current
    return -_grad_U(x) @ (D_FULL + OMEGA).T


def _solve_2d(drift, n, L=4.0):
    e = np.linspace(-L, L, n + 1)
    return stationary_density(drift, _const(D_FULL), [e, e])


def test_gradient_system_2d_gibbs():
    res = _solve_2d(_gradient_drift, 40)
    # Measured 5.6e-3 at h = 0.2 (C ~ 0.14); tolerance 0.35 h^2 = 1.4e-2.
    assert _l1(res, lambda x: np.exp(-_U(x))) < 0.35 * 0.2**2
    assert res.residual < 1e-10
    # The cross-term stencil is not monotone; negative values must stay negligible.
    assert res.min_density > -1e-4 * res.density.max()


def test_gradient_system_2d_refinement():
    err = [_l1(_solve_2d(_gradient_drift, n), lambda x: np.exp(-_U(x))) for n in (30, 60)]
    # Measured 1.0e-2 -> 2.5e-3 (ratio 4.0).
    assert err[0] / err[1] > 3.0


def test_nongradient_system_2d():
    res = _solve_2d(_nongradient_drift, 40)
    # Measured 9.7e-3 at h = 0.2 (C ~ 0.24; 4.5e-3 at h = 0.133, 2.7e-3 at h = 0.1);
    # tolerance 0.5 h^2 = 2e-2. The probability
    # current -Omega grad U p is not tangent to the box; its truncation is ~exp(-U) on
    # the boundary (< 1e-6 here), far below the discretisation error.
    assert _l1(res, lambda x: np.exp(-_U(x))) < 0.5 * 0.2**2
    assert res.residual < 1e-10


def test_curl_diagnostic_gradient_vs_nongradient():
    pts = np.random.default_rng(0).normal(size=(50, 2))
    grad = curl_diagnostic(_gradient_drift, _const(D_FULL), pts)
    nongrad = curl_diagnostic(_nongradient_drift, _const(D_FULL), pts)
    # F = D^-1 a = -grad U for the gradient system: only finite-difference noise.
    assert grad.max_relative < 1e-6
    np.testing.assert_allclose(grad.F, -_grad_U(pts), rtol=1e-10, atol=1e-10)
    # F = -grad U - D^-1 Omega grad U: curl of order one.
    assert nongrad.max_relative > 0.1
    # Antisymmetric by construction.
    np.testing.assert_allclose(nongrad.curl, -np.swapaxes(nongrad.curl, 1, 2))


def _D_diag(x):
    return np.stack(
        [
            0.5 * (1 + 0.5 * x[:, 0] ** 2 + 0.3 * np.sin(x[:, 1])),
            0.5 * (1 + 0.4 * np.cos(x[:, 0])) + 0.2 * x[:, 1] ** 2,
        ],
        -1,
    )


def _div_D_diag(x):  # (div D)_i = d_i D_ii for a diagonal tensor
    return np.stack([0.5 * x[:, 0], 0.4 * x[:, 1]], -1)


def _U2(x):
    return 0.5 * x[:, 0] ** 2 + 0.5 * x[:, 1] ** 2 + 0.3 * x[:, 0] * x[:, 1] + 0.1 * x[:, 1] ** 4


def _grad_U2(x):
    return np.stack([x[:, 0] + 0.3 * x[:, 1], x[:, 1] + 0.3 * x[:, 0] + 0.4 * x[:, 1] ** 3], -1)


def _state_dependent_drift(x):  # a = div D - D grad U  ->  exp(-U)
    return _div_D_diag(x) - _D_diag(x) * _grad_U2(x)


def test_state_dependent_diffusion_2d():
    e = np.linspace(-5, 5, 41)
    res = stationary_density(_state_dependent_drift, _D_diag, [e, e])  # div D by finite differences
    res_exact_div = stationary_density(_state_dependent_drift, _D_diag, [e, e], div_D=_div_D_diag)
    # Measured 1.8e-3 at h = 0.25 for both (4.6e-4 at h = 0.125; Scharfetter-Gummel is
    # exact on the quadratic part of U, the error comes from the quartic term);
    # tolerance 0.08 h^2 = 5e-3.
    exact = lambda x: np.exp(-_U2(x))
    assert _l1(res, exact) < 0.08 * 0.25**2
    assert _l1(res_exact_div, exact) < 0.08 * 0.25**2
    # No cross terms: the generator is an M-matrix and the null vector is positive.
    assert res.min_density > 0
    # Ignoring the noise-induced drift div D gives a visibly different law (L1 0.29).
    wrong = stationary_density(lambda x: -_D_diag(x) * _grad_U2(x), _D_diag, [e, e])
    assert _l1(wrong, exact) > 10 * _l1(res, exact)
    # F = D^-1 (a - div D) = -grad U is a gradient: curl ~ 0 (div D by finite differences).
    pts = np.random.default_rng(1).uniform(-2, 2, size=(50, 2))
    assert curl_diagnostic(_state_dependent_drift, _D_diag, pts).max_relative < 1e-6


# ----------------------------------------------------------------------------- 3-D


def test_ou_3d():
    K = np.array([[1.0, 0.5, 0.0], [-0.3, 1.2, 0.2], [0.0, 0.1, 0.8]])  # non-normal
    D = np.array([[0.5, 0.1, 0.0], [0.1, 0.4, 0.05], [0.0, 0.05, 0.3]])
    # Stationary covariance: K S + S K^T = 2 D.
    S = solve_continuous_lyapunov(K, 2 * D)
    Si = np.linalg.inv(S)
    n = 16
    edges = [np.linspace(-5, 5, n + 1) * np.sqrt(S[i, i]) for i in range(3)]
    res = stationary_density(lambda x: -x @ K.T, _const(D), edges)
    # Measured 1.5e-2 with h = 10 sd / 16 per axis (and 2.7e-2 at n = 12, 6.7e-3 at
    # n = 24: second order); tolerance 3e-2.
    assert _l1(res, lambda x: np.exp(-0.5 * np.einsum("ni,ij,nj->n", x, Si, x))) < 3e-2
    pts = _centre_points(res)
    w = (res.density * res.cell_volume).ravel()
    cov = (pts * w[:, None]).T @ pts
    # Grid second moments: measured max deviation 1.2% of max S_ii; tolerance 3%.
    np.testing.assert_allclose(cov, S, atol=0.03 * np.max(np.diag(S)))
    # Marginals integrate out the other axes: N(0, S_ii); measured L1 <= 3.0e-3.
    for i in range(3):
        m = res.marginal(i)
        ex = norm.pdf(res.centres[i], scale=np.sqrt(S[i, i]))
        assert np.sum(np.abs(m - ex) * np.diff(edges[i])) < 1e-2
    # Non-normal K with this D: not detailed balance (measured 0.54).
    assert curl_diagnostic(lambda x: -x @ K.T, _const(D), pts[:20]).max_relative > 0.05


# ----------------------------------------------------------------------------- pieces


def test_generator_conserves_mass_and_is_m_matrix_without_cross_terms():
    e = np.linspace(-3, 3, 13)
    res = stationary_density(_state_dependent_drift, _D_diag, [e, np.linspace(-2, 4, 10)])
    L = res.generator
    v = res.cell_volume.ravel()
    # Conservation: V^T L = 0 up to round-off.
    assert np.max(np.abs(v @ L)) < 1e-12 * abs(L).max()
    off = L - np.diag(L.diagonal())
    assert off.min() >= 0
    assert np.all(L.diagonal() <= 0)


def test_bernoulli_function():
    x = np.array([-800.0, -30.0, -1.0, -1e-9, 0.0, 1e-9, 1.0, 30.0, 800.0])
    b = bernoulli_function(x)
    assert np.all(np.isfinite(b)) and np.all(b >= 0)
    mid = np.abs(x) == 1.0
    np.testing.assert_allclose(b[mid], x[mid] / np.expm1(x[mid]), rtol=1e-14)
    np.testing.assert_allclose(b[np.abs(x) < 1e-6], 1.0, atol=1e-9)
    np.testing.assert_allclose(b[0], 800.0)
    assert b[-1] == 0.0
    # B(-x) - B(x) = x: the flux reduces to the drift for equal densities.
    y = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(bernoulli_function(-y) - bernoulli_function(y), y, atol=1e-13)


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        stationary_density_1d(lambda q: -q, lambda q: q, np.linspace(-1, 1, 11))  # D <= 0
    with pytest.raises(ValueError):
        stationary_density(lambda x: -x, _const(np.eye(4)), [np.linspace(0, 1, 5)] * 4)

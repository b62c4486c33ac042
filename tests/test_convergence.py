"""Step-size studies: measured convergence orders of the solvers on SDEs with closed forms,
Richardson extrapolation, and the shared Brownian paths of sde_bias.refine.

Orders claimed (sde_bias.refine.KNOWN_ORDERS), per noise class:

* geometric Brownian motion dX = a X dt + b X dW (multiplicative, one noise column, so
  commutative): Euler-Maruyama weak 1 / strong 1/2; Itô Milstein weak 1 / strong 1;
  stochastic Heun (Stratonovich, with the Itô drift correction) weak 1 / strong 1.
* Ornstein-Uhlenbeck dX = -k X dt + s dW (additive): Euler-Maruyama weak 1; Heun weak 2.

A fitted slope over a finite range of dt differs from the asymptotic order by O(dt) (the
next term of the error expansion), so each test asks for the fitted order within 0.1 of
the claim and for its 95 % confidence interval to exclude the neighbouring orders.
"""

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sde_bias import convergence as cv
from sde_bias.refine import combine_levy, known_orders, noise_class, refined
from sde_bias.sde import CustomSDE, SDEStepper


@eqx.filter_jit
def _final_states(stepper, theta0, keys, units):
    """``units`` unit steps of ``stepper`` from every row of ``theta0`` (one key per path),
    drawing the path's increments with the stepper's own ``draw`` (shared across levels)."""

    def one(theta, key):
        def unit(th, k):
            d = stepper.draw(k, stepper.substeps, None, theta.dtype)
            return jax.lax.scan(lambda t, dd: (stepper.step(t, None, None, dd)[0], None), th, d)[0], None

        return jax.lax.scan(unit, theta, jax.random.split(key, units))[0]

    return jax.vmap(one)(theta0, keys)


def _levels(stepper, refine, theta0, keys, units=1):
    finest = max(refine)
    return np.stack([np.asarray(_final_states(refined(stepper, r, finest), theta0, keys, units)) for r in refine])


def _gbm(a, b):
    """GBM with the Brownian motion carried as a second state component (exact under every
    solver: zero drift, unit diffusion), so the exact solution X0 exp((a - b^2/2) t + b W_t)
    is known on each path."""
    return CustomSDE(
        lambda y, args: jnp.stack([a * y[0], 0.0 * y[1]]),
        lambda y, args, xi: jnp.stack([b * y[0] * xi[0], xi[0]]),
        1,
    )


SOLVERS = {"euler": (diffrax.Euler(), False), "ito_milstein": (diffrax.ItoMilstein(), True), "heun": (diffrax.Heun(), False)}


@functools.lru_cache(maxsize=None)
def _gbm_levels(name, a, b, n=8000, base=32):
    solver, dense = SOLVERS[name]
    st = SDEStepper(_gbm(a, b), solver, substeps=base, dense_diffusion=dense)
    theta0 = jnp.tile(jnp.array([1.0, 0.0]), (n, 1))
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    X = _levels(st, [1, 2, 4, 8], theta0, keys)  # [L, N, 2], T = 1
    h = 1.0 / base / np.array([1.0, 2.0, 4.0, 8.0])
    return h, X, st


def test_levels_share_the_brownian_path():
    _, X, st = _gbm_levels("euler", 1.0, 0.5)
    np.testing.assert_allclose(X[:, :, 1], np.broadcast_to(X[-1:, :, 1], X[:, :, 1].shape), atol=1e-13)
    assert noise_class(st.sde, jnp.array([[1.0, 0.0], [2.0, 0.3]]), None) == "commutative"


@pytest.mark.parametrize("name", ["euler", "ito_milstein", "heun"])
def test_weak_order_on_gbm(name):
    """E X_T against e^{aT}, with the exact solution on the same path as a control variate
    (same expectation, known in closed form): a = 1, b = 0.5, T = 1, dt = 1/32 .. 1/256,
    8,000 paths."""
    a, b = 1.0, 0.5
    h, X, st = _gbm_levels(name, a, b)
    exact = np.exp((a - b * b / 2) + b * X[..., 1])
    y = X[..., 0] - exact + np.exp(a)
    w = cv.weak_study(h, y, reference=np.exp(a))
    claimed = known_orders(name, "commutative")[0]
    assert claimed == 1.0
    assert abs(w.fit.order - claimed) < 0.1, w.fit
    assert w.fit.excludes(0.5) and w.fit.excludes(2.0), w.fit


@pytest.mark.parametrize("name,wrong", [("euler", 1.0), ("ito_milstein", 0.5)])
def test_strong_order_on_gbm(name, wrong):
    """E |X_h - X| against the exact solution on the same path (a = 1, b = 1, T = 1):
    Euler-Maruyama 1/2, Milstein 1 (commutative noise); and the same order from the
    differences of successive levels (what `sde-bias converge` fits, no exact solution)."""
    a, b = 1.0, 1.0
    h, X, _ = _gbm_levels(name, a, b)
    exact = np.exp((a - b * b / 2) + b * X[-1, :, 1])
    claimed = known_orders(name, "commutative")[1]
    s = cv.strong_study(h, X[..., :1], reference=exact[:, None])
    assert abs(s.fit.order - claimed) < 0.1 and s.fit.excludes(wrong), s.fit
    d = np.abs(X[:-1, :, 0] - X[1:, :, 0])
    m, c = cv.mean_cov(d)
    f = cv.fit_order(h[:-1], m, c)
    assert abs(f.order - claimed) < 0.1 and f.excludes(wrong), f


def _ou(k=1.0, s=1.0):
    return CustomSDE(lambda y, args: -k * y, lambda y, args, xi: s * xi, 1)


@functools.lru_cache(maxsize=None)
def _ou_levels(name, base, n=100_000):
    solver, _ = SOLVERS[name]
    st = SDEStepper(_ou(), solver, substeps=base)
    X = _levels(st, [1, 2, 4, 8], jnp.ones((n, 1)), jax.random.split(jax.random.PRNGKey(1), n))[..., 0]
    return 1.0 / base / np.array([1.0, 2.0, 4.0, 8.0]), X, st


@pytest.mark.parametrize(
    "name,base,moment,wrong",
    [("euler", 8, "mean", 2.0), ("euler", 8, "variance", 2.0), ("heun", 4, "mean", 1.0), ("heun", 4, "variance", 1.0)],
)
def test_weak_order_on_ou(name, base, moment, wrong):
    """Ornstein-Uhlenbeck (k = s = 1, X0 = 1, T = 1, dt = 1/base .. 1/(8 base), 100,000 paths): the order
    is fitted on the differences of successive levels (shared paths make them precise), and
    the Richardson extrapolation with the claimed order agrees with the closed form
    (mean e^{-kT}, variance s^2 (1 - e^{-2kT}) / 2k) within 3 standard errors."""
    h, X, st = _ou_levels(name, base)
    assert noise_class(st.sde, jnp.array([[0.5], [2.0]]), None) == "additive"
    claimed = known_orders(name, "additive")[0]
    w = cv.weak_study(h, cv.contributions(X, moment), order=claimed)
    assert abs(w.fit.order - claimed) < 0.15, w.fit
    assert w.fit.excludes(wrong), w.fit
    exact = np.exp(-1.0) if moment == "mean" else (1 - np.exp(-2.0)) / 2
    assert abs(w.extrapolated.value - exact) < 3 * w.extrapolated.se, (w.extrapolated, exact)


def test_richardson_recovers_the_ou_stationary_variance():
    """Euler-Maruyama's stationary variance is s^2 / (2k - k^2 dt) (0.667, 0.571, 0.533 at
    dt = 1/2, 1/4, 1/8 for k = s = 1): Richardson with weak order 1 and two terms from these
    three coarse steps recovers s^2 / 2k = 0.5 within its standard error (20,000 paths, T = 8),
    while the finest of them is many standard errors off."""
    st = SDEStepper(_ou(), diffrax.Euler(), substeps=2)
    n = 20_000
    X = _levels(st, [1, 2, 4], jnp.zeros((n, 1)), jax.random.split(jax.random.PRNGKey(2), n), units=8)[..., 0]
    y = cv.contributions(X, "variance")
    ext = cv.richardson(np.array([0.5, 0.25, 0.125]), y, order=1.0, terms=2)
    assert abs(ext.value - 0.5) < 2 * ext.se, ext
    m, c = cv.mean_cov(y)
    assert (m[-1] - 0.5) > 4 * np.sqrt(c[-1, -1])


def test_richardson_weights_and_order_fit_on_exact_expansions():
    """Richardson removes the terms it assumes exactly; the order fit recovers an exact power
    law with a tiny interval and widens it when the points do not lie on one."""
    h = np.array([0.4, 0.2, 0.1, 0.05])
    X = 0.3 + 1.7 * h**1.5 - 0.9 * h**2.5 + 0.4 * h**3.5
    w = cv.richardson_weights(h, order=1.5, terms=3)
    assert abs(w.sum() - 1) < 1e-12 and abs(w @ X - 0.3) < 1e-12
    err = 2.0 * h**1.5
    cov = np.diag((1e-6 * err) ** 2)
    f = cv.fit_order(h, err, cov)
    assert abs(f.order - 1.5) < 1e-9 and f.ci[1] - f.ci[0] < 1e-5
    bent = err * (1 + 5 * h)
    g = cv.fit_order(h, bent, cov)
    assert g.inflation > 10 and g.excludes(1.5)  # a curve, not a power law: the fit says so


def test_combined_levy_area_is_the_area_of_the_path():
    """For a piecewise-linear path (sub-interval areas 0) the combined space-time Lévy area is
    H = (1/T) int_0^T (W_u - (u/T) W_T) du, computed here by the trapezoid rule (exact for a
    piecewise-linear integrand); and it is linear in the sub-interval areas with weight 1/g."""
    rng = np.random.default_rng(0)
    g, m, h = 4, 3, 0.25
    w = rng.normal(size=(g, m)) * np.sqrt(h)
    W = np.concatenate([np.zeros((1, m)), np.cumsum(w, 0)])  # path at the knots
    T = g * h
    u = np.arange(g + 1) * h
    f = W - (u / T)[:, None] * W[-1]
    expected = np.sum(0.5 * (f[1:] + f[:-1]) * h, axis=0) / T
    got = np.asarray(combine_levy(jnp.asarray(w), jnp.zeros((g, m))))
    np.testing.assert_allclose(got, expected, atol=1e-14)
    hh = rng.normal(size=(g, m))
    np.testing.assert_allclose(np.asarray(combine_levy(jnp.zeros((g, m)), jnp.asarray(hh))), hh.mean(0), atol=1e-14)

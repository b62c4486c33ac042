"""The Itô projection onto the quotient (docs/theory.md section 3.2)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_regression, uv_problem

import sde_bias as sb
from sde_bias.data import Dataset
from sde_bias.losses import SquaredLoss
from sde_bias.noise import LabelNoise, WithReplacement
from sde_bias.problem import Problem
from sde_bias.quotient import empirical_average, ito_projection, section_average
from sde_bias.sde import SGDSDE


def test_uv_label_noise_closed_form_on_section():
    """u v with label noise delta, L = 1/2 (w - y)^2, on the balanced section u = v = sqrt w:
    gradient part -2 w (w - y), geometric part eta delta^2 w, D_q = 2 eta delta^2 w^2
    (derived by hand from Itô's formula with Hpi = [[0, 1], [1, 0]])."""
    eta, delta, y = 0.1, 0.5, 1.0
    problem = uv_problem(delta, y)
    model = problem.model
    ws = jnp.linspace(0.2, 2.0, 7)[:, None]
    c = section_average(SGDSDE(problem, eta), model.invariants, model.section, ws, problem.train)
    w = ws[:, 0]
    np.testing.assert_allclose(c.gradient_part[:, 0], -2 * w * (w - y), atol=1e-12)
    np.testing.assert_allclose(c.geometric_part[:, 0], eta * delta**2 * w, atol=1e-12)
    np.testing.assert_allclose(c.diffusion[:, 0, 0], 2 * eta * delta**2 * w**2, atol=1e-12)


def _dense_projection(sde, invariants, theta, data, eta):
    """Independent implementation: dense Jacobian, dense Hessian, dense covariance."""
    J = jax.jacfwd(invariants)(theta)
    H = jax.hessian(invariants)(theta)  # [d, p, p]
    scheme, problem = sde.problem.scheme, sde.problem
    cov = eta * scheme.covariance(problem, theta, data)
    mu = sde.drift(0.0, theta, data)
    geo = 0.5 * jnp.einsum("kij,ij->k", H, cov)
    return J @ mu, geo, 0.5 * J @ cov @ J.T


@pytest.mark.parametrize("which", ["hadamard", "factorization", "deep"])
def test_projection_matches_dense_hessian_formula(which):
    key = jax.random.PRNGKey(0)
    if which == "hadamard":
        problem = random_regression(sb.Hadamard(4), LabelNoise(WithReplacement(3), 0.3), 9, (4,))
    elif which == "deep":
        problem = random_regression(sb.DeepHadamard(3, 3), WithReplacement(2), 7, (3,))
    else:
        model = sb.MatrixFactorization(3, 2, 4)
        idx = jnp.array([(i, j) for i in range(3) for j in range(4) if (i + j) % 2 == 0], jnp.int32)
        data = Dataset(idx, jax.random.normal(key, (idx.shape[0],)))
        problem = Problem(model, LabelNoise(WithReplacement(2), 0.2), loss=SquaredLoss("mean"), train=data)
    model, data = problem.model, problem.train
    eta = 0.05
    sde = SGDSDE(problem, eta)
    theta = model.init(jax.random.PRNGKey(3))
    # each side as one compiled program (op by op, the dense Hessians compile hundreds)
    c = eqx.filter_jit(ito_projection)(sde, model.invariants, theta, data)
    g, geo, D = eqx.filter_jit(_dense_projection)(sde, model.invariants, theta, data, eta)
    np.testing.assert_allclose(c.gradient_part, g, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(c.geometric_part, geo, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(c.diffusion, D, rtol=1e-10, atol=1e-13)
    assert np.max(np.abs(geo)) > 1e-6  # the geometric part is not trivially zero here


def test_geometric_part_matches_short_time_simulation():
    """E[q(t+h) - q(t)] / h over many one-step SDE increments from one theta equals the
    projected drift (to O(h) and 5 SE). 100,000 antithetic pairs of Euler increments of
    size h = 1e-3 (the pair +xi, -xi cancels the zero-mean linear noise term exactly, which
    leaves the variance of the second-order term only)."""
    model = sb.Hadamard(2)
    data = Dataset(jnp.array([[1.0, 0.5], [0.2, -1.0], [-0.7, 0.3]]), jnp.array([0.5, -0.2, 0.1]))
    problem = Problem(model, LabelNoise(WithReplacement(1), 0.5), train=data)
    eta, h, K = 0.2, 1e-3, 100_000
    sde = SGDSDE(problem, eta)
    theta = jnp.array([0.9, -0.4, 0.6, 1.1])
    c = ito_projection(sde, model.invariants, theta, data)
    m = sde.noise_dim(data)
    xi = jax.random.normal(jax.random.PRNGKey(0), (K, m)) * jnp.sqrt(h)
    mu = sde.drift(0.0, theta, data)
    q = lambda x: model.invariants(theta + mu * h + sde.diffusion_mv(theta, data, x))  # noqa: E731
    dq = (0.5 * (jax.vmap(q)(xi) + jax.vmap(q)(-xi)) - model.invariants(theta)) / h
    mean, se = np.asarray(dq.mean(0)), np.asarray(dq.std(0) / np.sqrt(K))
    assert np.all(np.abs(mean - np.asarray(c.drift)) < 5 * se + 5 * h), (mean, c.drift, se)
    # without the geometric part it would be off by many SE
    assert np.max(np.abs(mean - np.asarray(c.gradient_part)) / se) > 10


def test_empirical_average_recovers_section_when_fibers_are_points():
    """If every sample lies on the section, binned averaging returns the section values."""
    eta, delta = 0.1, 0.5
    problem = uv_problem(delta)
    model = problem.model
    sde = SGDSDE(problem, eta)
    w = jnp.linspace(0.3, 1.9, 400)
    thetas = jax.vmap(model.section)(w[:, None])
    edges = np.linspace(0.3, 1.9, 9)
    b = empirical_average(sde, model.invariants, thetas, problem.train, edges)
    # closed form a(w) = -2 w (w - 1) + eta delta^2 w averaged over the samples of each bin
    a = np.asarray(-2 * w * (w - 1) + eta * delta**2 * w)
    q = np.asarray(jax.vmap(model.invariants)(thetas))[:, 0]  # w up to rounding, binned as the code bins
    which = np.digitize(q, edges) - 1
    expect = np.array([a[which == k].mean() for k in range(len(edges) - 1)])
    np.testing.assert_allclose(b.drift[:, 0], expect, rtol=1e-10)
    assert b.count.sum() >= 398

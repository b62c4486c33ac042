"""Sampling schemes: sampled gradients against the moment formulas of docs/theory.md
section 1.2, and the SDE diffusion columns against the same formulas exactly.

The formulas are implemented here independently, from per-sample gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_regression

import sde_bias as sb
from sde_bias.data import TeacherStream
from sde_bias.losses import SquaredLoss
from sde_bias.noise import Bernoulli, FullBatch, LabelNoise, Online, WithoutReplacement, WithReplacement
from sde_bias.problem import Problem

N, DIM, DELTA = 8, 3, 0.7


def _problem(scheme):
    problem = random_regression(sb.Hadamard(DIM), scheme, N, (DIM,))
    return problem, problem.model.init(jax.random.PRNGKey(2))


def _formula(problem, theta, kind):
    """Independent E[g_hat], Cov[g_hat] from the table of docs/theory.md section 1.2."""
    data, model = problem.train, problem.model
    g = jax.vmap(jax.grad(lambda th, x, y: 0.5 * (model.predict(th, x) - y) ** 2), (None, 0, 0))(theta, data.x, data.y)
    gf = jax.vmap(jax.grad(model.predict), (None, 0))(theta, data.x)  # grad f_i
    gbar = g.mean(0)
    sigma1 = (g - gbar).T @ (g - gbar) / N
    lab = gf.T @ gf / N  # mean_i grad f_i grad f_i^T
    name, arg = kind
    if name == "full":
        return gbar, 0 * sigma1
    if name == "with":
        return gbar, sigma1 / arg
    if name == "without":
        return gbar, sigma1 * (N - arg) / (arg * (N - 1))
    if name == "bernoulli":
        rho, nrm = arg
        return rho / nrm * g.sum(0), rho * (1 - rho) / nrm**2 * g.T @ g
    if name == "label_full":
        return gbar, DELTA**2 / N * lab
    if name == "label_with":
        return gbar, sigma1 / arg + DELTA**2 / arg * lab
    if name == "label_bernoulli":
        rho, nrm = arg
        return rho / nrm * g.sum(0), rho * (1 - rho) / nrm**2 * g.T @ g + DELTA**2 * rho / nrm**2 * gf.T @ gf
    raise AssertionError(name)


CASES = [
    (FullBatch(), ("full", None)),
    (WithReplacement(3), ("with", 3)),
    (WithoutReplacement(3), ("without", 3)),
    (Bernoulli(0.5, 10.0), ("bernoulli", (0.5, 10.0))),
    (LabelNoise(FullBatch(), DELTA), ("label_full", None)),
    (LabelNoise(WithReplacement(2), DELTA), ("label_with", 2)),
    (LabelNoise(Bernoulli(0.3, 5.0), DELTA), ("label_bernoulli", (0.3, 5.0))),
]
IDS = [c[1][0] for c in CASES]


@pytest.mark.parametrize("scheme,kind", CASES, ids=IDS)
def test_diffusion_columns_reproduce_covariance_exactly(scheme, kind):
    problem, theta = _problem(scheme)
    mean, cov = _formula(problem, theta, kind)
    np.testing.assert_allclose(scheme.mean_gradient(problem, theta, problem.train), mean, rtol=1e-12, atol=1e-14)
    sigma = scheme.diffusion_matrix(problem, theta, problem.train)
    assert sigma.shape[0] == theta.shape[0]
    np.testing.assert_allclose(sigma @ sigma.T, cov, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("scheme,kind", CASES, ids=IDS)
def test_sampled_gradients_match_moments(scheme, kind):
    """z-scores of the sample mean and of projected sample variances, K = 40,000 draws.

    For each of 6 random directions v: Var(v . g_hat) vs v^T Cov v with the standard
    error of a sample variance, sqrt((m4 - s^4) / K). Threshold 5 SE (false-alarm rate
    < 1e-5 per comparison)."""
    problem, theta = _problem(scheme)
    mean, cov = _formula(problem, theta, kind)
    K = 40_000
    draws = scheme.draw(jax.random.PRNGKey(3), K, problem, problem.train)
    g = jax.vmap(lambda d: scheme.stochastic_gradient(problem, theta, problem.train, d))(draws)
    g = np.asarray(g)
    if np.allclose(cov, 0):
        np.testing.assert_allclose(g, np.broadcast_to(mean, g.shape), rtol=1e-12, atol=1e-14)
        return
    sd = g.std(0)
    z_mean = np.abs(g.mean(0) - np.asarray(mean)) / (sd / np.sqrt(K))
    assert np.all(z_mean < 5), z_mean
    v = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (6, theta.shape[0])))
    proj = (g - g.mean(0)) @ v.T
    var_emp = proj.var(0)
    var_th = np.einsum("kp,pq,kq->k", v, np.asarray(cov), v)
    se = np.sqrt(((proj**4).mean(0) - var_emp**2) / K)
    z = np.abs(var_emp - var_th) / se
    assert np.all(z < 5), (var_emp, var_th, z)


def test_wrong_formula_is_detected():
    """The moment test has power: with-replacement samples do NOT match the
    without-replacement covariance (factor (n-B)/(n-1) = 5/7 here)."""
    scheme = WithReplacement(3)
    problem, theta = _problem(scheme)
    _, cov_wrong = _formula(problem, theta, ("without", 3))
    K = 40_000
    draws = scheme.draw(jax.random.PRNGKey(3), K, problem, problem.train)
    g = np.asarray(jax.vmap(lambda d: scheme.stochastic_gradient(problem, theta, problem.train, d))(draws))
    v = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (6, theta.shape[0])))
    proj = (g - g.mean(0)) @ v.T
    var_emp = proj.var(0)
    var_th = np.einsum("kp,pq,kq->k", v, np.asarray(cov_wrong), v)
    se = np.sqrt(((proj**4).mean(0) - var_emp**2) / K)
    assert np.max(np.abs(var_emp - var_th) / se) > 5


def test_online_scheme():
    """Online SGD: the SDE's reference-set covariance is Cov_x[g]/B on the reference set
    exactly (M = 1,500 reference samples); fresh-sample gradients have the population
    moments, estimated independently from 200,000 samples."""
    teacher = sb.Linear(DIM)
    stream = TeacherStream(teacher, jnp.array([1.0, -2.0, 0.5]), (DIM,), 0.3)
    B = 4
    model = sb.Hadamard(DIM)
    problem = Problem(model, Online(B), stream=stream, num_reference=1500)
    theta = model.init(jax.random.PRNGKey(2))
    ref = problem.seed_data(jax.random.PRNGKey(7))
    g_ref = problem.per_sample_gradients(theta, ref)
    sigma = problem.scheme.diffusion_matrix(problem, theta, ref)
    np.testing.assert_allclose(sigma @ sigma.T, jnp.cov(g_ref.T, bias=True) / B, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(problem.scheme.mean_gradient(problem, theta, ref), g_ref.mean(0), rtol=1e-10)
    big = stream.sample(jax.random.PRNGKey(9), 200_000)
    g_pop = problem.per_sample_gradients(theta, big)
    pop_mean, pop_var = np.asarray(g_pop.mean(0)), np.asarray(g_pop.var(0))
    K = 20_000
    draws = problem.scheme.draw(jax.random.PRNGKey(8), K, problem, ref)
    g = np.asarray(jax.vmap(lambda d: problem.scheme.stochastic_gradient(problem, theta, ref, d))(draws))
    se = np.sqrt(g.var(0) / K + pop_var / 200_000)
    assert np.all(np.abs(g.mean(0) - pop_mean) / se < 5)
    # variance along coordinates: SE of a sample variance is ~ var sqrt(2/K) ~ 1% here; 5%
    np.testing.assert_allclose(g.var(0), pop_var / B, rtol=0.05)


def test_paper_mse_label_noise_scaling():
    """With PyTorch's MSE convention (mean, no 1/2) the label-noise covariance is
    4 delta^2 / B mean grad f grad f^T: the factor comes from dl/dy = -2 (f - y)."""
    scheme = LabelNoise(FullBatch(), DELTA)
    problem = random_regression(sb.Hadamard(DIM), scheme, N, (DIM,), loss=SquaredLoss("mean"))
    model, data = problem.model, problem.train
    theta = model.init(jax.random.PRNGKey(2))
    gf = jax.vmap(jax.grad(model.predict), (None, 0))(theta, data.x)
    np.testing.assert_allclose(scheme.covariance(problem, theta, data), 4 * DELTA**2 / N * gf.T @ gf / N, rtol=1e-10)

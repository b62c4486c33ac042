"""Predicted-interpolator solvers (docs/theory.md sections 6.1, 6.2, 6.4): every solve reports KKT
residuals below 1e-6, and each is checked against an independent solve (scipy's LP, the JAX dual
Newton, the augmented Lagrangian in parameter space)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from design_models import GroupHadamard
from scipy.optimize import linprog

import sde_bias as sb
import sde_bias.design as D

N, DIM = 8, 12


@pytest.fixture(scope="module")
def data():
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    return jax.random.normal(k1, (N, DIM)), jax.random.normal(k2, (N,))


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_sign_constrained_weighted_l1_matches_scipy_lp(data):
    X, y = data
    pen = D.hadamard_fibre_penalty(X, signs=jnp.where(jnp.arange(DIM) % 2 == 0, 1.0, -1.0))
    y = X @ (pen.signs * jnp.abs(jnp.linalg.pinv(X) @ y))  # feasible in the signed orthant
    sol = D.solve_convex(pen, X, y)
    assert sol.residual < 1e-6
    # LP: z = s * t, t >= 0, min w . t
    s, w = np.asarray(pen.signs), np.asarray(pen.weights)
    lp = linprog(w, A_eq=np.asarray(X) * s, b_eq=np.asarray(y), bounds=[(0, None)] * DIM, method="highs")
    np.testing.assert_allclose(sol.beta, s * lp.x, atol=1e-7)
    assert np.all(np.asarray(sol.beta) * s >= -1e-9)
    # a wrong multiplier is detected
    assert float(pen.kkt_residual(sol.z, X.T @ (1.1 * sol.nu))) > 1e-3


@pytest.mark.parametrize("which", ["init_shape", "one_sided_depth", "power"])
def test_cvxpy_agrees_with_the_dual_newton_solve(data, which):
    X, y = data
    k = jax.random.split(jax.random.PRNGKey(2), 2)
    signs = jnp.where(jnp.arange(DIM) % 3 == 0, -1.0, 1.0)
    if which == "init_shape":
        pen = D.init_shape_potential(jax.random.normal(k[0], (DIM,)), jax.random.normal(k[1], (DIM,)))
    elif which == "one_sided_depth":
        pen = D.OneSidedDepthPotential(0.5, 3, signs)
    else:
        pen = D.depth_fibre_penalty(X, 3, signs=signs)
    yy = y if which == "init_shape" else X @ (signs * jnp.abs(jnp.linalg.pinv(X) @ y))
    raw = D.solve_convex(pen, X, yy, polish=False)
    dual = D.solve_dual(pen, X, yy)
    polished = D.solve_convex(pen, X, yy)
    assert dual.residual < 1e-6 and polished.residual < 1e-6
    assert _rel(raw.beta, dual.beta) < 1e-4
    np.testing.assert_allclose(polished.beta, dual.beta, atol=1e-8)


def test_theta_space_solve_matches_weighted_l1(data):
    X, y = data
    model = sb.Hadamard(DIM)
    theta_sol = D.label_noise_interpolator_theta(model, model.init(jax.random.PRNGKey(3)), X, y)
    cvx = D.solve_convex(D.hadamard_fibre_penalty(X), X, y)
    assert theta_sol.residual < 1e-6 and cvx.residual < 1e-6
    np.testing.assert_allclose(theta_sol.beta, cvx.beta, atol=1e-7)


def test_theta_space_solve_matches_group_penalty(data):
    X, y = data
    groups = [list(range(0, 3)), list(range(3, 7)), list(range(7, 12))]
    model = GroupHadamard(groups)
    theta_sol = D.label_noise_interpolator_theta(model, model.init(jax.random.PRNGKey(4)), X, y)
    cvx = D.solve_convex(D.group_fibre_penalty(X, groups), X, y)
    assert theta_sol.residual < 1e-6 and cvx.residual < 1e-6
    np.testing.assert_allclose(theta_sol.beta, cvx.beta, atol=1e-6)


def test_theta_space_solve_matches_weighted_nuclear_norm():
    m, n = 5, 4
    keep = np.array(jax.random.bernoulli(jax.random.PRNGKey(5), 0.6, (m, n)))
    keep[np.arange(m), np.arange(m) % n] = True
    keep[np.arange(n) % m, np.arange(n)] = True
    obs = jnp.asarray(np.argwhere(keep))
    target = jax.random.normal(jax.random.PRNGKey(6), (m, 1)) @ jax.random.normal(jax.random.PRNGKey(7), (1, n))
    yobs = target[obs[:, 0], obs[:, 1]]
    model = sb.MatrixFactorization(m, min(m, n), n)
    theta_sol = D.label_noise_interpolator_theta(model, 0.5 * model.init(jax.random.PRNGKey(8)), obs, yobs)
    cvx = D.solve_convex(D.factorization_fibre_penalty((m, n), obs), D.observation_matrix((m, n), obs), yobs)
    assert theta_sol.residual < 1e-6 and cvx.residual < 1e-6
    np.testing.assert_allclose(theta_sol.beta, cvx.beta, atol=1e-6)

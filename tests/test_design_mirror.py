"""Gradient-flow mirror potentials (docs/theory.md section 6.1) against closed forms and against
gradient descent itself.

GD runs: Woodworth's ``w_+^2 - w_-^2`` and the depth-D products run as plain jitted ``lax.scan``
loops on the parameterization (faster than the ensemble runner for one path); the unbalanced
``u * v`` cases run sde_bias's own ``DiscreteStepper(full batch)`` on ``sde_bias.Hadamard`` through
``run_ensemble``. Step sizes are stated in each test; GD's end point differs from gradient flow's by
O(lr) (measured: halving lr halves the distance).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

import sde_bias as sb
import sde_bias.design as D
from sde_bias.integrate import run_ensemble

N, DIM = 10, 40


@pytest.fixture(scope="module")
def sparse_regression():
    """``n = 10``, ``d = 40``, Gaussian ``X``, 3-sparse truth, ``y = X beta*``."""
    k1, _ = jax.random.split(jax.random.PRNGKey(0))
    X = jax.random.normal(k1, (N, DIM))
    truth = jnp.zeros(DIM).at[jnp.array([3, 17, 29])].set(jnp.array([1.5, -1.0, 2.0]))
    return X, X @ truth


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_woodworth_potential_is_q_alpha_and_its_gradient_is_arcsinh():
    beta = jnp.linspace(-3, 3, 13)
    for alpha in (0.05, 1.0, 7.0):
        P = D.woodworth_potential(alpha, beta.shape[0])
        assert np.isclose(P.value(beta), alpha**2 * jnp.sum(D.woodworth_q(beta / alpha**2)), rtol=1e-12)
        np.testing.assert_allclose(P.mirror_map(beta), jnp.arcsinh(beta / (2 * alpha**2)), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(jax.grad(P.value)(beta), P.mirror_map(beta), rtol=1e-10, atol=1e-12)


def test_hyperbolic_entropy_maps_are_inverse_and_fenchel_young_is_tight():
    k = jax.random.split(jax.random.PRNGKey(3), 3)
    u0, v0 = jax.random.normal(k[0], (8,)), jax.random.normal(k[1], (8,))
    P = D.init_shape_potential(u0, v0)
    z = 3 * jax.random.normal(k[2], (8,))
    h = P.mirror_map(z)
    np.testing.assert_allclose(P.dual_map(h), z, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.grad(P.conjugate)(h), z, rtol=1e-10, atol=1e-12)
    assert np.isclose(P.value(z) + P.conjugate(h), z @ h, rtol=1e-10)
    # the reference point u0 v0 is the minimum, with value 0
    assert np.isclose(P.value(u0 * v0), 0.0, atol=1e-12)
    np.testing.assert_allclose(P.mirror_map(u0 * v0), 0.0, atol=1e-10)
    # balanced start: relative entropy, sign kept
    B = D.init_shape_potential(jnp.ones(3), jnp.ones(3))
    zz = jnp.array([0.3, 1.0, 2.5])
    assert np.isclose(B.value(zz), jnp.sum(zz * jnp.log(zz) - zz + 1.0), rtol=1e-12)
    assert np.isinf(B.value(-zz))


def test_depth_potentials_maps_and_values():
    b = jnp.linspace(-4, 4, 9)
    W = D.WoodworthDepthPotential(0.7, 3, b.shape[0])
    g = W.mirror_map(b)
    np.testing.assert_allclose(W.dual_map(g), b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.grad(W.value)(b + 1e-3), W.mirror_map(b + 1e-3), rtol=1e-8)
    np.testing.assert_allclose(jax.grad(W.conjugate)(g), b, rtol=1e-10, atol=1e-12)
    t = jnp.linspace(0.1, 3, 7)
    O = D.OneSidedDepthPotential(0.5, 4, -jnp.ones(7))
    np.testing.assert_allclose(jax.grad(O.value)(-t), O.mirror_map(-t), rtol=1e-10)
    np.testing.assert_allclose(O.dual_map(O.mirror_map(-t)), -t, rtol=1e-10)
    assert np.isclose(O.value(O.reference), 0.0, atol=1e-12)


def _min_l1(X, y):
    Xn, d = np.asarray(X), X.shape[1]
    lp = linprog(np.ones(2 * d), A_eq=np.hstack([Xn, -Xn]), b_eq=np.asarray(y), bounds=[(0, None)] * (2 * d), method="highs")
    return jnp.asarray(lp.x[:d] - lp.x[d:])


def test_q_alpha_tends_to_min_l1_and_min_l2(sparse_regression):
    """Small alpha: distance to the LP's minimum-l1 point falls with alpha; large alpha: distance to
    the pseudo-inverse solution falls like alpha^-4 (``q(z) = z^2/4 - z^4/192 + ...``)."""
    X, y = sparse_regression
    l1, l2 = _min_l1(X, y), jnp.linalg.pinv(X) @ y
    to_l1 = [_rel(D.solve_dual(D.woodworth_potential(a, DIM), X, y).beta, l1) for a in (1e-1, 1e-2, 1e-3, 1e-4)]
    assert all(b < a for a, b in zip(to_l1, to_l1[1:])) and to_l1[-1] < 0.05
    to_l2 = [_rel(D.solve_dual(D.woodworth_potential(a, DIM), X, y).beta, l2) for a in (10.0, 100.0)]
    assert to_l2[0] < 1e-5 and 10**3.5 < to_l2[0] / to_l2[1] < 10**4.5


@partial(jax.jit, static_argnums=(3, 4))
def _gd_two_sided(X, y, alpha, depth, steps, lr):
    """GD on ``beta = w_+^D - w_-^D`` from ``w_+ = w_- = alpha``, loss ``mean 1/2 (X beta - y)^2``."""
    n, d = X.shape

    def body(c, _):
        wp, wm = c
        g = X.T @ (X @ (wp**depth - wm**depth) - y) / n
        return (wp - lr * depth * wp ** (depth - 1) * g, wm + lr * depth * wm ** (depth - 1) * g), None

    (wp, wm), _ = jax.lax.scan(body, (jnp.full(d, alpha), jnp.full(d, alpha)), None, length=steps)
    return wp**depth - wm**depth


@pytest.mark.parametrize("alpha", [0.01, 0.1, 1.0, 10.0])
def test_woodworth_gd_ends_at_argmin_q_alpha(sparse_regression, alpha):
    """lr = 1e-3 / max(1, alpha^2), 2 * 10^5 steps: within 1e-3 relative of argmin Q_alpha."""
    X, y = sparse_regression
    pred = D.solve_convex(D.woodworth_potential(alpha, DIM), X, y)
    assert pred.residual < 1e-6
    beta = _gd_two_sided(X, y, alpha, 2, 200_000, 1e-3 / max(1.0, alpha**2))
    assert float(jnp.max(jnp.abs(X @ beta - y))) < 1e-6
    assert _rel(beta, pred.beta) < 1e-3


def test_depth3_gd_ends_at_argmin_of_both_depth_potentials(sparse_regression):
    """Depth 3, lr = 5e-4, 4 * 10^5 steps: two-sided (Woodworth's Q^3, implicit, dual solve) from
    alpha = 0.3, and one-sided ``u1 u2 u3`` from alpha = 1 (closed form, cvxpy)."""
    X, y = sparse_regression
    pred = D.solve_dual(D.WoodworthDepthPotential(0.3, 3, DIM), X, y)
    assert pred.residual < 1e-6
    assert _rel(_gd_two_sided(X, y, 0.3, 3, 400_000, 5e-4), pred.beta) < 1e-3

    signs = jnp.where(jnp.arange(DIM) % 3 == 0, -1.0, 1.0)
    truth = signs * jnp.abs(jnp.linalg.pinv(X) @ y)  # a target reachable in the signed orthant
    y1 = X @ truth
    model = sb.DeepHadamard(DIM, 3)
    layers = jnp.ones((3, DIM)).at[-1].set(signs)
    prob = sb.Problem(model, sb.FullBatch(), train=sb.Dataset(X, y1))
    out = run_ensemble(sb.DiscreteStepper(prob, 5e-4), layers.reshape(1, -1), jax.random.split(jax.random.PRNGKey(0), 1),
                       prob.train, lambda th, _: {"w": model.invariants(th)}, num_steps=400_000, record_every=400_000)
    pred1 = D.solve_convex(D.OneSidedDepthPotential(1.0, 3, signs), X, y1)
    assert pred1.residual < 1e-6
    assert _rel(out["records"]["w"][0, -1], pred1.beta) < 1e-3


def _gd_hadamard(X, y, u0, v0, lr, steps):
    """sde_bias's full-batch DiscreteStepper on ``sde_bias.Hadamard`` (``f = x . (p * q)``)."""
    model = sb.Hadamard(X.shape[1])
    prob = sb.Problem(model, sb.FullBatch(), train=sb.Dataset(X, y))
    out = run_ensemble(sb.DiscreteStepper(prob, lr), model.flatten({"p": u0, "q": v0})[None],
                       jax.random.split(jax.random.PRNGKey(0), 1), prob.train,
                       lambda th, _: {"w": model.invariants(th)}, num_steps=steps, record_every=steps)
    return out["records"]["w"][0, -1]


@pytest.mark.parametrize("synthesis", ["none", "scaled", "cumsum"])
def test_unbalanced_uv_gd_ends_at_init_shape_potential(sparse_regression, synthesis):
    """``beta = S (u * v)`` from random unbalanced ``(u0, v0)``; GD with lr = 1e-3, 3 * 10^5 steps on
    the data ``X S`` ends within 1e-3 (relative) of ``argmin Phi_{u0, v0}(z)`` s.t. ``X S z = y``."""
    X, y = sparse_regression
    S = {"none": None, "scaled": jnp.diag(jnp.linspace(0.5, 2.0, DIM)),
         "cumsum": jnp.tril(jnp.ones((DIM, DIM))) / DIM**0.5}[synthesis]
    k3, k4 = jax.random.split(jax.random.PRNGKey(5))
    u0, v0 = 0.5 * jax.random.normal(k3, (DIM,)), 0.5 * jax.random.normal(k4, (DIM,))
    pred = D.solve_convex(D.init_shape_potential(u0, v0), X, y, synthesis=S)
    assert pred.residual < 1e-6
    z = _gd_hadamard(X if S is None else X @ S, y, u0, v0, 1e-3, 300_000)
    assert _rel(z, pred.z) < 1e-3
    # and it is not the balanced-init (Woodworth) prediction at the same scale
    other = D.solve_dual(D.woodworth_potential(0.5, DIM), X, y, synthesis=S)
    assert _rel(z, other.z) > 10 * _rel(z, pred.z)

"""Tests for sde_bias.discovery: the discovered Lie algebra equals each model's declared one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_bias.models as models
from sde_bias.discovery import (
    discover_for_model,
    discover_symmetries,
    span_residual,
)
from sde_bias.symmetry import generator_matrices

N = np.asarray


def gaussian_inputs(*shape):
    def sample(key, n):
        return jax.random.normal(key, (n, *shape))

    return sample


def index_pairs(rows, cols):
    def sample(key, n):
        ki, kj = jax.random.split(key)
        return jnp.stack(
            [jax.random.randint(ki, (n,), 0, rows), jax.random.randint(kj, (n,), 0, cols)], axis=1
        )

    return sample


# (model name, constructor args, sampler, expected dimension, what the algebra is)
CASES = [
    ("ScalarProduct", (), gaussian_inputs(), 1, "R: (a u, v / a)"),
    ("Hadamard", (3,), gaussian_inputs(3), 3, "R^d: one rescaling per coordinate"),
    ("Linear", (3,), gaussian_inputs(3), 0, "none"),
    ("MatrixFactorization", (3, 2, 3), index_pairs(3, 3), 4, "gl(r), r^2 = 4"),
    ("Attention", (3, 3, 2), gaussian_inputs(3, 3), 4, "gl(h) on W_Q W_K^T, h^2 = 4"),
    ("TwoLayerReLU", (3, 2, 1), gaussian_inputs(3), 2, "R^h: positive rescaling per unit"),
    ("CumsumHadamard", (3,), gaussian_inputs(3), 3, "R^L: rescaling per increment"),
]


@pytest.mark.parametrize(
    "name,args,sampler,expected,algebra", CASES, ids=[c[0] for c in CASES]
)
def test_discovered_dimension_and_span(name, args, sampler, expected, algebra):
    if not hasattr(models, name):
        pytest.skip(f"sde_bias.models.{name} not available yet")
    model = getattr(models, name)(*args)
    p = model.num_params
    res = discover_for_model(model, sampler, jax.random.PRNGKey(0))
    assert res.dimension == expected, (algebra, res.dimension, res.singular_values[-expected - 2 :])
    assert res.dimension == model.lie_algebra_dim
    assert res.num_rows >= 2 * p * p
    # a clean split: round-off null space, constraints well above it
    assert res.smallest_retained > 1e-4
    assert res.gap > 1e8
    basis = N(res.basis)
    assert basis.shape == (expected, p, p)
    flat = basis.reshape(expected, p * p)
    np.testing.assert_allclose(flat @ flat.T, np.eye(expected), atol=1e-10)
    if expected == 0:
        assert res.gap == float("inf")
        return
    assert res.largest_null <= res.tol
    # the declared algebra (generator matrices at a random theta) lies in the discovered span;
    # equal dimensions make the two equal
    theta = np.random.default_rng(1).standard_normal(p)
    declared = generator_matrices(model, theta)
    assert float(jnp.max(span_residual(res.basis, declared))) < 1e-8
    # and every discovered X is a symmetry at fresh parameters and inputs: grad f . X theta = 0
    xs = sampler(jax.random.PRNGKey(7), 5)
    jac = N(jax.jit(jax.vmap(jax.jacrev(model.predict), (None, 0)))(theta, xs)).reshape(-1, p)
    np.testing.assert_allclose(jac @ (basis @ theta).T, 0.0, atol=1e-9 * np.abs(jac).max())


def test_discovers_undeclared_orthogonal_algebra():
    """f = x * (t0 t1 + t2 t3): X preserves the form iff B X is antisymmetric (B the form's
    matrix), the Lie algebra o(2, 2) of dimension p (p - 1) / 2 = 6 -- found from the
    predictor alone, no model class involved."""

    def predict(theta, x):
        return x * (theta[0] * theta[1] + theta[2] * theta[3])

    res = discover_symmetries(predict, 4, gaussian_inputs(), jax.random.PRNGKey(3))
    assert res.dimension == 6
    assert res.gap > 1e8
    B = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]) / 2.0
    for X in N(res.basis):
        np.testing.assert_allclose(B @ X + (B @ X).T, 0.0, atol=1e-10)


def test_threshold_and_row_count_checks():
    res = discover_symmetries(
        lambda t, x: t[0] * t[1] * x, 2, gaussian_inputs(), jax.random.PRNGKey(4), tol=1e-30
    )
    # with an absurdly small tolerance the round-off null direction is reported as a constraint
    assert res.dimension == 0 and res.smallest_retained < 1e-12
    with pytest.raises(ValueError, match="constraint rows"):
        discover_symmetries(
            lambda t, x: t @ x, 6, gaussian_inputs(6), jax.random.PRNGKey(5),
            num_thetas=2, inputs_per_theta=2,
        )


def test_span_residual():
    basis = np.zeros((1, 2, 2))
    basis[0, 0, 0] = 1.0
    mats = np.array([[[2.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]], np.zeros((2, 2))])
    np.testing.assert_allclose(span_residual(basis, mats), [0.0, 1.0, 0.0], atol=1e-15)

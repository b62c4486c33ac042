"""Tests for sde_bias.discovery: the discovered Lie algebra equals each model's declared one,
the dimension is right with default arguments on deep models whose points each give few
constraints, and generators that are not symmetries are rejected at held-out points."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import gaussian_inputs, index_pairs

import sde_bias.models as models
from sde_bias.discovery import (
    DiscoveryError,
    discover_for_model,
    discover_symmetries,
    generator_residuals,
    span_residual,
)
from sde_bias.symmetry import generator_matrices

N = np.asarray

# (model, sampler, expected dimension, what the algebra is)
CASES = [
    (models.ScalarProduct(), gaussian_inputs(), 1, "R: (a u, v / a)"),
    (models.Hadamard(3), gaussian_inputs(3), 3, "R^d: one rescaling per coordinate"),
    (models.Linear(3), gaussian_inputs(3), 0, "none"),
    (models.MatrixFactorization(3, 2, 3), index_pairs(3, 3), 4, "gl(r), r^2 = 4"),
    (models.Attention(3, 3, 2), gaussian_inputs(3, 3), 4, "gl(h) on W_Q W_K^T, h^2 = 4"),
    (models.TwoLayerReLU(3, 2, 1), gaussian_inputs(3), 2, "R^h: positive rescaling per unit"),
    (models.CumsumHadamard(3), gaussian_inputs(3), 3, "R^L: rescaling per increment"),
]


@pytest.mark.parametrize("model,sampler,expected,algebra", CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_discovered_dimension_and_span(model, sampler, expected, algebra):
    p = model.num_params
    res = discover_for_model(model, sampler, jax.random.PRNGKey(0))
    assert res.dimension == expected, (algebra, res.dimension, res.singular_values[-expected - 2 :])
    assert res.dimension == model.lie_algebra_dim
    assert res.num_rows >= 2 * p * p
    # a clean split: round-off null space, constraints well above it
    assert res.smallest_retained > 1e-4
    assert res.gap > 1e8
    assert res.heldout_residual <= res.tol
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


@pytest.mark.parametrize("dim,depth", list(itertools.product([1, 2, 3], [2, 3, 4, 5])))
def test_deep_hadamard_dimension_with_default_arguments(dim, depth):
    """u_1 * ... * u_D (each in R^dim): one rescaling pair per coordinate and adjacent layer
    pair, dimension dim (D - 1). A point gives only dim independent constraints (the
    gradients over all inputs span dim directions), far fewer than p = dim D; with a fixed
    3 p points the constraint matrix was exactly rank deficient and extra 'symmetries' came
    with a perfect gap ((1, 4) gave 4, (3, 4) gave 36)."""
    model = models.DeepHadamard(dim, depth)
    res = discover_for_model(model, gaussian_inputs(dim), jax.random.PRNGKey(0))
    assert res.dimension == dim * (depth - 1) == model.lie_algebra_dim
    assert res.gap > 1e8 and res.heldout_residual <= res.tol
    # at least enough points to reach the constraint rank p^2 - k at dim rows per point
    p = model.num_params
    assert res.num_thetas * dim >= p * p - res.dimension
    theta = np.random.default_rng(2).standard_normal(p)
    assert float(jnp.max(span_residual(res.basis, generator_matrices(model, theta)))) < 1e-8


def _deep_linear(widths):
    """f(x) = W_L ... W_1 x with W_k of shape [widths[k], widths[k - 1]], theta the
    concatenated row-major W_k."""
    shapes = [(widths[k + 1], widths[k]) for k in range(len(widths) - 1)]
    sizes = [a * b for a, b in shapes]

    def predict(theta, x):
        h, off = x, 0
        for (a, b), n in zip(shapes, sizes):
            h = theta[off : off + n].reshape(a, b) @ h
            off += n
        return h

    return predict, sum(sizes)


@pytest.mark.parametrize("widths", [(2, 2, 2, 2), (3, 2, 2, 3)], ids=str)
def test_deep_linear_dimension_is_sum_of_squared_inner_widths(widths):
    """W_3 W_2 W_1 x: W_{k+1} -> W_{k+1} A^{-1}, W_k -> A W_k at each inner layer, the Lie
    algebra gl(h_1) + gl(h_2) of dimension h_1^2 + h_2^2 (inner widths no larger than the
    input and output widths; a scalar input or output adds more linear symmetries)."""
    predict, p = _deep_linear(widths)
    res = discover_symmetries(predict, p, gaussian_inputs(widths[0]), jax.random.PRNGKey(1))
    expected = sum(h * h for h in widths[1:-1])
    assert res.dimension == expected
    assert res.gap > 1e8 and res.heldout_residual <= res.tol
    # the gl(h_1) generator E_ab: W_2 -> W_2 - W_2 E_ab, W_1 -> W_1 + E_ab W_1 lies in the span
    h0, h1, h2 = widths[:3]
    n1 = h1 * h0
    mats = []
    for a, b in itertools.product(range(h1), range(h1)):
        E = np.zeros((h1, h1))
        E[a, b] = 1.0
        X = np.zeros((p, p))
        # d vec(W_1) = vec(E W_1): row (a, j) of W_1 gets row (b, j)
        for j in range(h0):
            X[a * h0 + j, b * h0 + j] += 1.0
        # d vec(W_2) = -vec(W_2 E): column b of W_2 gets minus column a
        for i in range(h2):
            X[n1 + i * h1 + b, n1 + i * h1 + a] -= 1.0
        mats.append(X)
    assert float(jnp.max(span_residual(res.basis, np.stack(mats)))) < 1e-8


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


def test_too_few_points_per_round_are_topped_up():
    """Two points of two inputs per round give 4 constraint rows for 36 unknowns; discovery
    adds rounds until the rank stops growing and finds no symmetry of the linear model."""
    res = discover_symmetries(
        lambda t, x: t @ x, 6, gaussian_inputs(6), jax.random.PRNGKey(5), num_thetas=2, inputs_per_theta=2
    )
    assert res.dimension == 0 and res.num_thetas >= 18  # two new rows per point, 36 in all
    with pytest.raises(ValueError, match="at least 2"):
        discover_symmetries(lambda t, x: t @ x, 6, gaussian_inputs(6), jax.random.PRNGKey(5), num_thetas=1)


def test_threshold():
    res = discover_symmetries(
        lambda t, x: t[0] * t[1] * x, 2, gaussian_inputs(), jax.random.PRNGKey(4), tol=1e-30
    )
    # with an absurdly small tolerance the round-off null direction is reported as a constraint
    assert res.dimension == 0 and res.smallest_retained < 1e-12


def test_held_out_check_rejects_an_undersampled_basis():
    """Negative control: stop DeepHadamard(1, 4) at one round of 12 points (the old fixed
    sample). The 12 x 16 constraint matrix then has an exactly 4-dimensional null space, one
    direction more than the algebra, with a perfect gap; the held-out points reject it."""
    model = models.DeepHadamard(1, 4)
    with pytest.raises(DiscoveryError, match=r"4-dimensional algebra .* violated at 12 fresh held-out points"):
        discover_for_model(model, gaussian_inputs(1), jax.random.PRNGKey(0), max_thetas=12)


def test_generator_residuals_reject_a_fake_generator():
    """The declared DeepHadamard generators pass the held-out check; a fake one (the
    rescaling of u_1[0] against u_2[1], a different coordinate; a global rescaling; a true
    generator plus a little of the global rescaling) fails."""
    model = models.DeepHadamard(2, 3)
    p = model.num_params
    theta = np.random.default_rng(3).standard_normal(p)
    declared = N(generator_matrices(model, theta))
    fake_skip = np.diag([1.0, 0.0, 0.0, -1.0, 0.0, 0.0])  # u1[0] up, u2[1] down: f changes
    fake = np.stack([fake_skip, np.eye(p), declared[0] + 0.1 * np.eye(p)])
    key = jax.random.PRNGKey(11)
    ok = N(generator_residuals(model.predict, declared, gaussian_inputs(2), key))
    bad = N(generator_residuals(model.predict, fake, gaussian_inputs(2), key))
    assert np.all(ok < 1e-13), ok
    assert np.all(bad > 1e-2), bad


def test_span_residual():
    basis = np.zeros((1, 2, 2))
    basis[0, 0, 0] = 1.0
    mats = np.array([[[2.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]], np.zeros((2, 2))])
    np.testing.assert_allclose(span_residual(basis, mats), [0.0, 1.0, 0.0], atol=1e-15)

"""Designs from targets (docs/theory.md section 6.4): each design's relied-on mechanism predicts the
target's interpolator, and the disagreements the theory names are warned."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_bias.design as D

N, DIM = 10, 16


@pytest.fixture(scope="module")
def data():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(21), 3)
    X = jax.random.normal(k1, (N, DIM)) * jnp.linspace(0.5, 2.0, DIM)  # unequal column scales a_j
    return X, jax.random.normal(k3, (N,))  # labels no sparse vector explains: the l1 variants differ


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_label_noise_design_hits_the_weighted_l1_target_and_warns_about_gd(data):
    X, y = data
    w = jnp.linspace(1.0, 3.0, DIM)
    with pytest.warns(D.DesignWarning, match="opposite"):
        des = D.design_weighted_l1(w, X, y, mechanism="label_noise")
    a = jnp.mean((X * des.scales) ** 2, axis=0)
    np.testing.assert_allclose(2 * a / des.scales, 2 * a[0] / des.scales[0] * w / w[0], rtol=1e-10)  # weights ~ w
    assert des.predicted["label_noise"].residual < 1e-6 and des.predicted["target"].residual < 1e-6
    assert des.distance("label_noise", "target") < 1e-6
    assert des.distance("gd", "target") > 1e-2  # what the warning says


def test_gd_design_approaches_the_target_as_the_initial_scale_shrinks(data):
    X, y = data
    w = jnp.linspace(1.0, 3.0, DIM)
    plain = D.solve_convex(D.WeightedL1(jnp.ones(DIM)), X, y).beta
    dist = []
    for alpha in (1e-2, 1e-4, 1e-8):
        with pytest.warns(D.DesignWarning):
            des = D.design_weighted_l1(w, X, y, mechanism="gd", init_scale=alpha)
        dist.append(des.distance("gd", "target"))
        assert des.predicted["gd"].residual < 1e-6
    assert dist[0] > dist[1] > dist[2]
    assert dist[2] < 0.1 * _rel(plain, des.predicted["target"].beta)


def test_both_mechanisms_design_and_depth_warning(data):
    X, y = data
    a = jnp.mean(X * X, axis=0)
    # w ~ sqrt(a): one scaling serves both mechanisms (gradient flow to leading order in log(1/alpha))
    dist = []
    for alpha in (1e-2, 1e-4, 1e-8):
        agree = D.design_weighted_l1(jnp.sqrt(a), X, y, mechanism="both", init_scale=alpha, tol=10.0)
        assert not agree.warnings and agree.relies_on == ("gd", "label_noise")
        assert agree.distance("label_noise", "target") < 1e-6
        dist.append(agree.distance("gd", "target"))
    assert dist[0] > dist[1] > dist[2]
    with pytest.warns(D.DesignWarning, match="no scaling makes both"):
        split = D.design_weighted_l1(jnp.linspace(1.0, 3.0, DIM), X, y, mechanism="both")
    assert split.relies_on == ("label_noise",) and split.distance("label_noise", "target") < 1e-6
    with pytest.warns(D.DesignWarning, match="depth 3"):
        deep = D.design_weighted_l1(jnp.linspace(1.0, 3.0, DIM), X, y, mechanism="label_noise", depth=3)
    assert deep.relies_on == ("gd",)
    # label noise at depth 3 is not sparse: more nonzero coefficients than the l1 target has
    nnz = lambda b: int(jnp.sum(jnp.abs(b) > 1e-6 * jnp.max(jnp.abs(b))))
    assert nnz(deep.predicted["label_noise"].beta) > nnz(deep.predicted["target"].beta)


def test_transform_design_total_variation(data):
    X, y = data
    A = jnp.tril(jnp.ones((DIM, DIM)))  # beta = cumsum(c): TV(beta) = |c|_1
    des = D.design_transform_l1(A, X, y, mechanism="label_noise")
    assert des.distance("label_noise", "target") < 1e-6
    beta = des.predicted["label_noise"].beta
    np.testing.assert_allclose(jnp.diff(beta, prepend=0.0), des.predicted["label_noise"].z * des.scales, atol=1e-9)


def test_group_design_whitened_groups_hit_the_group_lasso():
    groups = [list(range(4 * g, 4 * g + 4)) for g in range(4)]
    key = jax.random.PRNGKey(3)
    blocks = []
    for g in groups:
        key, k = jax.random.split(key)
        q, _ = jnp.linalg.qr(jax.random.normal(k, (N, 4)))
        blocks.append(jnp.sqrt(N) * q)  # C_g = I
    X = jnp.concatenate(blocks, axis=1)
    y = X[:, 4:8] @ jnp.array([1.0, -1.0, 0.5, 2.0])
    des = D.design_group_sparsity(groups, X, y, weights=jnp.array([1.0, 2.0, 1.0, 3.0]))
    assert not des.warnings
    assert des.predicted["label_noise"].residual < 1e-6 and des.predicted["target"].residual < 1e-6
    assert des.distance("label_noise", "target") < 1e-6
    beta = des.predicted["label_noise"].beta
    norms = [float(jnp.linalg.norm(beta[jnp.asarray(g)])) for g in groups]
    assert sum(n > 1e-6 for n in norms) < len(groups)  # whole groups vanish
    with pytest.warns(D.DesignWarning, match="not whitened"):
        D.design_group_sparsity(groups, X * jnp.linspace(0.5, 2, 16), y)


def test_low_rank_design_uniform_and_masked():
    m, n = 4, 5
    M = jax.random.normal(jax.random.PRNGKey(1), (m, 1)) @ jax.random.normal(jax.random.PRNGKey(2), (1, n))
    keep = np.zeros((m, n), bool)
    for a in range(m):  # a cyclic mask: every row 3 of 5, every column 2 or 3 of 4
        keep[a, [(a + k) % n for k in range(3)]] = True
    obs = np.argwhere(keep)
    with pytest.warns(D.DesignWarning, match="unequally"):
        des = D.design_low_rank((m, n), obs, M[obs[:, 0], obs[:, 1]])
    assert des.predicted["label_noise"].residual < 1e-6
    assert des.predicted["target"].residual < 1e-6
    full = D.design_low_rank((m, n), None, M.ravel())
    assert not full.warnings and full.distance("label_noise", "target") < 1e-6

"""The paper's quotient potential as a bias prediction (docs/theory.md sections 3.4, 6.3)."""

import jax
import numpy as np
import pytest

import sde_bias as sb
import sde_bias.design as D
from sde_bias.models import GroupHadamard

jax.config.update("jax_enable_x64", True)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_closed_form_equals_the_models_gram_on_the_section(depth):
    """V = 1/2 log det G from the model's generators on its balanced section (numerical Gram)
    equals the closed form (D-1)/D sum log|beta_j| + 1/2 log D per coordinate; each zero coordinate
    loses D - 1 generator directions."""
    rng = np.random.default_rng(depth)
    beta = rng.normal(size=7)
    beta[[1, 4]] = 0.0
    model = sb.Hadamard(7) if depth == 2 else sb.DeepHadamard(7, depth)
    num = D.model_quotient_potential(model, beta)
    closed = D.quotient_potential_value(beta, depth=depth)
    live = np.abs(beta[beta != 0])
    by_hand = (depth - 1) / depth * np.log(live).sum() + 0.5 * np.log(depth) * live.size
    assert closed.value == pytest.approx(by_hand, rel=1e-12)
    assert num.value == pytest.approx(by_hand, rel=1e-9)
    assert closed.degenerate == 2 and num.degenerate == 2 * (depth - 1)


def test_group_closed_form_equals_the_models_gram():
    """Group product beta_g = s_g v_g: one generator per group, |xi_g|^2 = 2 |beta_g| on the section."""
    rng = np.random.default_rng(1)
    beta = rng.normal(size=9)
    beta[3:6] = 0.0
    groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    num = D.model_quotient_potential(GroupHadamard(dim=9, group_size=3), beta)
    by_hand = 0.5 * sum(np.log(2 * np.linalg.norm(beta[g])) for g in (groups[0], groups[2]))
    assert D.quotient_potential_value(beta, groups=groups).value == pytest.approx(by_hand, rel=1e-12)
    assert num.value == pytest.approx(by_hand, rel=1e-9) and num.degenerate == 1


def test_one_point_quotient_prefers_the_other_vertex_than_label_noise():
    """x = (1, 2), y = 2: the interpolators w_1 + 2 w_2 = 2 have two sparse points. Label noise selects
    (2, 0) (R* = 2|w_1| + 8|w_2|: 4 < 8); the quotient potential 1/2 log|2 w_1| + 1/2 log|2 w_2| is -inf
    at both, with finite parts log 2 at (2, 0) and 1/2 log 2 at (0, 1); reweighted l1 from
    min l2 = (0.4, 0.8) (first weights 1/0.4, 1/0.8: costs 5 vs 1.25) reaches (0, 1), not (2, 0)."""
    X, y = np.array([[1.0, 2.0]]), np.array([2.0])
    q, iters = D.quotient_interpolator(X, y)
    np.testing.assert_allclose(np.asarray(q.beta), [0.0, 1.0], atol=1e-7)
    assert q.residual < 1e-6 and iters <= 5
    ln = D.predicted_interpolator(D.hadamard_fibre_penalty(X), X, y)
    np.testing.assert_allclose(np.asarray(ln.beta), [2.0, 0.0], atol=1e-7)
    v_ln, v_q = D.quotient_potential_value(ln.beta), D.quotient_potential_value(q.beta)
    assert v_ln.degenerate == v_q.degenerate == 1
    assert v_ln.value == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(2), rel=1e-6)
    assert v_q.value == pytest.approx(0.5 * np.log(2), abs=1e-6)


def test_reweighted_l1_reaches_a_sparse_interpolator():
    """On n = 6, d = 20 the local minimiser of the concave potential is a vertex: it interpolates
    (residual < 1e-6), has at most n nonzeros and keeps the signs it is asked to keep."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 20))
    signs = np.where(rng.random(20) < 0.5, -1.0, 1.0)
    y = X @ (signs * np.abs(rng.normal(size=20)))
    q, _ = D.quotient_interpolator(X, y, signs=signs)
    b = np.asarray(q.beta)
    assert q.residual < 1e-6 and np.max(np.abs(X @ b - y)) < 1e-6
    assert np.sum(np.abs(b) > 1e-8 * np.abs(b).max()) <= 6
    assert np.all(b * signs >= -1e-9)

"""The label-noise regulariser, its fibre minimum and its slow flow (docs/theory.md section 6.2):
closed forms against numerical orbit minimisation, the Hessian trace by autodiff, the package's
noise-equilibrium solver, and the worked one-point case integrated as an ODE."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from design_models import ChartFactorization, GroupHadamard

import sde_bias as sb
import sde_bias.design as D
from sde_bias.symmetry import noise_equilibrium, symmetric_generators

N, DIM = 8, 12


@pytest.fixture(scope="module")
def data():
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    return jax.random.normal(k1, (N, DIM)), jax.random.normal(k2, (N,))


def _random_orbit_point(model, beta, key, spread=0.7):
    """A point of the fibre over ``beta`` away from the balanced section."""
    return model.action(model.section(beta), spread * jax.random.normal(key, (model.lie_algebra_dim,)))


@pytest.mark.parametrize(
    "loss, c", [(sb.SquaredLoss(), 1.0), (sb.SquaredLoss(scale=3.0), 3.0), (sb.SquaredLoss(reduction="mean"), 2.0)]
)
def test_regulariser_is_hessian_trace_at_interpolation(data, loss, c):
    X, y = data
    model = sb.Hadamard(DIM)
    theta = _random_orbit_point(model, jnp.linalg.pinv(X) @ y, jax.random.PRNGKey(2))
    prob = sb.Problem(model, sb.FullBatch(), loss=loss, train=sb.Dataset(X, y))
    assert float(jnp.max(jnp.abs(model.predict_batch(theta, X) - y))) < 1e-10
    trace = jnp.trace(jax.hessian(prob.empirical_loss)(theta, prob.train))
    assert np.isclose(D.label_noise_regulariser(model, theta, X, loss), trace, rtol=1e-10)
    assert D.hessian_trace_constant(loss) == c


def test_hadamard_and_scaled_fibre_minimum_equal_weighted_l1(data):
    X, _ = data
    model = sb.Hadamard(DIM)
    a = jnp.mean(X * X, axis=0)
    lam = jnp.linspace(0.5, 2.0, DIM)
    for seed in range(3):
        kb, ko = jax.random.split(jax.random.PRNGKey(10 + seed))
        beta = jax.random.normal(kb, (DIM,))
        fm = D.fibre_minimum(model, _random_orbit_point(model, beta, ko), X)
        assert bool(fm.converged)
        assert np.isclose(fm.value, 2 * jnp.sum(a * jnp.abs(beta)), rtol=1e-10)
        assert np.isclose(fm.value, D.hadamard_fibre_penalty(X).value(beta), rtol=1e-10)
        b = sb.Hadamard(DIM).unflatten(fm.theta)
        np.testing.assert_allclose(jnp.abs(b["p"]), jnp.abs(b["q"]), rtol=1e-6)  # equality case of AM-GM
        # scaled Hadamard: beta = lam * z, the model sees features X diag(lam)
        fm_s = D.fibre_minimum(model, _random_orbit_point(model, beta / lam, ko), X * lam)
        assert np.isclose(fm_s.value, 2 * jnp.sum(a * lam * jnp.abs(beta)), rtol=1e-10)
        assert np.isclose(fm_s.value, D.hadamard_fibre_penalty(X, scales=lam).value(beta), rtol=1e-10)


def test_fibre_minimum_is_the_label_noise_equilibrium(data):
    """The package's noise-equilibrium solver (tr(Cov A) = 0 with label-noise covariance) lands on
    the same orbit point as direct minimisation of R."""
    X, _ = data
    model = sb.Hadamard(DIM)
    beta = jax.random.normal(jax.random.PRNGKey(4), (DIM,))
    theta = _random_orbit_point(model, beta, jax.random.PRNGKey(5))

    def sigma(th):  # label-noise diffusion columns: grad f_i
        return jax.jacrev(lambda t: model.predict_batch(t, X))(th).T

    eq = noise_equilibrium(model, theta, sigma, symmetric_generators(model, theta))
    assert bool(eq.converged)
    fm = D.fibre_minimum(model, theta, X)
    np.testing.assert_allclose(eq.theta, fm.theta, rtol=1e-6, atol=1e-9)


def test_depth3_fibre_minimum(data):
    X, _ = data
    model = sb.DeepHadamard(DIM, 3)
    a = jnp.mean(X * X, axis=0)
    beta = jax.random.normal(jax.random.PRNGKey(6), (DIM,))
    fm = D.fibre_minimum(model, _random_orbit_point(model, beta, jax.random.PRNGKey(7), 0.5), X)
    assert bool(fm.converged)
    assert np.isclose(fm.value, 3 * jnp.sum(a * jnp.abs(beta) ** (4 / 3)), rtol=1e-10)
    assert np.isclose(fm.value, D.depth_fibre_penalty(X, 3).value(beta), rtol=1e-10)


def test_group_fibre_minimum(data):
    X, _ = data
    groups = [list(range(0, 3)), list(range(3, 7)), list(range(7, 12))]
    model = GroupHadamard(groups)
    beta = jax.random.normal(jax.random.PRNGKey(8), (DIM,))
    fm = D.fibre_minimum(model, _random_orbit_point(model, beta, jax.random.PRNGKey(9)), X)
    assert bool(fm.converged)
    expected = 0.0
    for g in groups:  # 2 sqrt(tr C_g) sqrt(beta_g^T C_g beta_g), written out
        Xg = X[:, g]
        C = Xg.T @ Xg / N
        expected += 2 * jnp.sqrt(jnp.trace(C)) * jnp.sqrt(beta[jnp.asarray(g)] @ C @ beta[jnp.asarray(g)])
    assert np.isclose(fm.value, expected, rtol=1e-10)
    assert np.isclose(fm.value, D.group_fibre_penalty(X, groups).value(beta), rtol=1e-10)


@pytest.mark.parametrize("masked", [False, True])
def test_factorization_fibre_minimum_is_weighted_nuclear_norm(masked):
    m, n, r = 5, 4, 2
    ka, kb = jax.random.split(jax.random.PRNGKey(11))
    M = jax.random.normal(ka, (m, r)) @ jax.random.normal(kb, (r, n))  # rank r: the fibre is one GL(r) orbit
    if masked:
        keep = np.array(jax.random.bernoulli(jax.random.PRNGKey(12), 0.7, (m, n)))
        keep[np.arange(m), np.arange(m) % n] = True  # every row and column observed
        keep[np.arange(n) % m, np.arange(n)] = True
    else:
        keep = np.ones((m, n), bool)
    obs = jnp.asarray(np.argwhere(keep))
    model = ChartFactorization(m, r, n)  # GL(r) orbits charted by I + S (design_models.py)
    fm = D.fibre_minimum(model, _random_orbit_point(model, M.ravel(), jax.random.PRNGKey(13), 0.3), obs)
    rows, cols = keep.sum(1), keep.sum(0)
    expected = 2 / keep.sum() * jnp.sum(jnp.linalg.svd(np.sqrt(rows)[:, None] * M * np.sqrt(cols)[None, :], compute_uv=False))
    assert np.isclose(fm.value, expected, rtol=1e-8)
    assert np.isclose(fm.value, D.factorization_fibre_penalty((m, n), None if not masked else obs).value(M.ravel()), rtol=1e-8)
    if not masked:
        assert np.isclose(fm.value, 2 * jnp.sum(jnp.linalg.svd(M, compute_uv=False)) / np.sqrt(m * n), rtol=1e-8)


def test_one_point_slow_flow_closed_form_solves_the_projected_flow():
    """x = (1, 2), y = 2, Hadamard from the balanced w(0) = (1, 0.5): integrating
    d theta / d tau = -1/4 P_T grad R (autodiff, any model) reproduces
    w_2 / (1 - w_2)^2 = 2 e^{-2 tau}, and w -> (2, 0) = argmin R* = 2|w_1| + 8|w_2| on the line."""
    model = sb.Hadamard(2)
    x = jnp.array([[1.0, 2.0]])
    theta0 = model.section(jnp.array([1.0, 0.5]))
    term = diffrax.ODETerm(lambda t, th, args: D.slow_flow_field(model, th, x))
    taus = jnp.array([0.25, 0.5, 1.0, 2.0, 4.0])
    sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, 4.0, 0.01, theta0, saveat=diffrax.SaveAt(ts=taus),
                              stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12))
    w = jax.vmap(model.invariants)(sol.ys)
    np.testing.assert_allclose(w, D.one_point_slow_flow(taus), rtol=1e-7, atol=1e-9)
    pen = D.hadamard_fibre_penalty(x)
    np.testing.assert_allclose(pen.weights, [2.0, 8.0])
    pred = D.solve_convex(pen, x, jnp.array([2.0]))
    np.testing.assert_allclose(pred.beta, [2.0, 0.0], atol=1e-8)
    assert pred.residual < 1e-6


def test_slow_time_uses_the_scheme_weight():
    n = 10
    full = sb.LabelNoise(sb.FullBatch(), 0.5)
    batch = sb.LabelNoise(sb.WithReplacement(2), 0.5)
    # tau = k eta^2 delta^2 c kappa n: kappa n = 1/n (full batch), 1/B (with replacement)
    assert np.isclose(D.slow_time(1000, 0.1, full, n), 1000 * 0.01 * 0.25 / n)
    assert np.isclose(D.slow_time(1000, 0.1, batch, n), 1000 * 0.01 * 0.25 / 2)

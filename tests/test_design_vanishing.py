"""Whole groups vanish under label noise, at the rate of the linearised slow flow
(sde_bias.design.vanishing_rates; docs/theory.md section 6.2, docs/design.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_bias as sb
import sde_bias.design as D
from sde_bias.integrate import run_ensemble
from sde_bias.models import GroupHadamard

jax.config.update("jax_enable_x64", True)

N, G, K = 8, 5, 3
GROUPS = [list(range(K * g, K * g + K)) for g in range(G)]


@pytest.fixture(scope="module")
def problem():
    """n = 8, 5 groups of 3, generic labels: the label-noise prediction zeroes groups 0 and 4 and keeps
    9 >= n coordinates (the multiplier is unique)."""
    r = np.random.default_rng(5)
    X, y = r.normal(size=(N, G * K)), r.normal(size=N)
    pred = D.solve_convex(D.group_fibre_penalty(X, GROUPS), X, y)
    return X, y, pred


def _equilibrium(X, beta):
    """Noise equilibrium over beta: s_g^2 = |C_g^(1/2) beta_g| / sqrt(tr C_g), v_g = beta_g / s_g."""
    from scipy.linalg import sqrtm

    s, v = np.zeros(G), np.zeros(G * K)
    for k, g in enumerate(GROUPS):
        C = X[:, g].T @ X[:, g] / N
        nb = np.linalg.norm(np.real(sqrtm(C)) @ beta[g])
        if nb > 1e-9:
            s[k] = np.sqrt(nb / np.sqrt(np.trace(C)))
            v[g] = beta[g] / s[k]
    return s, v


def test_rates_are_the_slow_flows_linearisation(problem):
    """The closed form equals the Jacobian of the package's slow flow (autodiff of -1/4 P_T grad R) on
    each zeroed group's (s_g, v_g) block at the equilibrium, where the flow vanishes."""
    X, _, pred = problem
    rates = D.vanishing_rates(X, pred, GROUPS)
    assert sorted(rates) == [0, 4] and all(r > 0 for r in rates.values())
    model = GroupHadamard(dim=G * K, group_size=K)
    s, v = _equilibrium(X, np.asarray(pred.beta))
    theta = model.flatten({"s": jnp.asarray(s), "v": jnp.asarray(v)})
    assert float(jnp.linalg.norm(D.slow_flow_field(model, theta, jnp.asarray(X)))) < 1e-10
    jac = np.asarray(jax.jacfwd(lambda t: D.slow_flow_field(model, t, jnp.asarray(X)))(theta))
    for g, r in rates.items():
        idx = [g] + [G + j for j in GROUPS[g]]
        assert -np.max(np.linalg.eigvals(jac[np.ix_(idx, idx)]).real) == pytest.approx(r, rel=1e-8)


def test_zeroed_groups_vanish_at_the_predicted_rate(problem):
    """Label-noise SGD (batch 1, delta = 1, eta = 0.01, 32 seeds): the zeroed groups' norms fall by over
    100x from tau = 8 to 64 while the kept groups approach their predicted norms; the slower group's
    late rate d E log|beta_g| / d tau over tau 32..64 is -2 r_g within 3 standard errors."""
    X, y, pred = problem
    rates = D.vanishing_rates(X, pred, GROUPS)
    model = GroupHadamard(dim=G * K, group_size=K)
    prob = sb.Problem(model, sb.LabelNoise(sb.WithReplacement(1), 1.0), train=sb.Dataset(jnp.asarray(X), jnp.asarray(y)))
    eta, seeds = 0.01, 32
    per_step = float(D.slow_time(1, eta, prob.scheme, N))
    every = int(round(8.0 / per_step))
    theta0 = jnp.tile(jnp.concatenate([jnp.full(G, 0.5), jnp.full(G * K, 0.5 / np.sqrt(K))]), (seeds, 1))
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    out = run_ensemble(sb.DiscreteStepper(prob, eta), theta0, keys, prob.train,
                       lambda th, d: {"w": model.invariants(th)}, num_steps=8 * every, record_every=every)
    w = np.asarray(out["records"]["w"])  # [S, T, d] at tau = 0, 8, ..., 64
    norms = np.stack([np.linalg.norm(w[:, :, g], axis=-1) for g in GROUPS], axis=-1)  # [S, T, G]
    for g in rates:
        assert norms[:, 8, g].mean() < 1e-2 * norms[:, 1, g].mean()
    kept = [g for g in range(G) if g not in rates]
    want = np.array([np.linalg.norm(np.asarray(pred.beta)[GROUPS[g]]) for g in kept])
    np.testing.assert_allclose(norms[:, 8, kept].mean(0), want, rtol=0.1)
    slow = min(rates, key=rates.get)
    slope = (np.log(norms[:, 8, slow]) - np.log(norms[:, 4, slow])) / 32.0
    m, se = slope.mean(), slope.std(ddof=1) / np.sqrt(seeds)
    assert abs(m + 2 * rates[slow]) < 3 * se, (m, se, -2 * rates[slow])


def test_kept_sign_rates_are_the_balanced_modes_of_the_hadamard_flow():
    """Hadamard with random kept signs s (balanced start): each zeroed coordinate's rate (2 a_j - s_j h_j) / 4
    is positive (strict one-sided KKT) and is the decay rate of the slow flow's Jacobian along the
    balanced mode (u_j, v_j) = (1, s_j) at the equilibrium |u| = |v| = sqrt|beta|."""
    r = np.random.default_rng(2)
    n, d = 6, 14
    X = r.normal(size=(n, d))
    s = np.where(r.random(d) < 0.5, -1.0, 1.0)
    y = X @ (s * np.abs(r.normal(size=d)))
    pred = D.solve_convex(D.hadamard_fibre_penalty(X, signs=s), X, y)
    rates = D.vanishing_rates(X, pred, signs=s)
    assert len(rates) >= d - n and all(v > 0 for v in rates.values())
    model = sb.Hadamard(d)
    b = np.asarray(pred.beta)
    b = np.where(np.abs(b) > 1e-8 * np.abs(b).max(), b, 0.0)  # the solver's zeros are ~1e-10
    theta = model.flatten({"p": jnp.sqrt(jnp.abs(b)), "q": jnp.asarray(s) * jnp.sqrt(jnp.abs(b))})
    assert float(jnp.linalg.norm(D.slow_flow_field(model, theta, jnp.asarray(X)))) < 1e-8
    jac = np.asarray(jax.jacfwd(lambda t: D.slow_flow_field(model, t, jnp.asarray(X)))(theta))
    for j, rate in rates.items():
        mode = np.zeros(2 * d)
        mode[j], mode[d + j] = 1.0, s[j]
        np.testing.assert_allclose(jac @ mode, -rate * mode, atol=1e-8)

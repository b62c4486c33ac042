"""The balance law under discrete steps (sde_bias.balance) and the verdicts of its check
(sde_bias.verdict)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import sde_bias as sb
from sde_bias.balance import (
    balance_replays,
    balance_rows,
    expected_increment,
    quadratic,
    sgd_step_increment,
    step_increment,
    step_moments,
)
from sde_bias.data import Dataset
from sde_bias.noise import FullBatch, LabelNoise, WithReplacement
from sde_bias.problem import Problem
from sde_bias.sde import SDEStepper, SGDSDE
from sde_bias.sgd import DiscreteStepper
from sde_bias.symmetry import symmetric_generators
from sde_bias.verdict import AGREES, AGREES_DT, DISAGREES, verdict


def test_one_step_identity_for_uv_holds_to_rounding_along_an_sgd_path():
    """u v with label noise, eta = 0.1, 500 SGD steps: at every step
    C_{k+1} = C_k (1 - eta^2 g_k^2) with g_k = dl/dw = (u v x - y - eps_k) x (eps_k read from
    the step's draw),
    and C_{k+1} - C_k = eta^2 ghat^T A ghat = 2 delta^T A theta + delta^T A delta."""
    model, eta = sb.ScalarProduct(), 0.1
    data = Dataset(jnp.array([1.3]), jnp.array([0.8]))
    problem = Problem(model, LabelNoise(FullBatch(), 0.5), train=data)
    st = DiscreteStepper(problem, eta)
    A = jnp.array([[[1.0, 0.0], [0.0, -1.0]]])
    draws = st.draw(jax.random.PRNGKey(0), 500, data, jnp.float64)

    def body(theta, d):
        ghat = problem.scheme.stochastic_gradient(problem, theta, data, d)
        theta1, _ = st.step(theta, None, data, d)
        g = (theta[0] * theta[1] * 1.3 - 0.8 - d[1][0]) * 1.3  # dl/dw with w = u v
        C, C1 = quadratic(A, theta)[0], quadratic(A, theta1)[0]
        return theta1, (C, C1, C * (1 - eta**2 * g**2), C + sgd_step_increment(A, ghat, eta)[0],
                        C + step_increment(A, theta, theta1 - theta)[0])

    _, (C, C1, mult, ident, exact) = jax.lax.scan(body, jnp.array([1.5, 0.4]), draws)
    C1 = np.asarray(C1)
    assert np.abs(C1 - C1[0]).max() > 0.1  # C really moves along the path
    for pred in (mult, ident, exact):
        np.testing.assert_allclose(np.asarray(pred), C1, rtol=1e-13, atol=1e-14)


def test_conditional_mean_of_one_step_matches_monte_carlo():
    """Hadamard d = 2 with minibatch (with replacement, B = 1) and label noise: the gradient
    noise is not Gaussian. E[C_A(theta') - C_A(theta)] over 10^6 SGD steps from one point
    against expected_increment with step_moments (both symmetric generators), and the same
    for one Euler-Maruyama step, within 4 standard errors."""
    X = jnp.array([[1.0, 0.5], [0.2, -1.0], [0.7, 0.3]])
    data = Dataset(X, jnp.array([0.7, -0.4, 0.2]))
    problem = Problem(sb.Hadamard(2), LabelNoise(WithReplacement(1), 0.5), train=data)
    theta = jnp.array([0.9, -0.4, 0.6, 1.2])
    A = jnp.asarray(symmetric_generators(problem.model, theta))
    assert A.shape[0] == 2
    eta, n = 0.2, 1_000_000
    for st in (DiscreteStepper(problem, eta), SDEStepper(SGDSDE(problem, eta), diffrax.Euler())):
        d = st.draw(jax.random.PRNGKey(3), n, data, jnp.float64)
        th1 = jax.vmap(lambda dd: st.step(theta, None, data, dd)[0])(d)
        inc = np.asarray(jax.vmap(lambda t: quadratic(A, t))(th1) - quadratic(A, theta))
        m, S = step_moments(st, theta, data)
        pred = np.asarray(expected_increment(A, theta, m, S).sum(0))
        se = inc.std(0) / np.sqrt(n)
        assert np.all(np.abs(inc.mean(0) - pred) < 4 * se), (type(st).__name__, inc.mean(0), pred, se)
        assert np.all(np.abs(pred) > 20 * se)  # the increment is resolved, not zero


def test_verdict_rules():
    assert verdict(0.29, 0.1) == AGREES
    assert verdict(0.31, 0.1) == DISAGREES
    assert verdict(0.31, 0.1, disc_error=0.25, disc_se=0.05) == AGREES_DT
    assert verdict(1.0, 0.1, disc_error=0.5, disc_se=0.1) == DISAGREES
    assert verdict(float("nan"), 0.1) == DISAGREES
    assert verdict(0.0, 0.0) == AGREES and verdict(1e-3, 0.0) == DISAGREES


def test_wrong_balance_theory_disagrees_and_the_right_one_agrees():
    """u v with label noise (delta = 0.7, lr = 0.05, 400 steps, 256 seeds; SGD, GD,
    Euler-Maruyama, Heun). With the balance law every runner agrees: SGD, GD and
    Euler-Maruyama with their exact discrete identity, Heun to O(dt) (dt-halving estimate).
    With the noise rate multiplied by 1.05 every noisy runner disagrees. GD has no noise, so
    it cannot see the rate; its O(eta^2) per-step drift of C is predicted, not flagged."""
    from sde_bias.build import build_setup, ensure_precision, make_runner
    from sde_bias.presets import get_preset
    from sde_bias.scenario import load_scenario

    sc = load_scenario("scenarios/hyperbola.yaml", overrides=[
        "training.lr=0.05", "training.steps=400", "training.record_every=20", "seeds.count=256", "seeds.base=1000",
        "runners=[sgd, gd, euler_maruyama, heun]",
    ])
    ensure_precision(sc)
    setup = build_setup(sc)
    runners = {p.group: make_runner(setup, p).stepper for p in (get_preset(n) for n in sc.runners)}
    replays = balance_replays(setup, runners)
    right, arrays = balance_rows(replays)
    wrong, _ = balance_rows(replays, rate_factor=1.05)
    v = {r.runner: r.verdict for r in right}
    assert v["sgd"] == v["gd"] == v["sde/euler_maruyama"] == AGREES, [(r.runner, r.z) for r in right]
    assert v["sde/heun"] in (AGREES, AGREES_DT), right[-1]
    assert {r.runner: r.verdict for r in wrong} == {
        "sgd": DISAGREES, "gd": AGREES, "sde/euler_maruyama": DISAGREES, "sde/heun": DISAGREES,
    }, [(r.runner, r.z, r.disc_error) for r in wrong]
    gd = next(r for r in right if r.runner == "gd")
    drift = arrays["gd"]["recorded"][-1] - arrays["gd"]["recorded"][0]
    assert abs(drift) > 1e6 * gd.se and abs(gd.diff) <= 3 * gd.se  # C moves under GD, as predicted


def test_insufficient_data_is_its_own_verdict_and_sentence():
    from sde_bias.verdict import Comparison, summary_sentences

    ok = Comparison("stationary law", "mean", "sde/heun", 1.0, 0.1, 1.05)
    short = Comparison("stationary law", "chi-square", "sde/heun", float("nan"), float("nan"), float("nan"),
                       insufficient=True)
    nan_value = Comparison("stationary law", "mean", "sgd", float("nan"), 0.1, 1.0)  # a diverged run
    assert short.verdict == "insufficient data" and nan_value.verdict == "disagrees" and ok.verdict == "agrees"
    rows = [ok, short]
    (s,) = summary_sentences([r.group for r in rows], [r.verdict for r in rows], [r.runner for r in rows])
    assert s == "stationary law: 1 runner agrees; insufficient data for 1"

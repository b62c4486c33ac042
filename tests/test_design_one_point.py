"""The worked case of docs/theory.md section 6.2 simulated: one sample x = (1, 2), y = 2, Hadamard
w = u * v from the balanced w(0) = (1, 0.5), full-batch label noise delta = 1 (slow time tau = k eta^2).
The slow flow's closed form w_2 / (1 - w_2)^2 = 2 e^{-2 tau} (sde_bias.design.one_point_slow_flow) is
the eta -> 0 limit; stochastic Heun tracks it at fixed eta, SGD and Euler-Maruyama carry an O(eta) error."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import sde_bias as sb
import sde_bias.design as D
from sde_bias.integrate import run_ensemble

jax.config.update("jax_enable_x64", True)

SEEDS = 512


def _mean_w2(stepper, eta, tau):
    model = sb.Hadamard(2)
    theta0 = jnp.tile(model.section(jnp.array([1.0, 0.5])), (SEEDS, 1))
    data = sb.Dataset(jnp.array([[1.0, 2.0]]), jnp.array([2.0]))
    steps = int(round(tau / eta**2))
    keys = jax.random.split(jax.random.PRNGKey(7), SEEDS)
    out = run_ensemble(stepper, theta0, keys, data, lambda th, d: {"w": model.invariants(th)},
                       num_steps=steps, record_every=steps)
    w2 = np.asarray(out["records"]["w"])[:, -1, 1]
    return w2.mean(), w2.std(ddof=1) / np.sqrt(SEEDS)


def _problem():
    data = sb.Dataset(jnp.array([[1.0, 2.0]]), jnp.array([2.0]))
    return sb.Problem(sb.Hadamard(2), sb.LabelNoise(sb.FullBatch(), 1.0), train=data)


def test_stochastic_heun_follows_the_closed_form_slow_flow():
    """eta = 0.02, tau = 1 and 2: the seed mean of w_2 agrees with the closed form within 3 standard
    errors, and w_2 falls towards 0 (w -> (2, 0))."""
    prob = _problem()
    stepper = sb.SDEStepper(sb.SGDSDE(prob, 0.02), diffrax.Heun())
    for tau in (1.0, 2.0):
        m, se = _mean_w2(stepper, 0.02, tau)
        exact = float(D.one_point_slow_flow(jnp.asarray(tau))[1])
        assert abs(m - exact) < 3 * se, (tau, m, se, exact)
    assert m < 0.05


def test_sgd_error_is_order_eta():
    """SGD at tau = 2: the error of the mean w_2 against the slow flow halves (ratio 1.4..2.8) when eta
    halves from 0.04 to 0.02, and each error is many standard errors wide (it is a bias, not noise)."""
    prob = _problem()
    exact = float(D.one_point_slow_flow(jnp.asarray(2.0))[1])
    errs = []
    for eta in (0.04, 0.02):
        m, se = _mean_w2(sb.DiscreteStepper(prob, eta), eta, 2.0)
        assert abs(m - exact) > 4 * se, (eta, m, se, exact)
        errs.append(abs(m - exact))
    assert 1.4 < errs[0] / errs[1] < 2.8, errs

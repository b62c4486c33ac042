"""The chunked ensemble loop: determinism, chunking invariance, divergence, SVAG."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import sde_bias as sb
from sde_bias.data import Dataset
from sde_bias.integrate import advance, block_size, init_ensemble, run_ensemble
from sde_bias.noise import WithReplacement
from sde_bias.observables import make_observer
from sde_bias.problem import Problem
from sde_bias.sde import SDEStepper, SGDSDE
from sde_bias.sgd import DiscreteStepper


def _problem():
    model = sb.Hadamard(3)
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    data = Dataset(jax.random.normal(kx, (10, 3)), jax.random.normal(ky, (10,)))
    return Problem(model, WithReplacement(2), train=data)


def _run(stepper, problem, chunk_records=None, S=5, steps=60, record_every=6):
    theta0 = jax.vmap(problem.model.init)(jax.random.split(jax.random.PRNGKey(0), S))
    keys = jax.random.split(jax.random.PRNGKey(9), S)
    return run_ensemble(
        stepper, theta0, keys, problem.train, make_observer(problem, ["loss", "params"]),
        num_steps=steps, record_every=record_every, chunk_records=chunk_records,
    )


def test_block_size():
    assert block_size(1000) == 250 and block_size(7) == 7 and block_size(509) == 1 and block_size(512) == 256


def test_same_seeds_same_numbers_bit_for_bit():
    problem = _problem()
    for stepper in (DiscreteStepper(problem, 0.05), SDEStepper(SGDSDE(problem, 0.05), diffrax.Euler())):
        a = _run(stepper, problem)["records"]["params"]
        b = _run(stepper, problem)["records"]["params"]
        assert np.array_equal(np.asarray(a), np.asarray(b))
        # and a different seed differs
        theta0 = jax.vmap(problem.model.init)(jax.random.split(jax.random.PRNGKey(0), 5))
        c = run_ensemble(stepper, theta0, jax.random.split(jax.random.PRNGKey(10), 5), problem.train,
                         make_observer(problem, ["params"]), num_steps=60, record_every=6)["records"]["params"]
        assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_chunking_does_not_change_numbers():
    """Randomness is keyed by the absolute block index, so 1 chunk == 10 chunks == 3+..."""
    problem = _problem()
    stepper = DiscreteStepper(problem, 0.05)
    whole = _run(stepper, problem)["records"]["params"]
    for c in (1, 3, 4):
        part = _run(stepper, problem, chunk_records=c)["records"]["params"]
        assert np.array_equal(np.asarray(whole), np.asarray(part))


def test_divergence_is_flagged_per_seed_and_others_continue():
    """lr = 3 on a quadratic with curvature 1 diverges (|1 - lr| > 1) for seeds that start
    away from the minimum; a seed started exactly at the minimum stays (no noise)."""
    a = jnp.array([0.0, 0.0])
    data = Dataset(jnp.ones((2, 1)), a)
    problem = Problem(sb.Linear(1), WithReplacement(1), train=data)
    theta0 = jnp.array([[0.0], [1.0], [2.0]])
    out = run_ensemble(DiscreteStepper(problem, 3.0), theta0, jax.random.split(jax.random.PRNGKey(0), 3), data,
                       make_observer(problem, ["loss", "params"]), num_steps=200, record_every=10)
    div = np.asarray(out["diverged_at"])
    assert div[0] == -1 and div[1] > 0 and div[2] > 0
    assert div[2] <= div[1]  # starts further out, overflows no later
    loss = np.asarray(out["records"]["loss"])
    assert np.all(np.isfinite(loss[0]))
    k = -(-div[1] // 10)  # first record at or after the divergent step
    assert np.all(np.isnan(loss[1, k:])) and np.all(np.isfinite(loss[1, :k]))


def test_svag_stationary_variance():
    """SVAG(l) on l_i = 1/2 (x - a_i)^2: steps eta/l and covariance x l, so the stationary
    variance is eta s^2 c_B / (2 - eta / l), between SGD's and the SDE's. 4,000 seeds."""
    A = jnp.array([-1.0, 0.3, 2.0, 0.5, -0.7, 1.1, 0.0, -2.0, 0.9, 0.4])
    data = Dataset(jnp.ones((10, 1)), A)
    problem = Problem(sb.Linear(1), WithReplacement(1), train=data)
    S, eta, l = 4000, 0.5, 4
    theta0 = jnp.full((S, 1), float(A.mean()))
    out = run_ensemble(DiscreteStepper(problem, eta, svag_l=l), theta0, jax.random.split(jax.random.PRNGKey(0), S), data,
                       make_observer(problem, ["params"]), num_steps=40, record_every=40)
    v = float(np.var(np.asarray(out["records"]["params"])[:, -1, 0]))
    expect = eta * float(jnp.var(A)) / (2 - eta / l)
    assert abs(v / expect - 1) < 4 * np.sqrt(2 / S)
    assert abs(v / (eta * float(jnp.var(A)) / (2 - eta)) - 1) > 0.08  # not plain SGD's


def test_advance_returns_requested_records():
    problem = _problem()
    stepper = DiscreteStepper(problem, 0.05)
    theta0 = jax.vmap(problem.model.init)(jax.random.split(jax.random.PRNGKey(0), 4))
    ens = init_ensemble(stepper, theta0, jax.random.split(jax.random.PRNGKey(1), 4), problem.train, False)
    ens, rec = advance(stepper, ens, problem.train, make_observer(problem, ["loss", "balance"]), num_records=3, record_every=5)
    assert int(ens.step) == 15
    assert rec["loss"].shape == (4, 3) and rec["balance/imbalance"].shape == (4, 3, 3)

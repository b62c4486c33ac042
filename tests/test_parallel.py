"""Seed sharding over host devices: same numbers as the unsharded run, bit for bit."""

import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

from sde_bias.parallel import _largest_divisor, seed_sharding, shard_seeds

_CHILD = textwrap.dedent(
    """
    import json
    from sde_bias.parallel import configure_host_devices, shard_seeds
    assert configure_host_devices(2) == 2
    import diffrax, jax, numpy as np
    import sde_bias as sb
    from sde_bias.data import Dataset
    from sde_bias.integrate import run_ensemble
    from sde_bias.noise import WithReplacement
    from sde_bias.observables import make_observer
    from sde_bias.problem import Problem
    from sde_bias.sde import SDEStepper, SGDSDE
    from sde_bias.sgd import DiscreteStepper

    model = sb.Hadamard(3)
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    data = Dataset(jax.random.normal(kx, (10, 3)), jax.random.normal(ky, (10,)))
    problem = Problem(model, WithReplacement(2), train=data)
    observe = make_observer(problem, ["loss", "params"])
    S = 6
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(0), S))
    keys = jax.random.split(jax.random.PRNGKey(9), S)
    out = {"devices": len(jax.devices())}
    for name, stepper in (("sgd", DiscreteStepper(problem, 0.05)),
                          ("sde", SDEStepper(SGDSDE(problem, 0.05), diffrax.Euler()))):
        plain = run_ensemble(stepper, theta0, keys, data, observe, num_steps=60, record_every=6)
        th, ks = shard_seeds(theta0, keys)
        sharded = run_ensemble(stepper, th, ks, data, observe, num_steps=60, record_every=6)
        out[name] = {
            "input_devices": len(th.sharding.device_set),
            "output_devices": len(sharded["ensemble"].theta.sharding.device_set),
            "equal": all(
                np.array_equal(np.asarray(plain["records"][k]), np.asarray(sharded["records"][k]))
                for k in plain["records"]
            ) and np.array_equal(np.asarray(plain["ensemble"].theta), np.asarray(sharded["ensemble"].theta)),
        }
    print("RESULT " + json.dumps(out))
    """
)


def test_sharded_run_matches_unsharded_bit_for_bit():
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    assert out["devices"] == 2
    for name in ("sgd", "sde"):
        assert out[name]["input_devices"] == 2 and out[name]["output_devices"] == 2, out
        assert out[name]["equal"], out


def test_largest_divisor():
    assert _largest_divisor(256, 2) == 2
    assert _largest_divisor(6, 4) == 3
    assert _largest_divisor(7, 4) == 1
    assert _largest_divisor(1, 8) == 1


def test_single_device_is_a_no_op():
    theta = jnp.zeros((4, 3))
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    one = jax.devices()[:1]
    assert seed_sharding(4, one) is None
    th, ks = shard_seeds(theta, keys, devices=one)
    assert th is theta and ks is keys
    assert shard_seeds(theta, devices=one) is theta


def test_mismatched_leading_axes_are_refused():
    with pytest.raises(ValueError):
        shard_seeds(jnp.zeros((4, 3)), jnp.zeros((5,)))


def test_devices_from_env():
    from sde_bias.parallel import devices_from_env

    assert devices_from_env("") is None
    assert devices_from_env("3") == 3
    for bad in ("0", "-2", "x", "1.5"):
        with pytest.raises(ValueError, match="SDE_BIAS_DEVICES"):
            devices_from_env(bad)


def test_seed_mesh_only_for_a_split_seed_axis():
    from sde_bias.parallel import seed_mesh

    assert seed_mesh(jnp.zeros((4, 3))) is None
    assert seed_mesh(jnp.zeros((4, 3)).__array__()) is None  # NumPy array: no sharding

"""Problem builders shared by the test files.

Imported as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path`` for test
modules in a folder without ``__init__.py``). Each builder is small and states the maths
of what it builds, so a test reads as its closed form.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp

import sde_bias as sb
from sde_bias.data import Dataset
from sde_bias.integrate import run_ensemble
from sde_bias.noise import FullBatch, LabelNoise
from sde_bias.problem import Problem
from sde_bias.sde import CustomSDE

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"


# ----------------------------------------------------------------------------- input samplers
def gaussian_inputs(*shape):
    """``(key, n) -> x`` with ``x ~ N(0, 1)`` of shape ``[n, *shape]``."""

    def sample(key, n):
        return jax.random.normal(key, (n, *shape))

    return sample


def index_pairs(rows, cols):
    """``(key, n) -> [n, 2]`` uniform matrix entries ``(i, j)`` (matrix completion inputs)."""

    def sample(key, n):
        ki, kj = jax.random.split(key)
        return jnp.stack(
            [jax.random.randint(ki, (n,), 0, rows), jax.random.randint(kj, (n,), 0, cols)], axis=1
        )

    return sample


# ----------------------------------------------------------------------------- problems
def random_regression(model, scheme, n: int, input_shape: tuple[int, ...], seed: int = 1, loss=None) -> Problem:
    """``model`` on ``n`` Gaussian inputs of ``input_shape`` with Gaussian labels (both from
    ``PRNGKey(seed)``), trained with ``scheme``: a generic problem without closed forms, for
    checks of one implementation against another."""
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    data = Dataset(jax.random.normal(kx, (n, *input_shape)), jax.random.normal(ky, (n,)))
    kwargs = {} if loss is None else {"loss": loss}
    return Problem(model, scheme, train=data, **kwargs)


def uv_problem(delta: float, y: float = 1.0) -> Problem:
    """``f = u v`` fitting the single label ``y`` (input 1) with label noise ``delta``,
    full batch: the hyperbola of docs/theory.md section 7."""
    return Problem(sb.ScalarProduct(), LabelNoise(FullBatch(), delta), train=Dataset(jnp.ones((1,)), jnp.full((1,), y)))


# ----------------------------------------------------------------------------- geometric Brownian motion
def gbm(mu: float, sigmas, dt: float) -> CustomSDE:
    """Scalar geometric Brownian motion driven by ``m = len(sigmas)`` Brownian motions,
    ``dX = mu X dt + X sum_j s_j dW_j`` (Itô), one runner step of time ``dt``. Its noise
    columns ``s_j x`` commute, and ``X_t = X_0 exp((mu - |s|^2 / 2) t + s . W_t)``."""
    s = jnp.asarray(sigmas, float)
    return CustomSDE(lambda x, a: mu * x, lambda x, a, xi: x * (s @ xi), int(s.shape[0]), dt)


def gbm_exact(mu: float, sigmas, t, w):
    """The exact GBM solution from ``X_0 = 1`` given ``W_t`` (``w [..., m]``)."""
    s = jnp.asarray(sigmas, float)
    return jnp.exp((mu - 0.5 * jnp.sum(s**2)) * t + w @ s)


def gbm_moments(mu: float, sigmas, t) -> tuple[float, float]:
    """``E X_t = e^{mu t}``, ``E X_t^2 = e^{(2 mu + |s|^2) t}`` from ``X_0 = 1``."""
    s2 = float(sum(float(x) ** 2 for x in sigmas))
    return math.exp(mu * t), math.exp((2 * mu + s2) * t)


# ----------------------------------------------------------------------------- running
def run_final(stepper, theta0, num_steps, observe, record_every=None, data=None, seed=0):
    """:func:`sde_bias.integrate.run_ensemble` with one key per row of ``theta0`` from
    ``PRNGKey(seed)``."""
    keys = jax.random.split(jax.random.PRNGKey(seed), theta0.shape[0])
    return run_ensemble(
        stepper, theta0, keys, data, observe, num_steps=num_steps, record_every=record_every or num_steps
    )


def solve_on_paths(stepper, x0, increments):
    """Final states of ``stepper`` driven by given Brownian increments ``[paths, n, m]``
    (no Lévy areas), from the state ``x0`` on every path: strong-error checks."""

    def path(inc):
        def body(x, d):
            return stepper.step(x, None, None, (d, None))[0], None

        return jax.lax.scan(body, x0, inc)[0]

    return jax.jit(jax.vmap(path))(increments)

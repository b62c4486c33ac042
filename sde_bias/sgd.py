"""Discrete runners: gradient descent, SGD and SVAG, as steppers for the scan loop.

SGD is the reference of every comparison: the exact update
``theta <- theta - eta (g_hat + grad penalty)`` with the scheme's own sampling
(docs/theory.md section 1.6). SVAG (Li, Malladi, Arora 2021, "On the validity of modeling SGD
with stochastic differential equations") takes ``l`` steps of size ``eta / l`` per unit
step with ``g = (1 + sqrt(2l - 1))/2 g_1 + (1 - sqrt(2l - 1))/2 g_2`` from two independent
batches; the mean is unchanged, the covariance is multiplied by ``l``, and as
``l -> infinity`` it converges weakly to the order-1 SDE.
"""

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .contracts import AbstractStepper
from .noise import FullBatch


class DiscreteStepper(AbstractStepper):
    """One discrete update per sub-step; ``svag_l = 1`` is plain SGD.

    ``full_batch=True`` replaces the problem's scheme by :class:`~sde_bias.noise.FullBatch`
    (gradient descent on the same data)."""

    problem: Any
    lr: float
    svag_l: int = eqx.field(static=True, default=1)
    full_batch: bool = eqx.field(static=True, default=False)

    @property
    def substeps(self) -> int:
        return self.svag_l

    @property
    def scheme(self):
        return FullBatch() if self.full_batch else self.problem.scheme

    def init(self, theta, data):
        return None

    def draw(self, key, num_steps, data, dtype):
        if self.svag_l == 1:
            return self.scheme.draw(key, num_steps, self.problem, data)
        both = self.scheme.draw(key, 2 * num_steps, self.problem, data)
        return jax.tree_util.tree_map(lambda a: a.reshape((num_steps, 2) + a.shape[1:]), both)

    def step(self, theta, aux, data, draw):
        problem, scheme = self.problem, self.scheme
        if self.svag_l == 1:
            g = scheme.stochastic_gradient(problem, theta, data, draw)
            lr = self.lr
        else:
            d1 = jax.tree_util.tree_map(lambda a: a[0], draw)
            d2 = jax.tree_util.tree_map(lambda a: a[1], draw)
            r = math.sqrt(2 * self.svag_l - 1)
            g = (1 + r) / 2 * scheme.stochastic_gradient(problem, theta, data, d1) + (
                1 - r
            ) / 2 * scheme.stochastic_gradient(problem, theta, data, d2)
            lr = self.lr / self.svag_l
        g = g + problem.penalty_gradient(theta)
        return theta - jnp.asarray(lr, theta.dtype) * g, aux

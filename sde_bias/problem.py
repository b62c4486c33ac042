"""A learning problem: model + loss + data + sampling scheme (+ penalty).

The same :class:`Problem` drives discrete SGD and the SGD-SDE, so both use one noise
scheme and cannot drift apart silently (docs/architecture.md).
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .data import Dataset, TeacherStream
from .losses import NoPenalty, SquaredLoss
from .models import AbstractModel


class Problem(eqx.Module):
    """Everything that defines the loss landscape and its gradient noise.

    - ``model``: the parameterization;
    - ``loss``: per-sample loss ``l(f, y)``;
    - ``scheme``: the sampling scheme (``sde_bias.noise``);
    - ``train``: a fixed :class:`Dataset`, or ``None`` for online learning;
    - ``stream``: a :class:`TeacherStream` for online learning (fresh samples);
    - ``num_reference``: for online learning, the number ``M`` of reference samples
      drawn per seed from which the SDE's drift and covariance are estimated;
    - ``test``: optional held-out :class:`Dataset`;
    - ``target``: optional target invariants ``q*`` (for distance-to-target);
    - ``penalty``: deterministic penalty on the invariants, added to every gradient.
    """

    model: AbstractModel
    scheme: Any
    loss: SquaredLoss = SquaredLoss()
    train: Dataset | None = None
    stream: TeacherStream | None = None
    num_reference: int = eqx.field(static=True, default=1024)
    test: Dataset | None = None
    target: Array | None = None
    penalty: Any = NoPenalty()

    def __check_init__(self):
        if (self.train is None) == (self.stream is None):
            raise ValueError("a Problem needs exactly one of `train` (a Dataset) or `stream`")

    @property
    def online(self) -> bool:
        return self.stream is not None

    # ------------------------------------------------------------------ losses
    def sample_loss(self, theta: Float[Array, " p"], x, y) -> Float[Array, ""]:
        """``l_i(theta) = loss(f(theta; x_i), y_i)`` for one sample."""
        return self.loss(self.model.predict(theta, x), y)

    def per_sample_losses(self, theta, data: Dataset) -> Float[Array, " n"]:
        f = self.model.predict_batch(theta, data.x)
        return jax.vmap(self.loss)(f, data.y)

    def weighted_loss(self, theta, data: Dataset, weights: Float[Array, " n"]) -> Float[Array, ""]:
        """``sum_i w_i l_i(theta)``; its gradient is every stochastic gradient here."""
        return jnp.sum(weights * self.per_sample_losses(theta, data))

    def empirical_loss(self, theta, data: Dataset) -> Float[Array, ""]:
        """``L = mean_i l_i`` plus the penalty."""
        return jnp.mean(self.per_sample_losses(theta, data)) + self.penalty_value(theta)

    def per_sample_gradients(self, theta, data: Dataset) -> Float[Array, "n p"]:
        return jax.vmap(jax.grad(self.sample_loss), in_axes=(None, 0, 0))(theta, data.x, data.y)

    def penalty_value(self, theta) -> Float[Array, ""]:
        return self.penalty(self.model.invariants(theta))

    def penalty_gradient(self, theta) -> Float[Array, " p"]:
        if isinstance(self.penalty, NoPenalty):
            return jnp.zeros_like(theta)
        return jax.grad(self.penalty_value)(theta)

    # ------------------------------------------------------------------ data per seed
    def seed_data(self, key: PRNGKeyArray, dtype=None) -> Dataset:
        """The data a seed's SDE sees: the training set, or for online learning
        ``num_reference`` fresh reference samples drawn with ``key``."""
        if self.train is not None:
            return self.train
        return self.stream.sample(key, self.num_reference, dtype)

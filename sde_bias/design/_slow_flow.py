"""The slow flow of label-noise SGD along the zero-loss manifold (docs/theory.md section 6.2).

On the slow time ``tau = k eta^2 delta^2 c kappa n`` (:func:`~sde_bias.design.slow_time`),
label-noise SGD near the interpolating manifold ``Gamma = {theta : f(theta; x_i) = y_i}`` follows

    d theta / d tau = -1/4 P_T(theta) grad R(theta),     P_T = I - J^T (J J^T)^+ J,

with ``R`` the label-noise regulariser and ``J`` the ``n x p`` Jacobian of the outputs (Li, Wang and
Arora 2022, label-noise case; Blanc et al. 2020; Damian et al. 2021). :func:`slow_flow_field`
evaluates it for any model, :func:`one_point_slow_flow` is its closed form in the worked case.

**Worked case** (section 6.2): one sample ``x = (1, 2)``, ``y = 2``, Hadamard ``w = u * v`` on the
balanced section ``u = v`` (kept by the flow), ``R = 2 w_1 + 8 w_2``, ``w_1 = 2 - 2 w_2``. Projecting
``grad R = 2 x^2 * (u, v)`` off the normal ``(x * v, x * u)`` gives
``d w_2 / d tau = -2 w_2 (1 - w_2) / (1 + w_2)``, whose solution is
``w_2 / (1 - w_2)^2 = F_0 e^{-2 tau}`` (``F_0 = 2`` from ``w(0) = (1, 0.5)``): ``w -> (2, 0)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..losses import SquaredLoss
from ._label_noise import label_noise_regulariser


def slow_flow_field(model, theta: Float[Array, " p"], x, loss: SquaredLoss = SquaredLoss()) -> Float[Array, " p"]:
    """``-1/4 P_T grad R`` at ``theta`` (on the manifold; ``x`` the training inputs)."""
    grad = jax.grad(label_noise_regulariser, argnums=1)(model, theta, x, loss)
    J = jax.jacrev(lambda th: model.predict_batch(th, x).reshape(-1))(theta)
    normal = J.T @ jnp.linalg.lstsq(J @ J.T, J @ grad)[0]
    return -0.25 * (grad - normal)


def one_point_slow_flow(tau: Float[Array, "..."], w2_0: float = 0.5) -> Float[Array, "... 2"]:
    """``w(tau)`` of the worked case: ``w_2`` solves ``w_2 / (1 - w_2)^2 = F e^{-2 tau}`` with
    ``F = w2_0 / (1 - w2_0)^2`` (the root in ``[0, 1)`` of ``F w^2 - (2F + 1) w + F = 0``), ``w_1 = 2 - 2 w_2``."""
    tau = jnp.asarray(tau, float)
    F = w2_0 / (1 - w2_0) ** 2 * jnp.exp(-2 * tau)
    w2 = 2 * F / ((2 * F + 1) + jnp.sqrt(4 * F + 1))  # (2F+1 - sqrt(4F+1)) / (2F), rationalised
    return jnp.stack([2 - 2 * w2, w2], axis=-1)

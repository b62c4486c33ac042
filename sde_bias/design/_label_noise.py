"""The label-noise implicit regulariser and its numerical fibre minimum (docs/theory.md section 6.2).

**The regulariser, for this package's loss.** With ``l_i = c/2 |f_i - y_i|^2`` (``SquaredLoss``:
``c = scale`` for ``half_sum``; ``mean`` over ``m`` output entries is ``(scale/m) |f - y|^2``, i.e.
``c = 2 scale / m``) and ``L = mean_i l_i``,

    grad^2 L = (c/n) sum_i J_i^T J_i + (c/n) sum_i (f_i - y_i) . grad^2 f_i,

so at interpolation ``R(theta) = tr grad^2 L = (c/n) sum_i |J_i|_F^2`` (``J_i = d f_i / d theta``).
For the package's default (``half_sum``, scale 1) ``c = 1``: ``R = (1/n) sum_i |grad f_i|^2``.

**The slow time.** Label noise ``y_i -> y_i + eps``, ``eps ~ N(0, delta^2)``, adds
``delta^2 c^2 kappa sum_i J_i^T J_i = (delta^2 c kappa n) grad^2 L`` to ``Cov[g_hat]`` (``kappa`` =
``scheme.label_noise_weight(n)``: ``1/n^2`` full batch, ``1/(B n)`` with replacement). Near the
zero-loss manifold ``Gamma`` SGD with ``Cov = C grad^2 L`` follows, on the time ``k eta^2 C``, the
flow ``d theta = -1/4 P_T grad R`` (``P_T`` the orthogonal projector onto the tangent space of
``Gamma``; Blanc et al. 2020, Damian et al. 2021, Li, Wang and Arora 2022). Hence the slow time
``tau = k eta^2 delta^2 c kappa n`` (:func:`slow_time`) and the flow of ``_slow_flow.py``.

**The fibre minimum.** Symmetry orbits lie in the zero-loss set and SGD's noise drives each orbit to
its noise equilibrium, which for label noise is the minimiser of ``R`` along the orbit (for a linear
action ``d/ds R(e^{sA} theta) = -2 (c/n) tr(sum J_i^T J_i A)``, the balance rate of section 2.4).
:func:`fibre_minimum` minimises ``R(model.action(theta, s))`` over the Lie-algebra coordinates
``s`` by damped Newton (``_newton.py``); on a connected fibre this is ``R*(beta)``.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ..losses import SquaredLoss
from ._newton import damped_newton


def hessian_trace_constant(loss: SquaredLoss = SquaredLoss(), out_size: int = 1) -> float:
    """``c`` with ``d^2 l / d f_k^2 = c`` per output entry: ``scale`` for ``half_sum``,
    ``2 scale / out_size`` for ``mean``."""
    if loss.reduction == "half_sum":
        return float(loss.scale)
    return 2.0 * float(loss.scale) / out_size


def _jacobian(model, theta, x):
    J = jax.jacrev(lambda th: model.predict_batch(th, x))(theta)
    return J.reshape(J.shape[0], -1, theta.shape[-1])  # [n, out, p]


def label_noise_regulariser(
    model, theta: Float[Array, " p"], x, loss: SquaredLoss = SquaredLoss()
) -> Float[Array, ""]:
    """``R(theta) = (c/n) sum_i |d f_i / d theta|_F^2``: ``tr grad^2 L`` at interpolation (module
    docstring; ``x``: the ``n`` training inputs)."""
    J = _jacobian(model, theta, x)
    c = hessian_trace_constant(loss, J.shape[1])
    return c * jnp.sum(J * J) / J.shape[0]


def slow_time(num_steps, lr: float, scheme, n: int, loss: SquaredLoss = SquaredLoss()):
    """``tau = k eta^2 delta^2 c kappa n`` for ``k = num_steps`` steps of label-noise SGD with the
    ``LabelNoise`` scheme ``scheme`` (``delta = scheme.std``, ``kappa = scheme.label_noise_weight(n)``)
    and scalar outputs."""
    kappa = scheme.label_noise_weight(n)
    return jnp.asarray(num_steps) * lr**2 * scheme.std**2 * hessian_trace_constant(loss) * kappa * n


class FibreMinimum(NamedTuple):
    """Result of :func:`fibre_minimum`: the orbit point ``theta``, ``value = R(theta)``, the
    Lie-algebra coordinates ``s`` that reach it from the input, the final ``max |dR/ds|`` and
    whether that is below ``gtol``."""

    theta: Float[Array, " p"]
    value: Float[Array, ""]
    s: Float[Array, " k"]
    gradient_inf: Float[Array, ""]
    converged: Bool[Array, ""]


def fibre_minimum(
    model, theta: Float[Array, " p"], x, loss: SquaredLoss = SquaredLoss(), *, gtol: float = 1e-10, max_steps: int = 500
) -> FibreMinimum:
    """``min_s R(model.action(theta, s))``: the label-noise regulariser minimised along the orbit
    through ``theta`` (the noise equilibrium of label noise), by damped Newton in Lie-algebra
    coordinates. Any model with ``action``, ``lie_algebra_dim`` and ``predict_batch`` works. If the
    infimum is approached only as ``|s| -> inf`` (a coefficient exactly zero) the result is the best
    point within ``max_steps``."""
    return _fibre_minimum(model, theta, x, loss, gtol, max_steps)


@eqx.filter_jit
def _fibre_minimum(model, theta, x, loss, gtol, max_steps):
    def objective(s, _):
        return label_noise_regulariser(model, model.action(theta, s), x, loss)

    s0 = jnp.zeros((model.lie_algebra_dim,), theta.dtype)
    res = damped_newton(objective, s0, gtol=gtol, max_steps=max_steps)
    return FibreMinimum(model.action(theta, res.x), res.value, res.x, res.gradient_inf, res.gradient_inf <= gtol)

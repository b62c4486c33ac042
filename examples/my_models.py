"""Bring your own model: ``f(a, w; x) = a (w . x)`` put into sde_bias two ways.

1. :class:`GatedLinear`, a class implementing the model interface
   (:class:`sde_bias.models.AbstractModel`): the scenario names it as
   ``model: {type: "examples.my_models:GatedLinear", dim: 3}``.
2. :func:`gated_linear`, a bare predictor ``f(params, x)``: the scenario names it as
   ``model: {type: predictor, function: "examples.my_models:gated_linear", params: {a: [],
   w: [3]}, input_shape: [3]}`` and sde_bias discovers its symmetry.

The symmetry is ``R_{>0}`` acting as ``(e^s a, e^{-s} w)``: generator ``xi = (a, -w)``, Gram
matrix ``G = a^2 + |w|^2``, conserved (by gradient flow) ``a^2 - |w|^2``, invariants
``beta = a w`` and balanced section ``a = |beta|^{1/2}``, ``w = beta / |beta|^{1/2}``.
docs/models.md walks through both.
"""

import equinox as eqx
import jax.numpy as jnp

from sde_bias.models import AbstractModel, generators_by_jvp, predict_each


class GatedLinear(AbstractModel):
    """``f(a, w; x) = a (w . x)`` with a scalar gate ``a`` and weights ``w`` in ``R^dim``."""

    dim: int = eqx.field(static=True)

    # parameters and data
    @property
    def block_shapes(self):
        return {"a": (), "w": (self.dim,)}

    @property
    def input_shape(self):
        return (self.dim,)

    @property
    def input_bounds(self):
        return None  # real inputs

    @property
    def output_shape(self):
        return ()

    @property
    def data_kinds(self):
        return frozenset({"teacher_student"})  # Gaussian inputs fit (inline and file data always do)

    # predictor
    def predict(self, theta, x):
        b = self.unflatten(theta)
        return b["a"] * (b["w"] @ x)

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    # symmetry
    @property
    def lie_algebra_dim(self):
        return 1

    def action(self, theta, s):
        b = self.unflatten(theta)
        g = jnp.exp(s[0])
        return self.flatten({"a": b["a"] * g, "w": b["w"] / g})

    def generators(self, theta):
        return generators_by_jvp(self, theta)

    # quotient
    def invariants(self, theta):
        b = self.unflatten(theta)
        return b["a"] * b["w"]

    def section(self, q):
        return self.flatten(gated_section(q))

    def balance(self, theta):
        b = self.unflatten(theta)
        return {"imbalance": b["a"] ** 2 - jnp.sum(b["w"] ** 2)}

    # initialisation
    @property
    def unbalance_length(self):
        return 1

    def unbalance(self, theta, log_scales):
        return self.action(theta, log_scales)


def gated_linear(params, x):
    """The same predictor as a bare function of a parameter dict."""
    return params["a"] * (params["w"] @ x)


def gated_invariants(params):
    """``beta = a w`` (optional: without it the invariants are predictions at probe inputs)."""
    return params["a"] * params["w"]


def gated_section(q):
    """The balanced representative of ``beta = q``: ``a^2 = |w|^2 = |beta|``."""
    n = jnp.linalg.norm(q)
    root = jnp.sqrt(n)
    safe = jnp.where(n > 0, root, 1.0)
    return {"a": root, "w": jnp.where(n > 0, q / safe, 0.0)}

"""Group Hadamard parameterization ``beta_g = s_g v_g``: one scale per group of coordinates.

The weights are cut into ``G = dim / group_size`` consecutive groups of ``group_size``
coordinates; group ``g`` is a scalar ``s_g`` times a vector ``v_g``. Rescaling
``(a s_g, v_g / a)`` leaves ``beta`` unchanged, so the group is ``(R_{>0})^G``. Like the
Hadamard model (``group_size = 1``) it biases towards sparse weights, here sparse in
groups (a group-lasso-like potential; docs/theory.md section 3.4).
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import AbstractModel, generators_by_jvp, predict_each
from ._features import as_features


class GroupHadamard(AbstractModel):
    """``f(s, v; x) = phi(x) . beta`` with ``beta[g k + i] = s[g] v[g k + i]``
    (``k = group_size``), over any feature map of the Hadamard model.

    Blocks ``s`` (``(G,)``) and ``v`` (``(dim,)``), ``G = dim / group_size``.

    Symmetry: ``(R_{>0})^G``; coordinate ``t_g`` multiplies ``s_g`` by ``exp(t_g)`` and
    divides ``v_g`` by it. Generator ``xi_g = (s_g e_g, -v_g)`` (zero outside group ``g``),
    so the Gram matrix is ``diag(s_g^2 + |v_g|^2)``.

    Invariants: ``beta`` (``(dim,)``). Balanced section: ``s_g = |beta_g|^{1/2}``,
    ``v_g = beta_g / |beta_g|^{1/2}`` (zero for a zero group), so ``s_g^2 = |v_g|^2``;
    on it ``G_gg = 2 |beta_g|``.

    Balance: ``imbalance[g] = s_g^2 - |v_g|^2``, conserved by gradient flow.
    """

    dim: int = eqx.field(static=True)
    group_size: int = eqx.field(static=True)
    features: eqx.Module

    def __init__(self, dim: int, group_size: int, features=None):
        if dim < 1 or group_size < 1 or dim % group_size:
            raise ValueError(f"GroupHadamard: group_size ({group_size}) must be a positive divisor of dim ({dim})")
        self.dim = dim
        self.group_size = group_size
        self.features = as_features(features, dim)

    @property
    def groups(self) -> int:
        return self.dim // self.group_size

    @property
    def block_shapes(self):
        return {"s": (self.groups,), "v": (self.dim,)}

    @property
    def input_shape(self):
        return self.features.input_shape

    @property
    def input_bounds(self):
        return None

    @property
    def output_shape(self):
        return ()

    @property
    def data_kinds(self):
        return self.features.data_kinds

    def _groups(self, theta):
        b = self.unflatten(theta)
        return b["s"], b["v"].reshape(self.groups, self.group_size)

    def weights(self, theta: Float[Array, " p"]) -> Float[Array, " dim"]:
        """``beta = (s_g v_g)_g``."""
        s, v = self._groups(theta)
        return (s[:, None] * v).reshape(self.dim)

    def predict(self, theta, x) -> Float[Array, ""]:
        return self.features(x) @ self.weights(theta)

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    @property
    def lie_algebra_dim(self) -> int:
        return self.groups

    def action(self, theta, t):
        s, v = self._groups(theta)
        a = jnp.exp(t)
        return self.flatten({"s": s * a, "v": (v / a[:, None]).reshape(self.dim)})

    def generators(self, theta):
        return generators_by_jvp(self, theta)

    def invariants(self, theta):
        return self.weights(theta)

    def section(self, q):
        beta = q.reshape(self.groups, self.group_size)
        norm = jnp.linalg.norm(beta, axis=1)
        root = jnp.sqrt(norm)
        safe = jnp.where(norm > 0, root, 1.0)
        v = jnp.where(norm[:, None] > 0, beta / safe[:, None], 0.0)
        return self.flatten({"s": root, "v": v.reshape(self.dim)})

    def balance(self, theta):
        s, v = self._groups(theta)
        return {"imbalance": s**2 - jnp.sum(v**2, axis=1)}

    @property
    def unbalance_length(self):
        return self.groups

    def unbalance(self, theta, log_scales):
        return self.action(theta, log_scales)

"""The plain linear model: no redundancy, no symmetry (the vanilla baseline)."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import AbstractModel, predict_each
from ._features import IdentityFeatures, as_features


class Linear(AbstractModel):
    """``f(w; x) = phi(x) . w``; the symmetry group is trivial (``k = 0``)."""

    dim: int = eqx.field(static=True)
    features: eqx.Module = IdentityFeatures(1)

    def __init__(self, dim: int, features=None):
        if dim < 1:
            raise ValueError(f"Linear dim must be positive, got {dim}")
        self.dim = dim
        self.features = as_features(features, dim)

    @property
    def block_shapes(self):
        return {"w": (self.dim,)}

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

    def predict(self, theta, x) -> Float[Array, ""]:
        return self.features(x) @ theta

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    @property
    def lie_algebra_dim(self) -> int:
        return 0

    def action(self, theta, s):
        return theta

    def generators(self, theta):
        return jnp.zeros((0, theta.shape[-1]), theta.dtype)

    def invariants(self, theta):
        return theta

    def section(self, q):
        return q

    def balance(self, theta):
        return {}

    @property
    def unbalance_length(self) -> int:
        return 0

    def unbalance(self, theta, log_scales):
        return theta

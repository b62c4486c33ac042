"""The plain linear model: no redundancy, no symmetry (the vanilla baseline)."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import AbstractModel
from ._features import IdentityFeatures


class Linear(AbstractModel):
    """``f(w; x) = phi(x) . w``; the symmetry group is trivial (``k = 0``)."""

    dim: int = eqx.field(static=True)
    features: eqx.Module = IdentityFeatures(1)

    def __init__(self, dim: int, features=None):
        self.dim = dim
        self.features = features if features is not None else IdentityFeatures(dim)

    @property
    def block_shapes(self):
        return {"w": (self.dim,)}

    def predict(self, theta, x) -> Float[Array, ""]:
        return self.features(x) @ theta

    @property
    def lie_algebra_dim(self) -> int:
        return 0

    def action(self, theta, s):
        return theta

    def invariants(self, theta):
        return theta

    def section(self, q):
        return q

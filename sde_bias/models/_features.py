"""Feature maps ``phi(x)`` for linear-in-features predictors ``f = phi(x) . w``."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


class IdentityFeatures(eqx.Module):
    """``phi(x) = x`` for ``x`` in ``R^d``."""

    dim: int = eqx.field(static=True)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        return jnp.asarray(x).reshape(self.dim)


class CosineFeatures(eqx.Module):
    """``phi_k(t) = cos(2 pi k t)``, ``k = 0..dim-1`` for a scalar ``t``.

    The basis of the paper's sparse spectral recovery (arXiv:2601.06597, section 5).
    """

    dim: int = eqx.field(static=True)

    def __call__(self, t) -> Float[Array, " d"]:
        t = jnp.asarray(t).reshape(())
        return jnp.cos(2 * jnp.pi * jnp.arange(self.dim, dtype=t.dtype) * t)


def make_features(kind: str, dim: int):
    """Feature map by name: ``identity`` or ``cosine``."""
    if kind == "identity":
        return IdentityFeatures(dim)
    if kind == "cosine":
        return CosineFeatures(dim)
    raise ValueError(f"unknown feature map {kind!r}; expected 'identity' or 'cosine'")

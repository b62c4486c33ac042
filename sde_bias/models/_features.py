"""Feature maps ``phi(x)`` for linear-in-features predictors ``f = phi(x) . w``.

A feature map says what one input looks like (:attr:`input_shape`) and which generated data
fit it (:attr:`data_kinds`); the models over a feature map pass both on.
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


class IdentityFeatures(eqx.Module):
    """``phi(x) = x`` for ``x`` in ``R^d``."""

    dim: int = eqx.field(static=True)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    @property
    def data_kinds(self) -> frozenset[str]:
        """Gaussian inputs (teacher/student) and measurement rows (step signals)."""
        return frozenset({"teacher_student", "step_signal"})

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        return jnp.asarray(x).reshape(self.dim)


class CosineFeatures(eqx.Module):
    """``phi_k(t) = cos(2 pi k t)``, ``k = 0..dim-1`` for a scalar ``t``.

    The basis of the paper's sparse spectral recovery (arXiv:2601.06597, section 5).
    """

    dim: int = eqx.field(static=True)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return ()

    @property
    def data_kinds(self) -> frozenset[str]:
        """Points ``t`` in ``[0, 1]`` (sparse cosine signals)."""
        return frozenset({"sparse_cosine"})

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


def as_features(features, dim: int):
    """A feature map from a name (``identity``, ``cosine``), a feature Module, or ``None``
    (identity)."""
    if features is None:
        return IdentityFeatures(dim)
    if isinstance(features, str):
        return make_features(features, dim)
    return features

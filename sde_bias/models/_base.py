"""The model interface: a redundant parameterization with its symmetry.

Every model works on a *flat* parameter vector ``theta`` of shape ``(p,)``; named
blocks (``P``, ``Q``, ``W``, ...) are views produced by :meth:`AbstractModel.unflatten`.
A flat vector is what diffrax integrates, what the Gram matrix of the symmetry
generators is built from, and what the Itô projection differentiates, so one
representation serves every module.

The symmetry (docs/theory.md section 2.1) is a Lie group ``G`` acting on parameter space,
``theta -> phi_g(theta)``, that leaves the predictor unchanged. A model declares it by
:meth:`AbstractModel.action`, ``phi_{exp(sum_a s_a A_a)}(theta)`` for coordinates
``s`` of the Lie algebra in a fixed basis ``A_1..A_k``. The generator fields
``xi_a(theta) = d/ds phi_{exp(s A_a)}(theta) |_{s=0}`` then come from one ``jax.jvp``
each (:meth:`AbstractModel.generators`).
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


class AbstractModel(eqx.Module):
    """A parameterization ``theta -> f(theta; x)`` with a continuous symmetry.

    Subclasses are immutable equinox Modules whose fields are static sizes. They
    implement:

    - :attr:`block_shapes`: the named parameter blocks and their shapes;
    - :meth:`predict`: the predictor ``f(theta; x)`` for ONE input ``x``;
    - :attr:`lie_algebra_dim` and :meth:`action`: the symmetry;
    - :meth:`invariants`: ``q = pi(theta)``, constant on orbits;
    - :meth:`section`: the balanced representative ``theta(q)`` with ``pi(theta(q)) = q``.
    """

    @property
    @abc.abstractmethod
    def block_shapes(self) -> dict[str, tuple[int, ...]]:
        """Ordered mapping from block name to its shape."""

    @abc.abstractmethod
    def predict(self, theta: Float[Array, " p"], x) -> Float[Array, "..."]:
        """The predictor on a single input ``x``."""

    @property
    @abc.abstractmethod
    def lie_algebra_dim(self) -> int:
        """Dimension ``k`` of the Lie algebra of the symmetry group (0: none)."""

    @abc.abstractmethod
    def action(self, theta: Float[Array, " p"], s: Float[Array, " k"]) -> Float[Array, " p"]:
        """``phi_{exp(sum_a s_a A_a)}(theta)``: the group element with Lie-algebra
        coordinates ``s`` applied to ``theta``."""

    @abc.abstractmethod
    def invariants(self, theta: Float[Array, " p"]) -> Float[Array, " d"]:
        """``q = pi(theta)``: a flat vector of functions constant on every orbit."""

    @abc.abstractmethod
    def section(self, q: Float[Array, " d"]) -> Float[Array, " p"]:
        """The balanced representative of the orbit with invariants ``q``."""

    def predict_batch(self, theta: Float[Array, " p"], xs) -> Float[Array, "n ..."]:
        """The predictor on a batch of inputs (leading axis). Defaults to ``vmap`` of
        :meth:`predict`; models override it when a batched form is much faster (e.g.
        matrix completion: one matmul, then a gather)."""
        return jax.vmap(lambda x: self.predict(theta, x))(xs)

    # ------------------------------------------------------------------ blocks
    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.block_shapes.values())

    def unflatten(self, theta: Float[Array, " p"]) -> dict[str, Array]:
        """Split the flat vector into its named blocks (views, in declaration order)."""
        out, start = {}, 0
        for name, shape in self.block_shapes.items():
            size = math.prod(shape)
            out[name] = theta[..., start : start + size].reshape(theta.shape[:-1] + shape)
            start += size
        return out

    def flatten(self, blocks: dict[str, Array]) -> Float[Array, " p"]:
        """Inverse of :meth:`unflatten`."""
        parts = []
        for name, shape in self.block_shapes.items():
            b = jnp.asarray(blocks[name])
            parts.append(b.reshape(b.shape[: b.ndim - len(shape)] + (-1,)))
        return jnp.concatenate(parts, axis=-1)

    # ------------------------------------------------------------------ init
    def init(
        self,
        key: PRNGKeyArray,
        std: float | dict[str, float] = 1.0,
        dtype=None,
    ) -> Float[Array, " p"]:
        """Gaussian initialisation ``N(0, std^2)`` per block (``std`` may be a dict by block)."""
        dtype = dtype or jnp.result_type(float)
        blocks = {}
        keys = jax.random.split(key, len(self.block_shapes))
        for k, (name, shape) in zip(keys, self.block_shapes.items()):
            s = std[name] if isinstance(std, dict) else std
            blocks[name] = s * jax.random.normal(k, shape, dtype)
        return self.flatten(blocks)

    # ------------------------------------------------------------------ symmetry
    def generators(self, theta: Float[Array, " p"]) -> Float[Array, "k p"]:
        """Generator fields ``xi_a(theta)``, one row per Lie-algebra basis element.

        ``xi_a = d/ds action(theta, s e_a) |_{s=0}``, one ``jax.jvp`` per basis vector.
        """
        k = self.lie_algebra_dim
        if k == 0:
            return jnp.zeros((0, theta.shape[-1]), theta.dtype)
        zero = jnp.zeros((k,), theta.dtype)

        def one(e):
            return jax.jvp(lambda s: self.action(theta, s), (zero,), (e,))[1]

        return jax.vmap(one)(jnp.eye(k, dtype=theta.dtype))

    def balance(self, theta: Float[Array, " p"]) -> dict[str, Array]:
        """Balance observables of the symmetry (model specific; empty by default)."""
        return {}

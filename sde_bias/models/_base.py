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
``xi_a(theta) = d/ds phi_{exp(s A_a)}(theta) |_{s=0}`` come from one ``jax.jvp`` each
(:func:`generators_by_jvp`) or from a closed form (:meth:`AbstractModel.generators`).
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

FINAL_MEMBERS = ("num_params", "unflatten", "flatten", "init")
"""The concrete members of :class:`AbstractModel`: derived from ``block_shapes``, never
overridden."""


class AbstractModel(eqx.Module):
    """The model interface: a parameterization ``theta -> f(theta; x)`` with its symmetry.

    Everything the package asks about a model is declared here, and only here: scenario
    validation, the build, the observables and the theory stage ask the model rather than
    switching on its name. Concrete models are final equinox Modules (never subclassed)
    whose fields are static sizes (and feature maps); every abstract member below is a
    *fact* of the model:

    - parameters: :attr:`block_shapes`;
    - data: :attr:`input_shape`, :attr:`input_bounds`, :attr:`output_shape`,
      :attr:`data_kinds`;
    - predictor: :meth:`predict`, :meth:`predict_batch`;
    - symmetry (docs/theory.md section 2.1): :attr:`lie_algebra_dim`, :meth:`action`,
      :meth:`generators`;
    - quotient (docs/theory.md section 3.1): :meth:`invariants`, :meth:`section`,
      :meth:`balance`;
    - initialisation: :attr:`unbalance_length`, :meth:`unbalance`.

    A member with a usual implementation is still abstract (each model states it); the
    usual implementation is one call: :func:`predict_each`, :func:`generators_by_jvp`,
    :meth:`action`. The concrete members (:attr:`num_params`, :meth:`unflatten`,
    :meth:`flatten`, :meth:`init`) follow from :attr:`block_shapes` and are final: no model
    overrides them.
    """

    # ------------------------------------------------------------------ parameters
    @property
    @abc.abstractmethod
    def block_shapes(self) -> dict[str, tuple[int, ...]]:
        """Ordered mapping from block name to its shape (``theta`` is their concatenation)."""

    # ------------------------------------------------------------------ data
    @property
    @abc.abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input ``x``."""

    @property
    @abc.abstractmethod
    def input_bounds(self) -> tuple[int, ...] | None:
        """``None`` for real inputs; for integer (index) inputs the exclusive upper bound of
        each component (``0 <= x[i] < input_bounds[i]``), e.g. ``(rows, cols)`` for one
        matrix entry."""

    @property
    @abc.abstractmethod
    def output_shape(self) -> tuple[int, ...]:
        """Shape of ``f(theta; x)`` for one input."""

    @property
    @abc.abstractmethod
    def data_kinds(self) -> frozenset[str]:
        """The generated data types (scenario ``data.type``) whose inputs this model takes:
        ``teacher_student`` (Gaussian inputs of :attr:`input_shape`), ``completion``
        (matrix entries), ``sparse_cosine`` (points ``t`` in ``[0, 1]``), ``step_signal``
        (measurement rows). Inline (``fixed``) and file (``file``) data fit every model and
        are checked by shape."""

    # ------------------------------------------------------------------ predictor
    @abc.abstractmethod
    def predict(self, theta: Float[Array, " p"], x) -> Float[Array, "..."]:
        """The predictor on a single input ``x`` (shape :attr:`output_shape`)."""

    @abc.abstractmethod
    def predict_batch(self, theta: Float[Array, " p"], xs) -> Float[Array, "n ..."]:
        """The predictor on a batch of inputs (leading axis): :func:`predict_each`, or a
        faster batched form (e.g. matrix completion: one matmul, then a gather)."""

    # ------------------------------------------------------------------ symmetry
    @property
    @abc.abstractmethod
    def lie_algebra_dim(self) -> int:
        """Dimension ``k`` of the Lie algebra of the symmetry group (0: none)."""

    @abc.abstractmethod
    def action(self, theta: Float[Array, " p"], s: Float[Array, " k"]) -> Float[Array, " p"]:
        """``phi_{exp(sum_a s_a A_a)}(theta)``: the group element with Lie-algebra
        coordinates ``s`` applied to ``theta``."""

    @abc.abstractmethod
    def generators(self, theta: Float[Array, " p"]) -> Float[Array, "k p"]:
        """Generator fields ``xi_a(theta) = d/ds action(theta, s e_a) |_{s=0}``, one row per
        Lie-algebra basis element: :func:`generators_by_jvp`, or a closed form."""

    # ------------------------------------------------------------------ quotient
    @abc.abstractmethod
    def invariants(self, theta: Float[Array, " p"]) -> Float[Array, " d"]:
        """``q = pi(theta)``: a flat vector of functions constant on every orbit."""

    @abc.abstractmethod
    def section(self, q: Float[Array, " d"]) -> Float[Array, " p"]:
        """The balanced representative of the orbit with invariants ``q``."""

    @abc.abstractmethod
    def balance(self, theta: Float[Array, " p"]) -> dict[str, Array]:
        """Balance observables (recorded as ``balance/<name>``): quantities that gradient
        flow conserves and noise moves (docs/theory.md section 2.4); ``{}`` for none."""

    # ------------------------------------------------------------------ initialisation
    @property
    @abc.abstractmethod
    def unbalance_length(self) -> int:
        """Number of entries of ``init.unbalance.log_scales`` (0: nothing to unbalance)."""

    @abc.abstractmethod
    def unbalance(self, theta: Float[Array, " p"], log_scales: Float[Array, " n"]) -> Float[Array, " p"]:
        """Move ``theta`` along its orbit by the diagonal group element ``exp(log_scales)``
        (scenario key ``init.unbalance``; :attr:`unbalance_length` entries)."""

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


def predict_each(model: AbstractModel, theta: Float[Array, " p"], xs) -> Float[Array, "n ..."]:
    """``model.predict`` on every input of a batch (``jax.vmap`` over the leading axis)."""
    return jax.vmap(lambda x: model.predict(theta, x))(xs)


def generators_by_jvp(model: AbstractModel, theta: Float[Array, " p"]) -> Float[Array, "k p"]:
    """Generator fields ``xi_a = d/ds model.action(theta, s e_a) |_{s=0}``, one ``jax.jvp``
    per Lie-algebra basis vector (``[0, p]`` when ``k = 0``)."""
    k = model.lie_algebra_dim
    if k == 0:
        return jnp.zeros((0, theta.shape[-1]), theta.dtype)
    zero = jnp.zeros((k,), theta.dtype)

    def one(e):
        return jax.jvp(lambda s: model.action(theta, s), (zero,), (e,))[1]

    return jax.vmap(one)(jnp.eye(k, dtype=theta.dtype))

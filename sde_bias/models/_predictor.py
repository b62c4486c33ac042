"""A bare predictor function as a model, with a given (e.g. discovered) linear symmetry.

``f(theta; x) = function(params, x)`` where ``params`` is the dict of named blocks of the
flat vector ``theta``. The symmetry is a Lie algebra of *linear* vector fields
``theta -> X_a theta`` (``X_a`` in ``gl(p)``), such as the one
:func:`sde_bias.discovery.discover_symmetries` finds from the predictor alone
(docs/theory.md section 2.7); :func:`sde_bias.user_models.load_predictor` builds this model
that way from a scenario's ``model: {type: predictor, ...}``. Every theory function then
works on it: the generator fields are ``X_a theta``, the group element with coordinates
``s`` is ``expm(sum_a s_a X_a)``, the balance observables are the quadratics
``theta^T A theta`` of the symmetric elements ``A`` of the algebra (docs/theory.md
section 2.4).
"""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float

from ._base import AbstractModel, predict_each


class Predictor(AbstractModel):
    """``f(theta; x) = function(params, x)`` with the linear symmetry algebra ``basis``.

    **Fields:**

    - ``function``: ``(params: dict[str, Array], x) -> Array`` (jittable).
    - ``shapes``: ``((name, shape), ...)``, the parameter blocks in order.
    - ``in_shape``, ``out_shape``: shapes of one input and of one output.
    - ``basis``: ``[k, p, p]`` matrices ``X_a`` of the symmetry algebra (float64 numpy).
    - ``charges``: ``[n, p, p]`` symmetric matrices ``A`` in the algebra's span (the
      balance observables ``charge[i] = theta^T A_i theta``).
    - ``probes``: ``[m, *in_shape]`` inputs; without ``invariants_fn`` the invariants are
      the predictions at these inputs (constant on every orbit, since the predictor is).
    - ``invariants_fn``: optional ``params -> q``; ``section_fn``: optional
      ``q -> params``, its balanced representative (without it :meth:`section` raises).
    """

    function: Callable = eqx.field(static=True)
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = eqx.field(static=True)
    in_shape: tuple[int, ...] = eqx.field(static=True)
    out_shape: tuple[int, ...] = eqx.field(static=True)
    basis: np.ndarray
    charges: np.ndarray
    probes: np.ndarray
    invariants_fn: Callable | None = eqx.field(static=True, default=None)
    section_fn: Callable | None = eqx.field(static=True, default=None)

    @property
    def block_shapes(self):
        return dict(self.shapes)

    @property
    def input_shape(self):
        return self.in_shape

    @property
    def input_bounds(self):
        return None

    @property
    def output_shape(self):
        return self.out_shape

    @property
    def data_kinds(self):
        return frozenset({"teacher_student"})

    def predict(self, theta, x):
        return jnp.asarray(self.function(self.unflatten(theta), x))

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    # ------------------------------------------------------------------ symmetry
    @property
    def lie_algebra_dim(self) -> int:
        return int(self.basis.shape[0])

    def _basis(self, dtype) -> Float[Array, "k p p"]:
        return jnp.asarray(self.basis, dtype)

    def action(self, theta, s):
        """``expm(sum_a s_a X_a) theta``."""
        if self.lie_algebra_dim == 0:
            return theta
        X = jnp.einsum("a,apq->pq", s.astype(theta.dtype), self._basis(theta.dtype))
        return jsl.expm(X) @ theta

    def generators(self, theta):
        """``xi_a = X_a theta``."""
        return jnp.einsum("apq,q->ap", self._basis(theta.dtype), theta)

    # ------------------------------------------------------------------ quotient
    def invariants(self, theta):
        if self.invariants_fn is not None:
            return jnp.ravel(jnp.asarray(self.invariants_fn(self.unflatten(theta))))
        xs = jnp.asarray(self.probes, theta.dtype)
        return predict_each(self, theta, xs).ravel()

    def section(self, q):
        if self.section_fn is None:
            raise ValueError(
                "this predictor model has no balanced section: give model.section "
                "(a function q -> params, with model.invariants)"
            )
        params = self.section_fn(q)
        return self.flatten({name: jnp.asarray(params[name], q.dtype) for name, _ in self.shapes})

    def balance(self, theta):
        if self.charges.shape[0] == 0:
            return {}
        A = jnp.asarray(self.charges, theta.dtype)
        return {"charge": jnp.einsum("p,npq,q->n", theta, A, theta)}

    # ------------------------------------------------------------------ initialisation
    @property
    def unbalance_length(self) -> int:
        return self.lie_algebra_dim

    def unbalance(self, theta, log_scales):
        """The group element with Lie-algebra coordinates ``log_scales``."""
        return self.action(theta, log_scales)

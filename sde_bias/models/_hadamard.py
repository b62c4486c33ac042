"""Hadamard (diagonal linear network) parameterizations.

``w = p * q`` (depth 2) and ``w = u_1 * ... * u_D`` (depth D), with a linear predictor
``f = phi(x) . w``. The rescalings ``(a p_j, q_j / a)`` leave ``w`` unchanged; on the
balanced section ``log det G = sum_j log 2|w_j|`` (depth 2), which is the
sparsity-inducing potential of docs/theory.md section 3.4 (Woodworth et al. 2020 study the
same parameterization; the geometric reading is arXiv:2601.06597).
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import AbstractModel, generators_by_jvp, predict_each
from ._features import as_features


class ScalarProduct(AbstractModel):
    """``f(u, v; x) = u v x`` with ``u, v`` scalars: the hyperbola toy.

    Group ``R_{>0}`` acting as ``(a u, v / a)``; generator ``xi = (u, -v)``;
    invariant ``w = u v``; balanced section ``u = sqrt|w|, v = sign(w) sqrt|w|``.
    """

    @property
    def block_shapes(self):
        return {"u": (), "v": ()}

    @property
    def input_shape(self):
        return ()

    @property
    def input_bounds(self):
        return None

    @property
    def output_shape(self):
        return ()

    @property
    def data_kinds(self):
        return frozenset({"teacher_student"})

    def predict(self, theta, x) -> Float[Array, ""]:
        return theta[0] * theta[1] * jnp.asarray(x).reshape(())

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    @property
    def lie_algebra_dim(self) -> int:
        return 1

    def action(self, theta, s):
        a = jnp.exp(s[0])
        return jnp.stack([theta[0] * a, theta[1] / a])

    def generators(self, theta):
        return generators_by_jvp(self, theta)

    def invariants(self, theta):
        return (theta[0] * theta[1])[None]

    def section(self, q):
        r = jnp.sqrt(jnp.abs(q[0]))
        return jnp.stack([r, jnp.sign(q[0]) * r])

    def balance(self, theta):
        return {"imbalance": theta[0] ** 2 - theta[1] ** 2}

    @property
    def unbalance_length(self):
        return 1

    def unbalance(self, theta, log_scales):
        return self.action(theta, log_scales)


class Hadamard(AbstractModel):
    """``f(p, q; x) = phi(x) . (p * q)``.

    Group ``(R_{>0})^d`` acting as ``(a_j p_j, q_j / a_j)``; invariants ``w = p * q``;
    balanced section ``p = sqrt|w|, q = sign(w) sqrt|w|``.
    """

    dim: int = eqx.field(static=True)
    features: eqx.Module

    def __init__(self, dim: int, features=None):
        if dim < 1:
            raise ValueError(f"Hadamard dim must be positive, got {dim}")
        self.dim = dim
        self.features = as_features(features, dim)

    @property
    def block_shapes(self):
        return {"p": (self.dim,), "q": (self.dim,)}

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

    def weights(self, theta) -> Float[Array, " d"]:
        b = self.unflatten(theta)
        return b["p"] * b["q"]

    def predict(self, theta, x) -> Float[Array, ""]:
        return self.features(x) @ self.weights(theta)

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    @property
    def lie_algebra_dim(self) -> int:
        return self.dim

    def action(self, theta, s):
        b = self.unflatten(theta)
        a = jnp.exp(s)
        return self.flatten({"p": b["p"] * a, "q": b["q"] / a})

    def generators(self, theta):
        return generators_by_jvp(self, theta)

    def invariants(self, theta):
        return self.weights(theta)

    def section(self, q):
        r = jnp.sqrt(jnp.abs(q))
        return self.flatten({"p": r, "q": jnp.sign(q) * r})

    def balance(self, theta):
        b = self.unflatten(theta)
        return {"imbalance": b["p"] ** 2 - b["q"] ** 2}

    @property
    def unbalance_length(self):
        return self.dim

    def unbalance(self, theta, log_scales):
        return self.action(theta, log_scales)


class DeepHadamard(AbstractModel):
    """``f = phi(x) . (u_1 * ... * u_D)`` (depth-D diagonal network).

    Group ``(R_{>0})^{d (D-1)}``: for each coordinate ``j`` and layer ``l < D`` the
    generator scales ``u_l[j]`` up and ``u_{l+1}[j]`` down. Invariants ``w``; balanced
    section ``|u_l[j]| = |w_j|^{1/D}`` with the sign carried by the last layer. On it
    ``log det G = sum_j [log D + (2 (D-1) / D) log |w_j|]`` (docs/theory.md section 3.4).
    """

    dim: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    features: eqx.Module

    def __init__(self, dim: int, depth: int, features=None):
        if depth < 2:
            raise ValueError(f"DeepHadamard needs depth >= 2, got {depth}")
        self.dim = dim
        self.depth = depth
        self.features = as_features(features, dim)

    @property
    def block_shapes(self):
        return {f"u{l + 1}": (self.dim,) for l in range(self.depth)}

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

    def _layers(self, theta):
        return jnp.stack(list(self.unflatten(theta).values()))  # [D, d]

    def weights(self, theta) -> Float[Array, " d"]:
        return jnp.prod(self._layers(theta), axis=0)

    def predict(self, theta, x) -> Float[Array, ""]:
        return self.features(x) @ self.weights(theta)

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    @property
    def lie_algebra_dim(self) -> int:
        return self.dim * (self.depth - 1)

    def action(self, theta, s):
        s = s.reshape(self.depth - 1, self.dim)  # s[l, j] scales layer l up, l+1 down
        zeros = jnp.zeros((1, self.dim), s.dtype)
        log_scale = jnp.concatenate([s, zeros]) - jnp.concatenate([zeros, s])
        layers = self._layers(theta) * jnp.exp(log_scale)
        return layers.reshape(-1)

    def generators(self, theta):
        return generators_by_jvp(self, theta)

    def invariants(self, theta):
        return self.weights(theta)

    def section(self, q):
        r = jnp.abs(q) ** (1.0 / self.depth)
        layers = jnp.tile(r, (self.depth, 1)).at[-1].multiply(jnp.sign(q))
        return layers.reshape(-1)

    def balance(self, theta):
        sq = self._layers(theta) ** 2
        return {"imbalance": sq[:-1] - sq[1:]}

    @property
    def unbalance_length(self):
        return self.dim * (self.depth - 1)

    def unbalance(self, theta, log_scales):
        return self.action(theta, log_scales)

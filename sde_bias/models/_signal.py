"""Cumulative sum of a Hadamard product: ``s = cumsum(w1 * w2)``.

The increments ``s_j - s_{j-1} = w1_j w2_j`` form a Hadamard product, so the sparsity bias
of the Hadamard model acts on the increments: on the balanced section
``log det G = sum_j log 2 |s_j - s_{j-1}|`` (``s_0 = 0``), which favours piecewise-constant
signals of small total variation (docs/theory.md sections 3.4 and 6; arXiv:2601.06597,
experiment 5 of docs/paper_experiments.md).
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import AbstractModel, generators_by_jvp, predict_each


class CumsumHadamard(AbstractModel):
    """``signal(w1, w2) = cumsum(w1 * w2)`` of length ``length``; a sample ``x`` is one
    row of the measurement matrix and ``f(theta; x) = x . signal``.

    Symmetry: ``(R_{>0})^length`` acting as ``(exp(s_j) w1_j, w2_j / exp(s_j))``.
    Invariants: the signal itself. Balanced section: increments
    ``w = diff(signal, prepend=0)``, ``w1 = sqrt|w|``, ``w2 = sign(w) sqrt|w|``.
    """

    length: int = eqx.field(static=True)

    def __init__(self, length: int):
        if length < 1:
            raise ValueError(f"CumsumHadamard length must be positive, got {length}")
        self.length = length

    @property
    def block_shapes(self):
        return {"w1": (self.length,), "w2": (self.length,)}

    @property
    def input_shape(self):
        return (self.length,)

    @property
    def input_bounds(self):
        return None

    @property
    def output_shape(self):
        return ()

    @property
    def data_kinds(self):
        return frozenset({"teacher_student", "step_signal"})

    def signal(self, theta: Float[Array, " p"]) -> Float[Array, " length"]:
        b = self.unflatten(theta)
        return jnp.cumsum(b["w1"] * b["w2"])

    def predict(self, theta: Float[Array, " p"], x: Float[Array, " length"]) -> Float[Array, ""]:
        return jnp.asarray(x).reshape(self.length) @ self.signal(theta)

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    @property
    def lie_algebra_dim(self) -> int:
        return self.length

    def action(self, theta, s):
        b = self.unflatten(theta)
        a = jnp.exp(s)
        return self.flatten({"w1": b["w1"] * a, "w2": b["w2"] / a})

    def generators(self, theta):
        return generators_by_jvp(self, theta)

    def invariants(self, theta):
        return self.signal(theta)

    def section(self, q):
        w = jnp.diff(q, prepend=jnp.zeros((1,), q.dtype))
        r = jnp.sqrt(jnp.abs(w))
        return self.flatten({"w1": r, "w2": jnp.sign(w) * r})

    def balance(self, theta):
        b = self.unflatten(theta)
        return {"imbalance": b["w1"] ** 2 - b["w2"] ** 2}

    @property
    def unbalance_length(self):
        return self.length

    def unbalance(self, theta, log_scales):
        return self.action(theta, log_scales)

"""Two-layer ReLU network ``f(x) = V relu(W x)`` (no biases).

ReLU is positively homogeneous, ``relu(a z) = a relu(z)`` for ``a > 0``, so rescaling a
hidden unit's incoming weights by ``a`` and its outgoing weights by ``1 / a`` leaves the
network function unchanged: the group is ``(R_{>0})^hidden``, one factor per unit. On
the balanced section ``log det G = sum_j log(2 |W_j| |V_j|)`` (docs/theory.md section 3.4;
arXiv:2601.06597, experiment 1 of docs/paper_experiments.md).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import AbstractModel, generators_by_jvp, predict_each


class TwoLayerReLU(AbstractModel):
    """``f(W, V; x) = V relu(W x)`` with ``W`` of shape ``(hidden, in_dim)`` and ``V`` of
    shape ``(out_dim, hidden)``; the output has shape ``(out_dim,)``.

    Symmetry: ``(R_{>0})^hidden``; coordinate ``s_j`` multiplies row ``j`` of ``W`` by
    ``exp(s_j)`` and column ``j`` of ``V`` by ``exp(-s_j)``. Generator of unit ``j``:
    ``xi_j = (W[j, :] in row j of W, -V[:, j] in column j of V)``.

    Invariants: the per-unit outer products ``M_j = V[:, j] W[j, :]^T`` (shape
    ``(out_dim, in_dim)``), stacked to ``(hidden, out_dim, in_dim)`` and flattened.

    Balanced section: per unit, the rank-1 SVD ``M_j = sigma a b^T`` gives
    ``W[j, :] = sqrt(sigma) b`` and ``V[:, j] = sqrt(sigma) a`` (so
    ``|W[j, :]| = |V[:, j]|``). Sign convention: the pair ``(a, b)`` is flipped to
    ``(-a, -b)`` if needed so that the largest-magnitude entry of ``b`` (the incoming
    weights) is positive; a unit with ``M_j = 0`` maps to zero weights.

    Caveat: ``M_j`` fixes ``(W[j, :], V[:, j])`` only up to ``(c W[j, :], V[:, j] / c)``
    with ``c`` any nonzero real. Positive ``c`` is the symmetry; negative ``c`` is NOT
    (``relu(-z) != -relu(z)``), so ``pi`` does not determine the network function, and
    :meth:`section` returns the representative with the sign convention above. The
    section of ``pi(theta)`` reproduces ``theta``'s function exactly when ``theta``'s
    units already obey that convention.
    """

    in_dim: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        if min(in_dim, hidden, out_dim) < 1:
            raise ValueError(
                f"TwoLayerReLU sizes must be positive, got in_dim={in_dim}, "
                f"hidden={hidden}, out_dim={out_dim}"
            )
        self.in_dim = in_dim
        self.hidden = hidden
        self.out_dim = out_dim

    @property
    def block_shapes(self):
        return {"W": (self.hidden, self.in_dim), "V": (self.out_dim, self.hidden)}

    @property
    def input_shape(self):
        return (self.in_dim,)

    @property
    def input_bounds(self):
        return None

    @property
    def output_shape(self):
        return (self.out_dim,)

    @property
    def data_kinds(self):
        return frozenset({"teacher_student"})

    def predict(
        self, theta: Float[Array, " p"], x: Float[Array, " in_dim"]
    ) -> Float[Array, " out_dim"]:
        b = self.unflatten(theta)
        return b["V"] @ jax.nn.relu(b["W"] @ jnp.asarray(x).reshape(self.in_dim))

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    @property
    def lie_algebra_dim(self) -> int:
        return self.hidden

    def action(self, theta, s):
        b = self.unflatten(theta)
        a = jnp.exp(s)
        return self.flatten({"W": b["W"] * a[:, None], "V": b["V"] / a[None, :]})

    def generators(self, theta):
        return generators_by_jvp(self, theta)

    def unit_products(self, theta: Float[Array, " p"]) -> Float[Array, "hidden out_dim in_dim"]:
        """``M_j = V[:, j] W[j, :]^T`` for every hidden unit ``j``."""
        b = self.unflatten(theta)
        return jnp.einsum("oj,ji->joi", b["V"], b["W"])

    def invariants(self, theta):
        return self.unit_products(theta).ravel()

    def section(self, q):
        M = q.reshape(self.hidden, self.out_dim, self.in_dim)
        u, sig, vt = jnp.linalg.svd(M, full_matrices=False)  # batched over units
        a, b, root = u[:, :, 0], vt[:, 0, :], jnp.sqrt(sig[:, 0])
        # sign convention: largest-magnitude entry of b positive
        lead = jnp.take_along_axis(b, jnp.argmax(jnp.abs(b), axis=1)[:, None], axis=1)[:, 0]
        sign = jnp.where(lead < 0, -1.0, 1.0).astype(b.dtype)
        W = (sign * root)[:, None] * b
        V = ((sign * root)[:, None] * a).T
        return self.flatten({"W": W, "V": V})

    def balance(self, theta):
        """``unit_ratio[j] = |V[:, j]| / |W[j, :]|`` and
        ``unit_imbalance[j] = |V[:, j]|^2 - |W[j, :]|^2`` (1 and 0 when balanced)."""
        b = self.unflatten(theta)
        w = jnp.linalg.norm(b["W"], axis=1)
        v = jnp.linalg.norm(b["V"], axis=0)
        return {"unit_ratio": v / w, "unit_imbalance": v**2 - w**2}

    @property
    def unbalance_length(self):
        return self.hidden

    def unbalance(self, theta, log_scales):
        """:func:`unbalance_units`."""
        return unbalance_units(self, theta, log_scales)


def unbalance_units(
    model: TwoLayerReLU, theta: Float[Array, " p"], log_scales: Float[Array, " hidden"]
) -> Float[Array, " p"]:
    """Multiply row ``j`` of ``W`` by ``exp(s_j)`` and divide column ``j`` of ``V`` by it.

    This is the initial unbalancing of the paper's experiment 1 (docs/paper_experiments.md,
    ``s = linspace(-1.2, 1.2, hidden)``). It is a group element, so the network function
    is unchanged, and ``|V[:, j]| / |W[j, :]|`` is multiplied by ``exp(-2 s_j)``.
    """
    b = model.unflatten(theta)
    a = jnp.exp(jnp.asarray(log_scales, dtype=theta.dtype))
    return model.flatten({"W": b["W"] * a[:, None], "V": b["V"] / a[None, :]})

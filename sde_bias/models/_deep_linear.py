"""Deep linear network ``f(x) = W_L ... W_1 x`` and its ``GL(h_k)`` symmetries.

Between layers ``k`` and ``k + 1`` any invertible ``A`` in ``GL(h_k)`` acts as
``(W_{k+1} A, A^{-1} W_k)`` without changing the product, so the group is the product of
``GL(h_k)`` over the inner widths and its Lie algebra has dimension ``sum_k h_k^2``. Gradient
flow conserves each ``W_{k+1}^T W_{k+1} - W_k W_k^T`` (the balance law of docs/theory.md
section 2.4, Arora et al. 2018); for ``L = 2`` the model is the matrix factorization
``W_2 W_1`` applied to an input, and its Gram matrix has the closed form of
docs/theory.md section 7.
"""

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float

from ._base import AbstractModel, predict_each
from ._factorization import gl_generators


def extra_symmetry_dim(widths: tuple[int, ...]) -> int:
    """Dimension of the linear symmetries of ``W_L ... W_1 x`` beyond ``prod_k GL(h_k)``.

    A width-1 layer ``h_j = 1`` cuts the network into a part with a scalar output and a part
    with a scalar input. After it (``j + 2 <= L``), every ``J`` in ``so(h_{j+1})`` and ``r``
    in ``R^{h_{j+2}}`` give the linear field ``dW_{j+2} = r W_{j+1}^T J`` (then
    ``dW_{j+2} W_{j+1} = r (W_{j+1}^T J W_{j+1}) = 0``): ``dim so(h_{j+1}) * h_{j+2}``
    directions. Before it (``j >= 2``), ``dW_{j-1} = J W_j^T r^T`` likewise gives
    ``dim so(h_{j-1}) * h_{j-2}``. A scalar input (``j = 0``) or output (``j = L``) is such a
    layer. Without width-1 layers next to wider ones there are none. (Symmetry discovery
    finds them: widths ``(3, 2, 1)`` have a 7-dimensional algebra, not 4; checked in
    tests/test_models_new.py.)
    """
    w = tuple(widths)
    L = len(w) - 1
    extra = 0
    for j, h in enumerate(w):
        if h != 1:
            continue
        if j + 2 <= L:
            extra += w[j + 1] * (w[j + 1] - 1) // 2 * w[j + 2]
        if j >= 2:
            extra += w[j - 1] * (w[j - 1] - 1) // 2 * w[j - 2]
    return extra


class DeepLinear(AbstractModel):
    """``f(W_1..W_L; x) = W_L ... W_1 x`` with ``W_k`` of shape ``(h_k, h_{k-1})`` for
    ``widths = (h_0, ..., h_L)``; input ``(h_0,)``, output ``(h_L,)``.

    Symmetry: ``GL(h_1) x ... x GL(h_{L-1})``; the coordinates ``s`` are the inner layers'
    matrices ``S_k`` (``h_k x h_k``, row major) in order, acting as
    ``(W_{k+1} expm(S_k), expm(-S_k) W_k)``. Generator of ``E_ab`` at inner width ``k``:
    ``(W_{k+1} E_ab, -E_ab W_k)``, zero in the other layers. Lie algebra dimension
    ``sum_k h_k^2``.

    This is the *whole* linear symmetry algebra unless a width-1 layer (a scalar input or
    output included) sits next to a wider one (:func:`extra_symmetry_dim`); such widths are
    refused (``type: predictor`` runs them with the discovered algebra). An inner width larger than both its
    neighbours (``h_k > h_{k-1}, h_{k+1}``) has a stabiliser (``S = u v^T`` with
    ``W_{k+1} u = 0``, ``v^T W_k = 0``): there the ``k`` generator fields have rank below
    ``k`` at every point and ``log det G = -inf``.

    Invariants: the product ``M = W_L ... W_1`` (``(h_L, h_0)``, flattened row major).

    Balanced section: ``M = U S V^T`` (SVD) with the top ``r = min(widths)`` triplets,
    ``W_1 = S_r^{1/L} V_r^T``, ``W_k = S_r^{1/L}`` (diagonal) for inner layers,
    ``W_L = U_r S_r^{1/L}``, zero-padded to the widths; then
    ``W_k W_k^T = W_{k+1}^T W_{k+1} = diag(S_r^{2/L})`` (padded) for every inner ``k``.

    Balance: ``gram_difference{k} = W_{k+1}^T W_{k+1} - W_k W_k^T`` for ``k = 1..L-1``.
    """

    widths: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, widths):
        widths = tuple(int(h) for h in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"DeepLinear widths must be at least two positive sizes (h_0, ..., h_L), got {list(widths)}")
        extra = extra_symmetry_dim(widths)
        if extra:
            declared = sum(h * h for h in widths[1:-1])
            raise ValueError(
                f"DeepLinear widths {list(widths)}: a width-1 layer next to a wider one gives {extra} linear "
                f"symmetries beyond GL(h_k) (algebra dimension {declared + extra}, not {declared}; "
                "e.g. dW_{L-1} = J W_L^T r^T with J antisymmetric for a scalar output); use widths >= 2 "
                "next to it, or type: predictor (discovered symmetry)"
            )
        self.widths = widths

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def block_shapes(self):
        w = self.widths
        return {f"W{k + 1}": (w[k + 1], w[k]) for k in range(self.depth)}

    @property
    def input_shape(self):
        return (self.widths[0],)

    @property
    def input_bounds(self):
        return None

    @property
    def output_shape(self):
        return (self.widths[-1],)

    @property
    def data_kinds(self):
        return frozenset({"teacher_student"})

    def _layers(self, theta) -> list[Array]:
        return list(self.unflatten(theta).values())

    def matrix(self, theta: Float[Array, " p"]) -> Float[Array, "out in"]:
        """The end-to-end matrix ``M = W_L ... W_1``."""
        layers = self._layers(theta)
        out = layers[0]
        for W in layers[1:]:
            out = W @ out
        return out

    def predict(self, theta: Float[Array, " p"], x: Float[Array, " in"]) -> Float[Array, " out"]:
        out = jnp.asarray(x).reshape(self.widths[0])
        for W in self._layers(theta):
            out = W @ out
        return out

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    # ------------------------------------------------------------------ symmetry
    @property
    def lie_algebra_dim(self) -> int:
        return sum(h * h for h in self.widths[1:-1])

    def _inner(self, s):
        """``S_k`` for every inner width ``k = 1..L-1`` from the flat coordinates."""
        out, start = [], 0
        for h in self.widths[1:-1]:
            out.append(s[start : start + h * h].reshape(h, h))
            start += h * h
        return out

    def action(self, theta, s):
        layers = self._layers(theta)
        for k, S in enumerate(self._inner(s)):  # S acts between W_{k+1} (index k) and W_{k+2}
            layers[k + 1] = layers[k + 1] @ jsl.expm(S)
            layers[k] = jsl.expm(-S) @ layers[k]
        return self.flatten(dict(zip(self.block_shapes, layers)))

    def generators(self, theta):
        """Closed form (the action is linear in ``theta``): row ``(k, a, b)`` holds
        ``W_{k+1} E_ab`` in ``W_{k+1}`` and ``-E_ab W_k`` in ``W_k``."""
        layers = self._layers(theta)
        names = list(self.block_shapes)
        rows = []
        for k, h in enumerate(self.widths[1:-1]):
            left, right = gl_generators(layers[k + 1], layers[k])  # (W_{k+1} E_ab, -E_ab W_k)
            blocks = {n: jnp.zeros((h * h,) + W.shape, theta.dtype) for n, W in zip(names, layers)}
            blocks[names[k + 1]], blocks[names[k]] = left, right
            rows.append(self.flatten(blocks))
        if not rows:
            return jnp.zeros((0, theta.shape[-1]), theta.dtype)
        return jnp.concatenate(rows, axis=0)

    # ------------------------------------------------------------------ quotient
    def invariants(self, theta):
        return self.matrix(theta).ravel()

    def section(self, q):
        w, L = self.widths, self.depth
        M = q.reshape(w[-1], w[0])
        if L == 1:
            return self.flatten({"W1": M})
        u, sv, vt = jnp.linalg.svd(M, full_matrices=False)
        t = min(min(w), sv.shape[0])
        root = sv[:t] ** (1.0 / L)
        layers = []
        for k in range(L):
            rows, cols = w[k + 1], w[k]
            if k == 0:
                core = root[:, None] * vt[:t]  # [t, h_0]
            elif k == L - 1:
                core = u[:, :t] * root[None, :]  # [h_L, t]
            else:
                core = jnp.diag(root)  # [t, t]
            W = jnp.zeros((rows, cols), q.dtype)
            layers.append(W.at[: core.shape[0], : core.shape[1]].set(core))
        return self.flatten(dict(zip(self.block_shapes, layers)))

    def balance(self, theta):
        layers = self._layers(theta)
        return {
            f"gram_difference{k + 1}": layers[k + 1].T @ layers[k + 1] - layers[k] @ layers[k].T
            for k in range(self.depth - 1)
        }

    # ------------------------------------------------------------------ initialisation
    @property
    def unbalance_length(self):
        """One log-scale per unit of every inner layer: ``sum_k h_k``."""
        return sum(self.widths[1:-1])

    def unbalance(self, theta, log_scales):
        """Unit ``j`` of inner width ``k``: column ``j`` of ``W_{k+1}`` times ``exp(s_j)``,
        row ``j`` of ``W_k`` divided by it (the group element ``A = diag(exp(s))``)."""
        layers = self._layers(theta)
        a = jnp.exp(jnp.asarray(log_scales, dtype=theta.dtype))
        start = 0
        for k, h in enumerate(self.widths[1:-1]):
            ak = a[start : start + h]
            start += h
            layers[k + 1] = layers[k + 1] * ak[None, :]
            layers[k] = layers[k] / ak[:, None]
        return self.flatten(dict(zip(self.block_shapes, layers)))


"""Matrix factorization ``M = P Q`` and its use for matrix completion.

``P`` in ``R^{m x r}``, ``Q`` in ``R^{r x n}``. The group ``GL(r)`` acts as
``(P A, A^{-1} Q)`` and leaves ``M`` unchanged. On the balanced section
(``P^T P = Q Q^T``) the orbit volume gives ``log det G = sum_{a,b} log(s_a + s_b)`` with
``s`` the singular values of ``M``: the low-rank ("spectral sparsity") potential of
docs/theory.md section 3.4 and of arXiv:2601.06597 (experiment 3 of docs/paper_experiments.md).
"""

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float, Int

from ._base import AbstractModel


def gl_generators(
    left: Float[Array, "m r"], right: Float[Array, "r n"]
) -> tuple[Float[Array, "k m r"], Float[Array, "k r n"]]:
    """Generators of ``(L, R) -> (L expm(S), expm(-S) R)`` for ``S = E_ab``, row-major ``(a, b)``.

    ``d/dt (L expm(t E_ab)) = L E_ab`` (column ``b`` holds ``L[:, a]``) and
    ``d/dt (expm(-t E_ab) R) = -E_ab R`` (row ``a`` holds ``-R[b, :]``). Closed form of the
    derivative at ``s = 0``, avoiding a jvp through ``expm``.
    """
    r = left.shape[1]
    eye = jnp.eye(r, dtype=left.dtype)
    dL = jnp.einsum("ma,bc->abmc", left, eye).reshape(r * r, left.shape[0], r)
    dR = -jnp.einsum("ac,bn->abcn", eye, right).reshape(r * r, r, right.shape[1])
    return dL, dR


def balanced_factors(
    matrix: Float[Array, "m n"], rank: int
) -> tuple[Float[Array, "m r"], Float[Array, "r n"]]:
    """SVD-balanced factors ``(U_r sqrt(S_r), sqrt(S_r) V_r^T)`` of ``matrix``.

    Uses the top ``rank`` singular triplets; when ``rank`` exceeds ``min(m, n)`` the
    missing modes are zero columns of the left factor and zero rows of the right one.
    Both factors then have the same Gram matrix ``diag(S_r)``
    (``L^T L = R R^T``), which is the fixed point of the GL(r) balance law
    (docs/theory.md section 2.6).
    """
    m, n = matrix.shape
    u, s, vt = jnp.linalg.svd(matrix, full_matrices=False)
    k = min(m, n)
    if rank <= k:
        u, s, vt = u[:, :rank], s[:rank], vt[:rank]
    else:
        pad = rank - k
        u = jnp.concatenate([u, jnp.zeros((m, pad), u.dtype)], axis=1)
        s = jnp.concatenate([s, jnp.zeros((pad,), s.dtype)])
        vt = jnp.concatenate([vt, jnp.zeros((pad, n), vt.dtype)], axis=0)
    root = jnp.sqrt(s)
    return u * root[None, :], root[:, None] * vt


class MatrixFactorization(AbstractModel):
    """``M(P, Q) = P Q`` with ``P`` of shape ``(rows, rank)`` and ``Q`` of shape ``(rank, cols)``.

    Predictor (matrix completion, one observed entry per sample): for an integer index
    pair ``x = (i, j)``, ``f(theta; x) = (P Q)_{ij} = P[i] . Q[:, j]``.

    Symmetry: ``GL(rank)`` acting as ``(P A, A^{-1} Q)``. Lie-algebra coordinates
    ``s`` in ``R^{rank^2}`` are the entries of ``S = s.reshape(rank, rank)`` (row major),
    and ``A = expm(S)``; the generator of ``E_ab`` is ``xi = (P E_ab, -E_ab Q)``.

    Invariants: ``q = (P Q).ravel()`` (row major, length ``rows * cols``).

    Balanced section: ``M = U S V^T`` (SVD), ``P = U_r sqrt(S_r)``, ``Q = sqrt(S_r) V_r^T``
    with the top ``rank`` singular triplets (zero-padded when ``rank > min(rows, cols)``),
    so that ``P^T P = Q Q^T = diag(S_r)``. On it
    ``log det G = sum_{a,b} log(s_a + s_b)`` (docs/theory.md section 3.4; arXiv:2601.06597).
    """

    rows: int = eqx.field(static=True)
    rank: int = eqx.field(static=True)
    cols: int = eqx.field(static=True)

    def __init__(self, rows: int, rank: int, cols: int):
        if min(rows, rank, cols) < 1:
            raise ValueError(
                f"MatrixFactorization sizes must be positive, got rows={rows}, rank={rank}, cols={cols}"
            )
        self.rows = rows
        self.rank = rank
        self.cols = cols

    @property
    def block_shapes(self):
        return {"P": (self.rows, self.rank), "Q": (self.rank, self.cols)}

    @property
    def input_shape(self):
        """One observed entry: an index pair ``(i, j)``."""
        return (2,)

    @property
    def input_bounds(self):
        return (self.rows, self.cols)

    @property
    def output_shape(self):
        return ()

    @property
    def data_kinds(self):
        return frozenset({"completion"})

    def matrix(self, theta: Float[Array, " p"]) -> Float[Array, "rows cols"]:
        """The product ``M = P Q``."""
        b = self.unflatten(theta)
        return b["P"] @ b["Q"]

    def predict(self, theta: Float[Array, " p"], x: Int[Array, " 2"]) -> Float[Array, ""]:
        """Entry ``(P Q)[i, j]`` for ``x = (i, j)``, as ``P[i] . Q[:, j]`` (no full product)."""
        b = self.unflatten(theta)
        x = jnp.asarray(x)
        return b["P"][x[0]] @ b["Q"][:, x[1]]

    def predict_batch(self, theta: Float[Array, " p"], xs: Int[Array, "n 2"]) -> Float[Array, " n"]:
        """Entries ``(P Q)[i_n, j_n]`` for index pairs ``xs[n] = (i_n, j_n)``.

        Forms ``P Q`` with one matmul and gathers the entries. It does more arithmetic
        than gathering rows of ``P`` and columns of ``Q`` (O(n rank)), but under ``vmap``
        over seeds on CPU it ran 3-4x faster for the paper's 20 x 20 completion (measured:
        137k vs 33-40k seed-steps/s at 256 seeds, float32), because XLA's batched
        gathers and scatters are slow and its batched matmuls are not."""
        xs = jnp.asarray(xs)
        return self.matrix(theta)[xs[:, 0], xs[:, 1]]

    @property
    def lie_algebra_dim(self) -> int:
        return self.rank**2

    def action(self, theta, s):
        b = self.unflatten(theta)
        S = s.reshape(self.rank, self.rank)
        return self.flatten({"P": b["P"] @ jsl.expm(S), "Q": jsl.expm(-S) @ b["Q"]})

    def generators(self, theta):
        """Closed form of the generator fields (the action is linear in ``theta``):
        ``xi_{ab} = (P E_ab, -E_ab Q)``, rows in the row-major order of ``S``."""
        b = self.unflatten(theta)
        dP, dQ = gl_generators(b["P"], b["Q"])
        return self.flatten({"P": dP, "Q": dQ})

    def invariants(self, theta):
        return self.matrix(theta).ravel()

    def section(self, q):
        P, Q = balanced_factors(q.reshape(self.rows, self.cols), self.rank)
        return self.flatten({"P": P, "Q": Q})

    def balance(self, theta):
        """``gram_difference = P^T P - Q Q^T`` (zero when balanced) and
        ``mode_ratio[i] = |P[:, i]| / |Q[i, :]|`` (one when balanced; ``nan`` for a mode
        that is zero in both factors)."""
        b = self.unflatten(theta)
        P, Q = b["P"], b["Q"]
        return {
            "gram_difference": P.T @ P - Q @ Q.T,
            "mode_ratio": jnp.linalg.norm(P, axis=0) / jnp.linalg.norm(Q, axis=1),
        }

    @property
    def unbalance_length(self):
        return self.rank

    def unbalance(self, theta, log_scales):
        """The group element ``A = expm(diag(log_scales))``: column ``a`` of ``P`` times
        ``exp(s_a)``, row ``a`` of ``Q`` divided by it."""
        return self.action(theta, jnp.diag(log_scales).ravel())

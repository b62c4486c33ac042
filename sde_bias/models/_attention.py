"""Single-head softmax attention with its query/key (and value/output) symmetry.

The attention scores ``(X W_Q)(X W_K)^T`` depend on ``W_Q`` and ``W_K`` only through
``W_Q W_K^T``, so ``GL(head_dim)`` acts as ``(W_Q A, W_K A^{-T})``; with an output
projection, ``GL(value_dim)`` also acts as ``(W_V B, B^{-1} W_O)``. On the balanced
section ``log det G`` is that of the factorization ``W_Q W_K^T`` (docs/theory.md section 3.4;
arXiv:2601.06597, experiment 2 of docs/paper_experiments.md).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float

from ._base import AbstractModel, predict_each
from ._factorization import balanced_factors, gl_generators


def _nuclear(a: Float[Array, "m n"]) -> Float[Array, ""]:
    return jnp.sum(jnp.linalg.svd(a, compute_uv=False))


class Attention(AbstractModel):
    """``f(theta; X) = softmax(X W_Q (X W_K)^T / sqrt(head_dim), axis=-1) X W_V W_O``.

    ``X`` has shape ``(seq_len, embed_dim)``. Blocks: ``WQ``, ``WK`` of shape
    ``(embed_dim, head_dim)``; ``WV`` of shape ``(embed_dim, value_dim)`` if ``value_dim``
    is given; ``WO`` of shape ``(value_dim, output_dim)`` if ``output_dim`` is also given.
    Without ``WV`` the output is ``softmax(...) X`` (shape ``(seq_len, embed_dim)``); without
    ``WO`` it is ``softmax(...) X W_V`` (shape ``(seq_len, value_dim)``).

    Symmetry: ``GL(head_dim)`` acting as ``(WQ expm(S), WK expm(-S)^T)`` (i.e.
    ``WK A^{-T}`` with ``A = expm(S)``), coordinates ``S = s[:head_dim^2]`` reshaped row
    major; and, when ``WO`` is present, ``GL(value_dim)`` acting as
    ``(WV expm(T), expm(-T) WO)`` with ``T = s[head_dim^2:]`` reshaped to
    ``(value_dim, value_dim)``. ``WV`` alone (no ``WO``) carries no symmetry.

    Invariants: ``(WQ WK^T).ravel()``, followed by ``WV.ravel()`` (no ``WO``) or
    ``(WV WO).ravel()`` (with ``WO``).

    Balanced section: ``WQ WK^T = U S V^T``, ``WQ = U_h sqrt(S_h)``, ``WK = V_h sqrt(S_h)``
    (top ``head_dim`` triplets, zero-padded if ``head_dim > embed_dim``), hence
    ``WQ^T WQ = WK^T WK``; with ``WO`` likewise ``WV = U_v sqrt(S_v)``,
    ``WO = sqrt(S_v) V_v^T``.
    """

    seq_len: int = eqx.field(static=True)
    embed_dim: int = eqx.field(static=True)
    head_dim: int = eqx.field(static=True)
    value_dim: int | None = eqx.field(static=True)
    output_dim: int | None = eqx.field(static=True)

    def __init__(
        self,
        seq_len: int,
        embed_dim: int,
        head_dim: int,
        value_dim: int | None = None,
        output_dim: int | None = None,
    ):
        if output_dim is not None and value_dim is None:
            raise ValueError("Attention: output_dim (W_O) requires value_dim (W_V)")
        sizes = [seq_len, embed_dim, head_dim] + [d for d in (value_dim, output_dim) if d is not None]
        if min(sizes) < 1:
            raise ValueError(f"Attention sizes must be positive, got {sizes}")
        self.seq_len = seq_len
        self.embed_dim = embed_dim
        self.head_dim = head_dim
        self.value_dim = value_dim
        self.output_dim = output_dim

    @property
    def has_value(self) -> bool:
        return self.value_dim is not None

    @property
    def has_output(self) -> bool:
        return self.output_dim is not None

    @property
    def block_shapes(self):
        shapes = {
            "WQ": (self.embed_dim, self.head_dim),
            "WK": (self.embed_dim, self.head_dim),
        }
        if self.has_value:
            shapes["WV"] = (self.embed_dim, self.value_dim)
        if self.has_output:
            shapes["WO"] = (self.value_dim, self.output_dim)
        return shapes

    @property
    def input_shape(self):
        return (self.seq_len, self.embed_dim)

    @property
    def input_bounds(self):
        return None

    @property
    def output_shape(self):
        """``(seq_len, output_dim)``, or ``value_dim`` / ``embed_dim`` without ``WO`` / ``WV``."""
        return (self.seq_len, self.output_dim or self.value_dim or self.embed_dim)

    @property
    def data_kinds(self):
        return frozenset({"teacher_student"})

    # ------------------------------------------------------------------ predictor
    def attention_weights(
        self, theta: Float[Array, " p"], X: Float[Array, "seq embed"]
    ) -> Float[Array, "seq seq"]:
        """Row-stochastic matrix ``softmax(X WQ (X WK)^T / sqrt(head_dim), axis=-1)``."""
        b = self.unflatten(theta)
        scores = (X @ b["WQ"]) @ (X @ b["WK"]).T / math.sqrt(self.head_dim)
        return jax.nn.softmax(scores, axis=-1)

    def predict(self, theta: Float[Array, " p"], x: Float[Array, "seq embed"]) -> Float[Array, "seq out"]:
        X = jnp.asarray(x).reshape(self.seq_len, self.embed_dim)
        out = self.attention_weights(theta, X) @ X
        b = self.unflatten(theta)
        if self.has_value:
            out = out @ b["WV"]
        if self.has_output:
            out = out @ b["WO"]
        return out

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    def qk_matrix(self, theta: Float[Array, " p"]) -> Float[Array, "embed embed"]:
        """``WQ WK^T``, the bilinear form of the scores."""
        b = self.unflatten(theta)
        return b["WQ"] @ b["WK"].T

    def vo_matrix(self, theta: Float[Array, " p"]) -> Float[Array, "embed out"]:
        """``WV WO`` (or ``WV`` without output projection)."""
        if not self.has_value:
            raise ValueError("Attention without W_V has no value/output matrix")
        b = self.unflatten(theta)
        return b["WV"] @ b["WO"] if self.has_output else b["WV"]

    # ------------------------------------------------------------------ symmetry
    @property
    def lie_algebra_dim(self) -> int:
        return self.head_dim**2 + (self.value_dim**2 if self.has_output else 0)

    def action(self, theta, s):
        b = dict(self.unflatten(theta))
        h2 = self.head_dim**2
        S = s[:h2].reshape(self.head_dim, self.head_dim)
        b["WQ"] = b["WQ"] @ jsl.expm(S)
        b["WK"] = b["WK"] @ jsl.expm(-S).T
        if self.has_output:
            T = s[h2:].reshape(self.value_dim, self.value_dim)
            b["WV"] = b["WV"] @ jsl.expm(T)
            b["WO"] = jsl.expm(-T) @ b["WO"]
        return self.flatten(b)

    def generators(self, theta):
        """Closed form of the generator fields (the action is linear in ``theta``).

        Row ``(a, b)`` of the Q/K part: ``(WQ E_ab, -WK E_ab^T)``; row ``(a, b)`` of the V/O
        part (with ``WO``): ``(WV E_ab, -E_ab WO)``; zero in the other blocks."""
        b = self.unflatten(theta)
        h = self.head_dim
        dQ, dKt = gl_generators(b["WQ"], b["WK"].T)
        qk = {"WQ": dQ, "WK": jnp.swapaxes(dKt, 1, 2)}
        for name in ("WV", "WO"):
            if name in b:
                qk[name] = jnp.zeros((h * h,) + b[name].shape, theta.dtype)
        rows = [self.flatten(qk)]
        if self.has_output:
            dV, dO = gl_generators(b["WV"], b["WO"])
            k = self.value_dim**2
            vo = {
                "WQ": jnp.zeros((k,) + b["WQ"].shape, theta.dtype),
                "WK": jnp.zeros((k,) + b["WK"].shape, theta.dtype),
                "WV": dV,
                "WO": dO,
            }
            rows.append(self.flatten(vo))
        return jnp.concatenate(rows, axis=0)

    def invariants(self, theta):
        parts = [self.qk_matrix(theta).ravel()]
        if self.has_value:
            parts.append(self.vo_matrix(theta).ravel())
        return jnp.concatenate(parts)

    def section(self, q):
        e = self.embed_dim
        qk = q[: e * e].reshape(e, e)
        WQ, WKt = balanced_factors(qk, self.head_dim)
        blocks = {"WQ": WQ, "WK": WKt.T}
        if self.has_output:
            vo = q[e * e :].reshape(e, self.output_dim)
            blocks["WV"], blocks["WO"] = balanced_factors(vo, self.value_dim)
        elif self.has_value:
            blocks["WV"] = q[e * e :].reshape(e, self.value_dim)
        return self.flatten(blocks)

    def balance(self, theta):
        """Q/K balance: ``column_ratio[j] = |WQ[:, j]| / |WK[:, j]|``,
        ``frobenius_ratio = |WQ|_F / |WK|_F``, ``nuclear_ratio = |WQ|_* / |WK|_*``,
        ``gram_difference = WQ^T WQ - WK^T WK``. With ``WO`` also
        ``vo_mode_ratio[j] = |WV[:, j]| / |WO[j, :]|`` and
        ``vo_gram_difference = WV^T WV - WO WO^T``. Ratios are 1 and differences 0 on the
        balanced section (note that the per-column ratios are not GL-invariant notions of
        balance: only the Gram difference is zero on the whole balanced set)."""
        b = self.unflatten(theta)
        WQ, WK = b["WQ"], b["WK"]
        out = {
            "column_ratio": jnp.linalg.norm(WQ, axis=0) / jnp.linalg.norm(WK, axis=0),
            "frobenius_ratio": jnp.linalg.norm(WQ) / jnp.linalg.norm(WK),
            "nuclear_ratio": _nuclear(WQ) / _nuclear(WK),
            "gram_difference": WQ.T @ WQ - WK.T @ WK,
        }
        if self.has_output:
            WV, WO = b["WV"], b["WO"]
            out["vo_mode_ratio"] = jnp.linalg.norm(WV, axis=0) / jnp.linalg.norm(WO, axis=1)
            out["vo_gram_difference"] = WV.T @ WV - WO @ WO.T
        return out

    @property
    def unbalance_length(self):
        return self.head_dim

    def unbalance(self, theta, log_scales):
        """:func:`unbalance_columns` (``q_scale = 1``: a group element)."""
        return unbalance_columns(self, theta, log_scales)


def unbalance_columns(
    model: Attention,
    theta: Float[Array, " p"],
    log_scales: Float[Array, " head_dim"],
    q_scale: float = 1.0,
) -> Float[Array, " p"]:
    """Column ``j`` of ``WQ`` times ``exp(s_j)``, column ``j`` of ``WK`` divided by
    ``exp(s_j)``, then all of ``WQ`` times ``q_scale``.

    The student initialisation of the paper's experiment 2 (docs/paper_experiments.md:
    ``s = linspace(-1.2, 1.2, head_dim)``, ``q_scale = 1/4 + |z'|/4``). The column step is
    a group element (``S = diag(s)``); the ``q_scale`` step is not a symmetry: it scales
    the attention scores by ``q_scale``. Afterwards ``|WQ[:, j]| / |WK[:, j]|`` is the
    old ratio times ``q_scale * exp(2 s_j)``.
    """
    b = dict(model.unflatten(theta))
    a = jnp.exp(jnp.asarray(log_scales, dtype=theta.dtype))
    b["WQ"] = b["WQ"] * a[None, :] * q_scale
    b["WK"] = b["WK"] / a[None, :]
    return model.flatten(b)

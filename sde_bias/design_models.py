"""Designed parameterizations that ``sde-bias design`` writes into scenarios (docs/theory.md
section 6.4), usable from YAML as ``model: {type: "sde_bias.design_models:Class", ...}``.

- :class:`SynthesisHadamard`: ``f = x . beta``, ``beta = S diag(lambda) (u_1 * ... * u_D)`` with a
  fixed synthesis ``S`` (:func:`synthesis_matrix`: identity, ``tv`` = cumsum, ``cosine`` = the
  orthonormal DCT-II basis, ``haar`` = the orthonormal Haar wavelet basis) and per-coordinate scales
  ``lambda`` (the scaled Hadamard product at ``S = I``; ``A (u * v)`` at ``lambda = 1``);
- :class:`ScaledGroupHadamard`: ``beta_g = lambda_g s_g v_g`` over contiguous groups of equal size.

Symmetry: the rescalings of the Hadamard factors of ``z = u_1 * ... * u_D`` (per coordinate, or per
group), which leave ``beta`` unchanged; invariants ``beta``; balanced sections as in the catalogue's
``DeepHadamard`` / ``GroupHadamard`` applied to ``z = diag(lambda)^{-1} S^{-1} beta``.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .models import AbstractModel, generators_by_jvp, predict_each

SYNTHESES = ("identity", "tv", "cosine", "haar")


def synthesis_matrix(kind: str, dim: int) -> np.ndarray:
    """The ``dim x dim`` synthesis ``S`` (``beta = S c``) of a transform: ``identity``; ``tv``: the
    cumulative sum (lower-triangular ones, so ``c`` holds the jumps of ``beta`` and ``|c|_1`` is its total
    variation plus ``|beta_0|``); ``cosine``: orthonormal DCT-II atoms ``S_ik = s_k cos(pi (i + 1/2) k / d)``;
    ``haar``: the orthonormal Haar wavelet basis (``dim`` a power of 2)."""
    if kind == "identity":
        return np.eye(dim)
    if kind == "tv":
        return np.tril(np.ones((dim, dim)))
    if kind == "cosine":
        i, k = np.meshgrid(np.arange(dim), np.arange(dim), indexing="ij")
        S = np.cos(np.pi * (i + 0.5) * k / dim) * np.sqrt(2.0 / dim)
        S[:, 0] /= np.sqrt(2.0)
        return S
    if kind == "haar":
        if dim < 1 or dim & (dim - 1):
            raise ValueError(f"the Haar synthesis needs a power-of-2 dimension, got {dim}")
        H = np.ones((1, 1))
        while H.shape[0] < dim:
            n = H.shape[0]
            H = np.vstack([np.kron(H, [1.0, 1.0]), np.kron(np.eye(n), [1.0, -1.0])]) / np.sqrt(2.0)
        return H.T  # columns: the atoms
    raise ValueError(f"unknown synthesis {kind!r}; expected one of {', '.join(SYNTHESES)}")


def _scales(scales, n: int, what: str) -> tuple[float, ...]:
    if scales is None:
        return (1.0,) * n
    arr = np.broadcast_to(np.asarray(scales, float), (n,)) if np.ndim(scales) == 0 else np.asarray(scales, float).reshape(-1)
    s = tuple(float(a) for a in arr)
    if len(s) != n or not all(math.isfinite(a) and a > 0 for a in s):
        raise ValueError(f"scales must be {n} positive numbers ({what}), got {list(s)[:6]}")
    return s


class SynthesisHadamard(AbstractModel):
    """``f(x) = x . beta``, ``beta = S diag(lambda) z``, ``z = u_1 * ... * u_D`` (module docstring).

    Blocks ``u1``..``uD``; group ``(R_{>0})^{d (D-1)}`` as in
    ``DeepHadamard``; invariants ``beta``; balanced section ``|u_l| = |z|^{1/D}``, sign on the last."""

    dim: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    synthesis: str = eqx.field(static=True)
    scales: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, dim: int, depth: int = 2, synthesis: str = "identity", scales=None):
        if dim < 1 or depth < 2:
            raise ValueError(f"SynthesisHadamard needs dim >= 1 and depth >= 2, got dim={dim}, depth={depth}")
        synthesis_matrix(synthesis, dim)  # an unknown name or a bad Haar size fails here
        self.dim, self.depth, self.synthesis = int(dim), int(depth), str(synthesis)
        self.scales = _scales(scales, self.dim, "one per coordinate")

    def synthesis_matrix(self) -> np.ndarray:
        """``S diag(lambda)``: ``beta = synthesis_matrix() @ z``."""
        return synthesis_matrix(self.synthesis, self.dim) * np.asarray(self.scales)[None, :]

    @property
    def block_shapes(self):
        return {f"u{l + 1}": (self.dim,) for l in range(self.depth)}

    @property
    def input_shape(self):
        return (self.dim,)

    @property
    def input_bounds(self):
        return None

    @property
    def output_shape(self):
        return ()

    @property
    def data_kinds(self):
        return frozenset({"teacher_student", "step_signal"})

    def _layers(self, theta):
        return jnp.stack(list(self.unflatten(theta).values()))  # [D, d]

    def coefficients(self, theta: Float[Array, " p"]) -> Float[Array, " d"]:
        """``z = u_1 * ... * u_D``."""
        return jnp.prod(self._layers(theta), axis=0)

    def weights(self, theta: Float[Array, " p"]) -> Float[Array, " d"]:
        """``beta = S diag(lambda) z``."""
        return jnp.asarray(self.synthesis_matrix(), theta.dtype) @ self.coefficients(theta)

    def predict(self, theta, x) -> Float[Array, ""]:
        return jnp.asarray(x).reshape(self.dim) @ self.weights(theta)

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    @property
    def lie_algebra_dim(self) -> int:
        return self.dim * (self.depth - 1)

    def action(self, theta, s):
        s = s.reshape(self.depth - 1, self.dim)
        zeros = jnp.zeros((1, self.dim), s.dtype)
        log_scale = jnp.concatenate([s, zeros]) - jnp.concatenate([zeros, s])
        return (self._layers(theta) * jnp.exp(log_scale)).reshape(-1)

    def generators(self, theta):
        return generators_by_jvp(self, theta)

    def invariants(self, theta):
        return self.weights(theta)

    def section(self, q):
        z = jnp.linalg.solve(jnp.asarray(self.synthesis_matrix(), q.dtype), q)
        r = jnp.abs(z) ** (1.0 / self.depth)
        return jnp.tile(r, (self.depth, 1)).at[-1].multiply(jnp.sign(z)).reshape(-1)

    def balance(self, theta):
        sq = self._layers(theta) ** 2
        return {"imbalance": sq[:-1] - sq[1:] if self.depth > 2 else sq[0] - sq[1]}

    @property
    def unbalance_length(self):
        return self.dim * (self.depth - 1)

    def unbalance(self, theta, log_scales):
        return self.action(theta, log_scales)


class ScaledGroupHadamard(AbstractModel):
    """``f(x) = x . beta``, ``beta[g k + i] = lambda_g s_g v[g k + i]`` (``k = group_size``).

    Blocks ``s`` (``(G,)``), ``v`` (``(dim,)``); group ``(R_{>0})^G`` acting as ``(e^t s_g, e^-t v_g)``;
    invariants ``beta``; balanced section ``s_g^2 = |v_g|^2``."""

    dim: int = eqx.field(static=True)
    group_size: int = eqx.field(static=True)
    scales: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, dim: int, group_size: int, scales=None):
        if dim < 1 or group_size < 1 or dim % group_size:
            raise ValueError(f"ScaledGroupHadamard: group_size ({group_size}) must be a positive divisor of dim ({dim})")
        self.dim, self.group_size = int(dim), int(group_size)
        self.scales = _scales(scales, self.dim // self.group_size, "one per group")

    @property
    def groups(self) -> int:
        return self.dim // self.group_size

    def group_list(self) -> list[list[int]]:
        k = self.group_size
        return [list(range(g * k, g * k + k)) for g in range(self.groups)]

    @property
    def block_shapes(self):
        return {"s": (self.groups,), "v": (self.dim,)}

    @property
    def input_shape(self):
        return (self.dim,)

    @property
    def input_bounds(self):
        return None

    @property
    def output_shape(self):
        return ()

    @property
    def data_kinds(self):
        return frozenset({"teacher_student", "step_signal"})

    def _expand(self, a):
        return jnp.repeat(a, self.group_size, total_repeat_length=self.dim)

    def weights(self, theta) -> Float[Array, " d"]:
        b = self.unflatten(theta)
        lam = jnp.asarray(self.scales, theta.dtype)
        return self._expand(lam * b["s"]) * b["v"]

    def predict(self, theta, x) -> Float[Array, ""]:
        return jnp.asarray(x).reshape(self.dim) @ self.weights(theta)

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    @property
    def lie_algebra_dim(self) -> int:
        return self.groups

    def action(self, theta, t):
        b = self.unflatten(theta)
        return self.flatten({"s": b["s"] * jnp.exp(t), "v": b["v"] * self._expand(jnp.exp(-t))})

    def generators(self, theta):
        return generators_by_jvp(self, theta)

    def invariants(self, theta):
        return self.weights(theta)

    def section(self, q: Float[Array, " d"]) -> Float[Array, " p"]:
        lam = jnp.asarray(self.scales, q.dtype)
        z = q / self._expand(lam)
        norms = jnp.sqrt(jnp.sum(z.reshape(self.groups, self.group_size) ** 2, axis=1))
        s = jnp.sqrt(norms)
        safe = self._expand(jnp.where(s > 0, s, 1.0))
        return self.flatten({"s": s, "v": jnp.where(self._expand(s) > 0, z / safe, 0.0)})

    def balance(self, theta):
        b = self.unflatten(theta)
        return {"imbalance": b["s"] ** 2 - jnp.sum(b["v"].reshape(self.groups, self.group_size) ** 2, axis=1)}

    @property
    def unbalance_length(self):
        return self.groups

    def unbalance(self, theta, log_scales):
        return self.action(theta, log_scales)

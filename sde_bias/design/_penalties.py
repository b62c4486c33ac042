"""Convex penalties that label-noise fibre minima take (docs/theory.md section 6.2).

Each is an :class:`~sde_bias.design.AbstractPenalty` with a cvxpy form and a KKT residual; the
constructors that fill in their weights from the data are in ``_fibre_forms.py``.

- :class:`WeightedL1`: ``sum_j w_j |z_j|`` with optional sign constraints ``s_j z_j >= 0``;
- :class:`PowerPenalty`: ``sum_j w_j |z_j|^p``, ``1 < p <= 2`` (depth ``D``: ``p = 2 - 2/D``);
- :class:`GroupNorm`: ``sum_g w_g |M_g z_g|_2`` with a symmetric positive definite metric ``M_g``;
- :class:`WeightedNuclear`: ``c |D_r^{1/2} Z D_c^{1/2}|_*`` for ``Z`` the ``m x n`` matrix of ``z``
  (row-major), ``D_r``, ``D_c`` diagonal.

KKT residuals are natural residuals ``|z - prox_R(z + g)|`` (nonsmooth) or ``|z - grad R*(g)|``
(smooth), computed in the coordinates in which ``R`` is a plain norm (``gamma_g = M_g z_g``;
``Z' = D_r^{1/2} Z D_c^{1/2}``, where the multiplier maps by the inverse transpose).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._types import AbstractPenalty


def _signs(signs, d):
    if signs is None:
        return jnp.zeros((d,))
    s = jnp.sign(jnp.asarray(signs, float))
    if s.shape != (d,):
        raise ValueError(f"signs must have shape ({d},), got {s.shape}")
    return s


class WeightedL1(AbstractPenalty):
    """``sum_j w_j |z_j|`` subject to ``s_j z_j >= 0`` where ``s_j != 0`` (``signs``: +1, -1, or 0
    for a free sign)."""

    weights: Float[Array, " d"]
    signs: Float[Array, " d"]

    def __init__(self, weights: ArrayLike, signs: ArrayLike | None = None):
        self.weights = jnp.asarray(weights, float)
        self.signs = _signs(signs, self.weights.shape[0])

    @property
    def dcp(self) -> bool:
        return True

    def _feasible(self, z):
        return jnp.all(self.signs * z >= 0)

    def value(self, z):
        z = jnp.asarray(z)
        return jnp.where(self._feasible(z), jnp.sum(self.weights * jnp.abs(z)), jnp.inf)

    def prox(self, v: Float[Array, " d"]) -> Float[Array, " d"]:
        """``prox_R(v)``: soft threshold by ``w``, then onto the sign constraints."""
        free = jnp.sign(v) * jnp.maximum(jnp.abs(v) - self.weights, 0.0)
        signed = self.signs * jnp.maximum(self.signs * v - self.weights, 0.0)
        return jnp.where(self.signs == 0, free, signed)

    def kkt_residual(self, z, g):
        z = jnp.asarray(z)
        return jnp.max(jnp.abs(z - self.prox(z + g)))

    def cvxpy(self, z):
        import cvxpy as cp

        s = np.asarray(self.signs)
        cons = [cp.multiply(s, z) >= 0] if np.any(s != 0) else []
        return cp.sum(cp.multiply(np.asarray(self.weights), cp.abs(z))), cons


class PowerPenalty(AbstractPenalty):
    """``sum_j w_j |z_j|^p`` (``1 < p <= 2``) subject to ``s_j z_j >= 0`` where ``s_j != 0``.

    Differentiable and strictly convex, so ``grad R*(g)_j = sign(g_j) (|g_j| / (w_j p))^{1/(p-1)}``
    (zero where the sign constraint is active) and ``R*(g) = sum (1 - 1/p) |g_j| |grad R*(g)_j|``."""

    weights: Float[Array, " d"]
    power: float = eqx.field(static=True)
    signs: Float[Array, " d"]

    def __init__(self, weights: ArrayLike, power: float, signs: ArrayLike | None = None):
        if not 1.0 < power <= 2.0:
            raise ValueError(f"PowerPenalty needs 1 < power <= 2, got {power}")
        self.weights = jnp.asarray(weights, float)
        self.power = float(power)
        self.signs = _signs(signs, self.weights.shape[0])

    @property
    def dcp(self) -> bool:
        return True

    @property
    def smooth(self) -> bool:
        return True

    def value(self, z):
        z = jnp.asarray(z)
        ok = jnp.all(self.signs * z >= 0)
        return jnp.where(ok, jnp.sum(self.weights * jnp.abs(z) ** self.power), jnp.inf)

    def dual_map(self, g):
        g = jnp.asarray(g)
        p = self.power
        z = jnp.sign(g) * (jnp.abs(g) / (self.weights * p)) ** (1.0 / (p - 1))
        return jnp.where(self.signs * g < 0, 0.0, z)

    def conjugate(self, g):
        g = jnp.asarray(g)
        return jnp.sum((1 - 1 / self.power) * jnp.abs(g) * jnp.abs(self.dual_map(g)))

    def kkt_residual(self, z, g):
        return jnp.max(jnp.abs(jnp.asarray(z) - self.dual_map(g)))

    def cvxpy(self, z):
        import cvxpy as cp

        s = np.asarray(self.signs)
        cons = [cp.multiply(s, z) >= 0] if np.any(s != 0) else []
        expr = cp.sum(cp.multiply(np.asarray(self.weights), cp.power(cp.abs(z), self.power)))
        return expr, cons


def _block_soft_threshold(v, w):
    n = jnp.linalg.norm(v)
    return jnp.where(n > w, (1 - w / jnp.where(n > 0, n, 1.0)) * v, 0.0 * v)


class GroupNorm(AbstractPenalty):
    """``sum_g w_g |M_g z_g|_2`` over a partition of the coordinates into ``groups`` (tuples of
    indices), ``M_g`` symmetric positive definite (the identity gives the group lasso)."""

    groups: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    weights: Float[Array, " G"]
    metrics: tuple[Array, ...]

    def __init__(self, groups, weights: ArrayLike, metrics=None):
        self.groups = tuple(tuple(int(i) for i in g) for g in groups)
        flat = sorted(i for g in self.groups for i in g)
        if flat != list(range(len(flat))):
            raise ValueError("groups must partition 0..d-1 (every coordinate in exactly one group)")
        self.weights = jnp.asarray(weights, float)
        if self.weights.shape != (len(self.groups),):
            raise ValueError(f"need one weight per group ({len(self.groups)}), got shape {self.weights.shape}")
        if metrics is None:
            metrics = [jnp.eye(len(g)) for g in self.groups]
        self.metrics = tuple(jnp.asarray(m, float) for m in metrics)

    @property
    def dcp(self) -> bool:
        return True

    def value(self, z):
        z = jnp.asarray(z)
        return sum(w * jnp.linalg.norm(m @ z[jnp.asarray(g)]) for g, w, m in zip(self.groups, self.weights, self.metrics))

    def kkt_residual(self, z, g):
        z, g = jnp.asarray(z), jnp.asarray(g)
        worst = jnp.zeros(())
        for idx, w, m in zip(self.groups, self.weights, self.metrics):
            i = jnp.asarray(idx)
            gamma = m @ z[i]
            g_gamma = jnp.linalg.solve(m, g[i])  # M symmetric: the inverse transpose is the inverse
            worst = jnp.maximum(worst, jnp.max(jnp.abs(gamma - _block_soft_threshold(gamma + g_gamma, w))))
        return worst

    def cvxpy(self, z):
        import cvxpy as cp

        terms = [
            float(w) * cp.norm(np.asarray(m) @ z[list(g)], 2)
            for g, w, m in zip(self.groups, np.asarray(self.weights), self.metrics)
        ]
        return cp.sum(cp.hstack(terms)), []


class WeightedNuclear(AbstractPenalty):
    """``scale |D_r^{1/2} Z D_c^{1/2}|_*`` with ``Z = z.reshape(m, n)`` (row-major), ``D_r = diag(row_weights)``,
    ``D_c = diag(col_weights)`` (all positive)."""

    row_weights: Float[Array, " m"]
    col_weights: Float[Array, " n"]
    scale: float = eqx.field(static=True, default=1.0)

    @property
    def dcp(self) -> bool:
        return True

    @property
    def shape(self) -> tuple[int, int]:
        return (self.row_weights.shape[0], self.col_weights.shape[0])

    def _transform(self, z, power):
        Z = jnp.asarray(z).reshape(self.shape)
        return (self.row_weights[:, None] ** power) * Z * (self.col_weights[None, :] ** power)

    def value(self, z):
        return self.scale * jnp.sum(jnp.linalg.svd(self._transform(z, 0.5), compute_uv=False))

    def kkt_residual(self, z, g):
        Zp = self._transform(z, 0.5)
        Gp = self._transform(g, -0.5)
        u, s, vt = jnp.linalg.svd(Zp + Gp, full_matrices=False)
        prox = (u * jnp.maximum(s - self.scale, 0.0)) @ vt
        return jnp.max(jnp.abs(Zp - prox))

    def cvxpy(self, z):
        import cvxpy as cp

        m, n = self.shape
        Z = cp.reshape(z, (m, n), order="C")
        Zp = np.diag(np.sqrt(np.asarray(self.row_weights))) @ Z @ np.diag(np.sqrt(np.asarray(self.col_weights)))
        return self.scale * cp.normNuc(Zp), []

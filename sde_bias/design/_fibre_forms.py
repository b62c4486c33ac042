"""Closed forms of the label-noise fibre minimum ``R*(beta)`` (docs/theory.md section 6.2).

With ``R = (c/n) sum_i |d f_i / d theta|^2`` (``_label_noise.py``; ``c = 1`` for the default loss),
features ``X`` (``n x d``, ``f_i = X_i . beta``) and ``a_j = (1/n) sum_i X_ij^2``:

- **scaled Hadamard** ``beta_j = lambda_j u_j v_j``: ``R = c sum_j a_j lambda_j^2 (u_j^2 + v_j^2)``
  ``>= 2 c sum_j a_j lambda_j |beta_j|`` (AM-GM, equality at ``|u_j| = |v_j|``). ``lambda = 1`` is the
  plain Hadamard product ``2 c sum a_j |beta_j|``.
- **depth D** ``beta_j = lambda_j prod_k u_jk``: ``d f_i / d u_jk = X_ij beta_j / u_jk`` so
  ``R = c sum_j a_j beta_j^2 sum_k u_jk^{-2} >= c D sum_j a_j lambda_j^{2/D} |beta_j|^{2 - 2/D}``
  (AM-GM over ``k``, equality at equal ``|u_jk|``): ``l1`` at ``D = 2``, smooth and less sparse as ``D`` grows.
- **group Hadamard** ``beta_g = lambda_g s_g v_g`` (one scalar ``s_g`` per group ``g``, ``v_g`` in ``R^k``): with
  ``C_g = (1/n) sum_i x_ig x_ig^T`` (the group's block of ``X^T X / n``),
  ``R = c sum_g lambda_g^2 (v_g^T C_g v_g + s_g^2 tr C_g)``; putting ``v_g = beta_g / (lambda_g s_g)`` and
  minimising over ``s_g^2`` gives ``R* = 2 c sum_g lambda_g sqrt(tr C_g) |C_g^{1/2} beta_g|_2``: a group
  lasso with weights ``sqrt(tr C_g)`` in the metric ``C_g^{1/2}`` (the plain group norm when the
  group's features are whitened, ``C_g`` a multiple of the identity).
- **factorization** ``M = P Q`` observed on a set ``Omega`` of entries (``|Omega|`` samples, ``r_a``
  observations in row ``a``, ``c_b`` in column ``b``): ``R = (c / |Omega|) (sum_a r_a |P_a|^2 + sum_b c_b |Q_b|^2)``,
  and with ``P' = D_r^{1/2} P``, ``Q' = Q D_c^{1/2}`` the classical
  ``min {|P'|_F^2 + |Q'|_F^2 : P' Q' = N} = 2 |N|_*`` gives ``R* = (2 c / |Omega|) |D_r^{1/2} M D_c^{1/2}|_*``
  (when the inner dimension is at least ``rank M``). All ``m x n`` entries observed:
  ``R* = 2 c |M|_* / sqrt(m n)``.

**Constraints the dynamics keep** (:func:`kept_signs`). For ``z = u * v`` write ``w_+ = (u + v)/2``,
``w_- = (u - v)/2`` (``z = w_+^2 - w_-^2``); along gradient flow and along the label-noise slow flow each
of ``w_+``, ``w_-`` evolves multiplicatively, so it keeps its sign and a zero stays zero. A balanced
start ``u_j = v_j`` (``w_- = 0``) keeps ``beta_j >= 0`` for ever, ``u_j = -v_j`` keeps ``beta_j <= 0``;
where both ``w_+`` and ``w_-`` are nonzero neither sign is excluded (the stationary points of the
slow flow are then the KKT points of the unconstrained weighted ``l1``). For depth ``D >= 3`` from a
balanced start (equal ``|u_jk|``) the flow keeps the balance and ``beta_j`` cannot reach 0 in finite
time, so its sign is kept; from unbalanced starts no sign is claimed.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..losses import SquaredLoss
from ._label_noise import hessian_trace_constant
from ._penalties import GroupNorm, PowerPenalty, WeightedL1, WeightedNuclear


def feature_second_moments(X: Float[Array, "n d"]) -> Float[Array, " d"]:
    """``a_j = (1/n) sum_i X_ij^2``."""
    X = jnp.asarray(X)
    return jnp.mean(X * X, axis=0)


def _scales(scales, d):
    return jnp.ones((d,)) if scales is None else jnp.broadcast_to(jnp.asarray(scales, float), (d,))


def hadamard_fibre_penalty(
    X: Float[Array, "n d"], scales: ArrayLike | None = None, signs: ArrayLike | None = None,
    loss: SquaredLoss = SquaredLoss(),
) -> WeightedL1:
    """``R*(beta) = 2 c sum_j a_j lambda_j |beta_j|`` (scaled Hadamard; ``scales = lambda``), with the
    sign constraints ``signs`` (+1, -1, 0 = free; see :func:`kept_signs`)."""
    a = feature_second_moments(X)
    return WeightedL1(2 * hessian_trace_constant(loss) * a * _scales(scales, a.shape[0]), signs)


def depth_fibre_penalty(
    X: Float[Array, "n d"], depth: int, scales: ArrayLike | None = None, signs: ArrayLike | None = None,
    loss: SquaredLoss = SquaredLoss(),
) -> PowerPenalty | WeightedL1:
    """``R*(beta) = c D sum_j a_j lambda_j^{2/D} |beta_j|^{2 - 2/D}`` (depth ``D``; ``D = 2`` returns
    the :class:`WeightedL1` of :func:`hadamard_fibre_penalty`)."""
    if depth < 2:
        raise ValueError(f"depth must be >= 2, got {depth}")
    if depth == 2:
        return hadamard_fibre_penalty(X, scales, signs, loss)
    a = feature_second_moments(X)
    lam = _scales(scales, a.shape[0])
    w = hessian_trace_constant(loss) * depth * a * lam ** (2.0 / depth)
    return PowerPenalty(w, 2.0 - 2.0 / depth, signs)


def _sym_sqrt(C):
    vals, vecs = np.linalg.eigh(C)
    if vals.min() <= 1e-12 * max(vals.max(), 1e-300):
        raise ValueError(
            "a group's feature covariance C_g is singular (more coordinates in the group than "
            "independent samples); the group penalty's metric C_g^(1/2) is then not invertible"
        )
    return (vecs * np.sqrt(vals)) @ vecs.T


def group_fibre_penalty(
    X: Float[Array, "n d"], groups, scales: ArrayLike | None = None, loss: SquaredLoss = SquaredLoss()
) -> GroupNorm:
    """``R*(beta) = 2 c sum_g lambda_g sqrt(tr C_g) |C_g^{1/2} beta_g|_2`` (group Hadamard, one
    ``lambda_g`` per group)."""
    Xn = np.asarray(X, float)
    n = Xn.shape[0]
    groups = [list(g) for g in groups]
    lam = np.ones(len(groups)) if scales is None else np.broadcast_to(np.asarray(scales, float), (len(groups),))
    metrics, weights = [], []
    for g, lg in zip(groups, lam):
        C = Xn[:, g].T @ Xn[:, g] / n
        metrics.append(_sym_sqrt(C))
        weights.append(2 * hessian_trace_constant(loss) * lg * np.sqrt(np.trace(C)))
    return GroupNorm(groups, np.asarray(weights), metrics)


def observation_matrix(shape: tuple[int, int], observed: ArrayLike | None = None) -> Float[Array, "N mn"]:
    """The linear map ``vec(M) -> (M_ab for (a, b) in Omega)`` as a 0/1 matrix (row-major ``vec``);
    ``observed``: integer pairs ``[N, 2]``, or ``None`` for every entry."""
    m, n = shape
    obs = np.argwhere(np.ones(shape, bool)) if observed is None else np.asarray(observed, int)
    S = np.zeros((obs.shape[0], m * n))
    S[np.arange(obs.shape[0]), obs[:, 0] * n + obs[:, 1]] = 1.0
    return jnp.asarray(S)


def factorization_fibre_penalty(
    shape: tuple[int, int], observed: ArrayLike | None = None, loss: SquaredLoss = SquaredLoss()
) -> WeightedNuclear:
    """``R*(M) = (2 c / |Omega|) |D_r^{1/2} M D_c^{1/2}|_*`` for ``M = P Q`` observed on ``observed``
    (integer pairs ``[N, 2]``; ``None``: all entries). Every row and column must be observed."""
    m, n = shape
    obs = np.argwhere(np.ones(shape, bool)) if observed is None else np.asarray(observed, int)
    rows = np.bincount(obs[:, 0], minlength=m).astype(float)
    cols = np.bincount(obs[:, 1], minlength=n).astype(float)
    if rows.min() == 0 or cols.min() == 0:
        raise ValueError("every row and every column needs at least one observed entry")
    return WeightedNuclear(jnp.asarray(rows), jnp.asarray(cols), 2 * hessian_trace_constant(loss) / obs.shape[0])


def kept_signs(u0: ArrayLike, v0: ArrayLike) -> Float[Array, " d"]:
    """Sign constraints that gradient flow and the label-noise slow flow keep for ``z = u * v``:
    ``+1`` where ``u_0 = v_0 != 0`` (``z >= 0`` for ever), ``-1`` where ``u_0 = -v_0 != 0``, ``0``
    (free) elsewhere. (A coordinate with ``u_0 = v_0 = 0`` never moves at all; it is reported as
    ``+1``, and the caller should fix it at 0.)"""
    u0, v0 = jnp.asarray(u0, float), jnp.asarray(v0, float)
    return jnp.where(u0 == v0, 1.0, jnp.where(u0 == -v0, -1.0, 0.0))

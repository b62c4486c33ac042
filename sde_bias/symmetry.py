"""Symmetry geometry: generators, Gram matrix, orbit volume, projectors, balance law.

Everything here implements docs/theory.md section 2 (and the ``log det G`` column of the table in
section 3) for any :class:`~sde_bias.models.AbstractModel`. A model declares its symmetry by
``model.action(theta, s)``; the generator fields ``xi_a(theta)`` (rows of
``Xi = model.generators(theta)``, shape ``[k, p]``) come from one ``jax.jvp`` each. From them:

- the Gram matrix ``G_ab = xi_a . xi_b`` and the local orbit volume ``sqrt(det G)``, whose
  logarithm on the balanced section is the geometric potential of arXiv:2601.06597;
- the tangent and normal projectors ``P_T = Xi^T G^+ Xi`` and ``P_N = I - P_T``; SGD noise
  lives in the range of ``P_N`` (``g_i . xi_a = 0`` for every sample);
- for a linear action the generator matrices ``A_a = d xi_a / d theta``; their symmetric
  combinations ``A = A^T`` define quadratics ``C = theta^T A theta`` that gradient flow
  conserves and that noise moves at the deterministic rate ``eta tr(Cov A)`` (the balance law);
- the noise equilibrium ``tr(Cov A) = 0`` on an orbit (Ziyin et al. 2024, "noise
  equilibrium"; docs/theory.md section 7), to which the balance law drives SGD.

Conventions: ``theta`` is a flat ``(p,)`` vector; a diffusion is given by its columns
``sigma`` of shape ``[p, m]`` with ``Cov = sigma sigma^T`` (docs/theory.md section 1.3), never
square-rooted or passed as a ``p x p`` matrix. The functions taking ``(model, theta)`` are
pure and wrapped in ``eqx.filter_jit`` (the model is a static/array pytree like any equinox
Module), so they compile once per model and shape and compose with ``jax.vmap`` and
``jax.jit``; the exception is :func:`symmetric_generators`, whose output size is data
dependent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .models import AbstractModel

__all__ = [
    "LogDetGram",
    "NoiseEquilibrium",
    "balance_rate",
    "generator_matrices",
    "gram_matrix",
    "log_det_gram",
    "log_orbit_volume",
    "noise_equilibrium",
    "normal_projector",
    "quadratic_charge",
    "symmetric_generators",
    "tangent_projector",
]


# ---------------------------------------------------------------------------- Gram matrix
@eqx.filter_jit
def gram_matrix(model: AbstractModel, theta: Float[Array, " p"]) -> Float[Array, "k k"]:
    """Gram matrix of the generator fields, ``G_ab = xi_a(theta) . xi_b(theta)``.

    docs/theory.md section 2.3. ``sqrt(det G)`` is the local volume of the orbit through ``theta``
    (per unit Lie-algebra volume in the model's basis ``A_1..A_k``). Shape ``[k, k]``;
    ``[0, 0]`` for a model without symmetry.
    """
    xi = model.generators(theta)
    return xi @ xi.T


class LogDetGram(NamedTuple):
    """Result of :func:`log_det_gram`.

    - ``log_det``: ``log det G`` if ``G`` is nonsingular, otherwise the log
      *pseudo*-determinant ``sum log lambda_i`` over the eigenvalues above the rank
      threshold. Always finite (``0`` for ``k = 0`` or ``G = 0``).
    - ``rank``: numerical rank of ``G`` (the dimension of the orbit through ``theta``).
    - ``full_rank``: ``rank == k``, i.e. the group acts locally freely at ``theta``.
    """

    log_det: Float[Array, ""]
    rank: Int[Array, ""]
    full_rank: Bool[Array, ""]


class _GramFactor(NamedTuple):
    """Internal: a factorization of ``G`` that is differentiable where ``G`` is nonsingular."""

    log_det: Float[Array, ""]
    rank: Int[Array, ""]
    full_rank: Bool[Array, ""]
    whitened: Float[Array, "k p"]  # rows span the tangent space; B^T B = P_T


def _default_rtol(k: int, dtype) -> float:
    # Eigenvalues of a Gram matrix from eigh carry an absolute error of order
    # k * eps * lambda_max; 100x that separates "numerically zero" safely and keeps the
    # Cholesky factorization of every matrix judged nonsingular stable.
    return 100.0 * max(k, 1) * float(jnp.finfo(dtype).eps)


def _factor_gram(xi: Float[Array, "k p"], rtol: float | None, with_whitened: bool) -> _GramFactor:
    """Rank, log (pseudo-)determinant and whitened generators of ``G = Xi Xi^T``.

    Full-rank branch: Cholesky ``G = L L^T``, ``log det G = 2 sum log L_ii``, whitened
    generators ``L^{-1} Xi`` (orthonormal rows). Rank-deficient branch: eigen-decomposition
    ``G = V diag(lambda) V^T``, sum of ``log lambda_i`` over ``lambda_i > rtol * lambda_max``
    and whitened rows ``lambda_i^{-1/2} v_i^T Xi`` (zeroed below the threshold).
    Both branches are evaluated on "safe" inputs (the identity resp. a matrix with distinct
    eigenvalues replaces ``G`` in the branch not taken), so values *and* gradients are finite:
    the choice is a ``jnp.where`` on a traced flag, never Python control flow.
    """
    k, p = xi.shape
    dtype = xi.dtype
    if k == 0:
        return _GramFactor(
            jnp.zeros((), dtype), jnp.zeros((), jnp.int32), jnp.ones((), bool), xi
        )
    if rtol is None:
        rtol = _default_rtol(k, dtype)
    gram = xi @ xi.T
    lam = jnp.linalg.eigvalsh(gram)  # ascending; eigenvalue gradients are fine when degenerate
    lam_max = jnp.maximum(lam[-1], 0.0)
    tiny = jnp.finfo(dtype).tiny
    keep = (lam > rtol * lam_max) & (lam > tiny)
    rank = jnp.sum(keep).astype(jnp.int32)
    full_rank = rank == k

    # Cholesky branch (nonsingular G), on the identity when G is singular.
    eye = jnp.eye(k, dtype=dtype)
    chol = jnp.linalg.cholesky(jnp.where(full_rank, gram, eye))
    log_det_chol = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    # Pseudo-determinant branch.
    log_det_eig = jnp.sum(jnp.where(keep, jnp.log(jnp.where(keep, lam, 1.0)), 0.0))
    use_chol = full_rank & jnp.isfinite(log_det_chol)
    log_det = jnp.where(use_chol, log_det_chol, log_det_eig)

    if not with_whitened:
        return _GramFactor(log_det, rank, full_rank, xi)
    white_chol = jsl.solve_triangular(chol, xi, lower=True)
    # eigenvectors only in the singular branch; distinct-eigenvalue stand-in otherwise
    distinct = jnp.diag(jnp.arange(1, k + 1, dtype=dtype))
    lam_v, vecs = jnp.linalg.eigh(jnp.where(use_chol, distinct, gram))
    keep_v = (lam_v > rtol * jnp.maximum(lam_v[-1], 0.0)) & (lam_v > tiny)
    inv_root = jnp.where(keep_v, jax.lax.rsqrt(jnp.where(keep_v, lam_v, 1.0)), 0.0)
    white_eig = inv_root[:, None] * (vecs.T @ xi)
    whitened = jnp.where(use_chol, white_chol, white_eig)
    return _GramFactor(log_det, rank, full_rank, whitened)


@eqx.filter_jit
def log_det_gram(
    model: AbstractModel, theta: Float[Array, " p"], rtol: float | None = None
) -> LogDetGram:
    """Numerically stable ``log det G(theta)`` with explicit rank handling.

    ``G`` is the Gram matrix of :func:`gram_matrix`. When ``G`` is nonsingular the value is
    ``2 sum_i log L_ii`` from the Cholesky factor ``G = L L^T``; when ``G`` is singular (the
    orbit degenerates, e.g. a Hadamard coordinate with ``p_j = q_j = 0``), it is the log
    pseudo-determinant over the eigenvalues ``lambda_i > rtol * lambda_max`` and
    ``full_rank`` is ``False`` -- never ``-inf``. Differentiable where ``G`` is nonsingular.

    On the balanced section this is the potential of arXiv:2601.06597 tabulated in docs/theory.md
    section 3.4 (e.g. ``sum_j log 2|w_j|`` for ``w = p * q``).

    **Arguments:**

    - ``model``, ``theta``: the parameterization and a flat parameter vector ``(p,)``.
    - ``rtol``: relative eigenvalue threshold for the numerical rank; default
      ``100 k eps`` of ``theta``'s dtype.

    **Returns:** a :class:`LogDetGram` ``(log_det, rank, full_rank)``. Jittable.
    """
    f = _factor_gram(model.generators(theta), rtol, with_whitened=False)
    return LogDetGram(f.log_det, f.rank, f.full_rank)


@eqx.filter_jit
def log_orbit_volume(
    model: AbstractModel, theta: Float[Array, " p"], rtol: float | None = None
) -> Float[Array, ""]:
    """``log vol = (1/2) log det G``: log of the local orbit volume (docs/theory.md section 2.3).

    Uses :func:`log_det_gram` (the pseudo-determinant where the orbit degenerates).
    """
    return 0.5 * log_det_gram(model, theta, rtol).log_det


# ---------------------------------------------------------------------------- projectors
@eqx.filter_jit
def tangent_projector(
    model: AbstractModel, theta: Float[Array, " p"], rtol: float | None = None
) -> Float[Array, "p p"]:
    """Orthogonal projector onto the orbit's tangent space, ``P_T = Xi^T G^+ Xi``.

    docs/theory.md section 2.3 (there with ``Xi`` as columns). Computed as ``B^T B`` with
    ``B = L^{-1} Xi`` the whitened generators (Cholesky ``G = L L^T``), so ``P_T`` is exactly
    symmetric and never inverts ``G`` explicitly; where ``G`` is singular the pseudo-inverse
    is used over the numerical rank (see :func:`log_det_gram` for ``rtol``). Shape
    ``[p, p]``; the zero matrix for a model without symmetry. Jittable.
    """
    f = _factor_gram(model.generators(theta), rtol, with_whitened=True)
    return f.whitened.T @ f.whitened


@eqx.filter_jit
def normal_projector(
    model: AbstractModel, theta: Float[Array, " p"], rtol: float | None = None
) -> Float[Array, "p p"]:
    """``P_N = I - P_T``: the projector onto the normal space of the orbit.

    Per-sample gradients, the loss gradient and hence the SGD diffusion all lie in its range
    (docs/theory.md section 2.2). Jittable.
    """
    p = theta.shape[-1]
    return jnp.eye(p, dtype=theta.dtype) - tangent_projector(model, theta, rtol)


# ---------------------------------------------------------------------------- balance law
@eqx.filter_jit
def generator_matrices(model: AbstractModel, theta: Float[Array, " p"]) -> Float[Array, "k p p"]:
    """Jacobians ``A_a = d xi_a / d theta`` of the generator fields, by ``jax.jacfwd``.

    For a linear action (every model in the catalogue) ``xi_a(theta) = A_a theta`` and these
    are the constant Lie-algebra matrices of the action on parameter space (docs/theory.md
    section 2.4); for a nonlinear action they are the linearization at ``theta``. Jittable.
    """
    return jax.jacfwd(model.generators)(theta)


def _sign_canonical(mats: np.ndarray) -> np.ndarray:
    """Flip each matrix so that its largest-magnitude entry is positive (reproducible output)."""
    flat = mats.reshape(mats.shape[0], -1)
    mag = np.abs(flat)
    # first entry within round-off of the largest magnitude (robust to ties such as diag(1, -1))
    first = np.argmax(mag >= (1.0 - 1e-6) * mag.max(axis=1, keepdims=True), axis=1)
    lead = np.take_along_axis(flat, first[:, None], axis=1)
    return mats * np.where(lead < 0, -1.0, 1.0).astype(mats.dtype)[:, :, None]


def symmetric_generators(
    model: AbstractModel, theta: Float[Array, " p"], rtol: float | None = None
) -> Float[Array, "n p p"]:
    """Orthonormal basis of the symmetric matrices in ``span{A_a}``.

    ``A_a`` are the :func:`generator_matrices`. A combination ``A = sum_a c_a A_a`` is kept
    when ``A = A^T``: the coefficients ``c`` solve ``sum_a c_a (A_a - A_a^T) = 0``, whose null
    space is read from an SVD. For such ``A`` the generator field is ``xi = A theta`` and
    ``C(theta) = theta^T A theta`` has ``grad C = 2 xi``, which is orthogonal to every
    per-sample gradient: gradient flow conserves ``C`` and only noise moves it
    (:func:`balance_rate`; docs/theory.md section 2.4). Examples: ``diag(1, -1)`` for the scalar
    ``u v`` model (``C = u^2 - v^2``); the symmetric part ``sym(r)`` of ``gl(r)`` for
    ``P Q`` (``C = <E, P^T P - Q Q^T>``).

    **Arguments:**

    - ``model``, ``theta``: as elsewhere (``theta`` only matters for nonlinear actions).
    - ``rtol``: singular-value threshold, relative to unit-norm combinations, for both the
      span and the symmetry condition; default ``sqrt(eps)``.

    **Returns:** ``[n, p, p]`` matrices, exactly symmetric, orthonormal in the Frobenius
    inner product, each signed so that its largest-magnitude entry is positive;
    ``n = 0`` if no combination is symmetric. Not jittable (``n`` is data dependent);
    cost ``O(k^2 p^2)``.
    """
    mats = np.asarray(generator_matrices(model, theta))
    k, p = mats.shape[0], theta.shape[-1]
    empty = jnp.zeros((0, p, p), theta.dtype)
    if k == 0:
        return empty
    if rtol is None:
        rtol = float(np.finfo(mats.dtype).eps) ** 0.5
    # 1. orthonormal basis B_i of span{A_a} (Frobenius)
    _, s, vt = np.linalg.svd(mats.reshape(k, p * p), full_matrices=False)
    span = int(np.sum(s > rtol * s[0])) if s[0] > 0 else 0
    if span == 0:
        return empty
    basis = vt[:span].reshape(span, p, p)
    # 2. unit coefficient vectors c with sum_i c_i (B_i - B_i^T) = 0 (|sum_i c_i B_i| = |c|)
    asym = (basis - np.swapaxes(basis, 1, 2)).reshape(span, p * p)
    _, s2, vt2 = np.linalg.svd(asym.T, full_matrices=True)  # asym.T: [p^2, span]
    s2 = np.concatenate([s2, np.zeros((span - s2.shape[0],), s2.dtype)])
    null = vt2[s2 <= rtol]
    if null.shape[0] == 0:
        return empty
    sym = np.einsum("ni,ipq->npq", null, basis)
    sym = 0.5 * (sym + np.swapaxes(sym, 1, 2))
    return jnp.asarray(_sign_canonical(sym))


def quadratic_charge(
    A: Float[Array, "*n p p"], theta: Float[Array, " p"]
) -> Float[Array, "*n"]:
    """``C(theta) = theta^T A theta`` (batched over leading axes of ``A``).

    For ``A`` from :func:`symmetric_generators` this is the quantity conserved by gradient
    flow and moved by noise at the rate :func:`balance_rate` (docs/theory.md section 2.4).
    """
    return jnp.einsum("i,...ij,j->...", theta, A, theta)


def balance_rate(
    A: Float[Array, "*n p p"], sigma: Float[Array, "p m"], eta: float | Float[Array, ""] = 1.0
) -> Float[Array, "*n"]:
    """Balance law: ``dC/dt = eta tr(Cov A)`` with ``Cov = sigma sigma^T``.

    For the SGD-SDE ``d theta = mu dt + sqrt(eta) sigma dW`` (docs/theory.md section 1.4) and
    ``C = theta^T A theta`` with ``A`` symmetric and ``A theta`` a generator field, Itô's
    formula gives ``dC = [grad C . mu + (eta/2) tr(sigma sigma^T 2A)] dt + sqrt(eta) grad C^T
    sigma dW``. Since ``grad C = 2 A theta = 2 xi`` is orthogonal to the loss gradient and to
    every noise column, the drift and martingale terms vanish and

        dC/dt = eta tr(Cov A) = eta sum_{i, j} (A sigma)_{ij} sigma_{ij}

    *exactly*, pathwise (a deterministic ODE along each trajectory; docs/theory.md section 2.4,
    Ziyin et al. 2024).

    Evaluation order is chosen from the static shapes, never a ``p x p`` object that ``A``
    does not already imply: with fewer noise columns than parameters (``m < p``) it is
    ``sum((A @ sigma) * sigma)`` (``p x m`` work space); with ``m >= p`` the ``m``-axis is
    contracted first, ``sum(A * (sigma @ sigma^T))``, which is as cheap, shares the
    ``O(p^2 m)`` product across a stack of ``A``'s, and avoids a jaxlib 0.10.2 XLA:CPU
    miscompilation of a matmul followed by a long reduction (jax-ml/jax#39103: wrong
    ``jit`` results for ``sum((A @ sigma) * sigma)`` at some ``m > 16384``).

    **Arguments:**

    - ``A``: ``[p, p]`` or a stack ``[n, p, p]`` of symmetric generator matrices.
    - ``sigma``: diffusion columns ``[p, m]``.
    - ``eta``: learning rate (the SDE's noise scale ``sqrt(eta)``).

    **Returns:** ``dC/dt`` per matrix, shape ``A.shape[:-2]``. Jittable.
    """
    p, m = sigma.shape
    if m >= p:
        return eta * jnp.sum(A * (sigma @ sigma.T), axis=(-2, -1))
    return eta * jnp.sum((A @ sigma) * sigma, axis=(-2, -1))


# ---------------------------------------------------------------------------- noise equilibrium
class NoiseEquilibrium(NamedTuple):
    """Result of :func:`noise_equilibrium`.

    - ``theta``: the point on the orbit of the input with ``tr(Cov A_i) ~ 0`` for all ``i``.
    - ``residual``: ``|r|`` with ``r_i = tr(Cov A_i) / tr(Cov)`` (dimensionless; ``A_i`` of
      unit Frobenius norm gives ``|r_i| <= 1``).
    - ``converged``: ``residual <= tol``.
    """

    theta: Float[Array, " p"]
    residual: Float[Array, ""]
    converged: Bool[Array, ""]


@eqx.filter_jit
def noise_equilibrium(
    model: AbstractModel,
    theta: Float[Array, " p"],
    sigma_fn: Callable[[Float[Array, " p"]], Float[Array, "p m"]],
    A_list: Float[Array, "n p p"] | Sequence[Float[Array, "p p"]],
    *,
    tol: float | None = None,
    max_steps: int = 100,
    max_step_size: float = 2.0,
) -> NoiseEquilibrium:
    """Find the noise equilibrium on the orbit of ``theta``: ``tr(Cov A_i) = 0`` for all ``i``.

    Under SGD noise the balance law (:func:`balance_rate`) moves each conserved quadratic
    ``C_i = theta^T A_i theta`` until ``tr(Cov A_i) = 0``: the *noise equilibrium* of Ziyin et
    al. 2024 (docs/theory.md sections 2.6 and 7). Because the motion is along the orbit, the
    equilibrium has the same invariants (the same predictor) as ``theta``.

    Method: write ``A_i = sum_a c_ia A_a`` in the model's generator matrices (least
    squares), and parameterize the orbit by ``theta(t) = model.action(theta, t @ c)``,
    ``t`` in ``R^n`` (Lie-algebra coordinates restricted to the symmetric directions; exact
    for commuting scaling groups such as ``u v``, Hadamard and ReLU rescalings). Solve the
    ``n`` equations ``r_i(t) = tr(Cov(theta(t)) A_i) / tr(Cov(theta(t))) = 0`` by damped
    Gauss-Newton (Levenberg-Marquardt, ``jax.jacfwd`` Jacobian, steps capped at
    ``max_step_size`` in ``t``), inside a ``lax.while_loop``. Jittable.

    **Arguments:**

    - ``model``, ``theta``: the parameterization and the starting point.
    - ``sigma_fn``: ``theta -> sigma`` diffusion columns ``[p, m]`` (e.g. scaled per-sample
      gradients, or ``delta * grad f(theta; x_i)`` for label noise). Only the covariance's
      direction matters, not its scale.
    - ``A_list``: symmetric generator matrices ``[n, p, p]`` in ``span{A_a}`` (e.g. from
      :func:`symmetric_generators`); their Lie-algebra coordinates are found by least
      squares, so a matrix outside the span is replaced by its projection for the
      parameterization (the residual still uses the matrix given).
    - ``tol``: convergence threshold on the normalized residual; default ``eps^(3/4)``
      (``1.8e-12`` in float64, ``6.5e-6`` in float32).
    - ``max_steps``: iteration cap. ``max_step_size``: largest ``|t|_inf`` change per step.

    **Returns:** a :class:`NoiseEquilibrium` ``(theta, residual, converged)``. If
    ``tr(Cov) = 0`` the residual is ``0`` and ``theta`` is returned unchanged.
    """
    A = jnp.asarray(A_list, dtype=theta.dtype)
    if A.ndim == 2:
        A = A[None]
    n, p = A.shape[0], theta.shape[-1]
    if tol is None:
        tol = float(jnp.finfo(theta.dtype).eps) ** 0.75
    if n == 0:
        return NoiseEquilibrium(theta, jnp.zeros((), theta.dtype), jnp.ones((), bool))

    gens = generator_matrices(model, theta)  # [k, p, p]
    k = gens.shape[0]
    coef = jnp.linalg.lstsq(gens.reshape(k, p * p).T, A.reshape(n, p * p).T)[0]  # [k, n]
    directions = coef.T  # [n, k]

    def point(t):
        return model.action(theta, t @ directions)

    # tr(Cov) rides along as the trace against the identity (one contraction of sigma)
    A_and_identity = jnp.concatenate([A, jnp.eye(p, dtype=A.dtype)[None]])

    def residual(t):
        traces = balance_rate(A_and_identity, sigma_fn(point(t)), 1.0)
        rates, total = traces[:-1], traces[-1]
        safe = jnp.where(total > 0, total, 1.0)
        return jnp.where(total > 0, rates / safe, 0.0)

    def norm(r):
        return jnp.sqrt(jnp.sum(r * r))

    dtype = theta.dtype
    t0 = jnp.zeros((n,), dtype)
    r0 = residual(t0)
    init = (t0, r0, norm(r0), jnp.asarray(1e-3, dtype), jnp.zeros((), jnp.int32))

    def cond(state):
        _, _, nr, lam, i = state
        return (nr > tol) & (i < max_steps) & (lam < 1e10)

    def body(state):
        t, r, nr, lam, i = state
        J = jax.jacfwd(residual)(t)
        jtj = J.T @ J
        d = jnp.diagonal(jtj)
        damp = lam * (d + 1e-12 * jnp.max(d) + jnp.finfo(dtype).tiny)
        step = -jnp.linalg.solve(jtj + jnp.diag(damp), J.T @ r)
        big = jnp.max(jnp.abs(step))
        step = step * jnp.minimum(1.0, max_step_size / jnp.where(big > 0, big, 1.0))
        t_new = t + step
        r_new = residual(t_new)
        nr_new = norm(r_new)
        accept = jnp.isfinite(nr_new) & (nr_new < nr)
        return (
            jnp.where(accept, t_new, t),
            jnp.where(accept, r_new, r),
            jnp.where(accept, nr_new, nr),
            jnp.where(accept, jnp.maximum(lam * 0.1, 1e-15), lam * 10.0),
            i + 1,
        )

    t, _, nr, _, _ = jax.lax.while_loop(cond, body, init)
    return NoiseEquilibrium(point(t), nr, nr <= tol)

"""Symmetry discovery: the Lie algebra of linear reparameterizations that keep a predictor.

A model in :mod:`sde_bias.models` *declares* its symmetry (docs/theory.md section 2.1). This
module *finds* it from the predictor alone, so that a declaration can be checked and a new
parameterization explored before anyone writes its ``action``.

A linear vector field ``theta -> X theta`` (``X`` in ``gl(p)``) generates a one-parameter group
``exp(s X)`` that preserves ``f(.; x)`` for every ``x`` iff it is tangent to every level set:

    grad_theta f(theta; x) . (X theta) = < grad_theta f(theta; x) theta^T , X >_F = 0
    for all inputs x and all parameters theta.

This is one linear equation on the ``p^2`` entries of ``X`` per (theta, x, output component);
the solution set is a Lie algebra ``g`` (closed under commutators). Stacking the rows
``vec(grad f theta^T)`` over random parameters and inputs and taking the null space of the
stacked matrix by SVD gives a basis.

**How many points.** At one parameter ``theta`` the rows span at most
``rank J(theta) <= p - dim(orbit)`` directions (``J`` the Jacobian of the predictions over
all inputs), which can be as small as 1 (a depth-D product of scalars). A fixed number of
points can therefore leave the stacked matrix *exactly* rank deficient, and the SVD then
reports extra "symmetries" with a perfect singular-value gap. Discovery instead adds
parameter points until the numerical rank stops growing: if the rows sampled so far span
less than the full constraint space ``C``, a generic fresh point adds a row outside their
span (the points where every row lies in a proper subspace of ``C`` form a measure-zero
algebraic set), so a batch of fresh points that adds no rank means the span is ``C``.
Every generator found is then checked at fresh *held-out* points before it is reported.

Cost: ``p^2`` unknowns; each point's rows are compressed to ``min(p, rows)`` rows by a QR
factorisation (same Gram matrix, so the same singular values), and the accumulated matrix
to at most ``p^2`` rows after every round: ``O(p^4)`` memory and an ``O(p^6)`` SVD per
round. Run it on *small instances* (``p`` up to a few tens), e.g. a 3 x 2 x 3 factorization
rather than the production size; the algebra of a parameterization family is usually
visible at small sizes. Only *linear* actions are found (all of docs/theory.md section 3.1's
catalogue is linear); discrete symmetries (permutations, sign flips) are not Lie algebras and
do not appear.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .models import AbstractModel

__all__ = [
    "DiscoveredSymmetries",
    "DiscoveryError",
    "discover_for_model",
    "discover_symmetries",
    "generator_residuals",
    "span_residual",
]


class DiscoveryError(ValueError):
    """Discovery could not certify its result: a generator found from the sampled
    constraints is violated at fresh held-out points."""


class DiscoveredSymmetries(NamedTuple):
    """Result of :func:`discover_symmetries`.

    - ``dimension``: ``k``, the dimension of the discovered Lie algebra.
    - ``basis``: ``[k, p, p]``, orthonormal (Frobenius) basis ``X_1..X_k``; ``X_i theta`` are
      the generator fields. Any basis of the same span is equally valid.
    - ``singular_values``: all singular values of the constraint matrix divided by the
      largest, descending (length ``p^2``, zero-padded if there were fewer rows); the last
      ``k`` are the null space.
    - ``smallest_retained``: the smallest relative singular value above ``tol`` (the weakest
      constraint that was kept; ``nan`` if none).
    - ``largest_null``: the largest relative singular value at or below ``tol`` (how far
      from exact the worst discovered symmetry is; ``nan`` if ``k = 0``).
    - ``gap``: ``smallest_retained / largest_null`` (``inf`` when ``k = 0`` or the null
      singular values are exactly zero). Exact symmetries in float64 typically give gaps
      above ``1e8``; a gap of a few decades means the split is not trustworthy.
    - ``tol``: the relative threshold used (for the split and for the held-out check).
    - ``num_rows``: number of constraint rows evaluated (points x inputs x outputs).
    - ``num_thetas``: number of parameter points used (the rank had stopped growing, or
      ``max_thetas`` was reached).
    - ``heldout_residual``: ``max_{|c| = 1} |R_h B^T c| / |R_h|_2`` over the span of the
      basis ``B``, with ``R_h`` the constraint rows at fresh held-out points: the worst
      relative violation of any discovered generator away from the points it was fitted
      on (``0`` if ``k = 0``). At most ``tol``, or discovery raises.
    """

    dimension: int
    basis: Float[Array, "k p p"]
    singular_values: Float[Array, " pp"]
    smallest_retained: float
    largest_null: float
    gap: float
    tol: float
    num_rows: int
    num_thetas: int
    heldout_residual: float


def _batch_size(tree: Any) -> int:
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


def _constraint_rows(
    predict: Callable[[Float[Array, " p"], Any], Array],
    thetas: Float[Array, "t p"],
    inputs: Any,
) -> Float[Array, "rows pp"]:
    """Rows spanning ``{vec(grad_theta f_c(theta; x) theta^T / |theta|)}`` over the inputs.

    ``inputs`` has leading axes ``[t, n]`` (``n`` inputs per theta). For each theta the
    ``n * out`` gradient rows ``G`` are replaced by the ``R`` factor of ``G = Q R``
    (``min(n * out, p)`` rows): ``R^T R = G^T G``, so the stacked matrix keeps its singular
    values and null space. Rows are *not* normalized individually: a row whose gradient is
    tiny (e.g. a saturated softmax) is dominated by round-off from cancellation, and
    rescaling it to unit length would turn that round-off into a spurious constraint.
    """
    p = thetas.shape[-1]

    def rows(theta, xs):
        jac = jax.vmap(lambda x: jax.jacrev(predict)(theta, x))(xs)
        g = jac.reshape(-1, p)  # [n * out, p]
        r = jnp.linalg.qr(g, mode="r")  # [min(n * out, p), p]
        norm = jnp.linalg.norm(theta)
        unit = theta / jnp.where(norm > 0, norm, 1.0)
        return (r[:, :, None] * unit[None, None, :]).reshape(-1, p * p)

    return jax.vmap(rows)(thetas, inputs).reshape(-1, p * p)


def _row_sampler(predict, p, sample_inputs, inputs_per_theta, theta_scale, dtype, count):
    """Jitted ``key -> rows`` for ``count`` random parameters (one compilation per sampler)."""

    @jax.jit
    def sample(key):
        key_theta, key_x = jax.random.split(key)
        thetas = theta_scale * jax.random.normal(key_theta, (count, p), dtype)
        batch = sample_inputs(key_x, count * inputs_per_theta)
        inputs = jax.tree_util.tree_map(
            lambda a: jnp.reshape(a, (count, inputs_per_theta) + jnp.shape(a)[1:]), batch
        )
        return _constraint_rows(predict, thetas, inputs)

    return sample


def _num_outputs(predict, p, sample_inputs, key, dtype) -> int:
    probe_theta = jax.ShapeDtypeStruct((p,), dtype)
    probe_x = jax.eval_shape(
        lambda kk: jax.tree_util.tree_map(lambda a: a[0], sample_inputs(kk, 1)), key
    )
    return max(math.prod(jax.eval_shape(predict, probe_theta, probe_x).shape), 1)


def _default_tol(dtype) -> float:
    return float(jnp.finfo(dtype).eps) ** 0.5


def _relative_residuals(rows: np.ndarray, basis_flat: np.ndarray) -> tuple[np.ndarray, float]:
    """``|R b_i| / |R|_2`` for each basis row ``b_i``, and the worst over their span."""
    if basis_flat.shape[0] == 0:
        return np.zeros(0), 0.0
    scale = np.linalg.norm(rows, 2)
    if scale == 0:
        return np.zeros(basis_flat.shape[0]), 0.0
    prod = rows @ basis_flat.T  # [rows, k]
    per = np.linalg.norm(prod, axis=0) / scale
    worst = float(np.linalg.norm(prod, 2) / scale)
    return per, worst


def generator_residuals(
    predict: Callable[[Float[Array, " p"], Any], Array],
    generators: Float[Array, "k p p"],
    sample_inputs: Callable[[PRNGKeyArray, int], Any],
    key: PRNGKeyArray,
    num_thetas: int | None = None,
    *,
    inputs_per_theta: int | None = None,
    theta_scale: float = 1.0,
    dtype=None,
) -> Float[Array, " k"]:
    """How far each candidate generator ``X_i`` is from a symmetry, at random points.

    Returns ``|R vec(X_i)| / (|R|_2 |X_i|_F)`` with ``R`` the constraint rows
    ``vec(grad_theta f_c(theta; x) theta^T / |theta|)`` at ``num_thetas`` (default ``p``)
    random parameters ``theta ~ N(0, theta_scale^2 I)`` and ``inputs_per_theta`` inputs
    each (defaults as in :func:`discover_symmetries`). A symmetry gives round-off
    (``~1e-15`` in float64); a non-symmetry gives an ``O(1)`` value at generic points. This
    is the held-out check :func:`discover_symmetries` applies to its own basis; use it to
    test a declared or hand-written generator set. Zero matrices give ``0``.
    """
    generators = np.asarray(generators)
    k, p = generators.shape[0], generators.shape[-1]
    dtype = dtype or jnp.result_type(float)
    num_out = _num_outputs(predict, p, sample_inputs, key, dtype)
    if inputs_per_theta is None:
        inputs_per_theta = max(2, math.ceil(2 * p / num_out))
    count = max(2, p) if num_thetas is None else int(num_thetas)
    sample = _row_sampler(predict, p, sample_inputs, inputs_per_theta, theta_scale, dtype, count)
    rows = np.asarray(sample(key), np.float64)
    flat = generators.reshape(k, p * p).astype(np.float64)
    norms = np.linalg.norm(flat, axis=1)
    unit = flat / np.where(norms > 0, norms, 1.0)[:, None]
    per, _ = _relative_residuals(rows, unit)
    return jnp.asarray(np.where(norms > 0, per, 0.0))


def discover_symmetries(
    predict: Callable[[Float[Array, " p"], Any], Array],
    num_params: int,
    sample_inputs: Callable[[PRNGKeyArray, int], Any],
    key: PRNGKeyArray,
    num_thetas: int | None = None,
    tol: float | None = None,
    *,
    inputs_per_theta: int | None = None,
    theta_scale: float = 1.0,
    dtype=None,
    max_thetas: int | None = None,
    num_heldout: int | None = None,
) -> DiscoveredSymmetries:
    """Lie algebra of linear parameter transformations that leave ``predict`` invariant.

    Finds all ``X`` in ``gl(p)`` with ``grad_theta f(theta; x) . (X theta) = 0`` for every
    input and parameter (to first order, hence along the whole flow ``exp(s X)``):
    docs/theory.md section 2.7's symmetry, discovered rather than declared. Constraint rows
    ``vec(grad f_c(theta; x) theta^T)`` (one per output component ``c``) at random
    parameters ``theta ~ N(0, theta_scale^2 I)`` with ``inputs_per_theta`` inputs each are
    stacked, and the null space of the stacked matrix, by SVD with the relative
    singular-value threshold ``tol``, is the algebra.

    Points are added in rounds of ``num_thetas`` until the numerical rank (the number of
    relative singular values above ``tol``) stops growing: after the first round the number
    of further points is sized from the rank each point contributed (``p^2 - rank`` over the
    rank per point, in whole rounds), and a round that adds no rank ends the search (or the
    rank reaches ``p^2``: no symmetry; or ``max_thetas`` points were used). The basis is then
    checked at ``num_heldout`` fresh points: if the span of the basis is violated there by
    more than ``tol`` (relative to the largest singular value of the held-out rows) the
    result is not reported and :class:`DiscoveryError` is raised.

    **Arguments:**

    - ``predict``: ``(theta, x) -> f``, any jax-differentiable predictor (array output of any
      shape; each component gives a constraint). ``x`` may be any pytree (e.g. an integer
      index pair).
    - ``num_params``: ``p``.
    - ``sample_inputs``: ``(key, n) -> batch`` of ``n`` inputs (pytree with leading axis
      ``n``), as accepted by ``jax.vmap(predict, (None, 0))``.
    - ``key``: PRNG key for parameters and inputs.
    - ``num_thetas``: parameter points per round (at least 2); default ``3 p``.
    - ``tol``: relative singular-value threshold; default ``eps^(1/2)`` of ``dtype``
      (``1.5e-8`` in float64, ``3.5e-4`` in float32).
    - ``inputs_per_theta``: default ``max(2, ceil(2 p / out))`` with ``out`` the number of
      output components.
    - ``theta_scale``: standard deviation of the random parameters.
    - ``dtype``: floating dtype of the parameters; default jax's default float.
    - ``max_thetas``: at most this many parameter points; default ``p^2 + 4 num_thetas``
      (every productive point adds at least one to the rank, which is at most ``p^2``).
    - ``num_heldout``: held-out parameter points for the final check; default
      ``num_thetas``.

    **Returns:** a :class:`DiscoveredSymmetries`. Not jittable (the dimension is data
    dependent); the row construction is jitted internally.

    **Raises:** :class:`DiscoveryError` (a ``ValueError``) when the held-out check fails.
    """
    p = int(num_params)
    pp = p * p
    dtype = dtype or jnp.result_type(float)
    if tol is None:
        tol = _default_tol(dtype)
    chunk = 3 * p if num_thetas is None else int(num_thetas)
    if chunk < 2:
        raise ValueError(f"discover_symmetries: num_thetas must be at least 2, got {num_thetas}")
    if max_thetas is None:
        max_thetas = pp + 4 * chunk
    num_out = _num_outputs(predict, p, sample_inputs, key, dtype)
    if inputs_per_theta is None:
        inputs_per_theta = max(2, math.ceil(2 * p / num_out))
    sample = _row_sampler(predict, p, sample_inputs, inputs_per_theta, theta_scale, dtype, chunk)
    key_fit, key_heldout = jax.random.split(key)

    # rounds of `chunk` points; `acc` = diag(s) V^T of everything so far (same singular
    # values and right singular vectors as the full stack, at most p^2 rows)
    acc = np.zeros((0, pp))
    rank, used, rounds, per_point = 0, 0, 0, 1.0
    num_chunks = 1
    while True:
        new = [np.asarray(sample(jax.random.fold_in(key_fit, rounds + i)), np.float64) for i in range(num_chunks)]
        rounds += num_chunks
        used += num_chunks * chunk
        _, s, vt = np.linalg.svd(np.concatenate([acc, *new]), full_matrices=False)
        acc = s[:, None] * vt
        new_rank = int(np.sum(s > tol * s[0])) if s.size and s[0] > 0 else 0
        gained, rank = new_rank - rank, new_rank
        if rounds == 1:  # the first round sizes the next: the rank one point contributes
            per_point = max(rank / used, 1.0 / chunk)
        if rank == pp or gained <= 0 or used >= max_thetas:
            break
        need = math.ceil((pp - rank) / per_point)
        num_chunks = max(1, min(math.ceil(need / chunk), math.ceil((max_thetas - used) / chunk)))

    # final split on the accumulated matrix (padded to p^2 rows for the full null space)
    if acc.shape[0] < pp:
        acc = np.concatenate([acc, np.zeros((pp - acc.shape[0], pp))])
    _, s, vt = np.linalg.svd(acc)
    rel = s / s[0] if s[0] > 0 else np.zeros_like(s)
    k = int(np.sum(rel <= tol))
    basis = vt[pp - k :]
    smallest_retained = float(rel[pp - k - 1]) if k < pp else math.nan
    largest_null = float(rel[pp - k]) if k else math.nan
    gap = math.inf if k == 0 or largest_null == 0.0 else smallest_retained / largest_null

    # held-out check: every direction of the span at fresh points
    heldout = chunk if num_heldout is None else int(num_heldout)
    check = sample if heldout == chunk else _row_sampler(
        predict, p, sample_inputs, inputs_per_theta, theta_scale, dtype, heldout
    )
    per, worst = _relative_residuals(np.asarray(check(key_heldout), np.float64), basis)
    if worst > tol:
        bad = int(np.sum(per > tol))
        raise DiscoveryError(
            f"discover_symmetries: the {k}-dimensional algebra found from {used} parameter points "
            f"(constraint rank {rank} of {pp}) is violated at {heldout} fresh held-out points: "
            f"worst relative residual {worst:.2e} > tol {tol:.1e} ({bad} of the {k} basis "
            f"generators fail on their own)"
            + ("; max_thetas was reached: raise it" if used >= max_thetas and gained else "")
            + "; the sampled points do not pin the algebra down (try more num_thetas or "
            "inputs_per_theta, or check that sample_inputs covers the input space)"
        )
    return DiscoveredSymmetries(
        dimension=k,
        basis=jnp.asarray(basis.reshape(k, p, p)),
        singular_values=jnp.asarray(rel),
        smallest_retained=smallest_retained,
        largest_null=largest_null,
        gap=gap,
        tol=float(tol),
        num_rows=used * inputs_per_theta * num_out,
        num_thetas=used,
        heldout_residual=worst,
    )


def discover_for_model(
    model: AbstractModel,
    sample_inputs: Callable[[PRNGKeyArray, int], Any],
    key: PRNGKeyArray,
    **kwargs,
) -> DiscoveredSymmetries:
    """:func:`discover_symmetries` for ``model.predict`` with ``p = model.num_params``.

    Compare ``result.dimension`` with ``model.lie_algebra_dim`` and, for a linear action,
    check the declared algebra with ``span_residual(result.basis,
    symmetry.generator_matrices(model, theta))``. Extra keyword arguments go to
    :func:`discover_symmetries`.
    """
    return discover_symmetries(model.predict, model.num_params, sample_inputs, key, **kwargs)


def span_residual(
    basis: Float[Array, "k p p"], matrices: Float[Array, "n p p"]
) -> Float[Array, " n"]:
    """Relative distance of each matrix from ``span(basis)``: ``|M - Proj M|_F / |M|_F``.

    ``basis`` must be Frobenius-orthonormal (as :attr:`DiscoveredSymmetries.basis` is).
    Near zero for every declared generator matrix means the declared algebra is contained
    in the discovered one; equal dimensions then make them equal. Zero matrices give ``0``.
    """
    k, p = basis.shape[0], matrices.shape[-1]
    m = matrices.reshape(-1, p * p)
    b = basis.reshape(k, p * p)
    resid = m - (m @ b.T) @ b
    norm = jnp.linalg.norm(m, axis=1)
    return jnp.where(norm > 0, jnp.linalg.norm(resid, axis=1) / jnp.where(norm > 0, norm, 1.0), 0.0)

"""Symmetry discovery: the Lie algebra of linear reparameterizations that keep a predictor.

A model in :mod:`sde_bias.models` *declares* its symmetry (docs/theory.md section 2.1). This module
*finds* it from the predictor alone, so that a declaration can be checked and a new
parameterization explored before anyone writes its ``action``.

A linear vector field ``theta -> X theta`` (``X`` in ``gl(p)``) generates a one-parameter group
``exp(s X)`` that preserves ``f(.; x)`` for every ``x`` iff it is tangent to every level set:

    grad_theta f(theta; x) . (X theta) = < grad_theta f(theta; x) theta^T , X >_F = 0
    for all inputs x and all parameters theta.

This is one linear equation on the ``p^2`` entries of ``X`` per (theta, x, output component);
the solution set is a Lie algebra (closed under commutators). Stacking the rows
``vec(grad f theta^T)`` over random parameters and inputs and taking the null space of the
stacked matrix by SVD gives a basis; a clear gap in the singular values separates exact
symmetries (singular values at round-off level) from merely small constraints.

Cost: ``p^2`` unknowns and, by default, about ``6 p^2`` rows: ``O(p^4)`` memory and an
``O(p^6)`` SVD. Run it on *small instances* (``p`` up to a few tens), e.g. a 3 x 2 x 3
factorization rather than the production size; the algebra of a parameterization family is
usually visible at small sizes. Only *linear* actions are found (all of docs/theory.md section 3.1's
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
    "discover_for_model",
    "discover_symmetries",
    "span_residual",
]


class DiscoveredSymmetries(NamedTuple):
    """Result of :func:`discover_symmetries`.

    - ``dimension``: ``k``, the dimension of the discovered Lie algebra.
    - ``basis``: ``[k, p, p]``, orthonormal (Frobenius) basis ``X_1..X_k``; ``X_i theta`` are
      the generator fields. Any basis of the same span is equally valid.
    - ``singular_values``: all singular values of the constraint matrix divided by the
      largest, descending (length ``p^2``); the last ``k`` are the null space.
    - ``smallest_retained``: the smallest relative singular value above ``tol`` (the weakest
      constraint that was kept; ``nan`` if none).
    - ``largest_null``: the largest relative singular value at or below ``tol`` (how far
      from exact the worst discovered symmetry is; ``nan`` if ``k = 0``).
    - ``gap``: ``smallest_retained / largest_null`` (``inf`` when ``k = 0`` or the null
      singular values are exactly zero). Judge the result by it: exact symmetries in
      float64 typically give gaps above ``1e8``; a gap of a few decades means the split is
      not trustworthy (sample more thetas or inputs, or change ``tol``).
    - ``tol``: the relative threshold used.
    - ``num_rows``: number of constraint rows.
    """

    dimension: int
    basis: Float[Array, "k p p"]
    singular_values: Float[Array, " pp"]
    smallest_retained: float
    largest_null: float
    gap: float
    tol: float
    num_rows: int


def _batch_size(tree: Any) -> int:
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


def _constraint_rows(
    predict: Callable[[Float[Array, " p"], Any], Array],
    thetas: Float[Array, "t p"],
    inputs: Any,
) -> Float[Array, "rows pp"]:
    """Rows ``vec(grad_theta f_c(theta; x) theta^T / |theta|)``.

    ``inputs`` has leading axes ``[t, n]`` (``n`` inputs per theta). Rows are *not*
    normalized individually: a row whose gradient is tiny (e.g. a saturated softmax) is
    dominated by round-off from cancellation, and rescaling it to unit length would turn
    that round-off into a spurious constraint.
    """
    p = thetas.shape[-1]

    def grads(theta, xs):  # [n, out, p]
        jac = jax.vmap(lambda x: jax.jacrev(predict)(theta, x))(xs)
        return jac.reshape(_batch_size(xs), -1, p)

    g = jax.vmap(grads)(thetas, inputs)  # [t, n, out, p]
    norms = jnp.linalg.norm(thetas, axis=1, keepdims=True)
    unit = thetas / jnp.where(norms > 0, norms, 1.0)
    return jnp.einsum("tnci,tj->tncij", g, unit).reshape(-1, p * p)


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
) -> DiscoveredSymmetries:
    """Lie algebra of linear parameter transformations that leave ``predict`` invariant.

    Finds all ``X`` in ``gl(p)`` with ``grad_theta f(theta; x) . (X theta) = 0`` for every
    input and parameter (to first order, hence along the whole flow ``exp(s X)``):
    docs/theory.md section 2.7's symmetry, discovered rather than declared. Constraint rows
    ``vec(grad f_c(theta; x) theta^T)`` (one per output component ``c``) are stacked over
    ``num_thetas`` random parameters ``theta ~ N(0, theta_scale^2 I)`` and
    ``inputs_per_theta`` inputs each; the null space of the stacked matrix, by SVD with the
    relative singular-value threshold ``tol``, is the algebra.

    Each ``theta`` contributes at most ``p - dim(orbit)`` independent rows (the span of
    gradients at ``theta`` times ``theta``), so about ``p`` or more parameters are needed to
    pin down the ``p^2`` unknowns; the defaults use ``3 p`` parameters and at least ``2 p``
    rows each (``>= 6 p^2`` rows). Cost ``O(p^6)`` time, ``O(p^4)`` memory: small
    instances only.

    **Arguments:**

    - ``predict``: ``(theta, x) -> f``, any jax-differentiable predictor (array output of any
      shape; each component gives a constraint). ``x`` may be any pytree (e.g. an integer
      index pair).
    - ``num_params``: ``p``.
    - ``sample_inputs``: ``(key, n) -> batch`` of ``n`` inputs (pytree with leading axis
      ``n``), as accepted by ``jax.vmap(predict, (None, 0))``.
    - ``key``: PRNG key for parameters and inputs.
    - ``num_thetas``: number of random parameters; default ``3 p``.
    - ``tol``: relative singular-value threshold; default ``eps^(1/2)`` of ``dtype``
      (``1.5e-8`` in float64, ``3.5e-4`` in float32).
    - ``inputs_per_theta``: default ``max(2, ceil(2 p / out))`` with ``out`` the number of
      output components.
    - ``theta_scale``: standard deviation of the random parameters.
    - ``dtype``: floating dtype of the parameters; default jax's default float.

    **Returns:** a :class:`DiscoveredSymmetries`. Not jittable (the dimension is data
    dependent); the row construction is jitted internally.
    """
    p = int(num_params)
    dtype = dtype or jnp.result_type(float)
    if tol is None:
        tol = float(jnp.finfo(dtype).eps) ** 0.5
    if num_thetas is None:
        num_thetas = 3 * p
    probe_theta = jax.ShapeDtypeStruct((p,), dtype)
    probe_x = jax.eval_shape(
        lambda kk: jax.tree_util.tree_map(lambda a: a[0], sample_inputs(kk, 1)), key
    )
    num_out = max(math.prod(jax.eval_shape(predict, probe_theta, probe_x).shape), 1)
    if inputs_per_theta is None:
        inputs_per_theta = max(2, math.ceil(2 * p / num_out))
    num_rows = num_thetas * inputs_per_theta * num_out
    if num_rows < p * p:
        raise ValueError(
            f"discover_symmetries: {num_rows} constraint rows for {p * p} unknowns; "
            "increase num_thetas or inputs_per_theta"
        )

    @jax.jit
    def constraint_svd(key):
        key_theta, key_x = jax.random.split(key)
        thetas = theta_scale * jax.random.normal(key_theta, (num_thetas, p), dtype)
        batch = sample_inputs(key_x, num_thetas * inputs_per_theta)
        inputs = jax.tree_util.tree_map(
            lambda a: jnp.reshape(a, (num_thetas, inputs_per_theta) + jnp.shape(a)[1:]), batch
        )
        rows = _constraint_rows(predict, thetas, inputs)
        _, s, vt = jnp.linalg.svd(rows, full_matrices=False)  # s: [p^2] since rows >= p^2
        return s, vt

    # one compiled call; the data-dependent split is done on the host
    s, vt = (np.asarray(a) for a in constraint_svd(key))
    rel = s / s[0] if s[0] > 0 else np.zeros_like(s)
    k = int(np.sum(rel <= tol))
    basis = vt[p * p - k :].reshape(k, p, p)
    smallest_retained = float(rel[p * p - k - 1]) if k < p * p else math.nan
    largest_null = float(rel[p * p - k]) if k else math.nan
    if k == 0 or largest_null == 0.0:
        gap = math.inf
    else:
        gap = smallest_retained / largest_null
    return DiscoveredSymmetries(
        dimension=k,
        basis=jnp.asarray(basis),
        singular_values=jnp.asarray(rel),
        smallest_retained=smallest_retained,
        largest_null=largest_null,
        gap=gap,
        tol=float(tol),
        num_rows=num_rows,
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

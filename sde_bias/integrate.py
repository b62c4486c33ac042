"""The ensemble loop shared by every fixed-step runner (discrete SGD and the SDE).

A run advances an ensemble of seeds in compiled *chunks*. Inside a chunk everything is
one ``jax.lax.scan`` vmapped over seeds:

    chunk = num_records x [ record_every unit steps, then record observables ]
    record interval = blocks of ``block`` unit steps; each block draws its randomness at
                      once from ``fold_in(seed_key, absolute block index)``
    unit step = ``stepper.substeps`` internal steps (SDE sub-steps, SVAG's l steps)

so a run's numbers depend only on (seed, scenario), never on how it is chunked: a run
stopped after any chunk and resumed gives the same numbers bit for bit.

Divergence: after every unit step each seed checks that its parameters are finite and
below ``divergence_threshold``; a seed that fails is frozen, its step is stored in
``diverged_at``, and its later records are NaN. The other seeds go on. The test is
compiled as a cheap elementwise flag accumulated along a *span* of blocks; only when
some live seed's flag failed is the span re-run from its start with the test after
every step, which gives the same numbers as testing every step always.

Randomness of ``group`` consecutive blocks is drawn in one call (``vmap`` over the keys
``fold_in(seed_key, block index)``, so the numbers do not depend on ``group``), with
``group`` as large as fits in ``draw_budget`` elements for the whole ensemble.
"""

import math
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .parallel import on_seed_shards, seed_mesh, shard_seeds

DEFAULT_MAX_BLOCK = 256
DEFAULT_DRAW_BUDGET = 1 << 20  # random draws held at once for the whole ensemble (elements)


def block_size(record_every: int, max_block: int = DEFAULT_MAX_BLOCK) -> int:
    """The largest divisor of ``record_every`` not above ``max_block``."""
    for b in range(min(record_every, max_block), 0, -1):
        if record_every % b == 0:
            return b
    return 1


class Ensemble(eqx.Module):
    """State of an ensemble of seeds after ``step`` unit steps."""

    theta: Float[Array, "S p"]
    aux: Any
    key: PRNGKeyArray
    diverged_at: Int[Array, " S"]
    step: Int[Array, ""]


def shard_ensemble(ens: Ensemble, devices=None) -> Ensemble:
    """``ens`` with its seeds split over the devices (:func:`sde_bias.parallel.shard_seeds`;
    unchanged on one device). :func:`advance` then runs each device's seeds in parallel."""
    theta, key, div = shard_seeds(ens.theta, ens.key, ens.diverged_at, devices=devices)
    aux = shard_seeds(ens.aux, devices=devices) if jax.tree_util.tree_leaves(ens.aux) else ens.aux
    return Ensemble(theta, aux, key, div, ens.step)


def new_ensemble(theta0: Float[Array, "S p"], keys: PRNGKeyArray, aux: Any = None) -> Ensemble:
    """The ensemble at step 0: every seed alive, with auxiliary state ``aux``."""
    return Ensemble(
        theta=theta0,
        aux=aux,
        key=keys,
        diverged_at=jnp.full((theta0.shape[0],), -1, jnp.int32),
        step=jnp.zeros((), jnp.int32),
    )


def init_ensemble(stepper, theta0: Float[Array, "S p"], keys: PRNGKeyArray, data, data_batched: bool) -> Ensemble:
    """:func:`new_ensemble` with the stepper's auxiliary state of every seed."""
    return new_ensemble(theta0, keys, _init_aux(stepper, theta0, data, data_batched))


@eqx.filter_jit
def _init_aux(stepper, theta0, data, data_batched: bool):
    # one compiled program (op by op, a stepper whose init computes something, such as the
    # balance tracker's terms, compiles a program per primitive)
    return jax.vmap(stepper.init, in_axes=(0, 0 if data_batched else None))(theta0, data)


def _where_tree(pred, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def where_seeds(pred: Bool[Array, " S"], new, old):
    """``new`` where ``pred`` else ``old``, ``pred`` [S] broadcast along each leaf's leading
    seed axis."""
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(pred.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old
    )


def within_bounds(theta: Float[Array, "*batch p"], threshold: float) -> Bool[Array, "*batch"]:
    """The divergence test of a state: every entry finite and ``max |theta| < threshold``."""
    return jnp.all(jnp.isfinite(theta), axis=-1) & (jnp.max(jnp.abs(theta), axis=-1) < threshold)


def nan_records(bad: Bool[Array, "*lead"], records: dict) -> dict:
    """``records`` (leaves with leading axes ``bad.shape``) with NaN where ``bad``: the
    records of a seed from its divergence on. Non-float leaves are kept."""
    return jax.tree_util.tree_map(
        lambda a: jnp.where(bad.reshape(bad.shape + (1,) * (a.ndim - bad.ndim)), jnp.nan, a)
        if jnp.issubdtype(a.dtype, jnp.floating)
        else a,
        records,
    )


def draw_group(stepper, data, block: int, blocks_per_record: int, num_seeds: int, dtype, budget: int) -> int:
    """The largest divisor of ``blocks_per_record`` whose blocks' draws, for the whole
    ensemble, fit in ``budget`` elements (at least 1). ``data`` is one seed's data."""
    shapes = jax.eval_shape(
        lambda k: stepper.draw(k, block * stepper.substeps, data, dtype), jax.random.key(0)
    )
    per_block = num_seeds * sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))
    return max(
        g for g in range(1, blocks_per_record + 1)
        if blocks_per_record % g == 0 and (g == 1 or g * per_block <= budget)
    )


def advance(
    stepper,
    ens: Ensemble,
    data,
    observe: Callable,
    *,
    num_records: int,
    record_every: int,
    data_batched: bool = False,
    max_block: int = DEFAULT_MAX_BLOCK,
    divergence_threshold: float = 1e30,
    draw_budget: int = DEFAULT_DRAW_BUDGET,
):
    """Advance ``ens`` by ``num_records * record_every`` unit steps (compiled).

    ``observe(theta, data) -> dict`` is evaluated after each record interval. Returns the
    new ensemble and the records ``{name: [S, num_records, ...]}``.

    When the seeds of ``ens`` are split over several devices (:func:`shard_ensemble`),
    each device runs the loop on its own seeds (:func:`sde_bias.parallel.on_seed_shards`):
    no cross-device collective inside the loop, and the same numbers as an unsplit run."""
    theta, aux, div, records = _advance_compiled(
        stepper, ens.theta, ens.aux, ens.key, ens.diverged_at, ens.step, data, observe,
        num_records=num_records, record_every=record_every, data_batched=data_batched,
        max_block=max_block, divergence_threshold=divergence_threshold, draw_budget=draw_budget,
        mesh=seed_mesh(ens.theta),
    )
    return Ensemble(theta, aux, ens.key, div, ens.step + num_records * record_every), records


@eqx.filter_jit
def _advance_compiled(stepper, theta, aux, key, div, step, data, observe, *, mesh, data_batched, **kwargs):
    def body(shared, seeded):
        stepper, observe, step, data = shared
        theta, aux, key, div, batched_data = seeded
        return _advance_seeds(
            stepper, theta, aux, key, div, step, batched_data if data_batched else data, observe,
            num_seeds=num_seeds, data_batched=data_batched, **kwargs,
        )

    num_seeds = theta.shape[0]
    shared = (stepper, observe, step, None if data_batched else data)
    seeded = (theta, aux, key, div, data if data_batched else None)
    return on_seed_shards(body, mesh, shared, seeded)


def _advance_seeds(
    stepper,
    theta0,
    aux0,
    keys,
    div0,
    step0,
    data,
    observe: Callable,
    *,
    num_seeds: int,
    num_records: int,
    record_every: int,
    data_batched: bool,
    max_block: int,
    divergence_threshold: float,
    draw_budget: int,
):
    """The body of :func:`advance` on the seeds at hand (all, or one device's share).
    ``num_seeds`` is the whole ensemble's size (it sizes the draws, so that a share
    draws exactly as the whole ensemble would). Returns ``(theta, aux, diverged_at,
    records)``."""
    block = block_size(record_every, max_block)
    blocks_per_record = record_every // block
    sub = stepper.substeps
    dax = 0 if data_batched else None
    data0 = jax.tree_util.tree_map(lambda a: a[0], data) if data_batched else data
    group = draw_group(stepper, data0, block, blocks_per_record, num_seeds, theta0.dtype, draw_budget)
    span = group * block

    def seed_draws(key, data, k, dtype):
        """Draws of the ``span`` unit steps from step ``k``; block ``b`` from ``fold_in(key, b)``."""
        if group == 1:
            d = stepper.draw(jax.random.fold_in(key, k // block), block * sub, data, dtype)
        else:
            keys = jax.vmap(lambda i: jax.random.fold_in(key, k // block + i))(jnp.arange(group, dtype=jnp.int32))
            d = jax.vmap(lambda kk: stepper.draw(kk, block * sub, data, dtype))(keys)
            d = jax.tree_util.tree_map(lambda a: a.reshape((group * a.shape[1],) + a.shape[2:]), d)
        return jax.tree_util.tree_map(lambda a: a.reshape((span, sub) + a.shape[1:]), d)

    def substeps(theta, aux, data, draws_unit):
        def substep(c, d):
            th, ax = c
            return stepper.step(th, ax, data, d), None

        return jax.lax.scan(substep, (theta, aux), draws_unit)[0]

    def fast_span(theta, aux, key, data, k):
        """The span with no per-step test; ``ok``: every step finite and below the threshold."""

        def unit(carry, d):
            theta, aux, ok = carry
            th1, ax1 = substeps(theta, aux, data, d)
            return (th1, ax1, ok & (jnp.abs(th1) < divergence_threshold)), None  # NaN fails <

        (theta, aux, ok), _ = jax.lax.scan(
            unit, (theta, aux, jnp.ones(theta.shape, bool)), seed_draws(key, data, k, theta.dtype)
        )
        return theta, aux, jnp.all(ok)

    def checked_span(theta, aux, key, div, data, k):
        """The span with the test after every unit step (freezes a seed where it fails)."""

        def unit(carry, d):
            theta, aux, div, k = carry
            th1, ax1 = substeps(theta, aux, data, d)
            k = k + 1
            bad = ~within_bounds(th1, divergence_threshold)
            alive = div < 0
            keep = alive & ~bad
            theta = jnp.where(keep, th1, theta)
            aux = _where_tree(keep, ax1, aux)
            div = jnp.where(alive & bad, k, div)
            return (theta, aux, div, k), None

        (theta, aux, div, _), _ = jax.lax.scan(unit, (theta, aux, div, k), seed_draws(key, data, k, theta.dtype))
        return theta, aux, div

    def one_span(carry, _):
        theta, aux, div, k = carry
        th1, ax1, ok = jax.vmap(fast_span, in_axes=(0, 0, 0, dax, None))(theta, aux, keys, data, k)
        alive = div < 0

        def accept(_):
            return where_seeds(alive, th1, theta), where_seeds(alive, ax1, aux), div

        def redo_checked(_):
            return jax.vmap(checked_span, in_axes=(0, 0, 0, 0, dax, None))(theta, aux, keys, div, data, k)

        # outside the seed vmap: a real branch, the checked re-run costs nothing unless
        # needed; over this device's seeds only (see advance: no collective in the loop)
        theta, aux, div = jax.lax.cond(jnp.any(alive & ~ok), redo_checked, accept, None)
        return (theta, aux, div, k + span), None

    def one_record(carry, _):
        carry, _ = jax.lax.scan(one_span, carry, None, length=record_every // span)
        theta, aux, div, k = carry
        obs = observe_seeds(observe, theta, data, data_batched)
        return carry, nan_records(div >= 0, obs)

    (theta, aux, div, _), records = jax.lax.scan(one_record, (theta0, aux0, div0, step0), None, length=num_records)
    records = jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), records)  # [S, num_records, ...]
    return theta, aux, div, records


def observe_seeds(observe: Callable, theta: Float[Array, "S p"], data, data_batched: bool = False) -> dict:
    """``observe(theta[i], data)`` for every seed ``i``, one seed at a time (``lax.map``).

    Not ``vmap``: an observable may call LAPACK (singular values), and jaxlib's *batched*
    LAPACK kernels split the batch over XLA's intra-op thread pool and block until it
    finishes. When the seeds run as one partition per core, every pool thread can end up
    blocked that way, waiting for work queued behind itself: a deadlock. One matrix per
    call runs inline. Observables are evaluated once per record interval, so the loop
    costs little."""
    if data_batched:
        return jax.lax.map(lambda args: observe(*args), (theta, data))
    return jax.lax.map(lambda th: observe(th, data), theta)


@eqx.filter_jit
def observe_all(observe: Callable, theta, data, data_batched: bool = False):
    """``observe`` on every seed, compiled (:func:`observe_seeds`)."""
    return observe_seeds(observe, theta, data, data_batched)


def run_ensemble(
    stepper,
    theta0: Float[Array, "S p"],
    keys: PRNGKeyArray,
    data,
    observe: Callable,
    *,
    num_steps: int,
    record_every: int,
    data_batched: bool = False,
    chunk_records: int | None = None,
    callback: Callable | None = None,
    **kwargs,
) -> dict:
    """Run an ensemble to ``num_steps`` unit steps, in memory.

    Returns ``{"step": [R+1], "records": {name: [S, R+1, ...]}, "diverged_at": [S],
    "ensemble": Ensemble}`` where record 0 is the initial state. ``callback(ens, records)``
    is called after each chunk (progress, checkpoints)."""
    if num_steps % record_every:
        raise ValueError(f"num_steps={num_steps} is not a multiple of record_every={record_every}")
    total = num_steps // record_every
    chunk_records = chunk_records or total
    ens = init_ensemble(stepper, theta0, keys, data, data_batched)
    first = observe_all(observe, theta0, data, data_batched)
    parts = [jax.tree_util.tree_map(lambda a: a[:, None], first)]
    done = 0
    while done < total:
        n = min(chunk_records, total - done)
        ens, rec = advance(
            stepper, ens, data, observe, num_records=n, record_every=record_every,
            data_batched=data_batched, **kwargs,
        )
        parts.append(rec)
        done += n
        if callback is not None:
            callback(ens, rec)
    records = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=1), *parts)
    return {
        "step": jnp.arange(total + 1) * record_every,
        "records": records,
        "diverged_at": ens.diverged_at,
        "ensemble": ens,
    }

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
``diverged_at``, and its later records are NaN. The other seeds go on.
"""

from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

DEFAULT_MAX_BLOCK = 256


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


def init_ensemble(stepper, theta0: Float[Array, "S p"], keys: PRNGKeyArray, data, data_batched: bool) -> Ensemble:
    aux = jax.vmap(stepper.init, in_axes=(0, 0 if data_batched else None))(theta0, data)
    return Ensemble(
        theta=theta0,
        aux=aux,
        key=keys,
        diverged_at=jnp.full((theta0.shape[0],), -1, jnp.int32),
        step=jnp.zeros((), jnp.int32),
    )


def _where_tree(pred, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


@eqx.filter_jit
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
):
    """Advance ``ens`` by ``num_records * record_every`` unit steps.

    ``observe(theta, data) -> dict`` is evaluated after each record interval. Returns the
    new ensemble and the records ``{name: [S, num_records, ...]}``."""
    block = block_size(record_every, max_block)
    blocks_per_record = record_every // block
    sub = stepper.substeps
    step0 = ens.step

    def seed_chunk(theta, aux, key, div, data):
        dtype = theta.dtype

        def unit(carry, draws_unit):
            theta, aux, div, k = carry

            def substep(c, d):
                th, ax = c
                return stepper.step(th, ax, data, d), None

            (th1, ax1), _ = jax.lax.scan(substep, (theta, aux), draws_unit)
            k = k + 1
            bad = ~(jnp.all(jnp.isfinite(th1)) & (jnp.max(jnp.abs(th1)) < divergence_threshold))
            alive = div < 0
            keep = alive & ~bad
            theta = jnp.where(keep, th1, theta)
            aux = _where_tree(keep, ax1, aux)
            div = jnp.where(alive & bad, k, div)
            return (theta, aux, div, k), None

        def one_block(carry, b):
            theta, aux, div, k = carry
            draws = stepper.draw(jax.random.fold_in(key, k // block), block * sub, data, dtype)
            draws = jax.tree_util.tree_map(lambda a: a.reshape((block, sub) + a.shape[1:]), draws)
            carry, _ = jax.lax.scan(unit, carry, draws)
            return carry, None

        def one_record(carry, _):
            carry, _ = jax.lax.scan(one_block, carry, None, length=blocks_per_record)
            theta, aux, div, k = carry
            obs = observe(theta, data)
            obs = jax.tree_util.tree_map(
                lambda a: jnp.where(div >= 0, jnp.full_like(a, jnp.nan), a)
                if jnp.issubdtype(a.dtype, jnp.floating)
                else a,
                obs,
            )
            return carry, obs

        (theta, aux, div, _), records = jax.lax.scan(
            one_record, (theta, aux, div, step0), None, length=num_records
        )
        return theta, aux, div, records

    theta, aux, div, records = jax.vmap(
        seed_chunk, in_axes=(0, 0, 0, 0, 0 if data_batched else None)
    )(ens.theta, ens.aux, ens.key, ens.diverged_at, data)
    new = Ensemble(theta, aux, ens.key, div, step0 + num_records * record_every)
    return new, records


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
    first = jax.vmap(observe, in_axes=(0, 0 if data_batched else None))(theta0, data)
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

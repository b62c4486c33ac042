"""The runners: an ensemble of seeds from a :class:`~sde_bias.build.RunSetup` to records.

- :class:`FixedStepRunner`: any :class:`~sde_bias.contracts.AbstractStepper` (discrete SGD,
  GD, SVAG, a fixed-step diffrax solver) in the chunked loop of :func:`sde_bias.integrate.advance`;
- :class:`AdaptiveRunner`: ``diffrax.diffeqsolve`` with a PID step-size controller on a
  ``VirtualBrownianTree`` (:func:`sde_bias.sde.solve_adaptive`), every seed solved from the
  last saved state to the next record times.

Both start from the same ensemble (:func:`sde_bias.integrate.new_ensemble`, seeds split over
the devices by :func:`sde_bias.integrate.shard_ensemble`) and treat divergence the same way:
a seed whose state leaves the bounds (:func:`sde_bias.integrate.within_bounds`) is frozen at
its last good state, ``diverged_at`` holds the step of its first failed record interval
(first failed unit step for fixed steps), and its records from there on are NaN
(:func:`sde_bias.integrate.nan_records`). A solver preset builds its runner
(:meth:`sde_bias.presets.DiscretePreset.make_runner`, ...).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .contracts import AbstractRunner, AbstractStepper
from .integrate import (
    Ensemble,
    advance,
    init_ensemble,
    nan_records,
    new_ensemble,
    observe_seeds,
    shard_ensemble,
    where_seeds,
    within_bounds,
)
from .parallel import on_seed_shards, seed_mesh


def _threshold(setup) -> float:
    return float(setup.scenario.training.divergence_threshold)


class FixedStepRunner(AbstractRunner):
    """A stepper in the chunked loop of :mod:`sde_bias.integrate` (discrete or fixed-step SDE)."""

    stepper: AbstractStepper
    preset: Any = eqx.field(static=True)

    def init(self, setup) -> Ensemble:
        return shard_ensemble(init_ensemble(self.stepper, setup.theta0, setup.run_keys, setup.data, setup.data_batched))

    def advance(self, ens: Ensemble, setup, num_records: int, record_every: int):
        return advance(
            self.stepper,
            ens,
            setup.runner_data,
            setup.observe,
            num_records=num_records,
            record_every=record_every,
            data_batched=setup.data_batched,
            divergence_threshold=_threshold(setup),
        )


class AdaptiveRunner(AbstractRunner):
    """Adaptive-step SDE integration with :func:`sde_bias.sde.solve_adaptive`, vmapped
    over seeds and advanced record interval by record interval from the saved state.

    The Brownian path of a seed is a ``VirtualBrownianTree`` on ``[0, t_final]`` keyed by
    the seed's run key, so a run split into chunks (or resumed) sees the same path."""

    sde: Any
    solver: Any
    preset: Any = eqx.field(static=True)
    t_final: float = eqx.field(static=True)
    ito_correction: bool = eqx.field(static=True)

    def init(self, setup) -> Ensemble:
        return shard_ensemble(new_ensemble(setup.theta0, setup.run_keys))

    def advance(self, ens: Ensemble, setup, num_records: int, record_every: int):
        theta, div, obs = _adaptive_chunk(
            self,
            ens.theta,
            ens.key,
            ens.diverged_at,
            setup.runner_data,
            ens.step,
            setup.observe,
            num_records,
            record_every,
            setup.data_batched,
            _threshold(setup),
            seed_mesh(ens.theta),
        )
        new = Ensemble(theta, ens.aux, ens.key, div.astype(jnp.int32), ens.step + num_records * record_every)
        return new, obs


@eqx.filter_jit
def _adaptive_chunk(runner, theta, keys, div, data, step0, observe, num_records, record_every, data_batched, threshold, mesh):
    """One chunk of the adaptive runner for every seed; on each device's seeds separately
    when ``mesh`` is given (a vmapped adaptive solve is a while loop whose predicate
    reduces over seeds: split over devices by XLA, that reduction would be a collective
    inside the loop)."""
    from .sde import solve_adaptive

    def body(shared, seeded):
        runner, observe, step0, shared_data = shared
        theta, keys, div, seed_data = seeded
        sde, p = runner.sde, runner.preset
        dtype = theta.dtype

        def solve(theta, key, data):
            """The seed's states at the chunk's record times, how many of them are good in
            a row, and the state to continue from if the seed is alive."""
            steps = step0 + record_every * jnp.arange(1, num_records + 1)
            save_times = steps.astype(dtype) * sde.lr
            t_start = step0.astype(dtype) * sde.lr
            ys, ok = solve_adaptive(
                sde,
                runner.solver,
                theta,
                data,
                key,
                save_times,
                t_start,
                runner.t_final,
                rtol=p.rtol,
                atol=p.atol,
                dt0=p.dt0,
                brownian_tol=p.brownian_tol,
                max_steps=p.max_steps,
                ito_correction=runner.ito_correction,
            )
            n_good = jnp.sum(jnp.cumprod(within_bounds(ys, threshold).astype(jnp.int32)))
            all_good = (n_good == num_records) & ok
            last_good = jnp.where(n_good > 0, ys[jnp.maximum(n_good - 1, 0)], theta)
            return ys, n_good, all_good, jnp.where(all_good, ys[-1], last_good)

        ys, n_good, all_good, reached = jax.vmap(solve, in_axes=(0, 0, 0 if data_batched else None))(
            theta, keys, seed_data if data_batched else shared_data
        )
        alive = div < 0
        fail_at = step0 + record_every * jnp.minimum(n_good + 1, num_records)
        new_div = jnp.where(alive & ~all_good, fail_at, div)
        new_theta = where_seeds(alive, reached, theta)
        # observables one state at a time (see integrate.observe_seeds)
        s, r = ys.shape[:2]
        finite = jnp.where(jnp.isfinite(ys), ys, 0.0)
        if data_batched:  # each seed's records with that seed's data (no copy of the data per record)
            obs = jax.lax.map(lambda a: observe_seeds(observe, a[0], a[1], False), (finite, seed_data))
        else:
            obs = observe_seeds(observe, finite.reshape((s * r,) + ys.shape[2:]), shared_data, False)
            obs = jax.tree_util.tree_map(lambda a: a.reshape((s, r) + a.shape[1:]), obs)
        idx = jnp.arange(num_records)
        bad_rec = (~alive[:, None]) | ((~all_good[:, None]) & (idx[None, :] >= n_good[:, None]))
        return new_theta, new_div, nan_records(bad_rec, obs)

    shared = (runner, observe, step0, None if data_batched else data)
    seeded = (theta, keys, div, data if data_batched else None)
    return on_seed_shards(body, mesh, shared, seeded)

"""Seed sharding over several devices (on CPU: several host "devices", one per core).

XLA runs one compiled ensemble loop on one core: the seeds of a vmapped chunk are not
spread over the other cores by themselves. Splitting the host into ``n`` CPU devices
and sharding the seed axis of the ensemble over them makes the jitted
:func:`~sde_bias.integrate.advance` run as ``n`` partitions in parallel
(``benchmarks/README.md`` has the measured ratios). The seeds are independent, so a
sharded run gives the same numbers, bit for bit, as an unsharded one.

No collective inside a loop. The ensemble loop branches on "did any live seed fail?"
inside its scan. Left to XLA's automatic partitioner, that reduction over a sharded
seed axis becomes a cross-device all-reduce inside a while loop, and XLA's in-process
CPU collectives can then wait forever for a partition that never arrives (a deadlock
or a rendezvous-timeout abort). Every compiled loop over sharded seeds therefore runs
under :func:`on_seed_shards`: ``shard_map`` over the seed axis, so each device runs the
loop on its own seeds, decides its own branches, and no collective is ever emitted.

The number of host devices: ``configure_host_devices(n)``; the CLI passes ``--devices``
or the ``SDE_BIAS_DEVICES`` environment variable (1 = no split), default all cores.

Usage::

    from sde_bias.parallel import configure_host_devices, shard_seeds
    configure_host_devices()          # before any JAX computation (the CLI does this first)
    theta0, keys = shard_seeds(theta0, keys)
    out = run_ensemble(stepper, theta0, keys, data, observe, ...)

:func:`shard_seeds` is a no-op on one device, so code can call it unconditionally.
"""

import os
import warnings

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SEED_AXIS = "seed"
DEVICES_ENV = "SDE_BIAS_DEVICES"


def available_cores() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def devices_from_env(value: str | None = None) -> int | None:
    """The host-device count asked for by ``SDE_BIAS_DEVICES`` (``None`` when unset).

    Raises ``ValueError`` naming the variable when it is not a positive integer."""
    raw = os.environ.get(DEVICES_ENV) if value is None else value
    if raw is None or not raw.strip():
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{DEVICES_ENV}={raw!r}: expected a positive integer (1 = no split)")
    return n


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # private API moved: assume the worst
        return True


def configure_host_devices(n: int | None = None) -> int:
    """Split the CPU into ``n`` JAX devices (default: the number of cores available to
    this process) so that :func:`shard_seeds` can run seed shards in parallel.

    Must run before JAX executes anything (the backend reads the setting once, when it
    starts); importing ``sde_bias`` is fine. Later calls cannot change the device count:
    they warn and return the count in force. Only CPU devices are affected (an
    accelerator, if present, stays one device). Returns the number of CPU devices that
    will be used."""
    if n is None:
        n = available_cores()
    n = max(int(n), 1)
    if _backends_initialized():
        have = len(jax.devices("cpu"))
        if have != n:
            warnings.warn(
                f"configure_host_devices({n}) called after JAX started; keeping {have} CPU device(s)",
                stacklevel=2,
            )
        return have
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except AttributeError:  # older JAX: the XLA flag does the same
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
        os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
    return n


def _largest_divisor(size: int, limit: int) -> int:
    for d in range(min(size, limit), 0, -1):
        if size % d == 0:
            return d
    return 1


def seed_sharding(num_seeds: int, devices=None) -> NamedSharding | None:
    """The sharding that splits a leading seed axis of length ``num_seeds`` evenly over
    as many of ``devices`` (default: ``jax.devices()``) as divide it; ``None`` when that
    is one device (nothing to split)."""
    devices = list(jax.devices() if devices is None else devices)
    k = _largest_divisor(int(num_seeds), len(devices))
    if k <= 1:
        return None
    mesh = Mesh(np.asarray(devices[:k]), (SEED_AXIS,))
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def shard_seeds(*arrays, devices=None):
    """Place each argument (an array or a pytree of arrays, PRNG key arrays included)
    with its leading (seed) axis split over the devices.

    All leaves must share the same leading size ``S``. The split uses the largest
    number of devices that divides ``S``; with one device (or ``S`` prime and larger than
    the device count) the arguments are returned unchanged. Returns one value for one
    argument, a tuple otherwise. The jitted ensemble loop then runs partitioned, each
    device advancing its own seeds; results keep the seed sharding."""
    leaves = [leaf for a in arrays for leaf in jax.tree_util.tree_leaves(a)]
    if not leaves:
        return arrays[0] if len(arrays) == 1 else arrays
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"shard_seeds needs arrays with one common leading (seed) axis, got sizes {sizes}")
    sharding = seed_sharding(sizes.pop(), devices)
    if sharding is None:
        out = arrays
    else:
        out = tuple(jax.device_put(a, sharding) for a in arrays)
    return out[0] if len(arrays) == 1 else tuple(out)


def seed_mesh(x) -> Mesh | None:
    """The device mesh over which ``x``'s leading (seed) axis is split, or ``None``
    when ``x`` is not split over several devices (one device, a tracer, a NumPy array)."""
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, NamedSharding):
        return None
    mesh = sharding.mesh
    if mesh.size <= 1 or tuple(mesh.axis_names) != (SEED_AXIS,):
        return None
    spec = tuple(sharding.spec)
    if not spec or spec[0] != SEED_AXIS:
        return None
    return mesh


def on_seed_shards(fn, mesh: Mesh | None, shared, seeded):
    """``fn(shared, seeded)``, run on each device's seeds separately when ``mesh`` is given.

    ``seeded``: a pytree of arrays with a leading seed axis (split over ``mesh``);
    ``shared``: anything else (the same on every device; its non-array leaves are static).
    Every output of ``fn`` must have a leading seed axis. With ``mesh=None`` this is just
    ``fn(shared, seeded)``. Call it inside ``jit``."""
    if mesh is None:
        return fn(shared, seeded)
    # a closure would hand shard_map tracers of the outer trace: pass the arrays in
    dyn, static = eqx.partition(shared, eqx.is_array)

    def local(dyn, seeded):
        return fn(eqx.combine(dyn, static), seeded)

    return per_shard(local, mesh, in_specs=(REPLICATED, SEEDS), out_specs=SEEDS)(dyn, seeded)


def per_shard(fn, mesh: Mesh, in_specs, out_specs):
    """``fn`` run on every seed shard separately (``shard_map`` over the seed axis).

    ``fn`` sees the local seeds of one device; its reductions over seeds are local, so
    no cross-device collective is emitted. Specs: :data:`SEEDS` for a leading seed axis,
    :data:`REPLICATED` for the rest (a spec applies to a whole pytree). Replication is not
    type-checked (the loop carries mix per-seed and shared values)."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # older JAX

    return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


SEEDS = PartitionSpec(SEED_AXIS)
REPLICATED = PartitionSpec()

"""Running a sweep's groups on Dask (the ``distributed`` extra).

``--dask local[:N]`` starts a :class:`distributed.LocalCluster` of ``N`` worker processes
(default 2), one thread each, *spawned* (not forked: a forked copy of a process whose JAX
runtime has started can hang); ``--scheduler tcp://host:port`` uses a running cluster
(e.g. one started by dask-jobqueue on SLURM or PBS, see the README). One group of points
is one task: the worker rebuilds its points from the scenario mapping and the points'
overrides (so nothing JAX crosses the network), runs them
(:func:`sde_bias.sweep_run.run_group`) and returns NumPy arrays. Results stream back as
they finish and the client alone writes the file. Each worker splits its cores into JAX
host devices (``SDE_BIAS_DEVICES`` of the worker, default its share of the cores).

Progress inside a group: the worker publishes the fraction of its group done after a chunk
of records (at most one event per ``every_s`` seconds) as an event on the topic
:data:`PROGRESS_TOPIC`; the client subscribes to it and prints it like the in-process
progress lines.
"""

from __future__ import annotations

import time
from typing import Callable

PROGRESS_TOPIC = "sde-bias-progress"

from .errors import UserError


def check_available():
    try:
        import distributed  # noqa: F401
    except ModuleNotFoundError:
        raise UserError("--dask/--scheduler need the distributed extra: pip install 'sde_bias[distributed]'") from None


def _progress_publisher(group: int, every_s: float):
    """``on_chunk`` for :func:`run_group` on a worker: an event on :data:`PROGRESS_TOPIC`
    at most every ``every_s`` seconds (none outside a worker)."""
    last = [time.monotonic()]

    def on_chunk(runner: str, fraction: float):
        now = time.monotonic()
        if now - last[0] < every_s or not 0 < fraction < 1:
            return
        last[0] = now
        try:
            from distributed import get_worker

            get_worker().log_event(PROGRESS_TOPIC, {"group": group, "runner": runner, "fraction": float(fraction)})
        except ValueError:  # not running on a worker
            pass

    return on_chunk


def _task(raw: dict, source: str, variant, point_overrides: list[list[str]], seeds, point_ids: list[int], devices: int | None,
          group: int = 0, every_s: float = 10.0):
    """A group on a worker: scenarios from the mapping, then :func:`run_group`."""
    from .parallel import configure_host_devices

    try:
        configure_host_devices(devices)
    except Exception:  # noqa: BLE001 - JAX already started in this worker: keep its devices
        pass
    from .presets import load_presets
    from .scenario import scenario_from_dict
    from .sweep_run import run_group

    presets = load_presets()
    base = {k: v for k, v in raw.items() if k != "sweep"}
    scs = [scenario_from_dict(base, source, variant, ov, seeds, presets) for ov in point_overrides]
    # the worker builds its points
    result = run_group(scs, list(range(len(scs))), presets, on_chunk=_progress_publisher(group, every_s))
    result.points = list(point_ids)
    return result


def _parse_local(spec: str) -> int:
    if spec == "local":
        return 2
    head, _, n = spec.partition(":")
    if head != "local" or not n.isdigit() or int(n) < 1:
        raise UserError(f"--dask {spec!r}: expected local or local:N with N >= 1 workers")
    return int(n)


def run_on_dask(prep, todo: list[tuple[int, list[int]]], write: Callable, dask_spec: str | None, scheduler: str | None, log=print,
                on_chunk: Callable | None = None, every_s: float = 10.0):
    """Submit every group of ``todo`` and ``write(group_index, result)`` as each finishes;
    ``on_chunk(group_index, runner, fraction)`` for the workers' progress events."""
    import dask
    from distributed import Client, LocalCluster, as_completed

    from .parallel import available_cores

    plan, req = prep.plan, prep.request
    cluster = None
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn", "distributed.worker.daemon": False}):
        if scheduler:
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as e:
                raise UserError(f"--scheduler {scheduler}: cannot connect ({e})") from None
            devices = None
        else:
            n = _parse_local(dask_spec)
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
            devices = max(1, available_cores() // n)
            log(f"dask: LocalCluster with {n} workers ({devices} JAX devices each)")
        try:
            if on_chunk is not None:
                def handler(event):
                    msg = event[1]
                    on_chunk(int(msg["group"]), str(msg["runner"]), float(msg["fraction"]))

                client.subscribe_topic(PROGRESS_TOPIC, handler)
            futures = {}
            for gi, g in todo:
                fut = client.submit(
                    _task,
                    prep.raw,
                    prep.source,
                    req.variant,
                    [list(req.overrides) + plan.overrides(i) for i in g],
                    req.seeds,
                    g,
                    devices,
                    gi,
                    every_s,
                    pure=False,
                    key=f"sde-bias-group-{gi}",
                )
                futures[fut] = gi
            for fut in as_completed(futures):
                write(futures[fut], fut.result())
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

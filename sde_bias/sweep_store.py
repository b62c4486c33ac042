"""The HDF5 file of a sweep, readable with h5py and xarray (h5netcdf engine).

Layout::

    /                        attributes: kind = "sweep", scenario_yaml (the base scenario,
                             after variant and --set), sweep (JSON: dims, keys, values),
                             sweep_hash, scenario_name, variant, overrides, seeds, complete,
                             diverged_points (JSON), versions, wall_time_s
        point_done [dims...] 1 when the point's group is written (what --resume skips)
        point_group [dims...] the index of the point's group
    /data                    the generated data (as in a run file), when it is the same in
                             every point (absent when a swept key changes it)
    /<runner>                one group per runner (sgd, gd, sde/heun, ...)
        <key path> [dim]     dimension scale of every swept dimension, named by its
                             first key (``training.lr``); further zipped keys are
                             variables over that dimension
        seed [seed]          dimension scale: the seed index i (PRNGKey(base + i))
        seed_value [dims..., seed]  the seed number base + i of every point
        step [step]          dimension scale: the SGD step of every record
        time [dims..., step] t = step * lr of each point
        <observable> [dims..., seed, step, ...]
        diverged_at [dims..., seed]   -1, or the step at which the seed diverged

so ``xarray.open_dataset(path, group="sgd", engine="h5netcdf")`` gives every observable
over ``(training.lr, ..., seed, step)``. The time is a variable, not the dimension:
with a swept learning rate the same record index is a different time at every point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .store import attr_value, dataset_name, dim_names, environment_attrs, now_iso, runner_group_paths

KIND = "sweep"


def is_sweep_file(path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("kind") == KIND
    except OSError:
        return False


def plan_json(plan) -> str:
    return json.dumps(
        {"dims": [{"name": d.name, "keys": list(d.keys), "values": d.values} for d in plan.dims]},
        sort_keys=True,
    )


def _scale(g: h5py.Group, name: str, values: np.ndarray) -> h5py.Dataset:
    ds = g.create_dataset(name, data=values)
    ds.make_scale(name)
    return ds


def _attach(ds: h5py.Dataset, scales: list[h5py.Dataset]):
    for k, s in enumerate(scales):
        ds.dims[k].attach_scale(s)


class SweepFile:
    """An open sweep file (``.tmp`` while written)."""

    def __init__(self, h5: h5py.File):
        self.h5 = h5

    @classmethod
    def create(cls, path, plan, attrs: dict[str, Any]) -> "SweepFile":
        h5 = h5py.File(path, "w")
        for k, v in {**attrs, **environment_attrs(), "kind": KIND, "sweep": plan_json(plan), "created": now_iso()}.items():
            h5.attrs[k] = attr_value(v)
        h5.attrs["complete"] = np.int8(0)
        f = cls(h5)
        scales = f._dims(h5, plan)
        done = h5.create_dataset("point_done", data=np.zeros(plan.shape, np.int8))
        grp = h5.create_dataset("point_group", data=np.full(plan.shape, -1, np.int32))
        _attach(done, scales)
        _attach(grp, scales)
        return f

    @classmethod
    def open(cls, path, mode: str = "r") -> "SweepFile":
        return cls(h5py.File(path, mode))

    def _dims(self, g: h5py.Group, plan) -> list[h5py.Dataset]:
        """The swept dimensions' scales in ``g`` (and the further zipped keys over them)."""
        scales = []
        for d in plan.dims:
            s = _scale(g, d.name, np.asarray(d.values[d.name]))
            for k in d.keys[1:]:
                v = g.create_dataset(k, data=np.asarray(d.values[k]))
                v.dims[0].attach_scale(s)
            scales.append(s)
        return scales

    def write_group(self, plan, result, index_of_point, group_index: int, seeds: np.ndarray, lrs: np.ndarray):
        """Write one group's records (``result``: :class:`~sde_bias.sweep_run.GroupResult`);
        ``seeds`` ``[dims..., seed]`` and ``lrs`` ``[dims...]`` are every point's seeds and
        learning rate."""
        h5 = self.h5
        for runner, r in result.runners.items():
            g = h5.get(runner)
            if g is None:
                g = self._create_runner(plan, runner, r, seeds, result.steps, lrs)
            for pi, point in enumerate(result.points):
                idx = index_of_point(point)
                for name, v in r["records"].items():
                    g[dataset_name(name)][idx] = v[pi]
                g["diverged_at"][idx] = r["diverged_at"][pi]
        for point in result.points:
            idx = index_of_point(point)
            h5["point_done"][idx] = 1
            h5["point_group"][idx] = group_index
        h5.flush()

    def _create_runner(self, plan, runner: str, r: dict, seeds, steps, lrs) -> h5py.Group:
        g = self.h5.create_group(runner)
        g.attrs["preset"] = r["preset"]
        g.attrs["kind"] = r["kind"]
        dims = self._dims(g, plan)
        n_seeds = seeds.shape[-1]
        seed = _scale(g, "seed", np.arange(n_seeds))
        step = _scale(g, "step", np.asarray(steps, np.int64))
        _attach(g.create_dataset("seed_value", data=np.asarray(seeds, np.int64)), dims + [seed])
        time = g.create_dataset("time", data=lrs.reshape(plan.shape + (1,)) * np.asarray(steps, float))
        _attach(time, dims + [step])
        shape = plan.shape
        for name, v in r["records"].items():
            extra = v.shape[3:]
            ds = g.create_dataset(
                dataset_name(name), shape=shape + v.shape[1:], dtype=v.dtype, fillvalue=np.nan if v.dtype.kind == "f" else 0
            )
            ds.attrs["observable"] = name
            extra_scales = []
            for k, dn in enumerate(dim_names(name, len(extra))):
                extra_scales.append(g[dn] if dn in g else _scale(g, dn, np.arange(extra[k])))
            _attach(ds, dims + [seed, step] + extra_scales)
        div = g.create_dataset("diverged_at", shape=shape + (n_seeds,), dtype=np.int64, fillvalue=-1)
        _attach(div, dims + [seed])
        return g

    def write_shared_data(self, extras: list[dict[str, np.ndarray]]) -> bool:
        """The generated data (``/data``, as in a run file: targets, training sets, masks)
        when it is the same in every point (``extras``: one dict per point); nothing when
        a swept key changes it. Returns whether it was written."""
        first = extras[0] if extras else {}
        same = all(
            e.keys() == first.keys() and all(np.array_equal(np.asarray(e[k]), np.asarray(first[k])) for k in first)
            for e in extras[1:]
        )
        if not first or not same:
            return False
        from .store import RunFile

        RunFile(self.h5).write_data(first)
        return True

    def runner_groups(self) -> list[str]:
        return runner_group_paths(self.h5)

    def flush(self):
        self.h5.flush()

    def close(self):
        self.h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_sweep(path, runner: str | None = None):
    """A sweep file as an :class:`xarray.Dataset` over ``(swept keys..., seed, step, ...)``.

    ``runner``: the runner group (``sgd``, ``sde/heun``, ...); default the first. Needs the
    ``analysis`` extra (``pip install "sde_bias[analysis]"``: xarray and h5netcdf)."""
    try:
        import xarray as xr
    except ModuleNotFoundError:  # pragma: no cover - depends on the environment
        from .errors import UserError

        raise UserError("load_sweep needs xarray and h5netcdf: pip install 'sde_bias[analysis]'") from None
    path = Path(path)
    if runner is None:
        with SweepFile.open(path) as f:
            groups = f.runner_groups()
        if not groups:
            from .errors import UserError

            raise UserError(f"{path}: no runner group written yet")
        runner = groups[0]
    return xr.open_dataset(path, group=runner, engine="h5netcdf")

"""HDF5 output: one file per run, readable with h5py and with xarray (h5netcdf engine).

Layout (``SCHEMA_VERSION`` 1)::

    /                      attributes: schema_version, sde_bias_version, scenario_name,
                           scenario_yaml (the full scenario as run, after variant and
                           overrides), scenario_hash, source, variant, overrides, created,
                           finished, complete, jax/diffrax/equinox/numpy/h5py/python
                           versions, backend, device, precision, seeds, runners, ...
    /data/                 generated data: train_x, train_y, target, target_matrix, ...
    /<runner>              one group per runner: sgd, gd, svag, sde/<preset>, ...
        seed   [seed]      dimension scale: the seed numbers (PRNGKey(seed))
        time   [time]      dimension scale: t = step * lr
        step   [time]      SGD step of every record (record 0 = the initial state)
        <observable> [seed, time, ...]   e.g. loss, invariants, params, balance.imbalance
        diverged_at [seed] -1 if the seed is fine, else the step at which it diverged
        last_params [seed, param]  parameters after the last completed chunk
        checkpoint/        what resume needs: slot0/, slot1/ (parameters, keys, auxiliary
                           state; written alternately) and attrs["state"] = [records_done,
                           step, slot], the last complete one
        attributes: preset, kind, description, preset_yaml, lr, record_every,
                    total_steps, records_total, records_done, step, complete, num_diverged,
                    status, wall_time_s

Every axis has a dimension scale, so ``xarray.open_dataset(path, group="sgd",
engine="h5netcdf")`` gives named dimensions. Observable names containing ``/``
(``balance/imbalance``) are stored with a ``.`` (``balance.imbalance``). Datasets are
chunked and gzip-compressed; the time axis grows chunk by chunk. A run is written to
``<out>.tmp`` in the same folder and renamed to ``<out>`` when complete.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = 1
_COMPRESSION = dict(compression="gzip", compression_opts=4, shuffle=True)
_CHUNK_BYTES = 1 << 20

_SPECIAL_DIMS = {"params": "param", "invariants": "invariant", "singular_values": "mode"}


def tmp_path_for(out) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".tmp")


def dataset_name(observable: str) -> str:
    """HDF5 name of an observable (``/`` would create a subgroup)."""
    return observable.replace("/", ".")


def dim_names(observable: str, extra_ndim: int) -> list[str]:
    base = dataset_name(observable)
    if extra_ndim == 1 and observable in _SPECIAL_DIMS:
        return [_SPECIAL_DIMS[observable]]
    return [f"{base}_dim{k}" for k in range(extra_ndim)]


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def environment_attrs() -> dict[str, Any]:
    """Versions, backend and device of this process."""
    import diffrax
    import equinox
    import jax

    from . import __version__

    devs = jax.devices()
    return {
        "sde_bias_version": __version__,
        "jax_version": jax.__version__,
        "jaxlib_version": getattr(__import__("jaxlib"), "__version__", "?"),
        "diffrax_version": diffrax.__version__,
        "equinox_version": equinox.__version__,
        "numpy_version": np.__version__,
        "h5py_version": h5py.__version__,
        "python_version": platform.python_version(),
        "backend": jax.default_backend(),
        "device": str(devs[0]),
        "device_kind": devs[0].device_kind,
        "device_count": len(devs),
        "hostname": platform.node(),
    }


def _chunks(shape: tuple[int, ...], time_chunk: int, itemsize: int) -> tuple[int, ...]:
    """Chunk shape for [seed, time, ...] with at most ~1 MiB per chunk."""
    c = [max(1, shape[0]), max(1, time_chunk)] + [max(1, s) for s in shape[2:]]
    order = [0, 1] + list(range(2, len(c)))
    while math.prod(c) * itemsize > _CHUNK_BYTES:
        i = max(order, key=lambda j: c[j])
        if c[i] == 1:
            break
        c[i] = (c[i] + 1) // 2
    return tuple(c)


def attr_value(value):
    if isinstance(value, bool):
        return np.int8(value)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return json.dumps(list(value))
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def runner_group_paths(h5) -> list[str]:
    """Paths of the groups of an open HDF5 file (run or sweep) that hold a runner: those with
    a ``preset`` attribute, in HDF5's visiting order."""
    out = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and "preset" in obj.attrs:
            out.append(name)

    h5.visititems(visit)
    return out


def mark_complete(h5, seconds: float) -> None:
    """Mark a run or sweep file finished: ``complete``, ``finished`` and ``wall_time_s``
    (``seconds`` added to the time of earlier, resumed sessions)."""
    h5.attrs["complete"] = np.int8(1)
    h5.attrs["finished"] = now_iso()
    h5.attrs["wall_time_s"] = float(h5.attrs.get("wall_time_s", 0.0)) + seconds


class RunFile:
    """An HDF5 run file being written (the ``.tmp`` file) or read."""

    def __init__(self, h5: h5py.File):
        self.h5 = h5

    # ------------------------------------------------------------------ open/close
    @classmethod
    def create(cls, path, attrs: dict[str, Any]) -> "RunFile":
        path = Path(path)
        if path.exists():
            path.unlink()
        h5 = h5py.File(path, "w")
        h5.attrs["schema_version"] = SCHEMA_VERSION
        for k, v in attrs.items():
            h5.attrs[k] = attr_value(v)
        h5.attrs["complete"] = np.int8(0)
        h5.flush()
        return cls(h5)

    @classmethod
    def open(cls, path, mode: str = "r") -> "RunFile":
        from .errors import UserError

        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: no such file")
        try:
            h5 = h5py.File(path, mode)
        except OSError as e:
            raise UserError(f"{path}: not a readable HDF5 file ({e})") from None
        if "schema_version" not in h5.attrs:
            h5.close()
            raise UserError(f"{path}: not an sde_bias run file (no schema_version attribute)")
        return cls(h5)

    def flush(self):
        self.h5.flush()

    def write_group(self, path: str, data: GroupData) -> h5py.Group:
        """Replace the group at ``path`` (``theory/drift_check``, ``comparisons``) by ``data``."""
        parent, _, name = path.rpartition("/")
        return write_group(self.h5.require_group(parent) if parent else self.h5, name, data)

    def close(self):
        self.h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ root
    def set_attrs(self, attrs: dict[str, Any], group: str = "/"):
        g = self.h5[group]
        for k, v in attrs.items():
            g.attrs[k] = attr_value(v)

    def write_data(self, extras: dict[str, np.ndarray]):
        """Generated data (training set, targets, masks) under ``/data``."""
        g = self.h5.require_group("data")
        for name, arr in extras.items():
            arr = np.asarray(arr)
            if name in g:
                del g[name]
            dims = []
            for k, n in enumerate(arr.shape):
                dname = f"{name}_dim{k}"
                if dname not in g:
                    sc = g.create_dataset(dname, data=np.arange(n, dtype=np.int64))
                    sc.make_scale(dname)
                dims.append(g[dname])
            ds = g.create_dataset(name, data=arr, **(_COMPRESSION if arr.size > 1024 else {}))
            for k, sc in enumerate(dims):
                ds.dims[k].attach_scale(sc)

    # ------------------------------------------------------------------ runners
    def runner_paths(self) -> list[str]:
        """Groups holding a runner, in the order they were created."""
        out = runner_group_paths(self.h5)
        order = self.h5.attrs.get("runner_groups")
        if order is not None:
            order = json.loads(order) if isinstance(order, str) else list(order)
            out.sort(key=lambda n: order.index(n) if n in order else len(order))
        return out

    def create_runner(
        self,
        path: str,
        attrs: dict[str, Any],
        seeds: np.ndarray,
        num_params: int,
        shapes: dict[str, tuple[tuple[int, ...], Any]],
        time_chunk: int,
        param_dtype,
    ) -> h5py.Group:
        """A runner group with empty (time-resizable) datasets for every observable.
        ``shapes``: observable -> (shape of one record for one seed, dtype)."""
        if path in self.h5:
            del self.h5[path]
        g = self.h5.create_group(path)
        for k, v in attrs.items():
            g.attrs[k] = attr_value(v)
        g.attrs["records_done"] = 0
        g.attrs["step"] = 0
        g.attrs["complete"] = np.int8(0)
        s = len(seeds)
        seed = g.create_dataset("seed", data=np.asarray(seeds, np.int64))
        seed.make_scale("seed")
        seed.attrs["long_name"] = "seed (PRNGKey(seed))"
        tc = max(1, min(time_chunk, 4096))
        time = g.create_dataset("time", shape=(0,), maxshape=(None,), dtype="f8", chunks=(tc,))
        time.make_scale("time")
        time.attrs["long_name"] = "SDE time t = step * lr"
        step = g.create_dataset("step", shape=(0,), maxshape=(None,), dtype="i8", chunks=(tc,))
        step.dims[0].attach_scale(time)
        step.attrs["long_name"] = "SGD step"
        param = g.create_dataset("param", data=np.arange(num_params, dtype=np.int64))
        param.make_scale("param")
        for name, (shape, dtype) in shapes.items():
            dims = dim_names(name, len(shape))
            for dname, n in zip(dims, shape):
                if dname not in g:
                    sc = g.create_dataset(dname, data=np.arange(n, dtype=np.int64))
                    sc.make_scale(dname)
            dtype = np.dtype(dtype)
            full = (s, 0) + tuple(shape)
            kw = dict(
                shape=full,
                maxshape=(s, None) + tuple(shape),
                dtype=dtype,
                chunks=_chunks((s, tc) + tuple(shape), tc, dtype.itemsize),
                **_COMPRESSION,
            )
            if dtype.kind == "f":
                kw["fillvalue"] = np.nan
            ds = g.create_dataset(dataset_name(name), **kw)
            ds.attrs["observable"] = name
            ds.dims[0].attach_scale(seed)
            ds.dims[1].attach_scale(time)
            for k, dname in enumerate(dims):
                ds.dims[2 + k].attach_scale(g[dname])
        div = g.create_dataset("diverged_at", data=np.full((s,), -1, np.int64))
        div.dims[0].attach_scale(seed)
        div.attrs["long_name"] = "step at which the seed diverged (-1: ok)"
        last = g.create_dataset("last_params", shape=(s, num_params), dtype=np.dtype(param_dtype))
        last.dims[0].attach_scale(seed)
        last.dims[1].attach_scale(param)
        last.attrs["long_name"] = "parameters after the last completed chunk (final once complete)"
        g.create_group("checkpoint")
        return g

    def append(self, g: h5py.Group, steps: np.ndarray, times: np.ndarray, records: dict[str, np.ndarray]):
        """Append ``len(steps)`` records to a runner group."""
        n0 = g["time"].shape[0]
        n = len(steps)
        for name in ("time", "step"):
            g[name].resize((n0 + n,))
        g["time"][n0:] = times
        g["step"][n0:] = steps
        for name, arr in records.items():
            ds = g[dataset_name(name)]
            ds.resize(n0 + n, axis=1)
            ds[:, n0 : n0 + n] = np.asarray(arr)

    def truncate(self, g: h5py.Group, num: int):
        """Drop records beyond ``num`` (left by a run killed while writing)."""
        for name in ("time", "step"):
            if g[name].shape[0] > num:
                g[name].resize((num,))
        for ds in g.values():
            if isinstance(ds, h5py.Dataset) and "observable" in ds.attrs and ds.shape[1] > num:
                ds.resize(num, axis=1)

    def save_state(self, g: h5py.Group, theta, diverged_at, step: int, key, aux_leaves, records_done: int):
        """The checkpoint of a runner after a completed chunk.

        Crash-consistent at every point between library calls: the state is written to the
        checkpoint slot not in use (``checkpoint/slot0`` or ``slot1``) and flushed, and only
        then does one attribute, ``checkpoint.attrs["state"] = [records_done, step, slot]``,
        point to it. A process killed before that resumes from the previous slot, which was
        not touched (writing ``last_params`` in place instead could reach the disk before
        ``records_done`` and resume one chunk ahead)."""
        c = g["checkpoint"]
        prev = c.attrs.get("state")
        slot = 1 - int(prev[2]) if prev is not None else 0
        sg = c.require_group(f"slot{slot}")
        _put(sg, "theta", np.asarray(theta))
        _put(sg, "key", np.asarray(key))
        _put(sg, "diverged_at", np.asarray(diverged_at))
        for i, leaf in enumerate(aux_leaves):
            _put(sg, f"aux_{i}", np.asarray(leaf))
        sg.attrs["num_aux"] = len(aux_leaves)
        self.h5.flush()
        c.attrs["state"] = np.array([records_done, step, slot], np.int64)
        g["last_params"][...] = np.asarray(theta)
        g["diverged_at"][...] = np.asarray(diverged_at, np.int64)
        g.attrs["step"] = int(step)
        g.attrs["records_done"] = int(records_done)
        div = np.asarray(diverged_at)
        g.attrs["num_diverged"] = int(np.sum(div >= 0))

    def load_state(self, g: h5py.Group) -> dict[str, Any]:
        c = g["checkpoint"]
        if "state" in c.attrs:
            records_done, step, slot = (int(v) for v in c.attrs["state"])
            sg = c[f"slot{slot}"]
            return {
                "theta": sg["theta"][...],
                "diverged_at": sg["diverged_at"][...],
                "key": sg["key"][...],
                "aux": [sg[f"aux_{i}"][...] for i in range(int(sg.attrs.get("num_aux", 0)))],
                "step": step,
                "records_done": records_done,
            }
        return {  # files written before the checkpoint slots
            "theta": g["last_params"][...],
            "diverged_at": c["diverged_at"][...],
            "key": c["key"][...],
            "aux": [c[f"aux_{i}"][...] for i in range(int(c.attrs.get("num_aux", 0)))],
            "step": int(g.attrs["step"]),
            "records_done": int(g.attrs["records_done"]),
        }


def _put(group: h5py.Group, name: str, arr: np.ndarray):
    if name in group and group[name].shape == arr.shape and group[name].dtype == arr.dtype:
        group[name][...] = arr
    else:
        if name in group:
            del group[name]
        group.create_dataset(name, data=arr)


def finalize(tmp, out):
    """Atomically move the finished temporary file to its final name."""
    os.replace(tmp, out)


# ---------------------------------------------------------------------------
# Groups computed after the run (the theory stage's results)
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GroupData:
    """One HDF5 group in memory: ``arrays`` (datasets), ``attrs`` and ``groups``
    (subgroups), each in creation order. What the theory stage returns and
    :meth:`RunFile.write_group` writes, and what :mod:`sde_bias.reader` reads back.
    An array of dtype ``object`` is stored as UTF-8 strings; attributes are stored as
    given (h5py's conversion)."""

    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    groups: Mapping[str, "GroupData"] = dataclasses.field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.arrays or name in self.groups

    def __getitem__(self, name: str):
        """A dataset or subgroup; ``a/b`` walks into subgroups."""
        head, _, rest = name.partition("/")
        if rest:
            return self.groups[head][rest]
        if head in self.arrays:
            return self.arrays[head]
        return self.groups[head]

    def get(self, name: str, default=None):
        try:
            return self[name]
        except KeyError:
            return default


def write_group(parent: h5py.Group, name: str, data: GroupData) -> h5py.Group:
    """Replace ``parent[name]`` by ``data`` (datasets uncompressed, in order)."""
    if name in parent:
        del parent[name]
    g = parent.create_group(name)
    for k, arr in data.arrays.items():
        arr = np.asarray(arr)
        if arr.dtype == object:
            g.create_dataset(k, data=arr, dtype=h5py.string_dtype("utf-8"))
        else:
            g.create_dataset(k, data=arr)
    for k, sub in data.groups.items():
        write_group(g, k, sub)
    for k, v in data.attrs.items():
        g.attrs[k] = v
    return g

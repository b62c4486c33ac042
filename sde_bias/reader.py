"""Reading run files: one typed view of what :mod:`sde_bias.store` writes.

``read_run(path)`` returns a :class:`RunData` (frozen): the root attributes, the resolved
scenario (parsed from the ``scenario_yaml`` attribute), one :class:`RunnerRecords` per
runner group (``sgd``, ``gd``, ``sde/<preset>``, ...: time and step axes, every recorded
observable ``[seed, time, ...]``, divergence per seed, final parameters, the group's
attributes), the generated data of ``/data`` and the other groups (``/theory``,
``/convergence``, ``/comparisons``) as :class:`GroupData` trees. Every consumer of run files
(``sde-bias inspect``, ``plot``, ``report``, the theory stage, resume) reads through here.

:class:`~sde_bias.store.GroupData` is also what the theory stage returns and
:meth:`sde_bias.store.RunFile.write_group` writes: arrays, attributes and subgroups of one
HDF5 group, in creation order.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .store import GroupData as GroupData, RunFile, runner_group_paths

ROLES = ("sgd", "sde", "gd")
"""The runner roles: discrete SGD (group ``sgd``), the SDE (the first ``sde/<preset>``
group) and gradient descent (``gd``)."""


def decode(value):
    """An HDF5 attribute as a plain Python value (``bytes`` -> ``str``, numpy scalars ->
    Python scalars; arrays unchanged)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def read_attrs(obj) -> dict[str, Any]:
    """The attributes of an HDF5 object, decoded (:func:`decode`)."""
    return {k: decode(v) for k, v in obj.attrs.items()}


def read_group(g) -> GroupData:
    """An open ``h5py.Group`` (recursively) as :class:`GroupData`."""
    import h5py

    arrays, groups = {}, {}
    for k, obj in g.items():
        if isinstance(obj, h5py.Dataset):
            arrays[k] = obj[()]
        elif isinstance(obj, h5py.Group):
            groups[k] = read_group(obj)
    return GroupData(arrays, read_attrs(g), groups)


@dataclasses.dataclass(frozen=True)
class RunnerRecords:
    """One runner group of a run file.

    ``records[name]`` is the observable ``name`` (``/`` kept, e.g. ``balance/imbalance``)
    with shape ``[seed, time, ...]`` (only the last record when read with ``last_only``);
    ``shapes[name]`` is its full stored shape either way. ``diverged_at[s]`` is -1 for a
    seed that did not diverge, else the step at which it did."""

    path: str
    attrs: Mapping[str, Any]
    seed: np.ndarray
    time: np.ndarray
    step: np.ndarray
    diverged_at: np.ndarray
    last_params: np.ndarray
    records: Mapping[str, np.ndarray]
    shapes: Mapping[str, tuple[int, ...]]

    @property
    def name(self) -> str:
        return self.path

    @property
    def preset(self) -> str:
        return str(self.attrs.get("preset", self.path))

    @property
    def kind(self) -> str:
        return str(self.attrs.get("kind", ""))

    @property
    def wall_time_s(self) -> float:
        return float(self.attrs.get("wall_time_s", float("nan")))

    @property
    def complete(self) -> bool:
        return int(self.attrs.get("complete", 0)) == 1

    @property
    def num_seeds(self) -> int:
        return int(self.diverged_at.shape[0])

    @property
    def num_diverged(self) -> int:
        return int(np.sum(self.diverged_at >= 0))

    def index_at(self, step: int | None) -> int:
        """Record index at ``step`` (the last record at or before it; the last one if None)."""
        if step is None or step >= self.step[-1]:
            return len(self.step) - 1
        return int(max(0, np.searchsorted(self.step, step, side="right") - 1))


@dataclasses.dataclass(frozen=True)
class RunData:
    """A run file in memory (see :func:`read_run`)."""

    path: Path
    attrs: Mapping[str, Any]
    scenario: Mapping[str, Any]
    runners: Mapping[str, RunnerRecords]
    data: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    theory: GroupData | None = None
    convergence: GroupData | None = None
    comparisons: GroupData | None = None
    design: GroupData | None = None
    """``/design``: the inverse-design verification stage (``sde_bias.design_run``), if any."""
    other_groups: tuple[str, ...] = ()
    """Top-level groups that are not runners (``data``, ``theory``, ...), in file order."""

    # ------------------------------------------------------------------ root facts
    @property
    def name(self) -> str:
        return str(self.attrs.get("scenario_name", "?"))

    @property
    def variant(self) -> str:
        return str(self.attrs.get("variant") or "")

    @property
    def label(self) -> str:
        return self.name + (f" [{self.variant}]" if self.variant else "")

    @property
    def total_steps(self) -> int:
        return int(self.attrs.get("total_steps", 0))

    @property
    def lr(self) -> float:
        return float(self.attrs.get("lr", float("nan")))

    @property
    def num_seeds(self) -> int:
        return int(self.attrs.get("num_seeds", 0))

    @property
    def wall_time_s(self) -> float:
        return float(self.attrs.get("wall_time_s", float("nan")))

    @property
    def complete(self) -> bool:
        return int(self.attrs.get("complete", 0)) == 1

    @property
    def overrides(self) -> list[str]:
        ov = self.attrs.get("overrides")
        try:
            ov = json.loads(ov) if ov else []
        except (TypeError, ValueError):
            ov = []
        return [str(o) for o in ov] if isinstance(ov, list) else []

    @property
    def comparisons_table(self) -> str | None:
        """The text table of ``/comparisons`` (the theory stage's verdicts), if any."""
        t = self.comparisons.attrs.get("table") if self.comparisons is not None else None
        return None if t is None else str(t)

    @property
    def convergence_summary(self) -> str | None:
        t = self.convergence.attrs.get("summary") if self.convergence is not None else None
        return None if t is None else str(t)

    @property
    def report_section(self) -> str:
        """The report section the scenario names (``report: {section: ...}``); ``generic``
        for files written before the block existed."""
        s = self.sc("report", "section")
        return str(s) if s else "generic"

    # ------------------------------------------------------------------ runners
    def runner(self, role: str) -> RunnerRecords | None:
        """The runner playing ``role`` (one of :data:`ROLES`), or None."""
        if role == "sde":
            return next((g for k, g in self.runners.items() if k.startswith("sde/")), None)
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {ROLES}")
        return self.runners.get(role)

    def sgd(self) -> RunnerRecords | None:
        return self.runner("sgd")

    def gd(self) -> RunnerRecords | None:
        return self.runner("gd")

    def sde(self) -> RunnerRecords | None:
        return self.runner("sde")

    def runner_named(self, name: str) -> RunnerRecords:
        """The runner group ``name`` or ``sde/<name>`` (a preset name); ``KeyError`` naming
        the groups there are otherwise."""
        for g in (name, f"sde/{name}"):
            if g in self.runners:
                return self.runners[g]
        raise KeyError(f"no runner group {name!r} in the file (runners: {list(self.runners)})")

    # ------------------------------------------------------------------ scenario facts
    def sc(self, *path: str, default=None):
        """``scenario[path[0]][path[1]]...``, or ``default`` when a key is missing."""
        d: Any = self.scenario
        for p in path:
            if not isinstance(d, Mapping) or p not in d:
                return default
            d = d[p]
        return d

    def command(self) -> str:
        """The ``sde-bias run`` command line that made this file."""
        src = self.attrs.get("source") or f"scenarios/{self.name}.yaml"
        cmd = f"sde-bias run {src}"
        variant = self.attrs.get("sweep_base_variant", "") if "sweep_file" in self.attrs else self.variant
        if variant:
            cmd += f" --variant {variant}"
        return cmd + "".join(f" --set {o}" for o in self.overrides)


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------


def _read_runner(g, path: str, records, last_only: bool) -> RunnerRecords:
    import h5py

    recs, shapes = {}, {}
    for ds in g.values():
        if isinstance(ds, h5py.Dataset) and "observable" in ds.attrs:
            name = decode(ds.attrs["observable"])
            shapes[name] = tuple(ds.shape)
            if records is True or (records is not False and name in records):
                if last_only:
                    recs[name] = ds[:, -1:] if ds.shape[1] else ds[...]
                else:
                    recs[name] = ds[...]
    return RunnerRecords(
        path=path,
        attrs=read_attrs(g),
        seed=g["seed"][...],
        time=g["time"][...],
        step=g["step"][...],
        diverged_at=g["diverged_at"][...],
        last_params=g["last_params"][...],
        records=recs,
        shapes=shapes,
    )


def _parse_scenario(text, where: str) -> dict:
    from .errors import parse_yaml

    try:
        out = parse_yaml(text or "{}", where) or {}
    except Exception:  # noqa: BLE001 - a reader should not die on an odd attribute (checked files are fine)
        return {}
    return out if isinstance(out, dict) else {}


def read_h5(h5, path=None, *, records: bool | Collection[str] = True, last_only: bool = False) -> RunData:
    """:class:`RunData` of an open ``h5py.File`` (the run being written, for the theory
    stage; or one opened by :func:`read_run`). ``records``: every observable (True), none
    (False) or those named; ``last_only``: read only the last record of each."""
    path = Path(path if path is not None else h5.filename)
    attrs = read_attrs(h5)
    runners = {p: _read_runner(h5[p], p, records, last_only) for p in RunFile(h5).runner_paths()}
    data = {}
    if "data" in h5:
        import h5py

        data = {k: ds[()] for k, ds in h5["data"].items() if isinstance(ds, h5py.Dataset) and not ds.is_scale}
    runner_tops = {p.split("/")[0] for p in runners}
    return RunData(
        path=path,
        attrs=attrs,
        scenario=_parse_scenario(attrs.get("scenario_yaml"), f"{path}:scenario_yaml"),
        runners=runners,
        data=data,
        theory=read_group(h5["theory"]) if "theory" in h5 else None,
        convergence=read_group(h5["convergence"]) if "convergence" in h5 else None,
        comparisons=read_group(h5["comparisons"]) if "comparisons" in h5 else None,
        design=read_group(h5["design"]) if "design" in h5 else None,
        other_groups=tuple(k for k in h5.keys() if k not in runner_tops),
    )


def read_run(path, *, records: bool | Collection[str] = True, last_only: bool = False, check: bool = True) -> RunData:
    """Read a run file (complete or interrupted). ``check`` (default): refuse a file that is
    not a consistent sde_bias run file with a one-line :class:`~sde_bias.scenario.UserError`
    (``sde_bias._filecheck``); ``records``, ``last_only``: as in :func:`read_h5`."""
    from ._filecheck import open_run, reading

    path = Path(path)
    with (open_run(path) if check else RunFile.open(path)) as f, reading(path):
        return read_h5(f.h5, path, records=records, last_only=last_only)


# ---------------------------------------------------------------------------
# sweep files, point by point
# ---------------------------------------------------------------------------

POINT_NAMES = {"init.std": "init"}
"""Short names of swept keys in a point's variant label (:func:`point_variant`)."""


def point_variant(overrides: list[str]) -> str:
    """The variant label of a sweep point from its ``key=value`` overrides:
    ``init.std=0.001`` -> ``init_0.001`` (the name the hand-made variants had), other keys
    by their path (``training.lr=0.02`` -> ``training.lr_0.02``), joined by ``_``."""
    parts = []
    for o in overrides:
        k, _, v = o.partition("=")
        parts.append(f"{POINT_NAMES.get(k, k)}_{v}")
    return "_".join(parts)


def _set_path(d: dict, key: str, value) -> None:
    *head, last = key.split(".")
    for h in head:
        d = d.setdefault(h, {})
    d[last] = value


def read_sweep_points(path) -> list[RunData]:
    """Every complete point of a sweep file (``sde-bias sweep``, :mod:`sde_bias.sweep_store`)
    as a :class:`RunData`, as if the point had been run alone with ``--set`` of its keys:
    records ``[seed, time, ...]`` of the point, its scenario (the stored one with the
    point's keys set), ``variant`` the point's label (:func:`point_variant`), ``overrides``
    the sweep's ``--set`` plus the point's keys, ``wall_time_s`` the sweep's wall time
    divided by its number of points (runners' own times are not recorded per point: NaN),
    ``last_params`` the last recorded ``params`` if recorded (else empty), ``data`` the
    sweep's ``/data`` (written when the generated data is the same in every point).
    Runner groups come in the order of the scenario's ``runners``."""
    import h5py
    import yaml

    from .errors import UserError

    path = Path(path)
    out = []
    with h5py.File(path, "r") as h5:
        if h5.attrs.get("kind") != "sweep":
            raise UserError(f"{path}: not a sweep file (no kind = sweep attribute)")
        attrs = read_attrs(h5)
        dims = json.loads(attrs["sweep"])["dims"]
        shape = tuple(len(d["values"][d["name"]]) for d in dims)
        point_overrides = json.loads(attrs.get("point_overrides", "[]"))
        base_overrides = json.loads(attrs.get("overrides") or "[]")
        done = np.asarray(h5["point_done"][...])
        base_sc = _parse_scenario(attrs.get("scenario_yaml"), f"{path}:scenario_yaml")
        order = [str(r) for r in base_sc.get("runners") or []]
        groups = runner_group_paths(h5)
        preset = {g: str(decode(h5[g].attrs["preset"])) for g in groups}
        groups.sort(key=lambda g: order.index(preset[g]) if preset[g] in order else len(order))
        data = {}
        if "data" in h5:
            data = {k: ds[()] for k, ds in h5["data"].items() if isinstance(ds, h5py.Dataset) and not ds.is_scale}
        n_points = int(np.prod(shape)) if shape else 1
        for i in range(n_points):
            idx = tuple(int(j) for j in np.unravel_index(i, shape))
            if not done[idx]:
                continue
            ov = list(point_overrides[i])
            sc = json.loads(json.dumps(base_sc))
            for o in ov:
                k, _, v = o.partition("=")
                _set_path(sc, k, yaml.safe_load(v))
            runners = {g: _sweep_point_runner(h5[g], g, idx) for g in groups}
            training = sc.get("training", {}) if isinstance(sc.get("training"), dict) else {}
            pattrs = dict(attrs)
            pattrs.update(
                variant=point_variant(ov),
                overrides=json.dumps(base_overrides + ov),
                lr=float(training.get("lr", float("nan"))),
                total_steps=int(next(iter(runners.values())).step[-1]) if runners else 0,
                wall_time_s=float(attrs.get("wall_time_s", float("nan"))) / n_points,
                complete=1,
                sweep_file=str(path),
                sweep_base_variant=attrs.get("variant") or "",
            )
            out.append(RunData(path=path, attrs=pattrs, scenario=sc, runners=runners, data=data))
    return out




def _sweep_point_runner(g, path: str, idx: tuple[int, ...]) -> RunnerRecords:
    import h5py

    recs = {}
    for ds in g.values():
        if isinstance(ds, h5py.Dataset) and "observable" in ds.attrs:
            recs[decode(ds.attrs["observable"])] = ds[idx]
    params = recs.get("params")
    attrs = read_attrs(g)
    attrs.setdefault("complete", 1)
    return RunnerRecords(
        path=path,
        attrs=attrs,
        seed=g["seed_value"][idx],
        time=g["time"][idx],
        step=g["step"][...],
        diverged_at=g["diverged_at"][idx],
        last_params=np.asarray(params)[:, -1] if params is not None else np.zeros((g["seed"].shape[0], 0)),
        records=recs,
        shapes={k: tuple(v.shape) for k, v in recs.items()},
    )


__all__ = ["ROLES", "GroupData", "RunData", "RunnerRecords", "decode", "read_attrs", "read_group", "read_h5", "read_run", "load_run", "point_variant", "read_sweep_points"]


def load_run(path) -> dict[str, Any]:
    """The run file as nested dicts (small runs; :func:`read_run` is the typed reader):
    ``{"attrs": {...}, "runners": {group: {"attrs", "time", "step", "seed", "diverged_at",
    "last_params", "records": {observable: array}}}}``."""
    run = read_run(path, check=False)
    return {
        "attrs": dict(run.attrs),
        "runners": {
            p: {"attrs": dict(g.attrs), "time": g.time, "step": g.step, "seed": g.seed,
                "diverged_at": g.diverged_at, "last_params": g.last_params, "records": dict(g.records)}
            for p, g in run.runners.items()
        },
    }

"""``sde-bias sweep``: validate every point, group them, run the groups, write one file.

The order of things: the sweep is parsed (:mod:`sde_bias.sweep_spec`) and every point
validated and built (:mod:`sde_bias.sweep_run`) before anything runs; the output path is
checked and locked (:func:`sde_bias.outputs.claim_output`, the lock of ``sde-bias run``);
the groups run in-process or on Dask (:mod:`sde_bias.sweep_dask`), and the client alone
writes each finished group into ``<out>.tmp``, renamed to ``<out>`` when every group is
written. ``resume=True`` continues a ``.tmp`` of the same sweep: groups already written are
skipped (a group is the unit of work; its numbers do not depend on when it runs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .sweep_spec import SweepPlan

DEFAULT_SWEEP_DIR = Path("data") / "sweeps"


@dataclasses.dataclass
class SweepRequest:
    """What the command line asks for."""

    path: Path
    variant: str | None = None
    overrides: tuple[str, ...] = ()
    seeds: int | None = None
    grid: tuple[tuple[str, list], ...] = ()
    zip: tuple[tuple[str, list], ...] = ()
    out: Path | None = None
    resume: bool = False
    group_points: int | None = None
    dask: str | None = None  # "local" or "local:N"
    scheduler: str | None = None
    devices: int | None = None


@dataclasses.dataclass
class SweepResult:
    path: Path
    num_points: int
    num_groups: int
    diverged: list[tuple[str, int, int]]  # (point label, diverged seeds, seeds)
    wall_time_s: float
    already_complete: bool = False


@dataclasses.dataclass
class Prepared:
    """A validated sweep: its plan, every point's scenario, built points and groups."""

    raw: dict
    source: str
    request: SweepRequest
    plan: Any
    scenarios: list
    groups: list[list[int]]
    base_hash: str
    presets: dict
    built: list | None = None  # the built points (in-process runs reuse them)


def _log(msg: str, quiet: bool):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def prepare(req: SweepRequest) -> Prepared:
    """Parse, validate and build every point; raise a one-line :class:`UserError` on the
    first bad one (naming its coordinates and key)."""
    from .presets import load_presets
    from .scenario import read_yaml_file, scenario_from_dict, scenario_hash
    from .sweep_run import build_point, group_points, resolve_presets
    from .sweep_spec import SweepSpecError, make_plan

    presets = load_presets()
    raw = read_yaml_file(req.path)
    source = str(req.path)
    base = scenario_from_dict(raw, source, req.variant, req.overrides, req.seeds, presets)
    block = base.sweep.model_dump() if base.sweep is not None else None
    try:
        plan = make_plan(block, list(req.grid), list(req.zip), tuple(req.overrides), source)
    except SweepSpecError as e:
        raise UserError(str(e)) from None
    scs = point_scenarios(raw, plan, source, req.variant, req.seeds, presets)
    for key, what in (("seeds.count", lambda s: s.seeds.count), ("training.steps", lambda s: s.num_records)):
        vals = {what(s) for s in scs}
        if len(vals) > 1:
            raise UserError(f"{source}: sweep: {key}: every point must have the same number of seeds and records (got {sorted(vals)})")
    built = []
    for i, sc in enumerate(scs):
        try:
            built.append(build_point(sc, resolve_presets(sc, presets)))
        except UserError as e:
            raise UserError(f"sweep point {i} ({plan.label(i)}): {str(e).splitlines()[0]}") from None
    groups = group_points(built)
    if req.group_points:
        groups = [g[k : k + req.group_points] for g in groups for k in range(0, len(g), req.group_points)]
    return Prepared(raw, source, req, plan, scs, groups, scenario_hash(base), presets, built)


def sweep_hash(prep: Prepared) -> str:
    from .sweep_store import plan_json

    body = json.dumps([prep.base_hash, plan_json(prep.plan), prep.groups])
    return hashlib.sha256(body.encode()).hexdigest()


def default_output(prep: Prepared) -> Path:
    """``data/sweeps/<name>[-<variant>]-sweep-<hash>.h5``: the hash (8 hex digits) of the
    overrides and the sweep's dimensions, so different sweeps of a scenario do not collide."""
    from .sweep_store import plan_json

    sc = prep.scenarios[0]
    stem = sc.name if not prep.request.variant else f"{sc.name}-{prep.request.variant}"
    body = json.dumps([list(prep.request.overrides), prep.request.seeds, plan_json(prep.plan)])
    return DEFAULT_SWEEP_DIR / f"{stem}-sweep-{hashlib.sha256(body.encode()).hexdigest()[:8]}.h5"


def run_sweep(req: SweepRequest, quiet: bool = False) -> SweepResult:
    """Run a sweep (see the module docstring)."""
    from .outputs import claim_output

    t0 = time.perf_counter()
    prep = prepare(req)
    out = Path(req.out) if req.out is not None else default_output(prep)
    origin = "--out" if req.out is not None else f"{prep.source}: name: the default sweep output"
    if req.dask or req.scheduler:
        from .sweep_dask import check_available

        check_available()
    lock = claim_output(out, origin)
    try:
        return _run_locked(prep, out, t0, quiet)
    finally:
        lock.release()


def _lrs(prep: Prepared) -> np.ndarray:
    return np.array([float(sc.training.lr) for sc in prep.scenarios]).reshape(prep.plan.shape)


def _run_locked(prep: Prepared, out: Path, t0: float, quiet: bool) -> SweepResult:
    from .scenario import to_yaml
    from .store import finalize, tmp_path_for
    from .sweep_store import SweepFile

    req, plan = prep.request, prep.plan
    tmp = tmp_path_for(out)
    digest = sweep_hash(prep)
    n_points = len(plan.points)
    if req.resume and not tmp.exists() and out.exists():
        with SweepFile.open(out) as f:
            same = f.h5.attrs.get("sweep_hash") == digest and int(f.h5.attrs.get("complete", 0)) == 1
        if same:
            _log(f"{out}: already complete, nothing to resume", quiet)
            return SweepResult(out, n_points, len(prep.groups), _diverged(out, plan), time.perf_counter() - t0, True)
        raise UserError(f"{out} exists but was made by a different sweep; nothing to resume (run without --resume to overwrite)")
    f = None
    if req.resume and tmp.exists():
        f = SweepFile.open(tmp, "r+")
        if f.h5.attrs.get("sweep_hash") != digest:
            f.close()
            raise UserError(f"{tmp} was made by a different sweep (hash differs); run without --resume to start over")
        _log(f"resuming {tmp}", quiet)
    elif req.resume:
        _log(f"no interrupted sweep at {tmp}; starting from the beginning", quiet)
    if f is None:
        if tmp.exists():
            _log(f"discarding the interrupted sweep {tmp} (use --resume to continue it)", quiet)
        out.parent.mkdir(parents=True, exist_ok=True)
        sc0 = prep.scenarios[0]
        attrs = {
            "scenario_name": sc0.name,
            "source": prep.source,
            "variant": req.variant or "",
            "overrides": json.dumps(list(req.overrides)),
            "scenario_yaml": to_yaml(sc0),
            "point_overrides": json.dumps([plan.overrides(i) for i in range(n_points)]),
            "sweep_hash": digest,
            "groups": json.dumps(prep.groups),
            "seeds": np.asarray(sc0.seed_list, np.int64),
            "num_seeds": sc0.seeds.count,
            "precision": sc0.precision,
        }
        f = SweepFile.create(tmp, plan, attrs)
        if prep.built is not None:
            f.write_shared_data([bp.setup.extras for bp in prep.built])
    try:
        done = np.asarray(f.h5["point_done"][...]).reshape(-1)
        todo = [(gi, g) for gi, g in enumerate(prep.groups) if not all(done[i] for i in g)]
        if len(todo) < len(prep.groups):
            _log(f"{len(prep.groups) - len(todo)} of {len(prep.groups)} groups already written", quiet)
        seeds = np.asarray([sc.seed_list for sc in prep.scenarios], np.int64).reshape(plan.shape + (-1,))
        lrs = _lrs(prep)
        progress = _Progress(len(prep.groups), n_points, sum(len(g) for _, g in todo), quiet)

        def write(gi, result):
            f.write_group(plan, result, plan.index, gi, seeds, lrs)
            progress.group_done(gi, prep.groups[gi], result.wall_time_s, plan)

        if req.dask or req.scheduler:
            from .sweep_dask import run_on_dask

            prep.built = None  # the workers build their own points

            run_on_dask(prep, todo, write, req.dask, req.scheduler, log=lambda m: _log(m, quiet),
                        on_chunk=progress.remote_chunk, every_s=progress.chunk_every_s)
        else:
            from .sweep_run import run_group

            for gi, g in todo:
                progress.group_start(gi, g, plan)
                write(gi, run_group(prep.scenarios, g, prep.presets, built=prep.built, on_chunk=progress.chunk))
        from .store import mark_complete

        mark_complete(f.h5, time.perf_counter() - t0)
        f.flush()
    finally:
        f.close()
    finalize(tmp, out)
    return SweepResult(out, n_points, len(prep.groups), _diverged(out, plan), time.perf_counter() - t0)


def _diverged(path: Path, plan) -> list[tuple[str, int, int]]:
    from .sweep_store import SweepFile

    out = []
    with SweepFile.open(path) as f:
        groups = f.runner_groups()
        for i in range(len(plan.points)):
            idx = plan.index(i)
            for r in groups:
                div = f.h5[r]["diverged_at"][idx]
                nd = int(np.sum(div >= 0))
                if nd:
                    out.append((f"{r} at {plan.label(i)}", nd, int(div.shape[0])))
    return out


class _Progress:
    """One line per group: its points, time, and the sweep's overall progress with ETA."""

    def __init__(self, num_groups: int, num_points: int, todo_points: int, quiet: bool):
        self.num_groups, self.num_points, self.todo = num_groups, num_points, todo_points
        self.quiet = quiet
        self.done_points = 0
        self.t0 = self.group_t0 = self.last_line = time.perf_counter()
        self.group = 0
        self.chunk_every_s = self._chunk_every_s()

    CHUNK_EVERY_S = 10.0
    """Least seconds between two progress lines within a group (``SDE_BIAS_PROGRESS_EVERY_S``
    in the environment overrides it)."""

    def _chunk_every_s(self) -> float:
        raw = os.environ.get("SDE_BIAS_PROGRESS_EVERY_S")
        if raw is None:
            return self.CHUNK_EVERY_S
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0:
            _log(f"SDE_BIAS_PROGRESS_EVERY_S={raw!r} is not a number of seconds >= 0; using {self.CHUNK_EVERY_S:g}", self.quiet)
            return self.CHUNK_EVERY_S
        return value

    def remote_chunk(self, gi: int, runner: str, fraction: float):
        """Progress of group ``gi`` running on a Dask worker (the worker limits the rate)."""
        _log(f"  group {gi + 1}/{self.num_groups}: {fraction:.0%} ({runner}, on a worker)", self.quiet)

    def chunk(self, runner: str, fraction: float):
        """Progress within the running group (in-process runs), at most every :attr:`chunk_every_s`."""
        from .formatting import fmt_duration

        now = time.perf_counter()
        if now - self.last_line < self.chunk_every_s or fraction <= 0 or fraction >= 1:
            return
        self.last_line = now
        spent = now - self.group_t0
        _log(f"  group {self.group + 1}/{self.num_groups}: {fraction:.0%} ({runner}), "
             f"{fmt_duration(spent / fraction * (1 - fraction))} left in the group", self.quiet)

    def group_start(self, gi: int, g: list[int], plan):
        self.group, self.group_t0 = gi, time.perf_counter()
        self.last_line = self.group_t0
        _log(f"group {gi + 1}/{self.num_groups}: {len(g)} points ({plan.label(g[0])}{', ...' if len(g) > 1 else ''}) compiling and running", self.quiet)

    def group_done(self, gi: int, g: list[int], wall: float, plan):
        from .formatting import fmt_duration as _fmt_time

        self.done_points += len(g)
        elapsed = time.perf_counter() - self.t0
        left = elapsed / self.done_points * (self.todo - self.done_points)
        _log(
            f"group {gi + 1}/{self.num_groups} done: {len(g)} points in {wall:.1f} s; "
            f"sweep {self.done_points}/{self.todo} points, {_fmt_time(elapsed)} elapsed, {_fmt_time(left)} left",
            self.quiet,
        )


# ---------------------------------------------------------------------------
# the command line (called by sde_bias.cli)
# ---------------------------------------------------------------------------


def cli_sweep(args, resolve_path) -> int:
    """``sde-bias sweep``: exit 0, or 3 when some point had diverging seeds."""
    from .sweep_spec import parse_cli_values

    if args.dask and args.scheduler:
        raise UserError("--dask and --scheduler exclude each other")
    if args.group_points is not None and args.group_points < 1:
        raise UserError(f"--group-points {args.group_points}: expected a positive integer")
    req = SweepRequest(
        path=resolve_path(args.scenario),
        variant=args.variant,
        overrides=tuple(args.set or ()),
        seeds=args.seeds,
        grid=tuple(parse_cli_values(t, "--grid") for t in args.grid or ()),
        zip=tuple(parse_cli_values(t, "--zip") for t in args.zip or ()),
        out=Path(args.out) if args.out else None,
        resume=args.resume,
        group_points=args.group_points,
        dask=args.dask,
        scheduler=args.scheduler,
    )
    res = run_sweep(req, quiet=args.quiet)
    if not args.quiet:
        print(f"wrote {res.path} ({res.num_points} points in {res.num_groups} groups, {res.wall_time_s:.1f} s)", flush=True)
    if res.diverged:
        for label, nd, s in res.diverged[:10]:
            print(f"sde-bias: {label}: {nd} of {s} seeds diverged", file=sys.stderr)
        if len(res.diverged) > 10:
            print(f"sde-bias: ... and {len(res.diverged) - 10} more points with diverged seeds", file=sys.stderr)
        return 3
    return 0


def validate_sweep(path, variant, overrides, deep: bool = True) -> int | None:
    """For ``sde-bias validate``: the number of points of the file's ``sweep:`` block, all
    validated (``None`` when it has none)."""
    from .presets import load_presets
    from .scenario import read_yaml_file
    from .sweep_spec import SweepSpecError, make_plan

    raw = read_yaml_file(path)
    if not isinstance(raw, dict) or raw.get("sweep") is None:
        return None
    try:
        plan = make_plan(raw["sweep"], base_overrides=tuple(overrides or ()), source=str(path))
    except SweepSpecError as e:
        raise UserError(str(e)) from None
    point_scenarios(raw, plan, str(path), variant, None, load_presets(), deep=deep)
    return len(plan.points)


def point_scenarios(raw: dict, plan: SweepPlan, source: str, variant: str | None, seeds: int | None, presets: dict, deep: bool = True):
    """Every point's validated (``deep``: against the built model too) :class:`~sde_bias.scenario.Scenario` (all checked before
    anything runs). An invalid point raises a one-line :class:`~sde_bias.scenario.UserError`
    naming the point's coordinates and the key."""
    from .scenario import ScenarioError, UserError, scenario_from_dict

    base = {k: v for k, v in raw.items() if k != "sweep"}
    scs = []
    for i in range(len(plan.points)):
        try:
            sc = scenario_from_dict(base, source, variant, list(plan.base_overrides) + plan.overrides(i), seeds, presets, deep=deep)
        except ScenarioError as e:
            first = str(e).splitlines()[0] if str(e) else "invalid"
            more = len(e.problems) - 1
            raise UserError(
                f"sweep point {i} ({plan.label(i)}): {first}" + (f" (and {more} more problems)" if more > 0 else "")
            ) from None
        except UserError as e:
            raise UserError(f"sweep point {i} ({plan.label(i)}): {e}") from None
        scs.append(sc)
    return scs

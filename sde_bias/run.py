"""The run driver: a scenario -> every runner on the same seeds -> one HDF5 file.

Each runner advances in compiled chunks (``training.chunk_records`` records of
``training.record_every`` steps); after every chunk the records are appended to the file,
the ensemble state is saved as a checkpoint, the file is flushed and progress is shown.
A run killed at any point resumes (``resume=True``) from its last checkpoint and gives
the same numbers, bit for bit, as an uninterrupted run: the randomness of every step
depends only on the seed and the absolute step (``sde_bias.integrate``).

A seed whose parameters become non-finite (or exceed ``training.divergence_threshold``)
is frozen and flagged with its step (``diverged_at``); the other seeds go on.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np

from .errors import UserError
from .formatting import fmt_duration, fmt_rate
from .schema import Scenario, scenario_hash, to_yaml

DEFAULT_RUN_DIR = Path("data") / "runs"


def default_output(sc: Scenario) -> Path:
    """``data/runs/<name>[-<variant>][-<overrides hash>].h5`` (relative to the working
    directory): runs of one scenario with different ``--set``/``--seeds`` overrides get
    different files (the hash: 8 hex digits of the SHA-256 of the parsed overrides, in
    order); without overrides the name is ``<name>[-<variant>].h5``."""
    stem = sc.run_label()
    if sc.overrides:
        stem += "-" + overrides_digest(sc.overrides)
    return DEFAULT_RUN_DIR / f"{stem}.h5"


def overrides_digest(overrides) -> str:
    """8 hex digits identifying a list of ``KEY=VALUE`` overrides by their parsed keys and
    values (``training.lr=0.01`` and ``training.lr=1e-2`` give the same digest)."""
    import hashlib

    from .overrides import parse_override

    parsed = []
    for text in overrides:
        keys, value = parse_override(text)
        parsed.append([".".join(keys), value])
    body = json.dumps(parsed, sort_keys=True, default=repr)
    return hashlib.sha256(body.encode()).hexdigest()[:8]


# ---------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------


class Progress:
    """A small progress display on stderr. On a terminal: one bar per runner, redrawn in
    place (steps, rate, time left). Otherwise: one line per chunk. ``quiet``: nothing."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, tty: bool | None = None, width: int = 28):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty() if tty is None else tty
        self.width = width
        self._label = ""
        self._total = 1
        self._t0 = time.perf_counter()
        self._start_done = 0
        self._first_chunk_end: tuple[float, int] | None = None

    def message(self, text: str):
        if not self.quiet:
            self.stream.write(text + "\n")
            self.stream.flush()

    def start(self, label: str, total_steps: int, done_steps: int = 0):
        self._label = label
        self._total = max(1, total_steps)
        self._t0 = time.perf_counter()
        self._start_done = done_steps
        self._first_chunk_end = None
        if self.tty and not self.quiet:
            self._draw(done_steps, rate=float("nan"), left=float("nan"))

    def update(self, done_steps: int, chunk: int, num_chunks: int):
        now = time.perf_counter()
        elapsed = now - self._t0
        if self._first_chunk_end is None:
            # the first chunk includes compilation: estimate the rate after it
            self._first_chunk_end = (now, done_steps)
            rate = (done_steps - self._start_done) / max(elapsed, 1e-9)
        else:
            t1, d1 = self._first_chunk_end
            rate = (done_steps - d1) / max(now - t1, 1e-9)
        left = (self._total - done_steps) / rate if rate > 0 else float("nan")
        if self.quiet:
            return
        if self.tty:
            self._draw(done_steps, rate, left)
        else:
            self.stream.write(
                f"{self._label}: chunk {chunk}/{num_chunks}, step {done_steps}/{self._total}, "
                f"{fmt_rate(rate)} steps/s, {fmt_duration(elapsed)} elapsed, {fmt_duration(left)} left\n"
            )
            self.stream.flush()

    def _draw(self, done, rate, left):
        frac = min(1.0, done / self._total)
        fill = int(round(frac * self.width))
        bar = "#" * fill + "-" * (self.width - fill)
        elapsed = time.perf_counter() - self._t0
        speed = (
            f"{fmt_rate(rate)} steps/s {fmt_duration(elapsed)} elapsed, {fmt_duration(left)} left"
            if np.isfinite(rate)
            else "compiling..."
        )
        self.stream.write(
            f"\r{self._label:<24.24} [{bar}] {100 * frac:3.0f}% {done}/{self._total} steps {speed} \x1b[K"
        )
        self.stream.flush()

    def finish(self, note: str = ""):
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\n")
        if note:
            self.stream.write(f"{self._label}: {note}\n")
        self.stream.flush()


# ---------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    path: Path
    num_seeds: int
    diverged: dict[str, list[tuple[int, int]]]  # group -> [(seed, step)]
    wall_time_s: float
    resumed: bool = False
    already_complete: bool = False

    @property
    def any_diverged(self) -> bool:
        return any(self.diverged.values())


def _diverged_list(seeds, div) -> list[tuple[int, int]]:
    return [(int(s), int(d)) for s, d in zip(seeds, div) if d >= 0]


def _result_from_file(path: Path, wall: float, **kw) -> RunResult:
    from .reader import read_run

    run = read_run(path, records=False, check=False)
    div = {p: _diverged_list(g.seed, g.diverged_at) for p, g in run.runners.items()}
    return RunResult(path, run.num_seeds, div, wall, **kw)


# ---------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------


def _theory_hook():
    """``sde_bias.theory_run.theory_hook(scenario, setup, h5file)`` if that module exists
    (the theory stage); ``None`` otherwise. ``setup`` is the run's
    :class:`~sde_bias.build.RunSetup` (``setup.problem`` is the Problem; also seeds,
    ``theta0``, per-seed data, dtype); ``h5file`` is the open ``.tmp`` file (mode r+),
    after every runner completed and before the rename."""
    import importlib

    try:
        theory_run = importlib.import_module("sde_bias.theory_run")
    except ModuleNotFoundError as e:
        if e.name in ("sde_bias.theory_run", "sde_bias"):
            return None
        raise
    return getattr(theory_run, "theory_hook", None)


def _record_shapes(setup) -> dict[str, tuple[tuple[int, ...], Any]]:
    data0 = jax.tree_util.tree_map(lambda a: a[0], setup.data) if setup.data_batched else setup.data
    out = jax.eval_shape(setup.observe, setup.theta0[0], data0)
    return {k: (tuple(v.shape), v.dtype) for k, v in out.items()}


def initial_records(setup) -> dict[str, np.ndarray]:
    from .integrate import observe_all

    obs = observe_all(setup.observe, setup.theta0, setup.data, setup.data_batched)
    return {k: np.asarray(v)[:, None] for k, v in obs.items()}


def _restore(template, state):
    """An :class:`~sde_bias.integrate.Ensemble` from a checkpoint, with the structure and
    dtypes of ``template``."""
    import jax.numpy as jnp

    leaves, treedef = jax.tree_util.tree_flatten(template.aux)
    if len(leaves) != len(state["aux"]):
        raise UserError("the checkpoint does not match this runner (auxiliary state differs)")
    aux = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(a, dtype=l.dtype) for a, l in zip(state["aux"], leaves)]
    )
    from .integrate import shard_ensemble
    from .parallel import seed_mesh

    ens = type(template)(
        theta=jnp.asarray(state["theta"], template.theta.dtype),
        aux=aux,
        key=jnp.asarray(state["key"], template.key.dtype),
        diverged_at=jnp.asarray(state["diverged_at"], template.diverged_at.dtype),
        step=jnp.asarray(state["step"], template.step.dtype),
    )
    # split over the devices exactly when the runner's fresh ensemble is
    return shard_ensemble(ens) if seed_mesh(template.theta) is not None else ens


def run_scenario(
    sc: Scenario,
    out=None,
    *,
    resume: bool = False,
    quiet: bool = False,
    progress: Progress | None = None,
    presets: dict | None = None,
) -> RunResult:
    """Run every runner of ``sc`` on the same seeds and write one HDF5 file.

    ``out`` defaults to :func:`default_output`. The file is written as ``<out>.tmp`` and
    renamed when complete. With ``resume=True`` an interrupted ``<out>.tmp`` of the same
    scenario is continued from its last checkpoint (a complete ``<out>`` is left as is)."""
    from .presets import load_presets, resolve_preset

    t_start = time.perf_counter()
    progress = progress or Progress(quiet=quiet)
    presets = load_presets() if presets is None else presets
    missing = [r for r in sc.runners if r not in presets]
    if missing:
        raise UserError(f"no solver preset named {missing[0]!r}; available: {', '.join(sorted(presets))}")
    resolved = [resolve_preset(presets[r], sc.runner_options.get(r)) for r in sc.runners]
    origin = "--out" if out is not None else f"{sc.source}: name: the default output"
    out = Path(out) if out is not None else default_output(sc)
    # before any compute: the path can be written, and no other run writes it (lock held
    # until the result is renamed); a signal stops the run after its next checkpoint
    from ._signals import StopOnSignal
    from .outputs import claim_output

    lock = claim_output(out, origin)
    try:
        with StopOnSignal() as stop:
            return _run_locked(sc, out, resolved, resume, progress, t_start, stop)
    finally:
        lock.release()


def _run_locked(sc, out: Path, resolved, resume: bool, progress: Progress, t_start: float, stop) -> RunResult:
    """The body of :func:`run_scenario`, with the output's lock held."""
    from .build import build_setup, ensure_precision, make_runner
    from .store import RunFile, environment_attrs, finalize, mark_complete, now_iso, tmp_path_for

    tmp = tmp_path_for(out)
    yaml_text, digest = to_yaml(sc), scenario_hash(sc)

    # ---------------------------------------------------------------- resume?
    if resume and not tmp.exists() and out.exists():
        with RunFile.open(out) as f:
            same = f.h5.attrs.get("scenario_hash") == digest and int(f.h5.attrs.get("complete", 0)) == 1
        if same:
            progress.message(f"{out}: already complete, nothing to resume")
            return _result_from_file(out, time.perf_counter() - t_start, already_complete=True)
        raise UserError(f"{out} exists but was made by a different scenario; nothing to resume (run without --resume to overwrite)")
    if resume and not tmp.exists():
        progress.message(f"no interrupted run at {tmp}; starting from the beginning")
        resume = False

    ensure_precision(sc)
    setup = build_setup(sc)
    runners = [make_runner(setup, p) for p in resolved]  # refuses impossible presets before running
    out.parent.mkdir(parents=True, exist_ok=True)

    if resume:
        try:
            f = RunFile.open(tmp, "r+")
        except UserError as e:
            raise UserError(f"cannot resume: {e}; run without --resume to start over") from None
        if f.h5.attrs.get("scenario_hash") != digest:
            f.close()
            raise UserError(
                f"{tmp} was made by a different scenario (hash differs); run without --resume to start over"
            )
        progress.message(f"resuming {tmp}")
    else:
        if tmp.exists():
            progress.message(f"discarding the interrupted run {tmp} (use --resume to continue it)")
        if out.exists():
            progress.message(f"{out} exists: it will be replaced when this run completes")
        attrs = {
            "scenario_name": sc.name,
            "description": sc.description,
            "scenario_yaml": yaml_text,
            "scenario_hash": digest,
            "source": sc.source,
            "variant": sc.variant or "",
            "overrides": json.dumps(list(sc.overrides)),
            "created": now_iso(),
            "precision": sc.precision,
            "seeds": np.asarray(setup.seeds, np.int64),
            "num_seeds": setup.num_seeds,
            "seed_base": sc.seeds.base,
            "lr": float(sc.training.lr),
            "total_steps": sc.total_steps,
            "record_every": sc.training.record_every,
            "runners": json.dumps(list(sc.runners)),
            "runner_groups": json.dumps([p.group for p in resolved]),
            "model_type": sc.model.type,
            "data_type": sc.data.type,
            "num_params": int(setup.theta0.shape[1]),
        }
        attrs.update(environment_attrs())
        f = RunFile.create(tmp, attrs)
        f.write_data(setup.extras)
        f.flush()

    try:
        shapes = _record_shapes(setup)
        initial = None
        total_records = sc.num_records  # after the initial one
        chunk = sc.chunk_records
        num_chunks = -(-total_records // chunk)
        every = sc.training.record_every
        lr = float(sc.training.lr)
        for preset, runner in zip(resolved, runners):
            group = preset.group
            label = f"{group}"
            g = f.h5[group] if group in f.h5 and "preset" in f.h5[group].attrs else None
            if g is not None and int(g.attrs.get("complete", 0)) == 1:
                progress.message(f"{label}: already complete")
                continue
            template = runner.init(setup)
            if g is None or int(g.attrs.get("records_done", 0)) == 0:
                g = f.create_runner(
                    group,
                    {
                        "preset": preset.name,
                        "kind": preset.kind,
                        "description": preset.description,
                        "preset_yaml": json.dumps(preset.model_dump(mode="json")),
                        "lr": lr,
                        "record_every": every,
                        "total_steps": sc.total_steps,
                        "records_total": total_records + 1,
                        "chunk_records": chunk,
                    },
                    setup.seeds,
                    int(setup.theta0.shape[1]),
                    shapes,
                    chunk,
                    setup.dtype,
                )
                if initial is None:
                    initial = initial_records(setup)
                f.append(g, np.array([0]), np.array([0.0]), initial)
                ens = template
                _save(f, g, ens, 1)
                f.flush()
                done_records = 0
            else:
                state = f.load_state(g)
                f.truncate(g, state["records_done"])
                ens = _restore(template, state)
                done_records = state["records_done"] - 1
                progress.message(f"{label}: resuming at step {state['step']}")
            wall0 = time.perf_counter()
            progress.start(label, sc.total_steps, done_records * every)
            chunk_index = done_records // chunk
            while done_records < total_records:
                n = min(chunk, total_records - done_records)
                ens, rec = runner.advance(ens, setup, n, every)
                rec = {k: np.asarray(v) for k, v in rec.items()}
                steps = (done_records + np.arange(1, n + 1)) * every
                f.append(g, steps, steps * lr, rec)
                done_records += n
                _save(f, g, ens, done_records + 1)
                f.flush()
                chunk_index += 1
                progress.update(done_records * every, chunk_index, num_chunks)
                if stop.requested:
                    progress.finish()
                    stop.check(f"{label}'s checkpoint at step {done_records * every}")
            div = np.asarray(ens.diverged_at)
            nd = int(np.sum(div >= 0))
            g.attrs["complete"] = np.int8(1)
            g.attrs["wall_time_s"] = float(g.attrs.get("wall_time_s", 0.0)) + time.perf_counter() - wall0
            g.attrs["status"] = "ok" if nd == 0 else f"{nd} of {len(div)} seeds diverged"
            f.flush()
            progress.finish("" if nd == 0 else f"{nd} of {len(div)} seeds diverged (first at step {int(div[div >= 0].min())})")

        stop.check("every runner completed (the theory stage and the rename are left)")
        hook = _theory_hook()
        if hook is not None:
            hook(sc, setup, f.h5)
        if getattr(sc, "design", None) is not None:  # the inverse-design stage (sde_bias.design_run)
            from .design_run import design_hook

            design_hook(sc, setup, f.h5)
        mark_complete(f.h5, time.perf_counter() - t_start)
        f.flush()
    finally:
        f.close()
    finalize(tmp, out)
    return _result_from_file(out, time.perf_counter() - t_start, resumed=resume)


def _save(f, g, ens, records_done: int):
    aux_leaves = jax.tree_util.tree_leaves(ens.aux)
    f.save_state(
        g,
        np.asarray(ens.theta),
        np.asarray(ens.diverged_at),
        int(ens.step),
        np.asarray(ens.key),
        [np.asarray(a) for a in aux_leaves],
        records_done,
    )

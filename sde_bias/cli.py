"""The ``sde-bias`` command line.

    sde-bias run SCENARIO [--variant NAME] [--set K=V ...] [--seeds N] [--out FILE] [--resume] [--quiet] [--devices N]
    sde-bias sweep SCENARIO [--variant V] [--set K=V ...] [--grid K=V1,V2 ...] [--zip K=V1,V2 ...] [--seeds N] [--out FILE] [--resume] [--dask local[:N] | --scheduler ADDR]
    sde-bias validate SCENARIO...
    sde-bias list
    sde-bias inspect FILE
    sde-bias plot FILE [--out DIR]
    sde-bias report FILE... [--out DIR] [--notes FILE]
    sde-bias design TARGET [--data FILE|--scenario S] [--mechanism gd|label_noise|both] [--out FILE]
    sde-bias converge SCENARIO [--variant V] [--solvers A,B] [--refine 1,2,4,8] [--observables X,Y] [--strong] [--out FILE]

Exit codes: 0 ok; 1 internal error (a bug: the traceback is printed); 2 user error
(invalid scenario, bad option, unreadable or damaged file, an output that cannot be
written or that another run is writing; one message, no traceback); 3 the run completed
but some seeds diverged; 130 interrupted (Ctrl-C or SIGTERM: the run stops after its
next checkpoint and continues with --resume).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from .errors import ScenarioError, UserError
from .formatting import fmt_number, source_lines
from .scenario_paths import resolve_scenario_path, scenario_dirs

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130

EPILOG = """\
exit codes:
  0    success
  1    internal error (a bug; the traceback is printed)
  2    user error: invalid scenario or preset, bad option, unreadable or damaged
       file, an output path that cannot be written or that another run is writing
  3    the run completed and was written, but some seeds diverged
  130  interrupted (Ctrl-C or SIGTERM: stopped after the next checkpoint; --resume)

Scenario keys are documented in docs/scenarios.md; solver presets live in solvers/.
"""


def _out(msg: str = "", quiet: bool = False):
    if not quiet:
        print(msg, flush=True)


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def _load_for_run(args):
    from .scenario import load_scenario, parse_yaml, scenario_from_dict

    path = resolve_scenario_path(args.scenario)
    if path.suffix in (".h5", ".hdf5"):
        from .store import RunFile

        with RunFile.open(path) as f:
            text = f.h5.attrs.get("scenario_yaml")
        if not text:
            raise UserError(f"{path}: no scenario_yaml attribute")
        if args.variant:
            raise UserError("--variant cannot be used when re-running a run file (its variant is already applied)")
        raw = parse_yaml(text, f"{path}:scenario_yaml")
        from .presets import load_presets

        sc = scenario_from_dict(raw, f"{path}:scenario_yaml", None, args.set or (), args.seeds, load_presets())
        return sc, path
    return load_scenario(path, args.variant, args.set or (), args.seeds), path


def cmd_run(args) -> int:
    from .run import Progress, default_output, run_scenario

    sc, path = _load_for_run(args)
    out = Path(args.out) if args.out else None
    if out is None and path.suffix in (".h5", ".hdf5"):
        out = default_output(sc).with_name(f"{path.stem}-rerun.h5")
    if not args.no_plot:  # the figures' folder, before any compute
        from .outputs import check_folder
        from .plots import default_plot_dir

        what = "--out: figures folder" if out else f"{sc.source}: name: the default figures folder"
        check_folder(default_plot_dir(out or default_output(sc)), what, create=False)
    progress = Progress(quiet=args.quiet)
    res = run_scenario(sc, out, resume=args.resume, progress=progress)
    figures = []
    if not args.no_plot:
        from .plots import plot_run

        figures = plot_run(res.path)
    n_runners = len(res.diverged)
    _out(
        f"wrote {res.path} ({n_runners} runners x {res.num_seeds} seeds, {res.wall_time_s:.1f} s)"
        + (f"; figures in {figures[0].parent}" if figures else ""),
        args.quiet,
    )
    from .verdict import read_summary

    for line in read_summary(res.path):
        _out(line, args.quiet)
    if res.any_diverged:
        for g, lst in res.diverged.items():
            if lst:
                shown = ", ".join(f"seed {s} at step {k}" for s, k in lst[:5])
                more = f" and {len(lst) - 5} more" if len(lst) > 5 else ""
                print(f"sde-bias: {g}: {len(lst)} of {res.num_seeds} seeds diverged ({shown}{more})", file=sys.stderr)
        return EXIT_DIVERGED
    return EXIT_OK


def cmd_validate(args) -> int:
    from .errors import read_yaml_file
    from .presets import load_presets
    from .scenario import scenario_from_dict, validate_file

    if args.deep:
        _split_host_devices(None)
    failed = 0
    presets = load_presets()
    for name in args.scenarios:
        try:
            path = resolve_scenario_path(name)
            if args.variant or args.set:
                raw = read_yaml_file(path)
                sc = scenario_from_dict(raw, str(path), args.variant, args.set or (), None, presets, deep=args.deep)
                if args.deep:
                    from .preflight import probe_runners

                    probe_runners(sc, presets)
                checked = [args.variant or ""]
            else:
                checked = validate_file(path, presets, deep=args.deep)
            from .sweep_driver import validate_sweep

            n_points = validate_sweep(path, args.variant, args.set, deep=args.deep)
        except UserError as e:
            failed += 1
            print(str(e), file=sys.stderr)
            continue
        variants = [v for v in checked if v]
        _out(f"ok: {path}" + (f" (variants: {', '.join(variants)})" if variants else "")
             + (f" (sweep: {n_points} points)" if n_points else ""), args.quiet)
    if not args.deep and len(args.scenarios) > failed:
        _out("(static checks only, without JAX: add --deep to build the models and check init, data, theory "
             "and runners against them)", args.quiet)
    return EXIT_USER if failed else EXIT_OK


def cmd_list(args) -> int:
    from .presets import load_presets, solver_dirs
    from .errors import read_yaml_file

    dirs = [Path(args.scenarios)] if args.scenarios else scenario_dirs()
    print("scenarios:")
    seen = 0
    for d in dirs:
        for f in sorted(d.glob("*.yaml")):
            try:
                raw = read_yaml_file(f)
                desc = raw.get("description", "") if isinstance(raw, dict) else ""
                variants = list((raw.get("variants") or {}) if isinstance(raw, dict) else {})
            except UserError:
                desc, variants = "(unreadable: run sde-bias validate)", []
            v = f" [variants: {', '.join(variants)}]" if variants else ""
            print(f"  {str(f):<40} {desc}{v}")
            seen += 1
    if not seen:
        print("  (none found in " + ", ".join(str(d) for d in dirs) + ")")
    print("solver presets:")
    presets = load_presets()
    for name, p in sorted(presets.items()):
        print(f"  {name:<16} {p.kind:<9} {p.description}")
    if not presets:
        print("  (none found in " + ", ".join(str(d) for d in solver_dirs()) + ")")
    return EXIT_OK


def cmd_inspect(args) -> int:
    import warnings

    import numpy as np

    from .reader import read_run

    path = Path(args.file)
    from .sweep_view import inspect_sweep, is_sweep_file

    if is_sweep_file(path):
        return inspect_sweep(path)
    run = read_run(path, last_only=True)
    a = run.attrs
    print(f"{path}")
    print("\n".join(source_lines(a, "  scenario   ", f" (hash {str(a.get('scenario_hash'))[:12]})")))
    print(
        f"  created    {a.get('created')} by sde_bias {a.get('sde_bias_version')} "
        f"(jax {a.get('jax_version')}, diffrax {a.get('diffrax_version')}) on {a.get('backend')} {a.get('device')}"
    )
    lr, steps = a.get("lr"), a.get("total_steps")
    print(
        f"  run        {a.get('num_seeds')} seeds (base {a.get('seed_base')}), {steps} steps of lr {lr} "
        f"(t = {float(lr) * int(steps):g}), recorded every {a.get('record_every')} steps, {a.get('precision')}"
    )
    print(f"  model      {a.get('model_type')} ({a.get('num_params')} parameters), data {a.get('data_type')}")
    wall = a.get("wall_time_s")
    print(f"  complete   {'yes' if run.complete else 'NO (interrupted: resume with sde-bias run --resume)'}"
          + (f", {float(wall):.1f} s" if wall is not None else ""))
    runners = list(run.runners)
    print()
    print(f"  {'runner':<24} {'records':>9}  status")
    for p, g in run.runners.items():
        div, seeds = g.diverged_at, g.seed
        nd = g.num_diverged
        rec = f"{int(g.attrs.get('records_done', 0))}/{int(g.attrs.get('records_total', 0))}"
        if nd:
            first = ", ".join(f"seed {s} at step {k}" for s, k in zip(seeds[div >= 0][:3], div[div >= 0][:3]))
            status = f"{nd} of {len(div)} diverged ({first}{', ...' if nd > 3 else ''})"
        else:
            status = "ok" if g.complete else "ok so far (incomplete)"
        print(f"  {p:<24} {rec:>9}  {status}")
    print()
    if runners:
        g0 = run.runners[runners[0]]
        names = list(g0.shapes)
        t_last = g0.time[-1] if g0.time.shape[0] else float("nan")
        print("  datasets per runner (seed x time x ...): " + ", ".join(f"{n} {g0.shapes[n]}" for n in names))
        print(f"  final values at t = {t_last:g} (seed mean +- std; |x| for vectors):")
        head = f"    {'observable':<28}" + "".join(f"{p:>26}" for p in runners)
        print(head)
        for n in names:
            row = f"    {n:<28}"
            for g in run.runners.values():
                if n not in g.records or g.shapes[n][1] == 0:
                    row += f"{'-':>26}"
                    continue
                last = g.records[n][:, -1]
                last = last.reshape(last.shape[0], -1).astype(float)
                vals = last[:, 0] if last.shape[1] == 1 else np.linalg.norm(last, axis=1)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    m, s = np.nanmean(vals), np.nanstd(vals)
                row += f"{fmt_number(m) + ' +- ' + fmt_number(s):>26}"
            print(row)
    table = run.comparisons_table
    if table is not None:
        print("\n  comparisons (each runner against the theory; disc. error = estimated discretisation error of the runner):")
        print("\n".join("    " + line for line in table.splitlines()))
    summary = run.convergence_summary
    if summary is not None:
        print("\n" + "\n".join("  " + line for line in summary.splitlines()))
    from .design_run import inspect_lines

    for line in inspect_lines(run.design):  # the design stage's summary, if the run has one
        print(line)
    if run.other_groups:
        print(f"\n  other groups: {', '.join(run.other_groups)}")
    return EXIT_OK


def _csv(text: str | None, cast=str, option: str = ""):
    if text is None:
        return None
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{option} {text!r}: expected a comma-separated list of {cast.__name__}s") from None


def cmd_sweep(args) -> int:
    from .sweep_driver import cli_sweep

    return cli_sweep(args, resolve_scenario_path)


def cmd_converge(args) -> int:
    from .converge_run import converge, summary_lines

    sc, path = _load_for_run(args)
    overrides = {
        "solvers": _csv(args.solvers, str, "--solvers"),
        "refine": _csv(args.refine, int, "--refine"),
        "observables": _csv(args.observables, str, "--observables"),
        "paths": args.paths,
        "steps": args.steps,
        "strong": True if args.strong else None,
    }
    out, result, figures = converge(sc, overrides, args.out, log=lambda m: _out(m, args.quiet), plots=not args.no_plot)
    for line in summary_lines(result):
        _out(line, args.quiet)
    _out(f"wrote {out}" + (f"; figures in {figures[0].parent}" if figures else ""), args.quiet)
    return EXIT_OK


def cmd_report(args) -> int:
    from .report import main_report

    return main_report(args.files, args.out, notes=args.notes)


def cmd_plot(args) -> int:
    from ._filecheck import open_run, reading
    from .plots import plot_run

    from .sweep_view import is_sweep_file, plot_sweep

    if is_sweep_file(args.file):
        return plot_sweep(args.file, args.out, quiet=args.quiet)
    open_run(args.file).close()  # a clear error for a bad file
    with reading(args.file):
        paths = plot_run(args.file, args.out)
    for p in paths:
        _out(str(p), args.quiet)
    return EXIT_OK


# ---------------------------------------------------------------------------
# parser and entry point
# ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors are user errors: exit 2 (argparse's default too)
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(
        prog="sde-bias",
        description="Run SGD and its SDE on the same seeds from a YAML scenario; write one HDF5 file per run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"sde_bias {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser(
        "run",
        help="run a scenario and write its HDF5 file and figures",
        description="Run every runner of a scenario on the same seeds, write data/runs/<name>[-<variant>][-<hash>].h5 "
        "and PNG figures next to it (<name>_plots/).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("scenario", help="scenario YAML file (or a name in scenarios/, or a run file .h5 to re-run its scenario)")
    r.add_argument("--variant", help="apply a named variant of the scenario (e.g. quick)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key, e.g. --set training.lr=0.01 (repeatable; VALUE is YAML)")
    r.add_argument("--seeds", type=int, metavar="N", help="number of seeds (same as --set seeds.count=N)")
    r.add_argument("--out", metavar="FILE", help="output file (default data/runs/<name>[-<variant>][-<hash of the overrides>].h5)")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run of the same scenario")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress or messages (errors only)")
    r.add_argument("--no-plot", action="store_true", help="do not write the PNG figures")
    r.add_argument(
        "--devices", type=int, metavar="N",
        help="split the CPU into N JAX devices and the seeds over them (default: one per core, or the "
        "SDE_BIAS_DEVICES environment variable; 1 = no split). Numbers do not depend on N.",
    )
    r.set_defaults(func=cmd_run)

    sw = sub.add_parser(
        "sweep",
        help="run a scenario over a grid of key values (sweep: block, --grid, --zip) into one HDF5 file",
        description="Run every point of a sweep (points differing only in values run as one compiled program) and "
        "write data/sweeps/<name>[-<variant>]-sweep-<hash>.h5 (README: Sweeps, Scaling out).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sw.add_argument("scenario", help="scenario YAML file (or a name in scenarios/)")
    sw.add_argument("--variant", help="apply a named variant of the scenario")
    sw.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key at every point (repeatable)")
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                    help="sweep a key over values, outer product with the other grid keys (repeatable; also "
                    "KEY='{linspace: [a, b, n]}', logspace, range)")
    sw.add_argument("--zip", action="append", metavar="KEY=V1,V2,...", help="sweep keys together (aligned, equal lengths)")
    sw.add_argument("--seeds", type=int, metavar="N", help="number of seeds per point")
    sw.add_argument("--out", metavar="FILE", help="output file (default data/sweeps/<name>[-<variant>]-sweep-<hash>.h5)")
    sw.add_argument("--resume", action="store_true", help="continue an interrupted sweep (finished groups are kept)")
    sw.add_argument("--group-points", type=int, metavar="N", help="at most N points per compiled program (memory)")
    sw.add_argument("--dask", metavar="local[:N]", help="run the groups on a local Dask cluster of N worker processes")
    sw.add_argument("--scheduler", metavar="ADDRESS", help="run the groups on a running Dask scheduler (tcp://host:port)")
    sw.add_argument("--quiet", "-q", action="store_true")
    sw.add_argument("--devices", type=int, metavar="N", help="split the CPU into N JAX devices (as for run)")
    sw.set_defaults(func=cmd_sweep)

    v = sub.add_parser("validate", help="check scenario files (and all their variants) without running",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    v.add_argument("--variant", help="check only this variant")
    v.add_argument("--set", action="append", metavar="KEY=VALUE", help="check with this override")
    v.add_argument("--deep", action="store_true",
                   help="also build each model and problem (imports JAX): init, data, theory and runners "
                   "checked against them, as `run` does before computing")
    v.add_argument("--quiet", "-q", action="store_true")
    v.set_defaults(func=cmd_validate, uses_jax=False)  # --deep starts JAX itself

    ls = sub.add_parser("list", help="list scenarios and solver presets with one-line descriptions")
    ls.add_argument("--scenarios", metavar="DIR", help="scenario folder (default ./scenarios and the project's)")
    ls.set_defaults(func=cmd_list, uses_jax=False)

    i = sub.add_parser("inspect", help="summarise a run file: scenario, runners, shapes, status, final numbers")
    i.add_argument("file")
    i.set_defaults(func=cmd_inspect)

    pl = sub.add_parser("plot", help="write PNG figures of a run file (seed mean with a band, one per observable)")
    pl.add_argument("file")
    pl.add_argument("--out", metavar="DIR", help="folder for the figures (default <file stem>_plots/ next to the file)")
    pl.add_argument("--quiet", "-q", action="store_true")
    pl.set_defaults(func=cmd_plot)
    rp = sub.add_parser(
        "report",
        help="the paper's experiments from run files: figures and one markdown summary",
        description="Group run files by scenario, draw each experiment's figure (seed mean with a "
        "10-90 % band, theory dashed) and write DIR/experiments.md and DIR/figures/*.png.",
    )
    rp.add_argument("files", nargs="+", metavar="FILE",
                    help="run files (.h5), e.g. data/runs/*.h5, and sweep files (one row per point), e.g. data/sweeps/*.h5")
    rp.add_argument("--out", metavar="DIR", default="data/report", help="output folder (default data/report)")
    rp.add_argument("--notes", metavar="FILE", help="markdown inserted after the summary (e.g. docs/experiments_notes.md)")
    rp.set_defaults(func=cmd_report)

    cv = sub.add_parser(
        "converge",
        help="step-size study: weak/strong errors and orders of the SDE solvers, SGD vs the extrapolated SDE",
        description="Run each SDE solver at dt = lr / m for the refinements m on the same Brownian paths; fit weak "
        "and strong orders with 95%% confidence intervals, extrapolate to dt -> 0 and compare discrete SGD with the "
        "extrapolated SDE as a function of lr. Options override the scenario's convergence: block "
        "(docs/comparisons.md). Writes data/runs/<name>[-<variant>]-converge.h5 (/convergence) and figures.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cv.add_argument("scenario", help="scenario YAML file (or a name in scenarios/)")
    cv.add_argument("--variant", help="apply a named variant of the scenario")
    cv.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a scenario key (repeatable)")
    cv.add_argument("--seeds", type=int, metavar="N", help=argparse.SUPPRESS)
    cv.add_argument("--solvers", metavar="A,B", help="SDE presets, e.g. euler_maruyama,heun")
    cv.add_argument("--refine", metavar="1,2,4,8", help="refinements m (dt = lr / m), increasing")
    cv.add_argument("--observables", metavar="X,Y", help="observables, e.g. balance/imbalance,invariants[0]")
    cv.add_argument("--paths", type=int, metavar="N", help="number of Brownian paths (seeds)")
    cv.add_argument("--steps", type=int, metavar="N", help="horizon in SGD steps")
    cv.add_argument("--strong", action="store_true", help="also measure strong errors of the parameters")
    cv.add_argument("--out", metavar="FILE", help="output file (default data/runs/<name>[-<variant>]-converge.h5)")
    cv.add_argument("--no-plot", action="store_true", help="do not write the PNG figures")
    cv.add_argument("--quiet", "-q", action="store_true")
    cv.set_defaults(func=cmd_converge)

    from .design_cli import add_design_parser  # light: the command imports JAX when it runs

    add_design_parser(sub, EPILOG)
    return p


def _split_host_devices(requested: int | None) -> None:
    """One JAX CPU device per core (or ``--devices`` / ``SDE_BIAS_DEVICES``; 1 = no split),
    so that the runners split their seeds over the cores (XLA runs a small step on one
    core otherwise). Must come before JAX starts; a no-op when it already has (``main()``
    called from a process that used JAX, e.g. the tests)."""
    import warnings

    from .parallel import configure_host_devices, devices_from_env

    if requested is not None and requested < 1:
        raise UserError(f"--devices {requested}: expected a positive integer (1 = no split)")
    if requested is None:
        try:
            requested = devices_from_env()
        except ValueError as e:
            raise UserError(str(e)) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        configure_host_devices(requested)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return int(e.code) if isinstance(e.code, int) else EXIT_USER
    try:
        if getattr(args, "uses_jax", True):  # --help, --version, `list` and `validate` never import JAX
            _split_host_devices(getattr(args, "devices", None))
        return args.func(args)
    except ScenarioError as e:
        print(f"sde-bias: invalid scenario:\n{e}", file=sys.stderr)
        return EXIT_USER
    except UserError as e:
        print(f"sde-bias: error: {e}", file=sys.stderr)
        return EXIT_USER
    except BrokenPipeError:  # `sde-bias list | head`: the reader left; nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as e:
        why = f": {e}" if str(e) else ""
        print(f"sde-bias: interrupted{why} (an interrupted run can be continued with --resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - anything else is a bug
        traceback.print_exc()
        print("sde-bias: internal error (a bug): please report it with the traceback above", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Sweep speed: one batched `sde-bias sweep` against one `sde-bias run` process per point,
and a 2-worker Dask LocalCluster against in-process.

    python benchmarks/bench_sweep.py                     # hyperbola and matrix_completion, quick variants
    python benchmarks/bench_sweep.py --scenarios hyperbola --steps 2000 --dask

16 points = 4 learning rates x 4 label-noise levels, 64 seeds each (``--seeds``). Every
command is timed as a whole process (start-up, compilation, running, writing), which is what
a user waits for. The separate runs go one after the other (each already uses every core,
split into JAX devices). Prints one table; numbers for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LRS = {"hyperbola": [0.01, 0.02, 0.03, 0.04], "matrix_completion": None}
NOISES = {"hyperbola": [0.25, 0.5, 0.75, 1.0], "matrix_completion": None}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _timed(cmd) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT)  # -m imports from the cwd first
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 3):
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return wall


def _values(name: str, variant: str | None):
    """4 learning rates and 4 label-noise levels around the scenario's own."""
    from sde_bias.scenario import load_scenario

    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml", variant)
    lr, delta = float(sc.training.lr), float(sc.noise.label_noise) or 0.5
    lrs = LRS.get(name) or [lr * f for f in (0.5, 0.75, 1.0, 1.25)]
    noises = NOISES.get(name) or [delta * f for f in (0.5, 0.75, 1.0, 1.25)]
    return lrs, noises


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", default="hyperbola,matrix_completion")
    ap.add_argument("--variant", default="quick")
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--steps", type=int, help="override training.steps")
    ap.add_argument("--set", action="append", default=[], metavar="K=V", help="further overrides (repeatable)")
    ap.add_argument("--dask", action="store_true", help="also time --dask local:2 against in-process")
    ap.add_argument("--no-separate", action="store_true", help="skip the 16 separate runs (only the Dask overhead)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenarios.split(","):
            lrs, noises = _values(name, args.variant)
            base = [sys.executable, "-m", "sde_bias.cli"]
            common = ["--variant", args.variant, "--seeds", str(args.seeds)] if args.variant else ["--seeds", str(args.seeds)]
            if args.steps:
                common += ["--set", f"training.steps={args.steps}"]
            for o in args.set:
                common += ["--set", o]
            scen = str(ROOT / "scenarios" / f"{name}.yaml")
            grid = ["--grid", "training.lr=" + ",".join(repr(x) for x in lrs),
                    "--grid", "noise.label_noise=" + ",".join(repr(x) for x in noises)]
            sweep = _timed(base + ["sweep", scen, *common, *grid, "--out", f"{tmp}/{name}-sweep.h5", "-q"])
            separate = float("nan")
            for lr in [] if args.no_separate else lrs:
                separate = 0.0 if separate != separate else separate
                for d in noises:
                    separate += _timed(base + ["run", scen, *common, "--set", f"training.lr={lr!r}",
                                               "--set", f"noise.label_noise={d!r}", "--no-plot", "-q",
                                               "--out", f"{tmp}/{name}-{lr}-{d}.h5"])
            row = {"scenario": name, "sweep_s": sweep, "separate_s": separate, "ratio": separate / sweep}
            if args.dask:
                row["dask_s"] = _timed(base + ["sweep", scen, *common, *grid, "--group-points", "8", "--dask", "local:2",
                                               "--out", f"{tmp}/{name}-dask.h5", "-q"])
                row["inproc_groups_s"] = _timed(base + ["sweep", scen, *common, *grid, "--group-points", "8",
                                                        "--out", f"{tmp}/{name}-inproc.h5", "-q"])
            rows.append(row)
            print(row, flush=True)
    print(f"\n16 points x {args.seeds} seeds, variant {args.variant or 'none'}, steps {args.steps or 'scenario'}, "
          f"{os.cpu_count()} cores")
    print(f"{'scenario':<20}{'sweep (s)':>11}{'16 runs (s)':>13}{'ratio':>8}" + (f"{'dask:2 (s)':>12}{'in-proc (s)':>13}{'overhead':>10}" if args.dask else ""))
    for r in rows:
        line = f"{r['scenario']:<20}{r['sweep_s']:>11.1f}{r['separate_s']:>13.1f}{r['ratio']:>7.1f}x"
        if args.dask:
            line += f"{r['dask_s']:>12.1f}{r['inproc_groups_s']:>13.1f}{(r['dask_s'] / r['inproc_groups_s'] - 1) * 100:>9.0f}%"
        print(line)


if __name__ == "__main__":
    main()

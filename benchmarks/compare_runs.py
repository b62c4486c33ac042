"""Bit-for-bit comparison of every scenario's ``quick`` run between two checkouts.

A refactor that must not change any number (issue 9: "every scenario's quick variant gives
bit-identical HDF5 datasets before and after") is checked by running each scenario's
``quick`` variant with the CLI on a reference checkout and on this one, then comparing every
dataset of the two HDF5 files: same names, same dtypes, same shapes, same bytes (NaN
payloads included). Attributes are not compared (they hold times, versions and the
resolved YAML text).

    python benchmarks/compare_runs.py --base /work/wt_base --out /tmp/cmp            # run both, compare
    python benchmarks/compare_runs.py --base /work/wt_base --out /tmp/cmp --only hyperbola
    python benchmarks/compare_runs.py --compare-only --out /tmp/cmp                   # files already there

Each checkout runs as ``python -m sde_bias.cli run scenarios/X.yaml --variant quick --seeds N
--devices 1 --no-plot --out OUT/<side>/X.h5`` with ``PYTHONPATH`` set to that checkout (the
reference's ``scenarios/X.yaml`` when it has one, so both sides run the same file). ``--seeds``
is 4 except where ``SEEDS`` says otherwise. Exit status 0 when every file matches.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# theory_hyperbola's quick variant crashes with 4-8 seeds on the reference commit (a known,
# separately fixed bug): it is compared at 64 seeds.
SEEDS = {"theory_hyperbola": 64}
DEFAULT_SEEDS = 4


def run_side(checkout: Path, scenario: str, out: Path, seeds: int) -> tuple[int, float, str]:
    """Run one scenario's quick variant with the code (and scenario file) of ``checkout``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    yaml_path = checkout / "scenarios" / f"{scenario}.yaml"
    if not yaml_path.exists():
        yaml_path = ROOT / "scenarios" / f"{scenario}.yaml"
    env = dict(os.environ, PYTHONPATH=str(checkout))
    cmd = [sys.executable, "-m", "sde_bias.cli", "run", str(yaml_path), "--variant", "quick",
           "--seeds", str(seeds), "--devices", "1", "--no-plot", "--quiet", "--out", str(out)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    return res.returncode, time.perf_counter() - t0, (res.stderr or res.stdout)[-2000:]


def datasets(path: Path) -> dict:
    import h5py
    import numpy as np

    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                a = obj[()]
                if np.asarray(a).dtype.kind == "O":  # variable-length strings: compare the values, not
                    raw = repr(np.asarray(a).tolist()).encode()  # the addresses tobytes() would give
                else:
                    raw = np.asarray(a).tobytes()
                out[name] = (a.dtype.str, np.shape(a), raw)

        f.visititems(visit)
    return out


def compare(a: Path, b: Path) -> list[str]:
    """Differences between the datasets of two files (empty: bit-identical)."""
    da, db = datasets(a), datasets(b)
    diffs = [f"only in {a.parent.name}: {k}" for k in sorted(set(da) - set(db))]
    diffs += [f"only in {b.parent.name}: {k}" for k in sorted(set(db) - set(da))]
    for k in sorted(set(da) & set(db)):
        (ta, sa, ba), (tb, sb, bb) = da[k], db[k]
        if (ta, sa) != (tb, sb):
            diffs.append(f"{k}: dtype/shape {ta}{sa} vs {tb}{sb}")
        elif ba != bb:
            diffs.append(f"{k}: values differ")
    return diffs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=Path("/work/wt_base"), help="reference checkout")
    ap.add_argument("--new", type=Path, default=ROOT, help="checkout under test (default: this one)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the run files")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--side", choices=["both", "base", "new"], default="both", help="which checkout(s) to run")
    ap.add_argument("--compare-only", action="store_true", help="compare files already in --out")
    args = ap.parse_args(argv)

    names = [n for n in args.only.split(",") if n] or sorted(p.stem for p in (args.base / "scenarios").glob("*.yaml"))
    sides = {"base": args.base, "new": args.new}
    failed = 0
    for name in names:
        seeds = SEEDS.get(name, DEFAULT_SEEDS)
        files = {s: args.out / s / f"{name}.h5" for s in sides}
        if not args.compare_only:
            for side, checkout in sides.items():
                if args.side not in ("both", side):
                    continue
                rc, dt, tail = run_side(checkout, name, files[side], seeds)
                print(f"{name:<22} {side:<4} rc={rc} {dt:6.1f} s", flush=True)
                if rc != 0:
                    print("   " + tail.strip().replace("\n", "\n   "))
        if not all(f.exists() for f in files.values()):
            print(f"{name:<22} MISSING run file(s)")
            failed += 1
            continue
        diffs = compare(files["base"], files["new"])
        n = len(datasets(files["base"]))
        print(f"{name:<22} {'IDENTICAL' if not diffs else 'DIFFERENT'} ({n} datasets, seeds {seeds})", flush=True)
        for d in diffs[:20]:
            print("   " + d)
        failed += bool(diffs)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

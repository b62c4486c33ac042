"""GPU cross-check of experiment 3 (matrix completion): a large ensemble on whatever device JAX
has (a GPU when ``jax[cuda12]`` is installed), compared with the CPU ensemble of the same
scenario.

    python benchmarks/gpu_crosscheck.py data/runs/matrix_completion.h5 --seeds 1024

1. reads the scenario stored in the CPU run file (its ``scenario_yaml``, so steps, learning rate,
   data and initialisation are exactly the CPU run's), keeps only the discrete ``sgd`` runner,
   sets ``seeds.count`` to ``--seeds`` and runs it here (``--out``, default
   ``data/runs/matrix_completion-crosscheck.h5``);
2. compares, at the last common record, the ensemble statistics of the two files: mean and
   standard deviation over seeds of the top singular values of P Q (s1, s2, the largest other),
   of the balance (mean |log| of the per-mode ratios |P[:, i]| / |Q[i, :]|, the Gram
   difference |P^T P - Q Q^T|_F relative to its start) and of the training loss. Means are
   compared by z = (mean_big - mean_cpu) / sqrt(se_big^2 + se_cpu^2), spreads by
   z = (sd_big - sd_cpu) / sqrt(se(sd_big)^2 + se(sd_cpu)^2) with se(sd) = sd / sqrt(2 (n - 1)).
   The seeds the two ensembles share (seed numbers are PRNG keys, identical on every backend)
   are left out of the big ensemble for these tests and compared one to one instead (same
   seed, same algorithm, different device: only floating-point rounding differs);
3. reports the throughput (seed-steps per second of the ``sgd`` runner, compilation included)
   of both runs and their ratio.

It prints a table and writes ``--json`` (default ``<out>.json``). Exit code 0 when every |z| is
at most ``--zmax`` (default 4: about thirty tests are made), 1 otherwise.

On a CPU it runs as well (with a small ``--seeds``), which is how the test suite smoke-tests it.
``--matmul-precision highest`` (the default) makes float32 matrix products on a GPU use full
float32 rather than TF32, so the two devices integrate the same arithmetic.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np


def _stat(x) -> dict:
    x = np.asarray(x, float).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    sd = float(x.std(ddof=1)) if n > 1 else float("nan")
    return {
        "mean": float(x.mean()) if n else float("nan"),
        "sd": sd,
        "se": sd / math.sqrt(n) if n > 1 else float("nan"),
        "se_sd": sd / math.sqrt(2 * (n - 1)) if n > 1 else float("nan"),
        "n": n,
    }


def statistics(path, runner: str = "sgd", step: int | None = None, exclude_seeds=()) -> tuple[dict, int, np.ndarray]:
    """Per-quantity statistics over seeds at ``step`` (the last record if None)."""
    import h5py

    with h5py.File(path, "r") as f:
        g = f[runner]
        steps = g["step"][...]
        i = len(steps) - 1 if step is None else int(np.flatnonzero(steps == step)[0])
        seeds = g["seed"][...]
        keep = ~np.isin(seeds, np.asarray(list(exclude_seeds), dtype=seeds.dtype))
        sv = g["singular_values"][:, i][keep]
        q = {
            "s1": sv[:, 0],
            "s2": sv[:, 1],
            "largest other singular value": sv[:, 2],
            "training loss": g["loss"][:, i][keep],
        }
        if "balance.mode_ratio" in g:
            m = g["balance.mode_ratio"][:, i][keep]
            with np.errstate(divide="ignore", invalid="ignore"):
                q["mean |log mode ratio|"] = np.nanmean(np.abs(np.log(m)), axis=1)
        if "balance.gram_difference" in g:
            G0 = g["balance.gram_difference"][:, 0][keep]
            G1 = g["balance.gram_difference"][:, i][keep]
            q["|P^T P - Q Q^T| / start"] = np.linalg.norm(G1.reshape(len(G1), -1), axis=1) / np.linalg.norm(
                G0.reshape(len(G0), -1), axis=1)
        out = {k: _stat(v) for k, v in q.items()}
        return out, int(steps[i]), seeds


def per_seed(path, runner: str, step: int, seeds) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        g = f[runner]
        i = int(np.flatnonzero(g["step"][...] == step)[0])
        idx = [int(np.flatnonzero(g["seed"][...] == s)[0]) for s in seeds]
        return {"singular_values": g["singular_values"][idx, i], "last_params": g["last_params"][idx]}


def throughput(path, runner: str = "sgd") -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        g = f[runner]
        wall = float(g.attrs["wall_time_s"])
        n = int(g["seed"].shape[0])
        steps = int(g["step"][-1])
        return {
            "seeds": n,
            "steps": steps,
            "wall_time_s": wall,
            "seed_steps_per_s": n * steps / wall,
            "backend": str(f.attrs.get("backend", "?")),
            "device": str(f.attrs.get("device", "?")),
        }


def run_big(cpu_file, seeds: int, out, quiet: bool = True, extra_overrides=()) -> Path:
    """Run the CPU file's scenario with ``seeds`` seeds and only the ``sgd`` runner here."""
    from sde_bias.presets import load_presets
    from sde_bias.run import Progress, run_scenario
    from sde_bias.scenario import parse_yaml, scenario_from_dict
    from sde_bias.store import RunFile

    with RunFile.open(cpu_file) as f:
        text = f.h5.attrs["scenario_yaml"]
    raw = parse_yaml(text, f"{cpu_file}:scenario_yaml")
    sc = scenario_from_dict(raw, f"{cpu_file}:scenario_yaml", None, ["runners=[sgd]", *extra_overrides], seeds, load_presets())
    res = run_scenario(sc, out, progress=Progress(quiet=quiet))
    return Path(res.path)


def compare(cpu_file, big_file, runner: str = "sgd") -> dict:
    cpu_stats, cpu_step, cpu_seeds = statistics(cpu_file, runner)
    big_all, big_step, big_seeds = statistics(big_file, runner)
    if big_step != cpu_step:
        raise SystemExit(f"the runs end at different steps ({cpu_step} vs {big_step}): not the same scenario")
    shared = sorted(set(cpu_seeds.tolist()) & set(big_seeds.tolist()))
    big_stats, _, _ = statistics(big_file, runner, exclude_seeds=shared)
    rows = []
    for k, c in cpu_stats.items():
        b = big_stats.get(k)
        if b is None:
            continue
        se = math.hypot(c["se"], b["se"])
        z_mean = (b["mean"] - c["mean"]) / se if se > 0 else 0.0
        se_sd = math.hypot(c["se_sd"], b["se_sd"])
        z_sd = (b["sd"] - c["sd"]) / se_sd if se_sd > 0 else 0.0
        rows.append({"quantity": k, "cpu": c, "big": b, "z_mean": z_mean, "z_sd": z_sd})
    shared_diff = None
    if shared:
        a = per_seed(cpu_file, runner, cpu_step, shared)
        b = per_seed(big_file, runner, cpu_step, shared)
        sv_rel = np.abs(a["singular_values"] - b["singular_values"]) / np.maximum(np.abs(a["singular_values"]), 1e-30)
        p_rel = np.linalg.norm(a["last_params"] - b["last_params"], axis=1) / np.linalg.norm(a["last_params"], axis=1)
        shared_diff = {
            "seeds": shared,
            "max_rel_diff_top2_singular_values": float(np.max(sv_rel[:, :2])),
            "max_rel_diff_params": float(np.max(p_rel)),
        }
    return {
        "step": cpu_step,
        "rows": rows,
        "shared_seeds": shared_diff,
        "cpu": throughput(cpu_file, runner),
        "big": throughput(big_file, runner),
    }


def format_result(res: dict) -> str:
    c, b = res["cpu"], res["big"]
    lines = [
        f"step {res['step']:,}: CPU file {c['seeds']} seeds on {c['backend']} ({c['device']}), "
        f"big ensemble {b['seeds']} seeds on {b['backend']} ({b['device']})",
        f"{'quantity':<30} {'CPU mean ± se (sd)':>30} {'big mean ± se (sd)':>30} {'z(mean)':>8} {'z(sd)':>7}",
    ]
    for r in res["rows"]:
        cc, bb = r["cpu"], r["big"]
        lines.append(
            f"{r['quantity']:<30} {cc['mean']:>12.5g} ± {cc['se']:<8.2g}({cc['sd']:.3g}) "
            f"{bb['mean']:>12.5g} ± {bb['se']:<8.2g}({bb['sd']:.3g}) {r['z_mean']:>+8.2f} {r['z_sd']:>+7.2f}"
        )
    if res["shared_seeds"]:
        s = res["shared_seeds"]
        lines.append(
            f"shared seeds {s['seeds'][0]}..{s['seeds'][-1]} ({len(s['seeds'])}): max relative difference "
            f"top-2 singular values {s['max_rel_diff_top2_singular_values']:.2e}, parameters {s['max_rel_diff_params']:.2e}"
        )
    ratio = b["seed_steps_per_s"] / c["seed_steps_per_s"]
    lines.append(
        f"throughput (sgd runner, compilation included): CPU {c['seed_steps_per_s']:,.0f} seed-steps/s "
        f"({c['wall_time_s']:.1f} s), big {b['seed_steps_per_s']:,.0f} seed-steps/s ({b['wall_time_s']:.1f} s): "
        f"ratio {ratio:.1f}x"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cpu_file", help="the CPU run file (e.g. data/runs/matrix_completion.h5)")
    ap.add_argument("--seeds", type=int, default=1024, help="ensemble size of the big run (default 1024)")
    ap.add_argument("--out", default=None, help="the big run's file (default data/runs/<name>-crosscheck.h5)")
    ap.add_argument("--json", default=None, help="write the comparison here (default <out>.json)")
    ap.add_argument("--reuse", action="store_true", help="compare an existing --out file instead of running")
    ap.add_argument("--zmax", type=float, default=4.0)
    ap.add_argument("--matmul-precision", default="highest", choices=["default", "high", "highest"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override for the big run only (e.g. training.chunk_records=50)")
    args = ap.parse_args(argv)

    import h5py
    import jax

    with h5py.File(args.cpu_file, "r") as f:
        name = str(f.attrs.get("scenario_name", "run"))
    out = Path(args.out) if args.out else Path("data/runs") / f"{name}-crosscheck.h5"
    t0 = time.perf_counter()
    if not args.reuse:
        print(f"running {args.seeds} seeds of {args.cpu_file}'s scenario on {jax.default_backend()} "
              f"({jax.devices()[0]}) -> {out}", flush=True)
        with jax.default_matmul_precision(args.matmul_precision):
            run_big(args.cpu_file, args.seeds, out, extra_overrides=args.set)
    res = compare(args.cpu_file, out)
    res["total_wall_s"] = time.perf_counter() - t0
    res["matmul_precision"] = args.matmul_precision
    text = format_result(res)
    print(text)
    jpath = Path(args.json) if args.json else out.with_suffix(".json")
    jpath.write_text(json.dumps(res, indent=1, default=float))
    bad = [r["quantity"] for r in res["rows"] if abs(r["z_mean"]) > args.zmax or abs(r["z_sd"]) > args.zmax]
    if bad:
        print(f"DISAGREE (|z| > {args.zmax}): {', '.join(bad)}")
        return 1
    print(f"agree: every |z| <= {args.zmax}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

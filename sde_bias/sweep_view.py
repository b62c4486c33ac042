"""Looking at a sweep file: ``sde-bias inspect`` and ``sde-bias plot`` of a sweep.

``inspect`` prints the grid and, per point and runner, the final value of every scalar
observable (mean +- standard deviation over the seeds that did not diverge). ``plot``
draws each scalar observable's final value against the swept key: with one swept
dimension, lines (one per runner) with error bars = the standard error of the mean over
seeds; with two, one heatmap per runner (first dimension down, second across); with more,
the first two, at index 0 of the others.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .sweep_store import is_sweep_file as is_sweep_file  # re-exported for the CLI


def _dims(h5) -> list[dict]:
    return json.loads(h5.attrs["sweep"])["dims"]


def _scalar_observables(g) -> list[str]:
    import h5py

    ndim = len(g["diverged_at"].shape) + 1  # dims..., seed, step
    return [
        k for k, ds in g.items()
        if isinstance(ds, h5py.Dataset) and "observable" in ds.attrs and ds.ndim == ndim
    ]


def _final_stats(ds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation and standard error over seeds of the last record."""
    last = np.asarray(ds[..., -1], float)  # [dims..., seed]
    n = np.sum(np.isfinite(last), axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(last, axis=-1)
        s = np.nanstd(last, axis=-1, ddof=1) if last.shape[-1] > 1 else np.zeros_like(m)
    return m, s, s / np.sqrt(np.maximum(n, 1))


def inspect_sweep(path) -> int:
    from .formatting import fmt_number as _fmt, source_lines
    from .sweep_store import SweepFile

    path = Path(path)
    with SweepFile.open(path) as f:
        h5 = f.h5
        dims = _dims(h5)
        a = h5.attrs
        done = np.asarray(h5["point_done"][...])
        print(f"{path}")
        print("\n".join(source_lines(a, "  sweep      of ")))
        for d in dims:
            vals = ", ".join(str(x) for x in d["values"][d["name"]])
            also = f" (with {', '.join(d['keys'][1:])})" if len(d["keys"]) > 1 else ""
            print(f"  dimension  {d['name']}{also}: {vals}")
        groups = json.loads(a.get("groups", "[]"))
        print(f"  points     {done.size} in {len(groups)} compiled groups, {int(done.sum())} written; "
              f"{int(a.get('num_seeds', 0))} seeds each; complete: {'yes' if int(a.get('complete', 0)) else 'NO (resume with --resume)'}")
        runners = f.runner_groups()
        if not runners:
            return 0
        print("\n  final values (seed mean +- std):")
        shape = done.shape
        for r in runners:
            g = h5[r]
            names = _scalar_observables(g)
            stats = {n: _final_stats(g[n]) for n in names}
            div = np.asarray(g["diverged_at"][...])
            print(f"  {r}:")
            print("    " + f"{'point':<40}" + "".join(f"{n:>26}" for n in names) + "  diverged")
            for idx in np.ndindex(*shape):
                label = ", ".join(f"{d['name']}={d['values'][d['name']][i]}" for d, i in zip(dims, idx))
                row = f"    {label:<40.40}"
                for n in names:
                    m, s, _ = stats[n]
                    row += f"{_fmt(float(m[idx])) + ' +- ' + _fmt(float(s[idx])):>26}"
                nd = int(np.sum(div[idx] >= 0))
                row += f"  {nd}" if done[idx] else "  (not run)"
                print(row)
    return 0


def plot_sweep(path, out_dir=None, quiet: bool = False) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .sweep_store import SweepFile

    path = Path(path)
    out_dir = Path(out_dir) if out_dir else path.with_name(path.stem + "_plots")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with SweepFile.open(path) as f:
        dims = _dims(f.h5)
        runners = f.runner_groups()
        if not runners:
            return 0
        names = _scalar_observables(f.h5[runners[0]])
        for n in names:
            if len(dims) == 1:
                d = dims[0]
                x = np.asarray(d["values"][d["name"]], float)
                fig, ax = plt.subplots(figsize=(5, 3.5))
                for r in runners:
                    m, _, se = _final_stats(f.h5[r][n])
                    ax.errorbar(x, m, yerr=se, marker="o", capsize=3, label=r)
                ax.set_xlabel(d["name"])
                if np.all(x > 0) and x.max() / x.min() > 20:
                    ax.set_xscale("log")
                ax.set_ylabel(f"{f.h5[runners[0]][n].attrs['observable']} at the end")
                ax.legend(fontsize=8)
            else:
                d0, d1 = dims[0], dims[1]
                fig, axes = plt.subplots(1, len(runners), figsize=(4 * len(runners), 3.5), squeeze=False)
                for ax, r in zip(axes[0], runners):
                    m, _, _ = _final_stats(f.h5[r][n])
                    m = m.reshape(m.shape[:2] + (-1,))[..., 0]
                    im = ax.imshow(m, origin="lower", aspect="auto")
                    ax.set_xticks(range(len(d1["values"][d1["name"]])), [f"{v:g}" if isinstance(v, float) else str(v) for v in d1["values"][d1["name"]]], fontsize=7)
                    ax.set_yticks(range(len(d0["values"][d0["name"]])), [f"{v:g}" if isinstance(v, float) else str(v) for v in d0["values"][d0["name"]]], fontsize=7)
                    ax.set_xlabel(d1["name"])
                    ax.set_ylabel(d0["name"])
                    ax.set_title(r, fontsize=9)
                    fig.colorbar(im, ax=ax)
                fig.suptitle(f"{f.h5[runners[0]][n].attrs['observable']} at the end (seed mean)", fontsize=9)
            fig.tight_layout()
            p = out_dir / f"sweep_{n}.png"
            fig.savefig(p, dpi=110)
            plt.close(fig)
            written.append(p)
        from .sweep_balance import LR, DELTA, balance_rate_figure

        names_swept = [d["name"] for d in dims]
        if LR in names_swept and DELTA in names_swept and any("balance.imbalance" in f.h5[r] for r in runners):
            written.append(balance_rate_figure(f.h5, dims, runners, out_dir))
    if not quiet:
        for p in written:
            print(p)
    return 0

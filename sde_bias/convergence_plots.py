"""Log-log figures of a converge study (``/convergence`` of an HDF5 file): weak errors and
strong errors against ``dt`` per solver, and the SGD-SDE gap against ``lr``, each with
reference slopes drawn through the finest point."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import figure, default_plot_dir


def _slopes(ax, x, y, orders, style=(":", "--", "-.")):
    """Reference lines ``y ~ x^order`` through the smallest-``x`` point."""
    ok = np.isfinite(y) & (y > 0)
    if not ok.any():
        return
    i = np.argmin(np.where(ok, x, np.inf))
    xs = np.array([x.min(), x.max()])
    for o, ls in zip(orders, style):
        ax.plot(xs, y[i] * (xs / x[i]) ** o, ls, color="0.5", lw=1, label=f"slope {o:g}")


def _loglog(ax):
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _err(ax, x, y, se, label, marker):
    y, se = np.abs(np.asarray(y)), np.asarray(se)
    ax.errorbar(x, y, yerr=2 * se, fmt=marker + "-", ms=4, capsize=2, label=label)


def plot_convergence(path, outdir=None) -> list[Path]:
    """``convergence_weak.png``, ``convergence_strong.png`` (if strong errors were measured)
    and ``convergence_sgd_gap.png`` (if the study has one); returns the paths written."""
    import h5py

    outdir = Path(outdir) if outdir is not None else default_plot_dir(path)
    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with h5py.File(path, "r") as f:
        if "convergence" not in f:
            return written
        root = f["convergence"]
        solvers = [k for k in root if isinstance(root[k], h5py.Group) and "dt" in root[k]]
        keys = []
        for s in solvers:
            for k in root[s].get("weak", {}):
                if k not in keys:
                    keys.append(k)
        if keys:
            n = len(keys)
            ncols = min(n, 3)
            nrows = -(-n // ncols)
            fig, axes = figure(3.6 * ncols + 0.6, 3.2 * nrows, ncols=ncols, nrows=nrows)
            for j, key in enumerate(keys):
                ax = axes.flat[j]
                for s, marker in zip(solvers, "osd^v<>"):
                    if key not in root[s].get("weak", {}):
                        continue
                    w = root[s]["weak"][key]
                    dt = root[s]["dt"][...]
                    order = w["order"][-1]
                    ci = w["order_ci"][-1]
                    _err(ax, dt, w["error"][-1], w["error_se"][-1], f"{s}: {order:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]", marker)
                    ref = w.attrs["reference_kind"]
                _slopes(ax, dt, np.abs(root[solvers[0]]["weak"][key]["error"][-1]) if key in root[solvers[0]].get("weak", {}) else np.abs(w["error"][-1]), (1, 2))
                _loglog(ax)
                ax.set_xlabel("dt")
                ax.set_ylabel(f"|weak error| vs {ref.split(' (')[0]}")
                ax.set_title(key, fontsize=9)
                ax.legend(fontsize=6)
            for ax in list(axes.flat)[n:]:
                ax.set_visible(False)
            fig.suptitle(f"weak errors at t = {root['time'][-1]:g} (±2 SE; order fits with 95% CI)", fontsize=9)
            p = outdir / "convergence_weak.png"
            fig.savefig(p, dpi=110)
            written.append(p)
        strong = [s for s in solvers if "strong" in root[s]]
        if strong:
            fig, axes = figure()
            ax = axes[0, 0]
            for s, marker in zip(strong, "osd^v<>"):
                g = root[s]["strong"]
                _err(ax, g["dt"][...], g["error"][-1], g["error_se"][-1],
                     f"{s}: {g['order'][-1]:.2f} [{g['order_ci'][-1][0]:.2f}, {g['order_ci'][-1][1]:.2f}]", marker)
            g = root[strong[0]]["strong"]
            _slopes(ax, g["dt"][...], np.abs(g["error"][-1]), (0.5, 1))
            _loglog(ax)
            ax.set_xlabel("dt")
            ax.set_ylabel("E |theta_dt - theta_finest|")
            ax.legend(fontsize=7)
            ax.set_title("strong errors against the finest path (orders from successive levels)", fontsize=8)
            p = outdir / "convergence_strong.png"
            fig.savefig(p, dpi=110)
            written.append(p)
        if "sgd_gap" in root:
            g = root["sgd_gap"]
            lr = g["lr"][...]
            keys = [k for k in g if isinstance(g[k], h5py.Group)]
            fig, axes = figure()
            ax = axes[0, 0]
            for k, marker in zip(keys, "osd^v<>x+"):
                w = g[k]
                _err(ax, lr, w["gap"][...], w["gap_se"][...], f"{k}: {w.attrs['order']:.2f} [{w.attrs['order_ci'][0]:.2f}, {w.attrs['order_ci'][1]:.2f}]", marker)
            if keys:
                _slopes(ax, lr, np.abs(g[keys[0]]["gap"][...]), (1, 2))
            _loglog(ax)
            ax.set_xlabel("lr")
            ax.set_ylabel(f"|E SGD - E SDE(dt -> 0)| ({g.attrs['solver']})")
            ax.legend(fontsize=6)
            ax.set_title("discrete SGD against the extrapolated SDE", fontsize=9)
            p = outdir / "convergence_sgd_gap.png"
            fig.savefig(p, dpi=110)
            written.append(p)
    return written


__all__ = ["plot_convergence"]

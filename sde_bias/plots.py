"""Standard figures of a run file: one PNG per recorded observable (seed mean with a
10-90 % band, every runner on the same axes), and for two-parameter models (the
hyperbola) the phase plane: orbits ``u v = const``, the balanced section ``u = +-v`` and
the trajectories of each runner.

Figures are drawn with matplotlib's object API (no pyplot state, no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .figures import figure as figure, palette as palette
from .reader import RunData, read_run
from .store import dataset_name

BAND = (10, 90)
MAX_COMPONENTS = 12


def default_plot_dir(path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + "_plots")


def _band(ax, t, values, color, label=None, lw=1.6):
    """Seed mean (line) and 10-90 % quantiles (band) of values [seed, time]."""
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
            lo, hi = np.nanpercentile(values, BAND, axis=0)
    ax.plot(t, mean, color=color, lw=lw, label=label)
    if values.shape[0] > 1:
        ax.fill_between(t, lo, hi, color=color, alpha=0.2, lw=0)


def _maybe_log(ax, arrays):
    vals = np.concatenate([np.ravel(a) for a in arrays])
    vals = vals[np.isfinite(vals)]
    if vals.size and np.all(vals > 0) and vals.max() / max(vals.min(), 1e-300) > 1e3:
        ax.set_yscale("log")


def _title(run: RunData) -> str:
    return run.label


def plot_observable(run: RunData, name: str, path: Path) -> Path | None:
    runners = run.runners
    groups = [g for g in runners if name in runners[g].records]
    if not groups:
        return None
    colors = dict(zip(runners, palette(len(runners))))
    first = runners[groups[0]].records[name]
    comp = int(np.prod(first.shape[2:])) if first.ndim > 2 else 1
    n_seeds = first.shape[0]
    if comp == 1 or comp > MAX_COMPONENTS:
        fig, axes = figure()
        ax = axes[0, 0]
        arrays = []
        for g in groups:
            r = runners[g]
            v = r.records[name]
            v = v.reshape(v.shape[0], v.shape[1], -1)
            v = v[..., 0] if comp == 1 else np.linalg.norm(v, axis=-1)
            arrays.append(v)
            nd = r.num_diverged
            label = g + (f" ({nd} diverged)" if nd else "")
            _band(ax, r.time, v, colors[g], label)
        _maybe_log(ax, arrays)
        ax.set_ylabel(name if comp == 1 else f"|{name}|")
        ax.legend(fontsize=8)
        ax.set_xlabel("t = step x lr")
        ax.set_title(f"{_title(run)}: {name if comp == 1 else '|' + name + '|'}  "
                     f"(mean, {BAND[0]}-{BAND[1]}% band, {n_seeds} seeds)", fontsize=9)
    else:
        fig, axes = figure(w=3.6 * len(groups), h=3.6, ncols=len(groups), sharey=True)
        ccols = palette(comp)
        for ax, g in zip(axes[0], groups):
            r = runners[g]
            v = r.records[name]
            v = v.reshape(v.shape[0], v.shape[1], -1)
            for c in range(comp):
                _band(ax, r.time, v[..., c], ccols[c], label=str(c) if comp <= 6 else None, lw=1.2)
            ax.set_title(g, fontsize=9)
            ax.set_xlabel("t = step x lr")
        axes[0, 0].set_ylabel(name)
        if comp <= 6:
            axes[0, -1].legend(fontsize=7, title="component", title_fontsize=7)
        fig.suptitle(f"{_title(run)}: {name} per component (mean, {BAND[0]}-{BAND[1]}% band, {n_seeds} seeds)",
                     fontsize=9)
    fig.savefig(path, dpi=110)
    return path


def plot_phase_plane(run: RunData, path: Path, max_trajectories: int = 6) -> Path | None:
    """Trajectories in the (u, v) plane over the orbits ``u v = c`` and the balanced
    section ``u = +-v`` (two-parameter models with ``params`` recorded)."""
    runners = {g: r for g, r in run.runners.items() if "params" in r.records}
    if not runners:
        return None
    first = next(iter(runners.values())).records["params"]
    if first.ndim != 3 or first.shape[2] != 2:
        return None
    allp = np.concatenate([r.records["params"].reshape(-1, 2) for r in runners.values()])
    allp = allp[np.all(np.isfinite(allp), axis=1)]
    if allp.size == 0:
        return None
    lo = np.percentile(allp, 0.5, axis=0)
    hi = np.percentile(allp, 99.5, axis=0)
    span = max(hi - lo) * 0.15 + 1e-3
    lim = (min(lo) - span, max(hi) + span)
    lim = (min(lim[0], 0.0), max(lim[1], 0.0))
    fig, axes = figure(w=3.8 * len(runners), h=4.0, ncols=len(runners), sharex=True, sharey=True)
    colors = dict(zip(run.runners, palette(len(run.runners))))
    grid = np.linspace(lim[0], lim[1], 300)
    U, V = np.meshgrid(grid, grid)
    w = allp[:, 0] * allp[:, 1]
    wmax = np.percentile(np.abs(w), 99) if w.size else 1.0
    levels = np.linspace(-1.5 * wmax, 1.5 * wmax, 13)
    levels = levels[np.abs(levels) > 1e-12]
    for ax, (g, r) in zip(axes[0], runners.items()):
        ax.contour(U, V, U * V, levels=levels, colors="0.75", linewidths=0.7)
        last_w = r.last_params[:, 0] * r.last_params[:, 1]
        last_w = last_w[np.isfinite(last_w)]
        if last_w.size and abs(np.median(last_w)) > 1e-12:
            ax.contour(U, V, U * V, levels=[float(np.median(last_w))], colors="0.35", linewidths=1.3)
        ax.plot(grid, grid, "k--", lw=1, label="balanced u = v")
        ax.plot(grid, -grid, "k:", lw=0.8)
        p = r.records["params"]
        for s in range(min(max_trajectories, p.shape[0])):
            ax.plot(p[s, :, 0], p[s, :, 1], color=colors[g], lw=0.8, alpha=0.8)
        ax.scatter(p[:, 0, 0], p[:, 0, 1], s=6, c="k", zorder=3, label="start")
        last = r.last_params
        ok = np.all(np.isfinite(last), axis=1)
        ax.scatter(last[ok, 0], last[ok, 1], s=6, color=colors[g], zorder=3, label="end")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_aspect("equal")
        ax.set_title(g, fontsize=9)
        ax.set_xlabel("u")
    axes[0, 0].set_ylabel("v")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{_title(run)}: orbits u v = const (grey; dark: median final orbit), balanced section u = v, "
                 f"{min(max_trajectories, first.shape[0])} trajectories per runner", fontsize=9)
    fig.savefig(path, dpi=110)
    return path


def plot_run(path, outdir=None) -> list[Path]:
    """Write the standard figures of a run file; returns their paths."""
    run = read_run(path, check=False)
    outdir = Path(outdir) if outdir is not None else default_plot_dir(path)
    from .outputs import check_folder

    check_folder(outdir, "figures folder")
    names: list[str] = []
    for r in run.runners.values():
        for n in r.records:
            if n not in names:
                names.append(n)
    written = []
    for n in names:
        p = plot_observable(run, n, outdir / f"{dataset_name(n)}.png")
        if p is not None:
            written.append(p)
    if run.attrs.get("num_params") == 2 or run.attrs.get("model_type") == "scalar_product":
        p = plot_phase_plane(run, outdir / "phase_plane.png")
        if p is not None:
            written.append(p)
    written += plot_theory(run, outdir)
    return written


def plot_theory(run: RunData, outdir) -> list[Path]:
    """Figures of the theory stage, if the file has one: the drift comparison (SGD and
    SDE estimates with +-2 SE error bars, the Itô projection and its gradient-flow part)
    and the stationary law (histogram of the samples, the Fokker-Planck density of the
    projected SDE, the paper's exp(-L/T) det G^-1/2)."""
    outdir = Path(outdir)
    written = []
    f = run.theory
    if f is not None:
        if "drift_check" in f:
            g = f["drift_check"]
            q, th, gp = g["q"][...], g["theory"][...], g["gradient_part"][...]
            d = q.shape[1]
            ncols = min(d, 4)
            nrows = -(-d // ncols)
            fig, axes = figure(3.2 * ncols + 0.8, 3.0 * nrows, ncols=ncols, nrows=nrows)
            x = np.arange(q.shape[0])
            for c in range(d):
                ax = axes.flat[c]
                ax.errorbar(x - 0.12, g["sgd_mean"][:, c], 2 * g["sgd_se"][:, c], fmt="o", ms=3, label="SGD (±2 SE)")
                ax.errorbar(x + 0.12, g["sde_mean"][:, c], 2 * g["sde_se"][:, c], fmt="s", ms=3, label="SDE (±2 SE)")
                ax.plot(x, th[:, c], "k_", ms=14, mew=2, label="Itô projection")
                ax.plot(x, gp[:, c], "_", color="gray", ms=10, label="gradient part only")
                ax.set_xlabel("point")
                ax.set_ylabel(f"drift of q[{c}]")
                if d == 1:
                    ax.set_xticks(x, [f"{v:.3g}" for v in q[:, 0]], rotation=45)
                    ax.set_xlabel("q")
            for ax in list(axes.flat)[d:]:
                ax.set_visible(False)
            axes.flat[0].legend(fontsize=7)
            fig.suptitle("effective drift: SGD, SDE, quotient projection", fontsize=9)
            p = outdir / "theory_drift.png"
            fig.savefig(p, dpi=110)
            written.append(p)
        if "stationary_check" in f:
            g = f["stationary_check"]
            grid, fp, pa, smp = g["grid"][...], g["fokker_planck_density"][...], g["paper_density"][...], g["samples"][...]
            fig, axes = figure()
            ax = axes[0, 0]
            ax.hist(smp, bins=40, density=True, alpha=0.4, label=f"{g.attrs['runner']} final states")
            ax.plot(grid, fp, "k-", label=f"Fokker-Planck (p = {g.attrs['chi2_pvalue_fokker_planck']:.2g})")
            ax.plot(grid, pa, "r--", label=f"paper exp(-L/T) det G^-1/2 (p = {g.attrs['chi2_pvalue_paper']:.2g})")
            lo, hi = np.percentile(smp, [0.1, 99.9])
            pad = 0.3 * (hi - lo)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_xlabel(f"q[{g.attrs['component']}]")
            ax.set_ylabel("density")
            ax.legend(fontsize=8)
            p = outdir / "theory_stationary.png"
            fig.savefig(p, dpi=110)
            written.append(p)
    from .check_plots import plot_balance_check

    p = plot_balance_check(run, outdir / "theory_balance.png")
    return written + ([p] if p is not None else [])


__all__ = ["plot_run", "plot_observable", "plot_phase_plane", "plot_theory", "default_plot_dir"]

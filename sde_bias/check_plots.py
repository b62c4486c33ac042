"""Figure of the balance check (``/theory/balance_check`` of a run file, read with
:func:`sde_bias.reader.read_run`): what separates a
discretisation effect from a disagreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .figures import figure, palette
from .reader import RunData


def plot_balance_check(run: RunData, out: Path) -> Path | None:
    """Two panels. Left: the seed mean of ``C_A(t)`` of every runner (markers) with its
    prediction (line: the runner's exact discrete identity, or the continuous law for
    Heun-type solvers) and the continuous balance law alone (dotted). Right: recorded minus
    predicted, relative to the recorded value, with a ±2 SE band; the dotted lines are the
    same against the continuous law, i.e. the O(dt) effect of the discrete step; the
    square at the last time is the dt-halving estimate of the solver's own error."""
    g = run.theory.get("balance_check") if run.theory is not None else None
    if g is None or not g.groups:
        return None
    names = list(g.groups)
    rows = {}
    c = run.comparisons
    if c is not None and "runner" in c:
        dec = lambda a: [x.decode() if isinstance(x, bytes) else str(x) for x in a]  # noqa: E731
        for i, (grp, rn, q) in enumerate(zip(dec(c["group"]), dec(c["runner"]), dec(c["quantity"]))):
            if grp == "balance law" and q == "C_A0(T)":
                rows[rn.replace("/", ".")] = (dec(c["verdict"])[i], float(c["disc_error"][i]), float(c["disc_se"][i]))
    fig, axes = figure(ncols=2, w=10.0, h=4.2)
    ax, bx = axes[0, 0], axes[0, 1]
    for name, col in zip(names, palette(len(names))):
        d = g.groups[name]
        first = lambda k: d[k] if d[k].ndim == 1 else d[k][:, 0]  # noqa: E731  (C_A0)
        t, rec = d["time"], first("recorded")
        verdict = rows.get(name, ("", np.nan, np.nan))
        label = name.replace("sde.", "") + (f": {verdict[0]}" if verdict[0] else "")
        ax.plot(t, rec, "o", ms=3, color=col, label=label)
        ax.plot(t, first("predicted"), "-", lw=1.2, color=col)
        ax.plot(t, first("continuous_law"), ":", lw=1.0, color=col)
        if "residual_mean" in d:
            scale = np.abs(rec)
            r, se = first("residual_mean") / scale, first("residual_se") / scale
            bx.plot(t, r, "-", color=col, lw=1.2, label=label)
            bx.fill_between(t, r - 2 * se, r + 2 * se, color=col, alpha=0.2, lw=0)
            bx.plot(t, first("continuous_residual_mean") / scale, ":", color=col, lw=1.0)
            if np.isfinite(verdict[1]) and verdict[1] != 0:
                bx.errorbar([t[-1]], [verdict[1] / scale[-1]], yerr=[2 * verdict[2] / scale[-1]], fmt="s", ms=4,
                            color=col, capsize=2)
    ax.set_yscale("log")
    ax.set_xlabel("t = step x lr")
    ax.set_ylabel("seed mean of C_A(t)")
    ax.set_title("recorded (o); predicted (-); continuous law alone (:)", fontsize=8)
    ax.legend(fontsize=7)
    bx.axhline(0, color="k", lw=0.6)
    bx.set_yscale("symlog", linthresh=1e-3)
    bx.set_xlabel("t = step x lr")
    bx.set_ylabel("(recorded - predicted) / recorded")
    bx.set_title("against the prediction (-, ±2 SE) and the continuous law (:);\n"
                 "square: estimated discretisation error of the solver (±2 SE)", fontsize=8)
    fig.suptitle("balance law C_A = theta^T A theta: each runner against its exact discrete identity "
                 "(SGD, GD, Euler-Maruyama) or the continuous law (Heun)", fontsize=9)
    fig.savefig(out, dpi=110)
    return out


__all__ = ["plot_balance_check"]

"""Experiment 1: shallow ReLU network, per-unit balance |V[:, j]| / |W[j, :]|."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..reader import RunData, RunnerRecords
from ._shared import (
    CLAIMS, COMPARISON_HEADER, PAPER_STEPS, ROLE_NAMES, ROLES, Section, Stat, agreement, agreement_sentence,
    band, base_first, cmap, comparison_rows, figure, finite_mean, fmt, legend, md_table, num, paper_run,
    record_indices, runs_header, save,
)


# ----------------------------------------------------------------------------- 1
def _unit_ratio_stats(g: RunnerRecords, i: int):
    r = np.asarray(g.records["balance/unit_ratio"], float)[:, i, :]  # [S, units]
    return r


def _relu_summary_rows(run: RunData, i_by_role: dict[str, int], d_in: int):
    """Summary quantities of the per-unit ratios at record i: geometric mean over units,
    mean |log ratio| (distance from 1), mean |log ratio + log sqrt(d)| (distance from
    1/sqrt(d))."""
    q = []
    eq = -0.5 * math.log(d_in)
    stats: dict[str, dict[str, Stat]] = {}
    for role in ROLES:
        g = run.runner(role)
        if g is None or "balance/unit_ratio" not in g.records:
            continue
        r = _unit_ratio_stats(g, i_by_role[role])
        lr_ = np.log(r)
        stats.setdefault("geometric-mean ratio over units", {})[role] = Stat.of(np.exp(finite_mean(lr_, 1)))
        stats.setdefault("median ratio over units", {})[role] = Stat.of(np.nanmedian(r, 1))
        stats.setdefault("mean abs log ratio (distance from 1)", {})[role] = Stat.of(finite_mean(np.abs(lr_), 1))
        stats.setdefault(f"mean abs(log ratio + log √{d_in}) (distance from 1/√{d_in})", {})[role] = Stat.of(
            finite_mean(np.abs(lr_ - eq), 1))
        if "test_loss" in g.records:
            stats.setdefault("test loss", {})[role] = Stat.of(g.records["test_loss"][:, i_by_role[role]])
        if "loss" in g.records:
            stats.setdefault("training loss (reference set)", {})[role] = Stat.of(g.records["loss"][:, i_by_role[role]])
    for k, v in stats.items():
        q.append((k, v))
    return q


def _relu_figure(run: RunData, path: Path, d_in: int, paper_steps: int | None) -> Path:
    roles = [r for r in ROLES if run.runner(r) is not None and "balance/unit_ratio" in run.runner(r).records]
    fig, axes = figure(ncols=len(roles), w=3.6, h=3.4, sharey=True)
    for ax, role in zip(axes[0], roles):
        g = run.runner(role)
        r = np.asarray(g.records["balance/unit_ratio"], float)
        n_units = r.shape[2]
        cols = cmap(n_units, "coolwarm")
        for j in range(n_units):
            band(ax, g.step, r[:, :, j], cols[j], lw=1.0, alpha=0.12)
        ax.axhline(1.0, color="k", ls="--", lw=1.0, label="paper: 1")
        ax.axhline(1 / math.sqrt(d_in), color="0.3", ls=":", lw=1.2, label=f"noise equilibrium 1/√{d_in}")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(f"{ROLE_NAMES[role]} ({g.name})", fontsize=8)
    axes[0, 0].set_ylabel("|V[:, j]| / |W[j, :]| per unit")
    legend(axes[0, 0], fontsize=6, loc="upper right")
    n = run.num_seeds
    fig.suptitle(f"{run.label}: per-unit ratios (16 units, colour = initial log-scale), mean and 10-90 % band over "
                 f"{n} seeds; lr {run.lr:g}", fontsize=8)
    return save(fig, path)


def section_relu(sec: Section, figdir: Path) -> None:
    runs = base_first(sec.runs)
    run = paper_run(runs)
    d_in = int(run.sc("model", "in_dim", default=3))
    paper = PAPER_STEPS["relu"]
    md = [f"- Paper: {CLAIMS['relu']}", "", runs_header(runs), ""]
    # the paper's run: every unit's ratio
    i_by_role, note = record_indices(run, paper)
    g0 = run.sgd() or next(iter(run.runners.values()))
    step_used = int(g0.step[g0.index_at(paper)])
    q = []
    unit_stats: dict[str, list[Stat]] = {}
    for role in ROLES:
        g = run.runner(role)
        if g is None or "balance/unit_ratio" not in g.records:
            continue
        r = _unit_ratio_stats(g, i_by_role[role])
        unit_stats[role] = [Stat.of(r[:, j]) for j in range(r.shape[1])]
    unit_nums = {role: [x.as_dict() for x in v] for role, v in unit_stats.items()}
    n_units = len(next(iter(unit_stats.values()))) if unit_stats else 0
    r0 = _unit_ratio_stats(g0, 0) if "balance/unit_ratio" in g0.records else None
    for j in range(n_units):
        st = {role: unit_stats[role][j] for role in unit_stats}
        label = f"unit {j}" + (f" (start {num(float(np.nanmean(r0[:, j])))})" if r0 is not None else "")
        q.append((label, st))
    summary = _relu_summary_rows(run, i_by_role, d_in)
    md.append(f"**Every per-unit ratio |V[:, j]| / |W[j, :]| at step {step_used:,}**{note} (mean ± standard error over "
              f"seeds, standard deviation in brackets; differences with their standard error and z):")
    md.append("")
    md.append(md_table(COMPARISON_HEADER, comparison_rows(q + summary)))
    sec.numbers["paper_step"] = step_used
    sec.numbers["unit_ratio"] = unit_nums
    sec.numbers["summary"] = {k: {r: s.as_dict() for r, s in v.items()} for k, v in summary}
    sec.figures.append(_relu_figure(run, figdir / f"{run.name}.png", d_in, paper))
    ok, n, worst, _ = agreement(q + summary)
    # the noise's share: how much of the approach to balance does GD also make?
    dist = dict(summary).get("mean abs log ratio (distance from 1)", {})
    start = float(np.mean(np.abs(np.log(r0)))) if r0 is not None else float("nan")
    lines = []
    if dist:
        for role in ROLES:
            if role in dist:
                lines.append(f"{ROLE_NAMES[role]} {num(dist[role].mean)} ± {num(dist[role].se, 2)}")
    md += ["", f"Distance from balance, mean |log ratio| over units: {num(start)} at the start → " + ", ".join(lines)
           + f" at step {step_used:,}. " + agreement_sentence(q + summary)]
    # the long-run question: 1 or 1/sqrt(d)?
    eq = 1 / math.sqrt(d_in)
    other = [r for r in runs if r is not run]
    long_rows = []
    verdicts = []
    for r in other:
        i_r = {}
        for role in ROLES:
            g = r.runner(role)
            if g is not None:
                i_r[role] = len(g.step) - 1
        summ = dict(_relu_summary_rows(r, i_r, d_in))
        gm = summ.get("geometric-mean ratio over units", {})
        d1 = summ.get("mean abs log ratio (distance from 1)", {})
        de = {k: v for k, v in summ.items() if k.startswith("mean abs(log ratio + log")}
        de = next(iter(de.values()), {})
        gsteps = next(iter(r.runners.values())).step[-1]
        for role in ROLES:
            if role not in gm:
                continue
            long_rows.append([f"{r.variant or 'base'} (lr {r.lr:g}, label noise {r.sc('data', 'noise_std')}, {gsteps:,} steps)",
                              ROLE_NAMES[role], fmt(gm[role]), fmt(summ["median ratio over units"][role]),
                              fmt(d1[role]), fmt(de.get(role))])
            if role in ("sgd", "sde"):
                closer = "1/√d" if de.get(role) is not None and de[role].mean < d1[role].mean else "1"
                verdicts.append(f"{r.variant} {ROLE_NAMES[role]}: closer to {closer}")
        sec.numbers.setdefault("variants", {})[r.variant] = {k: {ro: s.as_dict() for ro, s in v.items()} for k, v in summ.items()}
    if long_rows:
        md += ["", f"**Which value do longer runs approach, 1 (paper) or 1/√{d_in} = {eq:.3f} (noise equilibrium, "
               f"docs/theory.md section 7)?** Final records of the other variants (`long` is not the paper's setting):", ""]
        md.append(md_table(["run", "runner", "geometric-mean ratio", "median ratio", "mean abs log r (from 1)",
                            f"mean abs log(r √{d_in}) (from 1/√{d_in})"], long_rows))
        md += ["", "Verdicts (smaller mean distance): " + "; ".join(verdicts) + "."]
        for r in other:
            sec.figures.append(_relu_figure(r, figdir / f"{r.name}-{r.variant}.png", d_in, None))
    gm = dict(summary).get("geometric-mean ratio over units", {})
    sec.overview = {
        "measured": f"at {step_used:,} steps geometric-mean ratio SGD {fmt(gm.get('sgd'), sd=False)}, "
        f"mean abs log ratio {num(start)} → {num(dist['sgd'].mean) if 'sgd' in dist else '-'}"
        + ("; " + "; ".join(verdicts) if verdicts else ""),
        "sde": f"{ok}/{n} quantities within 2 SE (max |z| {worst:.1f})",
        "gd": "GD: " + (f"mean abs log ratio {num(dist['gd'].mean)} vs SGD {num(dist['sgd'].mean)}" if "gd" in dist and "sgd" in dist else "-"),
    }
    sec.markdown = "\n".join(md)

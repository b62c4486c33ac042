"""Experiment 2: single-head attention, Q/K balance."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ._shared import (
    CLAIMS, COMPARISON_HEADER, PAPER_STEPS, ROLE_NAMES, ROLES, RUNNER_COLORS, Section, Stat, agreement,
    agreement_sentence, band, base_first, cmap, comparison_rows, figure, fmt, legend, md_table, num, paper_run,
    record_indices, role_stats, gram_difference_ratios, runs_header, save,
)


# ----------------------------------------------------------------------------- 2
def section_attention(sec: Section, figdir: Path) -> None:
    runs = base_first(sec.runs)
    run = paper_run(runs)
    paper = PAPER_STEPS["attention"]
    md = [f"- Paper: {CLAIMS['attention']}", "", runs_header(runs), ""]
    for r in [run] + [x for x in runs if x is not run]:
        q = []
        i_by_role, note = record_indices(r, paper if r is run else None)
        g0 = r.sgd() or next(iter(r.runners.values()))
        step_used = int(g0.step[i_by_role.get("sgd", len(g0.step) - 1)])
        cols: dict[str, np.ndarray] = {}
        for role in ROLES:
            g = r.runner(role)
            if g is None or "balance/column_ratio" not in g.records:
                continue
            cols[role] = np.asarray(g.records["balance/column_ratio"], float)
        if not cols:
            continue
        n_cols = next(iter(cols.values())).shape[2]
        c0 = np.asarray(g0.records["balance/column_ratio"], float)[:, 0]
        for j in range(n_cols):
            q.append((f"column {j} (start {num(float(np.nanmean(c0[:, j])))})",
                      {role: Stat.of(c[:, i_by_role[role], j]) for role, c in cols.items()}))
        for key, label in (("balance/frobenius_ratio", "Frobenius ratio |W_Q|_F / |W_K|_F"),
                           ("balance/nuclear_ratio", "nuclear ratio |W_Q|_* / |W_K|_*")):
            st = role_stats(r, key, i_by_role, lambda x: np.asarray(x, float))
            if st:
                start = float(np.nanmean(np.asarray(g0.records[key], float)[:, 0]))
                q.append((f"{label} (start {num(start)})", st))
        st = gram_difference_ratios(r, i_by_role)
        if st:
            q.append(("|W_Q^T W_Q − W_K^T W_K|_F relative to its start (GD conserves it)", st))
        for key, label in (("test_loss", "test loss"), ("loss", "training loss (reference set)")):
            st = role_stats(r, key, i_by_role)
            if st:
                q.append((label, st))
        head = f"**{r.label}: column ratios |W_Q[:, j]| / |W_K[:, j]| and norm ratios at step {step_used:,}**{note}:"
        md += ["", head, "", md_table(COMPARISON_HEADER, comparison_rows(q))]
        ok, n, worst, _ = agreement(q)
        md += ["", agreement_sentence(q)]
        key = r.variant or "base"
        sec.numbers[key] = {name: {ro: s.as_dict() for ro, s in st.items()} for name, st in q}
        sec.numbers[key]["step"] = step_used
        # figure
        roles = list(cols)
        fig, axes = figure(ncols=len(roles) + 1, w=3.3, h=3.2)
        colc = cmap(n_cols, "coolwarm")
        for ax, role in zip(axes[0], roles):
            g = r.runner(role)
            for j in range(n_cols):
                band(ax, g.step, cols[role][:, :, j], colc[j], lw=1.0, alpha=0.12)
            ax.axhline(1.0, color="k", ls="--", lw=1.0, label="paper: 1")
            ax.set_yscale("log")
            ax.set_title(f"{ROLE_NAMES[role]}: column ratios", fontsize=8)
            ax.set_xlabel("iteration")
        axes[0, 0].set_ylabel("|W_Q[:, j]| / |W_K[:, j]|")
        legend(axes[0, 0], fontsize=6)
        ax = axes[0, -1]
        for role in roles:
            g = r.runner(role)
            for key, ls in (("balance/frobenius_ratio", "-"), ("balance/nuclear_ratio", ":")):
                if key in g.records:
                    band(ax, g.step, np.asarray(g.records[key], float), RUNNER_COLORS[role], ls=ls,
                          label=f"{ROLE_NAMES[role]} {'Frobenius' if ls == '-' else 'nuclear'}")
        ax.axhline(1.0, color="k", ls="--", lw=1.0)
        ax.set_yscale("log")
        ax.set_title("norm ratios |W_Q| / |W_K|", fontsize=8)
        ax.set_xlabel("iteration")
        legend(ax, fontsize=5)
        fig.suptitle(f"{r.label}: mean and 10-90 % band over {r.num_seeds} seeds, lr {r.lr:g}", fontsize=8)
        sec.figures.append(save(fig, figdir / f"{r.name}{'-' + r.variant if r.variant else ''}.png"))
        if r is run:
            fro = dict(q).get(next(k for k, _ in q if k.startswith("Frobenius")), {})
            nuc = dict(q).get(next(k for k, _ in q if k.startswith("nuclear")), {})
            colq = [st for name, st in q if name.startswith("column")]
            gm = {role: float(np.exp(np.mean([math.log(st[role].mean) for st in colq if role in st]))) for role in roles}
            sec.overview = {
                "measured": f"at {step_used:,} steps Frobenius ratio SGD {fmt(fro.get('sgd'), sd=False)}, nuclear "
                f"{fmt(nuc.get('sgd'), sd=False)}; column ratios (geometric mean) SGD {gm.get('sgd', float('nan')):.3g}",
                "sde": f"{ok}/{n} quantities within 2 SE (max |z| {worst:.1f})",
                "gd": f"GD Frobenius ratio {fmt(fro.get('gd'), sd=False)} vs SGD {fmt(fro.get('sgd'), sd=False)}",
            }
    sec.markdown = "\n".join(md)

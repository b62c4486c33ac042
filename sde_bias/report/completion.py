"""Experiment 3: low-rank matrix completion, spectral bias and the log det G pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._shared import (
    CLAIMS, COMPARISON_HEADER, PAPER_STEPS, ROLE_NAMES, ROLES, RUNNER_COLORS, Section, Stat, agreement,
    agreement_sentence, band, base_first, cmap, comparison_rows, figure, finite_mean, fmt, legend, md_table, num,
    paper_run, record_indices, role_stats, gram_difference_ratios, runs_header, save,
)


# ----------------------------------------------------------------------------- 3
def _logdet_pieces(s: np.ndarray):
    """``sum_i log s_i`` and ``sum_{i<j} log(s_i + s_j)`` over the last axis."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.sum(np.log(s), axis=-1)
        k = s.shape[-1]
        iu = np.triu_indices(k, 1)
        pair = s[..., iu[0]] + s[..., iu[1]]
        b = np.sum(np.log(pair), axis=-1)
    return a, b


def section_completion(sec: Section, figdir: Path) -> None:
    runs = base_first(sec.runs)
    run = paper_run(runs)
    paper = PAPER_STEPS["completion"]
    targets = [float(x) for x in (run.sc("data", "singular_values", default=[15.0, 5.0]) or [])]
    md = [f"- Paper: {CLAIMS['completion']}", "", runs_header(runs), ""]
    for r in [run] + [x for x in runs if x is not run]:
        i_by_role, note = record_indices(r, paper if r is run else None)
        g0 = r.sgd() or next(iter(r.runners.values()))
        step_used = int(g0.step[i_by_role.get("sgd", len(g0.step) - 1)])
        q = []
        sv = {role: np.asarray(r.runner(role).records["singular_values"], float) for role in ROLES
              if r.runner(role) is not None and "singular_values" in r.runner(role).records}
        if not sv:
            continue
        nmodes = next(iter(sv.values())).shape[2]
        for k, tgt in enumerate(targets[:2]):
            q.append((f"s{k + 1} (target {tgt:g})", {ro: Stat.of(s[:, i_by_role[ro], k]) for ro, s in sv.items()}))
        q.append((f"largest of the other {nmodes - 2} (s3)", {ro: Stat.of(s[:, i_by_role[ro], 2]) for ro, s in sv.items()}))
        q.append((f"sum of the other {nmodes - 2}", {ro: Stat.of(s[:, i_by_role[ro], 2:].sum(-1)) for ro, s in sv.items()}))
        a_i, b_i = {}, {}
        for ro, s in sv.items():
            a, b = _logdet_pieces(s)
            a_i[ro], b_i[ro] = a, b
        q.append(("sum_i log s_i", {ro: Stat.of(a[:, i_by_role[ro]]) for ro, a in a_i.items()}))
        q.append(("sum_{i<j} log(s_i + s_j)", {ro: Stat.of(b[:, i_by_role[ro]]) for ro, b in b_i.items()}))
        for key, label in (("balance/mode_ratio", "mean abs log |P[:, i]| / |Q[i, :]| over modes"),):
            st = role_stats(r, key, i_by_role, lambda m: finite_mean(np.abs(np.log(np.asarray(m, float))), 1))
            if st:
                m0 = np.asarray(g0.records[key], float)[:, 0]
                q.append((f"{label} (start {num(float(np.nanmean(np.abs(np.log(m0)))))})", st))
        st = gram_difference_ratios(r, i_by_role)
        if st:
            q.append(("|P^T P − Q Q^T|_F relative to its start", st))
        for key, label in (("test_loss", "MSE on all 400 entries"), ("loss", "training loss (observed entries)"),
                           ("distance_to_target", "|P Q − M*|_F")):
            st = role_stats(r, key, i_by_role)
            if st:
                q.append((label, st))
        extra = f"{r.label}"
        if r.variant:
            extra += f" (observe_prob {r.sc('data', 'observe_prob')}, {r.total_steps:,} steps; not the paper's setting)" \
                if r.variant not in ("quick",) else ""
        md += ["", f"**{extra}: singular values of P Q and balance at step {step_used:,}**{note}:", "",
               md_table(COMPARISON_HEADER, comparison_rows(q))]
        ok, n, worst, _ = agreement(q)
        md += ["", agreement_sentence(q)]
        # log det pieces along training
        g_any = next(iter(sv))
        steps = r.runner(g_any).step
        picks = sorted(set(int(round(x)) for x in np.linspace(0, len(steps) - 1, 5)))
        rows = []
        for ro in sv:
            rows.append([ROLE_NAMES[ro] + " sum log s_i"] + [fmt(Stat.of(a_i[ro][:, p]), sd=False) for p in picks])
            rows.append([ROLE_NAMES[ro] + " sum_{i<j} log(s_i+s_j)"] + [fmt(Stat.of(b_i[ro][:, p]), sd=False) for p in picks])
        md += ["", "log det G pieces along training (docs/theory.md section 3.4; mean ± SE over seeds):", "",
               md_table(["runner / piece"] + [f"step {int(steps[p]):,}" for p in picks], rows)]
        key = r.variant or "base"
        sec.numbers[key] = {name: {ro: s.as_dict() for ro, s in st.items()} for name, st in q}
        sec.numbers[key]["step"] = step_used
        sec.numbers[key]["logdet_along"] = {
            ro: {"step": [int(x) for x in steps], "sum_log_s": finite_mean(a_i[ro], 0).tolist(),
                 "sum_log_pairs": finite_mean(b_i[ro], 0).tolist()} for ro in sv}
        # figure
        roles = list(sv)
        fig, axes = figure(ncols=len(roles) + 1, w=3.3, h=3.2)
        cols = cmap(nmodes, "plasma")
        for ax, ro in zip(axes[0], roles):
            g = r.runner(ro)
            for k in range(nmodes):
                band(ax, g.step, sv[ro][:, :, k], cols[min(k, nmodes - 1)], lw=1.0 if k > 1 else 1.6, alpha=0.12)
            for tgt in targets:
                ax.axhline(tgt, color="k", ls="--", lw=1.0)
            ax.set_yscale("log")
            ax.set_ylim(1e-3, 30)
            ax.set_title(f"{ROLE_NAMES[ro]}: singular values of P Q", fontsize=8)
            ax.set_xlabel("iteration")
        axes[0, 0].set_ylabel("s_i (dashed: 15, 5)")
        ax = axes[0, -1]
        for ro in roles:
            g = r.runner(ro)
            band(ax, g.step, b_i[ro], RUNNER_COLORS[ro], label=f"{ROLE_NAMES[ro]} Σ log(s_i+s_j)")
            band(ax, g.step, a_i[ro], RUNNER_COLORS[ro], ls=":", label=f"{ROLE_NAMES[ro]} Σ log s_i")
        ax.set_title("log det G pieces", fontsize=8)
        ax.set_xlabel("iteration")
        legend(ax, fontsize=5)
        fig.suptitle(f"{r.label}: mean and 10-90 % band over {r.num_seeds} seeds", fontsize=8)
        sec.figures.append(save(fig, figdir / f"{r.name}{'-' + r.variant if r.variant else ''}.png"))
        if r is run:
            qd = dict(q)
            s1, s2, s3 = qd[f"s1 (target {targets[0]:g})"], qd[f"s2 (target {targets[1]:g})"], qd[f"largest of the other {nmodes - 2} (s3)"]
            sec.overview = {
                "measured": f"at {step_used:,} steps SGD s1 {fmt(s1.get('sgd'), sd=False)}, s2 {fmt(s2.get('sgd'), sd=False)} "
                f"(targets {targets[0]:g}, {targets[1]:g}), s3 {fmt(s3.get('sgd'), sd=False)}",
                "sde": f"{ok}/{n} quantities within 2 SE (max |z| {worst:.1f})",
                "gd": f"GD s1 {fmt(s1.get('gd'), sd=False)}, s2 {fmt(s2.get('gd'), sd=False)}, s3 {fmt(s3.get('gd'), sd=False)}",
            }
    sec.markdown = "\n".join(md)

"""Experiments 4 and 5: inverse design (sparse spectral recovery, ``spectral``; piecewise-constant
signal, ``tv``): models x training schemes, initial-scale sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..reader import RunData
from ._shared import (
    CLAIMS, PAPER_STEPS, ROLE_NAMES, ROLES, RUNNER_COLORS, SUPPORT_THRESHOLD, TITLES, Section, Stat,
    at_step_note, band, base_first, figure, finite_mean, fmt, fmt_diff, init_std, legend, md_table, model_label,
    num, paper_run, runs_header, save, scheme_label, target_of,
)


# ----------------------------------------------------------------------------- 4 and 5
def _inverse_design_rows(run: RunData, kind: str, i_role: dict[str, int]):
    """Per runner: dict of quantity -> Stat for the spectral / TV experiments."""
    out: dict[str, dict[str, Stat]] = {}
    target = None
    for role in ROLES:
        g = run.runner(role)
        if g is None or role not in i_role:
            continue
        i = i_role[role]
        rec = g.records
        st: dict[str, Stat] = {}
        if kind == "spectral":
            if "test_loss" in rec:
                st["test MSE"] = Stat.of(rec["test_loss"][:, i])
            if "loss" in rec:
                st["train MSE"] = Stat.of(rec["loss"][:, i])
            if "invariants" in rec:
                w = np.asarray(rec["invariants"], float)[:, i]
                target = target_of(run)
                if target is not None:
                    true = np.abs(target) > 0
                    found = np.abs(w) > SUPPORT_THRESHOLD
                    st["exact support recovered (fraction of seeds)"] = Stat.of(np.all(found == true, axis=1).astype(float))
                st["coefficients above 0.1"] = Stat.of(np.sum(np.abs(w) > SUPPORT_THRESHOLD, axis=1))
            if "distance_to_target" in rec:
                st["|w − w*|"] = Stat.of(rec["distance_to_target"][:, i])
        else:
            length = None
            if "invariants" in rec:
                length = rec["invariants"].shape[2]
            if "distance_to_target" in rec:
                L = length or int(run.sc("model", "length", default=run.sc("model", "dim", default=200)))
                st["reconstruction MSE |s − s*|²/n"] = Stat.of(np.asarray(rec["distance_to_target"], float)[:, i] ** 2 / L)
            if "total_variation" in rec:
                st["total variation"] = Stat.of(rec["total_variation"][:, i])
            if "loss" in rec:
                st["fit MSE (measurements)"] = Stat.of(rec["loss"][:, i])
        out[role] = st
    return out


def _sibling_with_gd(run: RunData, runs: list[RunData]) -> RunData | None:
    """A run of the same model, initial scale and seeds that has a ``gd`` runner (its GD
    started from the same initial points)."""
    for o in runs:
        if o is run or o.gd() is None:
            continue
        same = (model_label(o) == model_label(run) and init_std(o) == init_std(run)
                and o.sc("seeds") == run.sc("seeds") and o.sc("data") == run.sc("data") and o.lr == run.lr)
        if same:
            return o
    return None


def _support_sets(run: RunData, label: str) -> str:
    """The most common set of coefficients above the threshold at the paper's step, and in how
    many seeds (for the runner that ``label`` names)."""
    role = "gd" if label.startswith("GD") else ("sde" if label.startswith("SDE") else "sgd")
    g = run.runner(role)
    if g is None or "invariants" not in g.records:
        return "-"
    w = np.asarray(g.records["invariants"], float)[:, g.index_at(PAPER_STEPS["spectral"])]
    sets = [tuple(np.flatnonzero(np.abs(x) > SUPPORT_THRESHOLD)) for x in w]
    from collections import Counter

    (best, n), = Counter(sets).most_common(1)
    shown = "{" + ", ".join(str(int(k)) for k in best[:6]) + (f", … ({len(best)} in all)" if len(best) > 6 else "") + "}"
    return f"{shown} ({n}/{len(sets)})"


def section_inverse_design(sec: Section, figdir: Path) -> None:
    kind = sec.kind
    runs = base_first(sec.runs)
    paper = PAPER_STEPS[kind]
    md = [f"- Paper: {CLAIMS[kind]}", "", runs_header(runs), ""]
    # classify runs: model label, init std, scheme label
    main_rows = []
    sweep: dict[tuple[str, str], list] = {}
    per_model: dict[str, dict[str, dict[str, Stat]]] = {}
    any_short = ""
    nums: dict[str, Any] = {}
    base_init = {}
    for r in runs:
        if r.variant == "" or r.variant == "quick":
            base_init[model_label(r)] = init_std(r)
    for r in runs:
        i_role = {}
        for role in ROLES:
            g = r.runner(role)
            if g is not None:
                i_role[role], note = at_step_note(r, g, paper)
                any_short = any_short or note
        st = _inverse_design_rows(r, kind, i_role)
        model = model_label(r)
        init = init_std(r)
        scheme = scheme_label(r)
        is_sweep = r.variant.startswith("init")
        key = r.variant or "base"
        nums[key] = {ROLE_NAMES[ro]: {k: v.as_dict() for k, v in s.items()} for ro, s in st.items()}
        nums[key]["_meta"] = {"model": model, "init_std": init, "scheme": scheme,
                              "step": int(next(iter(r.runners.values())).step[next(iter(i_role.values()))])}
        if is_sweep or (r.variant in ("", "quick") and model.startswith("designed")):
            for ro in ("gd", "sgd", "sde"):
                if ro in st:
                    sweep.setdefault((model, ro), []).append((init, st[ro], scheme))
        if is_sweep:
            continue
        for ro in ROLES:
            if ro not in st:
                continue
            if ro == "gd":
                label = "GD (full batch; the paper)"
            elif ro == "sgd":
                label = scheme
            else:
                label = f"SDE of {scheme}"
            per_model.setdefault(model, {})[label] = st[ro]
            main_rows.append((model, init, label, st[ro], r))
    def _order(row):
        model, _, label, _, _ = row
        m = 0 if model.startswith("designed") else (2 if "L1" in model else 1)
        lab = 0 if label.startswith("GD") else (1 if label.startswith("minibatch") else
                                                 2 if label.startswith("SDE of minibatch") else
                                                 3 if not label.startswith("SDE") else 4)
        return m, lab

    main_rows.sort(key=_order)
    quantities = []
    for _, _, _, st, _ in main_rows:
        for k in st:
            if k not in quantities:
                quantities.append(k)
    # main table: models x runners
    rows = []
    for model, init, label, st, r in main_rows:
        row = [model, f"{init}", label] + [fmt(st.get(k)) for k in quantities]
        if kind == "spectral":
            row.append(_support_sets(r, label))
        rows.append(row)
    step_note = f"at step {paper:,}" + (any_short or "")
    md += [f"**Models × training schemes, {step_note}** (mean ± standard error over seeds, standard deviation in brackets; "
           + ("support = coefficients with |w_k| > 0.1, against the 3 true ones" if kind == "spectral" else
              "reconstruction MSE = |s − s*|²/200, fit MSE = training loss on the 60 measurements") + "):", "",
           md_table(["model", "init std", "runner"] + quantities
                    + (["k with |w_k| > 0.1 (seeds)"] if kind == "spectral" else []), rows)]
    if kind == "spectral" and target_of(runs[0]) is not None:
        t = target_of(runs[0])
        nz = np.flatnonzero(t)
        md += ["", "True spectrum: " + ", ".join(f"w*_{k} = {t[k]:+.3f}" for k in nz) + "."]
    # SDE vs SGD and GD vs SGD per run
    comp = []
    for r in runs:
        i_role = {ro: r.runner(ro).index_at(paper) for ro in ROLES if r.runner(ro) is not None}
        st = _inverse_design_rows(r, kind, i_role)
        if "sgd" not in st:
            continue
        gd_from = ""
        if "gd" not in st:
            sib = _sibling_with_gd(r, runs)
            if sib is not None:
                st["gd"] = _inverse_design_rows(sib, kind, {"gd": sib.gd().index_at(paper)})["gd"]
                gd_from = f" (GD of `{sib.path.name}`)"
        key_q = (["test MSE", "coefficients above 0.1", "|w − w*|"] if kind == "spectral" else quantities)
        if r.variant.startswith("init"):
            key_q = key_q[:1]
        for k in key_q:
            if k not in st["sgd"]:
                continue
            s_sgd = st["sgd"][k]
            comp.append([f"{r.variant or 'base'} ({model_label(r)}, {scheme_label(r)}){gd_from}", k,
                         fmt_diff(st.get("sde", {}).get(k), s_sgd) if "sde" in st else "-",
                         fmt_diff(st.get("gd", {}).get(k), s_sgd) if "gd" in st else "-"])
    md += ["", "SDE versus SGD and GD versus SGD, same initial points (difference of the means ± its standard error, z):", "",
           md_table(["run", "quantity", "SDE − SGD", "GD − SGD"], comp)]
    # init sweep
    srows = []
    flat = []
    for (model, ro), lst in sweep.items():
        for init, st, scheme in lst:
            flat.append((model, float(init) if not isinstance(init, str) else 0.0, ("gd", "sgd", "sde").index(ro),
                         init, ro, st, scheme))
    for model, _, _, init, ro, st, scheme in sorted(flat, key=lambda x: x[:3]):
        lab = "GD" if ro == "gd" else (scheme if ro == "sgd" else f"SDE of {scheme}")
        srows.append([model, f"{init}" + (" (paper)" if init == base_init.get(model) else ""), lab]
                     + [fmt(st.get(k), sd=False) for k in quantities])
    if srows:
        md += ["", "**Initial-scale sweep** (the designed model; mean ± SE):", "",
               md_table(["model", "init std", "runner"] + quantities, srows)]
    sec.numbers.update(nums)
    # figures
    sec.figures += _inverse_design_figures(kind, runs, sweep, figdir, paper, base_init)
    # overview
    key_q = "test MSE" if kind == "spectral" else "reconstruction MSE |s − s*|²/n"
    parts, gd_parts = [], []
    for model, d in per_model.items():
        gd = d.get("GD (full batch; the paper)")
        if gd is not None and key_q in gd:
            parts.append(f"{model} GD {num(gd[key_q].mean)}")
        sg = [(k, v) for k, v in d.items() if not k.startswith("GD") and not k.startswith("SDE") and key_q in v]
        if sg:
            short = lambda k: "label-noise SGD" if k.startswith("label-noise") else ("minibatch SGD" if k.startswith("minibatch") else k)  # noqa: E731
            gd_txt = f" vs GD {num(gd[key_q].mean)}" if gd is not None and key_q in gd else ""
            gd_parts.append(f"{model}: " + ", ".join(f"{short(k)} {num(v[key_q].mean)}" for k, v in sg) + gd_txt)
    if kind == "spectral":
        supp = []
        for model, d in per_model.items():
            gd = d.get("GD (full batch; the paper)")
            if gd is not None and "exact support recovered (fraction of seeds)" in gd:
                supp.append(f"{model} {gd['exact support recovered (fraction of seeds)'].mean:.2f}")
        extra = "; exact support (GD): " + ", ".join(supp) if supp else ""
    else:
        tvs = []
        for model, d in per_model.items():
            gd = d.get("GD (full batch; the paper)")
            if gd is not None and "total variation" in gd:
                tvs.append(f"{model} {num(gd['total variation'].mean)}")
        t = target_of(sec.runs[0])
        true_tv = f" (s*: {float(np.sum(np.abs(np.diff(t)))):g})" if t is not None else ""
        extra = "; TV (GD): " + ", ".join(tvs) + true_tv if tvs else ""
    zs = []
    for row in comp:
        if row[2] != "-":
            try:
                zs.append(abs(float(row[2].split("z ")[1].rstrip(")"))))
            except (IndexError, ValueError):
                pass
    sec.overview = {
        "measured": f"{key_q.split(' |')[0]}: " + ", ".join(parts) + extra,
        "sde": f"{sum(z <= 2 for z in zs)}/{len(zs)} quantities within 2 SE (max |z| {max(zs) if zs else float('nan'):.1f})",
        "gd": "; ".join(gd_parts) or "-",
    }
    sec.markdown = "\n".join(md)


def _inverse_design_figures(kind, runs, sweep, figdir: Path, paper: int, base_init) -> list[Path]:
    out = []
    main = [r for r in runs if not r.variant.startswith("init") and "label_noise" not in r.variant]
    if not main:
        return out
    name = runs[0].name
    base = paper_run(runs)
    target = target_of(base)
    fig, axes = figure(ncols=3, w=3.6, h=3.2)
    # (a) the recovered object at the paper's step (GD)
    ax = axes[0, 0]
    colors = ["tab:red", "tab:blue", "tab:purple", "tab:brown", "tab:olive"]
    for k, r in enumerate(main):
        g = r.gd() or r.sgd()
        if g is None or "invariants" not in g.records:
            continue
        i = g.index_at(paper)
        w = np.asarray(g.records["invariants"], float)[:, i]
        x = np.arange(w.shape[1])
        if kind == "spectral":
            ax.plot(x + 0.2 * (k - 1), finite_mean(w, 0), marker="o", ms=2.5, lw=0.6, color=colors[k % 5],
                    label=f"{model_label(r)} (GD)")
        else:
            band(ax, x, w, colors[k % 5], label=f"{model_label(r)} (GD)", lw=1.0)
    if target is not None:
        if kind == "spectral":
            nz = np.flatnonzero(target)
            ax.vlines(nz, 0, target[nz], color="k", ls="--", lw=1.2, label="true w*")
            ax.axhline(SUPPORT_THRESHOLD, color="0.6", ls=":", lw=0.8)
            ax.axhline(-SUPPORT_THRESHOLD, color="0.6", ls=":", lw=0.8)
            ax.set_xlabel("frequency k")
            ax.set_ylabel("w_k (seed mean)")
        else:
            ax.plot(np.arange(target.shape[0]), target, "k--", lw=1.2, label="true s*")
            ax.set_xlabel("j")
            ax.set_ylabel("s_j (mean, 10-90 % band)")
    legend(ax, fontsize=5)
    ax.set_title(f"recovered at step {paper:,}", fontsize=8)
    # (b) error along training for models x runners
    ax = axes[0, 1]
    key = "test_loss" if kind == "spectral" else "distance_to_target"
    ls_for = {"gd": "-", "sgd": "--", "sde": ":"}
    for k, r in enumerate(main):
        for ro in ROLES:
            g = r.runner(ro)
            if g is None or key not in g.records:
                continue
            v = np.asarray(g.records[key], float)
            if kind == "tv":
                v = v**2 / (g.records["invariants"].shape[2] if "invariants" in g.records else 200)
            band(ax, g.step, v, colors[k % 5], ls=ls_for[ro], lw=1.1, alpha=0.1,
                  label=f"{model_label(r)} {ROLE_NAMES[ro]}")
    if kind == "spectral":
        ax.set_ylabel("test MSE")
    else:
        ax.set_ylabel("reconstruction MSE")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    legend(ax, fontsize=4.5, ncol=1)
    ax.set_title("solid GD, dashed minibatch SGD, dotted SDE", fontsize=7)
    # (c) init sweep
    ax = axes[0, 2]
    qk = "test MSE" if kind == "spectral" else "reconstruction MSE |s − s*|²/n"
    for (model, ro), lst in sweep.items():
        pts = sorted([(float(i), s[qk].mean, s[qk].se) for i, s, _ in lst if not isinstance(i, str) and qk in s])
        if len(pts) < 2:
            continue
        x, y, e = map(np.asarray, zip(*pts))
        ax.errorbar(x, y, yerr=np.nan_to_num(e), marker="o", ms=3, lw=1.0, ls=ls_for[ro], color=RUNNER_COLORS[ro],
                    label=f"{model} {ROLE_NAMES[ro]}", capsize=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("initial std")
    ax.set_ylabel(qk.split(" |")[0])
    legend(ax, fontsize=5)
    ax.set_title(f"initial-scale sweep at step {paper:,}", fontsize=8)
    fig.suptitle(f"{name}: {TITLES[kind]} ({base.num_seeds} seeds)", fontsize=8)
    out.append(save(fig, figdir / f"{name}.png"))
    if kind == "tv":
        fig, axes = figure(ncols=2, w=3.8, h=3.1)
        ax = axes[0, 0]
        for k, r in enumerate(main):
            for ro in ROLES:
                g = r.runner(ro)
                if g is None or "total_variation" not in g.records:
                    continue
                band(ax, g.step, np.asarray(g.records["total_variation"], float), colors[k % 5], ls=ls_for[ro],
                      lw=1.1, alpha=0.1, label=f"{model_label(r)} {ROLE_NAMES[ro]}")
        if target is not None:
            ax.axhline(float(np.sum(np.abs(np.diff(target)))), color="k", ls="--", lw=1.0, label="TV of s*")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("total variation")
        legend(ax, fontsize=5)
        ax = axes[0, 1]
        for k, r in enumerate(main):
            for ro in ROLES:
                g = r.runner(ro)
                if g is None or "loss" not in g.records:
                    continue
                band(ax, g.step, np.asarray(g.records["loss"], float), colors[k % 5], ls=ls_for[ro], lw=1.1, alpha=0.1,
                      label=f"{model_label(r)} {ROLE_NAMES[ro]}")
        ax.axhline(0.01, color="k", ls="--", lw=1.0, label="noise variance 0.01")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("fit MSE")
        legend(ax, fontsize=5)
        fig.suptitle(f"{name}: total variation and fit (solid GD, dashed SGD, dotted SDE)", fontsize=8)
        out.append(save(fig, figdir / f"{name}-tv_fit.png"))
    return out

"""Inverse-design verification (scenarios with a ``design:`` block and ``report: {section: design}``):
for each run, the ``/design`` group written by the run's design stage (``sde_bias.design_run``): the
predicted interpolators of each mechanism (gradient flow, label noise, the paper's quotient potential,
the target and the alternatives) with their optimality residuals, the distances of every runner's
``beta(t)`` to them along slow time, and the predicted against the simulated coefficients."""

from __future__ import annotations

import json
from pathlib import Path

from ..design_run import design_report_section
from ._shared import Section, base_first, runs_header


def _overview(run) -> str:
    """``runner: nearest prediction (distance)`` at the end, from the stage's table."""
    import h5py

    with h5py.File(run.path, "r") as f:
        g = f.get("design")
        if g is None or "table" not in g.attrs:
            return "-"
        rows = json.loads(g.attrs["table"])
    best: dict[str, tuple[str, float]] = {}
    for runner, pred, mean, _se in rows:
        if pred in ("truth",):
            continue
        if runner not in best or mean < best[runner][1]:
            best[runner] = (pred, mean)
    return "; ".join(f"{r}: nearest {p} ({m:.2g})" for r, (p, m) in best.items()) or "-"


def section_design(sec: Section, figdir: Path) -> None:
    runs = base_first(sec.runs)
    md = [runs_header(runs), ""]
    for r in runs:
        text, figs = design_report_section(r.path, figdir, images=False)
        md += [text or f"**{r.label}**: no `/design` group (run without a `design:` block)", ""]
        sec.figures += [Path(p) for p in figs]
    sec.overview = {"measured": _overview(runs[0]), "sde": "-", "gd": "-"}
    sec.markdown = "\n".join(md)

"""Any other scenario: a table of final values per runner."""

from __future__ import annotations

from pathlib import Path

from ._shared import (
    COMPARISON_HEADER, ROLES, Section, Stat, comparison_rows, md_table, runs_header,
)


# ----------------------------------------------------------------------------- generic
def section_generic(sec: Section, figdir: Path) -> None:
    md = [runs_header(sec.runs), ""]
    for r in sec.runs:
        q = []
        names = []
        for g in r.runners.values():
            for k, v in g.records.items():
                if v.ndim == 2 and k not in names:
                    names.append(k)
        for k in names:
            q.append((k, {ro: Stat.of(r.runner(ro).records[k][:, -1]) for ro in ROLES
                          if r.runner(ro) is not None and k in r.runner(ro).records}))
        md += [f"**{r.label}** (final records):", "", md_table(COMPARISON_HEADER, comparison_rows(q)), ""]
    sec.overview = {"measured": "see the table", "sde": "-", "gd": "-"}
    sec.markdown = "\n".join(md)

"""Comparison rows that separate discretisation error from disagreement.

Every check of a run (drift, stationary law, balance law) produces :class:`Comparison`
rows: one quantity of one runner against the theory's value, with

* ``value`` and its standard error ``se`` (over seeds or replicates);
* ``diff = value - theory``, ``rel_error = diff / |theory|`` and ``z = diff / se``;
* ``disc_error`` (and its standard error): the estimated discretisation error of the runner
  for this quantity, ``value(dt) - value(dt -> 0)``, and where it comes from
  (``disc_source``): a converge study, a dt-halving estimate on the same Brownian paths
  with the solver's weak order, an exact discrete identity (the theory already is the
  discrete one: nothing to estimate), or nothing (``nan``: not estimated).

The verdict (:func:`verdict`) is

* ``agrees``: ``|z| <= 3`` (no discretisation term needed);
* ``agrees to O(dt)``: otherwise, when ``|diff - disc_error| <= 3 sqrt(se^2 + disc_se^2)``,
  i.e. the value extrapolated to ``dt -> 0`` agrees with the theory;
* ``disagrees``: anything else;
* ``insufficient data``: the check could not be made from the data at hand (e.g. too few
  samples for a chi-square test); reported as such, never as agreement.

Written to ``/comparisons`` of the run file (one dataset per column, ``verdict`` among
them) with the formatted table in its ``table`` attribute; :func:`summary_sentences` gives
the one-line-per-group summary that ``sde-bias run`` prints.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

THRESHOLD = 3.0
AGREES = "agrees"
AGREES_DT = "agrees to O(dt)"
DISAGREES = "disagrees"
INSUFFICIENT = "insufficient data"


def verdict(diff: float, se: float, disc_error: float = float("nan"), disc_se: float = 0.0, k: float = THRESHOLD) -> str:
    """``agrees`` / ``agrees to O(dt)`` / ``disagrees`` (see the module docstring). A zero or
    missing ``se`` only agrees with an exactly zero difference."""
    if not math.isfinite(diff):
        return DISAGREES
    se = se if math.isfinite(se) else float("inf")
    if abs(diff) <= k * se:
        return AGREES
    if math.isfinite(disc_error):
        s = math.hypot(se, disc_se if math.isfinite(disc_se) else float("inf"))
        if abs(diff - disc_error) <= k * s:
            return AGREES_DT
    return DISAGREES


class Comparison(NamedTuple):
    group: str  # "balance law", "drift", "stationary law", ...
    quantity: str
    runner: str
    value: float
    se: float
    theory: float
    disc_error: float = float("nan")
    disc_se: float = float("nan")
    disc_source: str = "not estimated"
    exact: bool = True  # False: the theory is an approximation (its disagreement is information)
    insufficient: bool = False  # True: the data cannot support this check (no value)

    @property
    def diff(self) -> float:
        return self.value - self.theory

    @property
    def rel_error(self) -> float:
        return self.diff / abs(self.theory) if self.theory != 0 else float("nan")

    @property
    def z(self) -> float:
        return self.diff / self.se if self.se > 0 else (0.0 if self.diff == 0 else math.copysign(float("inf"), self.diff))

    @property
    def verdict(self) -> str:
        if self.insufficient:
            return INSUFFICIENT
        return verdict(self.diff, self.se, self.disc_error, self.disc_se)


NUMERIC = ("value", "se", "theory", "rel_error", "z", "disc_error", "disc_se")
TEXT = ("group", "quantity", "runner", "disc_source", "verdict")


def rows_to_arrays(rows: Sequence[Comparison]) -> dict[str, np.ndarray]:
    """Column arrays (numbers as float64, text as UTF-8 bytes) for HDF5."""
    out: dict[str, np.ndarray] = {k: np.array([float(getattr(r, k)) for r in rows], float) for k in NUMERIC}
    for k in TEXT:
        out[k] = np.array([str(getattr(r, k)).encode() for r in rows], dtype=object)
    out["exact"] = np.array([bool(r.exact) for r in rows], np.int8)
    return out


def _g(x: float, width: int, prec: int = 5) -> str:
    return f"{x:>{width}.{prec}g}" if math.isfinite(x) else f"{'-':>{width}}"


def format_table(rows: Sequence[Comparison], title: str = "") -> str:
    """Fixed-width table: one row per (quantity, runner) with the verdict; the source of the
    discretisation estimate comes last, untruncated."""
    head = (f"{'check':<15}{'quantity':<30}{'runner':<20}{'value':>12} {'± SE':<9}{'theory':>12}"
            f"{'rel.err':>9}{'z':>8}  {'disc. error':<22}{'verdict':<17}source of the disc. error")
    lines = ([title] if title else []) + [head, "-" * len(head)]
    for r in rows:
        disc = f"{r.disc_error:.3g} ± {r.disc_se:.2g}" if math.isfinite(r.disc_error) else "-"
        z = f"{r.z:>8.2f}" if math.isfinite(r.z) else f"{r.z:>8}"
        v = r.verdict + ("" if r.exact else "*")
        lines.append(
            f"{r.group[:14]:<15}{r.quantity[:29]:<30}{r.runner[:19]:<20}{_g(r.value, 12)} ±{r.se:<8.2g}"
            f"{_g(r.theory, 12)}{_g(r.rel_error, 9, 2)}{z}  {disc:<22}{v:<17}{r.disc_source}"
        )
    if not all(r.exact for r in rows):
        lines.append("* against an approximate theory: the verdict is information about the approximation")
    return "\n".join(lines)


def summary_sentences(groups: Sequence[str], verdicts: Sequence[str], runners: Sequence[str]) -> list[str]:
    """One sentence per comparison group, e.g. ``balance law: 4 runners agree (2 to O(dt))``
    or ``drift: 15 of 16 rows agree (3 to O(dt)); 1 disagrees (sgd)``."""
    out = []
    order: list[str] = []
    for g in groups:
        if g not in order:
            order.append(g)
    for g in order:
        all_idx = [i for i, gg in enumerate(groups) if gg == g]
        idx = [i for i in all_idx if verdicts[i] != INSUFFICIENT]
        n_short = len(all_idx) - len(idx)
        if not idx:
            out.append(f"{g}: insufficient data for {n_short} check{'s' if n_short > 1 else ''}")
            continue
        v = [verdicts[i] for i in idx]
        n, n_dt = len(v), sum(x == AGREES_DT for x in v)
        n_ok = sum(x in (AGREES, AGREES_DT) for x in v)
        unit = "runner" if len({runners[i] for i in idx}) == n else "row"
        units = unit if n == 1 else unit + "s"
        if n_ok == n:
            s = f"{g}: {n} {units} agree{'s' if n == 1 else ''}"
        else:
            s = f"{g}: {n_ok} of {n} {units} agree"
        if n_dt:
            s += f" ({n_dt} to O(dt))"
        if n_ok < n:
            bad = sorted({runners[i] for i in idx if verdicts[i] == DISAGREES})
            s += f"; {n - n_ok} disagree{'s' if n - n_ok == 1 else ''} ({', '.join(bad)})"
        if n_short:
            s += f"; insufficient data for {n_short}"
        out.append(s)
    return out


def comparisons_group(rows: Sequence[Comparison]):
    """``rows`` as the ``/comparisons`` group (a :class:`~sde_bias.store.GroupData`: one
    array per column, the text table, the summary sentences and the threshold)."""
    from .store import GroupData

    return GroupData(
        dict(rows_to_arrays(rows)),
        {
            "table": format_table(rows),
            "summary": "\n".join(summary_sentences([r.group for r in rows], [r.verdict for r in rows], [r.runner for r in rows])),
            "threshold": THRESHOLD,
        },
    )


def write_comparisons(h5, rows: Sequence[Comparison], name: str = "comparisons"):
    """Replace ``/<name>`` of an open HDF5 file with ``rows`` (:func:`comparisons_group`)."""
    from .store import write_group

    return write_group(h5, name, comparisons_group(rows))


def read_summary(path) -> list[str]:
    """The summary sentences of a run file's ``/comparisons`` (empty when it has none)."""
    from .reader import read_run

    g = read_run(path, records=False, check=False).comparisons
    if g is None or "verdict" not in g:
        return []
    dec = lambda a: [x.decode() if isinstance(x, bytes) else str(x) for x in a]  # noqa: E731
    return summary_sentences(dec(g["group"]), dec(g["verdict"]), dec(g["runner"]))


__all__ = [
    "AGREES", "AGREES_DT", "DISAGREES", "INSUFFICIENT", "THRESHOLD", "verdict", "Comparison", "rows_to_arrays", "format_table",
    "summary_sentences", "comparisons_group", "write_comparisons", "read_summary",
]

"""Shared pieces of the report: the paper's facts, statistics over seeds (:class:`Stat`, paired
differences), markdown tables, figure helpers, run labels and the :class:`Section` that every
section module fills in."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..reader import ROLES as ROLES, RunData, RunnerRecords

# ---------------------------------------------------------------------------
# paper facts (docs/paper_experiments.md)
# ---------------------------------------------------------------------------

PAPER_STEPS = {"relu": 40_000, "attention": 50_000, "completion": 500_000, "spectral": 50_000, "tv": 500_000}

CLAIMS = {
    "hyperbola": "Label-noise SGD slides every point along its hyperbola u v = const to the balanced "
    "section u = v; the imbalance C = u^2 - v^2 decays as C(0) exp(-lr delta^2 t) (docs/theory.md section 2.5), "
    "while gradient descent conserves it.",
    "relu": "Every per-unit ratio |V[:, j]| / |W[j, :]| tends to 1 (40,000 steps, lr 5e-5). "
    "docs/theory.md section 7: the noise equilibrium of one ReLU unit under label-like noise is "
    "1 / sqrt(d) (d = input dim), not 1.",
    "attention": "Every column ratio |W_Q[:, j]| / |W_K[:, j]| and the Frobenius and nuclear norm ratios "
    "|W_Q| / |W_K| tend to 1 (50,000 steps): the noise balances the GL(8) symmetry (W_Q A, W_K A^-T).",
    "completion": "The top two singular values of P Q approach 15 and 5 and the other 18 stay small "
    "(500,000 steps); the per-mode ratios |P[:, i]| / |Q[i, :]| tend to 1; the bias is the log det G "
    "potential sum_{i<j} log(s_i + s_j).",
    "spectral": "Trained with full-batch GD, the designed model w = p * q recovers the 3-sparse spectrum "
    "and a far lower test error than the vanilla linear model, like the explicit L1 model without "
    "its penalty.",
    "tv": "Trained with full-batch GD, the designed model s = cumsum(w1 * w2) recovers the steps (low "
    "reconstruction error and total variation); the vanilla model does not.",
    "design": "docs/theory.md section 6: each mechanism selects its own predicted interpolator (gradient flow: "
    "the mirror potential of the initial point; label noise: the minimiser of the fibre-minimised R*); the "
    "simulated end points approach the one the design relies on, with an O(eta) remainder.",
}

TITLES = {
    "hyperbola": "Hyperbolas: the balance law",
    "relu": "Shallow ReLU network: per-unit balance",
    "attention": "Single-head attention: Q/K balance",
    "completion": "Low-rank matrix completion: spectral bias",
    "spectral": "Sparse spectral recovery: inverse design for sparsity",
    "tv": "Piecewise-constant signal: inverse design for total variation",
    "design": "Inverse design: predicted against simulated interpolators",
    "generic": "Other scenario",
}
ORDER = ["relu", "attention", "completion", "spectral", "tv", "hyperbola", "design", "generic"]
PAPER_NUMBER = {"relu": 1, "attention": 2, "completion": 3, "spectral": 4, "tv": 5, "hyperbola": 6}

SUPPORT_THRESHOLD = 0.1
BAND = (10, 90)


# ---------------------------------------------------------------------------
# statistics and formatting
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Stat:
    """Mean, standard deviation and standard error over seeds (finite values only)."""

    mean: float
    sd: float
    n: int
    values: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)  # per seed

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n) if self.n > 1 else float("nan")

    @classmethod
    def of(cls, x) -> "Stat":
        raw = np.asarray(x, float).ravel()
        x = raw[np.isfinite(raw)]
        if x.size == 0:
            return cls(float("nan"), float("nan"), 0, raw)
        return cls(float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0, int(x.size), raw)

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "sd": self.sd, "se": self.se, "n": self.n}


def role_stats(run: RunData, key: str, i_by_role: dict[str, int], transform=None) -> dict[str, Stat]:
    """For every role whose runner records ``key``: :meth:`Stat.of` over seeds of the record at
    the role's index (``i_by_role``), through ``transform`` when given."""
    out = {}
    for role in ROLES:
        g = run.runner(role)
        if g is not None and key in g.records:
            x = g.records[key][:, i_by_role[role]]
            out[role] = Stat.of(x if transform is None else transform(x))
    return out


def gram_difference_ratios(run: RunData, i_by_role: dict[str, int]) -> dict[str, Stat]:
    """For every role recording ``balance/gram_difference`` (the quantity gradient flow conserves):
    ``|C(t)|_F / |C(0)|_F`` per seed at the role's record index."""
    out = {}
    for role in ROLES:
        g = run.runner(role)
        if g is not None and "balance/gram_difference" in g.records:
            G = np.asarray(g.records["balance/gram_difference"], float)
            n0 = np.linalg.norm(G[:, 0].reshape(G.shape[0], -1), axis=1)
            n1 = np.linalg.norm(G[:, i_by_role[role]].reshape(G.shape[0], -1), axis=1)
            out[role] = Stat.of(n1 / n0)
    return out


def num(x: float, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    ax = abs(x)
    if ax == 0:
        return "0"
    if ax < 1e-3 or ax >= 1e5:
        return f"{x:.{max(1, digits - 1)}e}"
    return f"{x:.{digits}g}" if ax >= 1 else f"{x:.{digits}f}".rstrip("0").rstrip(".") if ax >= 0.01 else f"{x:.{digits + 1}f}"


def fmt(s: Stat | None, sd: bool = True) -> str:
    if s is None or s.n == 0:
        return "-"
    if s.n > 1 and s.sd == 0:
        return f"{num(s.mean)} (all {s.n} seeds)"
    out = f"{num(s.mean)} ± {num(s.se, 2)}"
    if sd and s.n > 1:
        out += f" (sd {num(s.sd, 2)})"
    return out


def diff(a: Stat | None, b: Stat | None) -> tuple[float, float, float]:
    """``a - b``, its standard error and z.

    When both carry per-seed values of the same length (runners started from the same initial
    points on the same seeds) the difference is *paired*: the mean of the per-seed differences
    with their standard error, which removes the seed-to-seed spread of the initialisation that
    both runners share (their noises are independent, so the pairs are independent across
    seeds). Otherwise the two means are treated as independent."""
    if a is None or b is None or a.n == 0 or b.n == 0:
        return float("nan"), float("nan"), float("nan")
    if a.values is not None and b.values is not None and a.values.shape == b.values.shape and a.values.size > 1:
        p = Stat.of(a.values - b.values)
        if p.n > 1:
            d, se = p.mean, p.se
            z = d / se if se > 0 else (0.0 if d == 0 else float("inf"))
            return d, se, z
    d = a.mean - b.mean
    se = math.sqrt((a.se if np.isfinite(a.se) else 0.0) ** 2 + (b.se if np.isfinite(b.se) else 0.0) ** 2)
    z = d / se if se > 0 else (0.0 if d == 0 else float("inf"))
    return d, se, z


def fmt_diff(a: Stat | None, b: Stat | None) -> str:
    d, se, z = diff(a, b)
    if not np.isfinite(d):
        return "-"
    zs = f"z {z:+.1f}" if np.isfinite(z) else "z inf"
    ref = abs(b.mean) if b is not None and np.isfinite(b.mean) else 0.0
    if (not np.isfinite(z) or abs(z) > 2) and ref > 0:
        zs += f"; {abs(d) / ref:.1e} relative"
    return f"{d:+.3g} ± {num(se, 2)} ({zs})"


def _cell(c) -> str:
    return str(c).replace("|", "\\|")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table (``|`` inside cells escaped)."""
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


ROLE_NAMES = {"sgd": "SGD", "sde": "SDE", "gd": "GD"}


def comparison_rows(quantities: list[tuple[str, dict[str, Stat | None]]]) -> list[list[str]]:
    """Rows ``quantity | SGD | SDE | GD | SDE - SGD | GD - SGD``."""
    rows = []
    for name, st in quantities:
        rows.append(
            [name]
            + [fmt(st.get(r)) for r in ROLES]
            + [fmt_diff(st.get("sde"), st.get("sgd")), fmt_diff(st.get("gd"), st.get("sgd"))]
        )
    return rows


COMPARISON_HEADER = ["quantity", "SGD", "SDE", "GD", "SDE − SGD", "GD − SGD"]


def agreement(quantities: list[tuple[str, dict[str, Stat | None]]], a: str = "sde", b: str = "sgd", zmax: float = 2.0):
    """(number within |z| <= zmax, number compared, largest |z|, its quantity and relative size)."""
    n_ok = n = 0
    worst, worst_name = 0.0, ""
    for name, st in quantities:
        d, se, z = diff(st.get(a), st.get(b))
        if not np.isfinite(d):
            continue
        n += 1
        az = abs(z) if np.isfinite(z) else float("inf")
        if az <= zmax:
            n_ok += 1
        if az > worst or not worst_name:
            ref = abs(st[b].mean) if st.get(b) is not None else 0.0
            rel = f"; relative difference {abs(d) / ref:.1e}" if ref > 0 else ""
            worst, worst_name = az, name + rel
    return n_ok, n, worst, worst_name


def agreement_sentence(quantities, label: str = "SDE vs SGD") -> str:
    ok, n, worst, wname = agreement(quantities)
    if n == 0:
        return f"{label}: no SDE runner in this run."
    return (f"{label}: {ok} of {n} quantities agree within 2 standard errors of the paired difference "
            f"(largest |z| {worst:.1f}: {wname}).")


def finite_mean(x, axis=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def quantiles(x, axis=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(x, BAND, axis=axis)


# ---------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------


def figure(ncols=1, nrows=1, w=4.0, h=3.3, **kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def band(ax, x, values, color, label=None, lw=1.4, ls="-", alpha=0.18):
    values = np.asarray(values, float)
    mean = finite_mean(values, 0)
    ax.plot(x, mean, color=color, lw=lw, ls=ls, label=label)
    if values.shape[0] > 1:
        lo, hi = quantiles(values, 0)
        ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0)


def steps_axis(ax):
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}"))


def legend(ax, **kw):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for ax in fig.axes:
        if ax.get_xlabel() == "iteration":
            steps_axis(ax)
    fig.savefig(path, dpi=90)
    return path


def cmap(n, name="viridis"):
    import matplotlib

    cm = matplotlib.colormaps[name]
    return [cm(i / max(1, n - 1)) for i in range(n)]


RUNNER_COLORS = {"sgd": "tab:blue", "sde": "tab:orange", "gd": "tab:green"}


# ---------------------------------------------------------------------------
# experiment sections
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Section:
    kind: str
    runs: list[RunData]
    markdown: str = ""
    figures: list[Path] = dataclasses.field(default_factory=list)
    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)
    overview: dict[str, str] = dataclasses.field(default_factory=dict)


def at_step_note(run: RunData, g: RunnerRecords, paper_steps: int | None) -> tuple[int, str]:
    i = g.index_at(paper_steps)
    step = int(g.step[i])
    note = ""
    if paper_steps is not None and step != paper_steps:
        note = f" (at step {step:,}: the run is shorter than the paper's {paper_steps:,} steps)" if step < paper_steps else ""
    return i, note


def runs_header(runs: list[RunData]) -> str:
    lines = []
    for r in runs:
        runners = ", ".join(r.runners)
        lines.append(
            f"- `{r.command()}` → `{r.path.name}`: {r.num_seeds} seeds, {r.total_steps:,} steps of lr {r.lr:g}, "
            f"runners {runners}; wall time {r.wall_time_s:.0f} s"
        )
    return "\n".join(lines)


def base_first(runs: list[RunData]) -> list[RunData]:
    return sorted(runs, key=lambda r: (r.variant != "", r.variant != "quick", r.variant))


def paper_run(runs: list[RunData]) -> RunData:
    """The run at the paper's setting: the base (no variant), else quick, else the first."""
    for want in ("", "quick"):
        for r in runs:
            if r.variant == want:
                return r
    return runs[0]


def record_indices(r, paper: int | None) -> tuple[dict, str]:
    """Per role, the record index at the paper's step (or the last), and a note when a
    runner did not reach it."""
    i_by_role, note = {}, ""
    for role in ROLES:
        g = r.runner(role)
        if g is not None:
            i_by_role[role], n_ = at_step_note(r, g, paper)
            note = note or n_
    return i_by_role, note


# ---------------------------------------------------------------------------
# run labels (scenario facts the tables show)
# ---------------------------------------------------------------------------


def target_of(run: RunData) -> np.ndarray | None:
    """The generated ground truth ``/data/target`` of a run (float), if it has one."""
    t = run.data.get("target")
    return None if t is None else np.asarray(t, float)


def model_label(run: RunData) -> str:
    """``designed``, ``vanilla`` or the model type, with its L1 penalty."""
    m = run.sc("model", "type")
    l1 = float(run.sc("penalty", "l1", default=0.0) or 0.0)
    if m in ("hadamard", "cumsum_hadamard"):
        name = "designed"
    elif m == "deep_hadamard":
        name = f"designed (depth {run.sc('model', 'depth')})"
    elif m == "linear":
        name = "vanilla"
    else:
        name = str(m)
    if l1 > 0:
        name += f" + L1 ({l1:g})"
    return name


def init_std(run: RunData):
    s = run.sc("init", "std")
    return s if not isinstance(s, dict) else json.dumps(s)


def scheme_label(run: RunData) -> str:
    """What the ``sgd`` runner of this run is."""
    n = run.sc("noise", default={}) or {}
    s = n.get("scheme", "full_batch")
    ln = float(n.get("label_noise", 0.0) or 0.0)
    if s == "full_batch":
        base = "full-batch"
    elif s in ("with_replacement", "without_replacement"):
        base = f"minibatch SGD (B={n.get('batch_size')}{', w/o repl.' if s == 'without_replacement' else ''})"
    elif s == "online":
        base = f"online SGD (B={n.get('batch_size')})"
    elif s == "bernoulli":
        base = f"Bernoulli({n.get('rho')}) SGD"
    else:
        base = s
    if ln > 0:
        return f"label-noise SGD (delta={ln:g})" if s == "full_batch" else f"{base} + label noise {ln:g}"
    return base

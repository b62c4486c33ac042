"""``sde-bias report FILE... [--out DIR]``: the paper's experiments, reproduced and summarised.

Reads run files (HDF5, one per scenario and variant), groups them by scenario and
recognises the six experiments of arXiv:2601.06597 (docs/paper_experiments.md) by their model
and data kind:

=====================================  ==========================================
model / data                           experiment
=====================================  ==========================================
``scalar_product``                     0 (section 6 of the summary): hyperbolas, balance law
``relu`` + ``teacher_student``         1: shallow ReLU, per-unit balance
``attention`` + ``teacher_student``    2: attention, Q/K balance
``matrix_factorization`` + completion  3: matrix completion, spectral bias
``sparse_cosine``                      4: sparse spectral recovery (inverse design)
``step_signal``                        5: piecewise-constant signal (inverse design)
=====================================  ==========================================

Anything else gets a generic table of final values. For every experiment it writes the
paper's figure (its observable against iterations: seed mean with a 10-90 % band, the
theory as dashed lines) to ``DIR/figures/`` and one markdown summary ``DIR/experiments.md``:
the paper's claim, the measured outcome (mean +- standard error over seeds), the SDE's
agreement with discrete SGD and the gradient-descent-versus-SGD difference. Numbers are
taken at the paper's step counts when a run reaches them (else at its last record, flagged).

The numbers are also returned by :func:`build_report` (a dict per experiment) for tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

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
}

TITLES = {
    "hyperbola": "Hyperbolas: the balance law",
    "relu": "Shallow ReLU network: per-unit balance",
    "attention": "Single-head attention: Q/K balance",
    "completion": "Low-rank matrix completion: spectral bias",
    "spectral": "Sparse spectral recovery: inverse design for sparsity",
    "tv": "Piecewise-constant signal: inverse design for total variation",
    "generic": "Other scenario",
}
ORDER = ["relu", "attention", "completion", "spectral", "tv", "hyperbola", "generic"]
PAPER_NUMBER = {"relu": 1, "attention": 2, "completion": 3, "spectral": 4, "tv": 5, "hyperbola": 6}

SUPPORT_THRESHOLD = 0.1
BAND = (10, 90)


# ---------------------------------------------------------------------------
# reading runs
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Group:
    name: str
    preset: str
    kind: str
    time: np.ndarray
    step: np.ndarray
    records: dict[str, np.ndarray]
    diverged_at: np.ndarray
    last_params: np.ndarray
    wall_time_s: float

    @property
    def num_seeds(self) -> int:
        return int(self.diverged_at.shape[0])

    def index_at(self, step: int | None) -> int:
        """Record index at ``step`` (the last record at or before it; the last one if None)."""
        if step is None or step >= self.step[-1]:
            return len(self.step) - 1
        return int(max(0, np.searchsorted(self.step, step, side="right") - 1))


@dataclasses.dataclass
class Run:
    path: Path
    attrs: dict[str, Any]
    scenario: dict[str, Any]
    groups: dict[str, Group]

    @property
    def name(self) -> str:
        return str(self.attrs.get("scenario_name", "?"))

    @property
    def variant(self) -> str:
        return str(self.attrs.get("variant") or "")

    @property
    def label(self) -> str:
        return self.name + (f" [{self.variant}]" if self.variant else "")

    @property
    def total_steps(self) -> int:
        return int(self.attrs.get("total_steps", 0))

    @property
    def lr(self) -> float:
        return float(self.attrs.get("lr", float("nan")))

    @property
    def num_seeds(self) -> int:
        return int(self.attrs.get("num_seeds", 0))

    @property
    def wall_time_s(self) -> float:
        return float(self.attrs.get("wall_time_s", float("nan")))

    def sgd(self) -> Group | None:
        return self.groups.get("sgd")

    def gd(self) -> Group | None:
        return self.groups.get("gd")

    def sde(self) -> Group | None:
        for k, g in self.groups.items():
            if k.startswith("sde/"):
                return g
        return None

    def runner(self, role: str) -> Group | None:
        return {"sgd": self.sgd, "sde": self.sde, "gd": self.gd}[role]()

    def command(self) -> str:
        src = self.attrs.get("source") or f"scenarios/{self.name}.yaml"
        cmd = f"sde-bias run {src}"
        if self.variant:
            cmd += f" --variant {self.variant}"
        ov = self.attrs.get("overrides")
        try:
            ov = json.loads(ov) if ov else []
        except (TypeError, ValueError):
            ov = []
        cmd += "".join(f" --set {o}" for o in ov)
        return cmd

    # scenario facts
    def sc(self, *path, default=None):
        d: Any = self.scenario
        for p in path:
            if not isinstance(d, dict) or p not in d:
                return default
            d = d[p]
        return d

    def kind(self) -> str:
        m, d = self.sc("model", "type", default=self.attrs.get("model_type")), self.sc("data", "type", default=self.attrs.get("data_type"))
        if m == "scalar_product":
            return "hyperbola"
        if m == "relu" and d == "teacher_student":
            return "relu"
        if m == "attention" and d == "teacher_student":
            return "attention"
        if m == "matrix_factorization" and d == "completion":
            return "completion"
        if d == "sparse_cosine":
            return "spectral"
        if d == "step_signal":
            return "tv"
        return "generic"

    def model_label(self) -> str:
        m = self.sc("model", "type")
        l1 = float(self.sc("penalty", "l1", default=0.0) or 0.0)
        if m in ("hadamard", "cumsum_hadamard"):
            name = "designed"
        elif m == "deep_hadamard":
            name = f"designed (depth {self.sc('model', 'depth')})"
        elif m == "linear":
            name = "vanilla"
        else:
            name = str(m)
        if l1 > 0:
            name += f" + L1 ({l1:g})"
        return name

    def init_std(self):
        s = self.sc("init", "std")
        return s if not isinstance(s, dict) else json.dumps(s)

    def scheme_label(self) -> str:
        """What the ``sgd`` runner of this run is."""
        n = self.sc("noise", default={}) or {}
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


def _decode(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def load(path) -> Run:
    """Read one run file (all records in memory)."""
    from ._filecheck import open_run, reading
    from .scenario import parse_yaml
    from .store import read_records

    path = Path(path)
    with open_run(path) as f, reading(path):
        attrs = {k: _decode(v) for k, v in f.h5.attrs.items()}
        try:
            scenario = parse_yaml(attrs.get("scenario_yaml", "") or "{}", f"{path}:scenario_yaml") or {}
        except Exception:  # noqa: BLE001 - a report should not die on an odd attribute
            scenario = {}
        groups = {}
        for p in f.runner_paths():
            g = f.h5[p]
            recs = read_records(g)
            groups[p] = Group(
                name=p,
                preset=str(_decode(g.attrs.get("preset", p))),
                kind=str(_decode(g.attrs.get("kind", ""))),
                time=g["time"][...],
                step=g["step"][...],
                records=recs,
                diverged_at=g["diverged_at"][...],
                last_params=g["last_params"][...],
                wall_time_s=float(_decode(g.attrs.get("wall_time_s", float("nan")))),
            )
        comparisons = f.h5["comparisons"].attrs.get("table") if "comparisons" in f.h5 else None
        if comparisons is not None:
            attrs["_comparisons_table"] = _decode(comparisons)
    return Run(path, attrs, scenario, groups)


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


def _g(x: float, digits: int = 3) -> str:
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
        return f"{_g(s.mean)} (all {s.n} seeds)"
    out = f"{_g(s.mean)} ± {_g(s.se, 2)}"
    if sd and s.n > 1:
        out += f" (sd {_g(s.sd, 2)})"
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
    return f"{d:+.3g} ± {_g(se, 2)} ({zs})"


def _cell(c) -> str:
    return str(c).replace("|", "\\|")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table (``|`` inside cells escaped)."""
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


ROLES = ("sgd", "sde", "gd")
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


def _finite_mean(x, axis=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _quantiles(x, axis=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(x, BAND, axis=axis)


# ---------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------


def _figure(ncols=1, nrows=1, w=4.0, h=3.3, **kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _band(ax, x, values, color, label=None, lw=1.4, ls="-", alpha=0.18):
    values = np.asarray(values, float)
    mean = _finite_mean(values, 0)
    ax.plot(x, mean, color=color, lw=lw, ls=ls, label=label)
    if values.shape[0] > 1:
        lo, hi = _quantiles(values, 0)
        ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0)


def _steps_axis(ax):
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}"))


def _legend(ax, **kw):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for ax in fig.axes:
        if ax.get_xlabel() == "iteration":
            _steps_axis(ax)
    fig.savefig(path, dpi=90)
    return path


def _cmap(n, name="viridis"):
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
    runs: list[Run]
    markdown: str = ""
    figures: list[Path] = dataclasses.field(default_factory=list)
    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)
    overview: dict[str, str] = dataclasses.field(default_factory=dict)


def _at_step_note(run: Run, g: Group, paper_steps: int | None) -> tuple[int, str]:
    i = g.index_at(paper_steps)
    step = int(g.step[i])
    note = ""
    if paper_steps is not None and step != paper_steps:
        note = f" (at step {step:,}: the run is shorter than the paper's {paper_steps:,} steps)" if step < paper_steps else ""
    return i, note


def _runs_header(runs: list[Run]) -> str:
    lines = []
    for r in runs:
        runners = ", ".join(r.groups)
        lines.append(
            f"- `{r.command()}` → `{r.path.name}`: {r.num_seeds} seeds, {r.total_steps:,} steps of lr {r.lr:g}, "
            f"runners {runners}; wall time {r.wall_time_s:.0f} s"
        )
    return "\n".join(lines)


def _base_first(runs: list[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: (r.variant != "", r.variant != "quick", r.variant))


def _paper_run(runs: list[Run]) -> Run:
    """The run at the paper's setting: the base (no variant), else quick, else the first."""
    for want in ("", "quick"):
        for r in runs:
            if r.variant == want:
                return r
    return runs[0]


# ----------------------------------------------------------------------------- 0 / 6
def section_hyperbola(sec: Section, figdir: Path) -> None:
    runs = _base_first(sec.runs)
    run = _paper_run(runs)
    lr = run.lr
    delta = float(run.sc("noise", "label_noise", default=0.0) or 0.0)
    rate_theory = lr * delta**2
    rate_discrete = -math.log(1 - lr**2 * delta**2) / lr if lr * delta < 1 else float("nan")
    md = [f"- Paper / docs/theory.md: {CLAIMS['hyperbola']}", "", _runs_header(runs), ""]
    rows = []
    nums: dict[str, Any] = {"rate_closed_form": rate_theory, "rate_discrete_closed_form": rate_discrete}
    rng = np.random.default_rng(0)
    fits = {}
    for gname, g in run.groups.items():
        if "balance/imbalance" not in g.records:
            continue
        C = np.asarray(g.records["balance/imbalance"], float).reshape(g.num_seeds, len(g.time))
        t = g.time

        def fit(Cs):
            m = _finite_mean(Cs, 0)
            ok = np.isfinite(m) & (m > 1e-12 * max(abs(m[0]), 1e-300))
            if ok.sum() < 3:
                return float("nan")
            return float(-np.polyfit(t[ok], np.log(m[ok]), 1)[0])

        r = fit(C)
        boots = [fit(C[rng.integers(0, C.shape[0], C.shape[0])]) for _ in range(200)] if C.shape[0] > 1 else []
        boots = np.asarray(boots, float)[np.isfinite(boots)]
        se = float(np.std(boots, ddof=1)) if boots.size > 1 else float("nan")  # no spread from one seed
        fits[gname] = (r, se)
        ref = 0.0 if gname == "gd" else rate_theory
        z = (r - ref) / se if se > 0 else float("nan")
        # discrete steps (SGD; Euler-Maruyama, which for label noise on one point is the same
        # random map): the exact per-step factor 1 - lr^2 g^2, g = u v x - y - eps, gives the
        # rate lr (delta^2 + E[(u v x - y)^2]), an O(lr) correction from the residual's spread
        corr = "-"
        resid = _hyperbola_residual2(run, g)
        if gname != "gd" and resid is not None and (gname == "sgd" or g.preset == "euler_maruyama"):
            r_disc = lr * (delta**2 + resid)
            rel = f"{(r - r_disc) / r_disc * 100:+.2f} %" if r_disc else f"{r - r_disc:+.2g}"
            corr = f"{r_disc:.5f} ({rel}, z {(r - r_disc) / se if se > 0 else float('nan'):+.1f})"
            nums[f"rate_{gname}_discrete_prediction"] = r_disc
        rows.append([gname, f"{r:.6g} ± {se:.1e}", f"{ref:g}", f"{(r - ref) / ref * 100:+.2f} %" if ref else "-",
                     f"{z:+.1f}" if ref else "-", corr])
        nums[f"rate_{gname}"] = {"mean": r, "se": se}
    md.append(
        f"Decay rate of the seed-mean imbalance C(t) = u² − v² (least-squares slope of log E[C] against t = step × lr, "
        f"over the whole run; ± bootstrap standard error over seeds). Closed form lr δ² = {rate_theory:g} for the SDE "
        f"(δ = {delta:g}, lr = {lr:g}). Discrete steps multiply C by exactly 1 − lr² g² with g = u v x − y − ε "
        f"(docs/theory.md section 7), so discrete SGD and Euler-Maruyama (the same random map here) decay at "
        f"lr (δ² + E[(u v x − y)²]): an O(lr) correction, evaluated with the recorded residuals (last column). "
        f"Gradient descent conserves C up to O(lr²) per step."
    )
    md.append("")
    md.append(md_table(["runner", "measured rate", "closed form (SDE)", "relative difference", "z",
                        "discrete-step prediction lr (δ² + E[(uv − y)²]) (difference, z)"], rows))
    table = run.attrs.get("_comparisons_table")
    if table:
        md += ["", "The scenario's `theory: {balance_check: true}` stage (`sde_bias.balance`): C_A0(T) of each runner "
               "against C_A0(0) plus the expected one-step increments summed along a replay of its own path: the exact "
               "discrete identity for SGD, GD and Euler-Maruyama, the continuous law with a dt-halving estimate of the "
               "solver's error for Heun (docs/comparisons.md):",
               "", "```", str(table).rstrip(), "```"]
    sec.numbers.update(nums)
    # figure
    fig, axes = _figure(ncols=2, w=4.2, h=3.8)
    ax = axes[0, 0]
    allp = [g.records["params"] for g in run.groups.values() if "params" in g.records]
    if allp:
        P = np.concatenate([a.reshape(-1, 2) for a in allp])
        P = P[np.all(np.isfinite(P), 1)]
        lim = (min(0.0, P.min()) - 0.2, P.max() + 0.2)
        grid = np.linspace(lim[0], lim[1], 200)
        U, V = np.meshgrid(grid, grid)
        ax.contour(U, V, U * V, levels=[0.25, 0.5, 1.0, 1.5, 2.0], colors="0.75", linewidths=0.7)
        ax.plot(grid, grid, "k--", lw=1, label="balanced u = v")
        for gname, g in run.groups.items():
            if "params" not in g.records:
                continue
            role = "gd" if gname == "gd" else ("sde" if gname.startswith("sde/") else "sgd")
            p = g.records["params"]
            for s in range(min(4, p.shape[0])):
                ax.plot(p[s, :, 0], p[s, :, 1], color=RUNNER_COLORS[role], lw=0.8, alpha=0.8,
                        label=gname if s == 0 else None)
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_aspect("equal")
        ax.set_xlabel("u")
        ax.set_ylabel("v")
        _legend(ax, fontsize=6, loc="upper right")
        ax.set_title("orbits u v = const, 4 trajectories per runner", fontsize=8)
    ax = axes[0, 1]
    for gname, g in run.groups.items():
        if "balance/imbalance" not in g.records:
            continue
        role = "gd" if gname == "gd" else ("sde" if gname.startswith("sde/") else "sgd")
        color = RUNNER_COLORS[role] if gname != "sde/heun" else "tab:red"
        C = np.asarray(g.records["balance/imbalance"], float).reshape(g.num_seeds, len(g.time))
        _band(ax, g.step, C, color, label=gname)
    g0 = next(iter(run.groups.values()))
    C0 = _finite_mean(np.asarray(g0.records["balance/imbalance"], float).reshape(g0.num_seeds, -1)[:, 0])
    ax.plot(g0.step, C0 * np.exp(-rate_theory * g0.time), "k--", lw=1.2, label="C(0) exp(-lr δ² t)")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("C = u² − v²")
    _legend(ax, fontsize=6)
    ax.set_title(f"imbalance, mean and 10-90 % band, {g0.num_seeds} seeds", fontsize=8)
    fig.suptitle(f"{run.label}: label-noise SGD (δ = {delta:g}) vs its SDE vs GD", fontsize=9)
    sec.figures.append(_save(fig, figdir / f"{run.name}{'-' + run.variant if run.variant else ''}.png"))
    sgd_fit = fits.get("sgd", (float("nan"), float("nan")))
    sde_fits = [v for k, v in fits.items() if k.startswith("sde/")]
    gd_fit = fits.get("gd", (float("nan"), float("nan")))
    sec.overview = {
        "measured": f"decay rate of C: SGD {sgd_fit[0]:.5g} ± {sgd_fit[1]:.1g}, "
        + ", ".join(f"{k.split('/')[-1]} {v[0]:.5g} ± {v[1]:.1g}" for k, v in fits.items() if k.startswith("sde/"))
        + f" vs closed form lr δ² = {rate_theory:g}"
        + (f" (discrete O(lr)-corrected {nums['rate_sgd_discrete_prediction']:.5g})" if "rate_sgd_discrete_prediction" in nums else ""),
        "sde": ("SDE rate − closed form: " + ", ".join(f"{k.split('/')[-1]} {_rel(v[0], rate_theory)}"
                                                  for k, v in fits.items() if k.startswith("sde/"))
                + f"; SGD {_rel(sgd_fit[0], rate_theory)}") if sde_fits else "-",
        "gd": f"GD rate {gd_fit[0]:.2g} ± {gd_fit[1]:.1g} (C conserved): the whole drift is the noise's",
    }
    sec.markdown = "\n".join(md)


def _rel(x: float, ref: float) -> str:
    """``x - ref`` in percent of ``ref`` (absolute when ``ref`` is 0: no label noise)."""
    return f"{(x - ref) / ref * 100:+.2f} %" if ref else f"{x - ref:+.2g} (closed form 0)"


def _hyperbola_residual2(run: Run, g: Group) -> float | None:
    """Time- and seed-average of the squared residual ``(u v x - y)^2`` on a one-point dataset."""
    x, y = run.sc("data", "x"), run.sc("data", "y")
    if not (isinstance(x, list) and isinstance(y, list) and len(x) == 1 and len(y) == 1):
        return None
    if "invariants" in g.records:
        w = np.asarray(g.records["invariants"], float).reshape(g.num_seeds, len(g.time), -1)[..., 0]
    elif "params" in g.records:
        p = np.asarray(g.records["params"], float)
        w = p[..., 0] * p[..., 1]
    else:
        return None
    return float(np.nanmean((w * float(x[0]) - float(y[0])) ** 2))


# ----------------------------------------------------------------------------- 1
def _unit_ratio_stats(g: Group, i: int):
    r = np.asarray(g.records["balance/unit_ratio"], float)[:, i, :]  # [S, units]
    return r


def _relu_summary_rows(run: Run, i_by_role: dict[str, int], d_in: int):
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
        stats.setdefault("geometric-mean ratio over units", {})[role] = Stat.of(np.exp(_finite_mean(lr_, 1)))
        stats.setdefault("median ratio over units", {})[role] = Stat.of(np.nanmedian(r, 1))
        stats.setdefault("mean abs log ratio (distance from 1)", {})[role] = Stat.of(_finite_mean(np.abs(lr_), 1))
        stats.setdefault(f"mean abs(log ratio + log √{d_in}) (distance from 1/√{d_in})", {})[role] = Stat.of(
            _finite_mean(np.abs(lr_ - eq), 1))
        if "test_loss" in g.records:
            stats.setdefault("test loss", {})[role] = Stat.of(g.records["test_loss"][:, i_by_role[role]])
        if "loss" in g.records:
            stats.setdefault("training loss (reference set)", {})[role] = Stat.of(g.records["loss"][:, i_by_role[role]])
    for k, v in stats.items():
        q.append((k, v))
    return q


def _relu_figure(run: Run, path: Path, d_in: int, paper_steps: int | None) -> Path:
    roles = [r for r in ROLES if run.runner(r) is not None and "balance/unit_ratio" in run.runner(r).records]
    fig, axes = _figure(ncols=len(roles), w=3.6, h=3.4, sharey=True)
    for ax, role in zip(axes[0], roles):
        g = run.runner(role)
        r = np.asarray(g.records["balance/unit_ratio"], float)
        n_units = r.shape[2]
        cols = _cmap(n_units, "coolwarm")
        for j in range(n_units):
            _band(ax, g.step, r[:, :, j], cols[j], lw=1.0, alpha=0.12)
        ax.axhline(1.0, color="k", ls="--", lw=1.0, label="paper: 1")
        ax.axhline(1 / math.sqrt(d_in), color="0.3", ls=":", lw=1.2, label=f"noise equilibrium 1/√{d_in}")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(f"{ROLE_NAMES[role]} ({g.name})", fontsize=8)
    axes[0, 0].set_ylabel("|V[:, j]| / |W[j, :]| per unit")
    _legend(axes[0, 0], fontsize=6, loc="upper right")
    n = run.num_seeds
    fig.suptitle(f"{run.label}: per-unit ratios (16 units, colour = initial log-scale), mean and 10-90 % band over "
                 f"{n} seeds; lr {run.lr:g}", fontsize=8)
    return _save(fig, path)


def _record_indices(r, paper: int | None) -> tuple[dict, str]:
    """Per role, the record index at the paper's step (or the last), and a note when a
    runner did not reach it."""
    i_by_role, note = {}, ""
    for role in ROLES:
        g = r.runner(role)
        if g is not None:
            i_by_role[role], n_ = _at_step_note(r, g, paper)
            note = note or n_
    return i_by_role, note


def section_relu(sec: Section, figdir: Path) -> None:
    runs = _base_first(sec.runs)
    run = _paper_run(runs)
    d_in = int(run.sc("model", "in_dim", default=3))
    paper = PAPER_STEPS["relu"]
    md = [f"- Paper: {CLAIMS['relu']}", "", _runs_header(runs), ""]
    # the paper's run: every unit's ratio
    i_by_role, note = _record_indices(run, paper)
    g0 = run.sgd() or next(iter(run.groups.values()))
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
        label = f"unit {j}" + (f" (start {_g(float(np.nanmean(r0[:, j])))})" if r0 is not None else "")
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
                lines.append(f"{ROLE_NAMES[role]} {_g(dist[role].mean)} ± {_g(dist[role].se, 2)}")
    md += ["", f"Distance from balance, mean |log ratio| over units: {_g(start)} at the start → " + ", ".join(lines)
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
        gsteps = next(iter(r.groups.values())).step[-1]
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
        f"mean abs log ratio {_g(start)} → {_g(dist['sgd'].mean) if 'sgd' in dist else '-'}"
        + ("; " + "; ".join(verdicts) if verdicts else ""),
        "sde": f"{ok}/{n} quantities within 2 SE (max |z| {worst:.1f})",
        "gd": "GD: " + (f"mean abs log ratio {_g(dist['gd'].mean)} vs SGD {_g(dist['sgd'].mean)}" if "gd" in dist and "sgd" in dist else "-"),
    }
    sec.markdown = "\n".join(md)


# ----------------------------------------------------------------------------- 2
def section_attention(sec: Section, figdir: Path) -> None:
    runs = _base_first(sec.runs)
    run = _paper_run(runs)
    paper = PAPER_STEPS["attention"]
    md = [f"- Paper: {CLAIMS['attention']}", "", _runs_header(runs), ""]
    for r in [run] + [x for x in runs if x is not run]:
        q = []
        i_by_role, note = _record_indices(r, paper if r is run else None)
        g0 = r.sgd() or next(iter(r.groups.values()))
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
            q.append((f"column {j} (start {_g(float(np.nanmean(c0[:, j])))})",
                      {role: Stat.of(c[:, i_by_role[role], j]) for role, c in cols.items()}))
        for key, label in (("balance/frobenius_ratio", "Frobenius ratio |W_Q|_F / |W_K|_F"),
                           ("balance/nuclear_ratio", "nuclear ratio |W_Q|_* / |W_K|_*")):
            st = {}
            for role in ROLES:
                g = r.runner(role)
                if g is not None and key in g.records:
                    st[role] = Stat.of(np.asarray(g.records[key], float)[:, i_by_role[role]])
            if st:
                start = float(np.nanmean(np.asarray(g0.records[key], float)[:, 0]))
                q.append((f"{label} (start {_g(start)})", st))
        st = {}
        for role in ROLES:
            g = r.runner(role)
            if g is not None and "balance/gram_difference" in g.records:
                G = np.asarray(g.records["balance/gram_difference"], float)
                n0 = np.linalg.norm(G[:, 0].reshape(G.shape[0], -1), axis=1)
                n1 = np.linalg.norm(G[:, i_by_role[role]].reshape(G.shape[0], -1), axis=1)
                st[role] = Stat.of(n1 / n0)
        if st:
            q.append(("|W_Q^T W_Q − W_K^T W_K|_F relative to its start (GD conserves it)", st))
        for key, label in (("test_loss", "test loss"), ("loss", "training loss (reference set)")):
            st = {role: Stat.of(r.runner(role).records[key][:, i_by_role[role]]) for role in ROLES
                  if r.runner(role) is not None and key in r.runner(role).records}
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
        fig, axes = _figure(ncols=len(roles) + 1, w=3.3, h=3.2)
        colc = _cmap(n_cols, "coolwarm")
        for ax, role in zip(axes[0], roles):
            g = r.runner(role)
            for j in range(n_cols):
                _band(ax, g.step, cols[role][:, :, j], colc[j], lw=1.0, alpha=0.12)
            ax.axhline(1.0, color="k", ls="--", lw=1.0, label="paper: 1")
            ax.set_yscale("log")
            ax.set_title(f"{ROLE_NAMES[role]}: column ratios", fontsize=8)
            ax.set_xlabel("iteration")
        axes[0, 0].set_ylabel("|W_Q[:, j]| / |W_K[:, j]|")
        _legend(axes[0, 0], fontsize=6)
        ax = axes[0, -1]
        for role in roles:
            g = r.runner(role)
            for key, ls in (("balance/frobenius_ratio", "-"), ("balance/nuclear_ratio", ":")):
                if key in g.records:
                    _band(ax, g.step, np.asarray(g.records[key], float), RUNNER_COLORS[role], ls=ls,
                          label=f"{ROLE_NAMES[role]} {'Frobenius' if ls == '-' else 'nuclear'}")
        ax.axhline(1.0, color="k", ls="--", lw=1.0)
        ax.set_yscale("log")
        ax.set_title("norm ratios |W_Q| / |W_K|", fontsize=8)
        ax.set_xlabel("iteration")
        _legend(ax, fontsize=5)
        fig.suptitle(f"{r.label}: mean and 10-90 % band over {r.num_seeds} seeds, lr {r.lr:g}", fontsize=8)
        sec.figures.append(_save(fig, figdir / f"{r.name}{'-' + r.variant if r.variant else ''}.png"))
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
    runs = _base_first(sec.runs)
    run = _paper_run(runs)
    paper = PAPER_STEPS["completion"]
    targets = [float(x) for x in (run.sc("data", "singular_values", default=[15.0, 5.0]) or [])]
    md = [f"- Paper: {CLAIMS['completion']}", "", _runs_header(runs), ""]
    for r in [run] + [x for x in runs if x is not run]:
        i_by_role, note = _record_indices(r, paper if r is run else None)
        g0 = r.sgd() or next(iter(r.groups.values()))
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
            st = {}
            for ro in ROLES:
                g = r.runner(ro)
                if g is not None and key in g.records:
                    m = np.asarray(g.records[key], float)[:, i_by_role[ro]]
                    st[ro] = Stat.of(_finite_mean(np.abs(np.log(m)), 1))
            if st:
                m0 = np.asarray(g0.records[key], float)[:, 0]
                q.append((f"{label} (start {_g(float(np.nanmean(np.abs(np.log(m0)))))})", st))
        st = {}
        for ro in ROLES:
            g = r.runner(ro)
            if g is not None and "balance/gram_difference" in g.records:
                G = np.asarray(g.records["balance/gram_difference"], float)
                n0 = np.linalg.norm(G[:, 0].reshape(G.shape[0], -1), axis=1)
                st[ro] = Stat.of(np.linalg.norm(G[:, i_by_role[ro]].reshape(G.shape[0], -1), axis=1) / n0)
        if st:
            q.append(("|P^T P − Q Q^T|_F relative to its start", st))
        for key, label in (("test_loss", "MSE on all 400 entries"), ("loss", "training loss (observed entries)"),
                           ("distance_to_target", "|P Q − M*|_F")):
            st = {ro: Stat.of(r.runner(ro).records[key][:, i_by_role[ro]]) for ro in ROLES
                  if r.runner(ro) is not None and key in r.runner(ro).records}
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
            ro: {"step": [int(x) for x in steps], "sum_log_s": _finite_mean(a_i[ro], 0).tolist(),
                 "sum_log_pairs": _finite_mean(b_i[ro], 0).tolist()} for ro in sv}
        # figure
        roles = list(sv)
        fig, axes = _figure(ncols=len(roles) + 1, w=3.3, h=3.2)
        cols = _cmap(nmodes, "plasma")
        for ax, ro in zip(axes[0], roles):
            g = r.runner(ro)
            for k in range(nmodes):
                _band(ax, g.step, sv[ro][:, :, k], cols[min(k, nmodes - 1)], lw=1.0 if k > 1 else 1.6, alpha=0.12)
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
            _band(ax, g.step, b_i[ro], RUNNER_COLORS[ro], label=f"{ROLE_NAMES[ro]} Σ log(s_i+s_j)")
            _band(ax, g.step, a_i[ro], RUNNER_COLORS[ro], ls=":", label=f"{ROLE_NAMES[ro]} Σ log s_i")
        ax.set_title("log det G pieces", fontsize=8)
        ax.set_xlabel("iteration")
        _legend(ax, fontsize=5)
        fig.suptitle(f"{r.label}: mean and 10-90 % band over {r.num_seeds} seeds", fontsize=8)
        sec.figures.append(_save(fig, figdir / f"{r.name}{'-' + r.variant if r.variant else ''}.png"))
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


# ----------------------------------------------------------------------------- 4 and 5
def _inverse_design_rows(run: Run, kind: str, i_role: dict[str, int]):
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
                target = run.attrs.get("_target")
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


def _sibling_with_gd(run: Run, runs: list[Run]) -> Run | None:
    """A run of the same model, initial scale and seeds that has a ``gd`` runner (its GD
    started from the same initial points)."""
    for o in runs:
        if o is run or o.gd() is None:
            continue
        same = (o.model_label() == run.model_label() and o.init_std() == run.init_std()
                and o.sc("seeds") == run.sc("seeds") and o.sc("data") == run.sc("data") and o.lr == run.lr)
        if same:
            return o
    return None


def _support_sets(run: Run, label: str) -> str:
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


def _attach_target(run: Run):
    if "_target" in run.attrs:
        return
    try:
        import h5py

        with h5py.File(run.path, "r") as f:
            if "data/target" in f:
                run.attrs["_target"] = np.asarray(f["data/target"][...], float)
    except OSError:
        pass


def section_inverse_design(sec: Section, figdir: Path) -> None:
    kind = sec.kind
    runs = _base_first(sec.runs)
    for r in runs:
        _attach_target(r)
    paper = PAPER_STEPS[kind]
    md = [f"- Paper: {CLAIMS[kind]}", "", _runs_header(runs), ""]
    # classify runs: model label, init std, scheme label
    main_rows = []
    sweep: dict[tuple[str, str], list] = {}
    per_model: dict[str, dict[str, dict[str, Stat]]] = {}
    any_short = ""
    nums: dict[str, Any] = {}
    base_init = {}
    for r in runs:
        if r.variant == "" or r.variant == "quick":
            base_init[r.model_label()] = r.init_std()
    for r in runs:
        i_role = {}
        for role in ROLES:
            g = r.runner(role)
            if g is not None:
                i_role[role], note = _at_step_note(r, g, paper)
                any_short = any_short or note
        st = _inverse_design_rows(r, kind, i_role)
        model = r.model_label()
        init = r.init_std()
        scheme = r.scheme_label()
        is_sweep = r.variant.startswith("init")
        key = r.variant or "base"
        nums[key] = {ROLE_NAMES[ro]: {k: v.as_dict() for k, v in s.items()} for ro, s in st.items()}
        nums[key]["_meta"] = {"model": model, "init_std": init, "scheme": scheme,
                              "step": int(next(iter(r.groups.values())).step[next(iter(i_role.values()))])}
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
    if kind == "spectral" and runs[0].attrs.get("_target") is not None:
        t = runs[0].attrs["_target"]
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
            comp.append([f"{r.variant or 'base'} ({r.model_label()}, {r.scheme_label()}){gd_from}", k,
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
            parts.append(f"{model} GD {_g(gd[key_q].mean)}")
        sg = [(k, v) for k, v in d.items() if not k.startswith("GD") and not k.startswith("SDE") and key_q in v]
        if sg:
            short = lambda k: "label-noise SGD" if k.startswith("label-noise") else ("minibatch SGD" if k.startswith("minibatch") else k)  # noqa: E731
            gd_txt = f" vs GD {_g(gd[key_q].mean)}" if gd is not None and key_q in gd else ""
            gd_parts.append(f"{model}: " + ", ".join(f"{short(k)} {_g(v[key_q].mean)}" for k, v in sg) + gd_txt)
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
                tvs.append(f"{model} {_g(gd['total variation'].mean)}")
        t = sec.runs[0].attrs.get("_target")
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
    base = _paper_run(runs)
    target = base.attrs.get("_target")
    fig, axes = _figure(ncols=3, w=3.6, h=3.2)
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
            ax.plot(x + 0.2 * (k - 1), _finite_mean(w, 0), marker="o", ms=2.5, lw=0.6, color=colors[k % 5],
                    label=f"{r.model_label()} (GD)")
        else:
            _band(ax, x, w, colors[k % 5], label=f"{r.model_label()} (GD)", lw=1.0)
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
    _legend(ax, fontsize=5)
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
            _band(ax, g.step, v, colors[k % 5], ls=ls_for[ro], lw=1.1, alpha=0.1,
                  label=f"{r.model_label()} {ROLE_NAMES[ro]}")
    if kind == "spectral":
        ax.set_ylabel("test MSE")
    else:
        ax.set_ylabel("reconstruction MSE")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    _legend(ax, fontsize=4.5, ncol=1)
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
    _legend(ax, fontsize=5)
    ax.set_title(f"initial-scale sweep at step {paper:,}", fontsize=8)
    fig.suptitle(f"{name}: {TITLES[kind]} ({base.num_seeds} seeds)", fontsize=8)
    out.append(_save(fig, figdir / f"{name}.png"))
    if kind == "tv":
        fig, axes = _figure(ncols=2, w=3.8, h=3.1)
        ax = axes[0, 0]
        for k, r in enumerate(main):
            for ro in ROLES:
                g = r.runner(ro)
                if g is None or "total_variation" not in g.records:
                    continue
                _band(ax, g.step, np.asarray(g.records["total_variation"], float), colors[k % 5], ls=ls_for[ro],
                      lw=1.1, alpha=0.1, label=f"{r.model_label()} {ROLE_NAMES[ro]}")
        if target is not None:
            ax.axhline(float(np.sum(np.abs(np.diff(target)))), color="k", ls="--", lw=1.0, label="TV of s*")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("total variation")
        _legend(ax, fontsize=5)
        ax = axes[0, 1]
        for k, r in enumerate(main):
            for ro in ROLES:
                g = r.runner(ro)
                if g is None or "loss" not in g.records:
                    continue
                _band(ax, g.step, np.asarray(g.records["loss"], float), colors[k % 5], ls=ls_for[ro], lw=1.1, alpha=0.1,
                      label=f"{r.model_label()} {ROLE_NAMES[ro]}")
        ax.axhline(0.01, color="k", ls="--", lw=1.0, label="noise variance 0.01")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("fit MSE")
        _legend(ax, fontsize=5)
        fig.suptitle(f"{name}: total variation and fit (solid GD, dashed SGD, dotted SDE)", fontsize=8)
        out.append(_save(fig, figdir / f"{name}-tv_fit.png"))
    return out


# ----------------------------------------------------------------------------- generic
def section_generic(sec: Section, figdir: Path) -> None:
    md = [_runs_header(sec.runs), ""]
    for r in sec.runs:
        q = []
        names = []
        for g in r.groups.values():
            for k, v in g.records.items():
                if v.ndim == 2 and k not in names:
                    names.append(k)
        for k in names:
            q.append((k, {ro: Stat.of(r.runner(ro).records[k][:, -1]) for ro in ROLES
                          if r.runner(ro) is not None and k in r.runner(ro).records}))
        md += [f"**{r.label}** (final records):", "", md_table(COMPARISON_HEADER, comparison_rows(q)), ""]
    sec.overview = {"measured": "see the table", "sde": "-", "gd": "-"}
    sec.markdown = "\n".join(md)


HANDLERS = {
    "hyperbola": section_hyperbola,
    "relu": section_relu,
    "attention": section_attention,
    "completion": section_completion,
    "spectral": section_inverse_design,
    "tv": section_inverse_design,
    "generic": section_generic,
}


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------


def build_report(paths: list[str], out_dir: str, notes: str | None = None) -> tuple[Path, list[Section]]:
    """Write ``out_dir/experiments.md`` and ``out_dir/figures/*.png``; return the markdown
    path and the sections (with their numbers). ``notes``: a markdown file inserted after the
    summary table (hand-written findings that survive regeneration)."""
    out = Path(out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    runs = [load(p) for p in paths]
    by_name: dict[str, list[Run]] = {}
    for r in runs:
        by_name.setdefault(r.name, []).append(r)
    sections: list[Section] = []
    for rs in by_name.values():
        kinds = {r.kind() for r in rs}
        kind = _paper_run(rs).kind() if len(kinds) > 1 else kinds.pop()
        if kind in ("spectral", "tv"):
            kind = "spectral" if any(r.kind() == "spectral" for r in rs) else "tv"
        sections.append(Section(kind, rs))
    sections.sort(key=lambda s: (ORDER.index(s.kind), s.runs[0].name))
    for sec in sections:
        HANDLERS[sec.kind](sec, figdir)
    md = _assemble(sections, out, runs, Path(notes).read_text() if notes else None)
    path = out / "experiments.md"
    path.write_text(md)
    return path, sections


def _assemble(sections: list[Section], out: Path, runs: list[Run], notes: str | None = None) -> str:
    import datetime

    lines = [
        "# The paper's experiments, reproduced",
        "",
        "Generated by `sde-bias report` from the run files listed below "
        f"({datetime.date.today().isoformat()}). Source paper: arXiv:2601.06597; settings: docs/paper_experiments.md. "
        "Every experiment runs discrete SGD (or the paper's full-batch GD), the Itô SDE of the same sampling "
        "scheme (Euler-Maruyama, dt = lr) and gradient descent from the same initial points, on the same seeds. "
        "Errors are standard errors of the mean over seeds (the standard deviation over seeds in brackets); "
        "differences between runners (SDE − SGD, GD − SGD) are paired: every runner starts from the same initial "
        "point on each seed, so the difference is the mean of the per-seed differences ± its standard error, with "
        "z = difference / standard error (the runners' noises are independent, so only their statistics can agree; "
        "|z| ≤ 2 is agreement within two standard errors). SDE = Euler-Maruyama on the Itô SDE.",
        "",
        "## Summary",
        "",
    ]
    rows = []
    for sec in sections:
        num = PAPER_NUMBER.get(sec.kind, "-")
        rows.append([str(num), TITLES[sec.kind] + f" (`{sec.runs[0].name}`)", CLAIMS.get(sec.kind, "-"),
                     sec.overview.get("measured", "-"), sec.overview.get("sde", "-"), sec.overview.get("gd", "-")])
    lines.append(md_table(["#", "experiment", "paper's claim", "measured", "SDE vs SGD", "GD vs SGD"], rows))
    if notes:
        lines += ["", notes.strip()]
    lines += ["", "## Wall times", "", "Each run file's own `wall_time_s` (all runners, including compilation), "
              f"recorded on {runs[0].attrs.get('backend', '?')} ({runs[0].attrs.get('device', '?')}, host "
              f"`{runs[0].attrs.get('hostname', '?')}`).", ""]
    wrows = []
    for r in sorted(runs, key=lambda r: (r.name, r.variant)):
        per = ", ".join(f"{k} {g.wall_time_s:.0f}" for k, g in r.groups.items())
        seed_steps = r.num_seeds * r.total_steps * len(r.groups)
        wrows.append([f"`{r.path.name}`", r.variant or "(paper)", f"{r.num_seeds}", f"{r.total_steps:,}", per,
                      f"{r.wall_time_s:.0f}", f"{seed_steps / max(r.wall_time_s, 1e-9):,.0f}"])
    total = sum(r.wall_time_s for r in runs if np.isfinite(r.wall_time_s))
    wrows.append(["**total**", "", "", "", "", f"**{total:.0f}** ({total / 60:.1f} min)", ""])
    lines.append(md_table(["file", "variant", "seeds", "steps", "per runner (s)", "total (s)", "seed-steps/s (all runners)"], wrows))
    base = [r for r in runs if r.variant == "" and r.kind() != "generic"]
    if base:
        tb = sum(r.wall_time_s for r in base if np.isfinite(r.wall_time_s))
        lines += ["", f"The paper's settings (no variant): {len(base)} files, "
                  + ", ".join(f"`{r.name}` {r.wall_time_s:.0f} s" for r in sorted(base, key=lambda r: r.name))
                  + f"; together **{tb:.0f} s ({tb / 60:.1f} min)** for every runner (SGD or the paper's GD, the SDE, GD) "
                  "on " + ", ".join(f"{n} seeds ({', '.join(sorted(r.name for r in base if r.num_seeds == n))})"
                                    for n in sorted({r.num_seeds for r in base})) +
                  ". The paper's own code runs one seed of each experiment, about 1 to 2 hours in all by its README."]
    lines += ["", "Reproduce: `sde-bias run scenarios/<name>.yaml [--variant <variant>] --quiet` for every file below "
              "(outputs in `data/runs/`), then `sde-bias report data/runs/*.h5 --out docs`."]
    for sec in sections:
        num = PAPER_NUMBER.get(sec.kind)
        title = f"## {num}. {TITLES[sec.kind]}" if num else f"## {TITLES[sec.kind]}: `{sec.runs[0].name}`"
        lines += ["", title, ""]
        for fpath in sec.figures:
            rel = fpath.relative_to(out) if fpath.is_relative_to(out) else fpath
            lines.append(f"![{fpath.stem}]({rel.as_posix()})")
        lines += ["", sec.markdown]
    lines.append("")
    return "\n".join(lines)


def main_report(paths: list[str], out_dir: str, notes: str | None = None) -> int:
    """The ``sde-bias report`` command: returns the exit code (0 ok). Missing or unreadable
    files raise :class:`~sde_bias.scenario.UserError` (exit code 2 in the CLI)."""
    from .scenario import UserError

    if not paths:
        raise UserError("report: give at least one run file")
    for p in list(paths) + ([notes] if notes else []):
        if not Path(p).exists():
            raise UserError(f"{p}: no such file")
        if not Path(p).is_file():
            raise UserError(f"{p}: not a file")
    from .outputs import check_folder

    check_folder(Path(out_dir) / "figures", "report --out")
    md, sections = build_report([str(p) for p in paths], out_dir, notes)
    print(f"wrote {md} and {sum(len(s.figures) for s in sections)} figures in {Path(out_dir) / 'figures'}")
    return 0


__all__ = ["main_report", "build_report", "load", "Stat"]

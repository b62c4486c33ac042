"""The scenario's ``theory:`` block: symmetry, quotient and Fokker-Planck checks of a run,
stored in the run's HDF5 file (docs/theory.md sections 2-5).

Keys (all optional; an empty block does nothing)::

    theory:
      invariants: default            # q = model.invariants, or singular_values (of model.matrix)
      effective_drift:               # a(q), D(q) of the quotient SDE per fiber measure
        fibers: [section, noise_equilibrium, empirical]
        grid: {linspace: [a, b, n]}  # 1-D invariants, for section / noise_equilibrium
        runner: sgd                  # empirical: its recorded params, binned on q[component]
        component: 0
        bins: 12
      drift_check:                   # three-way effective-drift comparison at K points
        points: section              # section: balanced representatives of a q grid;
                                     # final / initial: states of the first K seeds of `from`
        grid: {linspace: [a, b, K]}  # q values for `section` (1-D invariants)
        from: sgd                    # runner whose recorded params give final points
        num_points: 10
        replicates: 20000            # independent one-point runs per point
        steps: 1                     # unit steps per increment (h = steps * lr)
        sgd: sgd                     # preset giving the discrete estimate
        sde: euler_maruyama          # preset giving the SDE estimate
      stationary_check:              # long-run law of q[component] against Fokker-Planck
        runner: euler_maruyama       # whose final records (one per seed) are the samples
        component: 0
        grid: {linspace: [a, b, n]}  # where a(q), D(q) are evaluated on the section
        bins: 20
      balance_check: true            # recorded C(t) against the balance law integrated
                                     # along the recorded states (needs `params` recorded)

Written to ``/theory/<check>`` (arrays and attributes) and ``/comparisons`` (the table
``sde-bias inspect`` prints).
"""

from __future__ import annotations

from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .compare import ComparisonRow, drift_check, format_table, rows_to_arrays
from .scenario import ScenarioError


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Linspace(_Block):
    linspace: tuple[float, float, int]


class DriftCheckConfig(_Block):
    points: Literal["section", "final", "initial"] = "section"
    grid: _Linspace | None = None
    from_: str = Field("sgd", alias="from")
    num_points: int = Field(10, ge=1)
    replicates: int = Field(20_000, ge=2)
    steps: int = Field(1, ge=1)
    sgd: str = "sgd"
    sde: str = "euler_maruyama"


class StationaryCheckConfig(_Block):
    runner: str = "euler_maruyama"
    component: int = Field(0, ge=0)
    grid: _Linspace
    bins: int = Field(20, ge=3)


class EffectiveDriftConfig(_Block):
    fibers: list[Literal["section", "noise_equilibrium", "empirical"]] = ["section"]
    grid: _Linspace | None = None
    runner: str = "sgd"
    component: int = Field(0, ge=0)
    bins: int = Field(12, ge=2)


class TheoryConfig(_Block):
    invariants: Literal["default", "singular_values"] = "default"
    effective_drift: EffectiveDriftConfig | None = None
    drift_check: DriftCheckConfig | None = None
    stationary_check: StationaryCheckConfig | None = None
    balance_check: bool = False


def parse_theory(block: dict[str, Any], source: str = "<scenario>") -> TheoryConfig:
    """Validate a ``theory:`` block; errors name ``theory.<key path>``."""
    try:
        return TheoryConfig.model_validate(block or {})
    except ValidationError as e:
        problems = [
            ("theory." + ".".join(str(p) for p in err["loc"]), err["msg"], err.get("input"))
            for err in e.errors()
        ]
        raise ScenarioError(source, problems) from None


def invariant_map(model, kind: str):
    if kind == "default":
        return model.invariants
    if not hasattr(model, "matrix"):
        raise ValueError(f"invariants: singular_values needs a model with a matrix, not {type(model).__name__}")
    return lambda th: jnp.linalg.svd(model.matrix(th), compute_uv=False)


def _linspace(spec: _Linspace) -> np.ndarray:
    a, b, n = spec.linspace
    return np.linspace(a, b, int(n))


def _runner_stepper(setup, name: str):
    from .build import make_runner
    from .presets import get_preset

    return make_runner(setup, get_preset(name)).stepper


def _group_for(h5, name: str):
    for g in (name, f"sde/{name}"):
        if g in h5:
            return h5[g]
    raise KeyError(f"no runner group {name!r} in the file (runners: {list(h5.keys())})")


def _replace(parent, name):
    if name in parent:
        del parent[name]
    return parent.create_group(name)


# ----------------------------------------------------------------------------- checks
def run_drift_check(cfg: DriftCheckConfig, setup, h5, q_map) -> list[ComparisonRow]:
    model, sc = setup.problem.model, setup.scenario
    if cfg.points == "section":
        if cfg.grid is None:
            raise ScenarioError(sc.source, [("theory.drift_check.grid", "points: section needs a grid of q values", None)])
        qs = jnp.asarray(_linspace(cfg.grid), setup.dtype)[:, None]
        thetas = jax.vmap(model.section)(qs)
    elif cfg.points == "initial":
        thetas = setup.theta0[: cfg.num_points]
    else:
        g = _group_for(h5, cfg.from_)
        if "last_params" not in g:
            raise ScenarioError(sc.source, [("theory.drift_check.from", f"runner {cfg.from_!r} has no saved parameters", cfg.from_)])
        thetas = jnp.asarray(g["last_params"][: cfg.num_points], setup.dtype)
    data = setup.seed0_data
    sgd = _runner_stepper(setup, cfg.sgd)
    sde_stepper = _runner_stepper(setup, cfg.sde)
    chk = drift_check(
        sgd, sde_stepper, sde_stepper.sde, thetas, q_map, data,
        replicates=cfg.replicates, steps=cfg.steps, key=jax.random.PRNGKey(int(sc.seeds.base) + 7919),
    )
    grp = _replace(h5.require_group("theory"), "drift_check")
    for name, arr in {
        "q": chk.q, "points": np.asarray(thetas), "sgd_mean": chk.sgd.mean, "sgd_se": chk.sgd.se,
        "sde_mean": chk.sde.mean, "sde_se": chk.sde.se, "gradient_part": chk.gradient_part,
        "geometric_part": chk.geometric_part, "theory": chk.theory,
    }.items():
        grp.create_dataset(name, data=np.asarray(arr, float))
    for k, v in chk.max_abs_z().items():
        grp.attrs[f"max_abs_z_{k}"] = v
    grp.attrs["horizon"] = chk.sgd.horizon
    grp.attrs["replicates"] = cfg.replicates
    grp.attrs["sgd_preset"], grp.attrs["sde_preset"] = cfg.sgd, cfg.sde
    return chk.rows()


def run_stationary_check(cfg: StationaryCheckConfig, setup, h5, q_map) -> list[ComparisonRow]:
    from .fokker_planck import stationary_density_1d
    from .quotient import isotropic_temperature, normalise_on_grid, paper_log_density, section_average
    from .stats import chi2_goodness_of_fit
    from .symmetry import log_det_gram

    model, sc = setup.problem.model, setup.scenario
    g = _group_for(h5, cfg.runner)
    if "invariants" not in g:
        raise ScenarioError(sc.source, [("theory.stationary_check.runner", "needs `invariants` in record:", cfg.runner)])
    final = np.asarray(g["invariants"][:, -1, cfg.component])
    samples = final[np.isfinite(final)]
    grid = _linspace(cfg.grid)
    data = setup.seed0_data
    sde = _runner_stepper(setup, cfg.runner).sde
    qg = jnp.asarray(grid, setup.dtype)[:, None]
    coeffs = section_average(sde, q_map, model.section, qg, data)
    a = np.asarray(coeffs.drift[:, cfg.component])
    D = np.asarray(coeffs.diffusion[:, cfg.component, cfg.component])
    fp = stationary_density_1d(a, D, grid)
    thetas = jax.vmap(model.section)(qg)
    loss = np.asarray(jax.vmap(lambda th: setup.problem.empirical_loss(th, data))(thetas))
    ldg = np.asarray(jax.vmap(lambda th: log_det_gram(model, th).log_det)(thetas))
    T = float(jnp.mean(jax.vmap(lambda th: isotropic_temperature(sde, th, data))(thetas)))
    paper = normalise_on_grid(paper_log_density(loss, ldg, T), grid)
    edges = np.linspace(grid[0], grid[-1], cfg.bins + 1)
    dens = lambda p: (lambda x: np.interp(x, grid, p))  # noqa: E731
    short = ""
    try:
        gof_fp = chi2_goodness_of_fit(samples, dens(fp), [edges])
        gof_paper = chi2_goodness_of_fit(samples, dens(paper), [edges])
        p_fp, p_paper, dof = gof_fp.pvalue, gof_paper.pvalue, gof_fp.dof
    except ValueError as e:  # too few samples in the grid: a fact about the data, not a bug
        p_fp = p_paper = float("nan")
        dof = 0
        short = f"insufficient data: {samples.size} finite samples ({e})"
    grp = _replace(h5.require_group("theory"), "stationary_check")
    for name, arr in {"grid": grid, "fokker_planck_density": fp, "paper_density": paper, "drift": a, "diffusion": D,
                      "geometric_part": np.asarray(coeffs.geometric_part[:, cfg.component]),
                      "log_det_gram": ldg, "samples": samples}.items():
        grp.create_dataset(name, data=np.asarray(arr, float))
    grp.attrs.update({
        "runner": cfg.runner, "component": cfg.component, "temperature": T,
        "chi2_pvalue_fokker_planck": p_fp, "chi2_pvalue_paper": p_paper,
        "chi2_dof": dof, "num_samples": samples.size, "chi2_note": short,
    })
    mean_fp = float(np.trapezoid(grid * fp, grid))
    mean_paper = float(np.trapezoid(grid * paper, grid))
    n = samples.size
    mean = float(samples.mean()) if n else np.nan
    se = float(samples.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
    rows = [
        ComparisonRow(f"stationary mean q[{cfg.component}] vs Fokker-Planck", np.nan, np.nan, mean, se, mean_fp),
        ComparisonRow(f"stationary mean q[{cfg.component}] vs paper density", np.nan, np.nan, mean, se, mean_paper),
    ]
    if short:
        rows.append(ComparisonRow(f"chi-square q[{cfg.component}]: insufficient data ({n} samples)", *[np.nan] * 5))
    return rows


def run_effective_drift(cfg: EffectiveDriftConfig, setup, h5, q_map) -> None:
    """a(q) and D(q) of the quotient SDE under each fiber measure (docs/theory.md section 3.3):
    ``section`` (balanced representative) and ``noise_equilibrium`` (the point of the orbit
    where tr(Cov A) = 0 for every symmetric generator) on a grid of a 1-D invariant, and
    ``empirical`` (coefficients at every recorded state of ``runner``, binned on
    ``q[component]``). Stored in /theory/effective_drift/<fiber>."""
    from .quotient import empirical_average, section_average
    from .sde import SGDSDE
    from .symmetry import noise_equilibrium, symmetric_generators

    model, sc = setup.problem.model, setup.scenario
    data = setup.seed0_data
    sde = SGDSDE(setup.problem, float(sc.training.lr))
    out = _replace(h5.require_group("theory"), "effective_drift")
    for fiber in cfg.fibers:
        grp = out.create_group(fiber)
        if fiber in ("section", "noise_equilibrium"):
            if cfg.grid is None:
                raise ScenarioError(sc.source, [("theory.effective_drift.grid", f"fiber {fiber} needs a grid of q values", None)])
            qg = jnp.asarray(_linspace(cfg.grid), setup.dtype)[:, None]
            if fiber == "section":
                rep = model.section
            else:
                A = jnp.asarray(symmetric_generators(model, setup.theta0[0]), setup.dtype)
                sigma_fn = lambda th: sde.diffusion_matrix(0.0, th, data)  # noqa: E731
                rep = lambda q: noise_equilibrium(model, model.section(q), sigma_fn, A).theta  # noqa: E731
            c = section_average(sde, q_map, rep, qg, data)
            grp.create_dataset("q", data=np.asarray(qg[:, 0]))
            for name in ("gradient_part", "geometric_part", "drift", "diffusion"):
                grp.create_dataset(name, data=np.asarray(getattr(c, name)))
        else:
            g = _group_for(h5, cfg.runner)
            if "params" not in g:
                raise ScenarioError(sc.source, [("theory.effective_drift.runner", "fiber empirical needs `params` in record:", cfg.runner)])
            th = jnp.asarray(g["params"][...], setup.dtype).reshape(-1, model.num_params)
            th = th[jnp.all(jnp.isfinite(th), axis=1)]
            x = np.asarray(jax.vmap(q_map)(th))[:, cfg.component]
            edges = np.linspace(np.percentile(x, 1), np.percentile(x, 99), cfg.bins + 1)
            b = empirical_average(sde, q_map, th, data, edges, coordinate=lambda q: q[cfg.component])
            for name in ("centres", "drift", "drift_se", "geometric", "diffusion", "count"):
                grp.create_dataset(name, data=np.asarray(getattr(b, name)))
            grp.attrs["runner"] = cfg.runner


def run_balance_check(setup, h5) -> list[ComparisonRow]:
    """Recorded conserved-by-GD quadratics C_A(t) = theta^T A theta (A symmetric generators)
    against C_A(0) + integral of the balance law eta tr(Cov A) along each recorded path.

    The integral uses the trapezoid rule on the recorded states, so the prediction has a
    quadrature error O((record interval)^2); the SE in the table is the spread over seeds
    of the per-seed residual and does not include it."""
    from .symmetry import balance_rate, symmetric_generators

    model, sc = setup.problem.model, setup.scenario
    data = setup.seed0_data
    rows = []
    out = _replace(h5.require_group("theory"), "balance_check")
    A = symmetric_generators(model, setup.theta0[0])
    A = jnp.asarray(A, setup.dtype)
    if A.shape[0] == 0:
        return rows
    for name in list(h5.keys()):
        groups = [h5[name]] if name != "sde" else [h5["sde"][k] for k in h5["sde"]]
        for g in groups:
            if "params" not in g:
                continue
            stepper = _runner_stepper(setup, g.attrs["preset"])
            if hasattr(stepper, "sde"):
                sde = stepper.sde
            else:
                # discrete runners follow the law of their own scheme's SDE to O(lr);
                # gradient descent (full batch, no noise) conserves C exactly
                from .sde import SGDSDE

                sde = SGDSDE(eqx.tree_at(lambda pb: pb.scheme, setup.problem, stepper.scheme), float(sc.training.lr))
            th = jnp.asarray(g["params"][...], setup.dtype)  # [S, T, p]
            t = np.asarray(g["time"][...])
            C = np.asarray(jnp.einsum("stp,apq,stq->sta", th, A, th))

            def rate(theta):
                sigma = sde.diffusion_matrix(0.0, theta, data)  # sqrt(lr) sigma
                return jax.vmap(lambda a: balance_rate(a, sigma, 1.0))(A)

            r = np.asarray(jax.vmap(jax.vmap(rate))(th))  # [S, T, a]
            pred = C[:, :1] + np.concatenate([np.zeros_like(r[:, :1]), np.cumsum(0.5 * (r[:, 1:] + r[:, :-1]) * np.diff(t)[None, :, None], axis=1)], axis=1)
            sub = out.create_group(g.name.strip("/").replace("/", "."))
            sub.create_dataset("recorded", data=C.mean(0))
            sub.create_dataset("predicted", data=pred.mean(0))
            err = (C - pred)[:, -1, 0]
            se = float(err.std(ddof=1) / np.sqrt(err.shape[0])) if err.shape[0] > 1 else 0.0
            rec, prd = float(C[:, -1, 0].mean()), float(pred[:, -1, 0].mean())
            is_sde = g.name.startswith("/sde")
            label = f"C_A0(t_final) {g.name.strip('/')}"
            nan = float("nan")
            rows.append(ComparisonRow(label, nan if is_sde else rec, nan if is_sde else se,
                                      rec if is_sde else nan, se if is_sde else nan, prd))
    return rows


def theory_hook(sc, setup, h5) -> list[ComparisonRow]:
    """Run the checks the scenario's ``theory:`` block asks for and store them."""
    cfg = parse_theory(getattr(sc, "theory", {}) or {}, getattr(sc, "source", "<scenario>"))
    if cfg.drift_check is None and cfg.stationary_check is None and cfg.effective_drift is None and not cfg.balance_check:
        return []
    q_map = invariant_map(setup.problem.model, cfg.invariants)
    rows: list[ComparisonRow] = []
    if cfg.effective_drift is not None:
        run_effective_drift(cfg.effective_drift, setup, h5, q_map)
    if cfg.drift_check is not None:
        rows += run_drift_check(cfg.drift_check, setup, h5, q_map)
    if cfg.stationary_check is not None:
        rows += run_stationary_check(cfg.stationary_check, setup, h5, q_map)
    if cfg.balance_check:
        rows += run_balance_check(setup, h5)
    comp = _replace(h5, "comparisons")
    for k, v in rows_to_arrays(rows).items():
        if v.dtype == object:
            comp.create_dataset(k, data=np.array(v, dtype="S"))
        else:
            comp.create_dataset(k, data=v)
    comp.attrs["table"] = format_table(rows)
    return rows

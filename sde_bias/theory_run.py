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
      balance_check: true            # C_A(T) of every fixed-step runner against C_A(0) plus
                                     # the predicted increments summed along a replay of its
                                     # own path (sde_bias.balance)

Written to ``/theory/<check>`` (arrays and attributes) and ``/comparisons``: one row per
quantity and runner with value, standard error, relative error, z, the estimated
discretisation error of the runner and a verdict (``sde_bias.verdict``; the table that
``sde-bias inspect`` prints). A scenario's ``convergence:`` block with ``in_run: true`` is
run first (``sde_bias.converge_run``), so the verdicts can use its fitted orders.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .compare import drift_check
from .errors import ScenarioError
from .reader import RunData, read_h5
from .store import GroupData, RunFile
from .theory_config import (
    DriftCheckConfig,
    EffectiveDriftConfig,
    Linspace,
    StationaryCheckConfig,
    TheoryConfig as TheoryConfig,  # re-exported: the block's classes live in theory_config
    parse_theory,
)
from .verdict import Comparison, comparisons_group


def invariant_map(model, kind: str):
    if kind == "default":
        return model.invariants
    if not hasattr(model, "matrix"):
        raise ValueError(f"invariants: singular_values needs a model with a matrix, not {type(model).__name__}")
    return lambda th: jnp.linalg.svd(model.matrix(th), compute_uv=False)


def _linspace(spec: Linspace) -> np.ndarray:
    a, b, n = spec.linspace
    return np.linspace(a, b, int(n))


def _runner_stepper(setup, name: str):
    """The stepper of the plain preset ``name`` (no ``runner_options``)."""
    from .build import make_runner
    from .presets import get_preset

    return make_runner(setup, get_preset(name)).stepper


def _run_runner(setup, name: str):
    """The runner of preset ``name`` as the run used it (with the scenario's ``runner_options``)."""
    from .build import make_runner
    from .presets import get_preset, resolve_preset

    return make_runner(setup, resolve_preset(get_preset(name), setup.scenario.runner_options.get(name)))


def _weak_order(setup, run: RunData | None, preset_name: str, stepper) -> tuple[float, str]:
    """Weak order for a dt-halving estimate: fitted by the run's converge study when it has
    one for this preset, else the solver's known order for the scenario's noise class."""
    from .refine import known_orders, noise_class

    conv = run.convergence if run is not None else None
    g = conv.groups.get(preset_name) if conv is not None else None
    if g is not None and np.isfinite(g.attrs.get("weak_order", np.nan)):
        p, se = float(g.attrs["weak_order"]), float(g.attrs.get("weak_order_se", np.nan))
        return p, f"order {p:.2f} ± {se:.2g} from the converge study"
    st = getattr(stepper, "stepper", stepper)
    solver = type(st.solver).__name__
    from .presets import SOLVERS

    name = next((k for k, v in SOLVERS.items() if v == solver), solver)
    cls = noise_class(st.sde, setup.theta0[: min(8, setup.num_seeds)], setup.seed0_data)
    orders = known_orders(name, cls)
    if orders is None:
        return 1.0, f"weak order 1 assumed ({name}, {cls} noise)"
    return orders[0], f"weak order {orders[0]:g} ({name}, {cls} noise)"


# ----------------------------------------------------------------------------- checks
def run_drift_check(cfg: DriftCheckConfig, setup, run: RunData, q_map) -> tuple[GroupData, list[Comparison]]:
    """The three-way effective-drift comparison (``/theory/drift_check``) and its rows."""
    model, sc = setup.problem.model, setup.scenario
    if cfg.points == "section":
        if cfg.grid is None:
            raise ScenarioError(sc.source, [("theory.drift_check.grid", "points: section needs a grid of q values", None)])
        qs = jnp.asarray(_linspace(cfg.grid), setup.dtype)[:, None]
        thetas = jax.vmap(model.section)(qs)
    elif cfg.points == "initial":
        thetas = setup.theta0[: cfg.num_points]
    else:
        try:
            g = run.runner_named(cfg.from_)
        except KeyError:
            raise ScenarioError(sc.source, [("theory.drift_check.from", f"runner {cfg.from_!r} has no saved parameters", cfg.from_)]) from None
        thetas = jnp.asarray(g.last_params[: cfg.num_points], setup.dtype)
    data = setup.seed0_data
    sgd = _runner_stepper(setup, cfg.sgd)
    sde_stepper = _runner_stepper(setup, cfg.sde)
    chk = drift_check(
        sgd, sde_stepper, sde_stepper.sde, thetas, q_map, data,
        replicates=cfg.replicates, steps=cfg.steps, key=jax.random.PRNGKey(int(sc.seeds.base) + 7919),
    )
    arrays = {
        name: np.asarray(arr, float)
        for name, arr in {
            "q": chk.q, "points": np.asarray(thetas), "sgd_mean": chk.sgd.mean, "sgd_se": chk.sgd.se,
            "sde_mean": chk.sde.mean, "sde_se": chk.sde.se, "gradient_part": chk.gradient_part,
            "geometric_part": chk.geometric_part, "theory": chk.theory,
            "sgd_bias": chk.sgd_bias, "sde_bias": chk.sde_bias,
        }.items()
        if arr is not None
    }
    attrs = {"bias_source": chk.bias_source}
    attrs.update({f"max_abs_z_{k}": v for k, v in chk.max_abs_z().items()})
    attrs.update({"horizon": chk.sgd.horizon, "replicates": cfg.replicates, "sgd_preset": cfg.sgd, "sde_preset": cfg.sde})
    return GroupData(arrays, attrs), chk.comparisons(cfg.sgd, cfg.sde)


def run_stationary_check(cfg: StationaryCheckConfig, setup, run: RunData, q_map) -> tuple[GroupData, list[Comparison]]:
    """The long-run law of ``q[component]`` against Fokker-Planck (``/theory/stationary_check``)
    and its rows; ``run`` must hold the runner's ``invariants`` records (at least the last)."""
    from .fokker_planck import stationary_density_1d
    from .quotient import isotropic_temperature, normalise_on_grid, paper_log_density, section_average
    from .stats import chi2_goodness_of_fit
    from .symmetry import log_det_gram

    model, sc = setup.problem.model, setup.scenario
    g = run.runner_named(cfg.runner)
    if "invariants" not in g.records:
        raise ScenarioError(sc.source, [("theory.stationary_check.runner", "needs `invariants` in record:", cfg.runner)])
    final = np.asarray(g.records["invariants"][:, -1, cfg.component])
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
    arrays = {name: np.asarray(arr, float) for name, arr in {
        "grid": grid, "fokker_planck_density": fp, "paper_density": paper, "drift": a, "diffusion": D,
        "geometric_part": np.asarray(coeffs.geometric_part[:, cfg.component]),
        "log_det_gram": ldg, "samples": samples}.items()}
    attrs = {
        "runner": cfg.runner, "component": cfg.component, "temperature": T,
        "chi2_pvalue_fokker_planck": p_fp, "chi2_pvalue_paper": p_paper,
        "chi2_dof": dof, "num_samples": samples.size, "chi2_note": short,
    }
    mean_fp = float(np.trapezoid(grid * fp, grid))
    var_fp = float(np.trapezoid((grid - mean_fp) ** 2 * fp, grid))
    mean_paper = float(np.trapezoid(grid * paper, grid))
    n = samples.size
    mean = float(samples.mean()) if n else np.nan
    se = float(samples.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
    var = float(samples.var(ddof=1)) if n > 1 else np.nan
    var_se = float(((samples - samples.mean()) ** 2).std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
    disc = _stationary_disc(cfg, setup, run, q_map)
    attrs["disc_source"] = disc["source"]
    c = cfg.component
    name = g.path.strip("/")
    d_mean, d_var = disc["mean"], disc["variance"]
    rows = [
        Comparison("stationary law", f"mean q[{c}] vs Fokker-Planck", name, mean, se, mean_fp,
                   d_mean[0], d_mean[1], disc["source"]),
        Comparison("stationary law", f"variance q[{c}] vs Fokker-Planck", name, var, var_se, var_fp,
                   d_var[0], d_var[1], disc["source"]),
        Comparison("stationary law", f"mean q[{c}] vs paper density", name, mean, se, mean_paper,
                   d_mean[0], d_mean[1], disc["source"], exact=False),
    ]
    if short:
        rows.append(Comparison("stationary law", f"chi-square q[{c}] ({n} samples)", name, np.nan, np.nan, np.nan,
                               disc_source="too few samples for a chi-square test", insufficient=True))
    return GroupData(arrays, attrs), rows


HALVING_SEEDS = 128
"""Seeds of a dt-halving study (the estimate is a difference on the same paths, so a few
hundred paths give it a small standard error)."""


def _stationary_disc(cfg: StationaryCheckConfig, setup, run: RunData, q_map) -> dict:
    """dt-halving estimate of the discretisation error of the final-sample mean and variance
    of ``q[component]`` (SDE runners only): the runner's stepper at ``dt`` and ``dt / 2`` on
    the same Brownian paths from the first seeds (:data:`HALVING_SEEDS`)."""
    from .build import FixedStepRunner
    from .convergence import contributions, halving_estimate
    from .refine import refined

    nan2 = (float("nan"), float("nan"))
    runner = _run_runner(setup, cfg.runner)
    if not isinstance(runner, FixedStepRunner) or not hasattr(runner.stepper, "sde"):
        kind = "adaptive steps" if not isinstance(runner, FixedStepRunner) else "discrete runner: O(lr) by construction"
        return {"mean": nan2, "variance": nan2, "source": f"not estimated ({kind})"}
    from .integrate import run_ensemble

    sc = setup.scenario
    S = min(HALVING_SEEDS, setup.num_seeds)
    c = cfg.component
    finals = []
    for lvl in (1, 2):
        out = run_ensemble(
            refined(runner.stepper, lvl, 2), setup.theta0[:S], setup.run_keys[:S], setup.data,
            lambda th, d: {"q": q_map(th)[c]}, num_steps=sc.total_steps, record_every=sc.total_steps,
            data_batched=setup.data_batched, divergence_threshold=float(sc.training.divergence_threshold),
        )
        finals.append(np.asarray(out["records"]["q"][:, -1]))
    x = np.stack(finals)
    x = x[:, np.all(np.isfinite(x), axis=0)]
    order, src = _weak_order(setup, run, cfg.runner, runner.stepper)
    out = {"source": f"dt-halving, {src}"}
    for mom in ("mean", "variance"):
        y = contributions(x, mom)
        est = halving_estimate(y[0], y[1], order)
        out[mom] = (est.error, est.se)
    return out


def run_effective_drift(cfg: EffectiveDriftConfig, setup, run: RunData, q_map) -> GroupData:
    """a(q) and D(q) of the quotient SDE under each fiber measure (docs/theory.md section 3.3):
    ``section`` (balanced representative) and ``noise_equilibrium`` (the point of the orbit
    where tr(Cov A) = 0 for every symmetric generator) on a grid of a 1-D invariant, and
    ``empirical`` (coefficients at every recorded state of ``runner``, binned on
    ``q[component]``). One subgroup per fiber (stored in /theory/effective_drift/<fiber>)."""
    from .quotient import empirical_average, section_average
    from .sde import SGDSDE
    from .symmetry import noise_equilibrium, symmetric_generators

    model, sc = setup.problem.model, setup.scenario
    data = setup.seed0_data
    sde = SGDSDE(setup.problem, float(sc.training.lr))
    out: dict[str, GroupData] = {}
    for fiber in cfg.fibers:
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
            arrays = {"q": np.asarray(qg[:, 0])}
            arrays.update({name: np.asarray(getattr(c, name)) for name in ("gradient_part", "geometric_part", "drift", "diffusion")})
            out[fiber] = GroupData(arrays)
        else:
            g = run.runner_named(cfg.runner)
            if "params" not in g.records:
                raise ScenarioError(sc.source, [("theory.effective_drift.runner", "fiber empirical needs `params` in record:", cfg.runner)])
            th = jnp.asarray(g.records["params"], setup.dtype).reshape(-1, model.num_params)
            th = th[jnp.all(jnp.isfinite(th), axis=1)]
            x = np.asarray(jax.vmap(q_map)(th))[:, cfg.component]
            edges = np.linspace(np.percentile(x, 1), np.percentile(x, 99), cfg.bins + 1)
            b = empirical_average(sde, q_map, th, data, edges, coordinate=lambda q: q[cfg.component])
            arrays = {name: np.asarray(getattr(b, name)) for name in ("centres", "drift", "drift_se", "geometric", "diffusion", "count")}
            out[fiber] = GroupData(arrays, {"runner": cfg.runner})
    return GroupData(groups=out)


def run_balance_check(setup, run: RunData) -> tuple[GroupData, list[Comparison]]:
    """The balance check of every fixed-step runner of the run (:func:`sde_bias.balance.balance_check`):
    one subgroup per runner (stored in ``/theory/balance_check/<runner>``) and its rows."""
    from .balance import balance_check
    from .build import FixedStepRunner

    steppers, orders, skipped = {}, {}, []
    for path, g in run.runners.items():
        runner = _run_runner(setup, g.preset)
        if not isinstance(runner, FixedStepRunner):
            skipped.append(path)
            continue
        steppers[path] = runner.stepper
        if hasattr(runner.stepper, "sde"):
            orders[path] = _weak_order(setup, run, g.preset, runner.stepper)
    rows, arrays = balance_check(setup, steppers, weak_orders=orders, halving_seeds=HALVING_SEEDS)
    attrs = {
        "skipped": ", ".join(skipped),
        "method": "C_A(T) against C_A(0) + the expected one-step increments summed along a replay of the runner's "
        "own path (discrete runners and Euler-Maruyama: the exact discrete identity; other solvers: the continuous "
        "law, with a dt-halving estimate of its O(dt) error)",
    }
    groups = {path.replace("/", "."): GroupData({k: np.asarray(v, float) for k, v in arrs.items()})
              for path, arrs in arrays.items()}
    return GroupData(attrs=attrs, groups=groups), rows


@dataclasses.dataclass(frozen=True)
class TheoryResult:
    """What the theory stage computed: ``groups[name]`` goes to ``/theory/<name>``, ``rows``
    to ``/comparisons`` (when there are any)."""

    groups: dict[str, GroupData]
    rows: list[Comparison]


def theory_records(cfg: TheoryConfig) -> set[str]:
    """The observables the checks of ``cfg`` read from the run's records."""
    out = set()
    if cfg.stationary_check is not None:
        out.add("invariants")
    if cfg.effective_drift is not None and "empirical" in cfg.effective_drift.fibers:
        out.add("params")
    return out


def theory_stage(cfg: TheoryConfig, setup, run: RunData) -> TheoryResult:
    """Run the checks that ``cfg`` asks for on a run (read with :func:`sde_bias.reader.read_h5`,
    holding at least :func:`theory_records`); nothing is written."""
    groups: dict[str, GroupData] = {}
    rows: list[Comparison] = []
    if cfg.drift_check is None and cfg.stationary_check is None and cfg.effective_drift is None and not cfg.balance_check:
        return TheoryResult(groups, rows)
    q_map = invariant_map(setup.problem.model, cfg.invariants)
    if cfg.effective_drift is not None:
        groups["effective_drift"] = run_effective_drift(cfg.effective_drift, setup, run, q_map)
    if cfg.drift_check is not None:
        groups["drift_check"], r = run_drift_check(cfg.drift_check, setup, run, q_map)
        rows += r
    if cfg.stationary_check is not None:
        groups["stationary_check"], r = run_stationary_check(cfg.stationary_check, setup, run, q_map)
        rows += r
    if cfg.balance_check:
        groups["balance_check"], r = run_balance_check(setup, run)
        rows += r
    return TheoryResult(groups, rows)


def theory_hook(sc, setup, h5) -> list[Comparison]:
    """Run the scenario's converge study (``convergence: {in_run: true}``) and the checks its
    ``theory:`` block asks for (:func:`theory_stage`, on the run read back from the open
    file ``h5``), and store them (:meth:`sde_bias.store.RunFile.write_group`)."""
    from .converge_run import convergence_hook

    convergence_hook(sc, setup, h5)
    cfg = parse_theory(getattr(sc, "theory", {}) or {}, getattr(sc, "source", "<scenario>"))
    if cfg.drift_check is None and cfg.stationary_check is None and cfg.effective_drift is None and not cfg.balance_check:
        return []
    run = read_h5(h5, records=theory_records(cfg))
    result = theory_stage(cfg, setup, run)
    f = RunFile(h5)
    for name, grp in result.groups.items():
        f.write_group(f"theory/{name}", grp)
    if result.rows:
        f.write_group("comparisons", comparisons_group(result.rows))
    return result.rows

"""Step-size studies of a scenario: ``sde-bias converge`` and the ``convergence:`` block.

Each SDE solver runs at ``dt = lr / (substeps * m)`` for the refinements ``m`` on the SAME
Brownian paths (:mod:`sde_bias.refine`: increments of the finest path summed for the
coarse ones, Lévy areas combined exactly). For the chosen observables it measures

* weak errors of the mean and variance at chosen times: against a closed form where the
  scenario names one (``closed_form:``), else against the Richardson extrapolation;
  the fitted weak order with a 95 % confidence interval (:mod:`sde_bias.convergence`);
  the extrapolated ``dt -> 0`` values;
* strong errors ``E |theta_h - theta_finest|`` against the finest path (with ``--strong``),
  the order fitted on successive levels (unbiased for a constant refinement ratio;
  against the finest path the levels next to it look too good);
* discrete SGD against the extrapolated SDE as a function of ``lr`` (``sgd:``): the gap
  is ``O(lr)`` for a weak order-1 approximation; its order and constant are fitted.

Keys of the scenario block (all optional)::

    convergence:
      solvers: [euler_maruyama, heun]   # SDE presets (with the scenario's runner_options)
      refine: [1, 2, 4, 8]              # dt = lr / (substeps * m); increasing, each divides the last
      paths: 1024                       # seeds 0..paths-1 of the scenario (default: seeds.count)
      steps: 2000                       # horizon in SGD steps (default: the scenario's)
      times: [20, 40]                   # t at which moments are taken (default: the horizon)
      observables: [balance/imbalance, invariants]   # names or name[i] (default: the recorded scalars)
      moments: [mean, variance]
      closed_form: {balance/imbalance: balance_law}  # E[X(t) | theta_0], see CLOSED_FORMS
      strong: false                     # strong errors of the parameters
      order: null                       # weak order for Richardson (default: the solver's known one)
      terms: null                       # Richardson terms h^p, h^(p+1), ... removed (levels used:
                                        # terms + 1 finest); default 2 (1 with two levels)
      sgd: {lrs: [0.01, 0.02, 0.04], solver: euler_maruyama, refine: [1, 2]}   # false: no SGD gap
      in_run: false                     # also run it inside `sde-bias run` (the verdicts use it)

Results go to ``/convergence`` of an HDF5 file (:func:`write_study`; layout in
docs/comparisons.md).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from .convergence_config import ConvergenceConfig, parse_convergence
from .errors import ScenarioError, UserError


# ---------------------------------------------------------------------------- closed forms
def _balance_law(setup, sc, theta0, x0: np.ndarray, times: np.ndarray, source: str, key: str) -> np.ndarray:
    """``E[X(t) | theta_0] = X(0) exp(-kappa t)`` for an observable proportional to ``C_A``
    (one symmetric generator ``A``) when the balance law is ``dC/dt = -kappa C``, i.e.
    ``lr tr(Cov A) = -kappa C_A`` with a constant ``kappa`` (u v and Hadamard with label
    noise only; checked at the paths' initial points and at perturbed points)."""
    from .balance import quadratic
    from .sde import SGDSDE
    from .symmetry import balance_rate, symmetric_generators

    A = jnp.asarray(symmetric_generators(setup.problem.model, theta0[0]), setup.dtype)
    bad = lambda msg: ScenarioError(source, [(f"convergence.closed_form.{key}", f"balance_law does not apply: {msg}", "balance_law")])  # noqa: E731
    if A.shape[0] != 1:
        raise bad(f"the model has {A.shape[0]} symmetric generators (needs exactly 1)")
    sde = SGDSDE(setup.problem, float(sc.training.lr))
    data = setup.seed0_data
    pert = theta0 * (1.0 + 0.3 * jax.random.normal(jax.random.PRNGKey(5), theta0.shape, theta0.dtype))
    pts = jnp.concatenate([theta0[:64], pert[:64]])
    C = np.asarray(jax.vmap(lambda th: quadratic(A, th)[0])(pts))
    r = np.asarray(jax.vmap(lambda th: balance_rate(A[0], sde.diffusion_matrix(0.0, th, data), 1.0))(pts))
    ok = np.abs(C) > 1e-8 * np.abs(C).max()
    kappa = -r[ok] / C[ok]
    if not np.allclose(kappa, kappa[0], rtol=1e-8, atol=0):
        raise bad("lr tr(Cov A) / C_A is not constant")
    c0 = np.asarray(jax.vmap(lambda th: quadratic(A, th)[0])(theta0))
    ratio = x0[np.abs(c0) > 1e-8] / c0[np.abs(c0) > 1e-8]
    if ratio.size == 0 or not np.allclose(ratio, ratio[0], rtol=1e-8):
        raise bad(f"{key} is not proportional to C_A = theta^T A theta")
    return x0[:, None] * np.exp(-float(kappa[0]) * np.asarray(times)[None, :])


CLOSED_FORMS: dict[str, Callable] = {"balance_law": _balance_law}


# ---------------------------------------------------------------------------- series
def _series_names(records0: dict[str, Any], wanted: list[str] | None) -> list[tuple[str, str, tuple]]:
    """``(label, observable, index)`` of every scalar series: ``name`` for scalars, ``name[i]``
    for the components of vectors (flattened)."""
    avail = []
    for name, arr in records0.items():
        if name == "params":
            continue
        shape = tuple(np.shape(arr)[2:])
        if not shape:
            avail.append((name, name, ()))
        else:
            for i in range(int(np.prod(shape))):
                avail.append((f"{name}[{i}]", name, np.unravel_index(i, shape)))
    if wanted is None:
        return [a for a in avail if a[2] == () or int(np.prod(records0[a[1]].shape[2:])) <= 4][:8]
    out = []
    for w in wanted:
        hit = [a for a in avail if a[0] == w or a[1] == w]
        if not hit:
            raise UserError(f"convergence.observables: {w!r} is not recorded by the study; available: {', '.join(a[0] for a in avail)}")
        out += [h for h in hit if h not in out]
    return out


def _observer_names(wanted: list[str] | None, record: list[str]) -> list[str]:
    if wanted is None:
        names = [r for r in record if r != "params"]
    else:
        names = []
        for w in wanted:
            base = w.split("[")[0]
            base = "balance" if base.startswith("balance/") else base
            if base not in names:
                names.append(base)
    return names + ["params"]


# ---------------------------------------------------------------------------- the study
def _with(sc, **training):
    """The scenario with some ``training`` keys (and optionally the seed count) replaced."""
    seeds = training.pop("seeds", None)
    new = sc.model_copy(update={"training": sc.training.model_copy(update=training)})
    if seeds is not None:
        new = new.model_copy(update={"seeds": sc.seeds.model_copy(update={"count": int(seeds)})})
    return new


def _sde_stepper(setup, name: str, source: str, where: str):
    from .presets import get_preset, resolve_preset

    preset = resolve_preset(get_preset(name), setup.scenario.runner_options.get(name))
    if preset.kind != "sde":
        raise ScenarioError(source, [(where, f"preset {name!r} is {preset.kind!r}; a converge study needs fixed-step SDE presets (kind sde)", name)])
    return preset, preset.make_stepper(setup)


def _records_at(out: dict, idx: list[int]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[:, idx] for k, v in out["records"].items()}


def _time_grid(cfg: ConvergenceConfig, lr: float, steps: int, source: str) -> tuple[np.ndarray, int, list[int]]:
    times = cfg.times if cfg.times else [steps * lr]
    ks = []
    for i, t in enumerate(times):
        k = int(round(t / lr))
        if k < 1 or k > steps or abs(k * lr - t) > 1e-9 * max(1.0, t):
            raise ScenarioError(source, [(f"convergence.times[{i}]", f"must be a multiple of lr = {lr:g} in (0, {steps * lr:g}]", t)])
        ks.append(k)
    every = math.gcd(steps, *ks)
    return np.asarray([k * lr for k in ks]), every, [k // every for k in ks]


def run_study(sc, cfg: ConvergenceConfig, *, log: Callable[[str], None] = lambda s: None) -> dict:
    """Run the study of ``cfg`` on scenario ``sc``; returns everything :func:`write_study`
    stores (numpy arrays and plain values)."""
    from .build import build_setup, ensure_precision
    from .convergence import contributions, fit_order, strong_study, weak_study
    from .refine import known_orders, noise_class, run_levels

    source = sc.source
    ensure_precision(sc)
    lr = float(sc.training.lr)
    steps = cfg.steps or sc.total_steps
    times, every, tidx = _time_grid(cfg, lr, steps, source)
    scs = _with(sc, steps=steps, horizon=None, record_every=every, seeds=cfg.paths or sc.seeds.count)
    setup = build_setup(scs)
    from .observables import make_observer

    obs_names = _observer_names(cfg.observables, list(sc.record))
    try:
        observe = make_observer(setup.problem, obs_names)
    except ValueError as e:
        raise ScenarioError(source, [("convergence.observables", str(e), cfg.observables)]) from None
    kw = dict(num_steps=steps, record_every=every, data_batched=setup.data_batched,
              divergence_threshold=float(sc.training.divergence_threshold))
    rec_idx = [i for i in tidx]
    result: dict[str, Any] = {
        "attrs": {"lr": lr, "steps": steps, "paths": setup.num_seeds, "refine": list(cfg.refine),
                  "solvers": list(cfg.solvers), "moments": list(cfg.moments), "terms": cfg.terms,
                  "scenario_name": sc.name, "closed_form": dict(cfg.closed_form)},
        "times": times, "solvers": {},
    }
    series = None
    closed: dict[str, np.ndarray] = {}
    for si, name in enumerate(cfg.solvers):
        preset, stepper = _sde_stepper(setup, name, source, f"convergence.solvers[{si}]")
        t0 = time.perf_counter()
        outs = run_levels(stepper, list(cfg.refine), setup.theta0, setup.run_keys, setup.data, observe, **kw)
        wall = time.perf_counter() - t0
        recs = [_records_at(o, rec_idx) for o in outs]
        init = {k: np.asarray(v)[:, :1] for k, v in outs[0]["records"].items()}
        if series is None:
            series = _series_names(init, cfg.observables)
            for label, obs, ix in series:
                if label in cfg.closed_form or obs in cfg.closed_form:
                    key = label if label in cfg.closed_form else obs
                    x0 = init[obs][(slice(None), 0) + tuple(ix)]
                    closed[label] = CLOSED_FORMS[cfg.closed_form[key]](setup, scs, setup.theta0, np.asarray(x0, float), times, source, key)
            unknown = [k for k in cfg.closed_form if not any(k in (s[0], s[1]) for s in series)]
            if unknown:
                raise ScenarioError(source, [(f"convergence.closed_form.{unknown[0]}", "not one of the study's observables", unknown[0])])
        ok = np.ones(setup.num_seeds, bool)
        for o in outs:
            ok &= np.asarray(o["diverged_at"]) < 0
        h = lr / (stepper.substeps * np.asarray(cfg.refine, float))
        solver_key = preset.solver
        cls = noise_class(stepper.sde, setup.theta0[: min(8, setup.num_seeds)], setup.seed0_data)
        claimed = known_orders(solver_key, cls)
        order = cfg.order or (claimed[0] if claimed else 1.0)
        sres: dict[str, Any] = {"preset": name, "solver": solver_key, "noise_class": cls, "dt": h, "wall_time_s": wall,
                                "weak_claimed": claimed[0] if claimed else float("nan"),
                                "strong_claimed": claimed[1] if claimed else float("nan"),
                                "richardson_order": order, "paths_used": int(ok.sum()), "weak": {}, "strong": None}
        for label, obs, ix in series:
            X = np.stack([r[obs][(slice(None), slice(None)) + tuple(ix)] for r in recs])[:, ok]  # [L, N, T]
            for mom in cfg.moments:
                per_t = []
                for j in range(len(times)):
                    y = contributions(X[:, :, j], mom)
                    ref = None
                    if mom == "mean" and label in closed:
                        f = closed[label][ok, j]
                        y = y - f[None] + f.mean()
                        ref = float(f.mean())
                    per_t.append(weak_study(h, y, reference=ref, order=order, terms=cfg.terms))
                sres["weak"][f"{label}/{mom}"] = per_t
        first = next(iter(sres["weak"].values()))[-1].fit
        sres["weak_order"], sres["weak_order_se"], sres["weak_order_ci"] = first.order, first.se, first.ci
        sres["weak_order_of"] = next(iter(sres["weak"]))
        if cfg.strong:
            P = np.stack([r["params"] for r in recs])[:, ok]  # [L, N, T, p]
            st = []
            for j in range(len(times)):
                s_fin = strong_study(h, P[:, :, j])
                d = np.linalg.norm(P[:-1, :, j] - P[1:, :, j], axis=-1)
                from .convergence import mean_cov

                m, c = mean_cov(d)
                st.append((s_fin, fit_order(h[:-1], m, c), m, np.sqrt(np.diag(c))))
            sres["strong"] = st
        result["solvers"][name] = sres
        log(f"{name}: {len(cfg.refine)} levels x {int(ok.sum())} paths in {wall:.1f} s")
    if cfg.sgd is not None:
        result["sgd_gap"] = _sgd_gap(sc, scs, cfg, series, closed, times[-1], source, log)
    return result


def _sgd_gap(sc, scs, cfg, series, closed, t_end: float, source: str, log) -> dict:
    """Discrete SGD against the Richardson-extrapolated SDE at several ``lr`` (same initial
    points, the horizon ``t_end`` fixed): the gap of every series' mean and variance, and
    the order of ``|gap|`` in ``lr`` with its confidence interval."""
    from .build import build_setup
    from .convergence import contributions, fit_order, richardson
    from .integrate import run_ensemble
    from .observables import make_observer
    from .presets import get_preset, resolve_preset
    from .refine import known_orders, noise_class, run_levels

    g = cfg.sgd
    lr0 = float(sc.training.lr)
    lrs = list(g.lrs) if g.lrs else [lr0 / 2, lr0, 2 * lr0]
    solver = g.solver or cfg.solvers[0]
    out: dict[str, Any] = {"lrs": np.asarray(lrs), "solver": solver, "refine": list(g.refine), "gap": {}, "gap_lr": {}}
    obs_names = _observer_names([s[0] for s in series], list(sc.record))
    per_lr = []
    for i, lr in enumerate(lrs):
        k = t_end / lr
        if abs(k - round(k)) > 1e-9 * k or round(k) < 1:
            raise ScenarioError(source, [(f"convergence.sgd.lrs[{i}]", f"the horizon t = {t_end:g} must be a multiple of it", lr)])
        n = int(round(k))
        s2 = _with(scs, lr=float(lr), steps=n, horizon=None, record_every=n)
        setup = build_setup(s2)
        observe = make_observer(setup.problem, obs_names)
        kw = dict(num_steps=n, record_every=n, data_batched=setup.data_batched,
                  divergence_threshold=float(sc.training.divergence_threshold))
        sgd_stepper = resolve_preset(get_preset("sgd"), sc.runner_options.get("sgd")).make_stepper(setup)
        o_sgd = run_ensemble(sgd_stepper, setup.theta0, setup.run_keys, setup.data, observe, **kw)
        _, st = _sde_stepper(setup, solver, source, "convergence.sgd.solver")
        o_sde = run_levels(st, list(g.refine), setup.theta0, setup.run_keys, setup.data, observe, **kw)
        ok = np.asarray(o_sgd["diverged_at"]) < 0
        for o in o_sde:
            ok &= np.asarray(o["diverged_at"]) < 0
        per_lr.append((o_sgd, o_sde, ok, lr / (st.substeps * np.asarray(g.refine, float))))
        if i == 0:
            claimed = known_orders(_sde_stepper_solver(st), noise_class(st.sde, setup.theta0[:8], setup.seed0_data))
            order = cfg.order or (claimed[0] if claimed else 1.0)
        log(f"sgd gap: lr = {lr:g} ({n} steps)")
    out["richardson_order"] = order
    for label, obs, ix in series:
        for mom in cfg.moments:
            key = f"{label}/{mom}"
            gaps, ses, gaps_lr, ses_lr = [], [], [], []
            for o_sgd, o_sde, ok, h in per_lr:
                pick = lambda o: np.asarray(o["records"][obs])[(ok, -1) + tuple(ix)]  # noqa: E731
                xs = pick(o_sgd)
                xd = np.stack([pick(o) for o in o_sde])
                ys = contributions(xs[None], mom)[0]
                yd = contributions(xd, mom)
                ext = richardson(h, yd, order, 1)
                comb = ys - ext.weights @ yd
                gaps.append(comb.mean())
                ses.append(comb.std(ddof=1) / math.sqrt(comb.size))
                d1 = ys - yd[0]
                gaps_lr.append(d1.mean())
                ses_lr.append(d1.std(ddof=1) / math.sqrt(d1.size))
            gaps, ses = np.asarray(gaps), np.asarray(ses)
            fit = fit_order(np.asarray(lrs), gaps, np.diag(ses**2))
            out["gap"][key] = (gaps, ses, fit)
            out["gap_lr"][key] = (np.asarray(gaps_lr), np.asarray(ses_lr))
    return out


def _sde_stepper_solver(stepper) -> str:
    from .presets import SOLVERS

    cls = type(stepper.solver).__name__
    return next((k for k, v in SOLVERS.items() if v == cls), cls)


# ---------------------------------------------------------------------------- storage and text
def write_study(h5, result: dict, name: str = "convergence"):
    """Store a study under ``/convergence`` (replacing an earlier one)."""
    import json

    if name in h5:
        del h5[name]
    root = h5.create_group(name)
    for k, v in result["attrs"].items():
        root.attrs[k] = json.dumps(v) if isinstance(v, (list, dict)) else v
    root.create_dataset("time", data=result["times"])
    for sname, s in result["solvers"].items():
        g = root.create_group(sname)
        for k in ("preset", "solver", "noise_class", "wall_time_s", "weak_claimed", "strong_claimed", "richardson_order",
                  "paths_used", "weak_order", "weak_order_se", "weak_order_of"):
            g.attrs[k] = s[k]
        g.attrs["weak_order_ci"] = np.asarray(s["weak_order_ci"])
        g.create_dataset("dt", data=s["dt"])
        for key, per_t in s["weak"].items():
            w = g.create_group("weak/" + key.replace("/", "."))
            w.attrs["reference_kind"] = per_t[0].reference_kind
            for field in ("estimate", "estimate_se", "error", "error_se"):
                w.create_dataset(field, data=np.stack([getattr(x, field) for x in per_t]))  # [T, L]
            w.create_dataset("reference", data=[x.reference for x in per_t])
            w.create_dataset("reference_se", data=[x.reference_se for x in per_t])
            w.create_dataset("extrapolated", data=[x.extrapolated.value for x in per_t])
            w.create_dataset("extrapolated_se", data=[x.extrapolated.se for x in per_t])
            w.create_dataset("order", data=[x.fit.order for x in per_t])
            w.create_dataset("order_se", data=[x.fit.se for x in per_t])
            w.create_dataset("order_ci", data=np.asarray([x.fit.ci for x in per_t]))
        if s["strong"] is not None:
            sg = g.create_group("strong")
            sg.attrs["reference"] = "finest level"
            sg.attrs["order_from"] = "successive levels E|theta_h - theta_(h/2)|"
            sg.create_dataset("dt", data=s["strong"][0][0].h)
            sg.create_dataset("error", data=np.stack([x[0].error for x in s["strong"]]))
            sg.create_dataset("error_se", data=np.stack([x[0].error_se for x in s["strong"]]))
            sg.create_dataset("successive_error", data=np.stack([x[2] for x in s["strong"]]))
            sg.create_dataset("order", data=[x[1].order for x in s["strong"]])
            sg.create_dataset("order_se", data=[x[1].se for x in s["strong"]])
            sg.create_dataset("order_ci", data=np.asarray([x[1].ci for x in s["strong"]]))
    if "sgd_gap" in result:
        gp = result["sgd_gap"]
        g = root.create_group("sgd_gap")
        g.attrs["solver"] = gp["solver"]
        g.attrs["richardson_order"] = gp["richardson_order"]
        g.create_dataset("lr", data=gp["lrs"])
        for key, (gaps, ses, fit) in gp["gap"].items():
            w = g.create_group(key.replace("/", "."))
            w.create_dataset("gap", data=gaps)
            w.create_dataset("gap_se", data=ses)
            w.create_dataset("gap_to_sde_at_dt_lr", data=gp["gap_lr"][key][0])
            w.create_dataset("gap_to_sde_at_dt_lr_se", data=gp["gap_lr"][key][1])
            w.attrs["order"], w.attrs["order_se"], w.attrs["constant"] = fit.order, fit.se, fit.constant
            w.attrs["order_ci"] = np.asarray(fit.ci)
    root.attrs["summary"] = "\n".join(summary_lines(result))
    return root


def _ci(fit) -> str:
    if not math.isfinite(fit.order):
        return "n/a"
    return f"{fit.order:.2f} [{fit.ci[0]:.2f}, {fit.ci[1]:.2f}]"


def summary_lines(result: dict) -> list[str]:
    """A readable summary: fitted orders (95 % CI), extrapolated values, the SGD gap."""
    t = result["times"]
    out = [f"converge study: {result['attrs']['paths']} paths, dt = lr / (substeps x m), m in {result['attrs']['refine']}, "
           f"moments at t = {', '.join(f'{x:g}' for x in t)}"]
    for sname, s in result["solvers"].items():
        claim = f"claimed weak {s['weak_claimed']:g}, strong {s['strong_claimed']:g}" if math.isfinite(s["weak_claimed"]) else "no claimed order"
        out.append(f"  {sname} ({s['solver']}, {s['noise_class']} noise; {claim}):")
        for key, per_t in s["weak"].items():
            w = per_t[-1]
            out.append(f"    weak {key:<28} order {_ci(w.fit):<22} dt->0: {w.extrapolated.value:.6g} ± {w.extrapolated.se:.2g}"
                       f"  (reference: {w.reference_kind}{'' if w.reference_kind != 'closed form' else f' {w.reference:.6g}'})")
        if s["strong"] is not None:
            out.append(f"    strong |theta_h - theta_h/2|       order {_ci(s['strong'][-1][1])}")
    if "sgd_gap" in result:
        gp = result["sgd_gap"]
        out.append(f"  SGD - SDE(dt -> 0, {gp['solver']}) at lr = {', '.join(f'{x:g}' for x in gp['lrs'])}:")
        for key, (gaps, ses, fit) in gp["gap"].items():
            vals = ", ".join(f"{g_:.3g} ± {s_:.2g}" for g_, s_ in zip(gaps, ses))
            out.append(f"    {key:<28} gap {vals}; order in lr {_ci(fit)}")
    return out


# ---------------------------------------------------------------------------- hook and command
def convergence_hook(sc, setup, h5) -> None:
    """Inside ``sde-bias run``: the scenario's study when its block says ``in_run: true``."""
    block = getattr(sc, "convergence", None)
    if not block:
        return
    cfg = parse_convergence(block, sc.source)
    if not cfg.in_run:
        return
    write_study(h5, run_study(sc, cfg))


def converge(sc, overrides: dict | None = None, out=None, *, log: Callable[[str], None] = print, plots: bool = True):
    """``sde-bias converge``: run the study and write ``out`` (default
    ``data/runs/<name>[-<variant>]-converge.h5``) with ``/convergence`` and figures."""
    from pathlib import Path

    from .run import DEFAULT_RUN_DIR
    from .schema import scenario_hash, to_yaml
    from .store import RunFile, environment_attrs, finalize, now_iso, tmp_path_for

    cfg = parse_convergence(getattr(sc, "convergence", None), sc.source, overrides)
    out = Path(out) if out is not None else DEFAULT_RUN_DIR / f"{sc.run_label()}-converge.h5"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = run_study(sc, cfg, log=log)
    tmp = tmp_path_for(out)
    attrs = {"kind": "converge", "scenario_name": sc.name, "description": sc.description, "scenario_yaml": to_yaml(sc),
             "scenario_hash": scenario_hash(sc), "source": sc.source, "variant": sc.variant or "", "created": now_iso(),
             "precision": sc.precision, "lr": float(sc.training.lr), "total_steps": result["attrs"]["steps"],
             "record_every": result["attrs"]["steps"], "num_seeds": result["attrs"]["paths"], "seed_base": sc.seeds.base,
             "model_type": sc.model.type, "data_type": sc.data.type}
    attrs.update(environment_attrs())
    f = RunFile.create(tmp, attrs)
    try:
        write_study(f.h5, result)
        f.h5.attrs["complete"] = np.int8(1)
        f.h5.attrs["wall_time_s"] = time.perf_counter() - t0
    finally:
        f.close()
    finalize(tmp, out)
    figures = []
    if plots:
        from .convergence_plots import plot_convergence

        figures = plot_convergence(out)
    return out, result, figures


__all__ = ["ConvergenceConfig", "parse_convergence", "run_study", "write_study", "summary_lines", "converge",
           "convergence_hook", "CLOSED_FORMS"]

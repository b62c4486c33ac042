"""The inverse-design verification stage of a run (scenario ``design:`` block; docs/theory.md section 6).

After the runners, for every seed, the calculator (``sde_bias.design``) predicts the interpolator
each mechanism selects from that seed's initial point and the training data:

- ``gd``: gradient flow, ``argmin Phi`` on ``{X beta = y}`` with the mirror potential of the initial
  point (section 6.1: the initialisation-shape entropy of ``u * v`` at depth 2; the one-sided
  depth-``D`` potential from a balanced start; no closed form otherwise, e.g. group products);
- ``label_noise``: the minimiser of the fibre-minimised label-noise regulariser ``R*`` (section 6.2)
  with the signs the dynamics keep;
- ``target``: the ``design:`` block's target regulariser;
- the alternatives: plain ``l1``, minimum ``l2``, the data's ``truth``, ``depth_D`` (label-noise ``R*``
  at another depth);
- ``quotient``: the paper's quotient potential ``V = 1/2 log det G`` on the balanced section (section
  6.3) is concave in ``|z|`` and selects no single interpolator; its local minimiser by reweighted
  ``l1`` from minimum ``l2`` (``sde_bias.design.quotient_interpolator``) is shown, and ``V`` at every
  prediction (attributes ``quotient_potential``, ``quotient_degenerate``: the finite part and the
  number of generator directions at ``-inf``) sits beside each one.

Each runner's recorded coefficients ``beta(t)`` (observable ``invariants``) are compared with every
prediction, seed by seed: relative distance ``|beta - b*| / |b*|``, mean and standard error over the
seeds that did not diverge, along the slow time ``tau = k eta^2 delta^2 c kappa n`` of label-noise
SGD (the step ``k`` when the scenario has no label noise).

:func:`design_stage` computes everything as ``{path: (array or None, attrs)}``;
:func:`write_design` writes it to ``/design``; :func:`design_hook` is the run's entry point;
:func:`inspect_lines` is what ``sde-bias inspect`` prints; :func:`design_report_section` gives the
markdown and figures of a report section from a run file.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np

Result = dict[str, tuple[Any, dict[str, Any]]]


# ----------------------------------------------------------------------------- model facts
def model_facts(model, x) -> dict[str, Any] | None:
    """What the calculator needs of a linear-in-``beta`` model: the feature matrix ``M``
    (``f_i = M_i . beta``), the synthesis ``S`` (``beta = S z``, ``None`` = identity), the depth, the
    groups (or ``None``) and how to read the factors of ``z`` from ``theta``. ``None`` for models the
    calculator has no facts for."""
    import jax
    import jax.numpy as jnp

    from .design_models import ScaledGroupHadamard, SynthesisHadamard
    from .models import CumsumHadamard, DeepHadamard, GroupHadamard, Hadamard, MatrixFactorization

    xs = jnp.asarray(x)
    if isinstance(model, (Hadamard, DeepHadamard, GroupHadamard)):
        M = np.asarray(jax.vmap(model.features)(xs), float)
    else:
        M = np.asarray(xs, float).reshape(xs.shape[0], -1)
    if isinstance(model, (Hadamard, DeepHadamard, SynthesisHadamard, CumsumHadamard)):
        S = None
        if isinstance(model, SynthesisHadamard):
            S = model.synthesis_matrix()
        elif isinstance(model, CumsumHadamard):
            S = np.tril(np.ones((M.shape[1], M.shape[1])))
        depth = getattr(model, "depth", 2)
        return {"M": M, "S": S, "depth": depth, "groups": None, "scales": None,
                "layers": lambda th: np.stack([np.asarray(v, float) for v in model.unflatten(th).values()])}
    if isinstance(model, MatrixFactorization):
        import sde_bias.design as D

        obs = np.asarray(xs, int).reshape(-1, 2)
        shape = (model.rows, model.cols)
        return {"M": np.asarray(D.observation_matrix(shape, obs), float), "S": None, "depth": 2, "groups": None,
                "scales": None, "layers": None, "matrix": (shape, obs)}
    if isinstance(model, (GroupHadamard, ScaledGroupHadamard)):
        k = model.group_size
        groups = [list(range(g * k, g * k + k)) for g in range(model.dim // k)]
        scales = np.asarray(getattr(model, "scales", np.ones(len(groups))), float)
        return {"M": M, "S": None, "depth": 2, "groups": groups, "scales": scales, "layers": None}
    return None


def _synthesis_of(facts):
    d = facts["M"].shape[1]
    return np.eye(d) if facts["S"] is None else facts["S"]


# ----------------------------------------------------------------------------- predictions
def _predict_seed(facts, cfg, layers, y, cache) -> dict[str, Any]:
    """The mechanism predictions for one seed's initial factors (``layers`` ``[D, d]``), cached by
    the penalty's data (identical inits give one solve)."""
    import jax

    import sde_bias.design as D

    out: dict[str, Any] = {}
    M, S, depth = facts["M"], _synthesis_of(facts), facts["depth"]
    MS = M @ S
    signs = None  # the signs the dynamics keep (balanced Hadamard-type starts)
    if facts.get("matrix") is not None:
        shape, obs = facts["matrix"]
        pens = {
            "gd": (None, None, "no prediction for small-init gradient flow on P Q (conjectured min nuclear norm)"),
            "label_noise": (D.factorization_fibre_penalty(shape, obs), None,
                            "(2/|Omega|) |D_r^(1/2) M D_c^(1/2)|_* (label-noise R* of P Q)"),
        }
    elif facts["groups"] is None:
        mags = np.abs(layers)
        balanced = bool(np.all(np.abs(mags - mags[0]) <= 1e-12 * (1 + mags[0])))
        signs = np.sign(np.prod(layers, axis=0)) if balanced else np.zeros(layers.shape[1])
        if depth == 2:
            signs = np.asarray(D.kept_signs(layers[0], layers[1]))
            gd = D.init_shape_potential(layers[0], layers[1])
            gd_why = "initialisation-shape entropy of u * v (Azulay et al. 2021)"
        elif balanced and np.all(mags[0] > 0):
            gd = D.OneSidedDepthPotential(mags[0], depth, signs)
            gd_why = f"one-sided depth-{depth} potential from the balanced start"
        else:
            gd, gd_why = None, f"no closed form for depth {depth} from an unbalanced start"
        ln = D.depth_fibre_penalty(MS, depth, signs=signs)
        ln_why = ("sign-constrained weighted l1 (a_j = mean_i (XS)_ij^2)" if depth == 2
                  else f"{depth} sum a_j |z_j|^(2-2/{depth}) with the kept signs")
        pens = {"gd": (gd, S, gd_why), "label_noise": (ln, S, ln_why)}
        for alt in cfg.alternatives:
            if alt.startswith("depth_"):
                k = int(alt[6:])
                pens[alt] = (D.depth_fibre_penalty(MS, k, signs=signs), S, f"label-noise R* of depth {k}")
    else:
        lam = facts["scales"]
        pens = {
            "gd": (None, None, "no closed form of the gradient-flow bias of a group product"),
            "label_noise": (D.group_fibre_penalty(M, facts["groups"], lam), None,
                            "2 sum lambda_g sqrt(tr C_g) |C_g^(1/2) beta_g| (group R*)"),
        }
    pens["quotient"] = _quotient_spec(facts, S, depth, signs)
    for name, (pen, syn, why) in pens.items():
        if name == "quotient" and pen is not None:  # (depth, groups, signs): reweighted l1, not one convex solve
            key = ("quotient", repr(pen[:2]), np.asarray(pen[2]).tobytes() if pen[2] is not None else b"")
            if key not in cache:
                cache[key] = D.quotient_interpolator(M, y, syn, depth=pen[0], groups=pen[1], signs=pen[2])[0]
            out[name] = (cache[key], why)
            continue
        if pen is None:
            out[name] = (None, why)
            continue
        key = (name, type(pen).__name__, *(np.asarray(a).tobytes() for a in jax.tree_util.tree_leaves(pen)))
        if key not in cache:
            cache[key] = D.predicted_interpolator(pen, M, y, syn)
        out[name] = (cache[key], why)
    return out


def _quotient_spec(facts, S, depth, signs):
    """``(spec, synthesis, description)`` of the quotient-potential prediction (section 6.3)."""
    if facts.get("matrix") is not None:
        return (None, None, "no closed-form quotient potential for P Q (V = 1/2 log det G is reported numerically)")
    groups = facts["groups"]
    c = "1/2" if groups is not None or depth == 2 else f"{depth - 1}/{depth}"
    what = "group" if groups is not None else "coordinate"
    return ((depth, groups, signs), None if groups is not None else S,
            f"quotient potential {c} sum log|z_{what}| (paper, section 6.3): a local minimiser by reweighted l1 from "
            "min l2 (the potential is concave, -inf at every sparse interpolator)")


def _quotient_values(model, preds) -> dict[str, Any]:
    """``V = 1/2 log det G`` on the model's balanced section at seed 0's prediction, numerically
    (``sde_bias.design.model_quotient_potential``); empty if the model has no section."""
    import sde_bias.design as D

    out = {}
    for name, betas in preds.items():
        try:
            out[name] = D.model_quotient_potential(model, betas[0])
        except (NotImplementedError, AttributeError, TypeError, ValueError):
            return {}
    return out


def _vanishing_note(facts, pred, layers) -> list[str]:
    """Seed 0's zeroed coordinates (groups) and their slow-time decay rates (depth 2 and groups)."""
    import sde_bias.design as D

    if pred is None or facts.get("matrix") is not None or facts["depth"] != 2:
        return []
    X = facts["M"] if facts["groups"] is not None else facts["M"] @ _synthesis_of(facts)
    signs = None if layers is None else np.asarray(D.kept_signs(layers[0], layers[1]))
    rates = D.vanishing_rates(X, pred, facts["groups"], signs=signs)
    if not rates:
        return []
    what = "groups" if facts["groups"] is not None else "coordinates"
    return [f"label_noise zeroes {len(rates)} {what}; slow-flow decay rates r (|z| ~ exp(-2 r tau)): "
            + ", ".join(f"{k}: {r:.3g}" for k, r in rates.items())]


def _fixed_predictions(facts, cfg, y, truth) -> dict[str, Any]:
    """Predictions that do not depend on the seed: the target and the alternatives."""
    import sde_bias.design as D

    from .design_models import synthesis_matrix

    M = facts["M"]
    d = M.shape[1]
    out: dict[str, Any] = {}
    w = None if cfg.weights is None else np.asarray(cfg.weights, float)
    if cfg.target in ("weighted_l1", "transform_l1"):
        w = np.ones(d) if w is None else w
        syn = None if cfg.target == "weighted_l1" else synthesis_matrix(cfg.synthesis, d)
        out["target"] = (D.predicted_interpolator(D.WeightedL1(w), M, y, syn), f"target: weighted l1 ({cfg.synthesis})")
    elif cfg.target == "group":
        if facts["groups"] is None:
            raise ValueError("design.target: group needs a group model (group_hadamard)")
        groups = facts["groups"]
        w = np.ones(len(groups)) if w is None else w
        out["target"] = (D.predicted_interpolator(D.GroupNorm(groups, w), M, y), "target: group l2 norm")
    elif cfg.target == "low_rank":
        if facts.get("matrix") is None:
            raise ValueError("design.target: low_rank needs a matrix_factorization model")
        m, n = facts["matrix"][0]
        out["target"] = (D.predicted_interpolator(D.WeightedNuclear(np.ones(m), np.ones(n)), M, y), "target: nuclear norm")
    if "l1" in cfg.alternatives:
        out["l1"] = (D.predicted_interpolator(D.WeightedL1(np.ones(d)), M, y), "plain l1")
    if "l2" in cfg.alternatives:
        out["l2"] = (np.linalg.pinv(M) @ y, "minimum l2 (pseudo-inverse)")
    if "truth" in cfg.alternatives and truth is not None and np.size(truth) == d:
        out["truth"] = (np.asarray(truth, float).reshape(d), "the data's target")
    return out


def _as_beta(pred):
    return np.asarray(pred, float) if isinstance(pred, np.ndarray) else np.asarray(pred.beta, float)


# ----------------------------------------------------------------------------- the stage
def _slow_time(sc, setup, steps):
    """``tau = k eta^2 delta^2 c kappa n`` (``None`` without label noise)."""
    from .noise import LabelNoise

    scheme = setup.problem.scheme
    if not isinstance(scheme, LabelNoise) or setup.problem.train is None:
        return None
    import sde_bias.design as D

    n = int(setup.problem.train.x.shape[0])
    return np.asarray(D.slow_time(np.asarray(steps, float), float(sc.training.lr), scheme, n, setup.problem.loss), float)


def design_stage(sc, setup, h5) -> Result:
    """Predictions per seed and the distances of every runner's ``beta(t)`` to them (module
    docstring), as ``{path: (array or None, attrs)}`` relative to ``/design``."""
    import jax

    from .reader import read_h5

    cfg = sc.design
    res: Result = {}
    problem = setup.problem
    facts = None if problem.train is None else model_facts(problem.model, problem.train.x)
    if facts is None:
        note = ("no design facts for this model (the calculator knows Hadamard-type, group and P Q products with "
                "fixed training data)")
        res[""] = (None, {"status": "skipped", "note": note, "summary": note})
        return res
    y = np.asarray(problem.train.y, float).reshape(-1)
    truth = None if problem.target is None else np.asarray(problem.target, float)
    cache: dict = {}
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fixed = _fixed_predictions(facts, cfg, y, truth)
        per_seed = [_predict_seed(facts, cfg, facts["layers"](np.asarray(th)) if facts["layers"] else None, y, cache)
                    for th in np.asarray(setup.theta0, float)] if facts["layers"] else \
            [_predict_seed(facts, cfg, None, y, cache)] * setup.num_seeds
    preds: dict[str, np.ndarray] = {}
    notes: list[str] = []
    for name in per_seed[0]:
        why = per_seed[0][name][1]
        if per_seed[0][name][0] is None:
            notes.append(f"{name}: {why}")
            continue
        betas = np.stack([_as_beta(p[name][0]) for p in per_seed])
        resid = max(float(p[name][0].residual) for p in per_seed)
        preds[name] = betas
        res[f"predictions/{name}"] = (betas, {"description": why, "max_residual": resid,
                                             "method": per_seed[0][name][0].method})
    for name, (pred, why) in fixed.items():
        beta = _as_beta(pred)
        preds[name] = np.tile(beta, (setup.num_seeds, 1))
        attrs = {"description": why}
        if not isinstance(pred, np.ndarray):
            attrs.update(max_residual=float(pred.residual), method=pred.method)
        res[f"predictions/{name}"] = (preds[name], attrs)
    with jax.enable_x64(True):
        qv = _quotient_values(problem.model, preds)
    for name, v in qv.items():
        res[f"predictions/{name}"][1].update(quotient_potential=v.value, quotient_degenerate=v.degenerate)
    # disagreement between the mechanisms
    warn: list[str] = []
    if facts["groups"] is not None and "label_noise" in preds:
        gn = [float(np.linalg.norm(preds["label_noise"][0][g])) for g in facts["groups"]]
        notes.append("label_noise prediction: group norms " + ", ".join(f"{a:.3g}" for a in gn))
    notes += _vanishing_note(facts, per_seed[0].get("label_noise", (None,))[0],
                             facts["layers"](np.asarray(setup.theta0[0], float)) if facts["layers"] else None)
    if "gd" in preds and "label_noise" in preds:
        gap = float(np.mean(np.linalg.norm(preds["gd"] - preds["label_noise"], axis=1)
                            / np.linalg.norm(preds["label_noise"], axis=1)))
        if gap > 1e-2:
            warn.append(f"gradient flow and label noise select interpolators {gap:.2g} apart (relative, mean over seeds)")
    if cfg.mechanism in ("gd", "both") and "gd" not in preds:
        warn.append("the design relies on gradient flow, but no gradient-flow prediction is known for this model/init")
    # distances along time
    rows = []
    for path, g in read_h5(h5, records=["invariants"]).runners.items():
        if "invariants" not in g.records:
            notes.append(f"{path}: no 'invariants' record (add it to record:)")
            continue
        beta = np.asarray(g.records["invariants"], float)  # [S, T, d]
        ok = np.asarray(g.diverged_at) < 0
        steps = np.asarray(g.step)
        tau = _slow_time(sc, setup, steps)
        base = f"runners/{path.replace('/', '.')}"
        res[f"{base}/step"] = (steps, {})
        if tau is not None:
            res[f"{base}/tau"] = (tau, {"long_name": "slow time k eta^2 delta^2 c kappa n"})
        fm, fse = _mean_se(beta[ok, -1])
        res[f"{base}/final_mean"] = (fm, {})
        res[f"{base}/final_se"] = (fse, {})
        if facts["groups"] is not None:  # whole groups vanishing: the norm of each group at the end
            norms = np.stack([np.linalg.norm(beta[ok, -1][:, g], axis=-1) for g in facts["groups"]], axis=1)
            gm, gse = _mean_se(norms)
            res[f"{base}/final_group_norms"] = (np.stack([gm, gse]), {"rows": "mean, se over seeds"})
            notes.append(f"{path}: group norms at the end " + ", ".join(f"{a:.3g} +- {b:.1g}" for a, b in zip(gm, gse)))
        for name, ref in preds.items():
            dist = np.linalg.norm(beta - ref[:, None, :], axis=-1) / np.linalg.norm(ref, axis=-1)[:, None]
            m, se = _mean_se(dist[ok])
            res[f"{base}/{name}/mean"] = (m, {})
            res[f"{base}/{name}/se"] = (se, {})
            if np.all(ref == ref[:1]):  # one prediction for all seeds: the distance of the seed mean (the bias,
                mb = beta[ok].mean(0)   # without the seeds' O(sqrt(eta)) spread; its own noise ~ se / sqrt(S))
                res[f"{base}/{name}/seed_mean_distance"] = (np.linalg.norm(mb - ref[0], axis=-1) / np.linalg.norm(ref[0]), {})
            rows.append((path, name, float(m[-1]), float(se[-1])))
    summary = _summary_text(cfg, preds, res, rows, warn, notes)
    res[""] = (None, {"status": "ok", "mechanism": cfg.mechanism, "target": cfg.target,
                      "warnings": json.dumps(warn), "notes": json.dumps(notes),
                      "table": json.dumps(rows), "summary": summary})
    return res


def _mean_se(x):
    x = np.asarray(x, float)
    n = x.shape[0]
    m = x.mean(0) if n else np.full(x.shape[1:], np.nan)
    se = x.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.full(x.shape[1:], np.nan)
    return m, se


def _summary_text(cfg, preds, res, rows, warn, notes) -> str:
    from .design import QuotientValue

    lines = [f"design: target {cfg.target}, relies on {cfg.mechanism}"]
    for name in preds:
        a = res[f"predictions/{name}"][1]
        r = a.get("max_residual")
        v = "" if "quotient_potential" not in a else \
            f" [V = 1/2 log det G: {QuotientValue(float(a['quotient_potential']), int(a['quotient_degenerate']))}]"
        lines.append(f"  prediction {name:<12} {a['description']}" + ("" if r is None else f" (residual {r:.1e})") + v)
    names = list(preds)
    runners = sorted({r[0] for r in rows}, key=[r[0] for r in rows].index)
    if rows:
        lines.append("  final |beta - b*| / |b*| (mean +- se over seeds):")
        lines.append("    " + f"{'runner':<22}" + "".join(f"{n:>20}" for n in names))
        for p in runners:
            cells = {n: (m, s) for (q, n, m, s) in rows if q == p}
            lines.append("    " + f"{p:<22}" + "".join(f"{cells[n][0]:>11.4g} +- {cells[n][1]:<6.2g}" for n in names))
    for w in warn:
        lines.append(f"  WARNING: {w}")
    for n in notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)


def write_design(h5, result: Result) -> None:
    """Write a :func:`design_stage` result to ``/design`` (replacing an old one)."""
    if "design" in h5:
        del h5["design"]
    root = h5.create_group("design")
    for path, (arr, attrs) in result.items():
        if arr is None:
            obj = root.require_group(path) if path else root
        else:
            obj = root.create_dataset(path, data=np.asarray(arr))
        for k, v in attrs.items():
            obj.attrs[k] = v


def design_hook(sc, setup, h5) -> None:
    """The run's design stage: compute (:func:`design_stage`) and write (:func:`write_design`)."""
    if getattr(sc, "design", None) is None:
        return
    write_design(h5, design_stage(sc, setup, h5))


# ----------------------------------------------------------------------------- reading
def inspect_lines(design) -> list[str]:
    """The ``/design`` summary that ``sde-bias inspect`` prints: ``design`` is the run's
    :attr:`~sde_bias.reader.RunData.design` group (empty list without one)."""
    if design is None:
        return []
    text = design.attrs.get("summary") or design.attrs.get("note", "")
    text = text.decode() if isinstance(text, bytes) else str(text)
    return [""] + ["  " + line for line in text.splitlines()]


def design_report_section(path, fig_dir, *, images: bool = True) -> tuple[str, list[str]]:
    """Markdown and figure paths of a report section for one run file's ``/design`` group: the
    summary table, distance to each prediction against slow time (mean +- se) per runner, and the
    final seed-mean coefficients against the predictions (seed 0's). ``images=False`` leaves the
    image links out of the markdown (for a caller that places the figures itself)."""
    from pathlib import Path

    import h5py
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "r") as f:
        g = f.get("design")
        if g is None:
            return "", []
        name = f.attrs.get("scenario_name", Path(path).stem)
        name = name.decode() if isinstance(name, bytes) else str(name)
        variant = f.attrs.get("variant", "")
        label = f"{name}-{variant}" if variant else name
        summary = g.attrs.get("summary", g.attrs.get("note", ""))
        md = [f"### Inverse design: {label}", "", "```", str(summary), "```", ""]
        figs = []
        if "runners" not in g:
            return "\n".join(md), figs
        runners = list(g["runners"])
        preds = list(g["predictions"])
        fig, axes = plt.subplots(1, len(runners), figsize=(4.5 * len(runners), 3.5), squeeze=False)
        for ax, r in zip(axes[0], runners):
            rg = g["runners"][r]
            x = rg["tau"][...] if "tau" in rg else rg["step"][...]
            for p in preds:
                m, se = rg[p]["mean"][...], rg[p]["se"][...]
                ax.plot(x, m, label=p)
                ax.fill_between(x, m - se, m + se, alpha=0.25)
            ax.set_yscale("log")
            ax.set_xlabel("slow time k eta^2 delta^2" if "tau" in rg else "step")
            ax.set_title(r)
        axes[0][0].set_ylabel("|beta - b*| / |b*|")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        f1 = fig_dir / f"design_{label}_distance.png"
        fig.savefig(f1, dpi=110)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(8, 3.5))
        d = g["predictions"][preds[0]].shape[1]
        idx = np.arange(d)
        for p in preds:
            ax.plot(idx, g["predictions"][p][0], marker="o", ms=3, lw=0.8, label=f"predicted: {p}")
        for r in runners:
            rg = g["runners"][r]
            ax.errorbar(idx, rg["final_mean"][...], yerr=rg["final_se"][...], fmt="x", ms=4, label=f"simulated: {r}")
        ax.set_xlabel("coordinate j")
        ax.set_ylabel("beta_j")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        f2 = fig_dir / f"design_{label}_coefficients.png"
        fig.savefig(f2, dpi=110)
        plt.close(fig)
        figs = [str(f1), str(f2)]
        if images:
            md += [f"![distance to the predictions]({f1.name})", "", f"![coefficients]({f2.name})", ""]
        return "\n".join(md), figs

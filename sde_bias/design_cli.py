"""``sde-bias design TARGET``: a parameterization whose induced bias is a chosen regulariser, written
as a runnable scenario with a ``design:`` block (docs/theory.md section 6.4; docs/design.md).

Only :func:`add_design_parser` is imported by ``sde_bias.cli`` when the parser is built; it imports
nothing heavy (``sde-bias --help`` stays free of JAX). :func:`cmd_design` does the work.
"""

from __future__ import annotations

import argparse

TARGETS_HELP = """\
targets:
  weighted_l1   sum_j w_j |beta_j| (--weights w1,w2,...; default all 1): a scaled Hadamard product
                beta = diag(lambda) (u * v). Label noise weights coordinate j by a_j lambda_j
                (a_j = mean_i X_ij^2), so lambda ~ w / a; small-init gradient flow weights it by
                ~1 / lambda_j, so lambda ~ 1 / w. The two agree only when w_j ~ sqrt(a_j).
  tv            total variation sum_j |beta_{j+1} - beta_j| (+ |beta_0|): beta = cumsum(lambda * u * v)
  cosine        l1 of the orthonormal DCT-II coefficients: beta = C (lambda * u * v)
  haar          l1 of the orthonormal Haar wavelet coefficients (dimension a power of 2)
  group         sum_g w_g |beta_g|_2 over contiguous groups of --group-size: a group Hadamard product
                beta_g = lambda_g s_g v_g (label noise only; exact for whitened groups)
  low_rank      nuclear norm of an m x n matrix from observed entries (--shape M,N): M = P Q
                (label noise; plain nuclear norm when rows and columns are observed equally often)

data: --data FILE (.npz/.h5/.csv with arrays --x-key, --y-key), --scenario S (its training data, as
features), or a random sparse regression (--problem N,D, --problem-seed). The written scenario holds
the data inline, the designed model, its initialisation, label noise, the runners gd, sgd and
euler_maruyama and a design: block; run it with `sde-bias run FILE` (a `quick` variant is included).
The command prints the predicted interpolators (with the paper's quotient potential
V = 1/2 log det G at each, and V's own local minimiser), says which mechanism the design relies on and
warns where the mechanisms disagree (depth makes label noise less sparse while small-init gradient
flow stays l1-like; scaling a coordinate weights the two mechanisms in opposite directions).
"""

TARGETS = ("weighted_l1", "tv", "cosine", "haar", "group", "low_rank")


def add_design_parser(sub, epilog: str) -> argparse.ArgumentParser:
    """The ``design`` subcommand (no heavy imports)."""
    d = sub.add_parser(
        "design",
        help="inverse design: a parameterization (and runnable scenario) for a target regulariser",
        description="Design a parameterization whose implicit bias is TARGET, predict the interpolator each "
        "mechanism selects (gradient flow from the initialisation; label-noise SGD), and write a runnable "
        "scenario with a design: block that checks the prediction by simulation.",
        epilog=TARGETS_HELP + "\n" + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("target", choices=TARGETS, metavar="TARGET", help="one of " + ", ".join(TARGETS) + " (below)")
    src = d.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="FILE", help="training data file (.npz, .h5, .csv)")
    src.add_argument("--scenario", metavar="S", help="take the training data of this scenario")
    d.add_argument("--x-key", default="x", help="array/column name of the inputs in --data (default x)")
    d.add_argument("--y-key", default="y", help="array/column name of the labels in --data (default y)")
    d.add_argument("--truth-key", help="array/column name of the true coefficients in --data (optional)")
    d.add_argument("--problem", default="10,20", metavar="N,D", help="random problem size without data (default 10,20)")
    d.add_argument("--problem-seed", type=int, default=0, metavar="K", help="seed of the random problem (default 0)")
    d.add_argument("--mechanism", choices=("gd", "label_noise", "both"), default="label_noise",
                   help="which mechanism the design should rely on (default label_noise)")
    d.add_argument("--weights", metavar="W1,W2,...", help="target weights (per coordinate; per group for group)")
    d.add_argument("--group-size", type=int, default=2, metavar="K", help="group: coordinates per group (default 2)")
    d.add_argument("--shape", metavar="M,N", help="low_rank: matrix shape (data x = index pairs)")
    d.add_argument("--depth", type=int, default=2, help="depth D of the Hadamard product (default 2)")
    d.add_argument("--init-scale", type=float, default=None, metavar="ALPHA",
                   help="initial scale alpha (u0 = alpha, v0 = 0; default 1e-3 for gd, 0.5 otherwise)")
    d.add_argument("--lr", type=float, help="learning rate (default: 0.1 / the largest curvature at the prediction)")
    d.add_argument("--steps", type=int, help="training steps (default: slow time 8 for label noise)")
    d.add_argument("--label-noise", type=float, default=1.0, metavar="DELTA", help="label-noise std (default 1)")
    d.add_argument("--name", help="scenario name (default design_TARGET)")
    d.add_argument("--out", metavar="FILE", help="write the scenario here (default: print only)")
    d.set_defaults(func=cmd_design)
    return d


def _floats(text, option):
    from .errors import UserError

    try:
        return [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise UserError(f"{option} {text!r}: expected comma-separated numbers") from None


def _data(args):
    """``(X, y, truth, source)`` from --data, --scenario or a random problem."""
    import numpy as np

    from .errors import UserError

    if args.data:
        from .datafile import DataFileError, FileData, read_arrays

        try:
            arr = read_arrays(FileData(type="file", path=args.data, x=args.x_key, y=args.y_key))
        except DataFileError as e:
            raise UserError(f"--data {args.data}: {e.message}") from None
        X, y = np.asarray(arr.x, float), np.asarray(arr.y, float).reshape(-1)
        if args.target != "low_rank":
            X = X.reshape(X.shape[0], -1)
        if X.shape[0] != y.shape[0]:
            raise UserError(f"--data {args.data}: x has {X.shape[0]} samples but y has {y.shape[0]}")
        truth = None
        if args.truth_key:
            try:
                truth = np.asarray(read_arrays(FileData(type="file", path=args.data, x=args.truth_key, y=args.y_key)).x, float)
            except DataFileError as e:
                raise UserError(f"--data {args.data}: {e.message}") from None
        return X, y, truth, f"data from {args.data}"
    if args.scenario:
        import jax

        from .build import build_problem
        from .scenario_paths import resolve_scenario_path
        from .design_run import model_facts
        from .scenario import load_scenario

        sc = load_scenario(resolve_scenario_path(args.scenario))
        with jax.enable_x64(True):
            prob = build_problem(sc).problem
            if prob.train is None:
                raise UserError(f"--scenario {args.scenario}: its data have no fixed training set (online data)")
            facts = model_facts(prob.model, prob.train.x)
            X = facts["M"] if facts is not None else np.asarray(prob.train.x, float).reshape(prob.train.x.shape[0], -1)
            truth = None if prob.target is None else np.asarray(prob.target, float)
            return X, np.asarray(prob.train.y, float).reshape(-1), truth, f"training data of {sc.source}"
    try:
        n, d = (int(a) for a in args.problem.split(","))
        assert n > 0 and d > 0
    except (ValueError, AssertionError):
        raise UserError(f"--problem {args.problem!r}: expected N,D (two positive integers)") from None
    rng = np.random.default_rng(args.problem_seed)
    X = rng.standard_normal((n, d))
    truth = np.zeros(d)
    k = max(1, d // 7)
    truth[rng.choice(d, k, replace=False)] = rng.choice([-1.0, 1.0], k) * rng.uniform(0.5, 1.5, k)
    return X, X @ truth, truth, f"random regression n={n}, d={d}, {k}-sparse truth (seed {args.problem_seed})"


def _design(args, X, y):
    import numpy as np

    import sde_bias.design as D

    from .design_models import synthesis_matrix
    from .errors import UserError

    d = X.shape[1]
    w = None if args.weights is None else np.asarray(_floats(args.weights, "--weights"))
    alpha = args.init_scale if args.init_scale is not None else (1e-3 if args.mechanism == "gd" else 0.5)
    if args.target in ("weighted_l1", "tv", "cosine", "haar"):
        if w is not None and w.shape != (d,):
            raise UserError(f"--weights: {args.target} needs {d} weights (one per coordinate), got {w.size}")
        kw = dict(mechanism=args.mechanism, init_scale=alpha, depth=args.depth)
        if args.target == "weighted_l1":
            return D.design_weighted_l1(np.ones(d) if w is None else w, X, y, **kw), alpha
        try:
            A = synthesis_matrix(args.target, d)
        except ValueError as e:
            raise UserError(f"{args.target}: {e}") from None
        return D.design_transform_l1(A, X, y, w, **kw), alpha
    if args.target == "group":
        k = args.group_size
        if k < 1 or d % k:
            raise UserError(f"--group-size {k}: must divide the dimension {d}")
        groups = [list(range(g * k, g * k + k)) for g in range(d // k)]
        if w is not None and w.shape != (len(groups),):
            raise UserError(f"--weights: group needs {len(groups)} weights (one per group), got {w.size}")
        return D.design_group_sparsity(groups, X, y, w), alpha
    if args.shape is None:
        raise UserError("low_rank needs --shape M,N")
    m, n = (int(a) for a in args.shape.split(","))
    obs = np.asarray(X, int).reshape(X.shape[0], 2)
    if obs.min() < 0 or obs[:, 0].max() >= m or obs[:, 1].max() >= n:
        raise UserError(f"--data: index pairs outside the --shape {m},{n}")
    return D.design_low_rank((m, n), obs, y), alpha


def _scenario(args, design, X, y, truth, alpha, source):
    """The scenario dictionary of a design."""
    import numpy as np

    d = X.shape[1]
    name = args.name or f"design_{args.target}"
    lam = None if design.scales is None else [float(a) for a in design.scales]
    block = {"target": {"weighted_l1": "weighted_l1", "group": "group", "low_rank": "low_rank"}.get(args.target, "transform_l1"),
             "mechanism": design.relies_on[0] if len(design.relies_on) == 1 else "both"}
    if args.weights:
        block["weights"] = _floats(args.weights, "--weights")
    if block["target"] == "transform_l1":
        block["synthesis"] = args.target
    if args.target == "low_rank":
        m, n = (int(a) for a in args.shape.split(","))
        model = {"type": "matrix_factorization", "rows": m, "rank": min(m, n), "cols": n}
        init = {"std": 0.1}
    elif args.target == "group":
        k, G = args.group_size, d // args.group_size
        if lam is None or np.ptp(lam) <= 1e-6 * max(lam):
            model = {"type": "group_hadamard", "dim": d, "group_size": k}
        else:
            model = {"type": "sde_bias.design_models:ScaledGroupHadamard", "dim": d, "group_size": k, "scales": lam}
        init = {"std": 0.0, "point": {"s": [float(alpha)] * G, "v": [float(alpha / np.sqrt(k))] * d}}
    else:
        syn = "identity" if args.target == "weighted_l1" else args.target
        model = {"type": "sde_bias.design_models:SynthesisHadamard", "dim": d, "depth": args.depth,
                 "synthesis": syn, "scales": lam}
        init = {"std": 0.0, "point": {f"u{l + 1}": [float(alpha) if l < args.depth - 1 else 0.0] * d for l in range(args.depth)}}
    # step size from the curvature at the prediction: |grad f|^2 ~ |X S|^2 |z|^((2D-2)/D)
    pred = design.predicted.get("label_noise") or design.predicted.get("target")
    XS = X if design.synthesis is None else X @ design.synthesis
    L = float(np.linalg.norm(XS, 2) ** 2 / X.shape[0])
    zmax = 1.0 if pred is None else float(np.max(np.abs(np.asarray(pred.z)))) + alpha**2
    lr = args.lr or float(f"{0.1 / (L * max(zmax, 1e-3) ** ((2 * args.depth - 2) / args.depth) * args.depth):.2g}")
    delta = args.label_noise if design.relies_on != ("gd",) else 0.0
    n = X.shape[0]
    if delta > 0:  # slow time k eta^2 delta^2 (batch 1) up to 8
        steps = args.steps or int(min(1_000_000, max(1000, round(8.0 / (lr**2 * delta**2)))))
    else:  # gradient flow from scale alpha: time ~ log(1 / alpha) over the smallest relevant rate
        sv = np.linalg.svd(XS, compute_uv=False)  # the slowest direction of the fit sets the time
        L_min = float(sv[sv > 1e-10 * sv[0]].min() ** 2 / X.shape[0])
        steps = args.steps or int(min(1_000_000, max(1000, round(20 * np.log(2 / alpha**2) / (lr * L_min * max(zmax, 1e-3))))))
    every = max(1, steps // 50)
    steps = every * (steps // every)
    xs = np.asarray(X, int) if args.target == "low_rank" else np.asarray(X)  # index pairs stay integers
    data = {"type": "fixed", "x": xs.tolist(), "y": np.asarray(y).tolist()}
    if truth is not None and np.size(truth) == d and args.target != "low_rank":
        data["target"] = np.asarray(truth).tolist()
    sc = {
        "name": name,
        "description": f"Designed for {design.target} ({design.parameterization}), relies on {', '.join(design.relies_on)}; "
                       f"{source}.",
        "precision": "float64",
        "model": model,
        "init": init,
        "data": data,
        "noise": {"scheme": "with_replacement", "batch_size": 1, "label_noise": float(delta)} if delta > 0
                 else {"scheme": "full_batch"},
        "training": {"lr": lr, "steps": steps, "record_every": every},
        "seeds": {"count": 16 if delta > 0 else 1},
        "runners": ["gd", "sgd", "euler_maruyama"] if delta > 0 else ["gd"],
        "record": ["loss", "invariants"],
        "design": block,
        "report": {"section": "design"},
        "variants": {"quick": {"training": {"steps": max(every, min(steps, 2000) // every * every)}, "seeds": {"count": 4 if delta > 0 else 1}}},
    }
    return sc, n


def _print_design(design, sc, out, quotient=None):
    import numpy as np

    print(f"design: {design.target} via {design.parameterization}" + (f" (depth {design.depth})" if design.depth > 2 else ""))
    if design.scales is not None:
        print(f"  scales lambda = {np.array2string(np.asarray(design.scales), precision=3, max_line_width=100)}")
    print(f"  relies on: {', '.join(design.relies_on)}")
    q_interp, q_values, q_note = quotient if quotient is not None else (None, {}, None)
    shown = dict(design.predicted)
    if q_interp is not None:
        shown["quotient"] = q_interp
    for k, p in shown.items():
        b = np.asarray(p.beta)
        supp = int(np.sum(np.abs(b) > 1e-6 * max(1.0, np.abs(b).max())))
        v = f"; V = 1/2 log det G: {q_values[k]}" if k in q_values else ""
        print(f"  predicted ({k:<11}): support {supp} of {b.size}, optimality residual {p.residual:.1e} [{p.method}]{v}")
        print("    beta = " + np.array2string(b, precision=4, suppress_small=True, max_line_width=100).replace("\n", "\n           "))
    if q_note:
        print(f"  note: {q_note}")
    for w in design.warnings:
        print(f"  WARNING: {w}")
    for n in design.notes:
        print(f"  note: {n}")
    t = sc["training"]
    print(f"  scenario: {sc['model']['type']}, lr {t['lr']}, {t['steps']} steps, label noise {sc['noise'].get('label_noise', 0)}, "
          f"runners {', '.join(sc['runners'])}" + (f" -> {out}" if out else " (not written: --out FILE)"))


def cmd_design(args) -> int:
    """``sde-bias design``: compute the design, print it, write the scenario."""
    import warnings
    from pathlib import Path

    import jax
    import yaml

    from .scenario import UserError, scenario_from_dict

    if args.depth < 2:
        raise UserError(f"--depth {args.depth}: expected an integer >= 2")
    if args.init_scale is not None and not args.init_scale > 0:
        raise UserError(f"--init-scale {args.init_scale}: expected a positive number")
    with jax.enable_x64(True):
        X, y, truth, source = _data(args)
        if args.target == "low_rank" and args.shape is None:
            raise UserError("low_rank needs --shape M,N")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                design, alpha = _design(args, X, y)
            except ValueError as e:
                raise UserError(f"design {args.target}: {str(e).splitlines()[0]}") from None
        sc, _ = _scenario(args, design, X, y, truth, alpha, source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import sde_bias.design as D

            quotient = D.design_quotient(design, X, y)
    scenario_from_dict(sc, args.out or "<design>")  # the written scenario is valid
    _print_design(design, sc, args.out, quotient)
    if args.out:
        text = f"# Written by `sde-bias design {args.target}` (docs/design.md).\n" + yaml.safe_dump(
            sc, sort_keys=False, default_flow_style=None, width=120)
        try:
            Path(args.out).write_text(text)
        except OSError as e:
            raise UserError(f"--out {args.out}: cannot write: {e.strerror}") from None
    return 0

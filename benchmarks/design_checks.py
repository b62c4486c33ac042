"""Slow checks of the inverse-design predictions (docs/theory.md section 6; docs/design.md).

Label-noise SGD (``sde_bias.DiscreteStepper`` with ``LabelNoise``) and its SDE (``SGDSDE`` with a
diffrax solver), run with ``sde_bias.run_ensemble`` on many seeds, against the calculator's
predictions (``sde_bias.design``). Every number printed is a mean over seeds with its standard
error. Slow time ``tau = k eta^2 delta^2 c kappa n`` (``sde_bias.design.slow_time``).

    PYTHONPATH=. python benchmarks/design_checks.py [woodworth|one_point|hadamard|depth3|group|group_vanish|all] [--seeds S]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import sde_bias as sb  # noqa: E402
import sde_bias.design as D  # noqa: E402
from sde_bias.integrate import run_ensemble  # noqa: E402


ETAS = (0.02, 0.01, 0.005)


def _run(stepper, theta0, data, observe, tau_per_step, taus, seed=0):
    steps = [int(round(t / tau_per_step)) for t in taus]
    every = int(np.gcd.reduce(steps))
    keys = jax.random.split(jax.random.PRNGKey(seed), theta0.shape[0])
    out = run_ensemble(stepper, theta0, keys, data, observe, num_steps=steps[-1], record_every=every)
    idx = [s // every for s in steps]
    return {k: np.asarray(v)[:, idx] for k, v in out["records"].items()}, out["diverged_at"]


def _mean_se(x, axis=0):
    x = np.asarray(x)
    return x.mean(axis), x.std(axis, ddof=1) / np.sqrt(x.shape[axis])


def one_point(seeds):
    """x = (1, 2), y = 2, Hadamard from w(0) = (1, 0.5) balanced, full-batch label noise delta = 1
    (n = 1: tau = k eta^2). Closed form: w_2 / (1 - w_2)^2 = 2 e^{-2 tau}."""
    model = sb.Hadamard(2)
    data = sb.Dataset(jnp.array([[1.0, 2.0]]), jnp.array([2.0]))
    prob = sb.Problem(model, sb.LabelNoise(sb.FullBatch(), 1.0), train=data)
    taus = [0.5, 1.0, 2.0]
    exact = np.asarray(D.one_point_slow_flow(jnp.asarray(taus)))[:, 1]
    theta0 = jnp.tile(model.section(jnp.array([1.0, 0.5])), (seeds, 1))
    print("one-point case: mean w_2 at tau = 0.5, 1, 2 (closed form", np.round(exact, 5), ")")
    for eta in (0.04, 0.02, 0.01):
        tps = float(D.slow_time(1, eta, prob.scheme, 1))
        for name, stepper in (
            ("SGD", sb.DiscreteStepper(prob, eta)),
            ("Euler-Maruyama", sb.SDEStepper(sb.SGDSDE(prob, eta), diffrax.Euler())),
            ("stochastic Heun", sb.SDEStepper(sb.SGDSDE(prob, eta), diffrax.Heun())),
        ):
            t0 = time.time()
            rec, _ = _run(stepper, theta0, data, lambda th, d: {"w": model.invariants(th)}, tps, taus)
            m, se = _mean_se(rec["w"][:, :, 1])
            rel = (m - exact) / exact
            print(f"  eta={eta:<5} {name:16s} w2 = {np.round(m, 5)} +- {np.round(se, 5)}; "
                  f"relative error {np.round(rel, 4)} ({time.time() - t0:.0f} s)")


def _signed_problem(n=10, d=20, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    X = jax.random.normal(k1, (n, d)) * jnp.linspace(0.5, 2.0, d)
    signs = jnp.where(jax.random.bernoulli(k2, 0.5, (d,)), 1.0, -1.0)
    y = X @ (signs * jnp.abs(jax.random.normal(k3, (d,))) * 0.3)  # reachable with these signs
    return X, y, signs


def _report_end(label, betas, predictions, taus):
    """Distance of the seed-mean beta(tau) to each prediction, relative, with a delta-method SE."""
    for name, ref in predictions.items():
        ref = np.asarray(ref)
        d = np.linalg.norm(betas - ref, axis=-1) / np.linalg.norm(ref)  # per seed [S, T]
        mean_beta = betas.mean(0)
        dm = np.linalg.norm(mean_beta - ref, axis=-1) / np.linalg.norm(ref)
        m, se = _mean_se(d)
        print(f"    {label} vs {name:22s} |E beta - b*|/|b*| = {np.round(dm, 4)};  E|beta - b*|/|b*| = "
              f"{np.round(m, 4)} +- {np.round(se, 4)} at tau = {taus}")


def hadamard(seeds, depth=2):
    """Label-noise SGD (batch 1, delta = 1) on a (deep) Hadamard product with unequal column scales,
    from a balanced start with random signs s: the end point against the sign-constrained
    prediction (weighted l1 at depth 2, sum a_j |beta_j|^(4/3) at depth 3), plain l1 and min l2."""
    X, y, signs = _signed_problem()
    n, d = X.shape
    model = sb.Hadamard(d) if depth == 2 else sb.DeepHadamard(d, depth)
    pen = D.depth_fibre_penalty(X, depth, signs=signs)
    pred = D.solve_convex(pen, X, y)
    other = D.depth_fibre_penalty(X, 2 if depth > 2 else 3, signs=signs)
    preds = {
        f"prediction (R*, depth {depth})": pred.beta,
        "the other depth's R*": D.solve_convex(other, X, y).beta,
        "plain l1": D.solve_convex(D.WeightedL1(jnp.ones(d)), X, y).beta,
        "min l2": jnp.linalg.pinv(X) @ y,
    }
    print(f"depth {depth}: prediction residual {pred.residual:.1e}; support {int(np.sum(np.abs(np.asarray(pred.beta)) > 1e-8))} of {d}")
    alpha = 0.5
    layers = jnp.full((depth, d), alpha).at[-1].multiply(signs)
    theta0 = jnp.tile(layers.reshape(-1) if depth > 2 else model.flatten({"p": layers[0], "q": layers[1]}), (seeds, 1))
    prob = sb.Problem(model, sb.LabelNoise(sb.WithReplacement(1), 1.0), train=sb.Dataset(X, y))
    taus = [2.0, 8.0, 32.0, 64.0]
    runs = [("SGD", eta, sb.DiscreteStepper(prob, eta)) for eta in ETAS]
    runs.insert(2, ("SDE (Euler-Maruyama)", 0.01, sb.SDEStepper(sb.SGDSDE(prob, 0.01), diffrax.Euler())))
    ends = {}
    for label, eta, stepper in runs:
        tps = float(D.slow_time(1, eta, prob.scheme, n))
        t0 = time.time()
        rec, div = _run(stepper, theta0, prob.train, lambda th, dd: {"w": model.invariants(th)}, tps, taus)
        print(f"  {label}, eta = {eta}: {int(np.sum(np.asarray(div) >= 0))} diverged, {time.time() - t0:.0f} s")
        _report_end(label, rec["w"], preds, taus)
        end = rec["w"][:, -1]
        if label == "SGD":
            ends[eta] = _mean_se(end)
        off = np.abs(np.asarray(pred.beta)) < 1e-8
        print(f"    off-support mean |beta_j| at the end: {np.abs(end[:, off]).mean():.2e}; "
              f"sign violations: {int(np.sum(end * np.asarray(signs) < 0))}")


    _richardson(ends, preds)


def _richardson(ends, preds):
    """The O(eta) bias removed: E beta(eta -> 0) ~ 2 E beta(eta / 2) - E beta(eta) at the last slow
    time, its distance to each prediction, and the distance that the seeds' noise alone would give
    (sqrt(sum_j 4 se_j(eta/2)^2 + se_j(eta)^2) / |b*|): a prediction is matched when the two agree."""
    etas = sorted(ends, reverse=True)
    for big, small in zip(etas, etas[1:]):
        (mb, sb_), (ms, ss) = ends[big], ends[small]
        ext = 2 * ms - mb
        noise = np.sqrt(np.sum(4 * ss**2 + sb_**2))
        for name, ref in preds.items():
            ref = np.asarray(ref)
            print(f"    extrapolated from eta = {big}, {small} vs {name:22s} |b_ext - b*|/|b*| = "
                  f"{np.linalg.norm(ext - ref) / np.linalg.norm(ref):.4f} (noise alone {noise / np.linalg.norm(ref):.4f})")


# a group Hadamard over groups of any sizes: the same test model as the design tests use
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from design_models import GroupHadamard  # noqa: E402


def group(seeds):
    """Label-noise SGD on a group Hadamard product (5 groups of 4, n = 12): the end point against the
    calculator's group penalty 2 sum sqrt(tr C_g) |C_g^(1/2) beta_g| and the plain group lasso."""
    n, G, k = 12, 5, 4
    groups = [list(range(k * g, k * g + k)) for g in range(G)]
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    X = jax.random.normal(k1, (n, G * k)) * jnp.repeat(jnp.array([0.6, 1.0, 1.4, 0.8, 1.2]), k)
    y = X @ jax.random.normal(k2, (G * k,)) * 0.3
    pen = D.group_fibre_penalty(X, groups)
    pred = D.solve_convex(pen, X, y)
    plain = D.solve_convex(D.GroupNorm(groups, jnp.ones(G)), X, y)
    norms = [float(jnp.linalg.norm(pred.beta[jnp.asarray(g)])) for g in groups]
    print(f"group: prediction residual {pred.residual:.1e}; group norms {np.round(norms, 4)}")
    model = GroupHadamard(groups)
    theta0 = jnp.tile(jnp.concatenate([jnp.full(G, 0.5), jnp.full(G * k, 0.5)]), (seeds, 1))
    prob = sb.Problem(model, sb.LabelNoise(sb.WithReplacement(1), 1.0), train=sb.Dataset(X, y))
    taus = [2.0, 8.0, 32.0]
    for eta in ETAS:
        tps = float(D.slow_time(1, eta, prob.scheme, n))
        t0 = time.time()
        rec, div = _run(sb.DiscreteStepper(prob, eta), theta0, prob.train, lambda th, dd: {"w": model.invariants(th)}, tps, taus)
        print(f"  eta = {eta}: {int(np.sum(np.asarray(div) >= 0))} diverged, {time.time() - t0:.0f} s")
        _report_end("SGD", rec["w"], {"prediction (group R*)": pred.beta, "plain group lasso": plain.beta,
                                      "min l2": jnp.linalg.pinv(X) @ y}, taus)
        end = rec["w"][:, -1]
        gn = np.array([[np.linalg.norm(e[g]) for g in groups] for e in end])
        m, se = _mean_se(gn)
        print(f"    group norms at the end {np.round(m, 4)} +- {np.round(se, 4)}")


def _zero_group_rates(model, X, groups, beta):
    """Decay rates of the groups the prediction zeroes, from the package's slow flow linearised at the
    noise equilibrium over the prediction (s_g^2 = |C_g^(1/2) beta_g| / sqrt(tr C_g), v_g = beta_g / s_g):
    the largest eigenvalue -r_g of the flow's Jacobian on the (s_g, v_g) block. Exact where the active
    columns have full row rank (the multiplier is then unique and the block decouples at first order):
    s_g, v_g ~ e^(-r_g tau), |beta_g| = s_g |v_g| ~ e^(-2 r_g tau)."""
    from scipy.linalg import sqrtm

    n = X.shape[0]
    b = np.asarray(beta)
    s, v = np.zeros(len(groups)), np.zeros(b.size)
    for k, g in enumerate(groups):
        C = np.asarray(X[:, g].T @ X[:, g]) / n
        nb = np.linalg.norm(np.real(sqrtm(C)) @ b[g])
        if nb > 1e-9:
            s[k] = np.sqrt(nb / np.sqrt(np.trace(C)))
            v[g] = b[g] / s[k]
    theta = model.flatten({"s": jnp.asarray(s), "v": jnp.asarray(v)})
    flow = float(jnp.linalg.norm(D.slow_flow_field(model, theta, X)))
    jac = np.asarray(jax.jacfwd(lambda t: D.slow_flow_field(model, t, X))(theta))
    rates = {}
    for k, g in enumerate(groups):
        if s[k] == 0.0:
            idx = [k] + [len(groups) + j for j in g]  # (s_g, v_g) in the flat theta of GroupHadamard
            rates[k] = -float(np.max(np.linalg.eigvals(jac[np.ix_(idx, idx)]).real))
    return rates, flow


def group_vanish(seeds):
    """Whole groups vanish: label-noise SGD and its SDE on a group Hadamard product (n = 8, 5 groups of
    3, generic labels) whose group-lasso-type prediction zeroes two groups with 9 >= n active
    coordinates. The zeroed groups' norms against slow time, against the rate of the linearised slow
    flow (|beta_g| ~ e^(-2 r_g tau)), at two eta."""
    n, G, k = 8, 5, 3
    groups = [list(range(k * g, k * g + k)) for g in range(G)]
    r = np.random.default_rng(5)
    X, y = jnp.asarray(r.normal(size=(n, G * k))), jnp.asarray(r.normal(size=n))
    pred = D.solve_convex(D.group_fibre_penalty(X, groups), X, y)
    norms = [float(jnp.linalg.norm(pred.beta[jnp.asarray(g)])) for g in groups]
    model = GroupHadamard(groups)
    rates, flow = _zero_group_rates(model, X, groups, pred.beta)
    print(f"group_vanish: prediction residual {pred.residual:.1e}; group norms {np.round(norms, 4)}; "
          f"slow flow at the equilibrium {flow:.1e}")
    print("  linearised slow-flow rates r_g of the zeroed groups (|beta_g| ~ exp(-2 r_g tau)):",
          {g: round(v, 4) for g, v in rates.items()})
    theta0 = jnp.tile(jnp.concatenate([jnp.full(G, 0.5), jnp.full(G * k, 0.5 / np.sqrt(k))]), (seeds, 1))
    prob = sb.Problem(model, sb.LabelNoise(sb.WithReplacement(1), 1.0), train=sb.Dataset(X, y))
    taus = [2.0, 4.0, 8.0, 16.0, 24.0, 32.0, 48.0, 64.0]
    zero = sorted(rates)
    runs = [("SGD", eta, sb.DiscreteStepper(prob, eta)) for eta in (0.02, 0.01, 0.005)]
    runs.append(("SDE (Euler-Maruyama)", 0.01, sb.SDEStepper(sb.SGDSDE(prob, 0.01), diffrax.Euler())))
    for label, eta, stepper in runs:
        tps = float(D.slow_time(1, eta, prob.scheme, n))
        t0 = time.time()
        rec, div = _run(stepper, theta0, prob.train, lambda th, dd: {"w": model.invariants(th)}, tps, taus)
        print(f"  {label}, eta = {eta}: {int(np.sum(np.asarray(div) >= 0))} diverged, {time.time() - t0:.0f} s")
        _report_end(label, rec["w"], {"prediction (group R*)": pred.beta}, taus)
        for gidx in zero:
            gn = np.linalg.norm(rec["w"][:, :, groups[gidx]], axis=-1)  # [S, T]
            m, se = _mean_se(gn)
            lg = np.log(gn)  # [S, T]
            local = np.diff(lg, axis=1) / np.diff(taus)  # per seed, between records
            lm, lse = _mean_se(local)
            e2 = {"float_kind": lambda v: f"{v:.2e}"}
            print(f"    group {gidx}: mean |beta_g| {np.array2string(m, formatter=e2)} +- {np.array2string(se, formatter=e2)}")
            print(f"      d E log|beta_g| / d tau between records {np.round(lm, 3)} +- {np.round(lse, 3)} "
                  f"(theory at the end -2 r_g = {-2 * rates[gidx]:.3f})")


def woodworth(steps=200_000):
    """Gradient flow, Woodworth's potential: GD on beta = w_+^2 - w_-^2 from w_+ = w_- = alpha (full
    batch, loss mean 1/2 (X beta - y)^2, lr = 1e-3 / max(1, alpha^2), 2 10^5 steps) on n = 10, d = 40
    with a 3-sparse truth, against argmin Q_alpha (cvxpy), minimum l1 and minimum l2."""
    n, d = 10, 40
    X = jax.random.normal(jax.random.split(jax.random.PRNGKey(0))[0], (n, d))
    y = X @ jnp.zeros(d).at[jnp.array([3, 17, 29])].set(jnp.array([1.5, -1.0, 2.0]))
    l1 = D.solve_convex(D.WeightedL1(jnp.ones(d)), X, y).beta
    l2 = jnp.linalg.pinv(X) @ y

    @jax.jit
    def gd(alpha, lr):
        def body(c, _):
            wp, wm = c
            g = X.T @ (X @ (wp**2 - wm**2) - y) / n
            return (wp - 2 * lr * wp * g, wm + 2 * lr * wm * g), None

        (wp, wm), _ = jax.lax.scan(body, (jnp.full(d, alpha), jnp.full(d, alpha)), None, length=steps)
        return wp**2 - wm**2

    rel = lambda a, b: float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))  # noqa: E731
    print("woodworth: GD end point vs argmin Q_alpha, min l1, min l2 (relative distances)")
    for alpha in (0.01, 0.1, 1.0, 10.0):
        pred = D.solve_convex(D.woodworth_potential(alpha, d), X, y)
        lr = 1e-3 / max(1.0, alpha**2)
        t0 = time.time()
        beta = gd(alpha, lr)
        print(f"  alpha = {alpha:<5} lr = {lr:.0e}: |X beta - y|_max = {float(jnp.max(jnp.abs(X @ beta - y))):.1e}; "
              f"to argmin Q_alpha {rel(beta, pred.beta):.1e} (residual {pred.residual:.0e}); "
              f"to min l1 {rel(beta, l1):.3g}; to min l2 {rel(beta, l2):.3g} ({time.time() - t0:.0f} s)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("check", nargs="?", default="all", choices=["woodworth", "one_point", "hadamard", "depth3", "group", "group_vanish", "all"])
    ap.add_argument("--seeds", type=int, default=64)
    args = ap.parse_args()
    if args.check in ("woodworth", "all"):
        woodworth()
    if args.check in ("one_point", "all"):
        one_point(max(args.seeds, 256))
    if args.check in ("hadamard", "all"):
        hadamard(args.seeds, 2)
    if args.check in ("depth3", "all"):
        hadamard(args.seeds, 3)
    if args.check in ("group", "all"):
        group(args.seeds)
    if args.check in ("group_vanish", "all"):
        group_vanish(args.seeds)


if __name__ == "__main__":
    main()

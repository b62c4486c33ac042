#!/usr/bin/env python
"""Speed of the fixed-step engine (``sde_bias.integrate``), as ratios against baselines
measured in the same process, interleaved round by round (project issue 2).

    python benchmarks/bench_engine.py                  # everything, 5 min (quiet) to 10 min (busy) on 2 cores
    python benchmarks/bench_engine.py --quick          # smoke run, ~3 min
    python benchmarks/bench_engine.py --only sgd,sde   # some sections

Sections (benchmarks/README.md explains each measurement):

- ``sgd``: discrete SGD on the paper's 20 x 20 matrix completion at 1, 64, 256 seeds,
  seed-steps/s against the paper's PyTorch loop (benchmarks/paper_loop_torch.py, one
  seed), unsharded and with the seeds sharded over the host devices;
- ``ablation``: where the time of that SGD loop goes at 256 seeds (divergence test,
  random numbers), measured on a copy of the earlier per-step-check loop with switches;
- ``sde``: the SDE fixed-step path (``SDEStepper`` + Euler) at 1, 16, 256 trajectories on
  matrix completion and on the u v toy (+ 10,000 trajectories on the toy), against
  (a) a hand-written ``lax.scan`` Euler-Maruyama with pre-drawn increments,
  (b) ``diffrax.diffeqsolve`` + ``VirtualBrownianTree``, (c) ``diffeqsolve`` +
  ``UnsafeBrownianPath`` (ForwardMode);
- ``uv_sgd``: discrete SGD on the u v toy, 10,000 trajectories, against a hand-written scan;
- ``f64``: float64 against float32 on the completion SGD.

Every speed is a throughput (seed-steps or trajectory-steps per second). The reported
number is the median over rounds of the per-round ratio ours / baseline; absolute rates
are printed for context only (the machine is shared and noisy). Compile time = first
call minus the median steady call. torch is optional: without it the torch baseline is
replaced by the issue's quoted 6,000 steps/s, labelled as such.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time

QUOTED_TORCH_STEPS_PER_S = 6000.0  # the measurement of the paper's loop
SGD_TARGET_X_TORCH = 100.0  # at 256 seeds
SDE_TARGET = 1 / 1.5  # ours >= (a) / 1.5
COMPILE_TARGET_S = 10.0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds (smoke test)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per measurement (default 5, quick 3)")
    ap.add_argument("--only", default="sgd,ablation,sde,uv_sgd,f64", help="comma-separated sections")
    ap.add_argument("--devices", type=int, default=None,
                    help="host CPU devices for seed sharding (default: SDE_BIAS_DEVICES, else one per core; 1: no sharding)")
    ap.add_argument("--no-torch", action="store_true", help="do not run the PyTorch baseline (use the quoted figure)")
    ap.add_argument("--json", default=None, help="also write all results to this JSON file")
    return ap.parse_args(argv)


ARGS = parse_args()

# Host devices must be configured before JAX starts its backend.
from sde_bias.parallel import configure_host_devices, devices_from_env, shard_seeds  # noqa: E402

NUM_DEVICES = configure_host_devices(ARGS.devices if ARGS.devices is not None else devices_from_env())

import diffrax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import sde_bias  # noqa: E402
from sde_bias import data as D  # noqa: E402
from sde_bias.data import Dataset  # noqa: E402
from sde_bias.integrate import block_size, run_ensemble  # noqa: E402
from sde_bias.losses import SquaredLoss  # noqa: E402
from sde_bias.noise import Bernoulli, FullBatch, LabelNoise  # noqa: E402
from sde_bias.observables import make_observer  # noqa: E402
from sde_bias.problem import Problem  # noqa: E402
from sde_bias.sde import SDEStepper, SGDSDE  # noqa: E402
from sde_bias.sgd import DiscreteStepper  # noqa: E402

ROUNDS = ARGS.rounds or (3 if ARGS.quick else 5)
SCALE = 0.4 if ARGS.quick else 1.0
RESULTS: dict = {"rows": [], "notes": []}


def log(*a):
    print(*a, flush=True)


def steps(n: int, multiple: int = 1000) -> int:
    """``n`` scaled by --quick, rounded to a positive multiple of ``multiple``."""
    return max(multiple, int(round(n * SCALE / multiple)) * multiple)


# ---------------------------------------------------------------------------
# timing: interleaved rounds, medians of per-round ratios
# ---------------------------------------------------------------------------


def _block(x):
    return jax.block_until_ready(x)


class Entry:
    """A timed callable doing ``units`` units of work (seed-steps) per call."""

    def __init__(self, name, fn, units, jax_fn=True):
        self.name, self.fn, self.units, self.jax_fn = name, fn, units, jax_fn
        self.first = None
        self.times: list[float] = []

    def call(self):
        t = time.perf_counter()
        out = self.fn()
        if self.jax_fn:
            _block(out)
        return time.perf_counter() - t

    def warm(self):
        self.first = self.call()

    @property
    def rate(self):
        return self.units / statistics.median(self.times)

    @property
    def compile_s(self):
        return max(self.first - statistics.median(self.times), 0.0)


def run_rounds(entries: list[Entry], rounds: int = None):
    rounds = rounds or ROUNDS
    for e in entries:
        if e.first is None:
            e.warm()
    for _ in range(rounds):
        for e in entries:
            e.times.append(e.call())


def ratio(a: Entry, b: Entry) -> dict:
    """Per-round throughput ratio a / b: median, min, max."""
    r = [(a.units / ta) / (b.units / tb) for ta, tb in zip(a.times, b.times)]
    return {"median": statistics.median(r), "min": min(r), "max": max(r)}


def fmt_ratio(r: dict, digits: int = 2) -> str:
    f = f"{{:.{digits}f}}"
    return f"{f.format(r['median'])} [{f.format(r['min'])}-{f.format(r['max'])}]"


def record(section, **row):
    row = {"section": section, **row}
    RESULTS["rows"].append(row)
    return row


# ---------------------------------------------------------------------------
# problems
# ---------------------------------------------------------------------------


def completion(dtype=jnp.float32):
    """The paper's matrix completion (experiment 3) with the package API."""
    k1, k2 = jax.random.split(jax.random.key(0))
    M = D.low_rank_target(k1, 20, (15.0, 5.0), dtype=dtype)
    data, mask = D.completion_dataset(k2, M, 0.2)
    model = sde_bias.MatrixFactorization(20, 20, 20)
    problem = Problem(model, Bernoulli(0.5, 400.0), loss=SquaredLoss("mean"), train=data)
    return problem, data, 1e-3


def completion_theta0(problem, S, dtype=jnp.float32):
    ks = jax.random.split(jax.random.key(3), S)
    return jax.vmap(lambda k: problem.model.init(k, {"P": 0.11, "Q": 0.1}, dtype=dtype))(ks)


def uv_toy(dtype=jnp.float32):
    data = Dataset(jnp.ones((1,), dtype), jnp.ones((1,), dtype))
    problem = Problem(sde_bias.ScalarProduct(), LabelNoise(FullBatch(), 0.5), train=data)
    return problem, data, 0.01


def uv_theta0(S, dtype=jnp.float32):
    return jnp.tile(jnp.array([1.0, 0.5], dtype), (S, 1))


def seed_keys(S):
    return jax.random.split(jax.random.key(1), S)


def ours_entries(tag, stepper, theta0, keys, data, observe, num_steps, record_every):
    """``run_ensemble`` as a user calls it."""
    S = theta0.shape[0]
    kw = dict(num_steps=num_steps, record_every=record_every)
    return [Entry(f"{tag}", lambda: run_ensemble(stepper, theta0, keys, data, observe, **kw)["ensemble"].theta,
                  S * num_steps)]


# ---------------------------------------------------------------------------
# section sgd: matrix completion SGD against the paper's torch loop
# ---------------------------------------------------------------------------


class TorchBaseline:
    def __init__(self):
        self.available = False
        self.threads = None
        self.calibration = {}
        if ARGS.no_torch:
            self.why = "--no-torch"
            log(f"!! PyTorch baseline skipped (--no-torch). Using the QUOTED figure of "
                f"{QUOTED_TORCH_STEPS_PER_S:.0f} steps/s from the issue (not measured here).")
            return
        try:
            import torch  # noqa: F401

            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import paper_loop_torch

            self.torch, self.loop = torch, paper_loop_torch
        except ImportError as e:
            self.why = f"torch not importable ({e})"
            log(f"!! PyTorch baseline skipped: {self.why}. Using the QUOTED figure of "
                f"{QUOTED_TORCH_STEPS_PER_S:.0f} steps/s from the issue (not measured here).")
            return
        self.available = True
        # torch's default is one thread per core; on a busy 2-core machine its OpenMP threads
        # can be far slower than one thread. Use the faster setting (the stronger baseline).
        default = torch.get_num_threads()
        rates = {}
        for th in sorted({1, default}):
            torch.set_num_threads(th)
            self.loop.train(50)
            dt, _ = self.loop.train(300)
            rates[th] = 300 / dt
        self.threads = max(rates, key=rates.get)
        torch.set_num_threads(self.threads)
        self.calibration = {f"threads={k}": round(v) for k, v in rates.items()}
        log(f"torch {torch.__version__}: calibration steps/s {self.calibration}; using {self.threads} thread(s)")

    def entry(self, num_steps):
        if not self.available:
            return None
        e = Entry("torch paper loop", lambda: self.loop.train(num_steps)[0], num_steps, jax_fn=False)
        e.call = lambda: self.loop.train(num_steps)[0]  # time inside the loop, as the paper's code would
        return e


def section_sgd(torch_base: TorchBaseline):
    log("\n== sgd: matrix completion, discrete SGD vs the paper's PyTorch loop ==")
    problem, data, lr = completion()
    observe = make_observer(problem, ["loss"])
    stepper = DiscreteStepper(problem, lr)
    torch_steps = steps(2000, 500)
    plan = {1: steps(20000), 64: steps(2000), 256: steps(1000)}
    for S, N in plan.items():
        theta0, keys = completion_theta0(problem, S), seed_keys(S)
        entries = ours_entries("ours", stepper, theta0, keys, data, observe, N, 1000)
        sharded = None
        if NUM_DEVICES > 1 and S > 1:
            th_s, k_s = shard_seeds(theta0, keys)
            sharded = Entry("ours sharded", lambda th_s=th_s, k_s=k_s: run_ensemble(
                stepper, th_s, k_s, data, observe, num_steps=N, record_every=1000)["ensemble"].theta, S * N)
            entries.append(sharded)
        tb = torch_base.entry(torch_steps)
        run_rounds(([tb] if tb else []) + entries)
        if sharded is not None:  # same numbers, bit for bit
            a = np.asarray(entries[0].fn()); b = np.asarray(sharded.fn())
            same = bool(np.array_equal(a, b))
        for e in entries:
            if tb is not None:
                r = ratio(e, tb)
                vs = fmt_ratio(r, 1)
            else:
                r = {"median": e.rate / QUOTED_TORCH_STEPS_PER_S}
                vs = f"{r['median']:.1f} (vs QUOTED 6,000/s)"
            row = record("sgd", problem="completion", runner=e.name, S=S, steps=N, ratio_vs_torch=r,
                         rate=e.rate, compile_s=e.compile_s, torch_rate=tb.rate if tb else None,
                         torch_measured=tb is not None)
            if e is sharded:
                row["bit_identical_to_unsharded"] = same
            log(f"S={S:4d} {e.name:20s} x torch: {vs:22s} ({e.rate:,.0f} seed-steps/s; torch "
                f"{(tb.rate if tb else QUOTED_TORCH_STEPS_PER_S):,.0f} steps/s)  compile {e.compile_s:.1f}s"
                + (f"  bit-identical: {same}" if e is sharded else ""))
        if sharded is not None:
            r = ratio(sharded, entries[0])
            record("sharding", problem="completion", runner="sgd", S=S, ratio=r)
            log(f"S={S:4d} sharded / unsharded: {fmt_ratio(r)}")


# ---------------------------------------------------------------------------
# section ablation: where the SGD loop's time goes
# ---------------------------------------------------------------------------


def variant_advance(stepper, data, observe, *, num_records, record_every, rng=True, check="full",
                    threshold=1e30, max_block=256):
    """A copy of the earlier ``sde_bias.integrate.advance`` (divergence test after every
    unit step, one draw per block) with switches, for ablation:
    ``rng=False`` feeds a constant draw (an exact 50% Bernoulli mask for bits);
    ``check``: ``"full"`` (as it was), ``"cheap"`` (one reduction: ``max|theta| < thr``,
    false for NaN and inf, so the same decisions), ``"none"``."""
    block = block_size(record_every, max_block)
    blocks_per_record = record_every // block
    sub = stepper.substeps

    @jax.jit
    def run(theta0, keys):
        shapes = jax.eval_shape(lambda k: stepper.draw(k, block * sub, data, theta0.dtype), jax.random.key(0))
        const_draws = jax.tree_util.tree_map(  # 0x55555555: every other bit set, an exact 50% mask
            lambda s: jnp.full(s.shape, 0x55555555 if s.dtype == jnp.uint32 else 0, s.dtype), shapes)

        def seed_chunk(theta, key):
            dtype = theta.dtype

            def unit(carry, draws_unit):
                theta, div, k = carry

                def substep(th, d):
                    return stepper.step(th, None, data, d)[0], None

                th1, _ = jax.lax.scan(substep, theta, draws_unit)
                k = k + 1
                if check == "none":
                    return (th1, div, k), None
                if check == "full":
                    bad = ~(jnp.all(jnp.isfinite(th1)) & (jnp.max(jnp.abs(th1)) < threshold))
                else:
                    bad = ~(jnp.max(jnp.abs(th1)) < threshold)
                alive = div < 0
                theta = jnp.where(alive & ~bad, th1, theta)
                div = jnp.where(alive & bad, k, div)
                return (theta, div, k), None

            def one_block(carry, _):
                k = carry[2]
                if rng:
                    draws = stepper.draw(jax.random.fold_in(key, k // block), block * sub, data, dtype)
                else:
                    draws = const_draws
                draws = jax.tree_util.tree_map(lambda a: a.reshape((block, sub) + a.shape[1:]), draws)
                carry, _ = jax.lax.scan(unit, carry, draws)
                return carry, None

            def one_record(carry, _):
                carry, _ = jax.lax.scan(one_block, carry, None, length=blocks_per_record)
                return carry, observe(carry[0], data)

            (theta, div, _), rec = jax.lax.scan(one_record, (theta, jnp.int32(-1), jnp.int32(0)), None,
                                                length=num_records)
            return theta, rec

        return jax.vmap(seed_chunk)(theta0, keys)

    return run


def dense_completion_sgd(problem, data, lr, num_steps):
    """Hand-written completion SGD on the dense 20 x 20 mask: three matmuls per step, no
    gather/scatter, no RNG (a fixed half mask), no divergence test, no recording: the
    floor of this model's step on XLA CPU."""
    rows, cols = problem.model.rows, problem.model.cols
    r = problem.model.rank
    obs_mask = jnp.zeros((rows, cols), data.y.dtype).at[data.x[:, 0], data.x[:, 1]].set(1.0)
    target = jnp.zeros((rows, cols), data.y.dtype).at[data.x[:, 0], data.x[:, 1]].set(data.y)
    weight = obs_mask * (0.5 * 2.0 / problem.scheme.normalizer)  # same flops as a random mask

    @jax.jit
    def run(theta0, keys):
        def one(theta, key):
            P, Q = theta[: rows * r].reshape(rows, r), theta[rows * r:].reshape(r, cols)

            def step(c, _):
                P, Q = c
                R = (P @ Q - target) * weight
                return (P - lr * R @ Q.T, Q - lr * P.T @ R), None

            (P, Q), _ = jax.lax.scan(step, (P, Q), None, length=num_steps)
            return jnp.concatenate([P.ravel(), Q.ravel()])

        return jax.vmap(one)(theta0, keys)

    return run


def section_ablation():
    log("\n== ablation: completion SGD at 256 seeds, time shares of the loop ==")
    problem, data, lr = completion()
    observe = make_observer(problem, ["loss"])
    stepper = DiscreteStepper(problem, lr)
    S, N = 256, steps(1000)
    theta0, keys = completion_theta0(problem, S), seed_keys(S)
    nr = N // 1000
    entries = ours_entries("run_ensemble (as shipped)", stepper, theta0, keys, data, observe, N, 1000)
    # switches on a copy of the earlier per-step-check loop (variant_advance)
    variants = {
        "per-step loop, full check": dict(check="full"),
        "per-step loop, one-reduction check": dict(check="cheap"),
        "per-step loop, no divergence check": dict(check="none"),
        "per-step loop, no RNG (constant mask)": dict(rng=False),
        "per-step loop, no RNG, no check": dict(rng=False, check="none"),
    }
    for name, kw in variants.items():
        f = variant_advance(stepper, data, observe, num_records=nr, record_every=1000, **kw)
        entries.append(Entry(name, lambda f=f: f(theta0, keys)[0], S * N))
    dense = dense_completion_sgd(problem, data, lr, N)
    entries.append(Entry("hand-written dense, no RNG/check/records", lambda: dense(theta0, keys), S * N))
    run_rounds(entries)
    base = entries[0]
    for e in entries:
        r = ratio(e, base)
        record("ablation", problem="completion", runner=e.name, S=S, ratio_vs_run_ensemble=r, rate=e.rate,
               compile_s=e.compile_s)
        log(f"{e.name:42s} speed x run_ensemble: {fmt_ratio(r)}  ({e.rate:,.0f} seed-steps/s)")


# ---------------------------------------------------------------------------
# section sde: fixed-step SDE path against (a) scan EM, (b) VBT, (c) UBP
# ---------------------------------------------------------------------------


def ref_scan_em(sde, data, m, num_steps):
    """(a) hand-written Euler-Maruyama: increments for the whole run drawn at once (inside
    the timed call), then a lax.scan with SGDSDE.drift and SGDSDE.diffusion_mv."""
    dt = sde.time_step

    @jax.jit
    def run(theta0, keys):
        def one(theta, key):
            dW = math.sqrt(dt) * jax.random.normal(key, (num_steps, m), theta.dtype)

            def body(th, dw):
                return th + dt * sde.drift(0.0, th, data) + sde.diffusion_mv(th, data, dw), None

            return jax.lax.scan(body, theta, dW)[0]

        return jax.vmap(one)(theta0, keys)

    return run


def ref_diffeqsolve(sde, data, m, num_steps, kind):
    """(b) ``kind="vbt"``: VirtualBrownianTree (tol = dt / 2); (c) ``kind="ubp"``:
    UnsafeBrownianPath with ``adjoint=ForwardMode()``. Euler, constant step dt, SaveAt(t1)."""
    dt = sde.time_step
    t1 = num_steps * dt

    @jax.jit
    def run(theta0, keys):
        def one(theta, key):
            if kind == "vbt":
                bm = diffrax.VirtualBrownianTree(0.0, t1, tol=dt / 2, shape=(m,), key=key)
                adjoint = diffrax.RecursiveCheckpointAdjoint()
            else:
                bm = diffrax.UnsafeBrownianPath(shape=(m,), key=key)
                adjoint = diffrax.ForwardMode()
            terms = diffrax.MultiTerm(diffrax.ODETerm(sde.drift), diffrax.ControlTerm(sde.diffusion_operator, bm))
            sol = diffrax.diffeqsolve(terms, diffrax.Euler(), 0.0, t1, dt, theta, args=data,
                                      saveat=diffrax.SaveAt(t1=True), stepsize_controller=diffrax.ConstantStepSize(),
                                      max_steps=num_steps + 8, adjoint=adjoint)
            return sol.ys[-1]

        return jax.vmap(one)(theta0, keys)

    return run


def section_sde():
    log("\n== sde: SDEStepper(SGDSDE, Euler) vs (a) scan EM, (b) diffeqsolve+VBT, (c) diffeqsolve+UBP ==")
    mc_problem, mc_data, mc_lr = completion()
    uv_problem, uv_data, uv_lr = uv_toy()
    configs = [
        # problem, S, steps (ours, (a), (c)), steps for (b), record_every
        ("completion", 1, steps(10000), steps(2000), 1000),
        ("completion", 16, steps(2000), 300, 1000),
        ("completion", 256, steps(250, 250), 50, 250),
        ("uv", 1, steps(200000), steps(2000), 1000),
        ("uv", 16, steps(100000), steps(1000), 1000),
        ("uv", 256, steps(20000), steps(1000), 1000),
        ("uv", 10000, steps(2000), 40, 1000),
    ]
    for name, S, N, NB, rec in configs:
        problem, data, lr = (mc_problem, mc_data, mc_lr) if name == "completion" else (uv_problem, uv_data, uv_lr)
        theta0 = completion_theta0(problem, S) if name == "completion" else uv_theta0(S)
        keys = seed_keys(S)
        observe = make_observer(problem, ["loss"])
        sde = SGDSDE(problem, lr)
        stepper = SDEStepper(sde, diffrax.Euler())
        m = sde.noise_dim(data)
        entries = ours_entries("ours", stepper, theta0, keys, data, observe, N, rec)
        a = Entry("(a) scan EM", lambda f=ref_scan_em(sde, data, m, N): f(theta0, keys), S * N)
        b = Entry("(b) diffeqsolve+VBT", lambda f=ref_diffeqsolve(sde, data, m, NB, "vbt"): f(theta0, keys), S * NB)
        c = Entry("(c) diffeqsolve+UBP", lambda f=ref_diffeqsolve(sde, data, m, N, "ubp"): f(theta0, keys), S * N)
        entries += [a, b, c]
        sharded = None
        if NUM_DEVICES > 1 and S >= 256:
            th_s, k_s = shard_seeds(theta0, keys)
            sharded = Entry("ours sharded", lambda th_s=th_s, k_s=k_s: run_ensemble(
                stepper, th_s, k_s, data, observe, num_steps=N, record_every=rec)["ensemble"].theta, S * N)
            entries.append(sharded)
        run_rounds(entries)
        for e in entries:
            r = ratio(e, a)
            met = r["median"] >= SDE_TARGET if e.name.startswith("ours") else None
            record("sde", problem=name, runner=e.name, S=S, steps=e.units // S, ratio_vs_a=r, rate=e.rate,
                   compile_s=e.compile_s, meets_1_5x=met)
            log(f"{name:10s} S={S:5d} {e.name:20s} x (a): {fmt_ratio(r, 3):24s} ({e.rate:,.0f} traj-steps/s)  "
                f"compile {e.compile_s:.1f}s" + ("" if met is None else f"  within 1.5x: {met}"))
        if sharded is not None:
            r = ratio(sharded, entries[0])
            record("sharding", problem=name, runner="sde", S=S, ratio=r)
            log(f"{name:10s} S={S:5d} sharded / unsharded: {fmt_ratio(r)}")


# ---------------------------------------------------------------------------
# section uv_sgd: SGD on the toy at 10,000 trajectories
# ---------------------------------------------------------------------------


def ref_scan_sgd(problem, data, lr, num_steps, std):
    """Hand-written label-noise SGD: noise for the whole run drawn at once, then a scan of
    ``theta - lr grad(problem.weighted_loss)`` on the noisy labels."""
    n = data.size

    @jax.jit
    def run(theta0, keys):
        def one(theta, key):
            eps = std * jax.random.normal(key, (num_steps,) + data.y.shape, theta.dtype)
            w = jnp.full((n,), 1.0 / n, theta.dtype)

            def body(th, e):
                g = jax.grad(problem.weighted_loss)(th, Dataset(data.x, data.y + e), w)
                return th - lr * g, None

            return jax.lax.scan(body, theta, eps)[0]

        return jax.vmap(one)(theta0, keys)

    return run


def section_uv_sgd():
    log("\n== uv_sgd: label-noise SGD on the u v toy, 10,000 trajectories ==")
    problem, data, lr = uv_toy()
    S, N = 10000, steps(2000)
    theta0, keys = uv_theta0(S), seed_keys(S)
    observe = make_observer(problem, ["loss"])
    stepper = DiscreteStepper(problem, lr)
    entries = ours_entries("ours", stepper, theta0, keys, data, observe, N, 1000)
    ref = Entry("hand-written scan SGD", lambda f=ref_scan_sgd(problem, data, lr, N, 0.5): f(theta0, keys), S * N)
    entries.append(ref)
    if NUM_DEVICES > 1:
        th_s, k_s = shard_seeds(theta0, keys)
        entries.append(Entry("ours sharded", lambda: run_ensemble(stepper, th_s, k_s, data, observe, num_steps=N,
                                                                    record_every=1000)["ensemble"].theta, S * N))
    run_rounds(entries)
    for e in entries:
        r = ratio(e, ref)
        record("uv_sgd", problem="uv", runner=e.name, S=S, steps=N, ratio_vs_scan=r, rate=e.rate, compile_s=e.compile_s)
        log(f"S={S} {e.name:22s} x hand-written: {fmt_ratio(r)}  ({e.rate:,.0f} traj-steps/s)  compile {e.compile_s:.1f}s")


# ---------------------------------------------------------------------------
# section f64
# ---------------------------------------------------------------------------


def section_f64():
    log("\n== f64: completion SGD, float64 vs float32 (x64 enabled for both) ==")
    jax.config.update("jax_enable_x64", True)
    for S, N in ((1, steps(10000)), (256, steps(1000))):
        entries = []
        for dtype in (jnp.float32, jnp.float64):
            problem, data, lr = completion(dtype)
            observe = make_observer(problem, ["loss"])
            theta0, keys = completion_theta0(problem, S, dtype), seed_keys(S)
            entries += ours_entries(f"{jnp.dtype(dtype).name}", DiscreteStepper(problem, lr), theta0, keys, data,
                                    observe, N, 1000)
        run_rounds(entries)
        r = ratio(entries[0], entries[1])
        record("f64", problem="completion", runner="sgd", S=S, f32_over_f64=r, compile_s_f64=entries[1].compile_s)
        log(f"S={S:4d} float32 speed / float64 speed: {fmt_ratio(r)}")
    jax.config.update("jax_enable_x64", False)


# ---------------------------------------------------------------------------


def main():
    t0 = time.perf_counter()
    RESULTS["meta"] = {
        "date": datetime.date.today().isoformat(),
        "command": "python " + " ".join(sys.argv),
        "jax": jax.__version__, "diffrax": diffrax.__version__, "python": platform.python_version(),
        "cpu_cores": os.cpu_count(), "host_devices": NUM_DEVICES, "rounds": ROUNDS, "quick": ARGS.quick,
        "load_avg_start": os.getloadavg(),
    }
    log(f"jax {jax.__version__}, {os.cpu_count()} cores, {NUM_DEVICES} host device(s), {ROUNDS} rounds, "
        f"load average {os.getloadavg()[0]:.1f}")
    only = set(ARGS.only.split(","))
    RESULTS["meta"]["section_wall_s"] = walls = {}

    def sgd():
        tb = TorchBaseline()
        RESULTS["meta"]["torch"] = {"measured": tb.available, "threads": tb.threads, "calibration": tb.calibration}
        section_sgd(tb)

    for name, fn in (("sgd", sgd), ("ablation", section_ablation), ("uv_sgd", section_uv_sgd), ("sde", section_sde),
                     ("f64", section_f64)):
        if name in only:
            t = time.perf_counter()
            fn()
            walls[name] = time.perf_counter() - t
            log(f"[{name}: {walls[name]:.0f} s]")
    RESULTS["meta"]["load_avg_end"] = os.getloadavg()
    RESULTS["meta"]["wall_s"] = time.perf_counter() - t0
    log(f"\nwall time {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f}")
    compiles = [(r["section"], r.get("problem"), r["runner"], r.get("S"), r["compile_s"]) for r in RESULTS["rows"]
                if r.get("compile_s") is not None and r["runner"].startswith("ours") and "loop" not in r["runner"]]
    if compiles:
        worst = max(compiles, key=lambda c: c[-1])
        log(f"slowest compile of an engine runner: {worst[-1]:.1f} s ({worst[:4]}); target < {COMPILE_TARGET_S:.0f} s")
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump(RESULTS, f, indent=1, default=float)
        log(f"results written to {ARGS.json}")


if __name__ == "__main__":
    main()

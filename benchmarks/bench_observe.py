#!/usr/bin/env python
"""What evaluating the observables one seed at a time costs (``integrate.observe_seeds``).

Since the fix for sharded runs (benchmarks/README.md, "Seed sharding") the ensemble loop
evaluates the observables with ``lax.map`` over seeds instead of ``vmap``, so that no
batched LAPACK kernel runs inside a partition. This script measures the price on the
paper's matrix completion (SGD, records: loss, singular values, balance) at 256 seeds,
unsharded (one device: the ``vmap`` variant is safe there), for a record every 100 and
every 1,000 steps. Rounds are interleaved; the figure is the median over rounds of the
per-round ratio (map / vmap throughput).

    python benchmarks/bench_observe.py [--rounds 5]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402

from sde_bias import integrate  # noqa: E402
from sde_bias.observables import make_observer  # noqa: E402
from sde_bias.sgd import DiscreteStepper  # noqa: E402


def _vmap_observe(observe, theta, data, data_batched=False):
    return jax.vmap(observe, in_axes=(0, 0 if data_batched else None))(theta, data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    sys.argv = sys.argv[:1] + ["--devices", "1"]  # bench_engine parses its own arguments on import
    from bench_engine import completion, completion_theta0, seed_keys

    problem, data, lr = completion()
    observe = make_observer(problem, ["loss", "singular_values", "balance"])
    stepper = DiscreteStepper(problem, lr)
    S, N = 256, 2000
    theta0, keys = completion_theta0(problem, S), seed_keys(S)
    mapped = integrate.observe_seeds
    # one observer object per variant: the compiled loop is cached per observer, and each
    # variant is traced (once) while its evaluation rule is in place
    observers = {"map": lambda th, d: observe(th, d), "vmap": lambda th, d: observe(th, d)}

    def run(every, variant):
        integrate.observe_seeds = mapped if variant == "map" else _vmap_observe
        t = time.perf_counter()
        out = integrate.run_ensemble(stepper, theta0, keys, data, observers[variant], num_steps=N, record_every=every)
        jax.block_until_ready(out["ensemble"].theta)
        return S * N / (time.perf_counter() - t)

    print(f"jax {jax.__version__}, {len(jax.devices())} device(s), load {os.getloadavg()[0]:.1f}")
    for every in (100, 1000):
        for v in ("map", "vmap"):  # compile both (the observer is traced inside the jit)
            run(every, v)
        ratios = []
        for _ in range(args.rounds):
            a, b = run(every, "map"), run(every, "vmap")
            ratios.append(a / b)
        print(f"record every {every:5d} steps: map / vmap throughput {statistics.median(ratios):.3f} "
              f"[{min(ratios):.3f}-{max(ratios):.3f}] over {args.rounds} rounds")
    integrate.observe_seeds = mapped


if __name__ == "__main__":
    main()

"""A faithful re-implementation of the paper's PyTorch training loop for matrix completion.

Benchmark-only baseline for ``bench_engine.py`` (torch is NOT a dependency of sde_bias).
Settings of the paper's experiment 3 (arXiv:2601.06597, docs/paper_experiments.md):
20 x 20 target of rank 2 (singular values 15, 5), 20% of the entries observed,
factors ``P`` (20 x 20) ~ N(0, 0.11^2) and ``Q`` (20 x 20) ~ N(0, 0.1^2), plain SGD
(``torch.optim.SGD``, no momentum, no weight decay), learning rate 1e-3, float32, one seed.
Each step:

    keep = Bernoulli(0.5) mask over the 20 x 20 entries (only the observed ones count)
    loss = ((P @ Q - M*) ** 2 * keep * observed).sum() / 400
    opt.zero_grad(); loss.backward(); opt.step()

Run ``python benchmarks/paper_loop_torch.py --steps 20000`` to print one JSON line with
``steps_per_s`` (median over ``--repeats``; the loop is warmed up first).
"""

import argparse
import json
import statistics
import time


def make_problem(seed: int = 0, size: int = 20, observe_prob: float = 0.2):
    import torch

    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(size, 2, generator=g))
    v, _ = torch.linalg.qr(torch.randn(size, 2, generator=g))
    target = (u * torch.tensor([15.0, 5.0])) @ v.T
    observed = (torch.rand(size, size, generator=g) < observe_prob).float()
    return target, observed


def train(num_steps: int, seed: int = 0, lr: float = 1e-3, record_every: int = 1000):
    """The paper's loop; returns (elapsed seconds, recorded losses)."""
    import torch

    target, observed = make_problem(seed)
    torch.manual_seed(seed + 1)
    P = (0.11 * torch.randn(20, 20)).requires_grad_()
    Q = (0.1 * torch.randn(20, 20)).requires_grad_()
    opt = torch.optim.SGD([P, Q], lr=lr, momentum=0.0)
    half = torch.full_like(observed, 0.5)
    losses = []
    t0 = time.perf_counter()
    for step in range(num_steps):
        keep = torch.bernoulli(half)
        loss = ((P @ Q - target) ** 2 * keep * observed).sum() / 400
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % record_every == 0:
            losses.append(loss.item())
    return time.perf_counter() - t0, losses


def measure(num_steps: int = 20_000, repeats: int = 3, warmup: int = 500, threads: int | None = None) -> dict:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    train(warmup)
    times = [train(num_steps)[0] for _ in range(repeats)]
    med = statistics.median(times)
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "steps": num_steps,
        "repeats": repeats,
        "median_s": med,
        "steps_per_s": num_steps / med,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    a = ap.parse_args()
    print(json.dumps(measure(a.steps, a.repeats, threads=a.threads)))


if __name__ == "__main__":
    main()

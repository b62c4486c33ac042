"""The hyperbola's balance decay rate over a (learning rate x label noise) sweep.

For label-noise SGD on ``u v = 1`` the imbalance ``C = u^2 - v^2`` has
``E[C](t) = C(0) exp(-lr delta^2 t)`` under the SDE (docs/theory.md section 2.5). A discrete
step multiplies ``C`` by ``1 - lr^2 g^2`` with ``g = u v - y - eps``, so near the minimum the
per-time rate of discrete SGD (and of Euler-Maruyama, the same random map for this problem)
is ``-log(1 - lr^2 delta^2) / lr = lr delta^2 + O(lr^3 delta^4)``.
:func:`decay_rates` fits the rate of the seed-mean ``C(t)`` at every point;
:func:`balance_rate_figure` draws it against ``lr delta^2`` with both closed forms.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

LR, DELTA = "training.lr", "noise.label_noise"


def decay_rates(g) -> np.ndarray:
    """Least-squares slope of ``-log E[C]`` against ``t`` at every point (seed mean over the
    seeds that did not diverge): an array over the swept dimensions."""
    c = np.asarray(g["balance.imbalance"][...], float)  # [dims..., seed, step]
    t = np.asarray(g["time"][...], float)  # [dims..., step]
    with np.errstate(all="ignore"):
        m = np.nanmean(c, axis=-2)
    out = np.full(m.shape[:-1], np.nan)
    for idx in np.ndindex(*out.shape):
        ok = np.isfinite(m[idx]) & (m[idx] > 0)
        if ok.sum() >= 3:
            out[idx] = -np.polyfit(t[idx][ok], np.log(m[idx][ok]), 1)[0]
    return out


def balance_rate_figure(h5, dims: list[dict], runners: list[str], out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    names = [d["name"] for d in dims]
    grids = np.meshgrid(*[np.asarray(d["values"][d["name"]], float) for d in dims], indexing="ij")
    lr, delta = grids[names.index(LR)], grids[names.index(DELTA)]
    x = (lr * delta**2).ravel()
    fig, ax = plt.subplots(figsize=(5, 4))
    for r in runners:
        if "balance.imbalance" in h5[r]:
            ax.plot(x, decay_rates(h5[r]).ravel(), "o", ms=4, label=r)
    xs = np.linspace(0, x.max() * 1.05, 100)
    ax.plot(xs, xs, "k--", lw=1, label="SDE: lr δ²")
    disc = np.array([-math.log(1 - a**2 * b**2) / a if a * b < 1 else np.nan for a, b in zip(lr.ravel(), delta.ravel())])
    order = np.argsort(x)
    ax.plot(x[order], disc[order], "k:", lw=1, label="discrete: -log(1 - lr² δ²)/lr")
    ax.set_xlabel("lr δ²")
    ax.set_ylabel("decay rate of E[u² - v²] (per unit time)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / "sweep_balance_rate.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p

"""The balance law under discrete steps: one-step identities and the balance check of a run
(docs/theory.md section 2).

``C(theta) = theta^T A theta`` with ``A`` symmetric and ``A theta`` a generator field.

**One-step identity.** For any step ``theta' = theta + delta``, exactly

    C(theta') - C(theta) = 2 delta^T A theta + delta^T A delta.

For SGD, ``delta = -eta ghat``, and every per-sample gradient (with any label) is
orthogonal to the generator field, so ``ghat . A theta = 0`` and

    C_{k+1} = C_k + eta^2 ghat_k^T A ghat_k                         (:func:`sgd_step_increment`)

(for ``u v`` with ``A = diag(1, -1)`` and ``ghat = g (v, u)`` this is
``C_{k+1} = C_k (1 - eta^2 g_k^2)``). A penalty or the order-2 drift may break the
orthogonality, which is why the first term is kept below.

**Its conditional mean.** With mean step ``m = E[delta | theta]`` and step covariance
``Cov[delta | theta] = S S^T``:

    E[C_{k+1} - C_k | theta_k] = 2 m^T A theta + m^T A m + tr(S^T A S).

- SGD (SVAG with ``l`` sub-steps): ``m = -(eta/l)(E ghat + grad penalty)``,
  ``S = (eta / sqrt(l)) sigma`` with ``sigma sigma^T = Cov[ghat]``; gradient descent has
  ``S = 0``, so it moves ``C`` by exactly ``eta^2 gbar^T A gbar`` per step: an ``O(eta^2)``
  drift that is predicted, not a failure.
- Euler-Maruyama at step ``dt`` is a discrete step with Gaussian noise:
  ``m = dt mu``, ``S = sqrt(dt) sqrt(eta) sigma``; the same identity holds.

Per unit time the continuous (Itô) balance law is ``dC/dt = 2 mu^T A theta + eta tr(Cov A)``
(the first term vanishes by symmetry); the discrete identity adds ``m^T A m / dt =
dt mu^T A mu``: the exact ``O(dt)`` difference between a discrete runner and the SDE.

**Other solvers** (Heun, Milstein, SRK) evaluate their vector fields away from
``theta_k``, so neither form is exact for them: their prediction is the continuous law
integrated along the path with the trapezoid rule (second order, so the ``O(dt)`` error
left is the solver's), and that error is estimated by halving ``dt`` twice on the same
Brownian paths: the order is fitted on the two successive differences and the error at
``dt`` extrapolated from it (:func:`~sde_bias.convergence.halving_estimate`; the
solver's known weak order is used when the differences are too noisy to fit one).

**The check** (:func:`balance_check`) replays every fixed-step runner of a run with the
same keys (the same path, step for step) through :class:`BalanceTracker`, which adds up
the predicted increments at every step, and compares ``C_A(T)`` with ``C_A(0)`` plus that
sum, for every symmetric generator ``A`` of the model (``C_A0``, ``C_A1``, ...). The
residual of each seed is a sum of martingale increments (mean zero), so its
spread over seeds is the standard error; nothing is integrated on the coarse record grid.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .verdict import Comparison

GROUP = "balance law"


# ---------------------------------------------------------------------------- identities
def quadratic(A: Float[Array, "a p p"], theta: Float[Array, " p"]) -> Float[Array, " a"]:
    """``C_A(theta) = theta^T A theta`` for each matrix of the stack."""
    return jnp.einsum("p,apq,q->a", theta, A, theta)


def step_increment(A: Float[Array, "a p p"], theta: Float[Array, " p"], delta: Float[Array, " p"]) -> Float[Array, " a"]:
    """``C(theta + delta) - C(theta) = 2 delta^T A theta + delta^T A delta`` (exact)."""
    Ad = jnp.einsum("apq,q->ap", A, delta)
    return 2.0 * Ad @ theta + Ad @ delta


def sgd_step_increment(A: Float[Array, "a p p"], ghat: Float[Array, " p"], eta) -> Float[Array, " a"]:
    """``eta^2 ghat^T A ghat``: the change of ``C`` in one SGD step when ``ghat . A theta = 0``."""
    return eta**2 * jnp.einsum("p,apq,q->a", ghat, A, ghat)


def expected_increment(
    A: Float[Array, "a p p"], theta: Float[Array, " p"], mean_step: Float[Array, " p"], noise: Float[Array, "p m"]
) -> Float[Array, "3 a"]:
    """The three terms of ``E[C(theta + delta) - C(theta)]`` for a step of mean ``mean_step``
    and covariance ``noise noise^T``: ``[2 m^T A theta, m^T A m, tr(noise^T A noise)]``."""
    Am = jnp.einsum("apq,q->ap", A, mean_step)
    drift = 2.0 * Am @ theta
    dt_term = Am @ mean_step
    if noise.shape[-1] == 0:
        diff = jnp.zeros_like(drift)
    else:
        diff = jnp.einsum("apq,pm,qm->a", A, noise, noise)
    return jnp.stack([drift, dt_term, diff])


def _sde_stepper(stepper):
    """The :class:`~sde_bias.sde.SDEStepper` inside ``stepper`` (itself or a refined one)."""
    return getattr(stepper, "stepper", stepper)


def uses_discrete_identity(stepper) -> bool:
    """True for discrete runners and Euler-Maruyama (their steps are explicit maps with the
    mean and covariance of :func:`step_moments`); False for other SDE solvers."""
    if not hasattr(stepper, "sde"):
        return True
    return isinstance(_sde_stepper(stepper).solver, diffrax.Euler)


def step_moments(stepper, theta, data) -> tuple[Float[Array, " p"], Float[Array, "p m"]]:
    """Mean and a square root of the covariance of one sub-step of ``stepper`` from ``theta``:
    exact for discrete steppers (SGD, GD, SVAG) and Euler-Maruyama; for other SDE solvers
    the Itô drift and diffusion times ``dt`` and ``sqrt(dt)`` (the continuous law)."""
    if hasattr(stepper, "sde"):
        st = _sde_stepper(stepper)
        dt = st.dt
        mu = st.sde.drift(0.0, theta, data)
        m = st.sde.noise_dim(data)
        S = st.sde.diffusion_matrix(0.0, theta, data) if m else jnp.zeros((theta.shape[0], 0), theta.dtype)
        return dt * mu, math.sqrt(dt) * S
    problem, scheme, l = stepper.problem, stepper.scheme, stepper.svag_l
    h = stepper.lr / l
    g = scheme.mean_gradient(problem, theta, data) + problem.penalty_gradient(theta)
    if scheme.noise_dim(problem, data):
        S = (h * math.sqrt(l)) * scheme.diffusion_matrix(problem, theta, data)
    else:
        S = jnp.zeros((theta.shape[0], 0), theta.dtype)
    return -h * g, S


class BalanceTracker(eqx.Module):
    """``inner`` (any fixed-step stepper) that also adds up the three terms of
    :func:`expected_increment` step by step: at the left point of every step (``left``:
    the conditional mean of the step, for the discrete identity) and with the trapezoid
    rule over the step (``trap``: a second-order quadrature of the continuous law, so that
    the only ``O(dt)`` error left is the solver's). ``aux = (inner aux, left [3, a],
    trap [3, a], terms at the current state [3, a])``. Draws and steps are the inner
    stepper's, so a replay with the run's keys follows the run's path."""

    inner: Any
    A: Float[Array, "a p p"]

    @property
    def substeps(self) -> int:
        return self.inner.substeps

    def _terms(self, theta, data):
        m, S = step_moments(self.inner, theta, data)
        return expected_increment(self.A, theta, m, S)

    def init(self, theta, data):
        z = jnp.zeros((3, self.A.shape[0]), theta.dtype)
        return self.inner.init(theta, data), z, z, self._terms(theta, data)

    def draw(self, key, num_steps, data, dtype):
        return self.inner.draw(key, num_steps, data, dtype)

    def step(self, theta, aux, data, draw):
        inner_aux, left, trap, here = aux
        theta1, inner_aux = self.inner.step(theta, inner_aux, data, draw)
        there = self._terms(theta1, data)
        return theta1, (inner_aux, left + here, trap + 0.5 * (here + there), there)


class Replay(NamedTuple):
    """Result of :func:`replay` (numpy arrays; seeds that diverged are NaN)."""

    C0: np.ndarray  # [S, a]
    C: np.ndarray  # [S, K, a] C_A at the K checkpoints (0 and the end of every chunk)
    left: np.ndarray  # [S, K, 3, a] accumulated terms, left-point
    trap: np.ndarray  # [S, K, 3, a] accumulated terms, trapezoid
    time: np.ndarray  # [K]


def replay(stepper, A, setup, *, num_steps: int, record_every: int, theta0=None, keys=None, checkpoints: int = 20) -> Replay:
    """Run ``BalanceTracker(stepper, A)`` from the setup's initial points and keys (the run's
    path) and return ``C_A`` and the accumulated terms at about ``checkpoints`` times."""
    from .integrate import run_ensemble

    tracker = BalanceTracker(stepper, A)
    theta0 = setup.theta0 if theta0 is None else theta0
    keys = setup.run_keys if keys is None else keys
    total = num_steps // record_every
    chunk = max(1, total // checkpoints)
    while total % chunk:
        chunk -= 1
    kept: list = []

    def keep(ens, rec):
        kept.append((np.asarray(rec["C"][:, -1]), np.asarray(ens.aux[1]), np.asarray(ens.aux[2])))

    out = run_ensemble(
        tracker, theta0, keys, setup.data, lambda th, d: {"C": quadratic(A, th)},
        num_steps=num_steps, record_every=record_every, data_batched=setup.data_batched,
        chunk_records=chunk, callback=keep,
        divergence_threshold=float(setup.scenario.training.divergence_threshold),
    )
    C0 = np.asarray(out["records"]["C"][:, 0])
    z = np.zeros_like(kept[0][1])
    C = np.stack([C0] + [k[0] for k in kept], axis=1)
    left = np.stack([z] + [k[1] for k in kept], axis=1)
    trap = np.stack([z] + [k[2] for k in kept], axis=1)
    div = np.asarray(out["diverged_at"]) >= 0
    for a in (C, left, trap):
        a[div] = np.nan
    lr = float(setup.scenario.training.lr)
    return Replay(C0, C, left, trap, np.arange(C.shape[1]) * chunk * record_every * lr)


def prediction(rep: Replay, discrete: bool, rate_factor: float = 1.0) -> np.ndarray:
    """Predicted ``C_A`` at the checkpoints [S, K, a]. ``discrete``: ``C_A(0)`` plus the
    conditional means of every step (drift, ``O(dt)`` and noise terms, left point: the
    exact discrete identity); else ``C_A(0)`` plus the continuous law (drift and noise
    terms, trapezoid rule). ``rate_factor`` multiplies the noise term (1: the theory)."""
    if discrete:
        a = rep.left
        return rep.C0[:, None] + a[:, :, 0] + a[:, :, 1] + rate_factor * a[:, :, 2]
    a = rep.trap
    return rep.C0[:, None] + a[:, :, 0] + rate_factor * a[:, :, 2]


def _halving(r: list[np.ndarray], known: float, known_src: str) -> tuple[float, float, str]:
    """Discretisation error at ``dt`` from per-path values at ``dt, dt/2, dt/4`` (same paths):
    the order is fitted on the two successive differences when they determine it (standard
    error < 0.5), else ``known`` is used; then ``(r_dt - r_dt/2) / (1 - 2^-p)``, with the
    order's uncertainty propagated."""
    from .convergence import halving_estimate, weak_study

    x = np.stack(r)
    x = x[:, np.all(np.isfinite(x), axis=0)]
    fit = weak_study(np.array([1.0, 0.5, 0.25]), x).fit
    if np.isfinite(fit.order) and fit.se < 0.5 and fit.order > 0:
        p, p_se, src = fit.order, fit.se, f"dt-halving x2, fitted order {fit.order:.2f} ± {fit.se:.2g}"
    else:
        p, p_se, src = known, 0.0, f"dt-halving, {known_src}"
    est = halving_estimate(x[0], x[1], p)
    d = float(np.mean(x[0] - x[1]))
    k = 2.0 ** (-p)
    dE_dp = -d * k * math.log(2.0) / (1.0 - k) ** 2
    return est.error, math.hypot(est.se, dE_dp * p_se), src


def _residual(rep: Replay, discrete: bool, rate_factor: float, component: int = 0) -> np.ndarray:
    return (rep.C - prediction(rep, discrete, rate_factor))[:, -1, component]


def _rounding(rep: Replay, num_steps: int, dtype, component: int = 0) -> float:
    """Floating-point floor of the residual's standard error: one rounding of ``C`` per step."""
    C = rep.C[..., component]
    scale = float(np.nanmax(np.abs(C))) if np.isfinite(C).any() else 0.0
    return float(np.finfo(dtype).eps) * scale * num_steps


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0


class RunnerReplays(NamedTuple):
    """Everything the balance check of one runner needs: the replay of its own path and,
    for solvers without an exact discrete identity, replays at ``dt, dt/2, dt/4`` on shared
    Brownian paths (``levels``; empty otherwise)."""

    stepper: Any
    discrete: bool
    run: Replay
    levels: list[Replay]
    num_steps: int


def balance_replays(setup, runners: dict[str, Any], *, halving_seeds: int | None = None) -> dict[str, RunnerReplays]:
    """Replay every fixed-step runner in ``runners`` (HDF5 group -> stepper) through
    :class:`BalanceTracker`, with the halving study of those that need one (on the first
    ``halving_seeds`` seeds; default all). ``{}`` when the model has no symmetric generator."""
    from .refine import refined
    from .symmetry import symmetric_generators

    sc = setup.scenario
    A = jnp.asarray(symmetric_generators(setup.problem.model, setup.theta0[0]), setup.dtype)
    if A.shape[0] == 0:
        return {}
    n_steps, every = sc.total_steps, sc.training.record_every
    out = {}
    for group, stepper in runners.items():
        discrete = uses_discrete_identity(stepper)
        run = replay(stepper, A, setup, num_steps=n_steps, record_every=every)
        levels = []
        if not discrete:
            S = setup.num_seeds if halving_seeds is None else min(halving_seeds, setup.num_seeds)
            st = stepper.stepper if hasattr(stepper, "stepper") else stepper
            levels = [
                replay(refined(st, lvl, 4), A, setup, num_steps=n_steps, record_every=every,
                       theta0=setup.theta0[:S], keys=setup.run_keys[:S])
                for lvl in (1, 2, 4)
            ]
        out[group] = RunnerReplays(stepper, discrete, run, levels, n_steps * stepper.substeps)
    return out


def balance_rows(
    replays: dict[str, RunnerReplays],
    *,
    rate_factor: float = 1.0,
    weak_orders: dict[str, tuple[float, str]] | None = None,
) -> tuple[list[Comparison], dict[str, dict[str, np.ndarray]]]:
    """The comparison rows of :func:`balance_replays` (``C_Aa(T)`` per runner and symmetric
    generator ``a``) and, per runner, arrays for the file: ``time`` [K]; ``recorded`` and
    ``predicted`` seed means of ``C_A`` at the checkpoints [K, a]; ``continuous_law`` (the
    prediction without the ``O(dt)`` term); ``residual_mean`` / ``residual_se`` (recorded minus
    predicted) and the same against the continuous law [K, a]; the per-seed ``residual`` at
    the last time [S, a]. ``rate_factor`` scales the noise term of the theory (1: the balance
    law; anything else is a deliberately wrong theory, for tests). ``weak_orders`` maps a
    runner group to the weak order used for its dt-halving estimate when the three levels
    cannot fit one, and where that order comes from (default: 1, the weak order of Heun,
    Milstein and SRK for non-additive noise)."""
    rows: list[Comparison] = []
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for group, rr in replays.items():
        rep, discrete = rr.run, rr.discrete
        own = rep.C - prediction(rep, discrete, rate_factor)  # [S, K, a]
        cont = rep.C - prediction(rep, False, rate_factor)
        n_ok = max(int(np.isfinite(own[:, -1, 0]).sum()), 1)
        arrays[group] = {
            "time": rep.time, "recorded": np.nanmean(rep.C, axis=0), "predicted": np.nanmean(rep.C - own, axis=0),
            "continuous_law": np.nanmean(rep.C - cont, axis=0), "residual": own[:, -1],
            "residual_mean": np.nanmean(own, axis=0), "residual_se": np.nanstd(own, axis=0, ddof=1) / math.sqrt(n_ok),
            "continuous_residual_mean": np.nanmean(cont, axis=0),
            "continuous_residual_se": np.nanstd(cont, axis=0, ddof=1) / math.sqrt(n_ok),
        }
        is_gd = not hasattr(rr.stepper, "sde") and getattr(rr.stepper, "full_batch", False)
        for a in range(rep.C.shape[-1]):
            diff, se = _mean_se(own[:, -1, a])
            se = max(se, _rounding(rep, rr.num_steps, rep.C.dtype, a))
            value = float(np.nanmean(rep.C[:, -1, a]))
            if discrete:
                src = "exact discrete identity" + (" (no noise)" if is_gd else "")
                disc, disc_se = 0.0, 0.0
            else:
                known, known_src = (weak_orders or {}).get(group, (1.0, "weak order 1"))
                disc, disc_se, src = _halving([_residual(r, False, rate_factor, a) for r in rr.levels], known, known_src)
            rows.append(Comparison(GROUP, f"C_A{a}(T)", group, value, se, value - diff, disc, disc_se, src))
    return rows, arrays


def balance_check(setup, runners: dict[str, Any], *, rate_factor: float = 1.0, weak_orders=None, halving_seeds=None):
    """:func:`balance_replays` then :func:`balance_rows`."""
    return balance_rows(balance_replays(setup, runners, halving_seeds=halving_seeds), rate_factor=rate_factor,
                        weak_orders=weak_orders)


__all__ = [
    "quadratic", "step_increment", "sgd_step_increment", "expected_increment", "uses_discrete_identity",
    "step_moments", "BalanceTracker", "Replay", "replay", "prediction", "RunnerReplays", "balance_replays",
    "balance_rows", "balance_check",
]

"""Three levels of one system compared on the same observables (docs/theory.md section 5):

    discrete SGD  <->  SDE in parameter space  <->  effective SDE on the quotient

* :func:`drift_at_points`: from each of K parameter points, many replicate runs of
  ``steps`` unit steps of a runner (SGD or SDE); the mean increment of the invariants
  divided by the elapsed time ``steps * eta`` estimates the effective drift there, with
  its standard error over replicates. The Itô projection at the same points is the
  theory. Bias of the estimate: O(h) from the finite horizon, plus O(eta) for SGD (the
  order-1 SDE is a weak order-1 approximation of SGD).
* :func:`binned_drift`: the same estimate from an ensemble's recorded trajectories,
  conditioning on ``q(t)`` in bins.
* :class:`ComparisonRow` / :func:`format_table`: one line per quantity with SGD, SDE,
  theory, and the discrepancies in standard errors.
"""

from typing import Callable, NamedTuple, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .integrate import run_ensemble
from .stats import binned_conditional_mean


class DriftEstimate(NamedTuple):
    mean: np.ndarray  # [K, d] estimated E[dq] / h
    se: np.ndarray  # [K, d]
    horizon: float  # h = steps * eta


def drift_at_points(
    stepper,
    thetas: jax.Array,
    invariants: Callable,
    data,
    *,
    replicates: int,
    steps: int,
    time_step: float,
    key: jax.Array,
    data_batched: bool = False,
) -> DriftEstimate:
    """Estimate the drift of ``q = invariants(theta)`` at each row of ``thetas`` [K, p]
    from ``replicates`` independent runs of ``steps`` unit steps each."""
    K, p = thetas.shape
    theta0 = jnp.repeat(thetas, replicates, axis=0)
    keys = jax.random.split(key, K * replicates)
    out = run_ensemble(
        stepper, theta0, keys, data, lambda th, d: {"q": invariants(th)},
        num_steps=steps, record_every=steps, data_batched=data_batched,
    )
    q = np.asarray(out["records"]["q"])  # [K*R, 2, d]
    dq = (q[:, 1] - q[:, 0]).reshape(K, replicates, -1)
    h = steps * time_step
    mean = dq.mean(1) / h
    se = dq.std(1, ddof=1) / np.sqrt(replicates) / h
    return DriftEstimate(mean, se, h)


def binned_drift(q_traj: np.ndarray, h: float, edges: np.ndarray, component: int = 0, min_count: int = 10):
    """Binned ``E[q(t + h) - q(t) | q(t)] / h`` from trajectories ``q_traj`` [S, T, d]
    recorded every ``h`` time units (all consecutive pairs are used; pairs from the same
    seed are dependent, so the SE treats them as independent only when the increments
    are, e.g. for Markov increments with no memory beyond one record)."""
    q = np.asarray(q_traj)[..., component]
    x, dx = q[:, :-1].ravel(), (q[:, 1:] - q[:, :-1]).ravel()
    ok = np.isfinite(x) & np.isfinite(dx)
    b = binned_conditional_mean(x[ok], dx[ok] / h, edges, min_count=min_count)
    return b


class ComparisonRow(NamedTuple):
    quantity: str
    sgd: float
    sgd_se: float
    sde: float
    sde_se: float
    theory: float

    @property
    def z_sgd(self) -> float:
        return (self.sgd - self.theory) / self.sgd_se if self.sgd_se > 0 else float("nan")

    @property
    def z_sde(self) -> float:
        return (self.sde - self.theory) / self.sde_se if self.sde_se > 0 else float("nan")

    @property
    def z_sgd_sde(self) -> float:
        s = np.hypot(self.sgd_se, self.sde_se)
        return (self.sgd - self.sde) / s if s > 0 else float("nan")


TABLE_FIELDS = ("quantity", "sgd", "sgd_se", "sde", "sde_se", "theory", "z_sgd", "z_sde", "z_sgd_sde")


def rows_to_arrays(rows: Sequence[ComparisonRow]) -> dict[str, np.ndarray]:
    """Column arrays of a comparison table (for HDF5)."""
    out = {f: np.array([getattr(r, f) for r in rows]) for f in TABLE_FIELDS[1:]}
    out["quantity"] = np.array([r.quantity for r in rows], dtype=object)
    return out


def format_table(rows: Sequence[ComparisonRow], title: str = "") -> str:
    """A fixed-width text table: quantity, SGD, SDE, theory, discrepancies in SE."""
    head = f"{'quantity':<34}{'SGD':>22}{'SDE':>22}{'theory':>12}{'z(SGD)':>9}{'z(SDE)':>9}{'z(S-S)':>9}"
    lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.quantity[:33]:<34}{r.sgd:>12.5g} ± {r.sgd_se:<7.2g}{r.sde:>12.5g} ± {r.sde_se:<7.2g}"
            f"{r.theory:>12.5g}{r.z_sgd:>9.2f}{r.z_sde:>9.2f}{r.z_sgd_sde:>9.2f}"
        )
    return "\n".join(lines)


def one_step_bias(stepper, thetas: jax.Array, invariants: Callable, data, time_step: float) -> tuple[np.ndarray, bool]:
    """Leading ``O(h)`` bias of the one-step drift estimate ``E[q(theta + delta) - q(theta)] / h``
    of one discrete step (SGD, GD or one Euler-Maruyama step; ``h = time_step``):

        (1 / 2h) m^T (nabla^2 q) m,      m = E[delta]  (the mean step, O(h)).

    Taylor-expanding ``q`` around ``theta``, the first and second moments of ``delta`` give
    ``h a(q)`` (the Itô projection) plus this term; the third and fourth derivatives of
    ``q`` add further ``O(h)`` terms, which vanish when ``q`` is quadratic (``u v``,
    Hadamard ``p * q``). Returns ``(bias [K, d], q_is_quadratic)``."""
    bias, third = (np.asarray(a) for a in _one_step_terms(stepper, thetas, invariants, data, time_step))
    return bias, bool(np.allclose(third, 0.0, atol=1e-12 * max(1.0, float(np.abs(third).max(initial=0.0)))) or not third.any())


@eqx.filter_jit
def _one_step_terms(stepper, thetas, invariants, data, time_step):
    """The per-point bias term of :func:`one_step_bias` and the third derivative of ``q`` at
    the first point, as one compiled program."""
    from .balance import step_moments

    def one(th):
        m, _ = step_moments(stepper, th, data)
        H = jax.hessian(invariants)(th)  # [d, p, p]
        return 0.5 * jnp.einsum("p,dpq,q->d", m, H, m) / time_step

    return jax.vmap(one)(thetas), jax.jacfwd(jax.hessian(invariants))(thetas[0])


@eqx.filter_jit
def _projections_at(sde, invariants, thetas, data):
    """Itô projections and invariants at every point, as one compiled program."""
    from .quotient import ito_projection

    return jax.vmap(lambda th: ito_projection(sde, invariants, th, data))(thetas), jax.vmap(invariants)(thetas)


class DriftCheck(NamedTuple):
    """Three-way drift comparison at K points: estimates from SGD and the SDE, and the
    Itô projection split into its gradient-flow and geometric parts. ``sgd_bias`` and
    ``sde_bias`` are the estimated ``O(h)`` biases of the two estimates
    (:func:`one_step_bias`; NaN when not estimated)."""

    q: np.ndarray  # [K, d] invariants at the points
    sgd: DriftEstimate
    sde: DriftEstimate
    gradient_part: np.ndarray  # [K, d]
    geometric_part: np.ndarray  # [K, d]
    sgd_bias: np.ndarray | None = None
    sde_bias: np.ndarray | None = None
    bias_source: str = "not estimated"

    @property
    def theory(self) -> np.ndarray:
        return self.gradient_part + self.geometric_part

    def rows(self, components: Sequence[int] | None = None) -> list[ComparisonRow]:
        comps = range(self.q.shape[1]) if components is None else components
        out = []
        for k in range(self.q.shape[0]):
            for c in comps:
                out.append(
                    ComparisonRow(
                        f"drift q[{c}] at q[{c}]={self.q[k, c]:.3g} (pt {k})",
                        float(self.sgd.mean[k, c]), float(self.sgd.se[k, c]),
                        float(self.sde.mean[k, c]), float(self.sde.se[k, c]),
                        float(self.theory[k, c]),
                    )
                )
        return out

    def comparisons(self, sgd_name: str = "sgd", sde_name: str = "sde") -> list:
        """One :class:`~sde_bias.verdict.Comparison` per point, component and estimate."""
        from .verdict import Comparison

        out = []
        nan = np.full_like(self.q, np.nan)
        for k in range(self.q.shape[0]):
            for c in range(self.q.shape[1]):
                label = f"drift q[{c}] at {self.q[k, c]:.3g} (pt {k})"
                for name, est, bias in ((sgd_name, self.sgd, self.sgd_bias), (sde_name, self.sde, self.sde_bias)):
                    b = nan if bias is None else bias
                    out.append(Comparison(
                        "drift", label, name, float(est.mean[k, c]), float(est.se[k, c]), float(self.theory[k, c]),
                        float(b[k, c]), 0.0, self.bias_source if np.isfinite(b[k, c]) else "not estimated",
                    ))
        return out

    def max_abs_z(self) -> dict[str, float]:
        """Largest |discrepancy| in SE over points and components, for each estimate; and
        how far the estimates are from the gradient-flow part alone (the size of the
        geometric correction in SE units)."""
        z = lambda est, th: np.nanmax(np.abs((est.mean - th) / est.se))  # noqa: E731
        return {
            "sgd_vs_theory": float(z(self.sgd, self.theory)),
            "sde_vs_theory": float(z(self.sde, self.theory)),
            "sde_vs_gradient_part_only": float(z(self.sde, self.gradient_part)),
        }


def drift_check(
    sgd_stepper,
    sde_stepper,
    sde,
    thetas: jax.Array,
    invariants: Callable,
    data,
    *,
    replicates: int,
    steps: int,
    key: jax.Array,
    data_batched: bool = False,
) -> DriftCheck:
    """Estimate the effective drift at ``thetas`` from SGD and from the SDE (same keys)
    and evaluate the Itô projection of ``sde`` there (docs/theory.md section 5.2)."""
    kw = dict(replicates=replicates, steps=steps, time_step=sde.time_step, key=key, data_batched=data_batched)
    est_sgd = drift_at_points(sgd_stepper, thetas, invariants, data, **kw)
    est_sde = drift_at_points(sde_stepper, thetas, invariants, data, **kw)
    proj, q = _projections_at(sde, invariants, thetas, data)
    q = np.asarray(q)
    biases, source = [None, None], "not estimated"
    if steps == 1:
        for i, st in enumerate((sgd_stepper, sde_stepper)):
            if getattr(st, "substeps", 1) == 1 and _single_discrete_step(st):
                biases[i], quad = one_step_bias(st, thetas, invariants, data, sde.time_step)
                source = "one-step Taylor term" + (" (exact: q quadratic)" if quad else " (leading part)")
    return DriftCheck(q, est_sgd, est_sde, np.asarray(proj.gradient_part), np.asarray(proj.geometric_part),
                      biases[0], biases[1], source)


def _single_discrete_step(stepper) -> bool:
    from .balance import uses_discrete_identity

    return uses_discrete_identity(stepper) and getattr(stepper, "svag_l", 1) == 1

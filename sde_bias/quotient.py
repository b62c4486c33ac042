"""The SGD-SDE projected onto the quotient by the symmetry: the effective drift.

For invariants ``q = pi(theta)`` (constant on orbits), Itô's formula gives the exact SDE
of ``q`` along any path of ``d theta = mu dt + S dW`` (``S = sqrt(eta) sigma``, docs/theory.md
section 3.2)::

    dq = [ Dpi mu  +  1/2 sum_j D^2 pi[s_j, s_j] ] dt  +  Dpi S dW
           gradient flow   geometric (noise-induced)      quotient diffusion

The second-order term is computed matrix-free, one jvp-of-jvp per noise column
``s_j`` (never a Hessian). The quotient diffusion tensor is
``D_q = 1/2 (Dpi S)(Dpi S)^T`` (Fokker-Planck convention ``D = b b^T / 2``).

These coefficients depend on where on the orbit ``theta`` sits. :func:`section_average`
evaluates them on a chosen representative of each orbit (the balanced section, or the
noise equilibrium), :func:`empirical_average` conditions on ``q`` over a simulated
ensemble by binning. The paper's prediction (arXiv:2601.06597) is the density
``exp(-L(q)/T) det G(q)^{-1/2}`` built from the Gram matrix of the generators on the
section (:func:`paper_log_density`); it is reported beside the exact projection, never
substituted for it.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .sde import AbstractSDE


class QuotientCoefficients(NamedTuple):
    """Coefficients of the projected SDE at one parameter point."""

    gradient_part: Float[Array, " d"]  # Dpi mu
    geometric_part: Float[Array, " d"]  # 1/2 sum_j D^2 pi [s_j, s_j]
    drift: Float[Array, " d"]  # sum of the two
    diffusion: Float[Array, "d d"]  # D_q = 1/2 (Dpi S)(Dpi S)^T


def ito_projection(
    sde: AbstractSDE, invariants: Callable, theta: Float[Array, " p"], data
) -> QuotientCoefficients:
    """Exact Itô projection of ``sde`` onto ``q = invariants(theta)`` at ``theta``."""
    mu = sde.drift(0.0, theta, data)
    grad_part = jax.jvp(invariants, (theta,), (mu,))[1]
    m = sde.noise_dim(data)
    eye = jnp.eye(m, dtype=theta.dtype)

    def per_column(e):
        s = sde.diffusion_mv(theta, data, e)

        def first(th):
            return jax.jvp(invariants, (th,), (s,))[1]

        d1, d2 = jax.jvp(first, (theta,), (s,))
        return d1, d2

    if m == 0:
        d = grad_part.shape[0]
        return QuotientCoefficients(grad_part, jnp.zeros_like(grad_part), grad_part, jnp.zeros((d, d), theta.dtype))
    b, second = jax.lax.map(per_column, eye, batch_size=min(m, 64))  # [m, d], [m, d]
    geo = 0.5 * jnp.sum(second, axis=0)
    diffusion = 0.5 * b.T @ b
    return QuotientCoefficients(grad_part, geo, grad_part + geo, diffusion)


def section_average(
    sde: AbstractSDE,
    invariants: Callable,
    representative: Callable,
    q_points: Float[Array, "N d"],
    data,
) -> QuotientCoefficients:
    """Effective coefficients ``a(q), D(q)`` with the fiber measure concentrated on one
    representative per orbit: ``representative(q) -> theta`` (``model.section`` for the
    balanced section, or a noise-equilibrium solver). Vectorised over ``q_points``."""
    return jax.vmap(lambda q: ito_projection(sde, invariants, representative(q), data))(q_points)


class BinnedCoefficients(NamedTuple):
    centres: np.ndarray  # [bins]
    drift: np.ndarray  # [bins, d]
    drift_se: np.ndarray
    geometric: np.ndarray
    diffusion: np.ndarray  # [bins, d, d]
    count: np.ndarray


def empirical_average(
    sde: AbstractSDE,
    invariants: Callable,
    thetas: Float[Array, "N p"],
    data,
    edges: np.ndarray,
    coordinate: Callable | None = None,
    min_count: int = 5,
) -> BinnedCoefficients:
    """Effective coefficients averaged over the empirical conditional law of ``theta``
    given ``q``: the coefficients are evaluated at every sample of a simulated ensemble
    and averaged within bins of the scalar ``coordinate(q)`` (default: ``q[0]``)."""
    coeffs = jax.vmap(lambda th: ito_projection(sde, invariants, th, data))(thetas)
    qs = jax.vmap(invariants)(thetas)
    x = np.asarray(jax.vmap(coordinate)(qs) if coordinate else qs[:, 0])
    which = np.digitize(x, edges) - 1
    nb = len(edges) - 1
    d = coeffs.drift.shape[-1]
    out = {k: np.full((nb, d), np.nan) for k in ("drift", "se", "geo")}
    diff = np.full((nb, d, d), np.nan)
    count = np.zeros(nb, int)
    dr, ge, di = (np.asarray(a) for a in (coeffs.drift, coeffs.geometric_part, coeffs.diffusion))
    for b in range(nb):
        sel = which == b
        count[b] = sel.sum()
        if count[b] >= min_count:
            out["drift"][b] = dr[sel].mean(0)
            out["se"][b] = dr[sel].std(0, ddof=1) / np.sqrt(count[b])
            out["geo"][b] = ge[sel].mean(0)
            diff[b] = di[sel].mean(0)
    return BinnedCoefficients(0.5 * (edges[1:] + edges[:-1]), out["drift"], out["se"], out["geo"], diff, count)


def paper_log_density(
    loss_on_section: Float[Array, " N"],
    log_det_gram_on_section: Float[Array, " N"],
    temperature: float,
) -> Float[Array, " N"]:
    """Unnormalised log density of the paper's prediction on the quotient,
    ``-L(q)/T - 1/2 log det G(q)``, with respect to Lebesgue measure in the invariant
    coordinates ``q`` (the coordinates in which the simulations are histogrammed).

    ``T`` is the temperature of the Langevin reading of SGD: for an isotropic-equivalent
    noise ``Cov = (2 T / eta) I`` it is exact, so :func:`isotropic_temperature` uses
    ``T = eta tr(Cov) / (2 p)``; for anisotropic SGD noise this is an approximation and the
    discrepancy with the exact projection is part of what the comparison reports."""
    return -loss_on_section / temperature - 0.5 * log_det_gram_on_section


def isotropic_temperature(sde: AbstractSDE, theta: Float[Array, " p"], data) -> Float[Array, ""]:
    """``T = tr(S S^T) / (2 p)`` for the SDE's diffusion ``S`` (``S S^T = eta Cov``)."""
    m = sde.noise_dim(data)
    cols = jax.vmap(lambda e: sde.diffusion_mv(theta, data, e))(jnp.eye(m, dtype=theta.dtype))
    return jnp.sum(cols**2) / (2 * theta.shape[0])


def normalise_on_grid(log_density: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Exponentiate (stably) and normalise a 1-D log density on a grid (trapezoid)."""
    ld = np.asarray(log_density, float)
    ld = ld - np.nanmax(ld)
    p = np.exp(ld)
    return p / np.trapezoid(p, grid)

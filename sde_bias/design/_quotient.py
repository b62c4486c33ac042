"""The paper's quotient potential as a third bias prediction (docs/theory.md sections 3.4 and 6.3).

The paper (arXiv:2601.06597) predicts the density ``exp(-L(q)/T) det G(q)^{-1/2}`` on the quotient,
``G`` the Gram matrix of the symmetry generators on the balanced section. On the interpolating set
``L = 0``, so what is left to compare interpolators by is the potential

    V(beta) = 1/2 log det G(section(beta))        (low V = high predicted density).

For the Hadamard family it is explicit, per coordinate (or group) of ``z`` (``beta = S z``): the
generators of ``u_j -> e^t u_j, v_j -> e^{-t} v_j`` have ``|xi_j|^2 = u_j^2 + v_j^2 = 2|z_j|`` on the
balanced section; at depth ``D`` the ``D - 1`` generators of coordinate ``j`` have Gram
``|z_j|^{2/D}`` times the ``(D-1) x (D-1)`` second-difference matrix (determinant ``D``); a group
product ``beta_g = s_g v_g`` has one generator with ``|xi_g|^2 = s_g^2 + |v_g|^2 = 2|z_g|``. Hence

    V(z) = c sum_g log |z_g| + const,   c = (D - 1) / D  (1/2 at depth 2 and for groups),

a *concave* function of ``|z_g|``, ``-inf`` on every interpolator with a zero coordinate (group):
unlike the gradient-flow potential and the label-noise ``R*`` it does not select one interpolator.
On ``{X S z = y}`` (``d > n``) every interpolator with ``d - n`` zeros sits at ``-inf``; what the
potential says is "sparse", not which sparse point. This module therefore reports

- :func:`quotient_potential_value`: ``V`` at any predicted interpolator, split into the number of
  degenerate directions (zero coordinates / groups, each a factor ``-inf``) and the finite part over
  the others. More zeros is deeper in the potential; the finite part does not order interpolators of
  equal sparsity by the paper's probability (that would need the volume factor of the interpolating
  set: in the one-point case ``x = (1, 2)``, ``y = 2`` the density ``|w_1 w_2|^{-1/2}`` puts equal mass
  near ``(2, 0)`` and ``(0, 1)``, while the finite parts differ);
- :func:`quotient_interpolator`: the local minimiser of the smoothed potential
  ``c sum_g log(|z_g| + eps)`` reached from the minimum-``l2`` interpolator (no prior sparsity) by
  iteratively reweighted ``l1`` (majorise-minimise for a concave penalty: Candes, Wakin and Boyd,
  J. Fourier Anal. Appl. 2008), keeping the signs the dynamics keep. It is one of the many minimisers,
  the one nearest the unbiased interpolator in this sense; its residual is that of the last convex
  solve (a fixed point of the iteration is a KKT point of the smoothed potential).

For models without this closed form, :func:`quotient_potential_value` evaluates ``V`` numerically
from the model's generators (``sde_bias.symmetry.log_det_gram`` on ``model.section(beta)``).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from ._convex import predicted_interpolator
from ._penalties import GroupNorm, WeightedL1
from ._types import Interpolator


class QuotientValue(NamedTuple):
    """``V = 1/2 log det G`` at one point: ``degenerate`` directions at ``-inf`` (coordinates or
    groups at zero, relative to ``tol`` times the largest) and the finite ``value`` over the rest."""

    value: float
    degenerate: int

    def __str__(self) -> str:
        return f"{self.value:.4g}" if self.degenerate == 0 else f"-inf x {self.degenerate} + {self.value:.4g}"


def _blocks(z, groups):
    z = np.asarray(z, float).reshape(-1)
    if groups is None:
        return np.abs(z)
    return np.array([np.linalg.norm(z[list(g)]) for g in groups])


def quotient_coefficient(depth: int = 2) -> float:
    """``c = (D - 1) / D``: ``V = c sum log |z_g| + const`` (1/2 for depth 2 and group products)."""
    return (depth - 1) / depth


def quotient_potential_value(
    z: Float[ArrayLike, " d"],
    *,
    depth: int = 2,
    groups: Sequence[Sequence[int]] | None = None,
    tol: float = 1e-8,
) -> QuotientValue:
    """``V(z) = 1/2 log det G`` on the balanced section of a Hadamard-family product, in closed form
    (module docstring): per coordinate ``(D-1)/D log|z_j| + 1/2 log D``, per group
    ``1/2 log(2 |z_g|)``. Blocks with ``|z_g| <= tol max |z|`` count as degenerate."""
    m = _blocks(z, groups)
    zero = m <= tol * max(float(m.max(initial=0.0)), np.finfo(float).tiny)
    live = m[~zero]
    if groups is None:
        val = quotient_coefficient(depth) * np.sum(np.log(live)) + 0.5 * np.log(depth) * live.size
    else:
        val = 0.5 * np.sum(np.log(2 * live))
    return QuotientValue(float(val), int(zero.sum()))


def model_quotient_potential(model, beta: Float[ArrayLike, " d"], *, tol: float = 1e-8) -> QuotientValue:
    """``V = 1/2 log det G(model.section(beta))`` from the model's own generators (any model with
    a section); the degenerate count is the number of generator directions the Gram matrix loses
    (eigenvalues below ``tol`` times the largest: for the Hadamard family, eigenvalues scale like
    ``|z_j|``)."""
    from ..symmetry import log_det_gram

    theta = model.section(jnp.asarray(beta, float))
    r = log_det_gram(model, theta, rtol=tol)
    k = int(model.generators(theta).shape[0])
    return QuotientValue(float(0.5 * r.log_det), k - int(r.rank))


def quotient_interpolator(
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"],
    synthesis: Float[ArrayLike, "d e"] | None = None,
    *,
    depth: int = 2,
    groups: Sequence[Sequence[int]] | None = None,
    signs: Float[ArrayLike, " e"] | None = None,
    eps: float = 1e-3,
    max_iter: int = 30,
) -> tuple[Interpolator, int]:
    """Local minimiser of ``c sum_g log(|z_g| + eps max|z0|)`` on ``{X S z = y}`` (signs kept where
    ``signs`` is nonzero) by reweighted ``l1`` from the minimum-``l2`` interpolator ``z0``:
    ``z_{k+1} = argmin sum_g w_g |z_g|``, ``w_g = c / (|z_k,g| + eps max|z0|)``, until the support
    and the point stop changing. Returns the last convex solve's :class:`Interpolator` and the number
    of iterations."""
    Xa = np.asarray(X, float)
    M = Xa if synthesis is None else Xa @ np.asarray(synthesis, float)
    z = np.linalg.pinv(M) @ np.asarray(y, float)
    if signs is not None:
        s = np.sign(np.asarray(signs, float))
        z = np.where(s * z < 0, 0.0, z)
    scale = eps * max(float(_blocks(z, groups).max()), 1e-12)
    c = quotient_coefficient(depth)
    out = None
    for it in range(1, max_iter + 1):
        w = c / (_blocks(z, groups) + scale)
        pen = WeightedL1(w, signs) if groups is None else GroupNorm(groups, w)
        out = predicted_interpolator(pen, X, y, synthesis)
        znew = np.asarray(out.z, float)
        same = np.array_equal(_blocks(znew, groups) > 1e-8 * scale, _blocks(z, groups) > 1e-8 * scale)
        done = same and np.max(np.abs(znew - z)) <= 1e-9 * (1 + np.max(np.abs(znew)))
        z = znew
        if done:
            break
    return out._replace(method=f"reweighted-l1 ({out.method})"), it


def design_quotient(design, X: Float[ArrayLike, "n d"], y: Float[ArrayLike, " n"] | None):
    """The quotient potential next to a :class:`~sde_bias.design.Design`'s predictions:
    ``(interpolator or None, {prediction: QuotientValue}, note)``. ``V`` is evaluated in the
    parameterization's coordinates ``z`` (``beta = synthesis z``; ``beta_g / lambda_g`` for scaled
    groups); the interpolator is :func:`quotient_interpolator` from the minimum-``l2`` one, signs free
    (the designed initialisations reach both signs). ``P Q`` products get only a note."""
    if design.parameterization == "factorization":
        return None, {}, "quotient potential of P Q: no closed form here (sde_bias.symmetry.log_det_gram evaluates it numerically)"
    groups = None
    if design.parameterization == "group_hadamard":
        groups = [list(g) for g in design.penalties["target"].groups]

    def to_z(beta):
        b = np.asarray(beta, float)
        if groups is None:
            return b if design.synthesis is None else np.linalg.lstsq(np.asarray(design.synthesis, float), b, rcond=None)[0]
        lam = np.ones(len(groups)) if design.scales is None else np.asarray(design.scales, float)
        out = b.copy()
        for g, s in zip(groups, lam):
            out[g] = b[g] / s
        return out

    values = {k: quotient_potential_value(to_z(p.beta), depth=design.depth, groups=groups) for k, p in design.predicted.items()}
    note = (f"quotient potential V = 1/2 log det G = {quotient_coefficient(design.depth):.3g} sum log|z_g| + const: concave, "
            "-inf at every interpolator with a zero (group); it asks for sparsity, not for one interpolator")
    if y is None:
        return None, values, note
    interp, _ = quotient_interpolator(X, y, design.synthesis, depth=design.depth, groups=groups)
    # (for scaled groups the solve runs in beta: log|beta_g| = log|z_g| + log lambda_g, the same minimiser)
    values["quotient"] = quotient_potential_value(to_z(interp.beta), depth=design.depth, groups=groups)
    return interp, values, note

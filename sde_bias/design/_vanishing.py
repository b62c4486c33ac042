"""How fast label noise removes what its prediction zeroes (docs/theory.md section 6.2).

Near the predicted interpolator ``beta*`` (at the noise equilibrium over it), a coordinate group ``g``
that ``beta*`` zeroes has ``s_g = v_g = 0``; linearising the slow flow ``-1/4 P_T grad R`` there, its
block decouples at first order (the outputs' Jacobian is quadratic in ``(s_g, v_g)``) and reads

    d/dtau (s_g, v_g) = -1/4 [[2 tr C_g, -h_g^T], [-h_g, 2 C_g]] (s_g, v_g),   h_g = X_g^T nu,

with ``C_g = X_g^T X_g / n`` and ``nu`` the multiplier of ``X beta = y`` in the convex problem
``min R*`` (the convention ``X^T nu in dR*``): the normal force of the projection is the same multiplier,
because ``grad R = (d beta / d theta)^T grad R*`` at the equilibrium. The block is stable exactly when
``h_g^T C_g^{-1} h_g < 4 tr C_g``, the strict dual feasibility of the group penalty
``2 sqrt(tr C_g) |C_g^{1/2} beta_g|``; its smallest eigenvalue ``r_g`` gives
``s_g, |v_g| ~ e^{-r_g tau}`` and ``|beta_g| = s_g |v_g| ~ e^{-2 r_g tau}``. A Hadamard coordinate is a
group of one (``tr C_g = C_g = a_j``), with eigenvectors ``(1, 1)`` (``beta_j > 0``) and ``(1, -1)``
(``beta_j < 0``) and rates ``(2 a_j - h_j) / 4``, ``(2 a_j + h_j) / 4``. From a balanced start the
dynamics keep ``u_j - s_j v_j = 0`` exactly (GD, SGD and the SDE all scale it by a common factor), so
a coordinate with a kept sign ``s_j`` decays at ``(2 a_j - s_j h_j) / 4``: positive exactly when the
one-sided KKT condition of the sign-constrained weighted ``l1`` holds strictly.

This holds where the active columns have full row rank (``nu`` unique, the interpolating set regular
at ``beta*``); with fewer active coordinates than samples the set is singular there and the decay is
not this exponential law (docs/design.md, the ``design_group`` scenario).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from jaxtyping import ArrayLike, Float

from ._types import Interpolator


def vanishing_rates(
    X: Float[ArrayLike, "n d"],
    prediction: Interpolator,
    groups: Sequence[Sequence[int]] | None = None,
    *,
    signs: Float[ArrayLike, " d"] | None = None,
    tol: float = 1e-8,
) -> dict[int, float]:
    """``{g: r_g}`` for every group (coordinate, when ``groups`` is ``None``) that the label-noise
    ``prediction`` zeroes (norm below ``tol`` times the largest): the slow-time decay rate of
    ``s_g, |v_g|`` (module docstring); negative means the zero is unstable. Products of two factors
    only (depth 2, group products: at depth ``D > 2`` the zeroed block is not linear and the decay is a
    power law). With a synthesis ``beta = S z`` pass ``X S``: the groups are groups of ``z``. ``signs``
(coordinates only): the kept signs; a nonzero ``s_j`` restricts coordinate ``j`` to its mode ``(1, s_j)``."""
    X = np.asarray(X, float)
    n = X.shape[0]
    beta = np.asarray(prediction.z, float)
    h = X.T @ np.asarray(prediction.nu, float)
    groups = [[j] for j in range(beta.size)] if groups is None else [list(g) for g in groups]
    norms = np.array([np.linalg.norm(beta[g]) for g in groups])
    out = {}
    for k, g in enumerate(groups):
        if norms[k] > tol * norms.max():
            continue
        C = X[:, g].T @ X[:, g] / n
        hg = h[g]
        if signs is not None and len(g) == 1 and np.sign(signs[g[0]]) != 0:
            out[k] = float((2 * C[0, 0] - np.sign(signs[g[0]]) * hg[0]) / 4)
            continue
        block = 0.25 * np.block([[np.array([[2 * np.trace(C)]]), -hg[None, :]], [-hg[:, None], 2 * C]])
        out[k] = float(np.min(np.linalg.eigvalsh(block)))
    return out

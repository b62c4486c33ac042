"""Stationary Fokker-Planck densities on the quotient (docs/theory.md section 4).

For the Ito SDE ``dq = a(q) dt + b(q) dW`` in ``R^d`` with diffusion tensor
``D = b b^T / 2`` the density obeys

    dp/dt = -div(a p) + sum_ij d_i d_j (D_ij p) = -div J,
    J_i   = a_i p - sum_j d_j (D_ij p)
          = (a_i - (div D)_i) p - sum_j D_ij d_j p,      (div D)_i = sum_j d_j D_ij.

Writing ``F = D^-1 (a - div D)`` the flux is ``J = D (F p - grad p)``, so a
zero-flux (detailed-balance) stationary density exists iff ``F`` is a gradient,
``F = grad log p``; then ``p = exp(integral of F)``. In one dimension this is always
the case and gives the classical zero-flux formula (Risken, *The Fokker-Planck
Equation*, 2nd ed., Springer 1989, section 5.2; Gardiner, *Stochastic Methods*,
4th ed., section 6.2):

    p(q) proportional to (1 / D(q)) exp( integral^q a(s) / D(s) ds ).

In ``d = 2, 3`` the stationary density is computed as the null vector of a
conservative finite-volume discretisation of the generator (see
:func:`stationary_density`); :func:`curl_diagnostic` reports the antisymmetric part
of the Jacobian of ``F``, which vanishes iff a potential exists.

Everything here is host-side numpy/scipy; callables receive and return numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.integrate import cumulative_trapezoid, trapezoid

__all__ = [
    "stationary_density_1d",
    "stationary_density",
    "StationaryDensity",
    "curl_diagnostic",
    "CurlDiagnostic",
    "bernoulli_function",
]


# ----------------------------------------------------------------------------- 1-D


def _on_grid(f, grid: np.ndarray, name: str) -> np.ndarray:
    """Evaluate ``f`` on ``grid`` if callable, else check it is an array on the grid."""
    vals = np.asarray(f(grid) if callable(f) else f, dtype=float)
    vals = np.broadcast_to(vals, grid.shape).astype(float)
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"{name} has non-finite values on the grid")
    return vals


def stationary_density_1d(a, D, grid) -> np.ndarray:
    """Zero-flux stationary density of ``dq = a(q) dt + sqrt(2 D(q)) dW`` on a 1-D grid.

    ``p(q) = (1/D(q)) exp(Phi(q)) / Z`` with ``Phi(q) = integral_{q_0}^q a/D`` (Risken
    1989, eq. 5.13). ``Phi`` is the cumulative trapezoid integral of ``a/D`` on the
    grid; the exponent ``Phi - log D`` has its maximum subtracted before
    exponentiating, so densities concentrated far from ``q_0`` do not overflow.
    ``Z`` normalises the density to unit trapezoid integral on the grid.

    Args:
        a: drift, a callable ``q -> a(q)`` (vectorised over a 1-D array) or an array
            of values on ``grid``.
        D: diffusion ``D = b^2 / 2`` (strictly positive), callable or array.
        grid: strictly increasing 1-D array of nodes.

    Returns:
        The density at the nodes, shape ``grid.shape``.
    """
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or grid.size < 2 or np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be a strictly increasing 1-D array with >= 2 nodes")
    av = _on_grid(a, grid, "a")
    Dv = _on_grid(D, grid, "D")
    if np.any(Dv <= 0):
        raise ValueError("D must be strictly positive on the grid")
    expo = cumulative_trapezoid(av / Dv, grid, initial=0.0) - np.log(Dv)
    p = np.exp(expo - expo.max())
    return p / trapezoid(p, grid)


# ----------------------------------------------------------------------------- helpers


def bernoulli_function(x) -> np.ndarray:
    """``B(x) = x / (exp(x) - 1)``, with ``B(0) = 1``, evaluated without overflow.

    The weight of the Scharfetter-Gummel flux (Scharfetter & Gummel, IEEE Trans.
    Electron Devices 16, 64 (1969)). ``B(x) > 0`` for all ``x``; ``B(x) -> 0`` as
    ``x -> +inf`` and ``B(x) ~ -x`` as ``x -> -inf``.
    """
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    small = np.abs(x) < 1e-6
    xs = x[small]
    out[small] = 1.0 - xs / 2.0 + xs * xs / 12.0
    xl = x[~small]
    with np.errstate(over="ignore"):
        # For large positive x, expm1 overflows to inf and x / inf = 0 (the limit).
        out[~small] = xl / np.expm1(xl)
    return out


def _eval_drift(a: Callable, pts: np.ndarray) -> np.ndarray:
    out = np.asarray(a(pts), dtype=float)
    n, d = pts.shape
    if out.shape == (n,) and d == 1:
        out = out[:, None]
    if out.shape != (n, d):
        raise ValueError(f"drift must map [N, d] -> [N, d]; got {out.shape} for {pts.shape}")
    return out


def _eval_diffusion(D: Callable, pts: np.ndarray) -> np.ndarray:
    """``D(pts)`` as ``[N, d, d]``. An ``[N, d]`` (or ``[N]`` when ``d = 1``) output is
    read as the diagonal of a diagonal tensor."""
    out = np.asarray(D(pts), dtype=float)
    n, d = pts.shape
    if out.shape == (n,) and d == 1:
        out = out[:, None]
    if out.shape == (n, d):
        out = out[:, :, None] * np.eye(d)[None]
    if out.shape != (n, d, d):
        raise ValueError(f"D must map [N, d] -> [N, d, d]; got {out.shape} for {pts.shape}")
    return out


def _divergence_fd(D: Callable, pts: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``(div D)_i = sum_j d_j D_ij`` by central differences with step ``steps[j]``.

    Truncation error ``O(steps^2 |d^3 D|)``, rounding ``O(eps |D| / steps)``.
    """
    n, d = pts.shape
    out = np.zeros((n, d))
    for j in range(d):
        e = np.zeros(d)
        e[j] = steps[j]
        Dp = _eval_diffusion(D, pts + e)
        Dm = _eval_diffusion(D, pts - e)
        out += (Dp[:, :, j] - Dm[:, :, j]) / (2.0 * steps[j])
    return out


def _eval_div(D, div_D, pts, steps) -> np.ndarray:
    if div_D is None:
        return _divergence_fd(D, pts, steps)
    return _eval_drift(div_D, pts)


def _mesh_points(coords: Sequence[np.ndarray]) -> np.ndarray:
    """Tensor-product points, ``indexing='ij'``, flattened to ``[N, d]``."""
    mesh = np.meshgrid(*coords, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=-1)


# ----------------------------------------------------------------------------- d-D


@dataclass(frozen=True)
class StationaryDensity:
    """Result of :func:`stationary_density`.

    Attributes:
        edges: cell edges per axis (as given).
        centres: cell centres per axis.
        density: stationary density at the cell centres, shape ``(n_0, ..., n_{d-1})``,
            normalised so that ``sum(density * cell_volume) = 1``.
        cell_volume: volume of each cell, same shape as ``density``.
        residual: relative residual ``max_k |(L p)_k| / max_k (|L| |p|)_k`` of the
            discrete generator ``L`` at the returned density.
        min_density: smallest entry of ``density`` (negative values flag a loss of
            positivity by the mixed-derivative stencil, see :func:`stationary_density`).
        generator: the sparse generator ``L`` (CSR), ``dp/dt = L p`` on the flattened
            grid (C order).
    """

    edges: tuple
    centres: tuple
    density: np.ndarray
    cell_volume: np.ndarray
    residual: float
    min_density: float
    generator: sp.csr_matrix

    def marginal(self, axis: int) -> np.ndarray:
        """Marginal density along ``axis`` at the centres of that axis."""
        mass = self.density * self.cell_volume
        other = tuple(k for k in range(mass.ndim) if k != axis)
        widths = np.diff(self.edges[axis])
        return mass.sum(axis=other) / widths


def stationary_density(
    a: Callable,
    D: Callable,
    edges: Sequence,
    *,
    div_D: Callable | None = None,
    fd_step: float = 1e-3,
) -> StationaryDensity:
    """Stationary density of ``dq = a dt + b dW`` (``D = b b^T / 2``) on a box, ``d <= 3``.

    Discretisation (cell-centred finite volumes, zero flux through the box boundary).
    With cell averages ``p_k`` the scheme is ``dp_k/dt = -sum_i (J_{i,k+1/2} -
    J_{i,k-1/2}) / h_{i,k}``, exactly conservative (``V^T L = 0`` for the vector of cell
    volumes ``V``). The flux through a face normal to axis ``i`` is

        J_i = [ v_i p - D_ii d_i p ]  -  sum_{j != i} D_ij d_j p,     v = a - div D,

    with ``a``, ``D`` and ``div D`` evaluated at the face centre:

    * the bracket (drift plus diagonal diffusion) by the Scharfetter-Gummel
      exponential-fitting flux between the two neighbouring cells ``L``, ``R`` at
      centre distance ``dx``:  ``J = (D_ii / dx) [B(-P) p_L - B(P) p_R]``,
      ``P = v_i dx / D_ii``, ``B(x) = x / (e^x - 1)`` (:func:`bernoulli_function`). It
      reduces to the centred two-point diffusion flux as ``P -> 0`` and to upwinding
      as ``|P| -> inf``; the weights are positive, so without cross terms the
      generator is an M-matrix and the null vector is positive. It is exact when
      ``v_i / D_ii`` is constant across the face (Scharfetter & Gummel 1969;
      Markowich, *The Stationary Semiconductor Device Equations*, 1986, ch. 5).
    * each cross term ``D_ij d_j p`` (``i != j``) with the standard 4-point face
      stencil: the average of the centred ``j``-differences in the two cells adjacent
      to the face (one-sided at the box boundary). This part is not monotone; for
      strongly anisotropic ``D`` on coarse grids small negative values can appear
      (reported as ``min_density``).

    The scheme is second-order accurate in the cell width for smooth coefficients.
    The stationary density is the null vector of the generator ``L``: one row of
    ``L p = 0`` (redundant by conservation) is replaced by the normalisation
    ``sum_k V_k p_k = 1`` and the sparse system is solved directly (SuperLU).

    The zero-flux box is a reflecting boundary: the result is the stationary law of
    the reflected process, equal to the free-space law only when the latter has
    negligible mass and flux near the boundary.

    Args:
        a: drift, ``[N, d] -> [N, d]``.
        D: diffusion tensor (symmetric positive definite), ``[N, d] -> [N, d, d]``; an
            ``[N, d]`` output is taken as a diagonal tensor.
        edges: list of ``d`` strictly increasing 1-D arrays of cell edges, at least 3
            cells per axis.
        div_D: optional callable ``[N, d] -> [N, d]`` giving ``(div D)_i = sum_j
            d_j D_ij``; by default central finite differences of ``D`` with step
            ``fd_step`` times the smallest cell width of each axis.
        fd_step: relative finite-difference step for ``div D``.

    Returns:
        :class:`StationaryDensity`.
    """
    edges = tuple(np.asarray(e, dtype=float) for e in edges)
    d = len(edges)
    if d not in (1, 2, 3):
        raise ValueError(f"d must be 1, 2 or 3, got {d}")
    for e in edges:
        if e.ndim != 1 or e.size < 4 or np.any(np.diff(e) <= 0):
            raise ValueError("each edges array must be strictly increasing with >= 3 cells")
    centres = tuple(0.5 * (e[1:] + e[:-1]) for e in edges)
    widths = tuple(np.diff(e) for e in edges)
    shape = tuple(c.size for c in centres)
    ncell = int(np.prod(shape))
    steps = np.array([fd_step * w.min() for w in widths])

    rows, cols, vals = [], [], []

    def add_flux(cellL, cellR, hL, hR, col, coef):
        """Add ``J = coef * p[col]`` leaving ``cellL`` and entering ``cellR``."""
        rows.extend([cellL, cellR])
        cols.extend([col, col])
        vals.extend([-coef / hL, coef / hR])

    for i in range(d):
        fshape = list(shape)
        fshape[i] -= 1  # interior faces normal to axis i
        idx = np.indices(fshape).reshape(d, -1)
        idxR = idx.copy()
        idxR[i] += 1
        L = np.ravel_multi_index(idx, shape)
        R = np.ravel_multi_index(idxR, shape)
        coords = [centres[k] for k in range(d)]
        coords[i] = edges[i][1:-1]
        pts = _mesh_points(coords)
        af = _eval_drift(a, pts)
        Df = _eval_diffusion(D, pts)
        divf = _eval_div(D, div_D, pts, steps)
        Dii = Df[:, i, i]
        if np.any(Dii <= 0):
            raise ValueError("D_ii must be strictly positive on all faces")
        dx = centres[i][idx[i] + 1] - centres[i][idx[i]]
        hL = widths[i][idx[i]]
        hR = widths[i][idx[i] + 1]
        P = (af[:, i] - divf[:, i]) * dx / Dii
        add_flux(L, R, hL, hR, L, Dii / dx * bernoulli_function(-P))
        add_flux(L, R, hL, hR, R, -Dii / dx * bernoulli_function(P))
        for j in range(d):
            if j == i:
                continue
            # -D_ij * (1/2) [g_j(L) + g_j(R)], g_j(m) = (p[m+e_j] - p[m-e_j]) / dist.
            for cell_idx in (idx, idxR):
                plus = cell_idx.copy()
                minus = cell_idx.copy()
                plus[j] = np.minimum(cell_idx[j] + 1, shape[j] - 1)
                minus[j] = np.maximum(cell_idx[j] - 1, 0)
                dist = centres[j][plus[j]] - centres[j][minus[j]]
                w = -0.5 * Df[:, i, j] / dist
                add_flux(L, R, hL, hR, np.ravel_multi_index(plus, shape), w)
                add_flux(L, R, hL, hR, np.ravel_multi_index(minus, shape), -w)

    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    vals = np.concatenate(vals)
    gen = sp.csr_matrix((vals, (rows, cols)), shape=(ncell, ncell))

    vol = np.ones(shape)
    for k, w in enumerate(widths):
        vol = vol * w.reshape([-1 if m == k else 1 for m in range(d)])
    vflat = vol.ravel()

    # Replace row r of L p = 0 by the normalisation; pick r at the largest cell so the
    # replaced equation is not an outlier in scale.
    r = int(np.argmax(vflat))
    keep = rows != r
    A = sp.csc_matrix(
        (
            np.concatenate([vals[keep], vflat]),
            (np.concatenate([rows[keep], np.full(ncell, r)]), np.concatenate([cols[keep], np.arange(ncell)])),
        ),
        shape=(ncell, ncell),
    )
    rhs = np.zeros(ncell)
    rhs[r] = 1.0
    p = spla.spsolve(A, rhs)
    p = p / np.sum(p * vflat)

    Lp = gen @ p
    scale = abs(gen) @ np.abs(p)
    residual = float(np.max(np.abs(Lp)) / np.max(scale))
    return StationaryDensity(
        edges=edges,
        centres=centres,
        density=p.reshape(shape),
        cell_volume=vol,
        residual=residual,
        min_density=float(p.min()),
        generator=gen,
    )


# ----------------------------------------------------------------------------- curl


@dataclass(frozen=True)
class CurlDiagnostic:
    """Result of :func:`curl_diagnostic`.

    Attributes:
        F: ``D^-1 (a - div D)`` at the points, ``[N, d]``.
        curl: antisymmetric Jacobian ``dF_i/dq_j - dF_j/dq_i``, ``[N, d, d]``.
        jacobian: ``dF_i/dq_j``, ``[N, d, d]``.
        max_relative: ``max_n |curl_n|_F / max_n |jacobian_n|_F`` (0 when the Jacobian
            vanishes everywhere); ~0 (finite-difference noise) iff ``F`` is a gradient.
    """

    F: np.ndarray
    curl: np.ndarray
    jacobian: np.ndarray
    max_relative: float


def curl_diagnostic(
    a: Callable,
    D: Callable,
    points,
    *,
    div_D: Callable | None = None,
    step: float = 1e-4,
) -> CurlDiagnostic:
    """Test for a potential: the curl of ``F = D^-1 (a - div D)``.

    The stationary flux is ``J = D (F p - grad p)``; it vanishes for some density
    (detailed balance, Risken 1989 section 6.4; Gardiner section 6.3.5) iff ``F =
    grad log p``, i.e. iff ``F`` is a gradient field, i.e. (on a simply connected
    domain) iff its Jacobian is symmetric. The antisymmetric part ``dF_i/dq_j -
    dF_j/dq_i`` is returned; in ``d = 3`` its three independent entries are the curl.
    A non-zero value means the stationary law carries a circulating probability
    current and is not ``exp(-potential)`` with a potential read off ``a`` and ``D``.

    Derivatives are central differences with absolute step ``step`` (``div D`` too,
    unless ``div_D`` is given); the nested differences leave noise of order
    ``eps / step^2 ~ 1e-8`` relative for ``step = 1e-4`` and unit-scale coefficients.

    Args:
        a: drift ``[N, d] -> [N, d]``.
        D: diffusion tensor ``[N, d] -> [N, d, d]`` (or diagonal ``[N, d]``).
        points: ``[N, d]`` evaluation points.
        div_D: optional exact ``(div D)_i = sum_j d_j D_ij``, ``[N, d] -> [N, d]``.
        step: finite-difference step.

    Returns:
        :class:`CurlDiagnostic`.
    """
    pts = np.atleast_2d(np.asarray(points, dtype=float))
    n, d = pts.shape
    steps = np.full(d, step)

    def F(x):
        v = _eval_drift(a, x) - _eval_div(D, div_D, x, steps)
        return np.linalg.solve(_eval_diffusion(D, x), v[..., None])[..., 0]

    F0 = F(pts)
    jac = np.empty((n, d, d))
    for j in range(d):
        e = np.zeros(d)
        e[j] = step
        jac[:, :, j] = (F(pts + e) - F(pts - e)) / (2.0 * step)
    curl = jac - np.swapaxes(jac, 1, 2)
    num = np.linalg.norm(curl, axis=(1, 2)).max()
    den = np.linalg.norm(jac, axis=(1, 2)).max()
    rel = float(num / den) if den > 0 else 0.0
    return CurlDiagnostic(F=F0, curl=curl, jacobian=jac, max_relative=rel)

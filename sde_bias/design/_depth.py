"""Gradient-flow mirror potentials of depth-``D`` Hadamard products (docs/theory.md section 6.1).

**Two-sided, Woodworth et al. (COLT 2020), implicit form.** ``beta = w_+^D - w_-^D`` with
``w_+(0) = w_-(0) = alpha``, ``D >= 3``. Gradient flow gives ``d w_+ / dt = -D w_+^{D-1} g`` and
``d w_- / dt = +D w_-^{D-1} g`` (``g = X^T r / n``), so ``w_+^{2-D} = alpha^{2-D} + D (D-2) s`` and
``w_-^{2-D} = alpha^{2-D} - D (D-2) s`` with ``s = int g dt``. Writing ``x = -D (D-2) alpha^{D-2} s``
(which moves in ``range(X^T)``) and ``k = D / (D - 2)``:

    beta = alpha^D h(x),    h(x) = (1 - x)^{-k} - (1 + x)^{-k},    x in (-1, 1).

``h`` is odd and increasing onto ``R``, so the mirror map (``-D (D-2) s``, which lies in ``range(X^T)``,
also for one ``alpha_j`` per coordinate) is ``grad Phi(beta)_j = h^{-1}(beta_j / alpha_j^D) / alpha_j^{D-2}``
and ``Phi = Q^D_alpha(beta) = sum_j alpha_j^2 q_D(beta_j / alpha_j^D)`` with
``q_D(b) = b h^{-1}(b) - H(h^{-1}(b))``, ``H(x) = int_0^x h = [(1-x)^{1-k} + (1+x)^{1-k} - 2] / (k - 1)``.
``h^{-1}`` has no closed form: it is computed numerically (bisection on ``v = artanh x``, which is
monotone and stays well conditioned as ``x -> 1``, to machine precision). The conjugate is closed:
``Phi*(g) = sum_j alpha_j^2 H(alpha_j^{D-2} g_j)`` for ``|alpha_j^{D-2} g_j| < 1``, with
``grad Phi*(g)_j = alpha_j^D h(alpha_j^{D-2} g_j)``, so the dual solve needs no inverse.
As ``alpha -> 0`` the minimiser tends to minimum ``l1`` (Woodworth et al.).

**One-sided, closed form.** ``beta = u_1 * ... * u_D`` (the package's ``DeepHadamard``) from the
balanced start ``|u_l(0)| = alpha``, signs ``s_j = prod_l sign u_l(0)``: balance is conserved, so
``|u_l| = t^{1/D}`` with ``t = s beta >= 0``, ``d t^{(2-D)/D} / dt = (D - 2) s g``, hence

    Phi(beta) = sum_j [alpha_j^{2-D} t_j - (D / 2) t_j^{2/D}] / (D - 2) + alpha_j^2 / 2,
    grad Phi = s (alpha^{2-D} - t^{(2-D)/D}) / (D - 2),   Phi*(g) = [(alpha^{2-D} - (D-2) s g)^{-2/(D-2)} - alpha^2] / 2,

zero with zero gradient at ``beta_0 = s alpha^D``; ``alpha^{2-D} |beta| / (D-2)`` dominates as
``alpha -> 0`` (a weighted ``l1`` on the sign-constrained orthant). ``-t^{2/D}`` is convex, so
cvxpy can solve it.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._types import AbstractPenalty


def _as_vector(alpha, dim):
    a = jnp.asarray(alpha, float)
    if a.ndim == 0:
        if dim is None:
            raise ValueError("a scalar alpha needs dim")
        a = jnp.full((dim,), a)
    return a


class WoodworthDepthPotential(AbstractPenalty):
    """``Q^D_alpha`` for ``beta = w_+^D - w_-^D``, ``w_+(0) = w_-(0) = alpha`` (implicit form, module
    docstring). ``alpha``: one value per coordinate; ``depth >= 3``."""

    alpha: Float[Array, " d"]
    depth: int = eqx.field(static=True)

    def __init__(self, alpha: ArrayLike, depth: int, dim: int | None = None):
        if depth < 3:
            raise ValueError(f"WoodworthDepthPotential needs depth >= 3 (depth 2 is woodworth_potential), got {depth}")
        self.alpha = _as_vector(alpha, dim)
        self.depth = depth

    @property
    def smooth(self) -> bool:
        return True

    @property
    def _k(self) -> float:
        return self.depth / (self.depth - 2)

    def _h_of_v(self, v):
        """``h(tanh v)`` with ``1 -+ tanh v = 2 sigmoid(-+2 v)`` (no cancellation near ``x = 1``)."""
        k = self._k
        return (2 * jax.nn.sigmoid(-2 * v)) ** (-k) - (2 * jax.nn.sigmoid(2 * v)) ** (-k)

    def _H_of_v(self, v):
        k = self._k
        return ((2 * jax.nn.sigmoid(-2 * v)) ** (1 - k) + (2 * jax.nn.sigmoid(2 * v)) ** (1 - k) - 2) / (k - 1)

    def _inverse_v(self, b):
        """``v = artanh(h^{-1}(b))`` by bisection; ``h(x) >= (1 - x)^{-k} - 1`` bounds ``x`` above."""
        k = self._k
        a = jnp.abs(b)
        eps = (a + 1) ** (-1.0 / k)  # 1 - x_upper
        hi = 0.5 * jnp.log((2 - eps) / eps) + 1.0
        lo = jnp.zeros_like(a)

        def body(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            below = self._h_of_v(mid) < a
            return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

        lo, hi = jax.lax.fori_loop(0, 80, body, (lo, hi))  # hi < 40 + 1: 2^-80 of it is below 1 ulp
        return jnp.sign(b) * 0.5 * (lo + hi)

    def mirror_map(self, beta: Float[Array, " d"]) -> Float[Array, " d"]:
        """``grad Phi(beta)_j = h^{-1}(beta_j / alpha_j^D) / alpha_j^{D-2}`` (numerical inverse)."""
        a, D = self.alpha, self.depth
        return jnp.tanh(self._inverse_v(jnp.asarray(beta) / a**D)) / a ** (D - 2)

    def value(self, beta: Float[Array, " d"]) -> Float[Array, ""]:
        a, D = self.alpha, self.depth
        b = jnp.asarray(beta) / a**D
        v = self._inverse_v(b)
        return jnp.sum(a**2 * (b * jnp.tanh(v) - self._H_of_v(v)))

    def dual_map(self, g: Float[Array, " d"]) -> Float[Array, " d"]:
        """``alpha^D h(alpha^{D-2} g)`` (``nan`` outside ``|alpha^{D-2} g| < 1``)."""
        a, D, k = self.alpha, self.depth, self._k
        x = a ** (D - 2) * jnp.asarray(g)
        inside = jnp.abs(x) < 1
        xs = jnp.where(inside, x, 0.0)
        return jnp.where(inside, a**D * ((1 - xs) ** (-k) - (1 + xs) ** (-k)), jnp.nan)

    def conjugate(self, g: Float[Array, " d"]) -> Float[Array, ""]:
        a, D, k = self.alpha, self.depth, self._k
        x = a ** (D - 2) * jnp.asarray(g)
        inside = jnp.abs(x) < 1
        xs = jnp.where(inside, x, 0.0)
        H = ((1 - xs) ** (1 - k) + (1 + xs) ** (1 - k) - 2) / (k - 1)
        return jnp.where(jnp.all(inside), jnp.sum(a**2 * H), jnp.inf)

    def kkt_residual(self, z, g) -> Float[Array, ""]:
        r = jnp.max(jnp.abs(jnp.asarray(z) - self.dual_map(g)))
        return jnp.where(jnp.isnan(r), jnp.inf, r)


class OneSidedDepthPotential(AbstractPenalty):
    """Gradient-flow potential of ``beta = u_1 * ... * u_D`` from ``|u_l(0)| = alpha`` with signs
    ``s`` (closed form, module docstring)."""

    alpha: Float[Array, " d"]
    signs: Float[Array, " d"]
    depth: int = eqx.field(static=True)

    def __init__(self, alpha: ArrayLike, depth: int, signs: ArrayLike):
        if depth < 3:
            raise ValueError(f"OneSidedDepthPotential needs depth >= 3 (depth 2 is init_shape_potential), got {depth}")
        self.signs = jnp.sign(jnp.asarray(signs, float))
        if bool(jnp.any(self.signs == 0)):
            raise ValueError("signs must be +1 or -1 (a coordinate started at 0 never moves)")
        self.alpha = _as_vector(alpha, self.signs.shape[0])
        self.depth = depth

    @property
    def dcp(self) -> bool:
        return True

    @property
    def smooth(self) -> bool:
        return True

    @property
    def reference(self) -> Float[Array, " d"]:
        return self.signs * self.alpha**self.depth

    def value(self, beta: Float[Array, " d"]) -> Float[Array, ""]:
        D, a = self.depth, self.alpha
        t = self.signs * jnp.asarray(beta)
        ts = jnp.maximum(t, 0.0)
        terms = (a ** (2 - D) * ts - 0.5 * D * ts ** (2.0 / D)) / (D - 2) + 0.5 * a**2
        return jnp.sum(jnp.where(t >= 0, terms, jnp.inf))

    def mirror_map(self, beta: Float[Array, " d"]) -> Float[Array, " d"]:
        D = self.depth
        t = self.signs * jnp.asarray(beta)
        return self.signs * (self.alpha ** (2 - D) - t ** ((2.0 - D) / D)) / (D - 2)

    def _base(self, g):
        D = self.depth
        return self.alpha ** (2 - D) - (D - 2) * self.signs * jnp.asarray(g)

    def dual_map(self, g: Float[Array, " d"]) -> Float[Array, " d"]:
        D, c = self.depth, self._base(g)
        return jnp.where(c > 0, self.signs * jnp.where(c > 0, c, 1.0) ** (-D / (D - 2)), jnp.nan)

    def conjugate(self, g: Float[Array, " d"]) -> Float[Array, ""]:
        D, c = self.depth, self._base(g)
        terms = 0.5 * (jnp.where(c > 0, c, 1.0) ** (-2.0 / (D - 2)) - self.alpha**2)
        return jnp.where(jnp.all(c > 0), jnp.sum(terms), jnp.inf)

    def kkt_residual(self, z, g) -> Float[Array, ""]:
        r = jnp.max(jnp.abs(jnp.asarray(z) - self.dual_map(g)))
        return jnp.where(jnp.isnan(r), jnp.inf, r)

    def cvxpy(self, z):
        import cvxpy as cp

        D = self.depth
        a, s = np.asarray(self.alpha, float), np.asarray(self.signs, float)
        t = cp.multiply(s, z)
        expr = cp.sum(cp.multiply(a ** (2 - D) / (D - 2), t)) - (0.5 * D / (D - 2)) * cp.sum(cp.power(t, 2.0 / D))
        return expr + 0.5 * float(np.sum(a**2)), [t >= 0]

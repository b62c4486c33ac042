"""Gradient-flow mirror potentials of the depth-2 Hadamard family (docs/theory.md section 6.1).

Gradient flow on ``z = u * v`` (per coordinate; ``f = x . S z`` for a fixed synthesis ``S``) with
the loss ``L = mean_i 1/2 (f_i - y_i)^2`` has ``du/dt = -v g``, ``dv/dt = -u g`` with
``g = S^T X^T r / n``, so ``(u + v) e^{s}`` and ``(u - v) e^{-s}`` are constant, ``s = int g dt``,
and

    z = A e^{-2 s} - B e^{2 s},    A = (u_0 + v_0)^2 / 4,    B = (u_0 - v_0)^2 / 4.

Hence ``h(z) := -2 s`` is a function of ``z`` alone, it moves in ``range((X S)^T)``, and it is the
gradient of the strictly convex potential (the mirror map)

    Phi(z) = sum_j [ z_j h_j(z_j) - sqrt(z_j^2 + 4 A_j B_j) + A_j + B_j ],
    h(z) = log((sqrt(z^2 + 4AB) + z) / (2A)) = log(2B / (sqrt(z^2 + 4AB) - z)),

normalised so that ``Phi(z_0) = 0`` and ``grad Phi(z_0) = 0`` at ``z_0 = A - B = u_0 v_0``: the end
point of gradient flow on an underdetermined ``X S z = y`` is ``argmin D_Phi(z, z_0) = argmin Phi``
s.t. ``X S z = y`` (the KKT conditions are ``grad Phi(z) in range((X S)^T)``, ``X S z = y``). This is
the initialisation-shape potential of Azulay et al. (ICML 2021); the commuting-parameterization
view is Li, Wang, Lee and Arora (NeurIPS 2022). Special cases:

- ``beta = w_+^2 - w_-^2`` with ``w_+(0) = w_-(0) = alpha`` (Woodworth et al., COLT 2020): the same
  dynamics with ``u = w_+ + w_-``, ``v = w_+ - w_-``, i.e. ``A = B = alpha^2``, and
  ``Phi = Q_alpha(beta) = alpha^2 sum_j q(beta_j / alpha^2)``,
  ``q(z) = 2 - sqrt(4 + z^2) + z arcsinh(z / 2)`` (:func:`woodworth_q`);
- balanced ``u_0 = v_0`` (``B = 0``): ``Phi = sum z log(z / A) - z + A``, relative entropy, ``z >= 0``
  for ever (and ``u_0 = -v_0``: ``z <= 0``);
- scaled Hadamard ``beta = lambda * u * v`` and ``beta = A (u * v)``: the synthesis ``S = diag(lambda)``
  or ``S = A`` (the predicted interpolator is computed in ``z`` with data ``X S``, then
  ``beta = S z``: the potential pulled back through ``S``).

Because ``p = A e^h``, ``m = B e^{-h}`` satisfy ``z = p - m`` and ``p m = A B``,
``Phi(z) = min { D(p | A) + D(m | B) : p - m = z, p, m >= 0 }`` with ``D(p | A) = p log(p / A) - p + A``:
two relative entropies, which is how :meth:`HyperbolicEntropy.cvxpy` writes it (exponential
cones). The conjugate is ``Phi*(g) = sum A e^g + B e^{-g} - A - B``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._types import AbstractPenalty


class HyperbolicEntropy(AbstractPenalty):
    """``Phi(z) = sum_j z_j h_j(z_j) - sqrt(z_j^2 + 4 A_j B_j) + A_j + B_j`` (module docstring).

    ``A``, ``B``: nonnegative arrays of the coefficients' shape (use :func:`init_shape_potential`
    or :func:`woodworth_potential`). Domain: ``z_j >= 0`` where ``B_j = 0``, ``z_j <= 0`` where
    ``A_j = 0``, ``z_j = 0`` where both vanish (a coordinate initialised at ``u = v = 0`` never moves).
    """

    A: Float[Array, " d"]
    B: Float[Array, " d"]

    @property
    def dcp(self) -> bool:
        return True

    @property
    def smooth(self) -> bool:
        return True

    @property
    def reference(self) -> Float[Array, " d"]:
        """``z_0 = A - B``, where ``Phi = 0`` and ``grad Phi = 0`` (the initial predictor)."""
        return self.A - self.B

    def mirror_map(self, z: Float[Array, " d"]) -> Float[Array, " d"]:
        """``grad Phi(z) = h(z)``, the cancellation-free branch for each sign of ``z``."""
        z = jnp.asarray(z, self.A.dtype)
        root = jnp.sqrt(z * z + 4 * self.A * self.B)
        pos = jnp.log((root + z) / (2 * self.A))
        neg = jnp.log(2 * self.B / (root - z))
        return jnp.where(z >= 0, pos, neg)

    def value(self, z: Float[Array, " d"]) -> Float[Array, ""]:
        z = jnp.asarray(z, self.A.dtype)
        root = jnp.sqrt(z * z + 4 * self.A * self.B)
        h = self.mirror_map(z)
        zh = jnp.where(z == 0, 0.0, z * h)
        inside = ((z >= 0) | (self.B > 0)) & ((z <= 0) | (self.A > 0))
        terms = jnp.where(inside, zh - root + self.A + self.B, jnp.inf)
        return jnp.sum(terms)

    def dual_map(self, g: Float[Array, " d"]) -> Float[Array, " d"]:
        """``grad Phi*(g) = A e^g - B e^{-g}``: the coefficients whose mirror image is ``g``."""
        return self.A * jnp.exp(g) - self.B * jnp.exp(-g)

    def conjugate(self, g: Float[Array, " d"]) -> Float[Array, ""]:
        return jnp.sum(self.A * jnp.expm1(g) + self.B * jnp.expm1(-g))

    def kkt_residual(self, z, g) -> Float[Array, ""]:
        return jnp.max(jnp.abs(jnp.asarray(z) - self.dual_map(g)))

    def cvxpy(self, z):
        import cvxpy as cp

        A, B = np.asarray(self.A, float), np.asarray(self.B, float)
        d = A.shape[0]
        p, m = cp.Variable(d, nonneg=True), cp.Variable(d, nonneg=True)
        a_safe, b_safe = np.where(A > 0, A, 1.0), np.where(B > 0, B, 1.0)
        a_on, b_on = (A > 0).astype(float), (B > 0).astype(float)
        expr = (
            cp.sum(cp.multiply(a_on, cp.rel_entr(p, a_safe) - p + a_safe))
            + cp.sum(cp.multiply(b_on, cp.rel_entr(m, b_safe) - m + b_safe))
        )
        cons = [z == p - m]
        if np.any(A == 0):
            cons.append(cp.multiply(1.0 - a_on, p) == 0)
        if np.any(B == 0):
            cons.append(cp.multiply(1.0 - b_on, m) == 0)
        return expr, cons


def init_shape_potential(u0: ArrayLike, v0: ArrayLike) -> HyperbolicEntropy:
    """Mirror potential of gradient flow on ``z = u * v`` from ``(u_0, v_0)`` (Azulay et al. 2021):
    ``A = (u_0 + v_0)^2 / 4``, ``B = (u_0 - v_0)^2 / 4``; the scale of the entropy is the initial
    imbalance ``|u_0^2 - v_0^2| / 2 = 2 sqrt(A B)``."""
    u0, v0 = jnp.asarray(u0, float), jnp.asarray(v0, float)
    u0, v0 = jnp.broadcast_arrays(u0, v0)
    return HyperbolicEntropy((u0 + v0) ** 2 / 4, (u0 - v0) ** 2 / 4)


def woodworth_potential(alpha: ArrayLike, dim: int | None = None) -> HyperbolicEntropy:
    """``Q_alpha`` of Woodworth et al. (2020) for ``beta = w_+^2 - w_-^2``, ``w_+(0) = w_-(0) = alpha``
    (``alpha`` a scalar with ``dim``, or one value per coordinate): ``A = B = alpha^2``."""
    a = jnp.asarray(alpha, float)
    if a.ndim == 0:
        if dim is None:
            raise ValueError("woodworth_potential needs dim for a scalar alpha")
        a = jnp.full((dim,), a)
    return HyperbolicEntropy(a**2, a**2)


def woodworth_q(z: Float[Array, "..."]) -> Float[Array, "..."]:
    """``q(z) = 2 - sqrt(4 + z^2) + z arcsinh(z / 2)``, so ``Q_alpha(beta) = alpha^2 sum q(beta / alpha^2)``
    (Woodworth et al. 2020, written out; an independent form of :class:`HyperbolicEntropy` at
    ``A = B = alpha^2``)."""
    z = jnp.asarray(z)
    return 2 - jnp.sqrt(4 + z * z) + z * jnp.arcsinh(z / 2)

"""A small damped Newton minimiser (Levenberg-Marquardt damping), used by the design solvers.

For ``f: R^k -> R`` twice differentiable with ``k`` small (Lie-algebra coordinates of an orbit,
multipliers of ``n`` constraints, parameters of a small model), one step solves
``(|H| + mu s I) d = -g`` with ``|H| = V |Lambda| V^T`` the exact Hessian with its eigenvalues made
positive ("saddle-free" Newton: a negative-curvature direction is descended, not climbed to a saddle;
for convex ``f``, ``|H| = H``) and ``s = max(1, max |H_ii|)``. The step is accepted when ``f``
decreases and stays finite (so a barrier or a domain edge is respected), or, once ``f`` no longer
resolves the change (within ``1e-13 |f|``), when ``max |g|`` decreases; then ``mu <- mu / 3``,
otherwise ``mu <- 4 mu`` and the step is retried. With ``mu -> 0`` near a nondegenerate minimum the
iteration is Newton's (quadratic convergence); large ``mu`` makes it a short gradient step.
Where ``H`` has a negative eigenvalue the most negative eigenvector ``v`` (signed so that
``g . v <= 0``) is also tried with steps ``2^-k``, ``k = 0..39``, and the best decrease is taken:
Newton alone cannot leave a saddle where the gradient vanishes (a coefficient with both factors at
zero), and the iteration does not stop while such a direction of decrease remains.
Runs in one ``lax.while_loop`` (jittable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


class NewtonResult(NamedTuple):
    x: Float[Array, " k"]
    value: Float[Array, ""]
    gradient_inf: Float[Array, ""]
    steps: Int[Array, ""]


def damped_newton(
    fun: Callable[[Float[Array, " k"], Any], Float[Array, ""]],
    x0: Float[Array, " k"],
    args: Any = None,
    *,
    gtol: float = 1e-12,
    max_steps: int = 500,
) -> NewtonResult:
    """Minimise ``fun(x, args)`` from ``x0`` until ``max |grad| <= gtol`` (or ``max_steps``, or the
    damping exceeds ``1e16``: no decrease possible at working precision)."""
    grad = jax.grad(fun)
    hess = jax.hessian(fun)
    dtype = x0.dtype

    trials = 2.0 ** -jnp.arange(40, dtype=dtype)

    def cond(state):
        x, f, g, mu, i, neg = state
        return ((jnp.max(jnp.abs(g)) > gtol) | neg) & (i < max_steps) & (mu < 1e16)

    def body(state):
        x, f, g, mu, i, _ = state
        H = hess(x, args)
        H = 0.5 * (H + H.T)
        lam, V = jnp.linalg.eigh(H)
        scale = jnp.maximum(jnp.max(jnp.abs(lam)), 1.0)
        d = -V @ ((V.T @ g) / (jnp.abs(lam) + mu * scale))
        x1 = x + d
        f1 = fun(x1, args)
        g1 = grad(x1, args)
        flat = f1 <= f + 1e-13 * jnp.abs(f)
        ok = jnp.isfinite(f1) & ((f1 < f) | (flat & (jnp.max(jnp.abs(g1)) < jnp.max(jnp.abs(g)))))
        # negative curvature: a line search along the lowest eigenvector
        v = V[:, 0] * jnp.where(V[:, 0] @ g > 0, -1.0, 1.0)
        cand = x[None, :] + trials[:, None] * v[None, :]
        fc = jax.vmap(lambda c: fun(c, args))(cand)
        fc = jnp.where(jnp.isfinite(fc), fc, jnp.inf)
        k = jnp.argmin(fc)
        neg = lam[0] < -1e-8 * scale
        use_nc = neg & (fc[k] < f - 1e-13 * (1 + jnp.abs(f))) & (~ok | (fc[k] < f1))
        x_new = jnp.where(use_nc, cand[k], jnp.where(ok, x1, x))
        f_new = jnp.where(use_nc, fc[k], jnp.where(ok, f1, f))
        g_new = jnp.where(use_nc, grad(cand[k], args), jnp.where(ok, g1, g))
        moved = ok | use_nc
        return (
            x_new,
            f_new,
            g_new,
            jnp.where(moved, jnp.maximum(mu / 3, 1e-15), mu * 4),
            i + 1,
            neg & moved,
        )

    f0 = fun(x0, args)
    state = (x0, f0, grad(x0, args), jnp.asarray(1e-3, dtype), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    x, f, g, _, i, _ = jax.lax.while_loop(cond, body, state)
    return NewtonResult(x, f, jnp.max(jnp.abs(g)), i)

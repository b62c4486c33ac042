"""Predicted interpolators found in parameter space (docs/theory.md section 6.2).

Where ``R*`` has no closed form or is not convex in ``beta``, the label-noise prediction is the
constrained minimum in ``theta``:

    min_theta R(theta)   subject to   c(theta) = 0,   c_i = f(theta; x_i) - y_i,

solved by an augmented Lagrangian: minimise ``R - nu . c + (rho/2) |c|^2`` over ``theta`` by damped
Newton (``_newton.py``, exact Hessians: meant for small models), then ``nu <- nu - rho c`` and
``rho <- 10 rho`` (up to ``1e6``) whenever ``|c|`` fell by less than a factor 4. Optimality residuals: ``max |c|`` and ``max |grad R - J^T nu|`` with ``nu`` the least-squares
multiplier at the end (``J = dc/dtheta``). A local method: from ``theta0`` it finds a KKT point of the
non-convex problem in ``theta``. That need not be the global one: a coefficient whose factors all
reach zero (``u_j = v_j = 0``; for depth ``D >= 3`` two zero factors) is a stationary point in
``theta`` whatever ``R*`` would prefer, so compare with the convex solve where there is one.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..losses import SquaredLoss
from ._label_noise import label_noise_regulariser
from ._newton import damped_newton
from ._types import Interpolator


def solve_theta(
    regulariser: Callable[[Float[Array, " p"]], Float[Array, ""]],
    constraint: Callable[[Float[Array, " p"]], Float[Array, " n"]],
    theta0: Float[Array, " p"],
    *,
    tol: float = 1e-9,
    rho0: float = 10.0,
    max_outer: int = 40,
    inner_steps: int = 500,
) -> tuple[Float[Array, " p"], Float[Array, " n"], float, float, str]:
    """Augmented Lagrangian for ``min R(theta)`` s.t. ``c(theta) = 0`` (module docstring). Returns
    ``(theta, nu, primal_residual, dual_residual, status)``."""

    def lagrangian(theta, args):
        nu, rho = args
        c = constraint(theta)
        return regulariser(theta) - nu @ c + 0.5 * rho * c @ c

    @eqx.filter_jit
    def inner(theta, nu, rho):
        return damped_newton(lagrangian, theta, (nu, rho), gtol=1e-13, max_steps=inner_steps).x

    @jax.jit
    def residuals(theta):
        c = constraint(theta)
        g = jax.grad(regulariser)(theta)
        J = jax.jacrev(constraint)(theta)
        nu = jnp.linalg.lstsq(J.T, g)[0]
        return c, nu, jnp.max(jnp.abs(c)), jnp.max(jnp.abs(g - J.T @ nu))

    theta = jnp.asarray(theta0, float)
    nu = jnp.zeros_like(constraint(theta))
    rho = jnp.asarray(rho0, theta.dtype)
    prev = float("inf")
    status = "max_outer"
    for _ in range(max_outer):
        theta = inner(theta, nu, rho)
        c, nu_ls, primal, dual = residuals(theta)
        primal, dual = float(primal), float(dual)
        if primal <= tol and dual <= tol:
            status = "converged"
            break
        nu = nu - rho * c
        if primal > 0.25 * prev:
            rho = jnp.minimum(rho * 10.0, 1e6)
        prev = primal
    c, nu_ls, primal, dual = residuals(theta)
    return theta, nu_ls, float(primal), float(dual), status


def label_noise_interpolator_theta(
    model, theta0: Float[Array, " p"], x, y: Float[Array, " n"], loss: SquaredLoss = SquaredLoss(), **kwargs
) -> Interpolator:
    """``argmin R(theta)`` over interpolating ``theta`` (label-noise regulariser, module docstring),
    from ``theta0``. Returns an :class:`Interpolator` with ``beta = model.invariants(theta)`` and
    ``z = theta``; ``nu`` is the multiplier of ``f(theta; x_i) = y_i``."""

    def reg(theta):
        return label_noise_regulariser(model, theta, x, loss)

    def con(theta):
        return model.predict_batch(theta, x).reshape(-1) - jnp.asarray(y).reshape(-1)

    theta, nu, primal, dual, status = solve_theta(reg, con, theta0, **kwargs)
    return Interpolator(model.invariants(theta), theta, nu, primal, dual, "jax-augmented-lagrangian", status)

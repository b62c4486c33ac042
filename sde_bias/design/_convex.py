"""Predicted interpolators: ``argmin R(z)`` subject to ``X S z = y`` (docs/theory.md sections 6.1, 6.2, 6.4).

Two independent solvers, both reporting the KKT residuals of :class:`~sde_bias.design.Interpolator`:

- :func:`solve_convex`: cvxpy with a solver it ships (CLARABEL by default: an interior-point conic
  solver with exponential, power and semidefinite cones), for penalties with a cvxpy form. cvxpy's
  multiplier ``nu_cvx`` of ``X S z == y`` satisfies ``grad R + (X S)^T nu_cvx = 0``, so ``nu = -nu_cvx``.
  Interior-point multipliers of exponential- and power-cone problems are accurate to about
  ``1e-5`` (the objective to far better: it is second order in the error), so for smooth penalties
  the cvxpy multiplier is polished by the dual Newton iteration below (a few steps), and for
  nonsmooth ones whose KKT residual stays above ``1e-8`` (degenerate cone points: whole groups or
  singular values at zero) the problem is solved again with SCS at tolerance ``1e-12`` and the
  better answer kept; ``method`` says which. ``polish=False`` returns the first solver's answer.
- :func:`solve_dual`: for smooth strictly convex ``R`` (``R.smooth``), the dual problem
  ``min_nu R*(M^T nu) - y . nu`` (``M = X S``) is smooth and unconstrained; Newton's method with a
  Levenberg-Marquardt damping solves it in JAX and ``z = grad R*(M^T nu)``. This is also how the
  implicit depth-``D`` potential (no cvxpy form) is solved.

:func:`predicted_interpolator` picks one: the dual solve for smooth penalties (exact stationarity,
and robust where exponential cones with constants near ``1e-16`` make interior-point methods fail),
cvxpy for the others.
"""

from __future__ import annotations

import warnings

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from ._newton import damped_newton
from ._types import AbstractPenalty, Interpolator


def _design(X, synthesis):
    X = np.asarray(X, float)
    S = None if synthesis is None else np.asarray(synthesis, float)
    return X if S is None else X @ S, S


def _finish(penalty, M, S, y, z, nu, method, status) -> Interpolator:
    z = jnp.asarray(z, float)
    nu = jnp.asarray(nu, float)
    primal = float(jnp.max(jnp.abs(jnp.asarray(M) @ z - jnp.asarray(y))))
    dual = float(penalty.kkt_residual(z, jnp.asarray(M).T @ nu))
    beta = z if S is None else jnp.asarray(S) @ z
    return Interpolator(beta, z, nu, primal, dual, method, status)


def solve_convex(
    penalty: AbstractPenalty,
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"],
    synthesis: Float[ArrayLike, "d e"] | None = None,
    *,
    solver: str = "CLARABEL",
    polish: bool = True,
    **solver_options,
) -> Interpolator:
    """``argmin_z R(z)`` s.t. ``X S z = y`` with cvxpy (``S = synthesis``, identity if ``None``).
    Clarabel runs with tolerances ``1e-10`` unless ``solver_options`` say otherwise; then
    ``polish`` as in the module docstring."""
    import cvxpy as cp

    if not penalty.dcp:
        raise ValueError(f"{type(penalty).__name__} has no cvxpy form; use solve_dual")
    M, S = _design(X, synthesis)
    y = np.asarray(y, float)
    z = cp.Variable(M.shape[1])
    expr, cons = penalty.cvxpy(z)
    eq = M @ z == y
    prob = cp.Problem(cp.Minimize(expr), [eq, *cons])
    defaults = {
        "CLARABEL": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10, "max_iter": 500},
        "SCS": {"eps_abs": 1e-12, "eps_rel": 1e-12, "max_iters": 200_000},
    }

    def run(name, options):
        opts = {**defaults.get(name, {}), **options}
        with warnings.catch_warnings():  # the status is reported, and the residuals are ours
            warnings.simplefilter("ignore", UserWarning)
            prob.solve(solver=name, **opts)
        if z.value is None:
            raise RuntimeError(f"cvxpy/{name} found no solution (status {prob.status})")
        nu = -np.asarray(eq.dual_value, float)
        return _finish(penalty, M, S, y, z.value, nu, f"cvxpy-{name}", prob.status)

    out = run(solver, solver_options)
    if polish and penalty.smooth:
        pol = solve_dual(penalty, X, y, synthesis, nu0=out.nu, max_steps=20)
        return pol._replace(method=f"{out.method}+dual-newton-polish", status=f"{out.status}/{pol.status}")
    if polish and out.residual > 1e-8 and solver != "SCS":
        # interior-point multipliers at degenerate cone points (zero groups, zero singular values)
        # converge slowly; the first-order conic solver SCS reaches them to its tolerance
        again = run("SCS", {})
        if again.residual < out.residual:
            return again._replace(method=f"{out.method}->SCS")
    return out


def solve_dual(
    penalty: AbstractPenalty,
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"],
    synthesis: Float[ArrayLike, "d e"] | None = None,
    *,
    nu0: Float[ArrayLike, " n"] | None = None,
    tol: float = 1e-11,
    max_steps: int = 100,
) -> Interpolator:
    """``z = grad R*(M^T nu)`` with ``nu = argmin R*(M^T nu) - y . nu`` (``M = X S``), by damped
    Newton in JAX (``_newton.py``; float64 advised). The dual gradient is ``M z - y``: it stops when
    ``max |M z - y| <= tol (1 + max |y|)``, when no decrease is possible, or after ``max_steps``.
    Stationarity ``grad R(z) = M^T nu`` holds by construction."""
    if not penalty.smooth:
        raise ValueError(f"{type(penalty).__name__} is not smooth; use solve_convex")
    M, S = _design(X, synthesis)
    M, yj = jnp.asarray(M), jnp.asarray(y, float)

    nu = jnp.zeros(M.shape[0]) if nu0 is None else jnp.asarray(nu0, float)
    gtol = tol * (1 + float(jnp.max(jnp.abs(yj))))
    res = _dual_newton(penalty, M, yj, nu, gtol, max_steps)
    nu = res.x
    status = "converged" if float(res.gradient_inf) <= gtol else f"stopped at max |X S z - y| = {float(res.gradient_inf):.1e}"
    z = penalty.dual_map(M.T @ nu)
    return _finish(penalty, M, S, yj, z, nu, "jax-dual-newton", status)


def _dual_objective(nu, args):
    penalty, M, y = args
    return penalty.conjugate(M.T @ nu) - y @ nu


@eqx.filter_jit
def _dual_newton(penalty, M, y, nu0, gtol, max_steps):
    return damped_newton(_dual_objective, nu0, (penalty, M, y), gtol=gtol, max_steps=max_steps)


def predicted_interpolator(
    penalty: AbstractPenalty,
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"],
    synthesis: Float[ArrayLike, "d e"] | None = None,
    method: str = "auto",
) -> Interpolator:
    """``argmin R`` on ``{X S z = y}`` by ``method``: ``cvxpy``, ``dual`` or ``auto`` (the JAX dual
    solve for smooth penalties, cvxpy otherwise)."""
    if method == "auto":
        method = "dual" if penalty.smooth else "cvxpy"
    if method == "cvxpy":
        return solve_convex(penalty, X, y, synthesis)
    if method == "dual":
        return solve_dual(penalty, X, y, synthesis)
    raise ValueError(f"method must be 'auto', 'cvxpy' or 'dual', got {method!r}")

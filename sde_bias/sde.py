"""The SGD-SDE and its integration with diffrax solvers.

The Itô SDE matching SGD to weak order 1 (Li, Tai, E 2017, "Stochastic modified
equations"; docs/theory.md section 1.4)::

    d theta = mu(theta) dt + sqrt(eta) sigma(theta) dW_t,
    mu = -E[g_hat] (- (eta/4) grad |E[g_hat]|^2 at order 2),   sigma sigma^T = Cov[g_hat]

with ``t = k eta`` after ``k`` SGD steps and ``W`` an m-dimensional Brownian motion
(m = number of diffusion columns of the scheme).

Stratonovich solvers (Heun, the SRK family) converge to the Stratonovich solution, so
they integrate the Itô SDE through the drift correction
``mu_S = mu - 1/2 sum_j (D s_j) s_j`` with ``s_j = sqrt(eta) sigma e_j`` (one jvp per
noise column; Kloeden & Platen 1992, eq. 4.9.7).

Fixed-step ensembles do NOT go through ``diffrax.diffeqsolve``: its step loop costs up
to ~80x a plain ``lax.scan`` on cheap SDEs (diffrax issue 517) and
``VirtualBrownianTree`` is slower still (issue 489). Instead :class:`SDEStepper` calls the
diffrax solver's own ``step`` inside the chunked ``lax.scan`` of
``sde_bias.integrate``, with Brownian increments drawn for a whole block of steps at once
and handed to the solver through :class:`PreDrawnIncrement`. The solvers' maths is
diffrax's; only the loop is ours. Adaptive stepping keeps ``diffeqsolve`` with a
``VirtualBrownianTree`` (:func:`solve_adaptive`).
"""

import abc
import math
from typing import Any, Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Float, PRNGKeyArray

from .contracts import AbstractStepper
from .data import Dataset


class PreDrawnIncrement(diffrax.AbstractBrownianPath):
    """A 'Brownian path' that returns one pre-drawn increment whatever interval is asked.

    Valid only for a solver step over exactly the interval the increment was drawn for
    (which is how :class:`SDEStepper` uses it)."""

    increment: Any
    levy_area: type = eqx.field(static=True)

    @property
    def t0(self):
        return -jnp.inf

    @property
    def t1(self):
        return jnp.inf

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        if use_levy:
            return self.increment
        return self.increment.W


class AbstractSDE(eqx.Module):
    """An Itô SDE ``dy = drift(y) dt + diffusion(y) dW`` with matrix-free diffusion.

    Subclasses give :meth:`drift`, :meth:`diffusion_mv` (``diffusion(y) @ xi``),
    :meth:`noise_dim` and :attr:`time_step` (the unit of time of one runner step).
    Vector fields take diffrax's ``(t, y, args)``; ``args`` is the seed's data."""

    @abc.abstractmethod
    def drift(self, t, y, args) -> Float[Array, " p"]: ...

    @abc.abstractmethod
    def diffusion_mv(self, y, args, xi) -> Float[Array, " p"]: ...

    @abc.abstractmethod
    def noise_dim(self, args) -> int: ...

    @property
    @abc.abstractmethod
    def time_step(self) -> float: ...

    def diffusion_operator(self, t, y, args) -> lx.FunctionLinearOperator:
        """Matrix-free diffusion as a lineax operator (one ``diffusion_mv`` per use)."""
        m = self.noise_dim(args)
        # the input structure of a traced value: inside shard_map (seeds split over
        # devices) values carry the manual mesh's sharding, which a bare
        # ShapeDtypeStruct lacks, and the operator's closure check compares the two
        in_structure = jax.eval_shape(lambda: jnp.zeros((m,), y.dtype))
        return lx.FunctionLinearOperator(lambda xi: self.diffusion_mv(y, args, xi), in_structure)

    def diffusion_matrix(self, t, y, args) -> Float[Array, "p m"]:
        """Dense diffusion [p, m] (needed by Milstein): the Jacobian of the linear map."""
        m = self.noise_dim(args)
        return jax.jacfwd(lambda xi: self.diffusion_mv(y, args, xi))(jnp.zeros((m,), y.dtype))

    def ito_to_stratonovich(self, y, args) -> Float[Array, " p"]:
        """``-1/2 sum_j (D s_j) s_j`` over the diffusion columns ``s_j``: one jvp per column."""
        m = self.noise_dim(args)

        def column_term(e):
            col = lambda th: self.diffusion_mv(th, args, e)  # noqa: E731
            return jax.jvp(col, (y,), (col(y),))[1]

        eye = jnp.eye(m, dtype=y.dtype)
        return -0.5 * jnp.sum(jax.lax.map(column_term, eye, batch_size=min(m, 64)), axis=0)

    def stratonovich_drift(self, t, y, args) -> Float[Array, " p"]:
        """Drift of the Stratonovich SDE with the same solution as this Itô SDE."""
        return self.drift(t, y, args) + self.ito_to_stratonovich(y, args)


class CustomSDE(AbstractSDE):
    """A user SDE from plain functions: ``drift_fn(y, args)``, ``diffusion_fn(y, args, xi)``.

    Lets every solver path of :class:`SDEStepper` be tested on SDEs with closed forms
    (geometric Brownian motion, Ornstein-Uhlenbeck, projected noise)."""

    drift_fn: Callable
    diffusion_fn: Callable
    dim_noise: int = eqx.field(static=True)
    dt_unit: float = eqx.field(static=True, default=1.0)

    def drift(self, t, y, args):
        return self.drift_fn(y, args)

    def diffusion_mv(self, y, args, xi):
        return self.diffusion_fn(y, args, xi)

    def noise_dim(self, args):
        return self.dim_noise

    @property
    def time_step(self):
        return self.dt_unit


class SGDSDE(AbstractSDE):
    """Drift and diffusion of the SGD-SDE for a problem and learning rate.

    ``args`` of every vector field is the seed's :class:`~sde_bias.data.Dataset`.
    One unit step is one SGD step, of time ``eta``."""

    problem: Any
    lr: float
    order2: bool = eqx.field(static=True, default=False)

    @property
    def time_step(self):
        return self.lr

    def mean_gradient(self, theta, data: Dataset) -> Float[Array, " p"]:
        """``E[g_hat]`` plus the penalty gradient."""
        return self.problem.scheme.mean_gradient(self.problem, theta, data) + self.problem.penalty_gradient(theta)

    def drift(self, t, theta, data: Dataset) -> Float[Array, " p"]:
        """``mu = -E[g_hat]``, with the order-2 modified-loss term if asked."""
        if not self.order2:
            return -self.mean_gradient(theta, data)
        g, vjp = jax.vjp(lambda th: self.mean_gradient(th, data), theta)
        # grad |m|^2 = 2 Dm^T m, so mu2 = -m - (eta/4) * 2 Dm^T m
        return -g - 0.5 * self.lr * vjp(g)[0]

    def noise_dim(self, data: Dataset) -> int:
        return self.problem.scheme.noise_dim(self.problem, data)

    def diffusion_mv(self, theta, data: Dataset, xi) -> Float[Array, " p"]:
        """``sqrt(eta) sigma(theta) xi``."""
        return _sqrt(self.lr) * self.problem.scheme.diffusion_mv(self.problem, theta, data, xi)


def _sqrt(x):
    """``math.sqrt`` of a Python number (as before: folded in double precision), ``jnp.sqrt``
    of an array (a learning rate traced by a sweep, sde_bias/sweep_run.py)."""
    return math.sqrt(x) if isinstance(x, (int, float)) else jnp.sqrt(x)


def is_stratonovich(solver) -> bool:
    return isinstance(solver, diffrax.AbstractStratonovichSolver)


def needs_levy_area(solver) -> bool:
    return isinstance(solver, diffrax.AbstractSRK)


class SDEStepper(AbstractStepper):
    """One fixed step of a diffrax solver on the SGD-SDE, driven by pre-drawn increments.

    ``substeps`` SDE steps of size ``dt = eta / substeps`` make one unit step (one SGD
    step of time ``eta``). Itô solvers (Euler, ItoMilstein) integrate the drift as is;
    Stratonovich solvers get :meth:`SGDSDE.ito_to_stratonovich` added (unless
    ``ito_correction=False``, which exists to show that the correction is needed)."""

    sde: AbstractSDE
    solver: diffrax.AbstractSolver
    substeps: int = eqx.field(static=True, default=1)
    ito_correction: bool = eqx.field(static=True, default=True)
    dense_diffusion: bool = eqx.field(static=True, default=False)

    @property
    def dt(self) -> float:
        return self.sde.time_step / self.substeps

    def _terms(self, increment):
        strat = is_stratonovich(self.solver) and self.ito_correction
        drift = diffrax.ODETerm(self.sde.stratonovich_drift if strat else self.sde.drift)
        vf = self.sde.diffusion_matrix if self.dense_diffusion else self.sde.diffusion_operator
        levy = diffrax.SpaceTimeLevyArea if needs_levy_area(self.solver) else diffrax.BrownianIncrement
        return diffrax.MultiTerm(drift, diffrax.ControlTerm(vf, PreDrawnIncrement(increment, levy)))

    def init(self, theta, data):
        return None

    def draw(self, key: PRNGKeyArray, num_steps: int, data: Dataset, dtype):
        """Increments ``dW ~ N(0, dt)`` (and space-time Lévy areas ``H ~ N(0, dt/12)``,
        independent of ``dW``, for SRK solvers) for ``num_steps`` steps."""
        m = self.sde.noise_dim(data)
        kw, kh = jax.random.split(key)
        dw = _sqrt(self.dt) * jax.random.normal(kw, (num_steps, m), dtype)
        if needs_levy_area(self.solver):
            h = _sqrt(self.dt / 12) * jax.random.normal(kh, (num_steps, m), dtype)
            return dw, h
        return dw, None

    def step(self, theta, aux, data, draw):
        dw, h = draw
        dt = jnp.asarray(self.dt, theta.dtype)
        inc = (
            diffrax.SpaceTimeLevyArea(dt, dw, h)
            if h is not None
            else diffrax.BrownianIncrement(dt, dw)
        )
        terms = self._terms(inc)
        zero = jnp.zeros((), theta.dtype)
        theta1, _, _, _, _ = self.solver.step(terms, zero, dt, theta, data, None, False)
        return theta1, aux


def commutativity_defect(sde: AbstractSDE, theta, data) -> Float[Array, ""]:
    """Largest Lie bracket ``|[s_j, s_k]| = |Ds_k s_j - Ds_j s_k|`` of the noise columns at
    ``theta``, relative to ``max |Ds_k s_j|``. Milstein's method (diffrax.ItoMilstein) is
    valid only when it is zero (commutative noise). Jittable and vmappable."""
    m = sde.noise_dim(data)
    if m <= 1:
        return jnp.zeros((), theta.dtype)
    eye = jnp.eye(m, dtype=theta.dtype)
    cols = jax.vmap(lambda e: sde.diffusion_mv(theta, data, e))(eye)  # [m, p]

    def d_col(e, v):
        return jax.jvp(lambda th: sde.diffusion_mv(th, data, e), (theta,), (v,))[1]

    # D s_k [s_j] for all j, k
    dd = jax.vmap(lambda e: jax.vmap(lambda v: d_col(e, v))(cols))(eye)  # [k, j, p]
    bracket = dd - jnp.swapaxes(dd, 0, 1)
    scale = jnp.max(jnp.abs(dd)) + jnp.finfo(theta.dtype).tiny
    return jnp.max(jnp.abs(bracket)) / scale


@eqx.filter_jit
def seed_commutativity_defects(sde: AbstractSDE, theta0: Float[Array, "S p"], data, data_batched: bool) -> Float[Array, " S"]:
    """:func:`commutativity_defect` at every seed's initial point (``data`` per seed when
    ``data_batched``), one seed at a time."""

    def one(args):
        theta, d = args if data_batched else (args, data)
        return commutativity_defect(sde, theta, d)

    xs = (theta0, data) if data_batched else theta0
    return jax.lax.map(one, xs)


def check_commutative_noise(sde: AbstractSDE, theta, data) -> float:
    """:func:`commutativity_defect` as a Python float."""
    return float(commutativity_defect(sde, theta, data))


def _step_to(controller, times):
    """``controller`` clipped so that every time in ``times`` is a step end point.

    Without it ``SaveAt(ts=...)`` interpolates between steps, which for an SDE replaces the
    Brownian path inside a step by a straight line: a pathwise error of order
    ``sqrt(step)`` at every save time that is not a step end point."""
    clip = getattr(diffrax, "ClipStepSizeController", None)
    if clip is None:  # diffrax < 0.7: the PID controller takes step_ts itself
        return diffrax.PIDController(rtol=controller.rtol, atol=controller.atol, step_ts=times)
    return clip(controller, step_ts=times)


def solve_adaptive(
    sde: AbstractSDE,
    solver: diffrax.AbstractSolver,
    theta0: Float[Array, " p"],
    data: Dataset,
    key: PRNGKeyArray,
    save_times: Float[Array, " r"],
    t_start: float,
    t_final: float,
    rtol: float = 1e-3,
    atol: float = 1e-6,
    dt0: float | None = None,
    brownian_tol: float | None = None,
    max_steps: int = 1_000_000,
    ito_correction: bool = True,
):
    """Adaptive-step integration of one trajectory with ``diffeqsolve`` and a
    ``VirtualBrownianTree`` on ``[0, t_final]`` (so that a run split into several calls
    sees the same Brownian path), stepping exactly to every save time (no interpolation).
    Returns ``(ys [r, p], ok)``."""
    m = sde.noise_dim(data)
    dt0 = dt0 if dt0 is not None else sde.time_step
    brownian_tol = brownian_tol if brownian_tol is not None else sde.time_step / 16
    levy = diffrax.SpaceTimeLevyArea if needs_levy_area(solver) else diffrax.BrownianIncrement
    bm = diffrax.VirtualBrownianTree(
        0.0, t_final, tol=brownian_tol, shape=(m,), key=key, levy_area=levy
    )
    strat = is_stratonovich(solver) and ito_correction
    drift = diffrax.ODETerm(sde.stratonovich_drift if strat else sde.drift)
    terms = diffrax.MultiTerm(drift, diffrax.ControlTerm(sde.diffusion_operator, bm))
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        t_start,
        save_times[-1],
        dt0,
        theta0,
        args=data,
        saveat=diffrax.SaveAt(ts=save_times),
        stepsize_controller=_step_to(diffrax.PIDController(rtol=rtol, atol=atol), save_times),
        max_steps=max_steps,
        throw=False,
    )
    ok = sol.result == diffrax.RESULTS.successful
    return sol.ys, ok

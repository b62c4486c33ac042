"""The same Brownian paths at several step sizes, and what each solver claims.

:class:`RefinedStepper` runs a fixed-step SDE solver at ``dt = dt_base / refine`` driven by
the Brownian path of the *finest* level of a study: every unit step draws
``finest`` fine increments per base sub-step (from the same keys at every level) and sums
them in groups of ``finest / refine``. Levels of one study therefore integrate the same
path, and their differences measure the discretisation error alone (strong errors are
meaningful, weak-error differences have small variance).

Solvers driven by space-time Lévy areas (the SRK family, ``diffrax.SpaceTimeLevyArea``)
get the exact combined area: for ``g`` consecutive sub-intervals of length ``h`` with
increments ``W_i`` and areas ``H_i``, the interval of length ``g h`` has

    H = (1 / g) sum_i (S_{i-1} + W_i / 2 + H_i) - W / 2,   S_i = W_1 + ... + W_i,  W = S_g

(from ``H_{s,t} = (t-s)^-1 int_s^t (W_u - W_s - (u-s)/(t-s) W_{s,t}) du``; for ``g = 2``
this is ``(H_1 + H_2)/2 + (W_1 - W_2)/4``), so the combined pair has the law of one
coarse draw and is a function of the same path.

:data:`KNOWN_ORDERS` lists the orders each solver is proved to reach for each noise class
(Kloeden & Platen 1992; diffrax's documentation; Foster et al. 2023 for the ShARK
family); :func:`noise_class` finds the class of an SDE at given points.
"""

from __future__ import annotations

import math
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .contracts import AbstractStepper
from .sde import SDEStepper, needs_levy_area, seed_commutativity_defects

# weak and strong orders by diffrax solver and noise class. "additive": the diffusion does
# not depend on the state; "commutative": its columns' Lie brackets vanish (always true
# for one noise column); "general": anything else.
KNOWN_ORDERS: dict[str, dict[str, tuple[float, float]]] = {
    # Euler-Maruyama: weak 1; strong 1/2, 1 for additive noise
    "euler": {"general": (1.0, 0.5), "commutative": (1.0, 0.5), "additive": (1.0, 1.0)},
    # Ito Milstein: weak 1, strong 1 (commutative noise only; the run refuses otherwise)
    "ito_milstein": {"commutative": (1.0, 1.0), "additive": (1.0, 1.0)},
    # stochastic Heun (Stratonovich): weak 1; strong 1/2 general, 1 commutative; for additive
    # noise it is the simplified weak order-2 scheme of Kloeden & Platen (15.1), weak 2
    "heun": {"general": (1.0, 0.5), "commutative": (1.0, 1.0), "additive": (2.0, 1.0)},
    # GeneralShARK: strong 1/2, 1, 3/2 (diffrax docs); weak order taken as 1 (not claimed)
    "general_shark": {"general": (1.0, 0.5), "commutative": (1.0, 1.0), "additive": (1.0, 1.5)},
}


def known_orders(solver: str, noise: str) -> tuple[float, float] | None:
    """``(weak, strong)`` order claimed for ``solver`` (a preset's ``solver`` name) on this
    noise class, or ``None`` when nothing is claimed."""
    return KNOWN_ORDERS.get(solver, {}).get(noise)


def noise_class(sde, thetas, data, tol: float = 1e-8) -> str:
    """``additive``, ``commutative`` or ``general`` for ``sde`` at the points ``thetas`` [K, p]
    (additive: the dense diffusion is the same at every point; commutative: the Lie
    brackets of its columns vanish at every point)."""
    thetas = jnp.asarray(thetas)
    S = np.asarray(_diffusion_matrices(sde, thetas, data))
    if S.size == 0 or np.allclose(S, S[:1], rtol=tol, atol=tol * max(1e-300, float(np.abs(S).max()))):
        return "additive"
    d = np.asarray(seed_commutativity_defects(sde, thetas, data, False))
    return "commutative" if np.all(d <= 1e-6) else "general"


# one compiled program (op by op, the vmapped Jacobians compile a program per primitive)
@eqx.filter_jit
def _diffusion_matrices(sde, thetas, data):
    return jax.vmap(lambda th: sde.diffusion_matrix(0.0, th, data))(thetas)


def combine_levy(w: jax.Array, h: jax.Array) -> jax.Array:
    """Space-time Lévy area of ``g`` consecutive equal sub-intervals combined (axis -2 of
    ``w`` and ``h``: ``[..., g, m]`` -> ``[..., m]``); see the module docstring."""
    g = w.shape[-2]
    s_before = jnp.cumsum(w, axis=-2) - w  # S_{i-1}
    total = jnp.sum(w, axis=-2)
    return jnp.sum(s_before + 0.5 * w + h, axis=-2) / g - 0.5 * total


class RefinedStepper(AbstractStepper):
    """``stepper`` (an :class:`~sde_bias.sde.SDEStepper` whose ``substeps`` already include
    the refinement) driven by a path drawn at ``group`` times finer resolution: each of its
    increments is the sum of ``group`` fine increments. Levels ``refine = 1, 2, 4, ...``
    of a study with ``finest = max(refine)`` use ``group = finest / refine`` and see the
    same path (the loop asks every level for the same number of fine draws per block)."""

    stepper: SDEStepper
    group: int = eqx.field(static=True)

    @property
    def substeps(self) -> int:
        return self.stepper.substeps

    @property
    def dt(self) -> float:
        return self.stepper.dt

    @property
    def sde(self):
        return self.stepper.sde

    @property
    def solver(self):
        return self.stepper.solver

    def init(self, theta, data):
        return self.stepper.init(theta, data)

    def draw(self, key, num_steps: int, data, dtype):
        m = self.sde.noise_dim(data)
        g = self.group
        fine = self.dt / g
        kw, kh = jax.random.split(key)
        dw = math.sqrt(fine) * jax.random.normal(kw, (num_steps * g, m), dtype)
        dw = dw.reshape(num_steps, g, m)
        if needs_levy_area(self.solver):
            hh = math.sqrt(fine / 12) * jax.random.normal(kh, (num_steps * g, m), dtype)
            return jnp.sum(dw, axis=1), combine_levy(dw, hh.reshape(num_steps, g, m))
        return jnp.sum(dw, axis=1), None

    def step(self, theta, aux, data, draw):
        return self.stepper.step(theta, aux, data, draw)


def refined(stepper: SDEStepper, refine: int, finest: int) -> RefinedStepper:
    """``stepper`` at ``dt / refine`` on the path of the level ``finest`` (a multiple of
    ``refine``)."""
    if finest % refine:
        raise ValueError(f"the finest refinement {finest} is not a multiple of {refine}")
    s = SDEStepper(
        stepper.sde, stepper.solver, substeps=stepper.substeps * refine,
        ito_correction=stepper.ito_correction, dense_diffusion=stepper.dense_diffusion,
    )
    return RefinedStepper(s, finest // refine)


def run_levels(
    stepper: SDEStepper,
    refine: list[int],
    theta0,
    keys,
    data,
    observe,
    *,
    num_steps: int,
    record_every: int,
    data_batched: bool = False,
    **kwargs,
) -> list[dict]:
    """:func:`~sde_bias.integrate.run_ensemble` of ``stepper`` at every refinement, on the
    same paths (one result dict per level, in the order of ``refine``)."""
    from .integrate import run_ensemble

    finest = max(refine)
    return [
        run_ensemble(
            refined(stepper, r, finest), theta0, keys, data, observe,
            num_steps=num_steps, record_every=record_every, data_batched=data_batched, **kwargs,
        )
        for r in refine
    ]


__all__ = [
    "KNOWN_ORDERS", "known_orders", "noise_class", "combine_levy", "RefinedStepper", "refined", "run_levels",
]

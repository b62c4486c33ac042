"""The contracts the engine relies on: a stepper and a runner.

The ensemble loop of :mod:`sde_bias.integrate` advances every seed by *unit steps* (one
SGD step of time ``eta``); a **stepper** says what one unit step is. A **runner** takes an
ensemble from a :class:`~sde_bias.build.RunSetup` to the records of the run file, chunk by
chunk; a solver preset (:mod:`sde_bias.presets`) builds one. The third contract, the
sampling **scheme**, is :class:`sde_bias.noise.AbstractScheme`.

These classes declare abstract members only. Concrete steppers and runners are final
equinox Modules (never subclassed), in the strict style of equinox: a new way to step is a
new class, not a variant of an existing one. Hyperparameters (learning rate, ...) are
ordinary fields, so a stepper is a pytree that ``jit`` and ``vmap`` can take whole.
"""

import abc
from typing import Any

import equinox as eqx
from equinox import AbstractVar


class AbstractStepper(eqx.Module):
    """One unit step of the ensemble loop, for one seed (the loop vmaps over seeds).

    A unit step is :attr:`substeps` internal steps (SDE sub-steps of size ``eta /
    substeps``, SVAG's ``l`` steps). Randomness is drawn for a whole block of internal steps
    at once by :meth:`draw` (so that the loop can draw many blocks in one call), and
    consumed one internal step at a time by :meth:`step`:

        aux = init(theta0, data)
        draws = draw(key, n, data, dtype)        # leading axis n (internal steps)
        theta, aux = step(theta, aux, data, draws[i])   for i = 0 .. n - 1

    ``aux`` is per-seed state carried between steps (``None`` for a memoryless stepper); it
    is checkpointed with the ensemble. ``draw`` must depend on ``key`` only through
    ``jax.random`` calls, so that a run's numbers depend on (seed, block index) only.
    """

    substeps: AbstractVar[int]

    @abc.abstractmethod
    def init(self, theta, data) -> Any:
        """The auxiliary state at ``theta`` (``None`` when there is none)."""

    @abc.abstractmethod
    def draw(self, key, num_steps: int, data, dtype) -> Any:
        """The randomness of ``num_steps`` consecutive internal steps (a pytree whose
        leaves have leading axis ``num_steps``)."""

    @abc.abstractmethod
    def step(self, theta, aux, data, draw) -> tuple[Any, Any]:
        """One internal step given its slice of :meth:`draw`: ``(theta, aux)``."""


class AbstractRunner(eqx.Module):
    """A runner of one solver preset: an ensemble of seeds advanced in chunks.

    ``setup`` is a :class:`~sde_bias.build.RunSetup` (initial parameters, run keys, data,
    observer, divergence threshold). Chunking never changes the numbers: advancing by
    ``a`` then ``b`` records equals advancing by ``a + b``, and an ensemble restored from a
    checkpoint continues exactly as the one that was saved.
    """

    preset: AbstractVar[Any]

    @abc.abstractmethod
    def init(self, setup) -> Any:
        """The fresh :class:`~sde_bias.integrate.Ensemble` (step 0; seeds split over the
        devices as the runner's loop wants them)."""

    @abc.abstractmethod
    def advance(self, ens, setup, num_records: int, record_every: int) -> tuple[Any, dict]:
        """``ens`` advanced by ``num_records * record_every`` unit steps, and the records
        ``{name: [S, num_records, ...]}`` after every ``record_every`` steps (NaN for the
        records of a seed from its divergence on)."""

"""Solver presets: named, documented ways to integrate a scenario (``solvers/*.yaml``).

A preset says *how* to integrate; a scenario says *what*. Three kinds:

- ``discrete``: the exact SGD update (``sgd``), gradient descent (``gd``,
  ``full_batch: true``) or SVAG (``svag``, ``svag_l > 1``);
- ``sde``: a fixed-step diffrax solver on the SGD-SDE (``euler_maruyama``,
  ``milstein``, ``heun``, ``srk``), one or more sub-steps per SGD step;
- ``adaptive``: ``diffrax.diffeqsolve`` with a PID step-size controller and a
  ``VirtualBrownianTree`` (``adaptive``).

Each kind is one class that builds its own runner (:meth:`make_runner`; the fixed-step
kinds through :meth:`make_stepper`), so a new kind is one new class in :data:`Preset`. The
diffrax solver of a name comes from one table, :data:`SOLVERS`, through :func:`make_solver`.

Every runner of a scenario uses the same seeds: the same initial parameters and the same
per-seed keys. A scenario can change preset options through ``runner_options``.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError, model_validator

from .config_base import NO_VALUE as _NOVALUE  # noqa: N811
from .config_base import ConfigBlock as _Block  # noqa: N814
from .errors import ScenarioError, UserError, read_yaml_file
from .pydantic_errors import errors_from_pydantic

SOLVERS = {
    "euler": "Euler",
    "ito_milstein": "ItoMilstein",
    "heun": "Heun",
    "midpoint": "Midpoint",
    "euler_heun": "EulerHeun",
    "general_shark": "GeneralShARK",
    "spark": "SPaRK",
    "slow_rk": "SlowRK",
}
"""Solver names accepted by presets -> ``diffrax`` class names. ``euler`` and
``ito_milstein`` solve the Itô SDE directly; the others converge to the Stratonovich
solution and get the Itô-to-Stratonovich drift correction (``ito_correction``)."""

ADAPTIVE_SOLVERS = ["heun", "midpoint", "spark", "general_shark"]

COMMUTATIVE_ONLY = frozenset({"ito_milstein"})
"""Solvers valid only for commutative noise (checked at every seed's initial point)."""

SolverName = Literal["euler", "ito_milstein", "heun", "midpoint", "euler_heun", "general_shark", "spark", "slow_rk"]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class PresetError(ScenarioError):
    """An invalid solver preset (or ``runner_options`` entry)."""


def make_solver(name: str, source: str = "preset"):
    """The diffrax solver of a preset's ``solver`` name (:data:`SOLVERS`); a name not in
    the table is a :class:`PresetError` naming the key."""
    import diffrax

    if name not in SOLVERS:
        raise PresetError(source, [("solver", f"unknown solver; expected one of {', '.join(SOLVERS)}", name)])
    return getattr(diffrax, SOLVERS[name])()


def _scenario_error(sc, path: str, message: str, value: Any = _NOVALUE) -> ScenarioError:
    label = sc.source if not sc.variant else f"{sc.source} [variant {sc.variant}]"
    return ScenarioError(label, [(path, message, value)])


class _PresetBase(_Block):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$")]
    description: str

    @property
    @abc.abstractmethod
    def group(self) -> str:
        """HDF5 group of this runner: ``<name>`` (discrete) or ``sde/<name>``."""

    @abc.abstractmethod
    def make_runner(self, setup):
        """The runner (:class:`~sde_bias.contracts.AbstractRunner`) of this preset for a
        :class:`~sde_bias.build.RunSetup`; refuses a preset the setup cannot run."""


class DiscretePreset(_PresetBase):
    """Discrete updates: SGD, GD (``full_batch``) or SVAG (``svag_l > 1``)."""

    kind: Literal["discrete"]
    full_batch: bool = False
    svag_l: PositiveInt = 1

    @property
    def group(self) -> str:
        return self.name

    def make_stepper(self, setup):
        """:class:`~sde_bias.sgd.DiscreteStepper` at the scenario's learning rate."""
        from .sgd import DiscreteStepper

        lr = float(setup.scenario.training.lr)
        return DiscreteStepper(setup.problem, lr, svag_l=self.svag_l, full_batch=self.full_batch)

    def make_runner(self, setup):
        from .runners import FixedStepRunner

        return FixedStepRunner(self.make_stepper(setup), self)


class SDEPreset(_PresetBase):
    """A fixed-step diffrax solver on the SGD-SDE."""

    kind: Literal["sde"]
    solver: SolverName
    substeps: PositiveInt = 1
    ito_correction: bool = True
    order2: bool = False
    dense_diffusion: bool = False
    commutative_tol: PositiveFloat = 1e-6

    @property
    def group(self) -> str:
        return f"sde/{self.name}"

    @model_validator(mode="after")
    def _milstein_dense(self):
        if self.solver == "ito_milstein" and not self.dense_diffusion:
            raise ValueError("solver ito_milstein needs dense_diffusion: true")
        return self

    def make_stepper(self, setup):
        """:class:`~sde_bias.sde.SDEStepper` of the solver on the SGD-SDE at the scenario's
        learning rate. A commutative-noise solver (:data:`COMMUTATIVE_ONLY`) is refused when
        the noise columns' Lie brackets at some seed's initial point exceed
        ``commutative_tol`` (relative)."""
        import numpy as np

        from .sde import SDEStepper, SGDSDE, seed_commutativity_defects

        sde = SGDSDE(setup.problem, float(setup.scenario.training.lr), order2=self.order2)
        m = int(sde.noise_dim(setup.seed0_data))
        if self.solver in COMMUTATIVE_ONLY and m > 1:
            ratios = np.asarray(seed_commutativity_defects(sde, setup.theta0, setup.data, setup.data_batched))
            bad = np.flatnonzero(~(ratios <= self.commutative_tol))
            if bad.size:
                i = int(bad[0])
                raise _scenario_error(
                    setup.scenario,
                    "runners",
                    f"preset {self.name!r} ({self.solver}) needs commutative noise, but the noise "
                    f"columns' Lie brackets reach {float(ratios[i]):.2e} (relative) at seed {int(setup.seeds[i])}'s "
                    f"initial point ({bad.size} of {len(ratios)} seeds above commutative_tol = "
                    f"{self.commutative_tol:g}); use euler_maruyama, heun or srk",
                )
        # with no noise columns the Ito correction is zero: skip it (and its empty map)
        ito = bool(self.ito_correction) and m > 0
        solver = make_solver(self.solver, self.name)
        return SDEStepper(sde, solver, substeps=self.substeps, ito_correction=ito, dense_diffusion=self.dense_diffusion)

    def make_runner(self, setup):
        from .runners import FixedStepRunner

        return FixedStepRunner(self.make_stepper(setup), self)


class AdaptivePreset(_PresetBase):
    """Adaptive steps: diffeqsolve + PIDController + VirtualBrownianTree."""

    kind: Literal["adaptive"]
    solver: Literal["heun", "midpoint", "spark", "general_shark"] = "heun"
    rtol: PositiveFloat = 1e-3
    atol: PositiveFloat = 1e-6
    dt0: PositiveFloat | None = None
    brownian_tol: PositiveFloat | None = None
    max_steps: PositiveInt = 1_000_000
    ito_correction: bool = True
    order2: bool = False

    @property
    def group(self) -> str:
        return f"sde/{self.name}"

    def make_runner(self, setup):
        """:class:`~sde_bias.runners.AdaptiveRunner` on the SGD-SDE, its Brownian tree
        spanning the scenario's whole run (``(total_steps + 1) lr``, whatever the chunking)."""
        from .runners import AdaptiveRunner
        from .sde import SGDSDE

        sc = setup.scenario
        lr = float(sc.training.lr)
        sde = SGDSDE(setup.problem, lr, order2=self.order2)
        ito = bool(self.ito_correction) and int(sde.noise_dim(setup.seed0_data)) > 0
        t_final = (sc.total_steps + 1) * lr
        return AdaptiveRunner(sde, make_solver(self.solver, self.name), self, float(t_final), ito)


Preset = Annotated[Union[DiscretePreset, SDEPreset, AdaptivePreset], Field(discriminator="kind")]


def solver_dirs() -> list[Path]:
    """Where presets are looked up: ``$SDE_BIAS_SOLVERS`` (``os.pathsep``-separated),
    then the project's ``solvers/`` folder."""
    dirs = [Path(p) for p in os.environ.get("SDE_BIAS_SOLVERS", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parent.parent / "solvers")
    return dirs


def preset_from_dict(raw: Any, source: str):
    if not isinstance(raw, dict):
        raise PresetError(source, [("", "a preset file must be a YAML mapping", raw)])
    try:
        return _PresetRoot.model_validate({"preset": raw}).preset
    except ValidationError as e:
        problems = []
        for path, msg, val in errors_from_pydantic(e, _PresetRoot):
            problems.append((path.removeprefix("preset.").removeprefix("preset"), msg, val))
        raise PresetError(source, problems) from None


class _PresetRoot(_Block):
    # only used to map pydantic error locations to key paths
    preset: Preset


def load_preset_file(path) -> Any:
    path = Path(path)
    raw = read_yaml_file(path)
    p = preset_from_dict(raw, str(path))
    if p.name != path.stem:
        raise PresetError(str(path), [("name", f"must equal the file name {path.stem!r}", p.name)])
    return p


_CACHE: dict[tuple, dict] = {}


def load_presets(dirs: list[Path] | None = None, refresh: bool = False) -> dict[str, Any]:
    """All presets by name (the first directory that defines a name wins)."""
    dirs = solver_dirs() if dirs is None else [Path(d) for d in dirs]
    key = tuple(str(d) for d in dirs)
    if not refresh and key in _CACHE:
        return dict(_CACHE[key])
    out: dict[str, Any] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.yaml")):
            if f.stem not in out:
                out[f.stem] = load_preset_file(f)
    _CACHE[key] = out
    return dict(out)


def resolve_preset(preset, options: dict | None):
    """The preset with a scenario's ``runner_options`` applied (validated)."""
    if not options:
        return preset
    if not isinstance(options, dict):
        raise PresetError(preset.name, [("", "runner options must be a mapping", options)])
    for k in ("name", "kind"):
        if k in options:
            raise PresetError(preset.name, [(k, "cannot be changed by runner_options", _NOVALUE)])
    raw = preset.model_dump(mode="python")
    raw.update(options)
    return preset_from_dict(raw, preset.name)


def preset_group(preset) -> str:
    return preset.group


def get_preset(name: str, presets: dict | None = None):
    presets = load_presets() if presets is None else presets
    if name not in presets:
        raise UserError(f"no solver preset named {name!r}; available: {', '.join(sorted(presets))}")
    return presets[name]

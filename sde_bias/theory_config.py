"""The ``theory:`` block of a scenario (its keys are documented in :mod:`sde_bias.theory_run`,
which runs the checks). A leaf of the configuration layer: pydantic only, no JAX.

Unlike the other blocks these are not strict: ``grid: {linspace: [0, 2, 20]}`` reads its
ends as floats.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ScenarioError
from .pydantic_errors import errors_from_pydantic


class _TheoryBlock(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Linspace(_TheoryBlock):
    """``{linspace: [a, b, n]}``: ``n`` equally spaced values from ``a`` to ``b``."""

    linspace: tuple[float, float, int]


class DriftCheckConfig(_TheoryBlock):
    """Three-way effective-drift comparison (discrete SGD, SDE, theory) at chosen points."""

    points: Literal["section", "final", "initial"] = "section"
    grid: Linspace | None = None
    from_: str = Field("sgd", alias="from")
    num_points: int = Field(10, ge=1)
    replicates: int = Field(20_000, ge=2)
    steps: int = Field(1, ge=1)
    sgd: str = "sgd"
    sde: str = "euler_maruyama"


class StationaryCheckConfig(_TheoryBlock):
    """Long-run law of one invariant against the Fokker-Planck stationary density."""

    runner: str = "euler_maruyama"
    component: int = Field(0, ge=0)
    grid: Linspace
    bins: int = Field(20, ge=3)


class EffectiveDriftConfig(_TheoryBlock):
    """Drift and diffusion of the quotient SDE per fiber measure."""

    fibers: list[Literal["section", "noise_equilibrium", "empirical"]] = ["section"]
    grid: Linspace | None = None
    runner: str = "sgd"
    component: int = Field(0, ge=0)
    bins: int = Field(12, ge=2)


class TheoryConfig(_TheoryBlock):
    """The ``theory:`` block: which checks to run after the runners (all optional)."""

    invariants: Literal["default", "singular_values"] = "default"
    effective_drift: EffectiveDriftConfig | None = None
    drift_check: DriftCheckConfig | None = None
    stationary_check: StationaryCheckConfig | None = None
    balance_check: bool = False


def parse_theory(block: dict[str, Any] | TheoryConfig | None, source: str = "<scenario>") -> TheoryConfig:
    """Validate a ``theory:`` block (a validated one is returned as it is); errors name
    ``theory.<key path>``."""
    if isinstance(block, TheoryConfig):
        return block
    try:
        return TheoryConfig.model_validate(block or {})
    except ValidationError as e:
        problems = [(f"theory.{p}", m, v) for p, m, v in errors_from_pydantic(e, TheoryConfig)]
        raise ScenarioError(source, problems) from None


__all__ = ["Linspace", "DriftCheckConfig", "StationaryCheckConfig", "EffectiveDriftConfig", "TheoryConfig", "parse_theory"]

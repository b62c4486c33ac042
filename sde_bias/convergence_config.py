"""The ``convergence:`` block of a scenario (its keys are documented in
:mod:`sde_bias.converge_run`, which runs the step-size study). A leaf of the configuration
layer: pydantic only, no JAX.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from .config_base import ConfigBlock
from .errors import ScenarioError

class SGDGapConfig(ConfigBlock):
    """Discrete SGD against the extrapolated SDE at the learning rates ``lrs``."""

    lrs: list[float] | None = None
    solver: str | None = None
    refine: list[int] = [1, 2]


class ConvergenceConfig(ConfigBlock):
    """The ``convergence:`` block: a step-size study of the scenario's SDE solvers."""

    solvers: list[str] = Field(default_factory=lambda: ["euler_maruyama", "heun"], min_length=1)
    refine: list[int] = Field(default_factory=lambda: [1, 2, 4, 8], min_length=2)
    paths: int | None = Field(None, gt=1)
    steps: int | None = Field(None, gt=0)
    times: list[float] | None = None
    observables: list[str] | None = None
    moments: list[Literal["mean", "variance"]] = Field(default_factory=lambda: ["mean", "variance"], min_length=1)
    closed_form: dict[str, Literal["balance_law"]] = Field(default_factory=dict)
    strong: bool = False
    order: float | None = Field(None, gt=0)
    terms: int | None = Field(None, ge=1)
    sgd: SGDGapConfig | bool | None = True
    in_run: bool = False

    @field_validator("refine")
    @classmethod
    def _refine(cls, v):
        if any(r < 1 for r in v) or sorted(set(v)) != list(v):
            raise ValueError("must be increasing positive integers, e.g. [1, 2, 4, 8]")
        if any(v[-1] % r for r in v):
            raise ValueError(f"every refinement must divide the finest ({v[-1]})")
        return v


def parse_convergence(
    block: dict | ConvergenceConfig | None, source: str = "<scenario>", overrides: dict | None = None
) -> ConvergenceConfig:
    """Validate a ``convergence:`` block (plus command-line ``overrides``) and fill in the
    defaults that depend on other keys (``terms``, ``sgd``); errors name
    ``convergence.<key path>``."""
    if isinstance(block, BaseModel):
        block = block.model_dump(by_alias=True, exclude_unset=True)
    raw = dict(block or {})
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        cfg = ConvergenceConfig.model_validate(raw)
    except ValidationError as e:
        problems = [("convergence." + ".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, "),
                     err.get("input")) for err in e.errors()]
        raise ScenarioError(source, problems) from None
    if cfg.terms is None:
        cfg = cfg.model_copy(update={"terms": min(2, len(cfg.refine) - 1)})
    if isinstance(cfg.sgd, bool) or cfg.sgd is None:
        cfg = cfg.model_copy(update={"sgd": SGDGapConfig() if cfg.sgd else None})
    if cfg.terms + 1 > len(cfg.refine):
        raise ScenarioError(source, [("convergence.terms", f"needs {cfg.terms + 1} refinements", cfg.terms)])
    return cfg


__all__ = ["SGDGapConfig", "ConvergenceConfig", "parse_convergence"]

"""The scenario's ``design:`` block (a leaf module: pydantic only, no JAX).

It asks the run for the inverse-design verification stage (``sde_bias.design_run``, docs/theory.md
section 6): after the runners, each runner's recorded coefficients ``beta(t)`` (the ``invariants``
observable) are compared, seed by seed, with the interpolators that each mechanism is predicted to
select, and with the alternatives::

    design:
      target: weighted_l1        # weighted_l1 | transform_l1 | group | low_rank | none
      weights: [1.0, 2.0, ...]   # target weights (per coordinate, or per group); default all 1
      synthesis: tv              # transform_l1: identity | tv | cosine | haar (beta = S c, target sum w |c|)
      mechanism: label_noise     # what the design relies on: gd | label_noise | both
      alternatives: [l1, l2, truth, depth_3]   # also compared: plain l1, min l2, the data's target,
                                 # label-noise R* of another depth (depth_2 .. depth_8)

Results go to ``/design`` of the run file (``sde-bias inspect`` prints a summary).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from .config_base import ConfigBlock

DesignTarget = Literal["weighted_l1", "transform_l1", "group", "low_rank", "none"]
Synthesis = Literal["identity", "tv", "cosine", "haar"]
_ALTERNATIVES = ("l1", "l2", "truth")


class DesignConfig(ConfigBlock):
    """The ``design:`` block (module docstring)."""

    target: DesignTarget = "none"
    weights: list[Annotated[float, Field(gt=0)]] | None = None
    synthesis: Synthesis = "identity"
    mechanism: Literal["gd", "label_noise", "both"] = "both"
    alternatives: list[str] = Field(default_factory=lambda: ["l1", "l2", "truth"])

    @field_validator("alternatives")
    @classmethod
    def _alternatives(cls, v):
        for a in v:
            if a in _ALTERNATIVES:
                continue
            if a.startswith("depth_") and a[6:].isdigit() and 2 <= int(a[6:]) <= 8:
                continue
            raise ValueError(f"unknown alternative {a!r}; expected l1, l2, truth or depth_D (D = 2..8)")
        return v

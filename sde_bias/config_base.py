"""The base of every block of a scenario file (pydantic and :mod:`sde_bias.errors` only, no JAX).

Blocks are frozen pydantic models that reject unknown keys (``extra='forbid'``) and do not
coerce types (``strict``): ``dim: "4"`` is an error, not 4.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from .errors import NO_VALUE as NO_VALUE  # noqa: F401 - where the blocks' modules take it from

PositiveInt = Annotated[int, Field(gt=0)]


class ConfigBlock(BaseModel):
    """A block of a scenario: unknown keys rejected, values not coerced, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

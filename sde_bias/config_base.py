"""The base of every block of a scenario file (a leaf module: pydantic only, no JAX).

Blocks are frozen pydantic models that reject unknown keys (``extra='forbid'``) and do not
coerce types (``strict``): ``dim: "4"`` is an error, not 4.
"""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]


class ConfigBlock(BaseModel):
    """A block of a scenario: unknown keys rejected, values not coerced, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


NO_VALUE: Any = object()
"""The value of a problem ``(key path, message, value)`` that has no value to show."""

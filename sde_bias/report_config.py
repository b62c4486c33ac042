"""The scenario's ``report:`` block: which section of ``sde-bias report`` shows the run (a leaf
module: pydantic only).

::

    report:
      section: completion   # hyperbola, relu, attention, completion, spectral, tv, design or generic

The sections are the paper's experiments (``sde_bias.report``: one module per section kind);
``design`` is the inverse-design verification of a ``design:`` block; ``generic`` (the default) is
a table of final values per runner.
"""

from typing import Literal, get_args

from .config_base import ConfigBlock

SectionName = Literal["hyperbola", "relu", "attention", "completion", "spectral", "tv", "design", "generic"]
SECTIONS: tuple[str, ...] = get_args(SectionName)


class ReportConfig(ConfigBlock):
    """``report:``: the report section of the scenario's runs."""

    section: SectionName = "generic"


__all__ = ["ReportConfig", "SECTIONS", "SectionName"]

"""``sde-bias report FILE... [--out DIR]``: the paper's experiments, reproduced and summarised.

Reads run files (HDF5, one per scenario and variant, with :func:`sde_bias.reader.read_run`),
groups them by scenario and gives each scenario the section its ``report:`` block names
(``sde_bias.report_config``; ``generic`` when it names none):

==============  ==========================================  ====================
section         experiment of arXiv:2601.06597              module
==============  ==========================================  ====================
``hyperbola``   0 (section 6 of the summary): hyperbolas,    ``hyperbola``
                the balance law
``relu``        1: shallow ReLU, per-unit balance            ``relu``
``attention``   2: attention, Q/K balance                    ``attention``
``completion``  3: matrix completion, spectral bias          ``completion``
``spectral``    4: sparse spectral recovery (inverse design) ``inverse_design``
``tv``          5: piecewise-constant signal (inverse        ``inverse_design``
                design)
``design``      a ``design:`` block's verification: each    ``design``
                mechanism's predicted interpolator against
                the simulated end points (docs/design.md)
``generic``     any other scenario: final values             ``generic``
==============  ==========================================  ====================

For every experiment it writes the paper's figure (its observable against iterations: seed
mean with a 10-90 % band, the theory as dashed lines) to ``DIR/figures/`` and one markdown
summary ``DIR/experiments.md``: the paper's claim, the measured outcome (mean +- standard
error over seeds), the SDE's agreement with discrete SGD and the gradient-descent-versus-SGD
difference. Numbers are taken at the paper's step counts when a run reaches them (else at its
last record, flagged). Shared statistics, tables and figure helpers live in
``sde_bias/report/_shared.py``; the assembler in ``assemble.py``.

The numbers are also returned by :func:`build_report` (a dict per experiment) for tests.
"""

from ..reader import read_run as load
from ._shared import (
    CLAIMS as CLAIMS,
    PAPER_STEPS as PAPER_STEPS,
    TITLES as TITLES,
    Section as Section,
    Stat as Stat,
    diff as diff,
    fmt as fmt,
    fmt_diff as fmt_diff,
    md_table as md_table,
)
from .assemble import SECTIONS as SECTIONS, build_report as build_report, main_report as main_report, section_of as section_of

__all__ = [
    "main_report", "build_report", "load", "section_of", "SECTIONS", "Stat", "Section", "diff", "fmt", "fmt_diff", "md_table",
    "CLAIMS", "PAPER_STEPS", "TITLES",
]

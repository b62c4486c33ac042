"""sde_bias: SGD as a stochastic differential equation, and the implicit bias it induces.

See THEORY.md for the formulas; each public object's docstring names the section it implements.
"""

__version__ = "0.1.0"

from .models import *  # noqa: F401,F403

# The front door: scenario files, runs, HDF5 output (docs/scenarios.md).
from .scenario import (  # noqa: E402,F401
    Scenario as Scenario,
    ScenarioError as ScenarioError,
    UserError as UserError,
    load_scenario as load_scenario,
)
from .run import run_scenario as run_scenario  # noqa: E402,F401

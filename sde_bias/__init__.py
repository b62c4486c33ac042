"""sde_bias: SGD as a stochastic differential equation, and the implicit bias it induces.

See THEORY.md for the formulas; each public object's docstring names the section it implements.
"""

__version__ = "0.1.0"

from .models import *  # noqa: F401,F403

"""sde_bias: SGD as a stochastic differential equation, and the implicit bias it induces.

The public API, by stage (README "Where the maths lives" maps every formula of docs/theory.md
to its module):

- models (``sde_bias.models``): parameterizations with their symmetry, invariants and
  balanced section;
- problems and noise: :class:`Problem`, :class:`Dataset`, :class:`TeacherStream`, the
  sampling schemes (:class:`FullBatch`, :class:`WithReplacement`, ...);
- runners: :class:`DiscreteStepper` (GD, SGD, SVAG), :class:`SGDSDE` /
  :class:`CustomSDE` with :class:`SDEStepper` (diffrax solvers), :func:`run_ensemble`;
- theory: ``sde_bias.symmetry``, ``sde_bias.quotient``, ``sde_bias.discovery``,
  ``sde_bias.fokker_planck``, ``sde_bias.compare`` (the last two import scipy, so they
  are not imported here); ``sde_bias.design``, the inverse-design calculator (it brings cvxpy;
  not imported here either);
- comparisons: the exact one-step balance identity (:func:`step_increment`,
  :func:`expected_increment`, :func:`balance_check`), verdicts (:class:`Comparison`,
  ``sde_bias.verdict.verdict``), step-size studies on shared Brownian paths (:func:`refined`,
  :func:`weak_study`, :func:`strong_study`, :func:`fit_order`, :func:`richardson`;
  ``sde_bias.converge_run`` for the ``sde-bias converge`` command);
- the front door: :func:`load_scenario`, :func:`run_scenario` (and the ``sde-bias`` CLI).
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:  # static tools see the eager API
    from ._api import *  # noqa: F401,F403

# The API lives in sde_bias/_api.py and is imported on first access of any public name
# (``sde_bias.Hadamard``, ``from sde_bias import run_scenario``, ``dir``, ``import *``), so
# importing a light submodule (``sde_bias.cli``, ``sde_bias.scenario``) does not import JAX.


def _load_api() -> None:
    import importlib

    api = importlib.import_module(f"{__name__}._api")
    g = globals()
    for name, value in vars(api).items():
        if not name.startswith("_"):
            g[name] = value  # as an eager import would (a function may share a submodule's name)


def __getattr__(name: str):
    if name.startswith("_") and name != "__all__":  # private and dunder probes stay cheap
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _load_api()
    g = globals()
    if name == "__all__":
        return sorted(k for k in g if not k.startswith("_"))
    try:
        return g[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    _load_api()
    return sorted(globals())

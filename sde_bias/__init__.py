"""sde_bias: SGD as a stochastic differential equation, and the implicit bias it induces.

The public API, by stage (README "Where the maths lives" maps every formula of THEORY.md
to its module):

- models (``sde_bias.models``): parameterizations with their symmetry, invariants and
  balanced section;
- problems and noise: :class:`Problem`, :class:`Dataset`, :class:`TeacherStream`, the
  sampling schemes (:class:`FullBatch`, :class:`WithReplacement`, ...);
- runners: :class:`DiscreteStepper` (GD, SGD, SVAG), :class:`SGDSDE` /
  :class:`CustomSDE` with :class:`SDEStepper` (diffrax solvers), :func:`run_ensemble`;
- theory: ``sde_bias.symmetry``, ``sde_bias.quotient``, ``sde_bias.discovery``,
  ``sde_bias.fokker_planck``, ``sde_bias.compare`` (the last two import scipy, so they
  are not imported here);
- comparisons: the exact one-step balance identity (:func:`step_increment`,
  :func:`expected_increment`, :func:`balance_check`), verdicts (:class:`Comparison`,
  :func:`verdict`), step-size studies on shared Brownian paths (:func:`refined`,
  :func:`weak_study`, :func:`strong_study`, :func:`fit_order`, :func:`richardson`;
  ``sde_bias.converge_run`` for the ``sde-bias converge`` command);
- the front door: :func:`load_scenario`, :func:`run_scenario` (and the ``sde-bias`` CLI).
"""

__version__ = "0.1.0"

from .models import *  # noqa: F401,F403

from .data import Dataset as Dataset, TeacherStream as TeacherStream  # noqa: E402
from .losses import L1Penalty as L1Penalty, SquaredLoss as SquaredLoss  # noqa: E402
from .noise import (  # noqa: E402
    AbstractScheme as AbstractScheme,
    Bernoulli as Bernoulli,
    FullBatch as FullBatch,
    LabelNoise as LabelNoise,
    Online as Online,
    WithoutReplacement as WithoutReplacement,
    WithReplacement as WithReplacement,
)
from .problem import Problem as Problem  # noqa: E402
from .sgd import DiscreteStepper as DiscreteStepper  # noqa: E402
from .sde import (  # noqa: E402
    AbstractSDE as AbstractSDE,
    CustomSDE as CustomSDE,
    SDEStepper as SDEStepper,
    SGDSDE as SGDSDE,
)
from .integrate import advance as advance, run_ensemble as run_ensemble  # noqa: E402
from .observables import make_observer as make_observer  # noqa: E402
from .quotient import (  # noqa: E402
    ito_projection as ito_projection,
    section_average as section_average,
    empirical_average as empirical_average,
)
from .symmetry import (  # noqa: E402
    gram_matrix as gram_matrix,
    log_det_gram as log_det_gram,
    noise_equilibrium as noise_equilibrium,
    balance_rate as balance_rate,
)
from .discovery import discover_symmetries as discover_symmetries  # noqa: E402

# Comparisons that separate discretisation error from disagreement (docs/comparisons.md).
from .balance import (  # noqa: E402
    balance_check as balance_check,
    expected_increment as expected_increment,
    sgd_step_increment as sgd_step_increment,
    step_increment as step_increment,
)
from .verdict import Comparison as Comparison, verdict as verdict  # noqa: E402
from .convergence import (  # noqa: E402
    fit_order as fit_order,
    richardson as richardson,
    strong_study as strong_study,
    weak_study as weak_study,
)
from .refine import KNOWN_ORDERS as KNOWN_ORDERS, RefinedStepper as RefinedStepper, refined as refined  # noqa: E402

# The front door: scenario files, runs, HDF5 output (docs/scenarios.md).
from .scenario import (  # noqa: E402,F401
    Scenario as Scenario,
    ScenarioError as ScenarioError,
    UserError as UserError,
    load_scenario as load_scenario,
)
from .run import run_scenario as run_scenario  # noqa: E402,F401

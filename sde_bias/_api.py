"""The public API of :mod:`sde_bias`, imported on first use of any of its names.

``sde_bias/__init__.py`` loads this module lazily (module ``__getattr__``) so that light
entry points (``sde-bias --help``, ``sde-bias list``) do not import JAX. Every public name
bound here is re-exported as ``sde_bias.<name>``; add new public names here.
"""

from .models import *  # noqa: F401,F403

from .data import Dataset as Dataset, TeacherStream as TeacherStream
from .losses import L1Penalty as L1Penalty, SquaredLoss as SquaredLoss
from .noise import (
    AbstractScheme as AbstractScheme,
    AbstractWeightedScheme as AbstractWeightedScheme,
    Bernoulli as Bernoulli,
    FullBatch as FullBatch,
    LabelNoise as LabelNoise,
    Online as Online,
    WithoutReplacement as WithoutReplacement,
    WithReplacement as WithReplacement,
)
from .problem import Problem as Problem
from .sgd import DiscreteStepper as DiscreteStepper
from .sde import (
    AbstractSDE as AbstractSDE,
    CustomSDE as CustomSDE,
    SDEStepper as SDEStepper,
    SGDSDE as SGDSDE,
)
from .contracts import AbstractRunner as AbstractRunner, AbstractStepper as AbstractStepper
from .integrate import advance as advance, run_ensemble as run_ensemble
from .runners import AdaptiveRunner as AdaptiveRunner, FixedStepRunner as FixedStepRunner
from .design_models import (
    ScaledGroupHadamard as ScaledGroupHadamard,
    SynthesisHadamard as SynthesisHadamard,
    synthesis_matrix as synthesis_matrix,
)
from .design_run import (
    design_report_section as design_report_section,
    design_stage as design_stage,
    write_design as write_design,
)
from .observables import make_observer as make_observer
from .quotient import (
    ito_projection as ito_projection,
    section_average as section_average,
    empirical_average as empirical_average,
)
from .symmetry import (
    gram_matrix as gram_matrix,
    log_det_gram as log_det_gram,
    noise_equilibrium as noise_equilibrium,
    balance_rate as balance_rate,
)
from .discovery import discover_symmetries as discover_symmetries

# Comparisons that separate discretisation error from disagreement (docs/comparisons.md).
from .balance import (
    balance_check as balance_check,
    expected_increment as expected_increment,
    sgd_step_increment as sgd_step_increment,
    step_increment as step_increment,
)
from .verdict import Comparison as Comparison  # the rule itself: sde_bias.verdict.verdict
from .convergence import (
    fit_order as fit_order,
    richardson as richardson,
    strong_study as strong_study,
    weak_study as weak_study,
)
from .refine import KNOWN_ORDERS as KNOWN_ORDERS, RefinedStepper as RefinedStepper, refined as refined

# The front door: scenario files, runs, HDF5 output (docs/scenarios.md).
from .scenario import (  # noqa: F401
    Scenario as Scenario,
    ScenarioError as ScenarioError,
    UserError as UserError,
    load_scenario as load_scenario,
)
from .run import run_scenario as run_scenario  # noqa: F401
from .sweep_store import load_sweep as load_sweep  # noqa: F401  (sweep files -> xarray)
from .reader import (  # noqa: F401
    RunData as RunData,
    RunnerRecords as RunnerRecords,
    read_run as read_run,
)
from .report_config import ReportConfig as ReportConfig  # noqa: F401

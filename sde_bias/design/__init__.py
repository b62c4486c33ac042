"""Inverse design: the bias a parameterization induces, and a parameterization for a chosen bias.

docs/theory.md section 6. A bias has several sources; this package computes each separately:

- gradient flow from an initialisation (section 6.1): mirror potentials ``Phi`` of the Hadamard
  family (:class:`HyperbolicEntropy` with :func:`init_shape_potential` / :func:`woodworth_potential`;
  depth ``D``: :class:`WoodworthDepthPotential`, :class:`OneSidedDepthPotential`), whose minimiser on
  the interpolating set is the end point (Woodworth et al. COLT 2020; Azulay et al. ICML 2021;
  Li, Wang, Lee, Arora NeurIPS 2022);
- label-noise SGD at long times (section 6.2): the implicit regulariser ``R = tr grad^2 L``
  (:func:`label_noise_regulariser`), its slow time and flow (:func:`slow_time`,
  :func:`slow_flow_field`; :func:`vanishing_rates`: how fast what the prediction zeroes decays),
  its fibre minimum numerically (:func:`fibre_minimum`) and in closed form
  (:func:`hadamard_fibre_penalty`, :func:`depth_fibre_penalty`, :func:`group_fibre_penalty`,
  :func:`factorization_fibre_penalty`) (Blanc et al. 2020; Damian et al. 2021; Li, Wang, Arora 2022);
- predicted interpolators with optimality residuals: :func:`solve_convex` (cvxpy),
  :func:`solve_dual` (JAX dual Newton), :func:`label_noise_interpolator_theta` (augmented
  Lagrangian in parameter space);
- the paper's quotient potential (section 6.3): ``V = 1/2 log det G`` on the balanced section at
  each predicted interpolator (:func:`quotient_potential_value`, :func:`model_quotient_potential`)
  and a local minimiser of it (:func:`quotient_interpolator`, :func:`design_quotient`);
- designs from targets (section 6.4): :func:`design_weighted_l1`, :func:`design_transform_l1`,
  :func:`design_group_sparsity`, :func:`design_low_rank`;
- the scenario side lives above this library: designed models in :mod:`sde_bias.design_models`,
  the run's verification stage and report section in :mod:`sde_bias.design_run`, and
  ``sde-bias design`` in :mod:`sde_bias.design_cli` (all re-exported as ``sde_bias.<name>``).

This subpackage imports cvxpy lazily (inside the solvers) and is not imported by ``import sde_bias``.
"""

from ._types import AbstractPenalty as AbstractPenalty, Interpolator as Interpolator
from ._mirror import (
    HyperbolicEntropy as HyperbolicEntropy,
    init_shape_potential as init_shape_potential,
    woodworth_potential as woodworth_potential,
    woodworth_q as woodworth_q,
)
from ._depth import (
    OneSidedDepthPotential as OneSidedDepthPotential,
    WoodworthDepthPotential as WoodworthDepthPotential,
)
from ._penalties import (
    GroupNorm as GroupNorm,
    PowerPenalty as PowerPenalty,
    WeightedL1 as WeightedL1,
    WeightedNuclear as WeightedNuclear,
)
from ._label_noise import (
    FibreMinimum as FibreMinimum,
    fibre_minimum as fibre_minimum,
    hessian_trace_constant as hessian_trace_constant,
    label_noise_regulariser as label_noise_regulariser,
    slow_time as slow_time,
)
from ._fibre_forms import (
    depth_fibre_penalty as depth_fibre_penalty,
    factorization_fibre_penalty as factorization_fibre_penalty,
    feature_second_moments as feature_second_moments,
    group_fibre_penalty as group_fibre_penalty,
    hadamard_fibre_penalty as hadamard_fibre_penalty,
    kept_signs as kept_signs,
    observation_matrix as observation_matrix,
)
from ._vanishing import vanishing_rates as vanishing_rates
from ._slow_flow import one_point_slow_flow as one_point_slow_flow, slow_flow_field as slow_flow_field
from ._convex import (
    predicted_interpolator as predicted_interpolator,
    solve_convex as solve_convex,
    solve_dual as solve_dual,
)
from ._theta_solve import label_noise_interpolator_theta as label_noise_interpolator_theta, solve_theta as solve_theta
from ._quotient import (
    QuotientValue as QuotientValue,
    design_quotient as design_quotient,
    model_quotient_potential as model_quotient_potential,
    quotient_coefficient as quotient_coefficient,
    quotient_interpolator as quotient_interpolator,
    quotient_potential_value as quotient_potential_value,
)
from ._targets import (
    Design as Design,
    DesignWarning as DesignWarning,
    design_group_sparsity as design_group_sparsity,
    design_low_rank as design_low_rank,
    design_transform_l1 as design_transform_l1,
    design_weighted_l1 as design_weighted_l1,
)

"""The model catalogue: redundant parameterizations with their symmetries.

Every model implements :class:`AbstractModel`; a scenario names it by its registered type
(``sde_bias.model_registry``) or, for a model of one's own, by ``module:Class``.
"""

from ._attention import Attention as Attention, unbalance_columns as unbalance_columns
from ._base import (
    AbstractModel as AbstractModel,
    generators_by_jvp as generators_by_jvp,
    predict_each as predict_each,
)
from ._deep_linear import DeepLinear as DeepLinear, extra_symmetry_dim as extra_symmetry_dim
from ._factorization import MatrixFactorization as MatrixFactorization
from ._features import (
    CosineFeatures as CosineFeatures,
    IdentityFeatures as IdentityFeatures,
    make_features as make_features,
)
from ._group_hadamard import GroupHadamard as GroupHadamard
from ._hadamard import (
    DeepHadamard as DeepHadamard,
    Hadamard as Hadamard,
    ScalarProduct as ScalarProduct,
)
from ._linear import Linear as Linear
from ._predictor import Predictor as Predictor
from ._relu import TwoLayerReLU as TwoLayerReLU, unbalance_units as unbalance_units
from ._signal import CumsumHadamard as CumsumHadamard

"""The model catalogue: redundant parameterizations with their symmetries."""

from ._attention import Attention as Attention, unbalance_columns as unbalance_columns
from ._base import AbstractModel as AbstractModel
from ._factorization import MatrixFactorization as MatrixFactorization
from ._features import (
    CosineFeatures as CosineFeatures,
    IdentityFeatures as IdentityFeatures,
    make_features as make_features,
)
from ._hadamard import (
    DeepHadamard as DeepHadamard,
    Hadamard as Hadamard,
    ScalarProduct as ScalarProduct,
)
from ._linear import Linear as Linear
from ._relu import TwoLayerReLU as TwoLayerReLU, unbalance_units as unbalance_units
from ._signal import CumsumHadamard as CumsumHadamard

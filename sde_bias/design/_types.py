"""The two shared types of ``sde_bias.design``: a convex penalty and a predicted interpolator.

A *penalty* ``R(z)`` is anything the design calculator minimises over the interpolating set
``{z : M z = y}`` (``M = X S``: the data matrix times the parameterization's synthesis, docs/theory.md
section 6.1): a gradient-flow mirror potential (section 6.1) or a fibre-minimised label-noise
regulariser ``R*`` (section 6.2). Every penalty can evaluate itself and measure how far a candidate
``z`` with multiplier ``nu`` is from the KKT conditions

    M z = y,    M^T nu in dR(z),

through its :meth:`AbstractPenalty.kkt_residual` ``(z, g = M^T nu)``. Penalties that ``cvxpy`` can
express return their expression (:meth:`AbstractPenalty.cvxpy`); smooth strictly convex ones give
the gradient of their convex conjugate (:meth:`AbstractPenalty.dual_map`), which a JAX dual Newton
solve uses.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
from jaxtyping import Array, Float


class AbstractPenalty(eqx.Module):
    """A convex function of the coefficients ``z`` (flat, length ``d``).

    Subclasses implement :meth:`value` and :meth:`kkt_residual`; optionally :meth:`cvxpy`
    (``dcp = True``) and :meth:`dual_map` / :meth:`conjugate` (``smooth = True``).
    """

    @property
    def dcp(self) -> bool:
        """Whether :meth:`cvxpy` is implemented."""
        return False

    @property
    def smooth(self) -> bool:
        """Whether :meth:`dual_map` and :meth:`conjugate` are implemented (``R`` smooth and
        strictly convex on its domain, so ``z = grad R*(g)`` is unique)."""
        return False

    def value(self, z: Float[Array, " d"]) -> Float[Array, ""]:
        raise NotImplementedError

    def kkt_residual(self, z: Float[Array, " d"], g: Float[Array, " d"]) -> Float[Array, ""]:
        """Distance of ``g`` from the subdifferential at ``z``, as a natural residual: for a
        smooth penalty ``max_j |z_j - (grad R*(g))_j|``, for a nonsmooth one
        ``max |z - prox_R(z + g)|``; zero exactly at ``g in dR(z)``."""
        raise NotImplementedError

    def cvxpy(self, z) -> tuple[Any, list]:
        """``(expression, constraints)`` for a cvxpy variable ``z``."""
        raise NotImplementedError(f"{type(self).__name__} has no cvxpy form")

    def dual_map(self, g: Float[Array, " d"]) -> Float[Array, " d"]:
        """``grad R*(g)``: the unique ``z`` with ``grad R(z) = g``."""
        raise NotImplementedError(f"{type(self).__name__} is not smooth")

    def conjugate(self, g: Float[Array, " d"]) -> Float[Array, ""]:
        """``R*(g) = sup_z (g . z - R(z))`` (``+inf`` outside its domain)."""
        raise NotImplementedError(f"{type(self).__name__} is not smooth")


class Interpolator(NamedTuple):
    """A predicted interpolator ``beta = S z``, ``z = argmin R(z)`` s.t. ``X S z = y``.

    - ``beta``: the predictor's coefficients; ``z``: the parameterization's coordinates
      (``z = beta`` without a synthesis);
    - ``nu``: the multiplier, in the convention ``(X S)^T nu in dR(z)``;
    - ``primal_residual``: ``max_i |(X S z - y)_i|``;
    - ``dual_residual``: :meth:`AbstractPenalty.kkt_residual` at ``(z, (X S)^T nu)``;
    - ``method``: which solver produced it; ``status``: the solver's word.
    """

    beta: Array
    z: Array
    nu: Array
    primal_residual: float
    dual_residual: float
    method: str
    status: str

    @property
    def residual(self) -> float:
        """The larger of the two optimality residuals."""
        return max(self.primal_residual, self.dual_residual)

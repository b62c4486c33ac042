"""Per-sample losses ``l(f, y)`` and deterministic penalties.

Two squared-loss conventions are needed: docs/theory.md writes ``l = 1/2 |f - y|^2``
(``reduction="half_sum"``), the paper's PyTorch code uses ``MSELoss``, the mean over
output entries of ``(f - y)^2`` (``reduction="mean"``). Closed forms depend on which.
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


class SquaredLoss(eqx.Module):
    """``l(f, y) = scale * 1/2 sum_k (f_k - y_k)^2`` (``half_sum``) or
    ``scale * mean_k (f_k - y_k)^2`` (``mean``, PyTorch's ``MSELoss`` per sample)."""

    reduction: str = eqx.field(static=True, default="half_sum")
    scale: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if self.reduction not in ("half_sum", "mean"):
            raise ValueError(f"reduction must be 'half_sum' or 'mean', got {self.reduction!r}")

    def __call__(self, f: Float[Array, "..."], y: Float[Array, "..."]) -> Float[Array, ""]:
        r = (jnp.asarray(f) - jnp.asarray(y)) ** 2
        if self.reduction == "half_sum":
            return self.scale * 0.5 * jnp.sum(r)
        return self.scale * jnp.mean(r)


class NoPenalty(eqx.Module):
    """The zero penalty."""

    def __call__(self, q: Float[Array, " d"]) -> Float[Array, ""]:
        return jnp.zeros((), q.dtype)


class L1Penalty(eqx.Module):
    """``strength * |q|_1`` on the invariants ``q = pi(theta)`` (the predictor's own
    weights), the explicit regulariser of the paper's experiment 4."""

    strength: float  # a leaf, not static: a sweep traces it (sde_bias/sweep_run.py)

    def __call__(self, q: Float[Array, " d"]) -> Float[Array, ""]:
        return self.strength * jnp.sum(jnp.abs(q))

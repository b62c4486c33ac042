"""Models for the design tests: a group Hadamard over groups of ANY sizes (the catalogue's
``sde_bias.models.GroupHadamard`` has equal, contiguous groups), ``beta_g = s_g v_g``, one
scalar ``s_g`` per group; and a matrix factorization whose GL(r) orbits are charted without
a matrix exponential."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from sde_bias.models import AbstractModel, MatrixFactorization, generators_by_jvp, predict_each


class GroupHadamard(AbstractModel):
    """``f(s, v; x) = x . beta``, ``beta_j = s_{g(j)} v_j``; group ``(R_{>0})^G`` acting as
    ``(e^{a_g} s_g, e^{-a_g} v_g)``."""

    group_of: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, groups):
        owner = np.empty(sum(len(g) for g in groups), int)
        for k, g in enumerate(groups):
            owner[list(g)] = k
        self.group_of = tuple(int(i) for i in owner)

    @property
    def num_groups(self) -> int:
        return max(self.group_of) + 1

    @property
    def block_shapes(self):
        return {"s": (self.num_groups,), "v": (len(self.group_of),)}

    def weights(self, theta):
        b = self.unflatten(theta)
        return b["s"][jnp.asarray(self.group_of)] * b["v"]

    def predict(self, theta, x):
        return jnp.asarray(x) @ self.weights(theta)

    @property
    def lie_algebra_dim(self) -> int:
        return self.num_groups

    def action(self, theta, a):
        b = self.unflatten(theta)
        return self.flatten({"s": b["s"] * jnp.exp(a), "v": b["v"] * jnp.exp(-a)[jnp.asarray(self.group_of)]})

    def invariants(self, theta):
        return self.weights(theta)

    def section(self, q):
        idx = jnp.asarray(self.group_of)
        norms = jnp.sqrt(jnp.zeros(self.num_groups).at[idx].add(q * q))
        s = jnp.sqrt(norms)
        return self.flatten({"s": s, "v": q / s[idx]})

    # the rest of the model interface (sde_bias.models.AbstractModel)
    @property
    def input_shape(self):
        return (len(self.group_of),)

    @property
    def input_bounds(self):
        return None

    @property
    def output_shape(self):
        return ()

    @property
    def data_kinds(self):
        return frozenset({"fixed", "teacher_student"})

    def predict_batch(self, theta, xs):
        return predict_each(self, theta, xs)

    def generators(self, theta):
        return generators_by_jvp(self, theta)

    def balance(self, theta):
        b = self.unflatten(theta)
        idx = jnp.asarray(self.group_of)
        return {"imbalance": b["s"] ** 2 - jnp.zeros(self.num_groups).at[idx].add(b["v"] ** 2)}

    @property
    def unbalance_length(self) -> int:
        return self.num_groups

    def unbalance(self, theta, log_scales):
        return self.action(theta, log_scales)


class ChartFactorization(MatrixFactorization):
    """``sde_bias.MatrixFactorization`` with the GL(r) orbit charted by ``A = I + S`` instead of
    ``expm(S)``: the same orbits (near the identity component's start), but no matrix exponential,
    whose second derivatives take ~15 s to compile."""

    def action(self, theta, s):
        b = self.unflatten(theta)
        A = jnp.eye(self.rank, dtype=theta.dtype) + s.reshape(self.rank, self.rank)
        return self.flatten({"P": b["P"] @ A, "Q": jnp.linalg.solve(A, b["Q"])})

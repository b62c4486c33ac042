"""Observables recorded along a run, by name.

Each observable maps ``(problem, theta, data)`` to an array; :func:`make_observer` turns a
list of names into the ``observe(theta, data) -> dict`` used by the ensemble loop.
Model-specific balance quantities come from ``model.balance(theta)`` and are stored as
``balance/<name>``.
"""

from typing import Any, Callable

import equinox as eqx
import jax.numpy as jnp



def loss(problem, theta, data):
    """Training loss ``L(theta)`` (on the seed's data; the reference set when online)."""
    return problem.empirical_loss(theta, data)


def test_loss(problem, theta, data):
    """Mean per-sample loss on the held-out test set."""
    return jnp.mean(problem.per_sample_losses(theta, problem.test))


def invariants(problem, theta, data):
    """``q = pi(theta)``."""
    return problem.model.invariants(theta)


def distance_to_target(problem, theta, data):
    """``|pi(theta) - q*|``."""
    return jnp.linalg.norm(problem.model.invariants(theta) - problem.target)


def singular_values(problem, theta, data):
    """Singular values of the model's predictor matrix (``P Q``, ``W_Q W_K^T``)."""
    return jnp.linalg.svd(problem.model.matrix(theta), compute_uv=False)


def total_variation(problem, theta, data):
    """``sum_j |q_j - q_{j-1}|`` of the invariants (the signal, for cumsum models)."""
    q = problem.model.invariants(theta)
    return jnp.sum(jnp.abs(jnp.diff(q)))


def params(problem, theta, data):
    """The raw parameter vector."""
    return theta


def log_det_gram(problem, theta, data):
    """``log det G`` of the symmetry generators at ``theta`` (docs/theory.md section 3.4)."""
    from .symmetry import log_det_gram as _ldg

    return _ldg(problem.model, theta).log_det


REGISTRY: dict[str, Callable] = {
    "loss": loss,
    "test_loss": test_loss,
    "invariants": invariants,
    "distance_to_target": distance_to_target,
    "singular_values": singular_values,
    "total_variation": total_variation,
    "params": params,
    "log_det_gram": log_det_gram,
}


def available(problem) -> list[str]:
    """Observable names that make sense for this problem."""
    names = ["loss", "invariants", "params", "balance"]
    if problem.test is not None:
        names.append("test_loss")
    if problem.target is not None:
        names.append("distance_to_target")
    if hasattr(problem.model, "matrix"):
        names.append("singular_values")
    if problem.model.lie_algebra_dim > 0:
        names.append("log_det_gram")
    names.append("total_variation")
    return names


class Observer(eqx.Module):
    """``observe(theta, data) -> {name: value}`` as an equinox Module: the problem's arrays
    are its leaves and the names are static, so compiled chunks are reused by every run
    of the same shapes in a process (a fresh closure per run would recompile them)."""

    problem: Any
    names: tuple[str, ...] = eqx.field(static=True)

    def __call__(self, theta, data) -> dict:
        out = {}
        for n in self.names:
            if n == "balance":
                for k, v in self.problem.model.balance(theta).items():
                    out[f"balance/{k}"] = v
            else:
                out[n] = REGISTRY[n](self.problem, theta, data)
        return out


def make_observer(problem, names: list[str]) -> Observer:
    """The :class:`Observer` of the given observable names (unknown names are an error)."""
    unknown = [n for n in names if n != "balance" and n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown observables {unknown}; available: {sorted(REGISTRY) + ['balance']}")
    return Observer(problem, tuple(names))

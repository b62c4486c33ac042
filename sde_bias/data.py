"""Datasets, fresh-sample streams, and the generators of the paper's experiments.

A :class:`Dataset` is a fixed training set ``(x_i, y_i)``, ``i = 1..n``, with a leading
sample axis. A :class:`TeacherStream` draws fresh samples ``x ~ N(0, I)``,
``y = teacher(x) + N(0, noise_std^2)`` (online SGD). The generator functions build
the data of arXiv:2601.06597's experiments with its settings
(docs/paper_experiments.md).
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .models import AbstractModel


class Dataset(eqx.Module):
    """A fixed dataset: inputs ``x`` [n, ...] and targets ``y`` [n, ...]."""

    x: Any
    y: Array

    @property
    def size(self) -> int:
        return int(self.y.shape[0])


class TeacherStream(eqx.Module):
    """Fresh samples ``x ~ N(0, I)`` of shape ``input_shape``, ``y = teacher(x) + eps``,
    ``eps ~ N(0, noise_std^2)`` per output entry."""

    teacher: AbstractModel
    teacher_theta: Float[Array, " p"]
    input_shape: tuple[int, ...] = eqx.field(static=True)
    noise_std: float = eqx.field(static=True, default=0.0)

    def sample(self, key: PRNGKeyArray, num: int, dtype=None) -> Dataset:
        dtype = dtype or self.teacher_theta.dtype
        kx, ke = jax.random.split(key)
        x = jax.random.normal(kx, (num, *self.input_shape), dtype)
        f = jax.vmap(lambda xi: self.teacher.predict(self.teacher_theta, xi))(x)
        y = f + self.noise_std * jax.random.normal(ke, f.shape, dtype)
        return Dataset(x, y)


# ---------------------------------------------------------------------------
# Generators of the paper's experiments (docs/paper_experiments.md)
# ---------------------------------------------------------------------------


def low_rank_target(key, size: int = 20, singular_values=(15.0, 5.0), dtype=jnp.float64):
    """``M* = U diag(s) V^T`` with ``U, V`` from the QR of Gaussian matrices (experiment 3)."""
    ku, kv = jax.random.split(key)
    r = len(singular_values)
    u, _ = jnp.linalg.qr(jax.random.normal(ku, (size, r), dtype))
    v, _ = jnp.linalg.qr(jax.random.normal(kv, (size, r), dtype))
    return (u * jnp.asarray(singular_values, dtype)) @ v.T


def completion_dataset(key, target: Array, observe_prob: float = 0.2) -> tuple[Dataset, Array]:
    """Observed entries of ``target``, each kept with probability ``observe_prob``.

    Returns the dataset (``x`` = integer index pairs [n, 2], ``y`` = entries [n]) and the
    boolean mask. The mask is drawn once (numpy, from the key) since its size is data
    dependent.
    """
    mask = np.asarray(jax.random.bernoulli(key, observe_prob, target.shape))
    idx = np.argwhere(mask).astype(np.int32)
    y = np.asarray(target)[mask]
    return Dataset(jnp.asarray(idx), jnp.asarray(y)), jnp.asarray(mask)


def sparse_cosine_signal(
    key,
    dim: int = 64,
    nnz: int = 3,
    n_train: int = 32,
    n_test: int = 10_000,
    noise_std: float = 0.1,
    dtype=jnp.float64,
):
    """Experiment 4: ``y(t) = sum_k w_k cos(2 pi k t)``, ``t ~ U(0, 1)``; ``nnz`` nonzero
    ``w_k`` at random ``k`` in ``1..dim-1``, magnitudes ``U(1, 2)``, random signs.

    Returns (train Dataset with noisy labels, clean test Dataset, true weights)."""
    ks, km, kg, kt, kn, kte = jax.random.split(key, 6)
    support = jax.random.choice(ks, jnp.arange(1, dim), (nnz,), replace=False)
    mags = jax.random.uniform(km, (nnz,), dtype, 1.0, 2.0)
    signs = jnp.where(jax.random.bernoulli(kg, 0.5, (nnz,)), 1.0, -1.0).astype(dtype)
    w = jnp.zeros((dim,), dtype).at[support].set(mags * signs)

    def signal(t):
        return jnp.cos(2 * jnp.pi * jnp.arange(dim, dtype=dtype)[None, :] * t[:, None]) @ w

    t_train = jax.random.uniform(kt, (n_train,), dtype)
    y_train = signal(t_train) + noise_std * jax.random.normal(kn, (n_train,), dtype)
    t_test = jax.random.uniform(kte, (n_test,), dtype)
    return Dataset(t_train, y_train), Dataset(t_test, signal(t_test)), w


def step_signal(dtype=jnp.float64) -> Array:
    """Experiment 5's piecewise-constant signal of length 200."""
    parts = [(1.0, 50), (-1.5, 70), (0.5, 40), (2.0, 40)]
    return jnp.concatenate([jnp.full((n,), v, dtype) for v, n in parts])


def compressed_measurements(key, signal: Array, num: int = 60, noise_std: float = 0.1):
    """``y = A s + N(0, noise_std^2)`` with ``A_ij ~ N(0, 1/num)`` (experiment 5).

    Returns (Dataset with x = rows of A, y = measurements), A."""
    ka, kn = jax.random.split(key)
    a = jax.random.normal(ka, (num, signal.shape[0]), signal.dtype) / jnp.sqrt(num)
    y = a @ signal + noise_std * jax.random.normal(kn, (num,), signal.dtype)
    return Dataset(a, y), a

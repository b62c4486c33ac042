"""Sampling schemes: the stochastic gradient of discrete SGD and the SDE it induces.

Each scheme gives, for the same problem and state (docs/theory.md section 1.1):

- :meth:`draw` / :meth:`stochastic_gradient`: the exact random update of discrete SGD
  (indices, masks or fresh samples drawn for a whole block of steps at once);
- :meth:`mean_gradient`: ``E[g_hat]``; the SDE drift is ``mu = -E[g_hat]``;
- :meth:`diffusion_mv`: ``sigma @ xi`` for a noise vector ``xi`` of length
  :meth:`noise_dim`, with ``sigma sigma^T = Cov[g_hat]``. ``sigma`` is the p x m matrix of
  scaled per-sample gradient columns; it is applied matrix-free as ONE gradient of a
  weighted loss, ``sigma xi = grad_theta sum_i (S xi)_i l_i(theta)``, and never formed
  or square-rooted as p x p;
- :meth:`diffusion_matrix`: the dense ``sigma`` (for theory and tests).

Moments (docs/theory.md section 1.2), with ``Sigma_1 = (1/n) sum_i (g_i - gbar)(g_i - gbar)^T``:

============================  ==============  ===========================================
scheme                        ``E[g_hat]``     ``Cov[g_hat]``
============================  ==============  ===========================================
full batch                    ``grad L``       0
with replacement, batch B     ``grad L``       ``Sigma_1 / B``
without replacement, batch B  ``grad L``       ``Sigma_1 (n - B) / (B (n - 1))``
Bernoulli(rho), normaliser N  ``(rho n / N) grad L``  ``rho (1 - rho) / N^2 sum_i g_i g_i^T``
online, batch B               ``grad L_pop``   ``Cov_x[g] / B`` from M reference samples
label noise delta             unchanged        ``+ delta^2 E[sum_b w_b^2 J_b J_b^T]``
============================  ==============  ===========================================

where ``J_b = grad_theta d l_b / d y`` (``-grad f_b`` for ``half_sum`` squared loss), so
label noise adds ``delta^2 / B mean_i grad f_i grad f_i^T`` to batch schemes.
"""

import abc
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .data import Dataset


def _gather(data: Dataset, idx) -> Dataset:
    return Dataset(jax.tree_util.tree_map(lambda a: a[idx], data.x), data.y[idx])


SCHEME_FINAL_MEMBERS = ("diffusion_matrix", "covariance")
"""The concrete members of :class:`AbstractScheme`: derived from :meth:`~AbstractScheme.diffusion_mv`,
never overridden."""


class AbstractScheme(eqx.Module):
    """A sampling scheme: the contract the engine and the SDE rely on (see the module
    docstring for the maths). Concrete schemes are final."""

    @abc.abstractmethod
    def draw(self, key: PRNGKeyArray, num_steps: int, problem, data: Dataset) -> Any:
        """Randomness of ``num_steps`` consecutive SGD steps (leading axis ``num_steps``)."""

    @abc.abstractmethod
    def stochastic_gradient(self, problem, theta, data: Dataset, draw) -> Float[Array, " p"]:
        """``g_hat`` for one step, given that step's slice of :meth:`draw`."""

    @abc.abstractmethod
    def mean_gradient(self, problem, theta, data: Dataset) -> Float[Array, " p"]:
        """``E[g_hat]``; the SDE drift is ``-E[g_hat]``."""

    @abc.abstractmethod
    def noise_dim(self, problem, data: Dataset) -> int:
        """``m``, the number of diffusion columns (length of ``xi`` in :meth:`diffusion_mv`)."""

    @abc.abstractmethod
    def diffusion_mv(self, problem, theta, data: Dataset, xi: Float[Array, " m"]) -> Float[Array, " p"]:
        """``sigma xi`` with ``sigma sigma^T = Cov[g_hat]``, matrix-free."""

    @abc.abstractmethod
    def label_noise_weight(self, n: int) -> float:
        """``kappa`` with ``E[sum_b w_b^2 1{b -> i}] = kappa`` for every sample ``i``."""

    # ------------------------------------------------------------------ final: dense forms
    def diffusion_matrix(self, problem, theta, data: Dataset) -> Float[Array, "p m"]:
        """Dense ``sigma`` [p, m]: the Jacobian of the linear map :meth:`diffusion_mv`."""
        m = self.noise_dim(problem, data)
        xi0 = jnp.zeros((m,), theta.dtype)
        return jax.jacfwd(lambda xi: self.diffusion_mv(problem, theta, data, xi))(xi0)

    def covariance(self, problem, theta, data: Dataset) -> Float[Array, "p p"]:
        """``Cov[g_hat] = sigma sigma^T`` (dense; for tests and small models)."""
        s = self.diffusion_matrix(problem, theta, data)
        return s @ s.T


class AbstractWeightedScheme(AbstractScheme):
    """A scheme whose stochastic gradient is ``g_hat = grad sum_i w_i l_i`` with random
    sample weights ``w`` (a batch of the data and its weights per step, :meth:`batch`).

    Its moments follow from those of ``w``: ``E[g_hat] = grad sum_i E[w_i] l_i`` and
    ``sigma xi = grad sum_i (S xi)_i l_i`` with ``S S^T = Cov[w]`` (one backward pass)."""

    @abc.abstractmethod
    def sample_weights(self, n: int, dtype) -> Float[Array, " n"]:
        """``E[w]``: the expected weight of each sample in ``g_hat = sum_i w_i g_i``."""

    @abc.abstractmethod
    def weight_noise(self, xi: Float[Array, " m"], n: int) -> Float[Array, " n"]:
        """``S xi`` with ``S S^T = Cov[w]``, the covariance of the sample weights."""

    @abc.abstractmethod
    def weight_noise_dim(self, n: int) -> int:
        """Length of ``xi`` in :meth:`weight_noise`."""

    @abc.abstractmethod
    def batch(self, data: Dataset, draw) -> tuple[Dataset, Float[Array, " b"]]:
        """One step's samples and their weights, given that step's slice of :meth:`draw`."""

    def mean_gradient(self, problem, theta, data: Dataset) -> Float[Array, " p"]:
        """``E[g_hat] = grad sum_i E[w_i] l_i``."""
        w = self.sample_weights(data.size, theta.dtype)
        return jax.grad(problem.weighted_loss)(theta, data, w)

    def noise_dim(self, problem, data: Dataset) -> int:
        return self.weight_noise_dim(data.size)

    def diffusion_mv(self, problem, theta, data: Dataset, xi: Float[Array, " m"]) -> Float[Array, " p"]:
        """``sigma xi = grad_theta sum_i (S xi)_i l_i(theta)`` (one backward pass)."""
        if self.weight_noise_dim(data.size) == 0:
            return jnp.zeros_like(theta)
        w = self.weight_noise(xi, data.size)
        return jax.grad(problem.weighted_loss)(theta, data, w)


def _batch_gradient(scheme: AbstractWeightedScheme, problem, theta, data: Dataset, draw) -> Float[Array, " p"]:
    """``grad sum_b w_b l_b`` over one step's batch (:meth:`AbstractWeightedScheme.batch`)."""
    b, w = scheme.batch(data, draw)
    return jax.grad(problem.weighted_loss)(theta, b, w)


class _CentredBatch(AbstractWeightedScheme):
    """Schemes whose weights have ``E[w] = 1/n`` and ``Cov[w] = c^2 n (I - 11^T/n) / n``,
    so that ``Cov[g_hat] = factor * Sigma_1`` with ``c^2 = factor / n``."""

    @abc.abstractmethod
    def factor(self, n: int) -> float: ...

    def sample_weights(self, n, dtype):
        return jnp.full((n,), 1.0 / n, dtype)

    def weight_noise(self, xi, n):
        c = math.sqrt(self.factor(n) / n)
        return c * (xi - jnp.mean(xi))

    def weight_noise_dim(self, n):
        return n if self.factor(n) > 0 else 0


class FullBatch(_CentredBatch):
    """Full-batch gradient descent: ``g_hat = grad L``, no noise."""

    def factor(self, n):
        return 0.0

    def label_noise_weight(self, n):
        return 1.0 / n**2

    def draw(self, key, num_steps, problem, data):
        return jnp.zeros((num_steps,), jnp.int8)  # no randomness; keeps scan shapes uniform

    def stochastic_gradient(self, problem, theta, data, draw):
        return self.mean_gradient(problem, theta, data)

    def batch(self, data, draw):
        return data, self.sample_weights(data.size, data.y.dtype)


class _Minibatch(_CentredBatch):
    """A batch of ``batch_size`` samples per step, each of weight ``1 / batch_size``."""

    batch_size: int = eqx.field(static=True)

    def label_noise_weight(self, n):
        return 1.0 / (self.batch_size * n)

    def stochastic_gradient(self, problem, theta, data, draw):
        return _batch_gradient(self, problem, theta, data, draw)


class WithReplacement(_Minibatch):
    """Minibatch of ``batch_size`` indices drawn uniformly with replacement:
    ``Cov[g_hat] = Sigma_1 / B``."""

    def factor(self, n):
        return 1.0 / self.batch_size

    def draw(self, key, num_steps, problem, data):
        return jax.random.randint(key, (num_steps, self.batch_size), 0, data.size)

    def batch(self, data, draw):
        return _gather(data, draw), jnp.full((self.batch_size,), 1.0 / self.batch_size, data.y.dtype)


class WithoutReplacement(_Minibatch):
    """Minibatch of ``batch_size`` distinct indices:
    ``Cov[g_hat] = Sigma_1 (n - B) / (B (n - 1))``."""

    def factor(self, n):
        b = self.batch_size
        return (n - b) / (b * (n - 1)) if n > 1 else 0.0

    def draw(self, key, num_steps, problem, data):
        u = jax.random.uniform(key, (num_steps, data.size))
        return jnp.argsort(u, axis=-1)[:, : self.batch_size]

    def batch(self, data, draw):
        return _gather(data, draw), jnp.full((self.batch_size,), 1.0 / self.batch_size, data.y.dtype)


class Bernoulli(AbstractWeightedScheme):
    """Every sample kept independently with probability ``rho``; ``g_hat = grad sum_i
    m_i l_i / N`` with a fixed normaliser ``N`` (the paper's matrix completion: entries
    kept with probability 0.5, summed squared error over 400 entries).

    ``E[g_hat] = (rho / N) sum_i g_i``, ``Cov[g_hat] = rho (1 - rho) / N^2 sum_i g_i g_i^T``
    (uncentred: the number of kept samples is random)."""

    rho: float = eqx.field(static=True)
    normalizer: float = eqx.field(static=True)

    def sample_weights(self, n, dtype):
        return jnp.full((n,), self.rho / self.normalizer, dtype)

    def weight_noise(self, xi, n):
        return math.sqrt(self.rho * (1 - self.rho)) / self.normalizer * xi

    def weight_noise_dim(self, n):
        return n if 0 < self.rho < 1 else 0

    def label_noise_weight(self, n):
        return self.rho / self.normalizer**2

    def draw(self, key, num_steps, problem, data):
        """Random bits, not floats: generating them dominates a cheap SGD step.

        For ``rho = 1/2`` every bit is one exact Bernoulli draw (32 masks per word);
        otherwise one uint32 per sample is compared with ``round(rho 2^32)`` (so the
        keep probability is ``rho`` to within 2^-32)."""
        n = data.size
        if self.rho == 0.5:
            return jax.random.bits(key, (num_steps, -(-n // 32)), jnp.uint32)
        return jax.random.bits(key, (num_steps, n), jnp.uint32)

    def mask(self, draw, n: int) -> Array:
        if self.rho == 0.5:
            shifts = jnp.arange(32, dtype=jnp.uint32)
            bits = (draw[..., :, None] >> shifts) & jnp.uint32(1)
            return bits.reshape(draw.shape[:-1] + (-1,))[..., :n].astype(bool)
        threshold = jnp.uint32(min(round(self.rho * 2**32), 2**32 - 1))
        return draw < threshold

    def batch(self, data, draw):
        m = self.mask(draw, data.size)
        return data, m.astype(data.y.dtype) / self.normalizer

    def stochastic_gradient(self, problem, theta, data, draw):
        return _batch_gradient(self, problem, theta, data, draw)


class Online(_Minibatch):
    """Online SGD: a fresh batch of ``batch_size`` samples from ``problem.stream`` at
    every step. The SDE uses the seed's reference set of ``M = problem.num_reference``
    samples: drift ``-mean gradient`` and covariance ``Cov_x[g] / B`` estimated on it
    (with-replacement sampling from the reference set has exactly these moments)."""

    def factor(self, n):
        return 1.0 / self.batch_size

    def draw(self, key, num_steps, problem, data):
        fresh = problem.stream.sample(key, num_steps * self.batch_size, data.y.dtype)
        return jax.tree_util.tree_map(
            lambda a: a.reshape((num_steps, self.batch_size) + a.shape[1:]), fresh
        )

    def batch(self, data, draw):
        return draw, jnp.full((self.batch_size,), 1.0 / self.batch_size, draw.y.dtype)


class LabelNoise(AbstractScheme):
    """``base`` sampling with fresh label noise ``y -> y + eps``, ``eps ~ N(0, std^2)`` per
    sampled label entry (the label-noise SGD of Blanc et al. 2020; Li, Wang, Arora 2022).

    For a squared loss the gradient is linear in ``y``, so the extra noise is exactly
    ``sum_b w_b J_b eps_b`` with ``J_b = grad_theta dl_b/dy``; its covariance adds
    ``std^2 kappa sum_i J_i J_i^T`` (``kappa`` from the base scheme), realised by
    ``n * out`` extra diffusion columns."""

    base: AbstractWeightedScheme
    std: float  # a leaf, not static: a sweep traces it (sde_bias/sweep_run.py)

    def mean_gradient(self, problem, theta, data):
        return self.base.mean_gradient(problem, theta, data)

    def label_noise_weight(self, n):
        return self.base.label_noise_weight(n)

    def noise_dim(self, problem, data):
        return self.base.noise_dim(problem, data) + int(math.prod(data.y.shape))

    def draw(self, key, num_steps, problem, data):
        kb, ke = jax.random.split(key)
        base = self.base.draw(kb, num_steps, problem, data)
        b, _ = jax.vmap(lambda d: self.base.batch(data, d))(base)
        eps = self.std * jax.random.normal(ke, b.y.shape, data.y.dtype)
        return base, eps

    def stochastic_gradient(self, problem, theta, data, draw):
        base, eps = draw
        b, w = self.base.batch(data, base)
        noisy = Dataset(b.x, b.y + eps)
        return jax.grad(problem.weighted_loss)(theta, noisy, w)

    def diffusion_mv(self, problem, theta, data, xi):
        m0 = self.base.noise_dim(problem, data)
        base = self.base.diffusion_mv(problem, theta, data, xi[:m0])
        zeta = xi[m0:].reshape(data.y.shape)
        coef = self.std * math.sqrt(self.label_noise_weight(data.size))

        def label_term(th):
            dl_dy = jax.vmap(jax.grad(problem.sample_loss, argnums=2), in_axes=(None, 0, 0))(
                th, data.x, data.y
            )
            return coef * jnp.sum(dl_dy * zeta)

        return base + jax.grad(label_term)(theta)

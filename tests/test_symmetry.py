"""Tests for sde_bias.symmetry against the closed forms of docs/theory.md sections 2, 3 and 7."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_bias.models as models
from sde_bias.models import AbstractModel
from sde_bias.symmetry import (
    balance_rate,
    generator_matrices,
    gram_matrix,
    log_det_gram,
    log_orbit_volume,
    noise_equilibrium,
    normal_projector,
    quadratic_charge,
    symmetric_generators,
    tangent_projector,
)


def catalogue_model(name, *args, **kwargs):
    """The catalogue model ``name`` (a renamed or removed model fails the test)."""
    return getattr(models, name)(*args, **kwargs)


jit = eqx.filter_jit  # tests call model methods compiled: eager jax dispatch is slow


def randn(seed, *shape):
    """Gaussian test data from numpy: no jax.random, and checks below are done in numpy, so
    each test compiles only the functions under test (eager jax ops compile one by one)."""
    return np.random.default_rng(seed).standard_normal(shape)


def randint(seed, high, *shape):
    return np.random.default_rng(seed).integers(0, high, shape)


N = np.asarray


def init(m, seed):
    return randn(seed, m.num_params)


def label_noise_columns(predict, theta, xs, delta):  # traced inside jitted callers
    """Diffusion columns of label noise: ``delta * grad f_c(theta; x_i) / sqrt(n)``, all i, c."""
    jac = jax.vmap(jax.jacrev(predict), (None, 0))(theta, xs)  # [n, *out, p]
    n, p = jac.shape[0], theta.shape[-1]
    return (delta / math.sqrt(n)) * jac.reshape(-1, p).T


# ------------------------------------------------------------------------- test-only models
class OuterProduct(AbstractModel):
    """docs/theory.md section 7: ``f = u (v . x)`` with ``u`` in R^m (vector output), ``v`` in R^d."""

    m: int = eqx.field(static=True)
    d: int = eqx.field(static=True)

    def __init__(self, m, d):
        self.m, self.d = m, d

    @property
    def block_shapes(self):
        return {"u": (self.m,), "v": (self.d,)}

    input_shape = property(lambda self: (self.d,))
    input_bounds = property(lambda self: None)
    output_shape = property(lambda self: (self.m,))
    data_kinds = property(lambda self: frozenset({"teacher_student"}))
    unbalance_length = property(lambda self: 1)

    def predict(self, theta, x):
        b = self.unflatten(theta)
        return b["u"] * (b["v"] @ x)

    def predict_batch(self, theta, xs):
        return models.predict_each(self, theta, xs)

    def generators(self, theta):
        return models.generators_by_jvp(self, theta)

    def balance(self, theta):
        return {}

    def unbalance(self, theta, log_scales):
        return self.action(theta, log_scales)

    @property
    def lie_algebra_dim(self):
        return 1

    def action(self, theta, s):
        b = self.unflatten(theta)
        return self.flatten({"u": b["u"] * jnp.exp(s[0]), "v": b["v"] * jnp.exp(-s[0])})

    def invariants(self, theta):
        b = self.unflatten(theta)
        return jnp.outer(b["u"], b["v"]).ravel()

    def section(self, q):
        a, s, bt = jnp.linalg.svd(q.reshape(self.m, self.d))
        r = jnp.sqrt(s[0])
        return self.flatten({"u": r * a[:, 0], "v": r * bt[0]})


class ReLUNeuron(AbstractModel):
    """docs/theory.md section 7: one ReLU neuron ``f = a relu(w . x)``."""

    d: int = eqx.field(static=True)

    def __init__(self, d):
        self.d = d

    @property
    def block_shapes(self):
        return {"a": (), "w": (self.d,)}

    input_shape = property(lambda self: (self.d,))
    input_bounds = property(lambda self: None)
    output_shape = property(lambda self: ())
    data_kinds = property(lambda self: frozenset({"teacher_student"}))
    unbalance_length = property(lambda self: 1)

    def predict(self, theta, x):
        b = self.unflatten(theta)
        return b["a"] * jax.nn.relu(b["w"] @ x)

    def predict_batch(self, theta, xs):
        return models.predict_each(self, theta, xs)

    def generators(self, theta):
        return models.generators_by_jvp(self, theta)

    def balance(self, theta):
        return {}

    def unbalance(self, theta, log_scales):
        return self.action(theta, log_scales)

    @property
    def lie_algebra_dim(self):
        return 1

    def action(self, theta, s):
        b = self.unflatten(theta)
        return self.flatten({"a": b["a"] * jnp.exp(s[0]), "w": b["w"] * jnp.exp(-s[0])})

    def invariants(self, theta):
        b = self.unflatten(theta)
        return b["a"] * b["w"]

    def section(self, q):
        r = jnp.sqrt(jnp.linalg.norm(q))
        return self.flatten({"a": r, "w": q / r})


# ------------------------------------------------------------------------- log det G closed forms
def _sum_pairs_log(s):
    return float(np.sum(np.log(s[:, None] + s[None, :])))


def test_log_det_scalar_product():
    m = models.ScalarProduct()
    section = jit(m.section)
    for w in (0.37, -2.5, 11.0):
        out = log_det_gram(m, section(np.array([w])))
        assert bool(out.full_rank) and int(out.rank) == 1
        np.testing.assert_allclose(out.log_det, math.log(2 * abs(w)), rtol=1e-12)


def test_log_det_hadamard():
    m = models.Hadamard(4)
    w = np.array([0.3, -1.7, 2.2, 0.01])
    theta = jit(m.section)(w)
    out = log_det_gram(m, theta)
    np.testing.assert_allclose(out.log_det, np.sum(np.log(2 * np.abs(w))), rtol=1e-12)
    np.testing.assert_allclose(log_orbit_volume(m, theta), 0.5 * N(out.log_det), rtol=1e-14)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_log_det_deep_hadamard(depth):
    m = models.DeepHadamard(3, depth)
    w = np.array([0.4, -1.3, 2.6])
    expected = np.sum(math.log(depth) + (2 * (depth - 1) / depth) * np.log(np.abs(w)))
    np.testing.assert_allclose(log_det_gram(m, jit(m.section)(w)).log_det, expected, rtol=1e-12)


def test_log_det_matrix_factorization():
    m = catalogue_model("MatrixFactorization", 4, 2, 3)
    M = randn(1, 4, 2) @ randn(2, 2, 3)  # rank 2
    s = np.linalg.svd(M, compute_uv=False)[:2]
    out = log_det_gram(m, jit(m.section)(M.ravel()))
    np.testing.assert_allclose(out.log_det, _sum_pairs_log(s), rtol=1e-10)


def test_log_det_two_layer_relu():
    m = catalogue_model("TwoLayerReLU", 3, 4, 2)
    theta = jit(lambda t: m.section(m.invariants(t)))(init(m, 3))
    b = m.unflatten(N(theta))
    expected = np.sum(np.log(2 * np.linalg.norm(b["W"], axis=1) * np.linalg.norm(b["V"], axis=0)))
    np.testing.assert_allclose(log_det_gram(m, theta).log_det, expected, rtol=1e-12)


def test_log_det_attention_qk():
    m = catalogue_model("Attention", 3, 4, 2)
    theta = jit(lambda t: m.section(m.invariants(t)))(init(m, 4))
    s = np.linalg.svd(N(jit(m.qk_matrix)(theta)), compute_uv=False)[:2]
    np.testing.assert_allclose(log_det_gram(m, theta).log_det, _sum_pairs_log(s), rtol=1e-10)


def test_log_det_cumsum_hadamard():
    m = catalogue_model("CumsumHadamard", 5)
    signal = np.array([0.5, 0.2, 1.4, 1.4 + 1e-3, -0.8])
    expected = np.sum(np.log(2 * np.abs(np.diff(signal, prepend=0.0))))
    out = log_det_gram(m, jit(m.section)(signal))
    np.testing.assert_allclose(out.log_det, expected, rtol=1e-10)


def test_log_det_off_section_matches_direct_determinant():
    m = models.DeepHadamard(2, 3)
    theta = init(m, 5)
    G = N(gram_matrix(m, theta))
    np.testing.assert_allclose(G, G.T, atol=1e-14)
    np.testing.assert_allclose(log_det_gram(m, theta).log_det, np.linalg.slogdet(G)[1], rtol=1e-10)


def test_log_det_gradient_finite_at_degenerate_eigenvalues():
    # all |w_j| equal: G = 2 I has a triple eigenvalue; d log det / dp_j = 2 p_j / (p_j^2 + q_j^2)
    m = models.Hadamard(3)
    theta = N(jit(m.section)(np.array([1.0, -1.0, 1.0])))
    grad = jit(jax.grad(lambda t: log_det_gram(m, t).log_det))(theta)
    b = m.unflatten(theta)
    denom = np.tile(b["p"] ** 2 + b["q"] ** 2, 2)
    np.testing.assert_allclose(grad, 2 * theta / denom, rtol=1e-12)


# ------------------------------------------------------------------------- rank-deficient orbits
def test_rank_deficient_hadamard():
    m = models.Hadamard(3)
    w = np.array([0.8, 0.0, -1.5])  # p_1 = q_1 = 0: the generator vanishes there
    theta = N(jit(m.section)(w))
    assert theta[1] == 0.0 and theta[4] == 0.0
    out = log_det_gram(m, theta)
    assert not bool(out.full_rank)
    assert int(out.rank) == 2
    assert np.isfinite(float(out.log_det))
    np.testing.assert_allclose(out.log_det, math.log(2 * 0.8) + math.log(2 * 1.5), rtol=1e-12)
    # pseudo-inverse projector: still an orthogonal projector, onto the 2-dim orbit
    P = N(tangent_projector(m, theta))
    np.testing.assert_allclose(P @ P, P, atol=1e-12)
    np.testing.assert_allclose(np.trace(P), 2.0, atol=1e-12)
    xi = N(jit(m.generators)(theta))
    np.testing.assert_allclose(xi @ P, xi, atol=1e-12)
    # the origin: no orbit at all
    zero = log_det_gram(m, np.zeros(6))
    assert int(zero.rank) == 0 and not bool(zero.full_rank) and float(zero.log_det) == 0.0


def test_log_det_vmaps_over_mixed_ranks():
    """Rank handling is jnp.where, not Python branching: one batch mixes both cases."""
    m = models.Hadamard(2)
    ws = np.array([[1.0, 2.0], [0.0, 2.0], [0.5, 0.0], [0.0, 0.0]])

    @jax.jit
    def batch(ws):
        thetas = jax.vmap(m.section)(ws)
        return jax.vmap(lambda t: log_det_gram(m, t))(thetas), jax.vmap(
            lambda t: tangent_projector(m, t)
        )(thetas)

    out, P = batch(ws)
    np.testing.assert_array_equal(out.rank, [2, 1, 1, 0])
    np.testing.assert_array_equal(out.full_rank, [True, False, False, False])
    np.testing.assert_allclose(
        out.log_det, [math.log(8.0), math.log(4.0), math.log(1.0), 0.0], atol=1e-14
    )
    P = N(P)
    assert np.all(np.isfinite(P))
    np.testing.assert_allclose(np.trace(P, axis1=1, axis2=2), [2.0, 1.0, 1.0, 0.0], atol=1e-12)


# ------------------------------------------------------------------------- projectors
def _projector_cases():
    cases = [
        ("DeepHadamard", (3, 3), lambda i: randn(i, 3)),
        ("MatrixFactorization", (3, 2, 4), lambda i: randint(i, 3, 2)),
        ("TwoLayerReLU", (3, 2, 2), lambda i: randn(i, 3)),
        ("Attention", (3, 3, 2, 2, 2), lambda i: randn(i, 3, 3)),
    ]
    return pytest.mark.parametrize("name,args,sample_x", cases, ids=[c[0] for c in cases])


@_projector_cases()
def test_projectors(name, args, sample_x):
    m = catalogue_model(name, *args)
    theta = init(m, 6)
    p, k = m.num_params, m.lie_algebra_dim
    PT, PN = N(tangent_projector(m, theta)), N(normal_projector(m, theta))
    np.testing.assert_allclose(PT @ PT, PT, atol=1e-10)
    np.testing.assert_allclose(PN @ PN, PN, atol=1e-10)
    np.testing.assert_allclose(PT, PT.T, atol=1e-12)
    np.testing.assert_allclose(PT + PN, np.eye(p), atol=1e-14)
    np.testing.assert_allclose(np.trace(PT), k, atol=1e-9)  # locally free action: rank k
    xi = N(jit(m.generators)(theta))
    np.testing.assert_allclose(xi @ PT.T, xi, atol=1e-9)  # P_T xi = xi
    # per-sample gradients lie in the normal space: P_N grad f = grad f
    xs = np.stack([sample_x(100 + i) for i in range(3)])
    jac = N(jit(jax.vmap(jax.jacrev(m.predict), (None, 0)))(theta, xs)).reshape(-1, p)
    scale = np.max(np.abs(jac))
    np.testing.assert_allclose(jac @ PN.T, jac, atol=1e-9 * scale)
    np.testing.assert_allclose(jac @ PT.T, 0.0, atol=1e-9 * scale)


# ------------------------------------------------------------------------- generators and charges
def _normal(*shape):
    return lambda i: randn(i, *shape)


def _generator_cases():
    cases = [
        ("ScalarProduct", (), 1, _normal()),
        ("Hadamard", (3,), 3, _normal(3)),
        ("DeepHadamard", (2, 3), 4, _normal(2)),
        ("Linear", (3,), 0, _normal(3)),
        ("MatrixFactorization", (3, 2, 3), 3, lambda i: randint(i, 3, 2)),  # sym(2) in gl(2)
        ("TwoLayerReLU", (3, 2, 1), 2, _normal(3)),  # (R>0)^2: every generator is symmetric
        ("Attention", (3, 3, 2), 3, _normal(3, 3)),  # sym(2) in gl(2)
        ("CumsumHadamard", (4,), 4, _normal(4)),
    ]
    return pytest.mark.parametrize("name,args,num_sym,sample_x", cases, ids=[c[0] for c in cases])


@_generator_cases()
def test_generator_and_symmetric_matrices(name, args, num_sym, sample_x):
    m = catalogue_model(name, *args)
    theta = init(m, 7)
    p = m.num_params
    A = N(generator_matrices(m, theta))
    assert A.shape == (m.lie_algebra_dim, p, p)
    np.testing.assert_allclose(A @ theta, jit(m.generators)(theta), atol=1e-12)  # linear action
    S = N(symmetric_generators(m, theta))
    assert S.shape == (num_sym, p, p)
    np.testing.assert_array_equal(S, np.swapaxes(S, 1, 2))
    np.testing.assert_allclose(np.einsum("aij,bij->ab", S, S), np.eye(num_sym), atol=1e-10)
    if num_sym == 0:
        return
    # each lies in span{A_a}: least-squares residual ~ 0
    flat = A.reshape(A.shape[0], -1).T
    coef = np.linalg.lstsq(flat, S.reshape(num_sym, -1).T, rcond=None)[0]
    np.testing.assert_allclose(flat @ coef, S.reshape(num_sym, -1).T, atol=1e-10)
    # C = theta^T A theta is conserved by gradient flow: grad C = 2 A theta is orthogonal to
    # every per-sample gradient, checked at fresh parameters and inputs
    theta2 = init(m, 8)
    grad_C = 2 * S @ theta2
    xs = np.stack([sample_x(200 + i) for i in range(3)])
    jac = N(jit(jax.vmap(jax.jacrev(m.predict), (None, 0)))(theta2, xs)).reshape(-1, p)
    np.testing.assert_allclose(grad_C @ jac.T, 0.0, atol=1e-10)


def test_symmetric_generators_scalar_product_is_imbalance():
    m = models.ScalarProduct()
    theta = np.array([1.2, -0.7])
    (A,) = N(symmetric_generators(m, theta))
    np.testing.assert_allclose(A, np.diag([1.0, -1.0]) / math.sqrt(2), atol=1e-14)
    np.testing.assert_allclose(quadratic_charge(A, theta), (1.2**2 - 0.7**2) / math.sqrt(2))


# ------------------------------------------------------------------------- balance law
def test_balance_rate_scalar_product_closed_form():
    """u v with label noise delta: sigma = delta grad f (x = 1), dC/dt = -eta delta^2 C."""
    A = np.diag([1.0, -1.0])  # C = u^2 - v^2
    eta, delta = 0.3, 0.7
    for u, v in ((1.5, 0.4), (-0.2, 2.0), (0.9, -0.9)):
        sigma = delta * np.array([[v], [u]])  # grad_theta (u v x) at x = 1
        rate = balance_rate(A, sigma, eta)
        np.testing.assert_allclose(rate, -eta * delta**2 * (u**2 - v**2), atol=1e-14)


@pytest.mark.parametrize("p,m", [(5, 2), (2, 7)], ids=["m<p", "m>=p"])
def test_balance_rate_is_trace_of_cov_times_A(p, m):
    """Both evaluation orders equal eta tr(Cov A), Cov = sigma sigma^T formed explicitly."""
    sigma = randn(10, p, m)
    B = randn(11, 3, p, p)
    stack = B + np.swapaxes(B, 1, 2)
    expected = 0.3 * np.einsum("ij,nji->n", sigma @ sigma.T, stack)
    np.testing.assert_allclose(balance_rate(stack, sigma, 0.3), expected, rtol=1e-12)
    np.testing.assert_allclose(balance_rate(stack[1], sigma, 0.3), expected[1], rtol=1e-12)


def test_balance_rate_long_diffusion_under_jit():
    """m = 20000 label-noise columns from a vmapped ReLU gradient, jitted end to end: the
    shape at which jaxlib 0.10.2 miscompiles sum((A @ sigma) * sigma) (jax-ml/jax#39103)."""
    d, n = 4, 20000
    model = ReLUNeuron(d)
    xs, theta = randn(20, n, d), randn(21, d + 1)
    A = np.diag([1.0, -1.0, -1.0, -1.0, -1.0])

    @jax.jit
    def rate_and_sigma(t):
        sigma = label_noise_columns(model.predict, t, xs, 1.0)
        return balance_rate(A, sigma), sigma

    rate, S = rate_and_sigma(theta)
    S = N(S)
    np.testing.assert_allclose(rate, np.sum((A @ S) * S), rtol=1e-12)


def test_balance_rate_matrix_factorization_closed_form():
    """docs/theory.md section 2.5: dD/dt = eta delta^2 (m Q Q^T - n P^T P), D = P^T P - Q Q^T."""
    rows, r, cols = 3, 2, 4
    mf = catalogue_model("MatrixFactorization", rows, r, cols)
    theta = init(mf, 11)
    b = mf.unflatten(theta)
    P, Q = b["P"], b["Q"]
    eta, delta = 0.05, 0.4
    pairs = np.array([(i, j) for i in range(rows) for j in range(cols)])
    # label noise on every entry of the sum loss 1/2 |PQ - Y|_F^2: columns delta grad M_ij
    sigma = delta * N(jit(jax.vmap(jax.grad(mf.predict), (None, 0)))(theta, pairs)).T
    gens = N(generator_matrices(mf, theta)).reshape(r, r, mf.num_params, mf.num_params)
    dD = eta * delta**2 * (rows * Q @ Q.T - cols * P.T @ P)
    for E in (np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[0.3, -1.1], [-1.1, 2.0]])):
        A_E = np.einsum("ab,abij->ij", E, gens)  # the generator matrix of E in gl(r)
        np.testing.assert_allclose(A_E, A_E.T, atol=1e-12)
        np.testing.assert_allclose(
            quadratic_charge(A_E, theta), np.sum(E * (P.T @ P - Q @ Q.T)), rtol=1e-10
        )
        np.testing.assert_allclose(balance_rate(A_E, sigma, eta), np.sum(E * dD), rtol=1e-10)


def test_balance_rate_matches_sde_ensemble():
    """Finite-difference d E[C]/dt of an Euler-Maruyama ensemble of the SGD-SDE for u v with
    target y and label noise delta equals the ensemble mean of balance_rate, and
    E[C(t)] = C(0) exp(-eta delta^2 t) (docs/theory.md section 2.5). 4096 paths, step 1e-3: the
    discretization and sampling errors of E[C] are ~1e-3 relative, of the difference
    quotient ~3e-3."""
    m = models.ScalarProduct()
    (A,) = N(symmetric_generators(m, np.array([1.0, 1.0])))
    eta, delta, y = 0.5, 1.0, 1.0
    h, steps, paths = 1e-3, 600, 4096
    i, di = 299, 50  # central difference at t = 0.3

    def drift(theta):  # -grad of 1/2 (u v - y)^2 at x = 1
        return -(theta[0] * theta[1] - y) * jnp.array([theta[1], theta[0]])

    def sigma(theta):
        return delta * jnp.array([[theta[1]], [theta[0]]])

    def step(theta, z):
        theta = theta + h * drift(theta) + jnp.sqrt(eta * h) * (sigma(theta) @ z)
        return theta, theta

    @jax.jit
    def simulate(theta0, noise):
        traj = jax.vmap(lambda nz: jax.lax.scan(step, theta0, nz)[1])(noise)  # [paths, steps, 2]
        rates = jax.vmap(lambda t: balance_rate(A, sigma(t), eta))(traj[:, i])
        return traj, rates

    theta0 = np.array([1.5, 0.4])
    traj, rates = (N(a) for a in simulate(theta0, randn(12, paths, steps, 1)))
    mean_C = np.mean(np.einsum("psi,ij,psj->ps", traj, A, traj), axis=0)
    times = h * np.arange(1, steps + 1)
    C0 = theta0 @ A @ theta0
    np.testing.assert_allclose(mean_C, C0 * np.exp(-eta * delta**2 * times), rtol=3e-3)
    fd = (mean_C[i + di] - mean_C[i - di]) / (2 * di * h)
    np.testing.assert_allclose(fd, np.mean(rates), rtol=1e-2)


# ------------------------------------------------------------------------- noise equilibrium
def test_noise_equilibrium_scalar_product():
    m = models.ScalarProduct()
    xs = np.linspace(-1.0, 2.0, 9)

    def sigma_fn(theta):
        return label_noise_columns(m.predict, theta, xs, 0.3)

    A = symmetric_generators(m, np.array([1.0, 1.0]))
    for theta in (np.array([3.0, 0.2]), np.array([-0.01, 40.0])):
        eq = noise_equilibrium(m, theta, sigma_fn, A, tol=1e-12)
        assert bool(eq.converged) and float(eq.residual) <= 1e-12
        u, v = N(eq.theta)
        np.testing.assert_allclose(abs(u), abs(v), rtol=1e-10)
        np.testing.assert_allclose(u * v, theta[0] * theta[1], rtol=1e-12)  # same orbit


def test_noise_equilibrium_hadamard_commuting_generators():
    m = models.Hadamard(3)
    xs = randn(13, 50, 3)
    theta = np.array([2.0, 0.1, -1.0, 0.3, 5.0, -0.2])  # p, q

    def sigma_fn(t):
        return label_noise_columns(m.predict, t, xs, 0.1)

    eq = noise_equilibrium(m, theta, sigma_fn, symmetric_generators(m, theta), tol=1e-12)
    assert bool(eq.converged)
    b = m.unflatten(N(eq.theta))
    np.testing.assert_allclose(np.abs(b["p"]), np.abs(b["q"]), rtol=1e-9)
    np.testing.assert_allclose(b["p"] * b["q"], theta[:3] * theta[3:], rtol=1e-12)


def test_noise_equilibrium_matrix_factorization_non_commuting():
    """P Q with label noise on every entry: equilibrium of sym(r) is m Q Q^T = n P^T P
    (docs/theory.md section 2.6 with dD/dt = 0), reached along exp(sym(r)) with P Q unchanged."""
    rows, r, cols = 3, 2, 4
    mf = catalogue_model("MatrixFactorization", rows, r, cols)
    theta = init(mf, 14)
    pairs = np.array([(i, j) for i in range(rows) for j in range(cols)])

    def sigma_fn(t):
        return jax.vmap(jax.grad(mf.predict), (None, 0))(t, pairs).T

    eq = noise_equilibrium(mf, theta, sigma_fn, symmetric_generators(mf, theta), tol=1e-12)
    assert bool(eq.converged)
    b, b0 = mf.unflatten(N(eq.theta)), mf.unflatten(theta)
    np.testing.assert_allclose(rows * b["Q"] @ b["Q"].T, cols * b["P"].T @ b["P"], atol=1e-9)
    np.testing.assert_allclose(b["P"] @ b["Q"], b0["P"] @ b0["Q"], atol=1e-10)


def test_noise_equilibrium_outer_product_ratio():
    """f = u (v . x), u in R^m, x ~ N(0, I_d), isotropic label noise: |u|^2/|v|^2 = m/d.

    On the samples the equilibrium is exactly |u|^2/|v|^2 = m (v^T S v)/(|v|^2 tr S) with S the
    sample second moment (checked to 1e-9); its population value m/d is reached within the
    sampling error sqrt(2/n + 2/(n d)) of that ratio (n = 20000 samples: 1.1%; tolerance 5x).
    """
    mdim, d, n = 3, 6, 20000
    model = OuterProduct(mdim, d)
    xs = randn(15, n, d)
    theta = np.concatenate([3.0 * randn(16, mdim), randn(17, d)])

    def sigma_fn(t):
        return label_noise_columns(model.predict, t, xs, 0.5)

    eq = noise_equilibrium(model, theta, sigma_fn, symmetric_generators(model, theta), tol=1e-12)
    assert bool(eq.converged)
    b = model.unflatten(N(eq.theta))
    ratio = np.sum(b["u"] ** 2) / np.sum(b["v"] ** 2)
    S = xs.T @ xs / n
    vhat = b["v"] / np.linalg.norm(b["v"])
    np.testing.assert_allclose(ratio, mdim * vhat @ S @ vhat / np.trace(S), rtol=1e-9)
    sampling = math.sqrt(2 / n + 2 / (n * d))
    assert abs(ratio / (mdim / d) - 1) < 5 * sampling, (ratio, mdim / d)
    np.testing.assert_allclose(np.outer(b["u"], b["v"]), np.outer(theta[:mdim], theta[mdim:]))


def test_noise_equilibrium_relu_neuron_ratio():
    """f = a relu(w . x), x ~ N(0, I_d), label noise: |a|/|w| = 1/sqrt(d), not 1.

    Exact on the samples: a^2/|w|^2 = sum relu(w^.x)^2 / sum 1[w.x > 0] |x|^2 (checked to 1e-9).
    Population value 1/sqrt(d) within 5 standard errors of that sample ratio (delta method on
    the two sample means, estimated from the same n = 20000 samples: about 0.6% for d = 4).
    """
    d, n = 4, 20000
    model = ReLUNeuron(d)
    xs = randn(18, n, d)
    theta = np.concatenate([[2.5], 0.2 * randn(19, d)])

    def sigma_fn(t):
        return label_noise_columns(model.predict, t, xs, 0.2)

    eq = noise_equilibrium(model, theta, sigma_fn, symmetric_generators(model, theta), tol=1e-12)
    assert bool(eq.converged)
    b = model.unflatten(N(eq.theta))
    ratio = abs(float(b["a"])) / np.linalg.norm(b["w"])
    z = xs @ (b["w"] / np.linalg.norm(b["w"]))
    num, den = np.maximum(z, 0.0) ** 2, (z > 0) * np.sum(xs**2, axis=1)
    np.testing.assert_allclose(ratio**2, np.sum(num) / np.sum(den), rtol=1e-9)
    log_se = np.std(num / np.mean(num) - den / np.mean(den)) / math.sqrt(n)  # of log ratio^2
    assert log_se < 0.02
    assert abs(math.log(ratio * math.sqrt(d))) < 5 * 0.5 * log_se, (ratio, 1 / math.sqrt(d))
    assert abs(ratio - 1.0) > 0.4  # and clearly not the "balanced" ratio 1
    np.testing.assert_allclose(b["a"] * b["w"], theta[0] * theta[1:], rtol=1e-10)


def test_noise_equilibrium_no_noise_is_trivial():
    m = models.ScalarProduct()
    theta = np.array([2.0, 0.5])
    eq = noise_equilibrium(m, theta, lambda t: jnp.zeros((2, 3)), symmetric_generators(m, theta))
    assert bool(eq.converged) and float(eq.residual) == 0.0
    np.testing.assert_array_equal(eq.theta, theta)

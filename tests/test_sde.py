"""The SGD-SDE and its solvers against closed forms (docs/theory.md sections 2.5 and 7)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import sde_bias as sb
from sde_bias.data import Dataset
from sde_bias.integrate import run_ensemble
from sde_bias.losses import SquaredLoss
from sde_bias.noise import FullBatch, LabelNoise, WithoutReplacement, WithReplacement
from sde_bias.observables import make_observer
from sde_bias.problem import Problem
from sde_bias.sde import CustomSDE, SDEStepper, SGDSDE, check_commutative_noise
from sde_bias.sgd import DiscreteStepper


def _final(stepper, theta0, num_steps, observe, record_every=None, data=None, seed=0):
    S = theta0.shape[0]
    keys = jax.random.split(jax.random.PRNGKey(seed), S)
    out = run_ensemble(stepper, theta0, keys, data, observe, num_steps=num_steps, record_every=record_every or num_steps)
    return out


# ----------------------------------------------------------------------------- u v balance
ETA, DELTA, Y = 0.05, 0.8, 1.0
UV_DATA = Dataset(jnp.ones((1,)), jnp.full((1,), Y))


def _uv_problem():
    return Problem(sb.ScalarProduct(), LabelNoise(FullBatch(), DELTA), train=UV_DATA)


@pytest.mark.parametrize(
    "solver,substeps", [(diffrax.Heun(), 4), (diffrax.GeneralShARK(), 8)], ids=["heun", "shark"]
)
def test_uv_balance_law_is_pathwise_for_the_sde(solver, substeps):
    """C = u^2 - v^2 obeys C(t) = C(0) exp(-eta delta^2 t) on EVERY path of the SDE
    (the noise is orthogonal to the orbit), so each path is checked, not a mean.
    Tolerance: the solver's discretisation error, which shrinks with substeps."""
    problem = _uv_problem()
    theta0 = jnp.tile(jnp.array([1.6, Y / 1.6]), (64, 1))
    steps = 200
    out = _final(SDEStepper(SGDSDE(problem, ETA), solver, substeps=substeps), theta0, steps, make_observer(problem, ["balance"]), record_every=50, data=UV_DATA)
    C = np.asarray(out["records"]["balance/imbalance"])
    t = np.asarray(out["step"]) * ETA
    exact = C[:, :1] * np.exp(-ETA * DELTA**2 * t)[None]
    assert np.max(np.abs(C - exact) / np.abs(exact)) < 2e-3


def test_uv_balance_law_euler_maruyama_converges():
    """Euler-Maruyama is only strong order 1/2 here: its pathwise error on the same law
    shrinks about 4x when dt shrinks 16x (measured 4.4e-3 -> 1.0e-3)."""
    problem = _uv_problem()
    theta0 = jnp.tile(jnp.array([1.6, Y / 1.6]), (64, 1))
    errs = []
    for sub in (16, 256):
        st = SDEStepper(SGDSDE(problem, ETA), diffrax.Euler(), substeps=sub)
        out = _final(st, theta0, 200, make_observer(problem, ["balance"]), record_every=50, data=UV_DATA)
        C = np.asarray(out["records"]["balance/imbalance"])
        t = np.asarray(out["step"]) * ETA
        exact = C[:, :1] * np.exp(-ETA * DELTA**2 * t)[None]
        errs.append(np.mean(np.abs(C - exact) / np.abs(exact)))
    assert errs[0] < 1e-2 and errs[1] < errs[0] / 2.5, errs


def test_uv_balance_law_sgd_to_order_eta():
    """Discrete SGD follows the same law in mean to O(eta): per step
    E[C'] = C (1 - eta^2 (r^2 + delta^2)) with r the residual (~0 at a minimum)."""
    problem = _uv_problem()
    S = 2000
    theta0 = jnp.tile(jnp.array([1.6, Y / 1.6]), (S, 1))
    steps = 400
    out = _final(DiscreteStepper(problem, ETA), theta0, steps, make_observer(problem, ["balance"]), data=UV_DATA)
    C = np.asarray(out["records"]["balance/imbalance"])[:, -1]
    t = steps * ETA
    c0 = 1.6**2 - (Y / 1.6) ** 2
    exact = c0 * np.exp(-ETA * DELTA**2 * t)
    rel = abs(C.mean() - exact) / exact
    # O(eta) bias plus sampling error; with eta = 0.05 the bound 2 * eta is loose but meaningful:
    assert rel < 2 * ETA, rel
    # and the SDE-vs-SGD difference shrinks with eta (order 1): halve eta, run to the same t
    out2 = _final(DiscreteStepper(problem, ETA / 4), theta0, steps * 4, make_observer(problem, ["balance"]), data=UV_DATA)
    C2 = np.asarray(out2["records"]["balance/imbalance"])[:, -1]
    exact2 = c0 * np.exp(-ETA / 4 * DELTA**2 * t)
    assert abs(C2.mean() - exact2) / exact2 < rel


def test_one_step_sgd_balance_identity():
    """u'^2 - v'^2 = (u^2 - v^2)(1 - eta^2 g^2) exactly, g = dl/dw of the step's batch."""
    problem = _uv_problem()
    stepper = DiscreteStepper(problem, 0.3)
    theta = jnp.array([1.3, -0.4])
    draws = stepper.draw(jax.random.PRNGKey(5), 20, UV_DATA, theta.dtype)
    for k in range(20):
        d = jax.tree_util.tree_map(lambda a: a[k], draws)
        new, _ = stepper.step(theta, None, UV_DATA, d)
        (_, eps) = d
        g = theta[0] * theta[1] - (Y + eps[0])  # dl/dw for l = 1/2 (w - y - eps)^2
        lhs = new[0] ** 2 - new[1] ** 2
        rhs = (theta[0] ** 2 - theta[1] ** 2) * (1 - 0.3**2 * g**2)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-12)
        theta = new


def test_matrix_factorization_balance_law():
    """D = P^T P - Q Q^T under L = 1/2 |PQ - Y|_F^2 with iid label noise delta on every
    entry obeys dD/dt = eta delta^2 (m QQ^T - n P^T P); for m = n, D(t) = D(0) e^{-eta delta^2 n t},
    pathwise for the SDE."""
    MF = getattr(sb, "MatrixFactorization", None)
    if MF is None:
        pytest.skip("MatrixFactorization not available")
    m = n = 3
    r = 2
    model = MF(m, r, n)
    idx = jnp.array([(i, j) for i in range(m) for j in range(n)], dtype=jnp.int32)
    target = jax.random.normal(jax.random.PRNGKey(0), (m, n))
    data = Dataset(idx, target[idx[:, 0], idx[:, 1]])
    delta, eta = 0.5, 0.02
    # mean over the m n entries times scale m n = the Frobenius sum of docs/theory.md section 2.5
    problem = Problem(model, LabelNoise(FullBatch(), delta), loss=SquaredLoss("half_sum", m * n), train=data)
    theta0 = model.init(jax.random.PRNGKey(1), 0.7)[None].repeat(8, 0)

    def gram_diff(th):
        b = model.unflatten(th)
        return b["P"].T @ b["P"] - b["Q"] @ b["Q"].T

    observe = lambda th, d: {"D": gram_diff(th)}  # noqa: E731
    out = _final(SDEStepper(SGDSDE(problem, eta), diffrax.Heun(), substeps=8), theta0, 100, observe, record_every=50, data=data)
    D = np.asarray(out["records"]["D"])
    t = np.asarray(out["step"]) * eta
    exact = D[:, :1] * np.exp(-eta * delta**2 * n * t)[None, :, None, None]
    assert np.max(np.abs(D - exact)) < 2e-3 * np.max(np.abs(D[:, 0]))


# ----------------------------------------------------------------------------- 1-D quadratic
A = jnp.array([-1.0, 0.3, 2.0, 0.5, -0.7, 1.1, 0.0, -2.0, 0.9, 0.4])
S2 = float(jnp.var(A))


@pytest.mark.parametrize("with_replacement", [True, False], ids=["with", "without"])
def test_quadratic_stationary_variances(with_replacement):
    """l_i = 1/2 (x - a_i)^2: stationary Var x = eta s^2 c_B / (2 - eta) for SGD and
    eta s^2 c_B / 2 for the order-1 SDE (docs/theory.md section 7). eta = 0.5 makes them differ
    by 33%; 4,000 seeds give a 2.2% standard error on each variance; checked at 4 SE."""
    n, B, eta = A.shape[0], 2, 0.5
    scheme = WithReplacement(B) if with_replacement else WithoutReplacement(B)
    cB = 1 / B if with_replacement else (n - B) / (B * (n - 1))
    data = Dataset(jnp.ones((n, 1)), A)
    problem = Problem(sb.Linear(1), scheme, train=data)
    S = 4000
    theta0 = jnp.full((S, 1), float(A.mean()))
    obs = make_observer(problem, ["params"])
    sgd = _final(DiscreteStepper(problem, eta), theta0, 40, obs, data=data)["records"]["params"][:, -1, 0]
    sde = _final(SDEStepper(SGDSDE(problem, eta), diffrax.Heun(), substeps=16), theta0, 40, obs, data=data, seed=1)["records"]["params"][:, -1, 0]
    v_sgd, v_sde = float(np.var(sgd)), float(np.var(sde))
    se = np.sqrt(2 / S)
    assert abs(v_sgd / (eta * S2 * cB / (2 - eta)) - 1) < 4 * se
    assert abs(v_sde / (eta * S2 * cB / 2) - 1) < 4 * se
    assert abs(v_sgd / v_sde - 1) > 0.2  # the two laws are told apart


# ----------------------------------------------------------------------------- generic SDEs
def _custom(drift, diff, m, dt_unit=1.0):
    return CustomSDE(drift, diff, m, dt_unit)


def test_projected_noise_radial_example():
    """dX = -X dt + sqrt(2) P_radial dB in R^3, X_0 on the unit sphere: E|X_t|^2 = 1 for
    all t; isotropic noise gives 3 - 2 e^{-2t}. 4,000 paths; checked at 5 SE."""
    proj = lambda x, a, xi: jnp.sqrt(2.0) * x * (x @ xi) / (x @ x)  # noqa: E731
    iso = lambda x, a, xi: jnp.sqrt(2.0) * xi  # noqa: E731
    drift = lambda x, a: -x  # noqa: E731
    S = 4000
    x0 = jax.random.normal(jax.random.PRNGKey(0), (S, 3))
    x0 = x0 / jnp.linalg.norm(x0, axis=1, keepdims=True)
    obs = lambda x, a: {"r2": x @ x}  # noqa: E731
    for diff, expect in [(proj, lambda t: 1.0 + 0 * t), (iso, lambda t: 3 - 2 * np.exp(-2 * t))]:
        st = SDEStepper(_custom(drift, diff, 3, 0.01), diffrax.Heun())
        out = _final(st, x0, 100, obs, record_every=25)
        r2 = np.asarray(out["records"]["r2"])
        t = np.asarray(out["step"]) * 0.01
        m, se = r2.mean(0), r2.std(0) / np.sqrt(S) + 1e-12
        assert np.all(np.abs(m - expect(t)) < 5 * se + 2e-3), (m, expect(t))


def test_ornstein_uhlenbeck_stationary_law():
    """dq = -k q dt + s dW: stationary N(0, s^2 / (2k)); KS test on 3,000 independent
    paths at t = 8 / k (p > 1e-3), and the test rejects a law with 20% larger variance."""
    k, s = 2.0, 0.6
    st = SDEStepper(_custom(lambda q, a: -k * q, lambda q, a, xi: s * xi, 1, 0.01), diffrax.Euler(), substeps=4)
    S = 3000
    out = _final(st, jnp.zeros((S, 1)), 400, lambda q, a: {"q": q[0]})
    q = np.asarray(out["records"]["q"])[:, -1]
    sd = s / np.sqrt(2 * k)
    assert stats.kstest(q, stats.norm(scale=sd).cdf).pvalue > 1e-3
    assert stats.kstest(q, stats.norm(scale=1.2 * sd).cdf).pvalue < 1e-3


GBM_MU, GBM_S = 0.3, 0.8


def _gbm():
    return _custom(lambda x, a: GBM_MU * x, lambda x, a, xi: GBM_S * x * xi[0], 1, 0.05)


@pytest.mark.parametrize(
    "solver,correction,agrees",
    [
        (diffrax.Euler(), True, True),
        (diffrax.Heun(), True, True),
        (diffrax.GeneralShARK(), True, True),
        (diffrax.Heun(), False, False),
    ],
    ids=["euler", "heun+correction", "shark+correction", "heun-no-correction"],
)
def test_ito_to_stratonovich_correction(solver, correction, agrees):
    """Geometric Brownian motion (state-dependent noise), Itô: E X_t = e^{mu t},
    E X_t^2 = e^{(2 mu + s^2) t}. A Stratonovich solver agrees in law with Euler-Maruyama
    only with the drift correction; without it E X_t = e^{(mu + s^2/2) t}. 4,000 paths,
    t = 1; agreement at 5 SE of the mean plus the O(dt) bias bound, disagreement > 10 SE."""
    S = 4000
    st = SDEStepper(_gbm(), solver, substeps=4, ito_correction=correction)
    out = _final(st, jnp.ones((S, 1)), 20, lambda x, a: {"x": x[0]}, seed=3)
    x = np.asarray(out["records"]["x"])[:, -1]
    se = x.std() / np.sqrt(S)
    err = abs(x.mean() - np.exp(GBM_MU))
    if agrees:
        assert err < 5 * se + 0.01, (x.mean(), np.exp(GBM_MU), se)
        se2 = (x**2).std() / np.sqrt(S)
        assert abs((x**2).mean() - np.exp(2 * GBM_MU + GBM_S**2)) < 5 * se2 + 0.05
    else:
        assert err > 10 * se


def test_euler_maruyama_strong_order():
    """Strong order of EM on GBM: E|X^h_T - X_T| ~ h^{1/2} with the exact solution
    X_T = exp((mu - s^2/2) T + s W_T) on the same Brownian path; slope within 0.1 of 0.5."""
    S, T, fine = 2000, 1.0, 2**10
    dw = jax.random.normal(jax.random.PRNGKey(11), (S, fine)) * jnp.sqrt(T / fine)
    exact = jnp.exp((GBM_MU - GBM_S**2 / 2) * T + GBM_S * dw.sum(1))
    hs, errs = [], []
    for level in [4, 5, 6, 7, 8]:
        n = 2**level
        coarse = dw.reshape(S, n, fine // n).sum(-1)
        st = SDEStepper(_custom(lambda x, a: GBM_MU * x, lambda x, a, xi: GBM_S * x * xi[0], 1, T / n), diffrax.Euler())

        def path(inc):
            def body(x, d):
                return st.step(x, None, None, (d[None], None))[0], None

            return jax.lax.scan(body, jnp.ones((1,)), inc)[0][0]

        xs = jax.jit(jax.vmap(path))(coarse)
        hs.append(T / n)
        errs.append(float(jnp.mean(jnp.abs(xs - exact))))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - 0.5) < 0.1, (slope, errs)


def test_milstein_refuses_noncommutative_noise_check():
    """The commutativity check is zero for scalar noise and non-zero for the general
    minibatch noise of a Hadamard model (whose noise columns do not commute)."""
    model = sb.Hadamard(3)
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    data = Dataset(jax.random.normal(kx, (6, 3)), jax.random.normal(ky, (6,)))
    problem = Problem(model, WithReplacement(2), train=data)
    theta = model.init(jax.random.PRNGKey(2))
    assert check_commutative_noise(SGDSDE(problem, 0.1), theta, data) > 1e-3
    uv = _uv_problem()
    assert check_commutative_noise(SGDSDE(uv, 0.1), jnp.array([1.0, 2.0]), UV_DATA) == 0.0


def test_order2_drift_is_modified_loss():
    """The order-2 drift is -grad(L + eta/4 |grad L|^2), checked against autodiff of
    the modified loss written out independently."""
    model = sb.Hadamard(3)
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    data = Dataset(jax.random.normal(kx, (6, 3)), jax.random.normal(ky, (6,)))
    problem = Problem(model, WithReplacement(2), train=data)
    theta = model.init(jax.random.PRNGKey(2))
    eta = 0.1
    L = lambda th: 0.5 * jnp.mean((jax.vmap(model.predict, (None, 0))(th, data.x) - data.y) ** 2)  # noqa: E731
    modified = lambda th: L(th) + eta / 4 * jnp.sum(jax.grad(L)(th) ** 2)  # noqa: E731
    np.testing.assert_allclose(SGDSDE(problem, eta, order2=True).drift(0.0, theta, data), -jax.grad(modified)(theta), rtol=1e-10)

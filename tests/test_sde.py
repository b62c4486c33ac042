"""The SGD-SDE and its solvers against closed forms (docs/theory.md sections 2.5 and 7)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from helpers import gbm, gbm_exact, gbm_moments, random_regression, run_final, solve_on_paths, uv_problem

import sde_bias as sb
from sde_bias.data import Dataset
from sde_bias.losses import SquaredLoss
from sde_bias.noise import FullBatch, LabelNoise, WithoutReplacement, WithReplacement
from sde_bias.observables import make_observer
from sde_bias.problem import Problem
from sde_bias.sde import CustomSDE, SDEStepper, SGDSDE, check_commutative_noise, solve_adaptive
from sde_bias.sgd import DiscreteStepper

_final = run_final

# ----------------------------------------------------------------------------- u v balance
ETA, DELTA, Y = 0.05, 0.8, 1.0


def _uv_problem():
    return uv_problem(DELTA, Y)


UV_DATA = _uv_problem().train


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
    MF = sb.MatrixFactorization
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
    return gbm(GBM_MU, (GBM_S,), 0.05)


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
        st = SDEStepper(gbm(GBM_MU, (GBM_S,), T / n), diffrax.Euler())
        xs = solve_on_paths(st, jnp.ones((1,)), coarse[..., None])[:, 0]
        hs.append(T / n)
        errs.append(float(jnp.mean(jnp.abs(xs - exact))))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - 0.5) < 0.1, (slope, errs)


# ----------------------------------------------------------------------------- Milstein
GBM2 = (0.8, 0.5)  # two Brownian motions; the noise columns 0.8 x and 0.5 x commute


def _slope_and_ci(hs, errors, reps=400, seed=0):
    """Least-squares slope of log(mean |error|) against log h, with a 95% percentile
    bootstrap interval over paths (``errors`` is [levels, paths])."""
    x = np.log(hs)
    slope = np.polyfit(x, np.log(errors.mean(1)), 1)[0]
    rng = np.random.default_rng(seed)
    paths = errors.shape[1]
    boot = [np.polyfit(x, np.log(errors[:, rng.integers(0, paths, paths)].mean(1)), 1)[0] for _ in range(reps)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return slope, lo, hi


def test_milstein_and_euler_strong_orders_on_commutative_noise():
    """Strong error E|X^h_1 - X_1| on GBM driven by two Brownian motions (commutative
    noise), on the same 2,000 paths, against X_1 = exp((mu - |s|^2/2) + s . W_1): Milstein
    has order 1, its 95% bootstrap interval above 0.75 (so it excludes 0.5); Euler-Maruyama
    has order 1/2, its interval below 0.75 (measured 0.93 [0.91, 0.96] and 0.49 [0.47, 0.52])."""
    P, T, fine = 2000, 1.0, 2**10
    dw = jax.random.normal(jax.random.PRNGKey(11), (P, fine, 2)) * jnp.sqrt(T / fine)
    exact = gbm_exact(GBM_MU, GBM2, T, dw.sum(1))
    levels = [8, 16, 32, 64, 128]
    hs = [T / n for n in levels]
    fits = {}
    for name, solver, dense in [("milstein", diffrax.ItoMilstein(), True), ("euler", diffrax.Euler(), False)]:
        errors = []
        for n in levels:
            coarse = dw.reshape(P, n, fine // n, 2).sum(2)
            st = SDEStepper(gbm(GBM_MU, GBM2, T / n), solver, dense_diffusion=dense)
            errors.append(np.abs(np.asarray(solve_on_paths(st, jnp.ones((1,)), coarse)[:, 0] - exact)))
        fits[name] = _slope_and_ci(hs, np.stack(errors))
    slope, lo, hi = fits["milstein"]
    assert lo > 0.75 and abs(slope - 1) < 0.15, fits
    slope, lo, hi = fits["euler"]
    assert hi < 0.75 and abs(slope - 0.5) < 0.1, fits


def test_milstein_gbm_moments():
    """Itô Milstein on the two-noise GBM: E X_1 = e^mu, E X_1^2 = e^{2 mu + |s|^2}; 4,000
    paths, 5 SE plus the O(dt) bias bound of the Euler/Heun test above. The Stratonovich
    mean e^{mu + |s|^2/2} is more than 10 SE away, so the check tells the two calculi apart."""
    S, t = 4000, 1.0
    st = SDEStepper(gbm(GBM_MU, GBM2, 0.05), diffrax.ItoMilstein(), substeps=4, dense_diffusion=True)
    x = np.asarray(_final(st, jnp.ones((S, 1)), 20, lambda x, a: {"x": x[0]}, seed=3)["records"]["x"])[:, -1]
    m1, m2 = gbm_moments(GBM_MU, GBM2, t)
    se, se2 = x.std() / np.sqrt(S), (x**2).std() / np.sqrt(S)
    assert abs(x.mean() - m1) < 5 * se + 0.01, (x.mean(), m1, se)
    assert abs((x**2).mean() - m2) < 5 * se2 + 0.05, ((x**2).mean(), m2, se2)
    assert abs(x.mean() - np.exp((GBM_MU + 0.5 * sum(s * s for s in GBM2)) * t)) > 10 * se


# ----------------------------------------------------------------------------- adaptive steps
def test_adaptive_gbm_pathwise_moments_and_chunks():
    """``solve_adaptive`` (stochastic Heun, PID steps, VirtualBrownianTree) on the two-noise
    GBM, 1,000 paths saved at t = 0.5 and 1, rtol 1e-3:

    - pathwise, against the exact solution on the tree's own Brownian path: mean error
      below rtol at both save times (measured 1.4e-4, 2.3e-4). A save time inside the run
      must be a step end point: interpolating between steps replaces the Brownian path by
      a straight line (mean error 0.06 at t = 0.5 before the solver stepped to save times);
    - moments at t = 1 within 5 SE (plus the O(dt) bias bound);
    - chunks: the same run split at t = 0.5 (a second call from the saved state, on the
      same tree) is as accurate, and within 2 rtol of the one-piece run on average (the
      step-size controller restarts at the split, so the steps and the last digits differ)."""
    P, T, rtol = 1000, 1.0, 1e-3
    sde = gbm(GBM_MU, GBM2, 0.05)
    keys = jax.random.split(jax.random.PRNGKey(3), P)
    y0, ts = jnp.ones((1,)), jnp.array([0.5, 1.0])

    @jax.jit
    def solve(keys):
        def one(key):
            whole, ok = solve_adaptive(sde, diffrax.Heun(), y0, None, key, ts, 0.0, T, rtol=rtol, atol=1e-6)
            first, ok1 = solve_adaptive(sde, diffrax.Heun(), y0, None, key, ts[:1], 0.0, T, rtol=rtol, atol=1e-6)
            second, ok2 = solve_adaptive(sde, diffrax.Heun(), first[-1], None, key, ts[1:], ts[0], T, rtol=rtol, atol=1e-6)
            # the tree solve_adaptive builds (same key, tolerance lr / 16 and interval)
            bm = diffrax.VirtualBrownianTree(0.0, T, tol=0.05 / 16, shape=(2,), key=key, levy_area=diffrax.BrownianIncrement)
            w = jnp.stack([bm.evaluate(0.0, t) for t in (0.5, 1.0)])
            return whole[:, 0], jnp.concatenate([first, second])[:, 0], w, ok & ok1 & ok2

        return jax.vmap(one)(keys)

    whole, chunked, w, ok = (np.asarray(a) for a in solve(keys))
    assert ok.all()
    exact = np.asarray(gbm_exact(GBM_MU, GBM2, np.asarray(ts), w))
    err_whole = np.abs(whole - exact).mean(0)
    err_chunked = np.abs(chunked - exact).mean(0)
    assert np.all(err_whole < rtol) and np.all(err_chunked < rtol), (err_whole, err_chunked)
    assert np.abs(chunked - whole).mean() < 2 * rtol
    x = whole[:, 1]
    m1, m2 = gbm_moments(GBM_MU, GBM2, T)
    se, se2 = x.std() / np.sqrt(P), (x**2).std() / np.sqrt(P)
    assert abs(x.mean() - m1) < 5 * se + 0.01, (x.mean(), m1, se)
    assert abs((x**2).mean() - m2) < 5 * se2 + 0.05, ((x**2).mean(), m2, se2)


def test_adaptive_runner_chunks_and_resume(tmp_path, monkeypatch):
    """The scenario's adaptive runner (tests/data/tiny.yaml: the hyperbola, 4 seeds, 4
    records): a run interrupted after its first chunk and resumed gives the uninterrupted
    run's numbers bit for bit; one chunk of 4 records and chunks of 1 record agree to
    10 rtol relative (the controller restarts at chunk ends; measured 2.7e-3, and 2.2e-2
    when records inside a chunk were interpolated)."""
    from helpers import TINY

    from sde_bias import run as R
    from sde_bias.run import run_scenario
    from sde_bias.scenario import load_scenario
    from sde_bias.reader import load_run

    def scenario(chunk):
        return load_scenario(TINY, overrides=["runners=[adaptive]", f"training.chunk_records={chunk}"])

    def params(path):
        return load_run(path)["runners"]["sde/adaptive"]["records"]["params"]

    one_chunk = params(run_scenario(scenario(4), tmp_path / "c4.h5", quiet=True).path)
    small = params(run_scenario(scenario(1), tmp_path / "c1.h5", quiet=True).path)
    rtol = 1e-3  # solvers/adaptive.yaml
    assert np.max(np.abs(small - one_chunk)) < 10 * rtol * np.max(np.abs(one_chunk))
    assert np.all(np.isfinite(one_chunk))

    real = R.Progress.update

    def stop_after_first_chunk(self, *a, **k):
        real(self, *a, **k)
        raise KeyboardInterrupt

    out = tmp_path / "cut.h5"
    monkeypatch.setattr(R.Progress, "update", stop_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario(1), out, quiet=True)
    monkeypatch.setattr(R.Progress, "update", real)
    assert not out.exists()
    resumed = run_scenario(scenario(1), out, resume=True, quiet=True)
    assert resumed.resumed
    np.testing.assert_array_equal(params(out), small)


def test_milstein_refuses_noncommutative_noise_check():
    """The commutativity check is zero for scalar noise and non-zero for the general
    minibatch noise of a Hadamard model (whose noise columns do not commute)."""
    problem = random_regression(sb.Hadamard(3), WithReplacement(2), 6, (3,))
    model, data = problem.model, problem.train
    theta = model.init(jax.random.PRNGKey(2))
    assert check_commutative_noise(SGDSDE(problem, 0.1), theta, data) > 1e-3
    uv = _uv_problem()
    assert check_commutative_noise(SGDSDE(uv, 0.1), jnp.array([1.0, 2.0]), UV_DATA) == 0.0


def test_order2_drift_is_modified_loss():
    """The order-2 drift is -grad(L + eta/4 |grad L|^2), checked against autodiff of
    the modified loss written out independently."""
    problem = random_regression(sb.Hadamard(3), WithReplacement(2), 6, (3,))
    model, data = problem.model, problem.train
    theta = model.init(jax.random.PRNGKey(2))
    eta = 0.1
    L = lambda th: 0.5 * jnp.mean((jax.vmap(model.predict, (None, 0))(th, data.x) - data.y) ** 2)  # noqa: E731
    modified = lambda th: L(th) + eta / 4 * jnp.sum(jax.grad(L)(th) ** 2)  # noqa: E731
    np.testing.assert_allclose(SGDSDE(problem, eta, order2=True).drift(0.0, theta, data), -jax.grad(modified)(theta), rtol=1e-10)

"""Three-way drift comparisons (fast versions of the issue's acceptance checks; the
full-size ones run from scenarios/theory_*.yaml)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import sde_bias as sb
from sde_bias.compare import ComparisonRow, drift_check, format_table
from sde_bias.data import Dataset
from sde_bias.noise import FullBatch, LabelNoise, WithReplacement
from sde_bias.problem import Problem
from sde_bias.sde import SDEStepper, SGDSDE
from sde_bias.sgd import DiscreteStepper


def test_uv_three_way_drift_agrees_and_needs_the_geometric_part():
    """u v, label noise delta = 1, eta = 0.1, 10 points on the balanced section near the
    minimum w = 1. One-step increments of SGD and Euler-Maruyama have mean
    a(w) h + eta r^2 w h (r = w - 1, <= 0.1 eta here), far below the SE.
    20,000 replicates per point: SE ~ 2 w / sqrt(R) ~ 0.014; the geometric part eta
    delta^2 w ~ 0.1 is ~7 SE, so leaving it out is detected."""
    model, eta, delta = sb.ScalarProduct(), 0.1, 1.0
    data = Dataset(jnp.ones((1,)), jnp.ones((1,)))
    problem = Problem(model, LabelNoise(FullBatch(), delta), train=data)
    sde = SGDSDE(problem, eta)
    ws = jnp.linspace(0.9, 1.1, 10)[:, None]
    thetas = jax.vmap(model.section)(ws)
    chk = drift_check(
        DiscreteStepper(problem, eta), SDEStepper(sde, diffrax.Euler()), sde, thetas, model.invariants, data,
        replicates=20_000, steps=1, key=jax.random.PRNGKey(0),
    )
    z = chk.max_abs_z()
    assert z["sgd_vs_theory"] < 3.5 and z["sde_vs_theory"] < 3.5, z
    assert z["sde_vs_gradient_part_only"] > 4, z
    assert "drift q[0]" in format_table(chk.rows())


def test_hadamard_drift_on_interpolating_manifold_is_pure_geometry():
    """Hadamard d = 4, n = 2 samples: on the interpolating manifold the mean gradient
    vanishes, so the whole drift is the geometric part; one SGD step has mean increment
    exactly eta^2 Cov[g_p, g_q] = (geometric part) * eta. 6 balanced interpolating
    points, 20,000 replicates."""
    d, eta = 4, 0.2
    X = jnp.array([[1.0, 0.5, -0.3, 0.8], [0.2, -1.0, 0.6, 0.4]])
    y = jnp.array([0.7, -0.4])
    model = sb.Hadamard(d)
    data = Dataset(X, y)
    problem = Problem(model, LabelNoise(WithReplacement(1), 0.5), train=data)
    sde = SGDSDE(problem, eta)
    w0 = jnp.linalg.lstsq(X, y)[0]
    null = jnp.linalg.svd(X)[2][2:]  # basis of the null space
    coef = jax.random.normal(jax.random.PRNGKey(1), (6, 2)) * 0.5
    ws = w0 + coef @ null
    np.testing.assert_allclose(ws @ X.T, jnp.broadcast_to(y, (6, 2)), atol=1e-12)
    thetas = jax.vmap(model.section)(ws)
    chk = drift_check(
        DiscreteStepper(problem, eta), SDEStepper(sde, diffrax.Euler()), sde, thetas, model.invariants, data,
        replicates=20_000, steps=1, key=jax.random.PRNGKey(2),
    )
    np.testing.assert_allclose(chk.gradient_part, 0, atol=1e-12)
    z = chk.max_abs_z()
    # 24 comparisons each: the 3.5 SE band has a ~1% chance of one false alarm per check
    assert z["sgd_vs_theory"] < 3.5 and z["sde_vs_theory"] < 3.5, z


def test_comparison_row_z_scores():
    r = ComparisonRow("x", 1.0, 0.1, 1.3, 0.1, 1.0)
    assert r.z_sgd == 0 and abs(r.z_sde - 3) < 1e-12 and abs(r.z_sgd_sde + 3 / np.sqrt(2)) < 1e-12


def test_binned_drift_recovers_a_linear_drift():
    """Trajectories of q' = q - k h q + s sqrt(h) z recorded every h: the binned
    E[dq | q] / h is -k q at the bin centres (linear drift: the bin average is exact), within
    4 SE in every populated bin."""
    from sde_bias.compare import binned_drift

    rng = np.random.default_rng(0)
    S, T, k, s, h = 400, 200, 1.5, 0.8, 0.01
    q = np.empty((S, T, 1))
    q[:, 0, 0] = rng.normal(0, 1, S)
    for t in range(1, T):
        q[:, t, 0] = q[:, t - 1, 0] * (1 - k * h) + s * np.sqrt(h) * rng.normal(size=S)
    edges = np.linspace(-1.5, 1.5, 11)
    b = binned_drift(q, h, edges)
    x = q[:, :-1, 0].ravel()
    which = np.digitize(x, edges) - 1
    expect = np.array([-k * x[which == i].mean() for i in range(10)])
    ok = np.isfinite(b.mean)
    assert ok.sum() >= 8
    assert np.all(np.abs(b.mean[ok] - expect[ok]) < 4 * b.se[ok])

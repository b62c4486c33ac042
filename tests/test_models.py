"""The model catalogue against the symmetry facts of docs/theory.md section 2.

Every model is checked for: per-sample gradients orthogonal to the generators, invariance
of ``pi`` and of the predictor along a finite group element, generators equal to a
central finite difference of the action, ``pi(section(q)) = q`` with the section
balanced, and linearly independent generators. Negative controls make sure each check
can fail.

Speed: everything a model's checks need is computed once per model (:func:`_facts`,
cached): one jitted function, plus eager calls of the action so that the (jitted) expm is
compiled once per matrix size for all models. The file pays about one XLA compilation
per model rather than one per primitive per test.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sde_bias.models import (
    Attention,
    CosineFeatures,
    CumsumHadamard,
    DeepHadamard,
    DeepLinear,
    GroupHadamard,
    Hadamard,
    Linear,
    MatrixFactorization,
    ScalarProduct,
    TwoLayerReLU,
    unbalance_columns,
    unbalance_units,
)

N_INPUTS = 6
FD_STEP = 1e-5


def _normal(shape):
    return lambda rng, n: rng.normal(size=(n,) + shape)


def _unit_interval(rng, n):
    return rng.uniform(size=n)


def _index_pair(rows, cols):
    """Matrix completion: a sample is one observed entry ``(i, j)``."""
    return lambda rng, n: np.stack([rng.integers(0, rows, n), rng.integers(0, cols, n)], axis=1)


# name -> (model, sampler of n inputs: (numpy Generator, n) -> array with leading axis n)
CASES = {
    "scalar": (ScalarProduct(), _normal(())),
    "hadamard_identity": (Hadamard(4), _normal((4,))),
    "hadamard_cosine": (Hadamard(6, CosineFeatures(6)), _unit_interval),
    "deep_hadamard_3": (DeepHadamard(4, 3), _normal((4,))),
    "linear": (Linear(4), _normal((4,))),
    "matrix_factorization": (MatrixFactorization(4, 3, 5), _index_pair(4, 5)),
    "two_layer_relu": (TwoLayerReLU(3, 5, 2), _normal((3,))),
    "attention_qk": (Attention(4, 5, 3), _normal((4, 5))),
    "attention_qkv": (Attention(4, 5, 3, value_dim=2), _normal((4, 5))),
    "attention_qkvo": (Attention(4, 5, 3, value_dim=2, output_dim=3), _normal((4, 5))),
    "cumsum_hadamard": (CumsumHadamard(6), _normal((6,))),
    "deep_linear_2": (DeepLinear((3, 2, 4)), _normal((3,))),
    "deep_linear_3": (DeepLinear((2, 2, 3, 3)), _normal((2,))),
    "group_hadamard_identity": (GroupHadamard(6, 2), _normal((6,))),
    "group_hadamard_cosine": (GroupHadamard(6, 3, CosineFeatures(6)), _unit_interval),
}

case_names = pytest.mark.parametrize("name", list(CASES))


def _predict_all(model, theta, xs):
    return jax.vmap(lambda x: model.predict(theta, x))(xs)


@functools.cache
def _facts(name: str) -> dict:
    """Everything the per-model checks need, at a random theta, from one jitted call."""
    model, sampler = CASES[name]
    k = model.lie_algebra_dim

    # random draws in numpy: jax.random inside the jitted function would add a threefry
    # compilation per model
    rng = np.random.default_rng(0)
    theta = rng.normal(size=model.num_params)
    xs = sampler(rng, N_INPUTS)
    s = 0.7 * rng.normal(size=k)  # a finite group element
    off = theta + 1e-3 * rng.normal(size=theta.shape)

    # The action at s and at +-h e_a (central finite difference), called eagerly, one
    # group element at a time: the jitted expm inside is then compiled once per matrix
    # size and shared by every model, instead of once per model inside its own graph.
    E = np.eye(k)
    coords = [s] + [FD_STEP * e for e in E] + [-FD_STEP * e for e in E]
    acted = np.stack([np.asarray(model.action(jnp.asarray(theta), jnp.asarray(c))) for c in coords])
    moved = acted[0]
    fd = (acted[1 : k + 1] - acted[k + 1 :]) / (2 * FD_STEP)

    @jax.jit
    def run(theta, xs, moved, off):
        jac = jax.vmap(lambda x: jax.jacrev(model.predict)(theta, x))(xs)
        q = model.invariants(theta)
        ts = model.section(q)
        return {
            "theta": theta,
            "xs": xs,
            "J": jac.reshape(-1, theta.shape[0]),  # one row per sample and output component
            "Xi": model.generators(theta),
            "moved": moved,
            "off": off,
            "q": q,
            "q_moved": model.invariants(moved),
            "q_off": model.invariants(off),
            "f": _predict_all(model, theta, xs),
            "f_batch": model.predict_batch(theta, xs),
            "f_moved": _predict_all(model, moved, xs),
            "f_off": _predict_all(model, off, xs),
            "section": ts,
            "q_section": model.invariants(ts),
            "f_section": _predict_all(model, ts, xs),
            "balance_section": model.balance(ts),
            "balance_theta": model.balance(theta),
        }

    return {**jax.tree.map(np.asarray, run(theta, xs, moved, off)), "fd": fd}


def _orthogonality_violation(J, Xi):
    """max_{i,a} |J_i . xi_a| / (|J_i| |xi_a|)."""
    dots = np.abs(J @ Xi.T)
    scale = np.linalg.norm(J, axis=1)[:, None] * np.linalg.norm(Xi, axis=1)[None, :]
    return float(np.max(dots / np.maximum(scale, 1e-300))) if dots.size else 0.0


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _is_balanced(balance, scale, tol):
    """Ratios 1 (where defined), differences / imbalances 0 (relative to ``scale``)."""
    for key, value in balance.items():
        v = np.asarray(value)
        if "ratio" in key:
            finite = v[np.isfinite(v)]
            if finite.size == 0 or np.max(np.abs(finite - 1.0)) > tol:
                return False
        elif np.max(np.abs(v), initial=0.0) > tol * scale:
            return False
    return True


# --------------------------------------------------------------------------- core facts
@case_names
def test_gradients_orthogonal_to_generators(name):
    model, _ = CASES[name]
    F = _facts(name)
    J, Xi = F["J"], F["Xi"]
    assert Xi.shape == (model.lie_algebra_dim, model.num_params)
    assert np.max(np.abs(J)) > 0.1  # the gradients are not trivially zero
    assert _orthogonality_violation(J, Xi) <= 1e-10

    # negative control: random directions are not orthogonal to the gradients
    R = np.random.default_rng(7).normal(size=(max(Xi.shape[0], 1), J.shape[1]))
    assert _orthogonality_violation(J, R) > 1e-3


@case_names
def test_action_preserves_invariants_and_predictor(name):
    model, _ = CASES[name]
    F = _facts(name)
    if model.lie_algebra_dim:
        assert _rel(F["moved"], F["theta"]) > 1e-2  # a genuine move along the orbit
    assert _rel(F["q_moved"], F["q"]) <= 1e-9
    assert _rel(F["f_moved"], F["f"]) <= 1e-9
    # negative control: a generic perturbation changes the invariants and the predictor
    assert _rel(F["q_off"], F["q"]) > 1e-6
    assert _rel(F["f_off"], F["f"]) > 1e-6


@case_names
def test_generators_match_finite_difference(name):
    model, _ = CASES[name]
    F = _facts(name)
    Xi, fd = F["Xi"], F["fd"]
    assert fd.shape == Xi.shape == (model.lie_algebra_dim, model.num_params)
    norms = np.linalg.norm(Xi, axis=1)
    assert np.all(norms > 0)
    assert np.all(np.linalg.norm(fd - Xi, axis=1) <= 1e-6 * norms)


@case_names
def test_section_inverts_invariants_and_is_balanced(name):
    model, _ = CASES[name]
    F = _facts(name)
    ts, theta = F["section"], F["theta"]
    assert ts.shape == theta.shape
    assert _rel(F["q_section"], F["q"]) <= 1e-9
    assert _is_balanced(F["balance_section"], float(np.sum(ts**2)), 1e-9)
    if model.lie_algebra_dim:
        # negative control: a random point is not balanced, so the check discriminates
        assert F["balance_theta"]
        assert not _is_balanced(F["balance_theta"], float(np.sum(theta**2)), 1e-3)
    if not isinstance(model, TwoLayerReLU):  # ReLU: see test_relu_section_sign_convention
        assert _rel(F["f_section"], F["f"]) <= 1e-9


@case_names
def test_lie_algebra_dim_is_generator_rank(name):
    model, _ = CASES[name]
    Xi = _facts(name)["Xi"]
    k = model.lie_algebra_dim
    assert Xi.shape == (k, model.num_params)
    if k:
        sv = np.linalg.svd(Xi, compute_uv=False)
        assert sv.min() > 1e-8 * sv.max()
        assert np.linalg.matrix_rank(Xi) == k


# --------------------------------------------------------------------------- model details
@pytest.mark.parametrize(
    "model",
    [
        MatrixFactorization(2, 3, 4),  # rank > min(rows, cols): zero-padded modes
        Attention(3, 2, 3, value_dim=3, output_dim=2),  # head_dim, value_dim > available rank
    ],
    ids=["factorization_padded", "attention_padded"],
)
def test_section_rank_deficient(model):
    @jax.jit
    def run(theta):
        q = model.invariants(theta)
        ts = model.section(q)
        return q, ts, model.invariants(ts), model.balance(ts)

    q, ts, q_back, bal = run(np.random.default_rng(5).normal(size=model.num_params))
    assert np.all(np.isfinite(np.asarray(ts)))
    assert _rel(q_back, q) <= 1e-9
    scale = float(jnp.sum(ts**2))
    checked = [key for key in bal if "gram_difference" in key]
    assert checked
    for key in checked:
        assert np.max(np.abs(np.asarray(bal[key]))) <= 1e-9 * scale


@case_names
def test_predict_batch_matches_predict(name):
    F = _facts(name)
    assert F["f_batch"].shape == F["f"].shape
    assert np.allclose(F["f_batch"], F["f"], rtol=1e-12, atol=1e-14)


def test_predictors_match_references():
    """The predictors against plain numpy formulas, at the random points of ``_facts``."""
    mf = CASES["matrix_factorization"][0]
    F = _facts("matrix_factorization")
    P, Q = (np.asarray(b) for b in mf.unflatten(F["theta"]).values())
    ref = np.array([(P @ Q)[i, j] for i, j in F["xs"]])
    assert np.allclose(F["f"], ref, rtol=1e-12)

    relu = CASES["two_layer_relu"][0]
    F = _facts("two_layer_relu")
    W, V = (np.asarray(b) for b in relu.unflatten(F["theta"]).values())
    ref = np.stack([V @ np.maximum(W @ x, 0.0) for x in F["xs"]])
    assert F["f"].shape == (N_INPUTS, 2)
    assert np.allclose(F["f"], ref, rtol=1e-12)

    for name, out_dim in [("attention_qk", 5), ("attention_qkv", 2), ("attention_qkvo", 3)]:
        att = CASES[name][0]
        F = _facts(name)
        b = {key: np.asarray(v) for key, v in att.unflatten(F["theta"]).items()}
        refs = []
        for X in F["xs"]:
            scores = (X @ b["WQ"]) @ (X @ b["WK"]).T / np.sqrt(3)
            A = np.exp(scores - scores.max(axis=1, keepdims=True))
            A /= A.sum(axis=1, keepdims=True)
            out = A @ X
            if "WV" in b:
                out = out @ b["WV"]
            if "WO" in b:
                out = out @ b["WO"]
            refs.append(out)
        assert F["f"].shape == (N_INPUTS, 4, out_dim)
        assert np.allclose(F["f"], np.stack(refs), rtol=1e-12, atol=1e-14)

    sig = CASES["cumsum_hadamard"][0]
    F = _facts("cumsum_hadamard")
    w1, w2 = (np.asarray(b) for b in sig.unflatten(F["theta"]).values())
    assert np.allclose(F["f"], F["xs"] @ np.cumsum(w1 * w2), rtol=1e-12)
    assert np.allclose(F["q"], np.cumsum(w1 * w2), rtol=1e-12)


def test_relu_section_sign_convention():
    """``section(pi(theta))`` lies on theta's orbit when theta obeys the sign convention,
    and ``pi`` cannot tell a unit from its sign-flipped copy."""
    model = CASES["two_layer_relu"][0]
    F = _facts("two_layer_relu")
    b = model.unflatten(F["theta"])
    W, V = np.asarray(b["W"]), np.asarray(b["V"])
    sign = np.sign(W[np.arange(model.hidden), np.argmax(np.abs(W), axis=1)])
    W, V = W * sign[:, None], V * sign[None, :]
    flipped_W, flipped_V = W.copy(), V.copy()
    flipped_W[0] *= -1
    flipped_V[:, 0] *= -1

    @jax.jit
    def run(theta, flipped, xs):
        ts = model.section(model.invariants(theta))
        s = jnp.log(
            jnp.linalg.norm(model.unflatten(ts)["W"], axis=1)
            / jnp.linalg.norm(model.unflatten(theta)["W"], axis=1)
        )
        return (
            ts, model.action(theta, s), model.invariants(theta), model.invariants(flipped),
            _predict_all(model, theta, xs), _predict_all(model, ts, xs),
            _predict_all(model, flipped, xs),
        )

    theta = model.flatten({"W": W, "V": V})
    flipped = model.flatten({"W": flipped_W, "V": flipped_V})
    ts, ts_from_action, q, q_flipped, f, f_ts, f_flipped = run(theta, flipped, F["xs"])
    assert _rel(ts_from_action, ts) <= 1e-9  # same orbit, group element exp(s)
    assert _rel(f_ts, f) <= 1e-9
    # negative control: flipping one unit keeps pi but changes the function
    assert _rel(q_flipped, q) <= 1e-12
    assert _rel(f_flipped, f) > 1e-6


def test_unbalance_units_ratios():
    model = TwoLayerReLU(3, 16, 1)  # the paper's experiment 1 sizes
    s = jnp.linspace(-1.2, 1.2, 16)

    rng = np.random.default_rng(10)
    init, xs = 0.05 * rng.normal(size=model.num_params), rng.normal(size=(N_INPUTS, 3))

    @jax.jit
    def run(init, xs, s):
        balanced = model.section(model.invariants(init))
        theta = unbalance_units(model, balanced, s)
        return (
            model.balance(balanced), model.balance(theta), theta, model.action(balanced, s),
            _predict_all(model, balanced, xs), _predict_all(model, theta, xs),
        )

    bal0, bal, theta, acted, f0, f = run(init, xs, s)
    assert np.allclose(bal0["unit_ratio"], 1.0, rtol=1e-12)
    assert np.allclose(bal["unit_ratio"], np.exp(-2 * np.asarray(s)), rtol=1e-10)
    assert _rel(theta, acted) <= 1e-12  # it is a group element ...
    assert _rel(f, f0) <= 1e-9  # ... so the function is unchanged


@pytest.mark.parametrize("q_scale", [1.0, 0.7])
def test_unbalance_columns_ratios(q_scale):
    model = Attention(8, 16, 8, value_dim=8)  # the paper's experiment 2 sizes
    s = jnp.linspace(-1.2, 1.2, 8)

    rng = np.random.default_rng(12)
    init, xs = 0.1 * rng.normal(size=model.num_params), rng.normal(size=(N_INPUTS, 8, 16))

    @jax.jit
    def run(init, xs, s):
        balanced = model.section(model.invariants(init))
        theta = unbalance_columns(model, balanced, s, q_scale=q_scale)
        return (
            model.unflatten(balanced), model.unflatten(theta), model.balance(theta),
            _predict_all(model, balanced, xs), _predict_all(model, theta, xs),
        )

    b0, b, bal, f0, f = run(init, xs, s)
    e = np.exp(2 * np.asarray(s))
    assert np.allclose(bal["column_ratio"], q_scale * e, rtol=1e-10)
    # balanced columns have |WQ_j| = |WK_j| = sqrt(sigma_j)
    sigma = np.sum(np.asarray(b0["WQ"]) ** 2, axis=0)
    assert np.allclose(sigma, np.sum(np.asarray(b0["WK"]) ** 2, axis=0), rtol=1e-10)
    frob = q_scale * np.sqrt(np.sum(sigma * e) / np.sum(sigma / e))
    assert np.isclose(bal["frobenius_ratio"], frob, rtol=1e-10)
    assert np.array_equal(b["WV"], b0["WV"])
    change = _rel(f, f0)
    if q_scale == 1.0:
        assert change <= 1e-9  # pure group element
    else:
        assert change > 1e-6  # q_scale rescales the scores: not a symmetry


def test_attention_rejects_output_without_value():
    with pytest.raises(ValueError):
        Attention(4, 5, 3, output_dim=2)

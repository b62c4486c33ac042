"""The model interface, and the two models added through it: ``deep_linear`` and
``group_hadamard``.

The per-model contract (gradients orthogonal to the generators, invariance along the action,
generators = finite differences of the action, section, batch predictor) runs for both in
tests/test_models.py (``CASES``). Here: the interface itself (abstract members only, final
models, every registered type builds), the discovered symmetry dimension against the
declared one (and the larger algebra of scalar-ended deep linear networks), the Gram matrix
closed forms, and the balance law of docs/theory.md section 2.4.
"""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import gaussian_inputs

import sde_bias.models as M
from sde_bias import model_registry as R
from sde_bias.discovery import discover_for_model, span_residual
from sde_bias.models._base import FINAL_MEMBERS
from sde_bias.symmetry import generator_matrices, gram_matrix, log_det_gram

jax.config.update("jax_enable_x64", True)


# --------------------------------------------------------------------------- the interface
def _catalogue_classes():
    return [c for c in vars(M).values() if isinstance(c, type) and issubclass(c, M.AbstractModel) and c is not M.AbstractModel]


def test_interface_declares_only_abstract_members():
    concrete = {
        name
        for name, member in vars(M.AbstractModel).items()
        if not name.startswith("_")
        and (callable(member) or isinstance(member, property))
        and not getattr(member if not isinstance(member, property) else member.fget, "__isabstractmethod__", False)
    }
    assert concrete == set(FINAL_MEMBERS), concrete
    assert M.AbstractModel.__abstractmethods__ == {
        "block_shapes", "input_shape", "input_bounds", "output_shape", "data_kinds",
        "predict", "predict_batch", "lie_algebra_dim", "action", "generators",
        "invariants", "section", "balance", "unbalance_length", "unbalance",
    }


def test_catalogue_models_are_final_and_complete():
    classes = _catalogue_classes()
    assert {c.__name__ for c in classes} >= {"DeepLinear", "GroupHadamard", "Predictor", "Hadamard", "Attention"}
    for cls in classes:
        assert not inspect.isabstract(cls), (cls, cls.__abstractmethods__)
        # final in the package (a test may specialise one for its own purposes)
        inside = [c for c in cls.__subclasses__() if c.__module__.startswith("sde_bias")]
        assert inside == [], f"{cls.__name__} is subclassed in the package: {inside}"
        for name in FINAL_MEMBERS:
            assert name not in vars(cls), f"{cls.__name__} overrides the final member {name}"


SAMPLE = {
    "scalar_product": {},
    "linear": {"dim": 3},
    "hadamard": {"dim": 3, "features": "cosine"},
    "deep_hadamard": {"dim": 2, "depth": 3},
    "group_hadamard": {"dim": 4, "group_size": 2},
    "matrix_factorization": {"rows": 3, "rank": 2, "cols": 4},
    "deep_linear": {"widths": [3, 2, 2]},
    "relu": {"in_dim": 2, "hidden": 3},
    "attention": {"seq_len": 2, "embed_dim": 3, "head_dim": 2},
    "cumsum_hadamard": {"length": 4},
    "predictor": {"function": "examples.my_models:gated_linear", "params": {"a": [], "w": [3]}, "input_shape": [3]},
}


def test_every_registered_type_builds_through_the_registry():
    assert set(SAMPLE) == set(R.MODEL_TYPES)
    for tag, keys in SAMPLE.items():
        cfg = R.config_classes()[tag].model_validate({"type": tag, **keys})
        model = R.build_model(cfg)
        assert isinstance(model, M.AbstractModel)
        p = model.num_params
        xdt = jnp.int32 if model.input_bounds is not None else jnp.float32
        out = jax.eval_shape(model.predict, jax.ShapeDtypeStruct((p,), jnp.float32), jax.ShapeDtypeStruct(model.input_shape, xdt))
        assert out.shape == model.output_shape, tag


# --------------------------------------------------------------------------- deep_linear
def _discovered(model, seed=0):
    return discover_for_model(model, gaussian_inputs(*model.input_shape), jax.random.PRNGKey(seed), dtype=jnp.float64)


@pytest.mark.parametrize("widths", [(2, 2, 2), (3, 2, 3), (1, 1, 1)])
def test_deep_linear_discovered_algebra_is_the_declared_one(widths):
    model = M.DeepLinear(widths)
    assert model.lie_algebra_dim == sum(h * h for h in widths[1:-1])
    found = _discovered(model)
    assert found.dimension == model.lie_algebra_dim
    theta = jax.random.normal(jax.random.PRNGKey(3), (model.num_params,), jnp.float64)
    declared = generator_matrices(model, theta)
    assert float(jnp.max(span_residual(found.basis, declared))) < 1e-8


@pytest.mark.parametrize("widths,dim", [((3, 2, 1), 7), ((1, 2, 1), 6), ((2, 1, 2, 2), 7)])
def test_deep_linear_width_one_layers_have_more_symmetry_and_are_refused(widths, dim):
    """Discovery finds the GL(h_k) algebra plus so(h) x R^m directions next to a width-1
    layer (a scalar end or inner); the model states that count (also (3, 2, 2, 1): 10,
    (2, 2, 1, 2, 2): 13, checked by discovery when this was written) and refuses those
    widths rather than declare a sub-algebra."""
    assert M.extra_symmetry_dim((3, 2, 2, 1)) == 2 and M.extra_symmetry_dim((2, 2, 1, 2, 2)) == 4
    assert sum(h * h for h in widths[1:-1]) + M.extra_symmetry_dim(widths) == dim
    shapes = [(widths[i + 1], widths[i]) for i in range(len(widths) - 1)]
    p = sum(a * b for a, b in shapes)

    def predict(theta, x):
        out, i = x, 0
        for a, b in shapes:
            out = theta[i : i + a * b].reshape(a, b) @ out
            i += a * b
        return out

    from sde_bias.discovery import discover_symmetries

    found = discover_symmetries(predict, p, gaussian_inputs(widths[0]), jax.random.PRNGKey(0), dtype=jnp.float64)
    assert found.dimension == dim
    with pytest.raises(ValueError, match=f"algebra dimension {dim}"):
        M.DeepLinear(widths)


def test_deep_linear_gram_closed_form_two_layers():
    """L = 2, f = W2 W1 x: G = P^T P kron I + I kron Q Q^T with P = W2, Q = W1
    (generators (W2 E_ab, -E_ab W1), rows (a, b) row major)."""
    model = M.DeepLinear((4, 3, 5))
    theta = jax.random.normal(jax.random.PRNGKey(1), (model.num_params,), jnp.float64)
    b = model.unflatten(theta)
    P, Q = np.asarray(b["W2"]), np.asarray(b["W1"])
    h = 3
    expected = np.kron(P.T @ P, np.eye(h)) + np.kron(np.eye(h), Q @ Q.T)
    G = np.asarray(gram_matrix(model, theta))
    np.testing.assert_allclose(G, expected, rtol=1e-12, atol=1e-12)
    # and a wrong closed form (the factors swapped) is rejected
    assert not np.allclose(G, np.kron(Q @ Q.T, np.eye(h)) + np.kron(np.eye(h), P.T @ P), rtol=1e-3)
    np.testing.assert_allclose(float(log_det_gram(model, theta).log_det), np.linalg.slogdet(expected)[1], rtol=1e-10)


def test_deep_linear_balance_conserved_by_gradient_flow():
    """d/dt (W_{k+1}^T W_{k+1} - W_k W_k^T) = 0 along -grad L for any loss of the predictor
    (here a random regression), while a generic direction moves it."""
    model = M.DeepLinear((3, 2, 2, 3))
    key = jax.random.PRNGKey(2)
    kt, kx, ky, kd = jax.random.split(key, 4)
    theta = jax.random.normal(kt, (model.num_params,), jnp.float64)
    xs, ys = jax.random.normal(kx, (7, 3), jnp.float64), jax.random.normal(ky, (7, 3), jnp.float64)

    def loss(th):
        return 0.5 * jnp.sum((model.predict_batch(th, xs) - ys) ** 2)

    g = jax.grad(loss)(theta)
    _, rate = jax.jvp(model.balance, (theta,), (-g,))
    _, other = jax.jvp(model.balance, (theta,), (jax.random.normal(kd, theta.shape, jnp.float64),))
    scale = float(jnp.linalg.norm(g) * jnp.linalg.norm(theta))
    for name in ("gram_difference1", "gram_difference2"):
        assert float(jnp.max(jnp.abs(rate[name]))) < 1e-12 * scale
        assert float(jnp.max(jnp.abs(other[name]))) > 1e-3


def test_deep_linear_unbalance_is_a_group_element():
    model = M.DeepLinear((2, 3, 2))
    theta = jax.random.normal(jax.random.PRNGKey(4), (model.num_params,), jnp.float64)
    s = jnp.array([0.3, -0.2, 0.5])
    assert model.unbalance_length == 3
    moved = model.unbalance(theta, s)
    via_action = model.action(theta, jnp.diag(s).ravel())
    np.testing.assert_allclose(moved, via_action, rtol=1e-12)
    np.testing.assert_allclose(model.invariants(moved), model.invariants(theta), rtol=1e-12)


# --------------------------------------------------------------------------- group_hadamard
@pytest.mark.parametrize("dim,k", [(6, 2), (6, 3), (4, 1)])
def test_group_hadamard_discovered_dimension(dim, k):
    model = M.GroupHadamard(dim, k)
    assert model.lie_algebra_dim == dim // k
    assert _discovered(model).dimension == dim // k


def test_group_hadamard_gram_closed_form():
    """G = diag(s_g^2 + |v_g|^2); on the balanced section G_gg = 2 |beta_g|."""
    model = M.GroupHadamard(6, 3)
    theta = jax.random.normal(jax.random.PRNGKey(5), (model.num_params,), jnp.float64)
    b = model.unflatten(theta)
    s, v = np.asarray(b["s"]), np.asarray(b["v"]).reshape(2, 3)
    np.testing.assert_allclose(np.asarray(gram_matrix(model, theta)), np.diag(s**2 + np.sum(v**2, axis=1)), rtol=1e-12, atol=1e-14)
    beta = np.asarray(model.invariants(theta)).reshape(2, 3)
    ts = model.section(jnp.asarray(beta.ravel()))
    np.testing.assert_allclose(np.asarray(gram_matrix(model, ts)), np.diag(2 * np.linalg.norm(beta, axis=1)), rtol=1e-12)
    np.testing.assert_allclose(
        float(log_det_gram(model, ts).log_det), sum(math.log(2 * n) for n in np.linalg.norm(beta, axis=1)), rtol=1e-12
    )


def test_group_hadamard_rejects_a_group_size_that_does_not_divide():
    with pytest.raises(ValueError, match="divisor"):
        M.GroupHadamard(5, 2)

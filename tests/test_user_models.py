"""Bring your own model (docs/models.md): a class of one's own named ``module:Class``, a bare
predictor ``f(params, x)`` whose symmetry is discovered, and the one-line errors of a model
that does not import, is not jittable or returns the wrong shape.

The worked example is examples/my_models.py: ``f(a, w; x) = a (w . x)`` as the class
``GatedLinear`` and as the function ``gated_linear``. Closed forms: generator ``(a, -w)``,
Gram ``a^2 + |w|^2``, conserved quadratic ``a^2 - |w|^2``; the discovered generator is the
same direction normalised to Frobenius norm 1, i.e. ``diag(1, -1, -1, -1) / 2``.
"""

import os
import subprocess
import sys
import textwrap

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ROOT

from sde_bias.model_registry import PredictorConfig, build_model, import_object
from sde_bias.scenario import ScenarioError, load_scenario, scenario_from_dict
from sde_bias.sde import SGDSDE
from sde_bias.symmetry import (
    balance_rate,
    gram_matrix,
    log_det_gram,
    noise_equilibrium,
    symmetric_generators,
    tangent_projector,
)
from sde_bias.quotient import ito_projection

jax.config.update("jax_enable_x64", True)
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples' module and data paths are relative to the root


def _models():
    cls_model = import_object("examples.my_models:GatedLinear")(3)
    cfg = PredictorConfig.model_validate(
        {"type": "predictor", "function": "examples.my_models:gated_linear", "params": {"a": [], "w": [3]}, "input_shape": [3],
         "invariants": "examples.my_models:gated_invariants", "section": "examples.my_models:gated_section"}
    )
    return cls_model, build_model(cfg)


def test_predictor_discovers_the_symmetry_of_the_class():
    cls_model, pred = _models()
    assert pred.lie_algebra_dim == 1 and pred.num_params == cls_model.num_params == 4
    X = np.asarray(pred.basis[0]) * np.sign(pred.basis[0][0, 0])
    np.testing.assert_allclose(X, np.diag([1.0, -1.0, -1.0, -1.0]) / 2, atol=1e-10)
    # the balance observable: the one symmetric generator, C = (a^2 - |w|^2) / 2
    theta = jnp.array([0.7, 1.0, -0.4, 2.0])
    assert pred.charges.shape == (1, 4, 4)
    np.testing.assert_allclose(pred.balance(theta)["charge"][0], (0.49 - 1.0 - 0.16 - 4.0) / 2, rtol=1e-12)


def test_all_theory_works_on_a_discovered_predictor():
    """Gram, log det, projector, balance law, noise equilibrium and the Ito projection of the
    predictor model against the same quantities of the class (closed forms above)."""
    from sde_bias.data import Dataset
    from sde_bias.noise import FullBatch, LabelNoise
    from sde_bias.problem import Problem

    cls_model, pred = _models()
    theta = jnp.array([0.7, 1.0, -0.4, 2.0])
    g_cls, g_pred = gram_matrix(cls_model, theta), gram_matrix(pred, theta)
    np.testing.assert_allclose(g_cls, [[0.49 + 1.0 + 0.16 + 4.0]], rtol=1e-12)
    np.testing.assert_allclose(g_pred, g_cls / 4, rtol=1e-10)  # generator of norm 1, not 2
    np.testing.assert_allclose(log_det_gram(pred, theta).log_det, np.log(5.65 / 4), rtol=1e-10)
    np.testing.assert_allclose(tangent_projector(pred, theta), tangent_projector(cls_model, theta), atol=1e-10)

    xs = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    data = Dataset(xs, jax.random.normal(jax.random.PRNGKey(1), (5,)))
    problems = [Problem(m, LabelNoise(FullBatch(), 0.5), train=data) for m in (cls_model, pred)]
    sdes = [SGDSDE(p, 0.1) for p in problems]
    A_cls = symmetric_generators(cls_model, theta)
    A_pred = symmetric_generators(pred, theta)
    assert A_cls.shape == A_pred.shape == (1, 4, 4)
    np.testing.assert_allclose(A_pred, A_cls, atol=1e-10)  # both canonical: diag(1, -1, -1, -1) / 2
    sig = [s.diffusion_matrix(0.0, theta, data) for s in sdes]
    np.testing.assert_allclose(sig[1], sig[0], rtol=1e-12)
    np.testing.assert_allclose(balance_rate(A_pred, sig[1]), balance_rate(A_cls, sig[0]), rtol=1e-10)
    eq = [noise_equilibrium(m, theta, lambda th, s=s: s.diffusion_matrix(0.0, th, data), A) for m, s, A in
          zip((cls_model, pred), sdes, (A_cls, A_pred))]
    assert bool(eq[0].converged) and bool(eq[1].converged)
    np.testing.assert_allclose(eq[1].theta, eq[0].theta, rtol=1e-8)
    proj = [ito_projection(s, m.invariants, theta, data) for s, m in zip(sdes, (cls_model, pred))]
    for name in ("drift", "diffusion", "geometric_part"):
        np.testing.assert_allclose(getattr(proj[1], name), getattr(proj[0], name), rtol=1e-10, atol=1e-14)


def test_worked_examples_run_end_to_end_with_theory(tmp_path):
    """examples/gated_linear.yaml (the class) and examples/gated_predictor.yaml (the bare
    function), both on examples/data/gated.csv, with a theory block: same initial points, so
    the same trajectories; the predictor's balance charge is half the class's imbalance and
    its log det G is the class's minus log 4."""
    from sde_bias import run_scenario

    out = {}
    for name in ("gated_linear", "gated_predictor"):
        sc = load_scenario(EXAMPLES / f"{name}.yaml", variant="quick")
        out[name] = tmp_path / f"{name}.h5"
        run_scenario(sc, out[name], quiet=True)
    with h5py.File(out["gated_linear"]) as a, h5py.File(out["gated_predictor"]) as b:
        for g in ("sgd", "gd", "sde/euler_maruyama"):
            for k in ("loss", "params", "invariants"):
                np.testing.assert_array_equal(a[g][k][...], b[g][k][...])
            np.testing.assert_allclose(b[g]["balance.charge"][..., 0], a[g]["balance.imbalance"][...] / 2, rtol=1e-12)
            np.testing.assert_allclose(b[g]["log_det_gram"][...], a[g]["log_det_gram"][...] - np.log(4), rtol=1e-12)
        for f in (a, b):
            assert {"balance_check", "drift_check"} <= set(f["theory"])
            assert f["theory/drift_check/theory"].shape == (2, 3)
            np.testing.assert_array_equal(f["sgd/params"][:, 0], f["gd/params"][:, 0])
        np.testing.assert_allclose(b["theory/drift_check/theory"][...], a["theory/drift_check/theory"][...], rtol=1e-10)
        # the data came from the csv file: 24 samples with y = x . (1.2, -0.6, 0.3) + noise
        x, y = a["data/train_x"][...], a["data/train_y"][...]
        assert x.shape == (24, 3) and y.shape == (24,)
        assert np.std(y - x @ np.array([1.2, -0.6, 0.3])) < 0.2


# --------------------------------------------------------------------------- errors
BASE = {
    "name": "byo",
    "precision": "float64",
    "init": {"std": 0.3},
    "data": {"type": "fixed", "x": [[1.0, 0.0, 0.5], [0.2, 1.0, -0.3]], "y": [0.5, -0.2]},
    "training": {"lr": 0.1, "steps": 2, "record_every": 1},
    "runners": ["gd"],
}


def _error(model, monkeypatch, tmp_path, source=None) -> str:
    if source is not None:
        (tmp_path / f"{source[0]}.py").write_text(textwrap.dedent(source[1]))
        monkeypatch.chdir(tmp_path)
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict({**BASE, "model": model}, "byo.yaml")
    msg = str(e.value)
    assert "Traceback" not in msg and len(msg.splitlines()) == 1, msg
    return msg


GOOD_CLASS = '''
import equinox as eqx, jax.numpy as jnp
from sde_bias.models import AbstractModel, generators_by_jvp, predict_each

class {name}(AbstractModel):
    dim: int = eqx.field(static=True)
    block_shapes = property(lambda self: {{"a": (), "w": (self.dim,)}})
    input_shape = property(lambda self: (self.dim,))
    input_bounds = property(lambda self: None)
    output_shape = property(lambda self: ())
    data_kinds = property(lambda self: frozenset())
    lie_algebra_dim = property(lambda self: 1)
    unbalance_length = property(lambda self: 1)
    def predict(self, theta, x):
        b = self.unflatten(theta)
        {predict}
    def predict_batch(self, theta, xs): return predict_each(self, theta, xs)
    def action(self, theta, s):
        b = self.unflatten(theta)
        return self.flatten({{"a": b["a"] * jnp.exp(s[0]), "w": b["w"] * jnp.exp(-s[0])}})
    def generators(self, theta): return generators_by_jvp(self, theta)
    def invariants(self, theta):
        b = self.unflatten(theta)
        return b["a"] * b["w"]
    def section(self, q): return jnp.concatenate([jnp.ones(1), q])
    def balance(self, theta): return {{}}
    def unbalance(self, theta, s): return self.action(theta, s)
'''


def test_user_class_is_validated_and_loaded(monkeypatch, tmp_path):
    src = ("byo_ok", GOOD_CLASS.format(name="Gate", predict='return b["a"] * (b["w"] @ x)'))
    (tmp_path / "byo_ok.py").write_text(textwrap.dedent(src[1]))
    monkeypatch.chdir(tmp_path)
    sc = scenario_from_dict({**BASE, "model": {"type": "byo_ok:Gate", "dim": 3}}, "byo.yaml")
    from sde_bias.build import build_problem

    model = build_problem(sc).problem.model
    assert type(model).__name__ == "Gate" and model.dim == 3


@pytest.mark.parametrize(
    "case,model,source,fragment",
    [
        ("no module", {"type": "no_such_pkg.mod:M"}, None, "model.type: cannot import module 'no_such_pkg.mod'"),
        ("no class", {"type": "examples.my_models:Nope"}, None, "model.type: module 'examples.my_models' has no attribute 'Nope'"),
        ("not a model", {"type": "examples.my_models:gated_linear"}, None, "model.type: 'examples.my_models:gated_linear' is not a model class"),
        ("import error", {"type": "byo_broken:M"}, ("byo_broken", "raise RuntimeError('boom')\n"), "model.type: cannot import module 'byo_broken'"),
        ("bad kwargs", {"type": "examples.my_models:GatedLinear", "dims": 3}, None, "model: GatedLinear(dims=3) failed: TypeError"),
        ("not jittable", {"type": "byo_jit:Gate", "dim": 3},
         ("byo_jit", GOOD_CLASS.format(name="Gate", predict='return b["a"] * float(b["w"] @ x)')), "model.type: Gate.predict(theta, x) is not jittable"),
        ("wrong shape", {"type": "byo_shape:Gate", "dim": 3},
         ("byo_shape", GOOD_CLASS.format(name="Gate", predict='return b["a"] * b["w"] * x')), "model.type: Gate.predict(theta, x) returns shape (3,), expected ()"),
        ("abstract", {"type": "byo_abs:Half"},
         ("byo_abs", "from sde_bias.models import AbstractModel\nclass Half(AbstractModel):\n    pass\n"), "model.type: byo_abs:Half does not implement the model interface: missing action, balance, block_shapes"),
        ("predictor import", {"type": "predictor", "function": "nowhere:f", "params": {"w": [3]}, "input_shape": [3]}, None,
         "model.function: cannot import module 'nowhere'"),
        ("predictor shapes", {"type": "predictor", "function": "byo_f:f", "params": {"w": [2]}, "input_shape": [3]},
         ("byo_f", "def f(params, x):\n    return params['w'] @ x\n"), "model.function: byo_f:f(params, x) with params {w: [2]} and x of shape (3,) fails"),
        ("predictor jit", {"type": "predictor", "function": "byo_g:f", "params": {"w": [3]}, "input_shape": [3]},
         ("byo_g", "def f(params, x):\n    return 1.0 if params['w'][0] > 0 else 0.0\n"), "model.function: byo_g:f(params, x)"),
        ("predictor section", {"type": "predictor", "function": "examples.my_models:gated_linear", "params": {"a": [], "w": [3]},
                               "input_shape": [3], "section": "examples.my_models:gated_section"}, None, "model.section: a section inverts the invariants"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_bad_user_models_are_one_line_errors(case, model, source, fragment, monkeypatch, tmp_path):
    msg = _error(model, monkeypatch, tmp_path, source)
    assert f"byo.yaml: {fragment}" in msg or fragment in msg, msg
    if case == "predictor jit":
        assert "is not jittable" in msg


def test_validate_command_exits_2_on_a_broken_user_model(tmp_path):
    text = (EXAMPLES / "gated_linear.yaml").read_text().replace("examples.my_models:GatedLinear", "examples.my_models:NoSuchModel")
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "sde_bias.cli", "validate", "--deep", str(p)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = [l for l in res.stderr.splitlines() if "model.type" in l]
    assert lines and "has no attribute 'NoSuchModel'" in lines[0]
    assert "Traceback" not in res.stderr

"""The inverse-design stage of a run (scenario `design:` block), the designed models it uses and the
`sde-bias design` command (docs/design.md)."""

import subprocess
import sys

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from helpers import ROOT

import sde_bias.design as sb_design
from sde_bias import ScenarioError, run_scenario
from sde_bias.cli import main
from sde_bias.design_models import ScaledGroupHadamard, SynthesisHadamard, synthesis_matrix
from sde_bias.scenario import scenario_from_dict


# ----------------------------------------------------------------------------- designed models
@pytest.mark.parametrize("kind", ["identity", "cosine", "haar"])
def test_orthonormal_syntheses(kind):
    S = synthesis_matrix(kind, 8)
    np.testing.assert_allclose(S.T @ S, np.eye(8), atol=1e-12)


def test_tv_synthesis_is_cumsum_and_cosine_atoms_are_cosines():
    c = np.arange(1.0, 7.0)
    np.testing.assert_allclose(synthesis_matrix("tv", 6) @ c, np.cumsum(c))
    S = synthesis_matrix("cosine", 6)
    i = np.arange(6)
    np.testing.assert_allclose(S[:, 2], np.sqrt(2 / 6) * np.cos(np.pi * (i + 0.5) * 2 / 6), atol=1e-14)
    with pytest.raises(ValueError, match="power-of-2"):
        synthesis_matrix("haar", 6)


@pytest.mark.parametrize(
    "model",
    [SynthesisHadamard(8, 2, "tv", np.linspace(0.5, 2, 8)), SynthesisHadamard(8, 3, "haar"),
     ScaledGroupHadamard(6, 2, [1.0, 2.0, 0.5])],
    ids=["tv-depth2", "haar-depth3", "group"],
)
def test_designed_models_symmetry_and_section(model):
    """beta is invariant under the rescalings, the section is a right inverse of beta and balanced."""
    jax.config.update("jax_enable_x64", True)
    th = model.init(jax.random.PRNGKey(0), dtype=jnp.float64)
    beta = model.invariants(th)
    s = jax.random.normal(jax.random.PRNGKey(1), (model.lie_algebra_dim,), jnp.float64)
    np.testing.assert_allclose(model.invariants(model.action(th, s)), beta, rtol=1e-12, atol=1e-12)
    sec = model.section(beta)
    np.testing.assert_allclose(model.invariants(sec), beta, rtol=1e-10, atol=1e-12)
    for v in model.balance(sec).values():
        np.testing.assert_allclose(v, 0.0, atol=1e-10)
    x = jax.random.normal(jax.random.PRNGKey(2), (model.dim,), jnp.float64)
    assert float(model.predict(th, x)) == pytest.approx(float(x @ beta), rel=1e-12)


# ----------------------------------------------------------------------------- the design: block
def _base(**design):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 4))
    y = X @ np.array([1.0, 0.0, -0.5, 0.0])
    return {
        "name": "t",
        "precision": "float64",
        "model": {"type": "sde_bias.design_models:SynthesisHadamard", "dim": 4},
        "init": {"std": 0.0, "point": {"u1": [0.3, 0.5, 0.2, 0.4], "u2": [0.1, -0.2, 0.3, 0.0]}},
        "data": {"type": "fixed", "x": X.tolist(), "y": y.tolist(), "target": [1.0, 0.0, -0.5, 0.0]},
        "training": {"lr": 0.05, "steps": 4000, "record_every": 400},
        "seeds": {"count": 1},
        "runners": ["gd"],
        "record": ["loss", "invariants"],
        "design": design,
    }


def test_design_block_errors_name_the_key():
    with pytest.raises(ScenarioError, match=r"design\.alternatives.*unknown alternative 'depth_9'"):
        scenario_from_dict(_base(alternatives=["l1", "depth_9"]), "f.yaml")
    with pytest.raises(ScenarioError, match=r"design\.mechanism"):
        scenario_from_dict(_base(mechanism="noise"), "f.yaml")
    with pytest.raises(ScenarioError, match=r"design\.weights"):
        scenario_from_dict(_base(weights=[1.0, -1.0]), "f.yaml")


def test_stage_gd_end_point_matches_the_init_shape_potential(tmp_path, capsys):
    """GD from an unbalanced (u0, v0) on n = 2, d = 4 ends at the calculator's gd prediction (the
    initialisation-shape entropy), not at min l2 or the truth; residuals below 1e-6; inspect shows it."""
    sc = scenario_from_dict(_base(target="weighted_l1", mechanism="gd"), "t.yaml")
    out = tmp_path / "d.h5"
    run_scenario(sc, out, quiet=True)
    with h5py.File(out) as f:
        g = f["design"]
        assert g.attrs["status"] == "ok"
        for name in ("gd", "label_noise", "target", "l1", "quotient"):
            assert g[f"predictions/{name}"].attrs["max_residual"] < 1e-6, name
        # the paper's quotient potential at each prediction, from the model's Gram on the section
        a = g["predictions/quotient"].attrs
        v = sb_design.quotient_potential_value(g["predictions/quotient"][0])
        assert a["quotient_degenerate"] == v.degenerate and a["quotient_potential"] == pytest.approx(v.value, rel=1e-9)
        d = g["runners/gd"]
        gd = d["gd/mean"][...]
        # falls from the start to within 1e-3 of the prediction (converged: the last records agree)
        assert gd[0] > 0.1 and gd[-1] < 1e-3 and abs(gd[-1] - gd[-2]) < 1e-2 * gd[-1]
        assert d["l2/mean"][-1] > 1e-2 and d["truth/mean"][-1] > 1e-2
        # the prediction is independent of the run: GD's own end point against it
        beta_end = f["gd/invariants"][0, -1]
        pred = g["predictions/gd"][0]
        assert np.linalg.norm(beta_end - pred) / np.linalg.norm(pred) == pytest.approx(gd[-1], rel=1e-9)
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "design: target weighted_l1, relies on gd" in text and "prediction gd" in text
    assert "prediction quotient" in text and "V = 1/2 log det G" in text
    # the remainder is GD's O(lr) distance from gradient flow: halving lr (twice the steps) halves it
    raw = _base(target="weighted_l1", mechanism="gd")
    raw["training"] = {"lr": 0.025, "steps": 8000, "record_every": 800}
    run_scenario(scenario_from_dict(raw, "t.yaml"), tmp_path / "half.h5", quiet=True)
    with h5py.File(tmp_path / "half.h5") as f:
        half = f["design/runners/gd/gd/mean"][-1]
    assert 1.6 < gd[-1] / half < 2.4, (gd[-1], half)


def test_report_section_draws_the_figures(tmp_path):
    from sde_bias.design_run import design_report_section

    sc = scenario_from_dict({**_base(), "training": {"lr": 0.05, "steps": 40, "record_every": 20}}, "t.yaml")
    out = tmp_path / "r.h5"
    run_scenario(sc, out, quiet=True)
    md, figs = design_report_section(out, tmp_path / "figs")
    assert "Inverse design: t" in md and len(figs) == 2
    assert all((tmp_path / "figs" / p.split("/")[-1]).stat().st_size > 1000 for p in figs)


def test_report_design_section(tmp_path):
    """A run whose scenario names ``report: {section: design}`` gets the design section in
    ``sde-bias report``: the stage's summary (with the quotient potential), both figures on disk."""
    from sde_bias.report import build_report

    raw = {**_base(target="weighted_l1", mechanism="gd"), "training": {"lr": 0.05, "steps": 40, "record_every": 20},
           "report": {"section": "design"}}
    out = tmp_path / "r.h5"
    run_scenario(scenario_from_dict(raw, "t.yaml"), out, quiet=True)
    md_path, sections = build_report([str(out)], str(tmp_path / "rep"))
    assert [s.kind for s in sections] == ["design"]
    text = md_path.read_text()
    assert "Inverse design: predicted against simulated interpolators" in text
    assert "prediction quotient" in text and "V = 1/2 log det G" in text
    figs = sections[0].figures
    assert len(figs) == 2 and all(p.stat().st_size > 1000 for p in figs)
    assert all(f"figures/{p.name}" in text for p in figs)


# ----------------------------------------------------------------------------- sde-bias design
def _cli(*argv):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "sde_bias.cli", *argv], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def test_design_help_documents_the_targets():
    res = _cli("design", "--help")
    assert res.returncode == 0
    for t in ("weighted_l1", "tv", "cosine", "haar", "group", "low_rank", "--mechanism", "opposite directions"):
        assert t in res.stdout, t


@pytest.mark.parametrize(
    "argv, message",
    [
        (["haar"], "haar: the Haar synthesis needs a power-of-2 dimension, got 20"),
        (["weighted_l1", "--weights", "1,2"], "--weights: weighted_l1 needs 20 weights (one per coordinate), got 2"),
        (["group", "--group-size", "3"], "--group-size 3: must divide the dimension 20"),
        (["weighted_l1", "--data", "no/such.npz"], "--data no/such.npz: no such file"),
        (["weighted_l1", "--problem", "3"], "--problem '3': expected N,D"),
    ],
)
def test_design_errors_are_one_line_exit_2(argv, message):
    res = _cli("design", *argv)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr


def test_design_weighted_l1_writes_a_valid_scenario(tmp_path):
    """The written scenario holds the data, the label-noise scales lambda = w / a (normalised; a = mean X^2
    computed here) and a design: block; the printout says what the design relies on and warns."""
    out = tmp_path / "s.yaml"
    w = [1.0] * 4 + [2.0] * 4
    res = _cli("design", "weighted_l1", "--problem", "5,8", "--weights", ",".join(map(str, w)), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "relies on: label_noise" in res.stdout and "WARNING" in res.stdout and "opposite" in res.stdout
    assert "predicted (quotient" in res.stdout and "V = 1/2 log det G" in res.stdout
    raw = yaml.safe_load(out.read_text())
    X = np.asarray(raw["data"]["x"])
    lam = np.asarray(w) / np.mean(X**2, axis=0)
    np.testing.assert_allclose(raw["model"]["scales"], lam / lam.max(), rtol=1e-12)
    assert raw["design"] == {"target": "weighted_l1", "mechanism": "label_noise", "weights": w}
    assert raw["noise"]["label_noise"] == 1.0 and "quick" in raw["variants"]
    scenario_from_dict(raw, str(out), variant="quick")


def test_stage_low_rank_predicts_an_interpolating_weighted_nuclear_norm_minimiser(tmp_path):
    """P Q on 6 observed entries of a 3 x 3 matrix: the stage's label-noise and target predictions
    interpolate the observed entries (checked here against the data) with KKT residuals below 1e-6."""
    idx = [[0, 0], [0, 1], [1, 1], [1, 2], [2, 0], [2, 2]]
    M = np.outer([1.0, -0.5, 0.8], [0.6, 1.0, -0.4])
    raw = {
        "name": "lr", "precision": "float64",
        "model": {"type": "matrix_factorization", "rows": 3, "rank": 3, "cols": 3},
        "init": {"std": 0.1},
        "data": {"type": "fixed", "x": idx, "y": [float(M[i, j]) for i, j in idx]},
        "noise": {"scheme": "with_replacement", "batch_size": 1, "label_noise": 0.5},
        "training": {"lr": 0.05, "steps": 40, "record_every": 20},
        "seeds": {"count": 2}, "runners": ["sgd"], "record": ["invariants"],
        "design": {"target": "low_rank", "alternatives": ["l2"]},
    }
    out = tmp_path / "lr.h5"
    run_scenario(scenario_from_dict(raw, "lr.yaml"), out, quiet=True)
    with h5py.File(out) as f:
        g = f["design"]
        assert g.attrs["status"] == "ok" and set(g["predictions"]) == {"label_noise", "target", "l2"}
        for name in ("label_noise", "target"):
            assert g[f"predictions/{name}"].attrs["max_residual"] < 1e-6
            B = g[f"predictions/{name}"][0].reshape(3, 3)
            np.testing.assert_allclose([B[i, j] for i, j in idx], [M[i, j] for i, j in idx], atol=1e-7)
        # slow time k eta^2 delta^2 c kappa n with c = 1 (half_sum) and kappa n = 1 / B = 1
        np.testing.assert_allclose(g["runners/sgd/tau"][...], np.array([0, 20, 40]) * 0.05**2 * 0.5**2, rtol=1e-12)

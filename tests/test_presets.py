"""Solver presets (sde_bias.presets): loading, validation, and every preset running."""

from pathlib import Path

import numpy as np
import pytest

from sde_bias.presets import PresetError, load_presets, resolve_preset
from sde_bias.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"
REQUIRED = ["gd", "sgd", "svag", "euler_maruyama", "milstein", "heun", "srk", "adaptive"]


def test_required_presets_exist_and_are_documented():
    presets = load_presets()
    assert set(REQUIRED) <= set(presets)
    for name, p in presets.items():
        assert p.name == name and p.description.strip()
    assert presets["gd"].full_batch and presets["svag"].svag_l > 1
    assert presets["milstein"].solver == "ito_milstein" and presets["milstein"].dense_diffusion
    assert presets["heun"].ito_correction
    assert presets["adaptive"].kind == "adaptive"
    assert presets["sgd"].group == "sgd" and presets["heun"].group == "sde/heun"


def test_bad_preset_files(tmp_path):
    (tmp_path / "fast.yaml").write_text("name: fast\ndescription: x\nkind: sde\nsolver: rk4\n")
    with pytest.raises(PresetError, match=r"fast.yaml: solver: should be 'euler'.*\(got 'rk4'\)"):
        load_presets([tmp_path], refresh=True)
    (tmp_path / "fast.yaml").write_text("name: slow\ndescription: x\nkind: discrete\n")
    with pytest.raises(PresetError, match="fast.yaml: name: must equal the file name 'fast'"):
        load_presets([tmp_path], refresh=True)
    (tmp_path / "fast.yaml").write_text("name: fast\ndescription: x\nkind: sde\nsolver: ito_milstein\n")
    with pytest.raises(PresetError, match="needs dense_diffusion: true"):
        load_presets([tmp_path], refresh=True)
    (tmp_path / "fast.yaml").write_text("name: fast\ndescription: x\nkind: sde\nsolver: euler\nsubsteps: 0\n")
    with pytest.raises(PresetError, match=r"fast.yaml: substeps: should be greater than 0 \(got 0\)"):
        load_presets([tmp_path], refresh=True)


def test_extra_preset_folder(tmp_path, monkeypatch):
    (tmp_path / "em4.yaml").write_text("name: em4\ndescription: EM, 4 substeps\nkind: sde\nsolver: euler\nsubsteps: 4\n")
    monkeypatch.setenv("SDE_BIAS_SOLVERS", str(tmp_path))
    presets = load_presets(refresh=True)
    assert presets["em4"].substeps == 4 and "sgd" in presets
    sc = load_scenario(TINY, overrides=["runners=[em4]"], presets=presets)
    assert sc.runners == ["em4"]


def test_runner_options_resolve():
    p = resolve_preset(load_presets()["heun"], {"substeps": 3})
    assert p.substeps == 3 and p.solver == "heun"
    with pytest.raises(PresetError, match="cannot be changed"):
        resolve_preset(load_presets()["heun"], {"kind": "discrete"})


def test_every_preset_runs_on_a_tiny_scenario(tmp_path):
    """All presets on the same seeds: identical initial records, finite numbers, and the
    balance law's sign: gradient descent keeps u^2 - v^2, label noise shrinks it."""
    from sde_bias.reader import load_run

    sc = load_scenario(
        TINY,
        overrides=["runners=[sgd, gd, svag, euler_maruyama, milstein, heun, srk, adaptive]", "runner_options={heun: {substeps: 2}}"],
    )
    from sde_bias.run import run_scenario

    res = run_scenario(sc, tmp_path / "all.h5", quiet=True)
    assert not res.any_diverged
    run = load_run(res.path)
    groups = list(run["runners"])
    assert groups == ["sgd", "gd", "svag", "sde/euler_maruyama", "sde/milstein", "sde/heun", "sde/srk", "sde/adaptive"]
    p0 = run["runners"]["sgd"]["records"]["params"][:, 0]
    for g, r in run["runners"].items():
        np.testing.assert_array_equal(r["records"]["params"][:, 0], p0, err_msg=g)
        assert np.all(np.isfinite(r["records"]["loss"])), g
        np.testing.assert_allclose(r["time"], r["step"] * sc.training.lr)
    c = {g: r["records"]["balance/imbalance"] for g, r in run["runners"].items()}
    np.testing.assert_allclose(c["gd"][:, -1], c["gd"][:, 0], rtol=1e-3)
    for g in groups:
        if g != "gd":
            assert np.mean(c[g][:, -1]) < np.mean(c[g][:, 0]), g
    assert '"substeps": 2' in run["runners"]["sde/heun"]["attrs"]["preset_yaml"]


def test_milstein_refuses_non_commutative_noise():
    from sde_bias.build import build_setup, make_runner
    from sde_bias.scenario import scenario_from_dict

    raw = {
        "name": "nc",
        "precision": "float64",
        "model": {"type": "hadamard", "dim": 2},
        "init": {"point": {"p": [1.0, 0.7], "q": [0.4, 1.2]}},
        "data": {"type": "fixed", "x": [[1.0, 0.0], [0.3, 1.0], [1.0, 1.0]], "y": [0.5, -0.2, 1.0]},
        "noise": {"scheme": "with_replacement", "batch_size": 1},
        "training": {"lr": 0.01, "steps": 10, "record_every": 5},
        "seeds": {"count": 2},
        "runners": ["milstein"],
    }
    presets = load_presets()
    sc = scenario_from_dict(raw, "nc.yaml", presets=presets)
    setup = build_setup(sc)
    with pytest.raises(ScenarioError, match="needs commutative noise"):
        make_runner(setup, presets["milstein"])

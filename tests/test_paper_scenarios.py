"""The paper's six experiments as scenario files (scenarios/*.yaml, docs/paper_experiments.md):
every file and variant validates, the base settings are the paper's, every `quick` variant
runs end to end and `sde-bias report` turns those outputs into the markdown summary and the
figures (tests/test_sharded_cli.py, on the CLI's own sharded runs of every scenario), and the GPU cross-check script runs on the CPU
against a reference with enough seeds for its z-tests to reject a wrong answer."""

import importlib.util
import json
import shutil

import h5py
import pytest
from helpers import ROOT

from sde_bias.run import run_scenario
from sde_bias.scenario import load_scenario, validate_file

PAPER = ["hyperbola", "shallow_relu", "attention", "matrix_completion", "spectral_sparse", "tv_signal"]

# (scenario, key path, the paper's value) -- docs/paper_experiments.md
PAPER_SETTINGS = [
    ("shallow_relu", "training.lr", 5e-5), ("shallow_relu", "training.steps", 40_000),
    ("shallow_relu", "noise.batch_size", 8), ("shallow_relu", "data.noise_std", 0.1),
    ("shallow_relu", "init.std", 0.05), ("shallow_relu", "data.teacher.std", 1.5),
    ("attention", "training.lr", 1e-3), ("attention", "training.steps", 50_000),
    ("attention", "noise.batch_size", 16), ("attention", "data.noise_std", 0.02),
    ("matrix_completion", "training.lr", 1e-3), ("matrix_completion", "training.steps", 500_000),
    ("matrix_completion", "noise.rho", 0.5), ("matrix_completion", "noise.normalizer", 400),
    ("matrix_completion", "data.observe_prob", 0.2),
    ("spectral_sparse", "training.lr", 1e-3), ("spectral_sparse", "training.steps", 50_000),
    ("spectral_sparse", "init.std", 0.01), ("spectral_sparse", "data.n_train", 32),
    ("tv_signal", "training.lr", 1e-3), ("tv_signal", "training.steps", 500_000), ("tv_signal", "init.std", 0.3),
]


def _get(sc, path):
    obj = sc
    for k in path.split("."):
        obj = getattr(obj, k)
    return obj


@pytest.mark.parametrize("name", PAPER)
def test_every_variant_validates(name):
    checked = validate_file(ROOT / "scenarios" / f"{name}.yaml", build=False)
    assert "" in checked and "quick" in checked


def test_base_scenarios_are_the_papers_settings():
    for name, path, value in PAPER_SETTINGS:
        sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
        assert _get(sc, path) == pytest.approx(value), (name, path)
        if name != "hyperbola":
            assert sc.seeds.count >= 8 and {"sgd", "gd"} <= set(sc.runners), name
            assert any(r in sc.runners for r in ("euler_maruyama", "heun")), name
    # the two full-batch experiments: minibatch SGD, label-noise SGD, models and an initial-scale sweep
    for name, models in (("spectral_sparse", {"vanilla", "l1"}), ("tv_signal", {"vanilla"})):
        base = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
        variants = set(base.variants)
        assert models | {"label_noise"} <= variants
        scales = base.sweep.grid["init.std"]  # the initial-scale sweep (sde-bias sweep), base run excluded
        assert len(scales) >= 3 and base.init.std not in scales
        for v in variants - {"quick"}:
            sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml", v)
            assert sc.noise.scheme == "with_replacement" or sc.noise.label_noise > 0, (name, v)


def _load_crosscheck():
    spec = importlib.util.spec_from_file_location("gpu_crosscheck", ROOT / "benchmarks" / "gpu_crosscheck.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_crosscheck_agrees_with_itself_and_rejects_a_wrong_answer(tmp_path, capsys):
    """The cross-check script on the CPU: a 16-seed reference (matrix_completion quick, sgd)
    against a 48-seed ensemble of the same scenario. The 16 shared seeds are the same
    computation (identical numbers); the other 32 are compared statistically at the
    script's default |z| <= 4. An answer 5% off in the singular values and the loss (the
    loss is measured to 0.4% here: z about 13) must fail at that tolerance -- and passed
    at the --zmax 100 this test used to run with."""
    mod = _load_crosscheck()
    sc = load_scenario(ROOT / "scenarios" / "matrix_completion.yaml", "quick", overrides=["runners=[sgd]", "seeds.count=16"])
    cpu = run_scenario(sc, tmp_path / "cpu.h5", quiet=True).path
    out = tmp_path / "big.h5"
    assert mod.main([str(cpu), "--seeds", "48", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["big"]["seeds"] == 48 and res["cpu"]["seeds"] == 16
    assert {r["quantity"] for r in res["rows"]} >= {"s1", "s2", "largest other singular value", "mean |log mode ratio|"}
    assert all(r["big"]["n"] == 32 and r["cpu"]["n"] == 16 for r in res["rows"])
    # the shared seeds 0..15 are the same computation on the same backend: identical
    assert res["shared_seeds"]["max_rel_diff_params"] == 0.0
    assert "throughput" in capsys.readouterr().out

    wrong = tmp_path / "wrong.h5"
    shutil.copy(out, wrong)
    with h5py.File(wrong, "r+") as f:
        for name in ("singular_values", "loss"):
            f["sgd"][name][...] = 1.05 * f["sgd"][name][...]
    assert mod.main([str(cpu), "--out", str(wrong), "--reuse"]) == 1
    printed = capsys.readouterr().out
    assert "DISAGREE" in printed and "training loss" in printed.split("DISAGREE")[1]
    assert mod.main([str(cpu), "--out", str(wrong), "--reuse", "--zmax", "100"]) == 0

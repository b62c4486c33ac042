"""`sde-bias converge` end to end on a small study, and its bad input."""

import h5py
import numpy as np

from sde_bias import cli


def test_converge_writes_the_study(tmp_path, capsys):
    out = tmp_path / "c.h5"
    rc = cli.main([
        "converge", "scenarios/hyperbola.yaml", "--variant", "quick", "--solvers", "euler_maruyama",
        "--refine", "1,2,4", "--paths", "16", "--steps", "40", "--strong", "--set", "convergence.sgd=false",
        "--out", str(out), "--no-plot",
    ])
    assert rc == 0
    text = capsys.readouterr().out
    assert "weak balance/imbalance/mean" in text and "closed form" in text
    with h5py.File(out) as f:
        g = f["convergence/euler_maruyama"]
        np.testing.assert_allclose(g["dt"][...], 0.02 / np.array([1, 2, 4]))
        w = g["weak/balance.imbalance.mean"]
        assert w.attrs["reference_kind"] == "closed form" and w["error"].shape == (1, 3)
        assert g["strong/error"].shape == (1, 2) and np.all(g["strong/error"][...] > 0)
        assert "converge study" in f["convergence"].attrs["summary"]


def test_converge_rejects_bad_refinements(tmp_path, capsys):
    rc = cli.main(["converge", "scenarios/hyperbola.yaml", "--refine", "4,2", "--out", str(tmp_path / "x.h5")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "convergence.refine" in err and "increasing" in err

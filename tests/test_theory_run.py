"""The scenario `theory:` block end to end (quick variant) and its validation."""

import h5py
import numpy as np
import pytest
from helpers import ROOT
from scipy import stats

from sde_bias import ScenarioError, load_scenario, run_scenario
from sde_bias.stats import chi2_goodness_of_fit

SCENARIOS = ROOT / "scenarios"


def test_theory_hyperbola_quick_writes_checks(tmp_path):
    sc = load_scenario(SCENARIOS / "theory_hyperbola.yaml", variant="quick")
    out = tmp_path / "th.h5"
    run_scenario(sc, out, quiet=True)
    with h5py.File(out) as f:
        d = f["theory/drift_check"]
        assert d["sgd_mean"].shape == (4, 1) and d["theory"].shape == (4, 1)
        # the projection on the section is the closed form a(w) = -2 w (w - 1) + lr delta^2 w
        w = d["q"][:, 0]
        np.testing.assert_allclose(d["theory"][:, 0], -2 * w * (w - 1) + 0.1 * w, atol=1e-12)
        np.testing.assert_allclose(d["geometric_part"][:, 0], 0.1 * w, atol=1e-12)
        s = f["theory/stationary_check"]
        grid, fp = s["grid"][...], s["fokker_planck_density"][...]
        # zero-flux density of dw = a dt + sqrt(2D) dW, D = 2 lr delta^2 w^2: Gamma(9.5, rate 10)
        law = stats.gamma(9.5, scale=0.1)
        np.testing.assert_allclose(fp, law.pdf(grid), atol=2e-3)
        # the recorded chi-square p-value (200 independent final w, 20 bins on the grid) is
        # the test of these samples against that closed form, and the samples pass it ...
        x, edges = s["samples"][...], np.linspace(grid[0], grid[-1], 21)
        assert x.size == s.attrs["num_samples"] == 200
        p_fp = s.attrs["chi2_pvalue_fokker_planck"]
        assert abs(p_fp - chi2_goodness_of_fit(x, law.pdf, [edges]).pvalue) < 1e-3
        assert p_fp > 1e-3
        # ... while the same test rejects the laws of twice and half the noise
        # (lr delta^2 = 0.2, 0.05: Gamma(1/(lr delta^2) + 1/2, rate 1/(lr delta^2)))
        for c in (0.2, 0.05):
            wrong = stats.gamma(1 / c + 0.5, scale=c)
            assert chi2_goodness_of_fit(x, wrong.pdf, [edges]).pvalue < 1e-3, c
        # the paper's density exp(-L/T) det G^{-1/2} on the section u = v = sqrt(w):
        # L = (w - 1)^2 / 2, G = u^2 + v^2 = 2 w, T = tr(S S^T) / (2 p) = lr delta^2 w / 2
        # averaged over the grid
        T = 0.5 * 0.1 * grid.mean()
        assert s.attrs["temperature"] == pytest.approx(T, rel=1e-12)
        paper = np.exp(-((grid - 1) ** 2) / (2 * T)) / np.sqrt(2 * grid)
        np.testing.assert_allclose(s["paper_density"][...], paper / np.trapezoid(paper, grid), rtol=1e-9)
        assert "drift q[0]" in f["comparisons"].attrs["table"]
        c = f["comparisons"]
        verdicts = [v.decode() for v in c["verdict"][...]]
        # 4 points x (sgd, euler_maruyama) drift rows + mean, variance, paper-density rows
        assert len(verdicts) == 11 and "disagrees" not in verdicts, verdicts
        sources = [v.decode() for v in c["disc_source"][...]]
        assert all(s.startswith("one-step Taylor term (exact") for s in sources[:8])
        assert all(s.startswith("dt-halving") for s in sources[8:])
        # one-step bias (1/2h) m^T H m of the drift estimate for u v on the section: m = -eta r (v, u),
        # H = [[0, 1], [1, 0]], h = eta, so eta r^2 w with r = w - 1
        w = d["q"][:, 0]
        np.testing.assert_allclose(d["sgd_bias"][:, 0], 0.1 * (w - 1) ** 2 * w, rtol=1e-12)


def test_bad_theory_block_is_a_user_error(tmp_path):
    text = (SCENARIOS / "theory_hyperbola.yaml").read_text().replace("replicates: 20000", "replicates: -3")
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError, match=r"theory\.drift_check\.replicates"):
        load_scenario(str(p))


def test_effective_drift_fibers_on_the_hyperbola(tmp_path):
    """For u v with label noise the noise equilibrium of each orbit is its balanced point,
    so the `noise_equilibrium` and `section` fiber averages coincide; `empirical` bins the
    recorded states."""
    sc = load_scenario(
        SCENARIOS / "hyperbola.yaml", variant="quick",
        overrides=["theory.effective_drift={fibers: [section, noise_equilibrium, empirical], grid: {linspace: [0.5, 1.5, 5]}, bins: 4}"],
    )
    out = tmp_path / "h.h5"
    run_scenario(sc, out, quiet=True)
    with h5py.File(out) as f:
        g = f["theory/effective_drift"]
        np.testing.assert_allclose(g["noise_equilibrium/drift"][...], g["section/drift"][...], atol=1e-8)
        w = g["section/q"][...]
        np.testing.assert_allclose(g["section/gradient_part"][:, 0], -2 * w * (w - 1), atol=1e-12)
        assert g["empirical/count"][...].sum() > 0

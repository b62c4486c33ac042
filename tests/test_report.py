"""``sde-bias report`` (sde_bias.report) on synthetic run files with known numbers: the
statistics, the paired SDE/GD-versus-SGD differences, the paper's step counts, the balance
decay-rate fit, the support count, and the markdown and figures it writes. Fast: no JAX
integration, the run files are written directly with sde_bias.store."""

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from sde_bias import report as R
from sde_bias.scenario import UserError
from sde_bias.store import RunFile, finalize, tmp_path_for

SEEDS = 6
SCEN = Path(__file__).resolve().parent.parent / "scenarios"


def write_run(path, scenario: dict, groups: dict, steps, lr: float, variant: str = "", extra_data=None):
    """A run file as the run driver writes it: ``groups`` = {group: {observable: [S, T, ...]}}."""
    steps = np.asarray(steps)
    attrs = {
        "scenario_name": scenario["name"],
        "scenario_yaml": yaml.safe_dump(scenario),
        "variant": variant,
        "source": f"scenarios/{scenario['name']}.yaml",
        "overrides": "[]",
        "num_seeds": SEEDS,
        "lr": lr,
        "total_steps": int(steps[-1]),
        "record_every": int(steps[1] - steps[0]),
        "model_type": scenario["model"]["type"],
        "data_type": scenario["data"]["type"],
        "wall_time_s": 12.5,
        "runner_groups": '["' + '", "'.join(groups) + '"]',
    }
    tmp = tmp_path_for(path)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    f = RunFile.create(tmp, attrs)
    if extra_data:
        f.write_data(extra_data)
    for gname, recs in groups.items():
        shapes = {k: (tuple(v.shape[2:]), np.float64) for k, v in recs.items()}
        preset = gname.split("/")[-1]
        g = f.create_runner(gname, {"preset": preset, "kind": "sde" if "/" in gname else "discrete"},
                            np.arange(SEEDS), 2, shapes, len(steps), np.float64)
        f.append(g, steps, steps * lr, recs)
        g.attrs["wall_time_s"] = 3.0
        g.attrs["complete"] = np.int8(1)
    f.h5.attrs["complete"] = np.int8(1)
    f.close()
    finalize(tmp, path)
    return path


def relu_scenario():
    return {"name": "shallow_relu", "report": {"section": "relu"},
            "model": {"type": "relu", "in_dim": 3, "hidden": 4, "out_dim": 1},
            "data": {"type": "teacher_student", "noise_std": 0.1}, "noise": {"scheme": "online", "batch_size": 8}}


@pytest.fixture
def relu_file(tmp_path):
    rng = np.random.default_rng(0)
    steps = np.array([0, 20000, 40000, 60000])
    base = np.array([2.0, 1.5, 0.8, 0.5])
    r = np.broadcast_to(base, (SEEDS, len(steps), 4)).copy()
    r[:, 2] = 1.0 + 0.01 * rng.standard_normal((SEEDS, 4))  # step 40,000: the paper's count
    r[:, 3] = 0.6                                            # beyond it: must not be used
    gd = r.copy()
    gd[:, 2] += 0.1                                          # GD is 0.1 higher, on every seed
    recs = lambda a: {"balance/unit_ratio": a, "loss": np.ones((SEEDS, len(steps)))}  # noqa: E731
    return write_run(tmp_path / "shallow_relu.h5", relu_scenario(),
                     {"sgd": recs(r), "sde/euler_maruyama": recs(r.copy()), "gd": recs(gd)}, steps, 5e-5)


def test_stat_and_paired_difference():
    a = R.Stat.of([1.0, 2.0, 3.0, np.nan])
    assert (a.mean, a.n) == (2.0, 3) and a.sd == pytest.approx(1.0) and a.se == pytest.approx(1 / math.sqrt(3))
    x = np.array([1.0, 5.0, 9.0, 2.0])
    d, se, z = R.diff(R.Stat.of(x + 0.5), R.Stat.of(x))  # paired: the shared spread cancels
    assert d == pytest.approx(0.5) and se == 0.0 and z == math.inf
    d, se, z = R.diff(R.Stat.of(x + np.array([0.1, -0.1, 0.1, -0.1])), R.Stat.of(x))
    assert d == pytest.approx(0.0) and se == pytest.approx(0.1 * math.sqrt(4 / 3) / 2) and z == pytest.approx(0.0)
    # different ensemble sizes: independent means
    d, se, z = R.diff(R.Stat.of([1.0, 3.0]), R.Stat.of([0.0, 1.0, 2.0]))
    assert d == pytest.approx(1.0) and se == pytest.approx(math.hypot(1.0, 1 / math.sqrt(3)))


def test_markdown_helpers():
    t = R.md_table(["a", "|x|"], [["1", "|w − w*|"]])
    assert "\\|x\\|" in t and "\\|w − w*\\|" in t and t.count("\n") == 2
    assert R.fmt(R.Stat.of([3.0, 3.0, 3.0])) == "3 (all 3 seeds)"
    assert "±" in R.fmt(R.Stat.of([1.0, 2.0])) and "(sd" in R.fmt(R.Stat.of([1.0, 2.0]))
    assert R.fmt(None) == "-"


def test_relu_numbers_at_the_paper_step(relu_file, tmp_path):
    md, sections = R.build_report([str(relu_file)], str(tmp_path / "rep"))
    (sec,) = sections
    assert sec.kind == "relu"
    assert sec.numbers["paper_step"] == 40000
    u = sec.numbers["unit_ratio"]
    for j in range(4):
        assert abs(u["sgd"][j]["mean"] - 1.0) < 0.02 and u["sgd"][j]["n"] == SEEDS
        assert u["gd"][j]["mean"] == pytest.approx(u["sgd"][j]["mean"] + 0.1)
        assert u["sde"][j]["mean"] == u["sgd"][j]["mean"]
    text = md.read_text()
    assert "## 1. Shallow ReLU network" in text and "unit 3" in text
    assert "z +0.0" in text  # SDE identical to SGD seed by seed
    assert (tmp_path / "rep" / "figures" / "shallow_relu.png").stat().st_size > 1000


def test_hyperbola_rate_fit(tmp_path):
    lr, delta = 0.02, 1.0
    steps = np.arange(0, 2001, 100)
    t = steps * lr
    C0 = np.linspace(3.0, 4.0, SEEDS)[:, None]
    C = C0 * np.exp(-lr * delta**2 * t)[None, :]
    params = np.stack([np.sqrt(C + 1), np.ones_like(C)], axis=-1)
    sc = {"name": "hyperbola", "report": {"section": "hyperbola"}, "model": {"type": "scalar_product"}, "data": {"type": "fixed"},
          "noise": {"scheme": "full_batch", "label_noise": delta}}
    path = write_run(tmp_path / "hyperbola.h5", sc, {
        "sgd": {"balance/imbalance": C, "params": params},
        "gd": {"balance/imbalance": np.broadcast_to(C0, C.shape).copy(), "params": params},
    }, steps, lr)
    _, (sec,) = R.build_report([str(path)], str(tmp_path / "rep"))
    assert sec.numbers["rate_closed_form"] == pytest.approx(0.02)
    assert sec.numbers["rate_sgd"]["mean"] == pytest.approx(0.02, rel=1e-6)
    assert abs(sec.numbers["rate_gd"]["mean"]) < 1e-9


def test_spectral_support_and_gd_sibling(tmp_path):
    steps = np.array([0, 25000, 50000])
    target = np.zeros(8)
    target[[2, 5]] = [1.5, -1.2]
    sparse = np.broadcast_to(target, (SEEDS, 3, 8)).copy()
    dense = sparse + 0.3
    sc = {"name": "spectral_sparse", "report": {"section": "spectral"}, "model": {"type": "hadamard", "dim": 8, "features": "cosine"},
          "init": {"std": 0.01}, "data": {"type": "sparse_cosine"}, "seeds": {"count": SEEDS},
          "noise": {"scheme": "with_replacement", "batch_size": 8}}
    ones = np.ones((SEEDS, 3))
    designed = write_run(tmp_path / "a.h5", sc, {
        "gd": {"invariants": sparse, "test_loss": 0.01 * ones},
        "sgd": {"invariants": sparse, "test_loss": 0.02 * ones}}, steps, 1e-3, extra_data={"target": target})
    ln = dict(sc, noise={"scheme": "full_batch", "label_noise": 1.0})
    label_noise = write_run(tmp_path / "b.h5", ln, {"sgd": {"invariants": sparse, "test_loss": 0.03 * ones}},
                            steps, 1e-3, variant="label_noise", extra_data={"target": target})
    van = dict(sc, model={"type": "linear", "dim": 8, "features": "cosine"}, init={"std": 1e-4})
    vanilla = write_run(tmp_path / "c.h5", van, {"gd": {"invariants": dense, "test_loss": ones}}, steps, 1e-3,
                        variant="vanilla", extra_data={"target": target})
    md, (sec,) = R.build_report([str(designed), str(label_noise), str(vanilla)], str(tmp_path / "rep"))
    assert sec.kind == "spectral"
    assert sec.numbers["base"]["GD"]["exact support recovered (fraction of seeds)"]["mean"] == 1.0
    assert sec.numbers["vanilla"]["GD"]["exact support recovered (fraction of seeds)"]["mean"] == 0.0
    assert sec.numbers["vanilla"]["GD"]["coefficients above 0.1"]["mean"] == 8
    text = md.read_text()
    assert "{2, 5} (6/6)" in text
    assert "(GD of `a.h5`)" in text  # label-noise SGD compared with the GD of the same initial points
    assert "label-noise SGD (delta=1)" in text


def test_main_report_errors_and_exit_code(relu_file, tmp_path, capsys):
    with pytest.raises(UserError):
        R.main_report([str(tmp_path / "missing.h5")], str(tmp_path / "out"))
    with pytest.raises(UserError):
        R.main_report([], str(tmp_path / "out"))
    assert R.main_report([str(relu_file)], str(tmp_path / "out")) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "out" / "experiments.md").exists()


def test_notes_are_inserted_after_the_summary(relu_file, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("## Findings\n\nhand-written text\n")
    assert R.main_report([str(relu_file)], str(tmp_path / "out"), notes=str(notes)) == 0
    text = (tmp_path / "out" / "experiments.md").read_text()
    assert text.index("## Summary") < text.index("hand-written text") < text.index("## Wall times")
    with pytest.raises(UserError):
        R.main_report([str(relu_file)], str(tmp_path / "out"), notes=str(tmp_path / "missing.md"))


def test_the_report_block_names_the_section(relu_file, tmp_path):
    """The section comes from the scenario's ``report:`` block, not from its model or data:
    the same ReLU records under ``section: generic`` give the generic table, and a file
    without the block (written before it existed) falls back to generic."""
    steps = np.array([0, 20000, 40000])
    recs = {"balance/unit_ratio": np.ones((SEEDS, 3, 4)), "loss": np.ones((SEEDS, 3))}
    sc = dict(relu_scenario(), report={"section": "generic"})
    generic = write_run(tmp_path / "g" / "shallow_relu.h5", sc, {"sgd": recs}, steps, 5e-5)
    _, (sec,) = R.build_report([str(generic)], str(tmp_path / "rep_g"))
    assert sec.kind == "generic" and "unit_ratio" not in sec.numbers
    old = dict(relu_scenario())
    del old["report"]
    legacy = write_run(tmp_path / "o" / "shallow_relu.h5", old, {"sgd": recs}, steps, 5e-5)
    _, (sec,) = R.build_report([str(legacy)], str(tmp_path / "rep_o"))
    assert sec.kind == "generic"
    # a model the paper's ReLU section never saw, named into it by the block
    other = dict(relu_scenario(), name="my_net", model={"type": "linear", "dim": 3})
    named = write_run(tmp_path / "n" / "my_net.h5", other, {"sgd": recs, "gd": recs}, steps, 5e-5)
    _, (sec,) = R.build_report([str(named)], str(tmp_path / "rep_n"))
    assert sec.kind == "relu" and sec.numbers["paper_step"] == 40000


def test_report_sections_match_the_schema():
    from sde_bias.report_config import SECTIONS

    assert tuple(R.SECTIONS) == SECTIONS


def test_unknown_report_section_is_a_one_line_error(tmp_path):
    from sde_bias.scenario import ScenarioError, load_scenario

    text = (SCEN / "hyperbola.yaml").read_text().replace("report: {section: hyperbola}", "report: {section: spectrum}")
    assert "spectrum" in text
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    msg = str(e.value)
    assert msg.count("\n") == 0 and "report.section" in msg and "'spectrum'" in msg and str(path) in msg
    assert load_scenario(SCEN / "hyperbola.yaml").report.section == "hyperbola"

"""Reliability of validation (issue 13): what `validate` accepts can run, what it refuses
gets one line naming the key, and no input gives a traceback (exit 1).

* property-based: mutations of the shipped scenarios (keys deleted, renamed or retyped;
  non-finite, extreme and underflowing numbers; deep nesting; bad --set paths) through
  `sde-bias validate` in-process: exit 0 or 2, never 1, and every line of an exit 2 names
  the file (or the --set) and a key path;
* one test per numbered validation case of the issue (each failed on the old code).
"""

import contextlib
import copy
import io
import re
from pathlib import Path

import pytest
import yaml

from sde_bias import cli
from sde_bias.scenario import ScenarioError, load_scenario, parse_yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCEN = ROOT / "scenarios"
SHIPPED = sorted(p.name for p in SCEN.glob("*.yaml"))
HYPERBOLA = SCEN / "hyperbola.yaml"


def validate(*argv) -> tuple[int, str]:
    """`sde-bias validate --deep ARGV` in this process (every check `run` makes before
    computing): (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["validate", "--deep", *map(str, argv)])
    return code, err.getvalue()


# ---------------------------------------------------------------------------- helpers
# FILE[ [variant V]]: KEY.PATH[ [from ...]]: message ...   or   --set TEXT: message
_KEY = r"[A-Za-z_][\w\-]*(?:\.[\w\-.]+|\[-?\d+\])*"
_LINE = re.compile(
    r"^(?:(?P<src>.+?)(?: \[variant [\w.\-]+\])?: (?P<key>" + _KEY + r")(?: \[from .*\])?: \S"
    r"|--set .*: \S|(?:sde-bias: error: )?--set .*: \S)"
)


def assert_refusal(code: int, err: str, source: str):
    assert code == 2, f"exit {code}:\n{err}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, "exit 2 without a message"
    assert "Traceback" not in err
    for ln in lines:
        m = _LINE.match(ln)
        assert m, f"not a one-line message naming a key: {ln!r}"
        if m.group("src") is not None:
            assert m.group("src").startswith(source) or m.group("src").startswith("--set"), ln


def key_paths(node, prefix=()):
    """Every key path of a nested mapping/list (a path is a tuple of keys and indices)."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        out.append(prefix + (k,))
        out += key_paths(v, prefix + (k,))
    return out


def get_parent(raw, path):
    node = raw
    for k in path[:-1]:
        node = node[k]
    return node


def trimmed(name: str) -> dict:
    """A shipped scenario with only its `quick` variant (validate checks base and quick)."""
    raw = parse_yaml((SCEN / name).read_text(), name)
    raw["variants"] = {k: v for k, v in (raw.get("variants") or {}).items() if k == "quick"}
    return raw


EXTREME = [float("inf"), float("-inf"), float("nan"), 1e308, -1e308, 5e-324, 1e-50, 0, -1, 0.0,
           2**31, 2**32, 2**63, 2**64, 10**30, -(2**63)]
RETYPED = ["x", "", [1], [], {"a": 1}, {}, None, True, 3, 2.5, [[1, 2], [3]]]


def nested(depth: int):
    v = 1.0
    for _ in range(depth):
        v = [v]
    return v


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(SHIPPED))
    raw = trimmed(name)
    paths = key_paths(raw)
    path = draw(st.sampled_from(paths))
    kind = draw(st.sampled_from(["delete", "rename", "retype", "number", "number", "nest"]))
    parent = get_parent(raw, path)
    key = path[-1]
    if kind == "delete":
        if isinstance(parent, list):
            parent.pop(key)
        else:
            parent.pop(key)
    elif kind == "rename" and isinstance(parent, dict):
        new = draw(st.sampled_from([str(key) + "x", str(key)[:-1] or "k", str(key).upper(), "_" + str(key)]))
        if new not in parent:
            parent[new] = parent.pop(key)
    elif kind == "retype":
        parent[key] = copy.deepcopy(draw(st.sampled_from(RETYPED)))
    elif kind == "number":
        leaves = [p for p in paths if isinstance(get_parent(raw, p)[p[-1]], (int, float))
                  and not isinstance(get_parent(raw, p)[p[-1]], bool)]
        if leaves:
            p = draw(st.sampled_from(leaves))
            get_parent(raw, p)[p[-1]] = draw(st.sampled_from(EXTREME))
    else:
        parent[key] = nested(draw(st.sampled_from([3, 31, 40, 200])))
    return name, f"{kind} {'.'.join(map(str, path))}", raw


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(mutated())
def test_mutated_scenarios_exit_0_or_2_with_a_key(tmp_path_factory, case):
    name, what, raw = case
    path = tmp_path_factory.mktemp("m") / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False, width=4096))
    code, err = validate(path)
    if code != 0:
        assert_refusal(code, err, str(path))


SET_TEXTS = [
    "training.lr=.inf", "training.lr=-.inf", "training.lr=.nan", "training.lr=1e-400", "training.lr=1e400",
    "training.lr=1e-50", "training.lr=abc", "training.lr=[1]", "training.lr={a: 1}", "training.lr=",
    "seeds.count=0", "seeds.count=2**40", "seeds.count=4294967297", "seeds.base=-1", "seeds.base=18446744073709551616",
    "seeds=5", "runners.99=sgd", "runners.x=sgd", "runners.-1=nope", "model.type=nope", "model=[1, 2]",
    "=1", "noequals", "a..b=1", ".a=1", "training..lr=1", "training.lr.x=1", "name=" + "n" * 300,
    "init.std=" + "[" * 3000 + "1" + "]" * 3000, "data.x=" + "[" * 45 + "1" + "]" * 45,
    "noise.label_noise=1e-45", "loss.scale=1e39", "training.horizon=.inf", "training.steps=99999999999",
    "training.record_every=0", "theory={invariants: singular_values}", "theory={stationary_check: {grid: {linspace: [0, 1, 5]}}}",
    "theory.drift_check={points: section}", "record=[nope]", "precision=float16", "data.seed=4294967296",
    "init.point.u=.nan", "variants.quick=5", "runner_options={sgd: {svag_l: .inf}}",
    "training={lr: 0.02, horizon: .inf, record_every: 10}", "training={lr: 0.02, horizon: 1e308, record_every: 10}",
]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(st.sampled_from(SET_TEXTS), min_size=1, max_size=3), st.sampled_from(["hyperbola.yaml", "theory_hyperbola.yaml", "matrix_completion.yaml"]))
def test_bad_set_paths_and_values_exit_0_or_2(sets, name):
    args = [SCEN / name]
    for s in sets:
        args += ["--set", s]
    code, err = validate(*args, "--variant", "quick")
    assert code in (0, 2), err
    if code == 2:
        assert_refusal(code, err, str(SCEN / name))


# ---------------------------------------------------------------------------- the cases
def refused(*argv, key: str, text: str = ""):
    code, err = validate(*argv)
    assert_refusal(code, err, str(argv[0]))
    assert key in err, err
    assert text in err, err
    return err


def test_case1_infinite_horizon_is_refused():
    refused(HYPERBOLA, "--set", "training.steps=null", "--set", "training.horizon=.inf", key="training.horizon", text="finite")
    # finite but horizon / lr beyond the int32 step counter (OverflowError before)
    refused(HYPERBOLA, "--set", "training.steps=null", "--set", "training.horizon=1e308", key="training.horizon", text="2^31 - 1")


@pytest.mark.parametrize("depth", [400, 3000])
def test_case2_deep_nesting_is_refused_with_its_key(tmp_path, depth):
    p = tmp_path / "deep.yaml"
    p.write_text("name: deep\ninit:\n  point: " + "[" * depth + "1" + "]" * depth + "\n")
    err = refused(p, key="init.point", text="nested more than")
    assert "line 3" in err
    refused(HYPERBOLA, "--set", "init.std=" + "[" * depth + "1" + "]" * depth, key="--set init.std", text="nested")


@pytest.mark.parametrize("sets, key", [
    (["seeds.base=4294967295"], "seeds.base"),
    (["seeds.base=1099511627776"], "seeds.base"),
    (["precision=float64", "seeds.base=18446744073709551616"], "seeds.base"),
    (["data.seed=4294967296"], "data.seed"),
])
def test_case3_seeds_beyond_uint32_are_refused(sets, key):
    args = [HYPERBOLA]
    for s in sets:
        args += ["--set", s]
    refused(*args, key=key, text="2^32 - 1")


def test_case3_largest_seed_is_accepted_and_distinct():
    from sde_bias.build import seed_keys

    sc = load_scenario(HYPERBOLA, "quick", ["seeds.base=4294967294", "seeds.count=2"])
    keys = seed_keys(sc)
    assert keys.shape == (2, 2) and int(keys[1, 1]) == 4294967295 and int(keys[0, 1]) == 4294967294


def test_case4_and_9_theory_the_model_or_runners_cannot_serve_is_refused_at_validate():
    refused(HYPERBOLA, "--set", "theory={invariants: singular_values, drift_check: {points: final, from: sgd}}",
            key="theory.invariants", text="matrix")
    # a stationary check whose runner does not record invariants / is not run / is discrete
    refused(SCEN / "theory_hyperbola.yaml", "--variant", "quick", "--set", "record=[loss]", key="record", text="'invariants'")
    refused(SCEN / "theory_hyperbola.yaml", "--variant", "quick", "--set", "runners=[sgd]", "--set", "runner_options={}",
            key="theory.stationary_check.runner", text="not one of the runners")
    refused(SCEN / "theory_hyperbola.yaml", "--variant", "quick", "--set", "theory.stationary_check.runner=sgd",
            key="theory.stationary_check.runner", text="kind sde")
    refused(SCEN / "theory_hadamard.yaml", "--variant", "quick", "--set", "theory.drift_check.from=heun",
            key="theory.drift_check.from", text="not one of the runners")
    refused(SCEN / "theory_hadamard.yaml", "--variant", "quick", "--set", "theory.drift_check.points=section",
            key="theory.drift_check", text="grid")
    refused(HYPERBOLA, "--variant", "quick", "--set", "theory={balance_check: true}", "--set", "record=[loss]",
            key="theory.balance_check", text="params")


def test_case7_non_finite_numbers_are_refused_everywhere():
    sets = {
        "training.lr": ".inf", "noise.label_noise": ".inf", "loss.scale": ".inf", "init.std": ".nan",
        "init.point.u": ".nan", "init.block_scale": "{u: .inf}", "data.x": "[.nan]", "data.y": "[.inf]",
        "data.target": "[.nan]",
    }
    for key, value in sets.items():
        refused(HYPERBOLA, "--set", f"{key}={value}", key=key, text="finite")
    refused(SCEN / "matrix_completion.yaml", "--set", "data.singular_values=[1.0, .nan]", key="data.singular_values", text="finite")
    refused(SCEN / "attention.yaml", "--set", "data.teacher.std=.inf", key="data.teacher.std", text="finite")


def test_case8_a_learning_rate_that_underflows_is_refused():
    refused(HYPERBOLA, "--set", "precision=float32", "--set", "training.lr=1e-50", key="training.lr", text="underflows in float32")
    refused(HYPERBOLA, "--set", "precision=float64", "--set", "training.lr=1e-310", key="training.lr", text="underflows in float64")
    refused(HYPERBOLA, "--set", "precision=float32", "--set", "noise.label_noise=1e-40", key="noise.label_noise", text="underflows")
    # the same learning rate is a normal number in float64
    assert validate(HYPERBOLA, "--set", "precision=float64", "--set", "training.lr=1e-50", "--set", "training.steps=20",
                    "--set", "training.record_every=10")[0] == 0


NON_COMMUTATIVE = """\
name: nc
precision: float64
model: {type: hadamard, dim: 2}
init: {point: {p: [1.0, 0.7], q: [0.4, 1.2]}}
data: {type: fixed, x: [[1.0, 0.0], [0.3, 1.0], [1.0, 1.0]], y: [0.5, -0.2, 1.0]}
noise: {scheme: with_replacement, batch_size: 1}
training: {lr: 0.01, steps: 10, record_every: 5}
seeds: {count: 2}
runners: [sgd, milstein]
"""


def test_case10_milstein_on_non_commutative_noise_is_refused_at_validate(tmp_path):
    p = tmp_path / "nc.yaml"
    p.write_text(NON_COMMUTATIVE)
    refused(p, key="runners", text="needs commutative noise")
    # scalar (commutative) noise: accepted
    assert validate(HYPERBOLA, "--variant", "quick", "--set", "runners=[sgd, milstein]")[0] == 0


def test_case11_too_few_seeds_for_the_chi_square_test_are_refused_up_front():
    refused(SCEN / "theory_hyperbola.yaml", "--variant", "quick", "--set", "seeds.count=8", key="seeds.count", text="chi-square")


def test_case11_insufficient_data_is_a_row_not_a_crash(tmp_path):
    """Samples that fall in too few bins (known only after the run) give an
    'insufficient data' row in the comparison table."""
    import numpy as np

    from sde_bias.build import build_setup
    from sde_bias.reader import RunData, RunnerRecords
    from sde_bias.theory_run import parse_theory, run_stationary_check

    sc = load_scenario(SCEN / "theory_hyperbola.yaml", "quick", ["seeds.count=12"])
    setup = build_setup(sc)
    cfg = parse_theory(sc.theory).stationary_check
    final = np.full((12, 2, 1), np.nan)
    final[:3, -1, 0] = [1.0, 1.1, 0.9]  # three finite samples: one merged bin
    runner = RunnerRecords("sde/euler_maruyama", {"preset": "euler_maruyama"}, np.arange(12), np.zeros(2),
                           np.arange(2), np.full(12, -1), np.zeros((12, 2)), {"invariants": final},
                           {"invariants": final.shape})
    run = RunData(tmp_path / "f.h5", {}, {}, {"sde/euler_maruyama": runner})
    group, rows = run_stationary_check(cfg, setup, run, setup.problem.model.invariants)
    short = [r for r in rows if r.insufficient]
    assert len(short) == 1 and "(3 samples)" in short[0].quantity and short[0].verdict == "insufficient data"
    assert "insufficient data" in group.attrs["chi2_note"]
    assert np.isnan(group.attrs["chi2_pvalue_fokker_planck"])


def test_shipped_scenarios_still_validate():
    code, err = validate(*[SCEN / n for n in SHIPPED])
    assert code == 0, err


def test_yaml_alias_cycles_and_bombs_are_refused():
    with pytest.raises(ScenarioError, match="nested more than"):
        parse_yaml("a: &x [*x]")
    bomb = "a: &a [" + ",".join(["x"] * 50) + "]\n"
    prev = "a"
    for i in range(6):
        bomb += f"b{i}: &b{i} [" + ",".join([f"*{prev}"] * 50) + "]\n"
        prev = f"b{i}"
    with pytest.raises(ScenarioError, match="more than"):
        parse_yaml(bomb)


def test_default_chunking_of_the_longest_run_is_immediate():
    """2^31 - 1 records (a prime: no divisor near n / 20) are split without scanning 2^31
    candidate chunk sizes."""
    import time

    sc = load_scenario(HYPERBOLA, None, ["training.steps=2147483647", "training.record_every=1"])
    t0 = time.perf_counter()
    assert sc.chunk_records == -(-(2**31 - 1) // 20)
    assert time.perf_counter() - t0 < 1.0

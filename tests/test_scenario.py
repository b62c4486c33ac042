"""Scenario schema, validation messages, variants and overrides (sde_bias.scenario)."""

import copy
import re
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from sde_bias import scenario as S
from sde_bias.presets import load_presets
from sde_bias.scenario import ScenarioError, UserError, load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"
SRC = "tests/data/bad.yaml"


@pytest.fixture(scope="module")
def presets():
    return load_presets()


@pytest.fixture(scope="module")
def base():
    return yaml.safe_load(TINY.read_text())


def patched(base, **changes):
    """Copy of ``base`` with ``a__b=value`` set (``"DEL"`` removes the key)."""
    d = copy.deepcopy(base)
    for k, v in changes.items():
        keys = k.split("__")
        node = d
        for kk in keys[:-1]:
            node = node.setdefault(kk, {})
        if v == "DEL":
            node.pop(keys[-1])
        else:
            node[keys[-1]] = v
    return d


def error_of(raw, presets, **kw) -> str:
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(raw, SRC, presets=presets, **kw)
    return str(e.value)


# (changes, key path, expected message fragment, value shown or None)
BAD = [
    ({"training__lr": -0.01}, "training.lr", "greater than 0", "-0.01"),
    ({"training__lr": "fast"}, "training.lr", "valid number", "'fast'"),
    ({"training__steps": 45}, "training.record_every", "must divide the number of steps (45)", "10"),
    ({"training__record_every": 0}, "training.record_every", "greater than 0", "0"),
    ({"training__steps": "DEL"}, "training", "exactly one of steps", None),
    ({"training__horizon": 0.5, "training__steps": "DEL", "training__lr": 0.3}, "training.horizon", "whole number of steps", "0.5"),
    ({"noise__scheme": "with_replacement", "noise__batch_size": 5}, "noise.batch_size", "larger than the dataset (1 samples)", "5"),
    ({"noise__scheme": "with_replacement"}, "noise.batch_size", "needs a batch_size", None),
    ({"noise__label_noise": -1.0}, "noise.label_noise", "greater than or equal to 0", "-1.0"),
    ({"noise__scheme": "bernoulli", "noise__rho": 1.5}, "noise.rho", "0 < rho < 1", "1.5"),
    ({"noise__rho": 0.5}, "noise.rho", "only used by scheme bernoulli", "0.5"),
    ({"noise__scheme": "online", "noise__batch_size": 2}, "noise.scheme", "online needs data type teacher_student", "'online'"),
    ({"noise__scheme": "sometimes"}, "noise.scheme", "should be 'full_batch'", "'sometimes'"),
    ({"model": {"type": "matrix_factorization", "rows": 4, "rank": 0, "cols": 4}}, "model.rank", "greater than 0", "0"),
    ({"model": {"type": "relu", "in_dim": 1, "hiden": 16}}, "model.hiden", "did you mean 'hidden'", None),
    ({"model": {"type": "perceptron"}}, "model", "unknown type 'perceptron'; expected one of", None),
    ({"model": {"dim": 3}}, "model", "needs a type key", None),
    ({"precision": "float16"}, "precision", "'float32' or 'float64'", "'float16'"),
    ({"runners": ["sgd", "eulr"]}, "runners[1]", "no solver preset named 'eulr'", None),
    ({"runners": ["sgd", "sgd"]}, "runners", "each preset once", None),
    ({"runners": []}, "runners", "at least 1 item", None),
    ({"record": ["loss", "balanse"]}, "record[1]", "unknown observable 'balanse' (did you mean 'balance'?)", None),
    ({"seeds__count": 0}, "seeds.count", "greater than 0", "0"),
    ({"seeds__base": -3}, "seeds.base", "greater than or equal to 0", "-3"),
    ({"init": {}}, "init", "needs `std`", None),
    ({"init__std": -1.0}, "init.std", "must be >= 0", "-1.0"),
    ({"init__point": {"u": 1.0, "w": 2.0}}, "init.point.w", "unknown block of model scalar_product; blocks: u, v", None),
    ({"init__unbalance": {"log_scales": [1.0, 2.0]}}, "init.unbalance.log_scales", "needs 1 entries", "[1.0, 2.0]"),
    ({"init__block_scale": {"u": {"gauss": 1}}}, "init.block_scale", "abs_normal", None),
    ({"data__y": [1.0, 2.0]}, "data.y", "one entry per sample of data.x (1)", None),
    ({"data__x": [[1.0, 2.0]]}, "data.x[0]", "one input of model scalar_product has shape ()", None),
    ({"data": {"type": "completion", "singular_values": [1.0]}}, "data.type", "model scalar_product does not accept data of type completion; it takes: fixed, file, teacher_student", None),
    ({"data": {"type": "teacher_student", "teacher": {"std": 1.0}}}, "noise.scheme", "use scheme online", None),
    ({"extra_key": 1}, "extra_key", "unknown key 'extra_key'", None),
    (
        {"model": {"type": "matrix_factorization", "rows": 2, "rank": 1, "cols": 2}, "init": {"std": 0.1},
         "data": {"type": "fixed", "x": [[0, 1], [2, 0]], "y": [1.0, 2.0]}},
        "data.x[1]", "index pair [i, j] of integers with 0 <= i < 2", "[2, 0]",
    ),
    ({"loss__reduction": "sum"}, "loss.reduction", "'half_sum' or 'mean'", "'sum'"),
    ({"runner_options": {"heun": {"substeps": 2}}}, "runner_options.heun", "is not one of the runners", None),
    ({"runner_options": {"sgd": {"svag_l": 0}}}, "runner_options.sgd.svag_l", "greater than 0", "0"),
    ({"runner_options": {"sgd": {"stepsize": 1}}}, "runner_options.sgd.stepsize", "unknown key 'stepsize'", None),
    ({"name": "has space"}, "name", "should match pattern", None),
]


@pytest.mark.parametrize("changes,path,fragment,value", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_scenario_messages(base, presets, changes, path, fragment, value):
    msg = error_of(patched(base, **changes), presets)
    lines = [l for l in msg.splitlines() if f"{SRC}: {path}" in l and fragment in l]
    assert lines, f"expected '{SRC}: {path}: ...{fragment}...' in:\n{msg}"
    if value is not None:
        assert any(f"(got {value})" in l for l in lines), msg
    assert "Traceback" not in msg


def test_message_format_names_file_key_value_and_expectation(base, presets):
    msg = error_of(patched(base, training__lr=-0.5), presets)
    assert msg == f"{SRC}: training.lr: should be greater than 0 (got -0.5)"


def test_all_problems_reported_at_once(base, presets):
    msg = error_of(patched(base, training__lr=-1.0, seeds__count=0, precision="half"), presets)
    assert len(msg.splitlines()) == 3


def test_yaml_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("name: x\nmodel: {type: scalar_product\ninit: {}\n")
    with pytest.raises(ScenarioError, match=r"broken.yaml: line \d+, column \d+: invalid YAML"):
        load_scenario(p)


def test_duplicate_keys_rejected(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text(TINY.read_text() + "\nname: again\n")
    with pytest.raises(ScenarioError, match="duplicate key 'name'"):
        load_scenario(p)


def test_not_a_mapping_and_missing_file(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ScenarioError, match="must be a YAML mapping"):
        load_scenario(p)
    with pytest.raises(UserError, match="no such file"):
        load_scenario(tmp_path / "nope.yaml")


def test_exponent_floats_parse_as_numbers():
    assert S.parse_yaml("a: 1e-3\nb: 5.0e-5\nc: 1E3\nd: 10\n") == {"a": 1e-3, "b": 5e-5, "c": 1e3, "d": 10}


# ---------------------------------------------------------------------------
# variants and overrides
# ---------------------------------------------------------------------------


def test_quick_variant_is_merged(presets):
    sc = load_scenario(TINY, variant="quick", presets=presets)
    assert sc.training.steps == 20 and sc.training.record_every == 10
    assert sc.training.lr == 0.02  # untouched keys survive the merge
    assert sc.variant == "quick" and sc.run_label() == "tiny-quick"


def test_unknown_variant_lists_available(presets):
    with pytest.raises(ScenarioError, match="no variant named 'slow'; available: quick"):
        load_scenario(TINY, variant="slow", presets=presets)


def test_set_overrides_parse_yaml_and_validate(presets):
    sc = load_scenario(
        TINY,
        overrides=["training.lr=1e-3", "runners=[sgd, heun]", "seeds.count=3", "record.1=test_loss", "record.0=params", "record=[params, loss]"],
        presets=presets,
    )
    assert sc.training.lr == 1e-3 and sc.runners == ["sgd", "heun"]
    assert sc.seeds.count == 3 and sc.record == ["params", "loss"]
    with pytest.raises(ScenarioError) as e:
        load_scenario(TINY, overrides=["training.lr=-1"], presets=presets)
    assert "training.lr [from --set training.lr=-1]: should be greater than 0 (got -1)" in str(e.value)
    with pytest.raises(ScenarioError, match=r"training.lrate \[from --set training.lrate=1\]: unknown key"):
        load_scenario(TINY, overrides=["training.lrate=1"], presets=presets)


def test_set_null_restores_default_and_bad_syntax(presets):
    sc = load_scenario(TINY, overrides=["noise.label_noise=null"], presets=presets)
    assert sc.noise.label_noise == 0.0
    with pytest.raises(UserError, match="expected KEY.PATH=VALUE"):
        load_scenario(TINY, overrides=["training.lr"], presets=presets)
    with pytest.raises(UserError, match="out of range"):
        load_scenario(TINY, overrides=["runners.5=gd"], presets=presets)


def test_seeds_option(presets):
    sc = load_scenario(TINY, seeds=7, presets=presets)
    assert sc.seeds.count == 7 and sc.seed_list == list(range(7))


def test_variant_changing_type_replaces_mapping():
    base = {"model": {"type": "cumsum_hadamard", "length": 4}, "x": {"a": 1, "b": 2}}
    out = S.deep_merge(base, {"model": {"type": "linear", "dim": 4}, "x": {"a": None, "c": 3}})
    assert out["model"] == {"type": "linear", "dim": 4}
    assert out["x"] == {"b": 2, "c": 3}


def test_canonical_yaml_round_trip(presets):
    sc = load_scenario(TINY, variant="quick", overrides=["training.lr=0.01"], presets=presets)
    text = S.to_yaml(sc)
    again = scenario_from_dict(S.parse_yaml(text), "copy", presets=presets)
    assert S.to_dict(again) == S.to_dict(sc)
    assert S.scenario_hash(again) == S.scenario_hash(sc)
    assert "variants" not in S.parse_yaml(text)


def test_horizon_gives_steps(base, presets):
    raw = patched(base, training__steps="DEL", training__horizon=0.8)
    sc = scenario_from_dict(raw, SRC, presets=presets)
    assert sc.total_steps == 40 and sc.num_records == 4


def test_default_chunking_divides_records(base, presets):
    raw = patched(base, training__steps=1000, training__record_every=10, training__chunk_records="DEL")
    sc = scenario_from_dict(raw, SRC, presets=presets)
    assert sc.num_records % sc.chunk_records == 0 and sc.num_records // sc.chunk_records <= 20


# ---------------------------------------------------------------------------
# checks that need the built problem
# ---------------------------------------------------------------------------


def test_build_time_errors(base, presets):
    from sde_bias.build import build_problem

    sc = scenario_from_dict(patched(base, record=["loss", "test_loss"]), SRC, presets=presets)
    with pytest.raises(ScenarioError, match=r"record\[1\]: observable 'test_loss' is not available"):
        build_problem(sc)
    raw = {
        **base,
        "model": {"type": "matrix_factorization", "rows": 4, "rank": 2, "cols": 4},
        "init": {"std": 0.1},
        "data": {"type": "completion", "singular_values": [2.0], "observe_prob": 0.3},
        "noise": {"scheme": "without_replacement", "batch_size": 15},
        "record": ["loss"],
    }
    sc = scenario_from_dict(raw, SRC, presets=presets)
    with pytest.raises(ScenarioError, match=r"noise.batch_size: larger than the dataset \(\d+ samples\) \(got 15\)"):
        build_problem(sc)


def test_overparameterized_rank_is_fine(base, presets):
    raw = {
        **base,
        "model": {"type": "matrix_factorization", "rows": 3, "rank": 5, "cols": 3},
        "init": {"std": {"P": 0.1, "Q": 0.2}},
        "data": {"type": "completion", "singular_values": [2.0], "observe_prob": 0.8},
        "noise": {"scheme": "bernoulli", "rho": 0.5, "normalizer": 9},
        "record": ["loss", "singular_values", "balance"],
    }
    from sde_bias.build import build_problem

    build_problem(scenario_from_dict(raw, SRC, presets=presets))


# ---------------------------------------------------------------------------
# every shipped scenario and every documented example validates
# ---------------------------------------------------------------------------

SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_every_scenario_validates(path, presets):
    names = S.validate_file(path, presets)
    assert "quick" in names, f"{path.name} needs a `quick` variant for tests"


DOC = ROOT / "docs" / "scenarios.md"


def _doc_examples():
    out = []
    for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S):
        raw = S.parse_yaml(block)
        if isinstance(raw, dict) and "name" in raw and "model" in raw:
            out.append(raw)
    return out


def test_doc_examples_validate(presets):
    from sde_bias.build import build_problem

    examples = _doc_examples()
    kinds = {(e["model"]["type"], e["data"]["type"]) for e in examples}
    assert {m for m, _ in kinds} >= set(S.MODEL_TYPES) - {"linear", "deep_hadamard"}
    assert {d for _, d in kinds} == set(S.DATA_TYPES)
    for raw in examples:
        for v in [None, *raw.get("variants", {})]:
            sc = scenario_from_dict(raw, f"docs:{raw['name']}", v, presets=presets)
            if v == "quick":
                build_problem(sc)


def _schema_keys(cls, seen=None) -> set[str]:
    seen = set() if seen is None else seen
    keys = set()
    if cls in seen:
        return keys
    seen.add(cls)
    for name, f in cls.model_fields.items():
        keys.add(f.alias or name)
        stack = [f.annotation]
        while stack:
            a = stack.pop()
            if isinstance(a, type) and issubclass(a, BaseModel):
                keys |= _schema_keys(a, seen)
            else:
                stack.extend(typing.get_args(a))
    return keys


def test_every_key_is_documented():
    from sde_bias import presets as P

    text = DOC.read_text()
    keys = _schema_keys(S.Scenario)
    for cls in (P.DiscretePreset, P.SDEPreset, P.AdaptivePreset):
        keys |= _schema_keys(cls)
    keys |= {"linspace", "abs_normal", "uniform"}
    missing = sorted(k for k in keys if f"`{k}`" not in text and f"`{k}." not in text and f".{k}`" not in text)
    assert not missing, f"keys missing from docs/scenarios.md: {missing}"
    for t in S.MODEL_TYPES + S.DATA_TYPES + S.SCHEMES:
        assert f"`{t}`" in text, t


# ---------------------------------------------------------------------------
# the configuration layer: static checks without the model, sizes first, typed blocks
# ---------------------------------------------------------------------------


def test_record_names_known_to_the_schema_are_the_observables():
    """Validation checks `record:` against a list that needs no JAX; it must be the
    registry's (plus `balance`, computed by the run itself)."""
    from sde_bias import observables

    assert set(S.OBSERVABLE_NAMES) == set(observables.REGISTRY) | {"balance"}


def test_a_huge_configuration_is_refused_before_any_model_is_built(base, presets):
    """3e9 seeds exceed one array (2^31 - 1 elements) whatever the model: refused by the
    size check alone, before the model (here one that cannot be imported) is built."""
    raw = patched(base, seeds__count=3_000_000_000, model={"type": "no_such_package.models:Nope"})
    msg = error_of(raw, presets)
    assert f"{SRC}: seeds.count: seeds x parameters = 3e+09 elements" in msg
    assert "model.type" not in msg and "no_such_package" not in msg
    # without the size problem the same model is refused when it is built
    assert f"{SRC}: model.type: " in error_of(patched(raw, seeds__count=2), presets)


def test_static_checks_do_not_build_the_model(base, presets):
    """`deep=False` (what `sde-bias validate` runs) checks keys against each other but never
    builds the model, so a model that cannot be imported passes and a bad batch size does not."""
    raw = patched(base, model={"type": "no_such_package.models:Nope"})
    sc = scenario_from_dict(raw, SRC, presets=presets, deep=False)
    assert sc.model.type == "no_such_package.models:Nope"
    msg = error_of(patched(raw, noise__batch_size=1), presets, deep=False)
    assert "noise.batch_size: only used by schemes" in msg and "model.type" not in msg


def test_theory_and_convergence_blocks_are_typed_and_keep_their_canonical_form(base, presets):
    """The blocks are schema classes; a bad key is reported with its path like any other,
    and the canonical form keeps only the keys the file sets (so the hash of a file does
    not change with the blocks' defaults)."""
    from sde_bias.convergence_config import ConvergenceConfig
    from sde_bias.theory_config import TheoryConfig

    raw = patched(base, theory={"drift_check": {"points": "final", "from": "sgd", "num_points": 1}},
                  convergence={"refine": [1, 2], "in_run": False})
    sc = scenario_from_dict(raw, SRC, presets=presets, deep=False)
    assert isinstance(sc.theory, TheoryConfig) and isinstance(sc.convergence, ConvergenceConfig)
    assert sc.theory.drift_check.from_ == "sgd" and sc.theory.drift_check.replicates == 20_000
    d = S.to_dict(sc)
    assert d["theory"] == {"drift_check": {"points": "final", "from": "sgd", "num_points": 1}}
    assert d["convergence"] == {"refine": [1, 2], "in_run": False}
    assert S.scenario_hash(scenario_from_dict(d, SRC, presets=presets, deep=False)) == S.scenario_hash(sc)
    msg = error_of(patched(raw, theory={"drift_check": {"form": "sgd"}}), presets, deep=False)
    assert f"{SRC}: theory.drift_check.form: unknown key 'form' (did you mean 'from'?)" in msg
    msg = error_of(patched(raw, convergence={"refine": [4, 2]}), presets, deep=False)
    assert f"{SRC}: convergence.refine: must be increasing positive integers" in msg


def test_theory_problems_that_need_no_model_are_found_by_the_static_checks(presets):
    """What the theory block reads of the runners and seeds is checked without the model;
    what it needs of the model (a matrix for singular values) only with it."""
    path = ROOT / "scenarios" / "theory_hyperbola.yaml"
    raw = yaml.safe_load(path.read_text())
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(raw, str(path), "quick", ["record=[loss]", "seeds.count=4"], presets=presets, deep=False)
    msg = str(e.value)
    assert "record [from --set record=[loss]]: stationary_check needs 'invariants' recorded" in msg
    assert "seeds.count [from --set seeds.count=4]: stationary_check's chi-square test needs at least 10 seeds" in msg
    path = ROOT / "scenarios" / "hyperbola.yaml"
    raw = yaml.safe_load(path.read_text())
    sv = ["theory={invariants: singular_values}"]
    scenario_from_dict(raw, str(path), "quick", sv, presets=presets, deep=False)  # no model: not checked
    with pytest.raises(ScenarioError, match="theory.invariants.*singular_values needs a model with a matrix"):
        scenario_from_dict(raw, str(path), "quick", sv, presets=presets)

"""Scenario files: load, check and validate (the join of the configuration layer).

A scenario (``scenarios/*.yaml``) says *what* to integrate: the model and its
initialisation, the data, the loss, the sampling scheme, the learning rate and number of
steps, the runners (solver presets, ``solvers/*.yaml``) and seeds, the precision, what to
record and how often, and named variants. Every key is documented in
``docs/scenarios.md``.

Loading goes ``YAML text -> raw dict -> variant merged -> --set overrides applied ->``
:class:`Scenario` (pydantic, ``extra='forbid'``) ``-> cross-checks``. Any user mistake
becomes a :class:`ScenarioError` whose message names the file, the dotted key path, the
bad value and what was expected; no Python traceback.

The layer below this module, each part importing only the parts above it:

* :mod:`sde_bias.errors`: :class:`UserError`, :class:`ScenarioError`, YAML loading;
* :mod:`sde_bias.schema` (with :mod:`sde_bias.model_registry`, :mod:`sde_bias.datafile`,
  :mod:`sde_bias.theory_config`, :mod:`sde_bias.convergence_config`): the blocks and
  :class:`Scenario`, and the canonical form (:func:`to_yaml`, :func:`scenario_hash`);
* :mod:`sde_bias.overrides` (variants, ``--set``) and :mod:`sde_bias.pydantic_errors`.

This module joins them with the solver presets and the checks across keys, in two
stages. The static checks (schema, keys against each other and the presets, numbers
representable, array sizes known without the model) import no JAX. The model checks
(``deep``) build the model and ask it: ``init`` and ``data`` against its blocks and
shapes, the array sizes it implies, the ``theory:`` block against it
(:mod:`sde_bias.model_checks`, :mod:`sde_bias.preflight`); they run after the static ones,
so a huge configuration is refused before any model is built. The modules below import
the layer's lower modules, never this one.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

from pydantic import ValidationError

from .config_base import NO_VALUE as _NOVALUE  # noqa: N811
from .convergence_config import parse_convergence
from .errors import ScenarioError as ScenarioError, UserError as UserError
from .errors import parse_yaml as parse_yaml, read_yaml_file as read_yaml_file
from .model_registry import MODEL_TYPES as MODEL_TYPES
from .overrides import apply_override, deep_merge as deep_merge, parse_override
from .pydantic_errors import errors_from_pydantic as errors_from_pydantic
from .schema import (  # noqa: F401 - the schema's public names, re-exported
    DATA_TYPES,
    OBSERVABLE_NAMES,
    SCHEMA_VERSION,
    SCHEMES,
    CompletionData,
    DataConfig,
    FixedData,
    InitConfig,
    LossConfig,
    NoiseConfig,
    PenaltyConfig,
    Scenario,
    SeedsConfig,
    SparseCosineData,
    StepSignalData,
    TeacherConfig,
    TeacherStudentData,
    TrainingConfig,
    UnbalanceConfig,
    scenario_hash,
    to_dict,
    to_yaml,
)

Problems = list[tuple[str, str, Any]]


# ---------------------------------------------------------------------------
# Cross-checks
# ---------------------------------------------------------------------------


def _static_data_size(d) -> int | None:
    if d.type == "fixed":
        return len(d.y)
    if d.type == "teacher_student":
        return d.n_train
    if d.type == "sparse_cosine":
        return d.n_train
    if d.type == "step_signal":
        return d.num_measurements
    return None  # completion: random, checked at build time


def static_problems(sc: Scenario, presets: dict | None = None) -> Problems:
    """Checks across keys that need neither the model nor JAX: the noise scheme, the
    training length, the runners and their options (against ``presets`` when given), the
    recorded observables. Returns problems."""
    from ._numbers import MAX_STEPS

    problems: Problems = []
    add = problems.append
    d, n, t = sc.data, sc.noise, sc.training

    # ---- noise scheme
    s = n.scheme
    needs_batch = s in ("with_replacement", "without_replacement", "online")
    if needs_batch and n.batch_size is None:
        add(("noise.batch_size", f"scheme {s} needs a batch_size", _NOVALUE))
    if not needs_batch and n.batch_size is not None:
        add(("noise.batch_size", f"only used by schemes with_replacement, without_replacement and online, not {s}", n.batch_size))
    if s == "bernoulli":
        if n.rho is None:
            add(("noise.rho", "scheme bernoulli needs rho, the keep probability, 0 < rho < 1", _NOVALUE))
        elif not 0 < n.rho < 1:
            add(("noise.rho", "must satisfy 0 < rho < 1", n.rho))
    else:
        if n.rho is not None:
            add(("noise.rho", f"only used by scheme bernoulli, not {s}", n.rho))
        if n.normalizer is not None:
            add(("noise.normalizer", f"only used by scheme bernoulli, not {s}", n.normalizer))
    data_size = _static_data_size(d)
    if n.batch_size is not None and data_size is not None and s != "online" and n.batch_size > data_size:
        add(("noise.batch_size", f"larger than the dataset ({data_size} samples)", n.batch_size))
    if s == "online" and d.type != "teacher_student":
        add(("noise.scheme", f"online needs data type teacher_student (fresh samples), not {d.type}", s))

    # ---- training
    if (t.steps is None) == (t.horizon is None):
        add(("training", "give exactly one of steps (SGD steps) or horizon (SDE time, steps = horizon / lr)", _NOVALUE))
    else:
        if t.horizon is not None:
            k = t.horizon / t.lr
            if not k <= MAX_STEPS:  # also inf and nan (horizon / lr overflows)
                add(("training.horizon", f"horizon / lr must be at most 2^31 - 1 = {MAX_STEPS} steps (lr = {t.lr})", t.horizon))
                return problems
            if abs(k - round(k)) > 1e-6 * max(1.0, k) or round(k) < 1:
                add(("training.horizon", f"must be a positive whole number of steps times lr = {t.lr}", t.horizon))
        total = sc.total_steps
        if total >= 1 and total % t.record_every:
            add(("training.record_every", f"must divide the number of steps ({total})", t.record_every))

    # ---- runners and options
    if len(set(sc.runners)) != len(sc.runners):
        dup = sorted({r for r in sc.runners if sc.runners.count(r) > 1})
        add(("runners", f"each preset once; repeated: {dup}", sc.runners))
    if presets is not None:
        for i, r in enumerate(sc.runners):
            if r not in presets:
                hint = difflib.get_close_matches(r, list(presets), n=1)
                add((f"runners[{i}]", f"no solver preset named {r!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; available: {', '.join(sorted(presets))}", _NOVALUE))
    for r, opts in sc.runner_options.items():
        if r not in sc.runners:
            add((f"runner_options.{r}", f"{r!r} is not one of the runners {sc.runners}", _NOVALUE))
        elif presets is not None and r in presets:
            from .presets import PresetError, resolve_preset

            try:
                resolve_preset(presets[r], opts)
            except PresetError as e:
                for path, msg, val in e.problems:
                    add((f"runner_options.{r}.{path}" if path else f"runner_options.{r}", msg, val))

    # ---- record
    known = sorted(OBSERVABLE_NAMES)
    for i, name in enumerate(sc.record):
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            add((f"record[{i}]", f"unknown observable {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; available: {', '.join(known)}", _NOVALUE))
    if len(set(sc.record)) != len(sc.record):
        add(("record", "each observable once", sc.record))
    return problems



def model_problems(sc: Scenario) -> Problems:
    """Checks that ask the built model (imports JAX): the model keeps its contract, ``init``
    and ``data`` fit its blocks and shapes (:func:`sde_bias.model_checks.scenario_problems`),
    a data file has enough samples for the batch. Returns problems."""
    from .model_checks import scenario_problems

    problems, file_size = scenario_problems(sc)
    n = sc.noise
    if n.batch_size is not None and file_size is not None and n.scheme != "online" and n.batch_size > file_size:
        problems.append(("noise.batch_size", f"larger than the dataset ({file_size} samples)", n.batch_size))
    return problems


def check_scenario(sc: Scenario, presets: dict | None = None) -> Problems:
    """Cross-field checks that the per-key schema cannot express: :func:`static_problems`
    and :func:`model_problems` (which builds the model). Returns problems."""
    return model_problems(sc) + static_problems(sc, presets)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _source_label(source: str, variant: str | None, overrides) -> str:
    label = str(source)
    if variant:
        label += f" [variant {variant}]"
    return label


def _origin_note(path: str, variant_keys: set[str], override_keys: dict[str, str]) -> str:
    for key, text in override_keys.items():
        if path == key or path.startswith(key + ".") or path.startswith(key + "["):
            return f" [from --set {text}]"
    for key in variant_keys:
        if path == key or path.startswith(key + ".") or path.startswith(key + "["):
            return " [from the variant]"
    return ""


def _flat_keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        p = f"{prefix}.{k}" if prefix else str(k)
        out.add(p)
        if isinstance(v, dict):
            out |= _flat_keys(v, p)
    return out


def scenario_from_dict(
    raw: Any,
    source: str = "<scenario>",
    variant: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    seeds: int | None = None,
    presets: dict | None = None,
    check: bool = True,
    deep: bool = True,
) -> Scenario:
    """Validate a raw mapping (as read from YAML) into a :class:`Scenario`, applying the
    named variant, then ``--set`` overrides, then ``seeds`` (the ``--seeds`` option).
    Raises :class:`ScenarioError` listing every problem.

    ``check``: also the checks across keys (else the schema only). ``deep``: also the
    checks that build the model (imports JAX); without it nothing here imports JAX."""
    if not isinstance(raw, dict):
        raise ScenarioError(source, [("", "a scenario file must be a YAML mapping (key: value)", raw)])
    raw = copy.deepcopy(raw)
    variants = raw.get("variants") or {}
    variant_keys: set[str] = set()
    if not isinstance(variants, dict):
        raise ScenarioError(source, [("variants", "must be a mapping {name: {overrides}}", variants)])
    if variant is not None:
        if variant not in variants:
            avail = ", ".join(sorted(variants)) or "none"
            raise ScenarioError(source, [("variants", f"no variant named {variant!r}; available: {avail}", _NOVALUE)])
        patch = variants[variant]
        if not isinstance(patch, dict):
            raise ScenarioError(source, [(f"variants.{variant}", "must be a mapping of overrides", patch)])
        if "variants" in patch:
            raise ScenarioError(source, [(f"variants.{variant}.variants", "a variant cannot define variants", _NOVALUE)])
        variant_keys = _flat_keys(patch)
        raw = deep_merge(raw, patch)
    override_keys: dict[str, str] = {}
    for text in overrides:
        keys, value = parse_override(text)
        raw = apply_override(raw, keys, value, text)
        override_keys[".".join(keys)] = text
    if seeds is not None:
        raw = apply_override(raw, ["seeds", "count"], seeds, f"seeds.count={seeds}")
        override_keys["seeds.count"] = f"seeds.count={seeds} (--seeds)"
    label = _source_label(source, variant, overrides)

    def annotate(problems):
        return [(p + _origin_note(p, variant_keys, override_keys), msg, val) for p, msg, val in problems]

    from . import _numbers

    if bad := _numbers.nonfinite_problems(raw):
        raise ScenarioError(label, annotate(bad))
    try:
        sc = Scenario.model_validate(raw)
    except ValidationError as e:
        raise ScenarioError(label, annotate(errors_from_pydantic(e, Scenario))) from None
    if check:
        # array sizes known without the model first: a huge configuration is refused
        # before any model is built
        if problems := _numbers.range_problems(sc):
            raise ScenarioError(label, annotate(problems))
        problems = model_problems(sc) if deep else []
        problems += static_problems(sc, presets)
        problems += _numbers.precision_problems(to_dict(sc), sc.precision)
        if not problems and deep:
            from .model_checks import model_facts

            problems = _numbers.range_problems(sc, model_facts(sc.model)[0])
        if problems:
            raise ScenarioError(label, annotate(problems))
        from .preflight import theory_problems

        if problems := theory_problems(sc, presets, model=deep):
            raise ScenarioError(label, annotate(problems))
        if sc.convergence is not None:
            parse_convergence(sc.convergence, label)
    sc._source = str(source)
    sc._variant = variant
    sc._overrides = tuple(overrides) + ((f"seeds.count={seeds}",) if seeds is not None else ())
    return sc


def load_scenario(
    path,
    variant: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    seeds: int | None = None,
    presets: dict | None = None,
) -> Scenario:
    """Read, merge and validate a scenario file (see :func:`scenario_from_dict`).
    ``presets`` defaults to the installed solver presets."""
    if presets is None:
        from .presets import load_presets

        presets = load_presets()
    raw = read_yaml_file(path)
    return scenario_from_dict(raw, str(path), variant, overrides, seeds, presets)


def validate_file(path, presets: dict | None = None, build: bool = True, deep: bool = True) -> list[str]:
    """Validate a scenario and every one of its variants. ``deep``: also the checks that
    build the model (imports JAX; see :func:`scenario_from_dict`); ``build`` (with
    ``deep``): also build their problems and probe the runners that depend on the initial
    point (:func:`sde_bias.preflight.probe_runners`). Returns the names checked (``''``
    for the base)."""
    if presets is None:
        from .presets import load_presets

        presets = load_presets()
    raw = read_yaml_file(path)
    names: list[str | None] = [None]
    if isinstance(raw, dict) and isinstance(raw.get("variants"), dict):
        names += list(raw["variants"])
    errors: list[ScenarioError] = []
    for v in names:
        try:
            sc = scenario_from_dict(raw, str(path), v, (), None, presets, deep=deep)
            if build and deep:
                from .preflight import probe_runners

                probe_runners(sc, presets)
        except ScenarioError as e:
            errors.append(e)
    if errors:
        raise ScenarioError(str(path), [], note="\n".join(str(e) for e in errors))
    return ["" if v is None else v for v in names]


__all__ = [
    "load_scenario", "scenario_from_dict", "validate_file", "check_scenario", "static_problems", "model_problems",
    "Scenario", "ScenarioError", "UserError", "parse_yaml", "read_yaml_file", "deep_merge", "parse_override",
    "apply_override", "errors_from_pydantic", "to_dict", "to_yaml", "scenario_hash",
]

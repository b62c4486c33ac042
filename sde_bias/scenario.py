"""Scenario files: schema, validation, variants and command-line overrides.

A scenario (``scenarios/*.yaml``) says *what* to integrate: the model and its
initialisation, the data, the loss, the sampling scheme, the learning rate and number of
steps, the runners (solver presets, ``solvers/*.yaml``) and seeds, the precision, what to
record and how often, and named variants. Every key is documented in
``docs/scenarios.md``.

Loading goes ``YAML text -> raw dict -> variant merged -> --set overrides applied ->``
:class:`Scenario` (pydantic, ``extra='forbid'``) ``-> cross-checks``. Any user mistake
becomes a :class:`ScenarioError` whose message names the file, the dotted key path, the
bad value and what was expected; no Python traceback.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator

from .config_base import NO_VALUE, ConfigBlock
from .datafile import FileData
from .model_registry import MODEL_TYPES as MODEL_TYPES, ModelConfig
from .report_config import ReportConfig

SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class UserError(Exception):
    """A mistake of the user (bad file, bad option, bad value). The command line prints
    its message and exits with code 2, without a traceback."""


class ScenarioError(UserError):
    """An invalid scenario or preset. ``problems`` is a list of ``(path, message, value)``;
    the message has one line per problem: ``FILE: KEY.PATH: what was expected (got VALUE)``."""

    def __init__(self, source: str, problems: list[tuple[str, str, Any]], note: str = ""):
        self.source = str(source)
        self.problems = list(problems)
        lines = []
        for path, message, value in self.problems:
            where = f"{self.source}: {path}: " if path else f"{self.source}: "
            got = "" if value is _NOVALUE else f" (got {_short(value)})"
            lines.append(where + message + got)
        if note:
            lines.append(note)
        super().__init__("\n".join(lines))


_NOVALUE = NO_VALUE


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------
# YAML loading: floats like 1e-3, duplicate keys, line numbers
# ---------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.1 needs ``1.0e-3``) and rejects
    duplicate keys."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text (floats like ``1e-3``, duplicate keys rejected); a syntax error
    becomes a :class:`ScenarioError` naming the line."""
    from ._numbers import MAX_DEPTH, structure_problem, yaml_depth_problem

    try:
        deep = yaml_depth_problem(text, _Loader)
        if deep is not None:
            raise ScenarioError(source, [(deep[0], f"invalid YAML: {deep[1]}", _NOVALUE)])
        value = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e)
        raise ScenarioError(source, [(where, f"invalid YAML: {what}", _NOVALUE)]) from None
    except RecursionError:
        raise ScenarioError(source, [("", f"invalid YAML: nested more than {MAX_DEPTH} levels deep", _NOVALUE)]) from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ScenarioError(source, [("", f"invalid YAML: {str(e).splitlines()[0]}", _NOVALUE)]) from None
    bad = structure_problem(value)
    if bad is not None:
        raise ScenarioError(source, [(bad[0], f"invalid YAML: {bad[1]}", _NOVALUE)])
    return value


def read_yaml_file(path) -> Any:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    return parse_yaml(text, str(path))


# ---------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


_Block = ConfigBlock


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_nested_numbers(v, what: str):
    """A number or a (nested) list of numbers."""
    if _is_number(v):
        return v
    if isinstance(v, list) and v and all(_is_number(a) or isinstance(a, list) for a in v):
        for a in v:
            _check_nested_numbers(a, what)
        return v
    raise ValueError(f"{what} must be a number or a (nested) list of numbers")


# ---- models: sde_bias.model_registry (ModelConfig, MODEL_TYPES) --------------


# ---- initialisation -------------------------------------------------------


def _check_scalar_spec(v, what: str):
    """A number, ``{abs_normal: [a, b]}`` (a + b|z|, z ~ N(0, 1)) or
    ``{uniform: [lo, hi]}``."""
    if _is_number(v):
        return v
    if isinstance(v, dict) and len(v) == 1:
        (kind, ab), = v.items()
        if kind in ("abs_normal", "uniform") and isinstance(ab, list) and len(ab) == 2 and all(
            _is_number(a) for a in ab
        ):
            if kind == "uniform" and not ab[0] <= ab[1]:
                raise ValueError(f"{what}: uniform: [lo, hi] needs lo <= hi")
            return v
    raise ValueError(
        f"{what} must be a number, {{abs_normal: [a, b]}} (a + b|z|, z ~ N(0,1)) "
        "or {uniform: [lo, hi]}"
    )


class UnbalanceConfig(_Block):
    """Move the initial point along its symmetry orbit: unit ``j`` rescaled by
    ``exp(log_scales[j])`` (the paper's unbalanced initialisations)."""

    log_scales: Any

    @field_validator("log_scales")
    @classmethod
    def _log_scales(cls, v):
        if _is_number(v):
            return v
        if isinstance(v, list) and v and all(_is_number(a) for a in v):
            return v
        if isinstance(v, dict) and set(v) == {"linspace"}:
            ab = v["linspace"]
            if isinstance(ab, list) and len(ab) == 2 and all(_is_number(a) for a in ab):
                return v
        raise ValueError(
            "log_scales must be a number, a list of numbers or {linspace: [start, stop]}"
        )


class InitConfig(_Block):
    """Initial parameters per seed: ``point + std * N(0, 1)`` per block, then
    ``unbalance``, then ``block_scale``."""

    std: Any = None
    point: dict[str, Any] | None = None
    unbalance: UnbalanceConfig | None = None
    block_scale: dict[str, Any] | None = None

    @field_validator("std")
    @classmethod
    def _std(cls, v):
        if v is None:
            return v
        if _is_number(v):
            if v < 0:
                raise ValueError("std must be >= 0")
            return v
        if isinstance(v, dict) and v and all(isinstance(k, str) and _is_number(s) for k, s in v.items()):
            bad = [k for k, s in v.items() if s < 0]
            if bad:
                raise ValueError(f"std of block {bad[0]!r} must be >= 0")
            return v
        raise ValueError("std must be a number >= 0 or a mapping {block: number}")

    @field_validator("point")
    @classmethod
    def _point(cls, v):
        if v is None:
            return v
        for k, a in v.items():
            _check_nested_numbers(a, f"point value of block {k!r}")
        return v

    @field_validator("block_scale")
    @classmethod
    def _block_scale(cls, v):
        if v is None:
            return v
        for k, a in v.items():
            _check_scalar_spec(a, f"block_scale of block {k!r}")
        return v


class TeacherConfig(InitConfig):
    """The teacher's parameters (same keys as ``init``), optionally of another model."""

    model: ModelConfig | None = None


# ---- data -----------------------------------------------------------------

DataSeed = Annotated[int, Field(ge=0)]


class FixedData(_Block):
    """An inline dataset: ``x`` (one entry per sample) and ``y``."""

    type: Literal["fixed"]
    x: list[Any] = Field(min_length=1)
    y: list[Any] = Field(min_length=1)
    target: Any = None
    seed: DataSeed = 0

    @field_validator("x", "y")
    @classmethod
    def _xy(cls, v):
        for a in v:
            _check_nested_numbers(a, "every sample")
        return v

    @field_validator("target")
    @classmethod
    def _target(cls, v):
        return v if v is None else _check_nested_numbers(v, "target")


class TeacherStudentData(_Block):
    """``x ~ N(0, I)``, ``y = teacher(x) + N(0, noise_std^2)``: fresh samples every step
    (``n_train`` unset, scheme ``online``) or a fixed training set of ``n_train``."""

    type: Literal["teacher_student"]
    teacher: TeacherConfig
    noise_std: NonNegativeFloat = 0.0
    n_train: PositiveInt | None = None
    n_test: PositiveInt | None = None
    seed: DataSeed = 0


class CompletionData(_Block):
    """Matrix completion: ``M* = U diag(singular_values) V^T``, entries observed with
    probability ``observe_prob``."""

    type: Literal["completion"]
    size: PositiveInt | None = None
    singular_values: list[PositiveFloat] = Field(min_length=1)
    observe_prob: Annotated[float, Field(gt=0, le=1)] = 0.2
    seed: DataSeed = 0


class SparseCosineData(_Block):
    """``y(t) = sum_k w_k cos(2 pi k t)`` with ``nnz`` nonzero ``w_k``."""

    type: Literal["sparse_cosine"]
    dim: PositiveInt | None = None
    nnz: PositiveInt = 3
    n_train: PositiveInt = 32
    n_test: PositiveInt = 10_000
    noise_std: NonNegativeFloat = 0.1
    seed: DataSeed = 0


PAPER_STEP_PIECES = [[1.0, 50], [-1.5, 70], [0.5, 40], [2.0, 40]]


class StepSignalData(_Block):
    """Piecewise-constant signal ``s*`` measured as ``y = A s* + noise``,
    ``A_ij ~ N(0, 1/num_measurements)``."""

    type: Literal["step_signal"]
    num_measurements: PositiveInt = 60
    noise_std: NonNegativeFloat = 0.1
    pieces: list[Any] = Field(default_factory=lambda: copy.deepcopy(PAPER_STEP_PIECES), min_length=1)
    seed: DataSeed = 0

    @field_validator("pieces")
    @classmethod
    def _pieces(cls, v):
        for p in v:
            if not (
                isinstance(p, list)
                and len(p) == 2
                and _is_number(p[0])
                and isinstance(p[1], int)
                and not isinstance(p[1], bool)
                and p[1] > 0
            ):
                raise ValueError("every piece must be [value, length] with an integer length > 0")
        return v


DataConfig = Annotated[
    Union[FixedData, TeacherStudentData, CompletionData, SparseCosineData, StepSignalData, FileData],
    Field(discriminator="type"),
]

DATA_TYPES = ["fixed", "teacher_student", "completion", "sparse_cosine", "step_signal", "file"]


# ---- loss, penalty, noise, training, seeds ----------------------------------


class LossConfig(_Block):
    """Squared loss per sample: ``scale * 1/2 |f - y|^2`` (half_sum) or
    ``scale * mean_k (f_k - y_k)^2`` (mean, PyTorch's MSELoss)."""

    reduction: Literal["half_sum", "mean"] = "half_sum"
    scale: PositiveFloat = 1.0


class PenaltyConfig(_Block):
    """Deterministic penalty on the invariants ``q = pi(theta)``."""

    l1: NonNegativeFloat = 0.0


SCHEMES = ["full_batch", "with_replacement", "without_replacement", "bernoulli", "online"]


class NoiseConfig(_Block):
    """The sampling scheme of SGD (and hence of the SDE)."""

    scheme: Literal["full_batch", "with_replacement", "without_replacement", "bernoulli", "online"] = (
        "full_batch"
    )
    batch_size: PositiveInt | None = None
    rho: float | None = None
    normalizer: PositiveFloat | None = None
    label_noise: NonNegativeFloat = 0.0
    num_reference: PositiveInt = 1024


class TrainingConfig(_Block):
    """Learning rate, length of the run and recording cadence."""

    lr: PositiveFloat
    steps: PositiveInt | None = None
    horizon: PositiveFloat | None = None
    record_every: PositiveInt
    chunk_records: PositiveInt | None = None
    divergence_threshold: PositiveFloat = 1e30


class SeedsConfig(_Block):
    """Seed ``i`` uses ``jax.random.PRNGKey(base + i)``, ``i = 0..count-1``."""

    base: Annotated[int, Field(ge=0)] = 0
    count: PositiveInt = 16


class Scenario(_Block):
    """A validated scenario (see ``docs/scenarios.md`` for every key)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]
    description: str = ""
    precision: Literal["float32", "float64"] = "float32"
    model: ModelConfig
    init: InitConfig
    data: DataConfig
    loss: LossConfig = LossConfig()
    penalty: PenaltyConfig | None = None
    noise: NoiseConfig = NoiseConfig()
    training: TrainingConfig
    seeds: SeedsConfig = SeedsConfig()
    runners: list[str] = Field(min_length=1)
    runner_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    record: list[str] = Field(default_factory=lambda: ["loss"])
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    theory: dict[str, Any] = Field(default_factory=dict)
    convergence: dict[str, Any] | None = None
    report: ReportConfig = ReportConfig()

    _source: str = PrivateAttr(default="<scenario>")
    _variant: str | None = PrivateAttr(default=None)
    _overrides: tuple[str, ...] = PrivateAttr(default=())

    # ------------------------------------------------------------------ derived
    @property
    def source(self) -> str:
        return self._source

    @property
    def variant(self) -> str | None:
        return self._variant

    @property
    def overrides(self) -> tuple[str, ...]:
        return self._overrides

    @property
    def total_steps(self) -> int:
        t = self.training
        if t.steps is not None:
            return t.steps
        return int(round(t.horizon / t.lr))

    @property
    def num_records(self) -> int:
        """Number of records after the initial one."""
        return self.total_steps // self.training.record_every

    @property
    def chunk_records(self) -> int:
        """Records per compiled chunk: the scenario's ``chunk_records`` or about 20 equal
        chunks (the smallest divisor of the record count ``n`` from ``ceil(n / 20)``; if that
        is much larger, e.g. ``n`` prime, ``ceil(n / 20)`` with a shorter last chunk)."""
        total = self.num_records
        if self.training.chunk_records is not None:
            return min(self.training.chunk_records, total)
        target = math.ceil(total / 20)
        small = [k for k in range(1, math.isqrt(total) + 1) if total % k == 0]  # total may be ~2^31
        d = min(x for x in small + [total // k for k in small] if x >= target)
        return d if d <= 4 * target + 16 else target  # else the last chunk is shorter

    @property
    def seed_list(self) -> list[int]:
        return [self.seeds.base + i for i in range(self.seeds.count)]

    def run_label(self) -> str:
        """``name`` or ``name-variant``: the default output file stem."""
        return self.name if not self._variant else f"{self.name}-{self._variant}"


# ---------------------------------------------------------------------------
# pydantic errors -> (path, message, value)
# ---------------------------------------------------------------------------


def _unwrap(ann):
    """Strip Annotated/Optional; return (origin, args, discriminated_union_members)."""
    while typing.get_origin(ann) is Annotated:
        ann = typing.get_args(ann)[0]
    origin = typing.get_origin(ann)
    if origin in (Union, types.UnionType):
        members = [_strip_annotated(a) for a in typing.get_args(ann) if a is not type(None)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        if len(models) > 1:
            return "union", models
        if len(members) == 1:
            return _unwrap(members[0])
        if len(models) == 1:
            return _unwrap(models[0])
        return None, None
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "model", ann
    if origin is dict:
        return "dict", typing.get_args(ann)[1]
    if origin is list:
        return "list", typing.get_args(ann)[0]
    return None, None


def _strip_annotated(ann):
    while typing.get_origin(ann) is Annotated:
        ann = typing.get_args(ann)[0]
    return ann


def _tag_of(model_cls) -> str | None:
    if isinstance(getattr(model_cls, "tag", None), str):  # a block whose type is free text
        return model_cls.tag
    f = model_cls.model_fields.get("type") or model_cls.model_fields.get("kind")
    if f is None:
        return None
    args = typing.get_args(f.annotation)
    return args[0] if args else None


def _walk(root_cls, loc):
    """Follow a pydantic error location through the schema classes. Returns the clean
    dotted path (union tags dropped) and the model class that contains the last key."""
    parts: list[str] = []
    kind, cur = "model", root_cls
    parent = None
    i = 0
    loc = list(loc)
    while i < len(loc):
        el = loc[i]
        if kind == "union":
            tags = {_tag_of(m): m for m in cur}
            if el in tags:
                kind, cur = "model", tags[el]
                i += 1
                continue
            kind, cur = None, None
        if kind == "model":
            parent = cur
            parts.append(str(el))
            field = cur.model_fields.get(el) if isinstance(el, str) else None
            kind, cur = _unwrap(field.annotation) if field is not None else (None, None)
        elif kind == "dict":
            parent = None
            parts.append(str(el))
            kind, cur = _unwrap(cur)
        elif kind == "list":
            parent = None
            parts.append(f"[{el}]")
            kind, cur = _unwrap(cur)
        else:
            parent = None
            parts.append(f"[{el}]" if isinstance(el, int) else str(el))
        i += 1
    path = ""
    for p in parts:
        path += p if (p.startswith("[") or not path) else "." + p
    return path, parent


def _message_for(err: dict, parent) -> str:
    typ = err["type"]
    ctx = err.get("ctx") or {}
    if typ == "extra_forbidden":
        key = str(err["loc"][-1])
        allowed = list(parent.model_fields) if parent is not None else []
        hint = difflib.get_close_matches(key, allowed, n=1)
        text = f"unknown key {key!r}"
        if hint:
            text += f" (did you mean {hint[0]!r}?)"
        if allowed:
            text += "; allowed keys: " + ", ".join(allowed)
        return text
    if typ == "missing":
        return "required key is missing"
    if typ in ("union_tag_invalid", "union_tag_not_found"):
        disc = ctx.get("discriminator", "type").strip(chr(39))
        disc = "type" if disc.endswith("()") else disc  # a callable discriminator reads `type`
        if typ == "union_tag_invalid":
            return f"unknown {disc} {ctx.get('tag')!r}; expected one of: {ctx.get('expected_tags')}"
        return f"needs a {disc} key"
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if msg.startswith("Input should be"):
        msg = "should be" + msg[len("Input should be"):]
    return msg


def errors_from_pydantic(exc: ValidationError, root_cls) -> list[tuple[str, str, Any]]:
    out = []
    for err in exc.errors():
        path, parent = _walk(root_cls, err["loc"])
        value = _NOVALUE if err["type"] in ("missing", "extra_forbidden") else err.get("input", _NOVALUE)
        if err["type"] == "union_tag_invalid":
            value = _NOVALUE
        out.append((path, _message_for(err, parent), value))
    return out


# ---------------------------------------------------------------------------
# Variants and overrides
# ---------------------------------------------------------------------------


def deep_merge(base: dict, patch: dict) -> dict:
    """``patch`` over ``base``: mappings merge recursively, anything else replaces;
    a ``null`` value removes the key (so its default applies). A mapping whose ``type``
    changes (e.g. ``model: {type: linear, dim: 200}`` over a cumsum_hadamard model) is
    replaced as a whole."""
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict) and not _retyped(out[k], v):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _retyped(old: dict, new: dict) -> bool:
    """A patch that changes ``type`` (model, data) or ``kind`` replaces the mapping."""
    return any(k in new and k in old and new[k] != old[k] for k in ("type", "kind"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'training.lr=0.01'`` -> ``(['training', 'lr'], 0.01)`` (value parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. --set training.lr=0.01")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise UserError(f"--set {text!r}: bad key path {key!r}")
    parsed = parse_yaml(value, f"--set {text}") if value.strip() else None
    return key.split("."), parsed


def apply_override(raw: dict, keys: list[str], value: Any, text: str) -> dict:
    out = copy.deepcopy(raw)
    node = out
    for i, k in enumerate(keys[:-1]):
        if isinstance(node, list):
            node = _list_item(node, k, text)
            continue
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        elif not isinstance(nxt, (dict, list)):
            raise UserError(
                f"--set {text}: {'.'.join(keys[: i + 1])} is {_short(nxt)}, not a mapping"
            )
        node = nxt
    last = keys[-1]
    if isinstance(node, list):
        idx = _index(node, last, text)
        node[idx] = value
    elif value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return out


def _index(lst, k, text):
    try:
        i = int(k)
    except ValueError:
        raise UserError(f"--set {text}: {k!r} is not a list index") from None
    if not -len(lst) <= i < len(lst):
        raise UserError(f"--set {text}: index {i} out of range (list of {len(lst)})")
    return i


def _list_item(lst, k, text):
    return lst[_index(lst, k, text)]


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


def check_scenario(sc: Scenario, presets: dict | None = None) -> list[tuple[str, str, Any]]:
    """Cross-field checks that the per-key schema cannot express. Returns problems."""
    from . import observables as _obs
    from ._numbers import MAX_STEPS

    problems: list[tuple[str, str, Any]] = []
    add = problems.append
    d, n, t = sc.data, sc.noise, sc.training

    # ---- model, init and data: asked of the model (sde_bias.model_checks)
    from .model_checks import scenario_problems

    found, file_size = scenario_problems(sc)
    problems += found

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
    data_size = _static_data_size(d) or file_size
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
    known = sorted(set(_obs.REGISTRY) | {"balance"})
    for i, name in enumerate(sc.record):
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            add((f"record[{i}]", f"unknown observable {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; available: {', '.join(known)}", _NOVALUE))
    if len(set(sc.record)) != len(sc.record):
        add(("record", "each observable once", sc.record))
    return problems


def check_theory(sc: Scenario, label: str):
    """Validate a non-empty ``theory:`` block with ``sde_bias.theory_run.parse_theory``
    when the theory stage is installed (before anything runs)."""
    if not sc.theory:
        return
    import importlib

    try:
        mod = importlib.import_module("sde_bias.theory_run")
    except ModuleNotFoundError as e:
        if e.name == "sde_bias.theory_run":
            return
        raise
    parse = getattr(mod, "parse_theory", None)
    if parse is not None:
        parse(sc.theory, label)


def check_convergence(sc: Scenario, label: str):
    """Validate a non-empty ``convergence:`` block (``sde_bias.converge_run``)."""
    if sc.convergence:
        from .converge_run import parse_convergence

        parse_convergence(sc.convergence, label)


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
) -> Scenario:
    """Validate a raw mapping (as read from YAML) into a :class:`Scenario`, applying the
    named variant, then ``--set`` overrides, then ``seeds`` (the ``--seeds`` option).
    Raises :class:`ScenarioError` listing every problem."""
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
        problems = check_scenario(sc, presets)
        problems += _numbers.precision_problems(to_dict(sc), sc.precision)
        if not problems:
            problems = _numbers.range_problems(sc)
        if problems:
            raise ScenarioError(label, annotate(problems))
        check_theory(sc, label)
        from .preflight import theory_problems

        if problems := theory_problems(sc, presets):
            raise ScenarioError(label, annotate(problems))
        check_convergence(sc, label)
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


def validate_file(path, presets: dict | None = None, build: bool = True) -> list[str]:
    """Validate a scenario and every one of its variants (and, with ``build``, build
    their problems). Returns the names checked (``''`` for the base)."""
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
            sc = scenario_from_dict(raw, str(path), v, (), None, presets)
            if build:
                from .preflight import probe_runners

                probe_runners(sc, presets)
        except ScenarioError as e:
            errors.append(e)
    if errors:
        raise ScenarioError(str(path), [], note="\n".join(str(e) for e in errors))
    return ["" if v is None else v for v in names]


# ---------------------------------------------------------------------------
# Canonical YAML (what is stored in the HDF5 file) and its hash
# ---------------------------------------------------------------------------


def to_dict(sc: Scenario) -> dict:
    """The resolved scenario as a plain mapping (variants already applied, so dropped)."""
    return sc.model_dump(mode="python", exclude={"variants"}, exclude_none=True)


def to_yaml(sc: Scenario) -> str:
    """Canonical YAML of the resolved scenario: re-loading it gives the same run."""
    header = f"# sde_bias scenario (schema {SCHEMA_VERSION}), resolved from {sc.source}"
    if sc.variant:
        header += f", variant {sc.variant}"
    if sc.overrides:
        header += ", with " + " ".join(f"--set {o}" for o in sc.overrides)
    body = yaml.safe_dump(to_dict(sc), sort_keys=False, default_flow_style=None, width=100)
    return header + "\n" + body


def scenario_hash(sc: Scenario) -> str:
    """SHA-256 of the canonical mapping (independent of comments and key order)."""
    body = yaml.safe_dump(to_dict(sc), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()

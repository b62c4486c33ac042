"""Scenario checks that ask the model: it builds, it keeps the model contract, and the
initialisation and the data fit it.

Called by :func:`sde_bias.scenario.model_problems`; every check here reads a fact of the
built model (:class:`sde_bias.models.AbstractModel`: blocks, input and output shapes, the
data kinds it takes, the length of its unbalancing, the size of its invariants), never its
type name. A model of one's own is held to its contract on abstract arrays
(``jax.eval_shape``): a method that fails, is not jittable, or returns the wrong shape is a
one-line problem naming ``model.type`` (``model.function`` for a bare predictor).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .config_base import NO_VALUE
from .datafile import shape_problems
from .model_registry import MODEL_TYPES, ModelLoadError, build_model
from .models import AbstractModel, Predictor
from .user_models import abstract_call, abstract_call_tree

Problems = list[tuple[str, str, Any]]


class ModelFacts(NamedTuple):
    """What the checks ask of a model, read once from the built model."""

    model: AbstractModel
    kind: str  # the block's ``type`` (for messages only)
    blocks: dict[str, tuple[int, ...]]
    input_shape: tuple[int, ...]
    input_bounds: tuple[int, ...] | None
    output_shape: tuple[int, ...]
    data_kinds: frozenset[str]
    unbalance_length: int
    num_invariants: int
    matrix_shape: tuple[int, ...] | None  # of ``model.matrix`` when the model has one


_FACTS: dict[tuple[str, str], ModelFacts] = {}


def model_facts(cfg, key: str = "model") -> tuple[ModelFacts | None, Problems]:
    """Build the model of a ``model:`` block and read its facts; ``(None, problems)`` when it
    does not build or breaks its contract (problems name keys under ``key``)."""
    cache = (type(cfg).__name__, cfg.model_dump_json())
    if cache in _FACTS:
        return _FACTS[cache], []
    try:
        model = build_model(cfg)
    except ModelLoadError as e:
        return None, [(f"{key}.{e.key}" if e.key else key, e.message, NO_VALUE)]
    blame = key if cfg.type in MODEL_TYPES and cfg.type != "predictor" else f"{key}.{'function' if cfg.type == 'predictor' else 'type'}"
    facts, problems = _read_facts(model, cfg.type, blame)
    if facts is not None:
        _FACTS[cache] = facts
    return facts, problems


def _read_facts(model: AbstractModel, kind: str, blame: str) -> tuple[ModelFacts | None, Problems]:
    name = type(model).__name__
    try:
        blocks = {k: tuple(int(n) for n in s) for k, s in model.block_shapes.items()}
        in_shape = tuple(int(n) for n in model.input_shape)
        out_shape = tuple(int(n) for n in model.output_shape)
        bounds = model.input_bounds
        k = int(model.lie_algebra_dim)
        n_unbalance = int(model.unbalance_length)
        kinds = frozenset(model.data_kinds)
    except Exception as e:  # noqa: BLE001 - a user's model: any failure is one line
        return None, [(blame, f"{name}: reading its facts failed: {type(e).__name__}: {e}", NO_VALUE)]
    p = sum(math.prod(s) for s in blocks.values())
    dtype = jnp.float32
    theta = jax.ShapeDtypeStruct((p,), dtype)
    xdt = jnp.int32 if bounds is not None else dtype
    x = jax.ShapeDtypeStruct(in_shape, xdt)
    xs = jax.ShapeDtypeStruct((2,) + in_shape, xdt)
    s = jax.ShapeDtypeStruct((k,), dtype)
    calls = [  # (what, thunk, expected shape); the first broken method is the (one-line) problem
        ("predict(theta, x)", lambda: abstract_call(model.predict, theta, x), out_shape),
        ("predict_batch(theta, xs)", lambda: abstract_call(model.predict_batch, theta, xs), (2,) + out_shape),
        ("generators(theta)", lambda: abstract_call(model.generators, theta), (k, p)),
        ("action(theta, s)", lambda: abstract_call(model.action, theta, s), (p,)),
        ("unbalance(theta, log_scales)", lambda: abstract_call(model.unbalance, theta, jax.ShapeDtypeStruct((n_unbalance,), dtype)), (p,)),
        ("invariants(theta)", lambda: abstract_call(model.invariants, theta), None),
    ]
    for what, call, want in calls:
        try:
            out = call()
        except ValueError as e:
            return None, [(blame, f"{name}.{what} {e}", NO_VALUE)]
        if want is not None and tuple(out.shape) != want:
            return None, [(blame, f"{name}.{what} returns shape {tuple(out.shape)}, expected {want}", NO_VALUE)]
    q = out
    if q.ndim != 1:
        return None, [(blame, f"{name}.invariants(theta) returns shape {q.shape}, expected a flat vector", NO_VALUE)]
    try:
        if not (isinstance(model, Predictor) and model.section_fn is None):  # no section: said when used
            what = "section(q)"
            ts = abstract_call(model.section, jax.ShapeDtypeStruct(q.shape, dtype))
            if tuple(ts.shape) != (p,):
                return None, [(blame, f"{name}.section(q) returns shape {tuple(ts.shape)}, expected {(p,)}", NO_VALUE)]
        what = "balance(theta)"
        balance = abstract_call_tree(model.balance, theta)
    except ValueError as e:
        return None, [(blame, f"{name}.{what} {e}", NO_VALUE)]
    if not isinstance(balance, dict):
        return None, [(blame, f"{name}.balance(theta) returns {type(balance).__name__}, not a dict", NO_VALUE)]
    matrix = None
    if hasattr(model, "matrix"):
        matrix = tuple(jax.eval_shape(model.matrix, theta).shape)
    return ModelFacts(model, kind, blocks, in_shape, bounds, out_shape, kinds, n_unbalance, int(q.shape[0]), matrix), []


# ---------------------------------------------------------------------------
# init
# ---------------------------------------------------------------------------


def nested_shape(v) -> tuple[int, ...] | None:
    """Shape of a (nested) list of numbers; ``None`` if ragged."""
    if not isinstance(v, list):
        return ()
    subs = [nested_shape(a) for a in v]
    if any(s is None for s in subs) or len(set(subs)) > 1:
        return None
    return (len(v),) + subs[0]


def init_problems(init, facts: ModelFacts, prefix: str) -> Problems:
    """``init`` (or ``data.teacher``) against the model's blocks and unbalancing."""
    problems: Problems = []
    blocks, kind = facts.blocks, facts.kind
    names = ", ".join(blocks)
    if init.std is None and init.point is None:
        problems.append((prefix, "needs `std` (Gaussian N(0, std^2)) and/or `point` (explicit parameters)", NO_VALUE))
    if isinstance(init.std, dict):
        for k in init.std:
            if k not in blocks:
                problems.append((f"{prefix}.std.{k}", f"unknown block of model {kind}; blocks: {names}", NO_VALUE))
        missing = [k for k in blocks if k not in init.std]
        if missing and init.point is None:
            problems.append((f"{prefix}.std", f"no std for blocks {missing} (give every block: {names})", init.std))
    if init.point is not None:
        for k, v in init.point.items():
            if k not in blocks:
                problems.append((f"{prefix}.point.{k}", f"unknown block of model {kind}; blocks: {names}", NO_VALUE))
                continue
            shape = nested_shape(v)
            if shape is None:
                problems.append((f"{prefix}.point.{k}", "ragged nested list", v))
            elif shape != () and shape != blocks[k]:
                problems.append((f"{prefix}.point.{k}", f"shape {shape} does not match block shape {blocks[k]} (or give one number)", NO_VALUE))
        missing = [k for k in blocks if k not in init.point]
        if missing and init.std is None:
            problems.append((f"{prefix}.point", f"no value for blocks {missing} and no std", NO_VALUE))
    if init.unbalance is not None:
        n = facts.unbalance_length
        if n == 0:
            problems.append((f"{prefix}.unbalance", f"model {kind} has no symmetry to unbalance", NO_VALUE))
        else:
            ls = init.unbalance.log_scales
            if isinstance(ls, list) and len(ls) != n:
                problems.append((f"{prefix}.unbalance.log_scales", f"needs {n} entries for this model (or a number, or {{linspace: [a, b]}})", ls))
    if init.block_scale is not None:
        for k in init.block_scale:
            if k not in blocks:
                problems.append((f"{prefix}.block_scale.{k}", f"unknown block of model {kind}; blocks: {names}", NO_VALUE))
    return problems


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


def data_problems(sc, facts: ModelFacts) -> tuple[Problems, int | None]:
    """``data`` against the model. Returns the problems and, for a data file, its number of
    training samples."""
    d, m = sc.data, facts
    problems: Problems = []
    add = problems.append
    if d.type not in ("fixed", "file") and d.type not in m.data_kinds:
        takes = ", ".join(["fixed", "file", *sorted(m.data_kinds)])
        add(("data.type", f"model {m.kind} does not accept data of type {d.type}; it takes: {takes}", d.type))
        return problems, None
    if d.type == "fixed":
        if len(d.x) != len(d.y):
            add(("data.y", f"needs one entry per sample of data.x ({len(d.x)})", f"{len(d.y)} entries"))
        for i, x in enumerate(d.x):
            if nested_shape(x) != m.input_shape:
                add((f"data.x[{i}]", f"one input of model {m.kind} has shape {m.input_shape}", x))
                break
        for i, y in enumerate(d.y):
            if nested_shape(y) != m.output_shape:
                add((f"data.y[{i}]", f"one output of model {m.kind} has shape {m.output_shape}", y))
                break
        if m.input_bounds is not None:
            for i, x in enumerate(d.x):
                if nested_shape(x) == m.input_shape and not _in_bounds(x, m.input_bounds):
                    add((f"data.x[{i}]", f"an index {_index_text(m.input_bounds)}", x))
                    break
    elif d.type == "file":
        found, n = shape_problems(d, m.kind, m.input_shape, m.output_shape, m.input_bounds)
        return problems + found, (n if not found else None)
    elif d.type == "teacher_student":
        if d.teacher.model is not None:
            tm, found = model_facts(d.teacher.model, "data.teacher.model")
            problems += found
            if tm is not None:
                if tm.input_shape != m.input_shape:
                    add(("data.teacher.model", f"teacher input shape {tm.input_shape} differs from the student's {m.input_shape}", NO_VALUE))
                if tm.output_shape != m.output_shape:
                    add(("data.teacher.model", f"teacher output shape {tm.output_shape} differs from the student's {m.output_shape}", NO_VALUE))
                problems += init_problems(d.teacher, tm, "data.teacher")
        else:
            problems += init_problems(d.teacher, m, "data.teacher")
        online = d.n_train is None
        if online and sc.noise.scheme != "online":
            add(("noise.scheme", "data teacher_student without n_train gives fresh samples every step: use scheme online (or set data.n_train for a fixed training set)", sc.noise.scheme))
        if not online and sc.noise.scheme == "online":
            add(("noise.scheme", "online draws fresh samples; it cannot be used with a fixed training set (data.n_train is set)", sc.noise.scheme))
    elif d.type == "completion":
        shape = m.matrix_shape
        if shape is None or len(shape) != 2 or shape[0] != shape[1]:
            add(("model", f"completion needs a square matrix (the model's is {shape})", NO_VALUE))
        else:
            if d.size is not None and d.size != shape[0]:
                add(("data.size", f"must match the model's matrix ({shape[0]} x {shape[1]})", d.size))
            if len(d.singular_values) > shape[0]:
                add(("data.singular_values", f"at most {shape[0]} values (the matrix is {shape[0]} x {shape[1]})", d.singular_values))
    elif d.type == "sparse_cosine":
        q = m.num_invariants
        if d.dim is not None and d.dim != q:
            add(("data.dim", f"must equal the model's number of weights ({q})", d.dim))
        if d.nnz > q - 1:
            add(("data.nnz", f"at most {q - 1}: frequencies 1..{q - 1} of the model's {q} weights", d.nnz))
    elif d.type == "step_signal":
        length = sum(p[1] for p in d.pieces)
        if m.num_invariants != length or m.input_shape != (length,):
            add(("model", f"model {m.kind} has {m.num_invariants} invariants and inputs of shape {m.input_shape}; the signal has length {length} (sum of data.pieces lengths)", NO_VALUE))
    return problems, None


def _in_bounds(x, bounds) -> bool:
    flat = x if isinstance(x, list) else [x]
    return len(flat) == len(bounds) and all(
        isinstance(a, int) and not isinstance(a, bool) and 0 <= a < b for a, b in zip(flat, bounds)
    )


def _index_text(bounds) -> str:
    names = "ijklmn"[: len(bounds)]
    what = "pair" if len(bounds) == 2 else "tuple"
    cond = ", ".join(f"0 <= {c} < {b}" for c, b in zip(names, bounds))
    return f"{what} [{', '.join(names)}] of integers with {cond}"


def scenario_problems(sc) -> tuple[Problems, int | None]:
    """Every model-dependent check of a scenario: the model (and a teacher model), ``init``,
    ``data``. Returns the problems and the size of a file dataset (else ``None``)."""
    facts, problems = model_facts(sc.model)
    if facts is None:
        return problems, None
    problems += init_problems(sc.init, facts, "init")
    found, n = data_problems(sc, facts)
    return problems + found, n

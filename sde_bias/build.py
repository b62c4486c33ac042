"""From a validated :class:`~sde_bias.scenario.Scenario` to arrays and runners.

- :func:`build_problem`: the model, data, loss, penalty and sampling scheme as a
  :class:`~sde_bias.problem.Problem` (plus the generated data worth storing);
- :func:`build_setup`: everything a run needs: seeds, per-seed keys, initial parameters,
  per-seed data and the observer;
- :func:`make_runner`: the runner of a solver preset (built by the preset itself;
  the runners live in :mod:`sde_bias.runners`).

Randomness (the same for every runner, so SGD, GD and the SDE start from identical
``theta0`` and use the same seeds): seed ``i`` has the raw key
``seed_key = PRNGKey(seeds.base + i)``; initial parameters come from
``fold_in(seed_key, 0)``, the run's noise from ``fold_in(seed_key, 1)``, per-seed
reference data (online learning) from ``fold_in(seed_key, 2)``. The dataset, shared by all
seeds, comes from ``data_key = PRNGKey(data.seed)``: the teacher or generator from
``fold_in(data_key, 0)``, training samples from ``fold_in(data_key, 1)``, test samples
from ``fold_in(data_key, 2)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import observables as _observables
from .data import Dataset, TeacherStream
from .losses import L1Penalty, NoPenalty, SquaredLoss
from .problem import Problem
from .runners import AdaptiveRunner as AdaptiveRunner, FixedStepRunner as FixedStepRunner
from .config_base import NO_VALUE
from .model_registry import ModelLoadError, build_model as build_model
from .errors import ScenarioError
from .schema import Scenario

# ---------------------------------------------------------------------------
# precision
# ---------------------------------------------------------------------------


def ensure_precision(sc: Scenario):
    """Enable float64 in JAX if the scenario asks for it (must happen before arrays are
    made). float32 scenarios run in float32 whatever the global setting."""
    if sc.precision == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def dtype_of(sc: Scenario):
    return jnp.float64 if sc.precision == "float64" else jnp.float32


def _error(sc: Scenario, path: str, message: str, value: Any = None):
    label = sc.source if not sc.variant else f"{sc.source} [variant {sc.variant}]"
    return ScenarioError(label, [(path, message, NO_VALUE if value is None else value)])


# ---------------------------------------------------------------------------
# models and initialisation
# ---------------------------------------------------------------------------


def _model(sc: Scenario, cfg, key: str):
    try:
        return build_model(cfg)
    except ModelLoadError as e:
        raise _error(sc, f"{key}.{e.key}" if e.key else key, e.message) from None


def log_scales_array(spec, n: int, dtype) -> jax.Array:
    """``init.unbalance.log_scales`` as an array of length ``n``."""
    if isinstance(spec, dict):
        a, b = spec["linspace"]
        return jnp.linspace(a, b, n, dtype=dtype)
    if isinstance(spec, list):
        return jnp.asarray(spec, dtype)
    return jnp.full((n,), spec, dtype)


def _draw_scalar(spec, key, dtype):
    if isinstance(spec, dict):
        (kind, (a, b)), = spec.items()
        a, b = float(a), float(b)  # a large integer is not an int32 array element
        if kind == "abs_normal":
            return a + b * jnp.abs(jax.random.normal(key, (), dtype))
        return jax.random.uniform(key, (), dtype, a, b)
    return jnp.asarray(spec, dtype)


def make_init_fn(model, init_cfg, dtype) -> Callable:
    """``key -> theta``: ``point + std * N(0, 1)`` per block (Gaussian keys: one split of
    ``fold_in(key, 0)`` per block, in block order), then ``unbalance`` (the model's own
    orbit move, :meth:`~sde_bias.models.AbstractModel.unbalance`), then ``block_scale``
    (random factors from ``fold_in(fold_in(key, 1), i)`` for the i-th listed block)."""
    shapes = model.block_shapes
    point = init_cfg.point or {}
    std = init_cfg.std
    unbalance = init_cfg.unbalance
    block_scale = init_cfg.block_scale or {}

    def init(key):
        kg = jax.random.split(jax.random.fold_in(key, 0), len(shapes))
        ks = jax.random.fold_in(key, 1)
        blocks = {}
        for k, (name, shape) in zip(kg, shapes.items()):
            mean = jnp.broadcast_to(jnp.asarray(point.get(name, 0.0), dtype), shape)
            s = std.get(name, 0.0) if isinstance(std, dict) else (std or 0.0)
            blocks[name] = mean + jnp.asarray(s, dtype) * jax.random.normal(k, shape, dtype)
        theta = model.flatten(blocks)
        if unbalance is not None:
            s = log_scales_array(unbalance.log_scales, model.unbalance_length, dtype)
            theta = model.unbalance(theta, s)
        if block_scale:
            blocks = dict(model.unflatten(theta))
            for i, (name, spec) in enumerate(block_scale.items()):
                blocks[name] = blocks[name] * _draw_scalar(spec, jax.random.fold_in(ks, i), dtype)
            theta = model.flatten(blocks)
        return theta.astype(dtype)

    return init


# ---------------------------------------------------------------------------
# data and problem
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class BuiltProblem:
    """A problem and the generated data worth storing (``extras``: name -> array)."""

    scenario: Scenario
    problem: Problem
    dtype: Any
    extras: dict[str, np.ndarray]


def _scheme(sc: Scenario, n_train: int | None):
    from . import noise as N

    cfg = sc.noise
    s = cfg.scheme
    if s == "full_batch":
        base = N.FullBatch()
    elif s == "with_replacement":
        base = N.WithReplacement(cfg.batch_size)
    elif s == "without_replacement":
        base = N.WithoutReplacement(cfg.batch_size)
    elif s == "bernoulli":
        base = N.Bernoulli(cfg.rho, float(cfg.normalizer if cfg.normalizer is not None else n_train))
    elif s == "online":
        base = N.Online(cfg.batch_size)
    else:  # pragma: no cover - the schema rejects it
        raise AssertionError(s)
    if cfg.label_noise > 0:
        return N.LabelNoise(base, float(cfg.label_noise))
    return base


def _all_entries(target) -> Dataset:
    rows, cols = target.shape
    ii, jj = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    idx = np.stack([ii.ravel(), jj.ravel()], axis=1).astype(np.int32)
    return Dataset(jnp.asarray(idx), jnp.ravel(target))


@eqx.filter_jit
def _sample_jit(stream, key, num, dtype):
    return stream.sample(key, num, dtype)


def _sample(stream, key, num: int, dtype):
    return _sample_jit(stream, key, num, dtype)


def _num_invariants(model, dtype) -> int:
    return jax.eval_shape(model.invariants, jax.ShapeDtypeStruct((model.num_params,), dtype)).shape[0]


def build_problem(sc: Scenario) -> BuiltProblem:
    """Build the :class:`~sde_bias.problem.Problem` of a scenario (deterministic: the data
    depend only on ``data.seed``)."""
    from . import data as D

    ensure_precision(sc)
    dtype = dtype_of(sc)
    model = _model(sc, sc.model, "model")
    d = sc.data
    dkey = jax.random.PRNGKey(getattr(d, "seed", 0))
    k0, k1, k2 = (jax.random.fold_in(dkey, i) for i in range(3))
    train = stream = test = target = None
    extras: dict[str, np.ndarray] = {}

    if d.type == "fixed":
        xdt = jnp.int32 if model.input_bounds is not None else dtype
        train = Dataset(jnp.asarray(d.x, xdt), jnp.asarray(d.y, dtype))
        if d.target is not None:
            target = jnp.asarray(d.target, dtype).reshape(-1)
    elif d.type == "teacher_student":
        tcfg = d.teacher.model or sc.model
        teacher = _model(sc, tcfg, "data.teacher.model" if d.teacher.model is not None else "model")
        teacher_theta = _jitted_init(teacher, tcfg, d.teacher, dtype, batched=False)(k0)
        extras["teacher_params"] = np.asarray(teacher_theta)
        stream = TeacherStream(teacher, teacher_theta, model.input_shape, float(d.noise_std))
        if d.n_train is not None:
            train, stream = _sample(stream, k1, d.n_train, dtype), None
            s_for_test = TeacherStream(teacher, teacher_theta, model.input_shape, float(d.noise_std))
        else:
            s_for_test = stream
        if d.n_test is not None:
            test = _sample(s_for_test, k2, d.n_test, dtype)
    elif d.type == "completion":
        size = jax.eval_shape(model.matrix, jax.ShapeDtypeStruct((model.num_params,), dtype)).shape[0]
        m_star = jax.jit(D.low_rank_target, static_argnums=(1, 2, 3))(k0, size, tuple(d.singular_values), dtype)
        train, mask = D.completion_dataset(k1, m_star, d.observe_prob)
        if train.size == 0:
            raise _error(sc, "data.observe_prob", f"no entry observed with data.seed = {d.seed}", d.observe_prob)
        test = _all_entries(m_star)
        target = jnp.ravel(m_star)
        extras["target_matrix"] = np.asarray(m_star)
        extras["observed_mask"] = np.asarray(mask).astype(np.int8)
    elif d.type == "sparse_cosine":
        train, test, w = jax.jit(D.sparse_cosine_signal, static_argnums=(1, 2, 3, 4, 5, 6))(
            k0, _num_invariants(model, dtype), d.nnz, d.n_train, d.n_test, float(d.noise_std), dtype
        )
        target = w
    elif d.type == "step_signal":
        s_star = jnp.concatenate([jnp.full((int(n),), v, dtype) for v, n in d.pieces])
        train, _ = jax.jit(D.compressed_measurements, static_argnums=(2, 3))(
            k0, s_star, d.num_measurements, float(d.noise_std)
        )
        target = s_star
    elif d.type == "file":
        from .datafile import DataFileError, model_arrays

        try:
            x, y, tx, ty = model_arrays(d, model.input_shape, model.output_shape)
        except DataFileError as e:
            raise _error(sc, e.key, e.message) from None
        xdt = jnp.int32 if model.input_bounds is not None else dtype
        train = Dataset(jnp.asarray(x, xdt), jnp.asarray(y, dtype))
        test = Dataset(jnp.asarray(tx, xdt), jnp.asarray(ty, dtype)) if tx is not None else None
    else:  # pragma: no cover
        raise AssertionError(d.type)

    if train is not None:
        extras["train_x"] = np.asarray(train.x)
        extras["train_y"] = np.asarray(train.y)
        n_train = train.size
        b = sc.noise.batch_size
        if b is not None and sc.noise.scheme != "online" and b > n_train:
            raise _error(sc, "noise.batch_size", f"larger than the dataset ({n_train} samples)", b)
    else:
        n_train = None
    if target is not None:
        extras["target"] = np.asarray(target)
        q_shape = jax.eval_shape(model.invariants, jnp.zeros((model.num_params,), dtype)).shape
        if tuple(target.shape) != tuple(q_shape):
            raise _error(
                sc, "data.target", f"must have {math.prod(q_shape)} entries, like the model's invariants", tuple(target.shape)
            )

    penalty = L1Penalty(float(sc.penalty.l1)) if sc.penalty is not None and sc.penalty.l1 > 0 else NoPenalty()
    problem = Problem(
        model,
        _scheme(sc, n_train),
        SquaredLoss(sc.loss.reduction, float(sc.loss.scale)),
        train=train,
        stream=stream,
        num_reference=sc.noise.num_reference,
        test=test,
        target=target,
        penalty=penalty,
    )
    avail = set(_observables.available(problem))
    for i, name in enumerate(sc.record):
        if name not in avail:
            raise _error(
                sc, f"record[{i}]", f"observable {name!r} is not available for this problem; available: {', '.join(sorted(avail))}"
            )
    # one evaluation of the predictor: shape errors in inline data surface here
    try:
        jax.eval_shape(
            lambda th: _observables.make_observer(problem, sc.record)(th, train if train is not None else stream.sample(k1, 2, dtype)),
            jnp.zeros((model.num_params,), dtype),
        )
    except (TypeError, ValueError) as e:
        raise _error(sc, "data", f"the model cannot evaluate this data: {e}") from None
    return BuiltProblem(sc, problem, dtype, extras)


# ---------------------------------------------------------------------------
# run setup: seeds, theta0, per-seed data, observer
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class RunSetup:
    scenario: Scenario
    problem: Problem
    dtype: Any
    extras: dict[str, np.ndarray]
    seeds: np.ndarray  # [S] int
    seed_keys: jax.Array  # [S, 2] raw keys
    theta0: jax.Array  # [S, p]
    run_keys: jax.Array  # [S, 2] = fold_in(seed_key, 1)
    data: Any  # Dataset, batched over seeds when data_batched
    data_batched: bool
    observe: Callable
    record: list[str]

    @property
    def num_seeds(self) -> int:
        return int(self.seeds.shape[0])

    @functools.cached_property
    def runner_data(self):
        """The data as the runners take it: per-seed data split over the devices like the
        seeds (:func:`sde_bias.parallel.shard_seeds`, once), shared data as it is."""
        if not self.data_batched:
            return self.data
        from .parallel import shard_seeds

        return shard_seeds(self.data)

    @property
    def seed0_data(self):
        """The data of the first seed (the shared training set when not per seed)."""
        return seed_slice(self.data, 0) if self.data_batched else self.data


_INIT_CACHE: dict = {}


def _jitted_init(model, model_cfg, init_cfg, dtype, batched: bool):
    """Compiled ``key -> theta`` (or ``seed keys [S, 2] -> theta0 [S, p]`` with
    ``fold_in(key, 0)``), cached by configuration so repeated builds reuse it."""
    cache_key = (model_cfg.model_dump_json(), init_cfg.model_dump_json(), jnp.dtype(dtype).name, batched)
    fn = _INIT_CACHE.get(cache_key)
    if fn is None:
        init = make_init_fn(model, init_cfg, dtype)
        if batched:
            fn = jax.jit(jax.vmap(lambda k: init(jax.random.fold_in(k, 0))))
        else:
            fn = jax.jit(init)
        _INIT_CACHE[cache_key] = fn
    return fn


@jax.jit
def _fold_all_jit(keys, i):
    return jax.vmap(lambda k: jax.random.fold_in(k, i))(keys)


def _fold_all(keys, i: int):
    return _fold_all_jit(keys, i)


@eqx.filter_jit
def _seed_data(problem, keys, dtype):
    """Per-seed reference data (online learning) from ``fold_in(seed_key, 2)``."""
    return jax.vmap(lambda k: problem.seed_data(jax.random.fold_in(k, 2), dtype))(keys)


def seed_keys(sc: Scenario) -> jax.Array:
    seeds = jnp.asarray(sc.seed_list, jnp.uint32)
    return jax.vmap(jax.random.PRNGKey)(seeds)


def build_setup(sc: Scenario, built: BuiltProblem | None = None) -> RunSetup:
    built = built or build_problem(sc)
    problem, dtype = built.problem, built.dtype
    keys = seed_keys(sc)
    theta0 = _jitted_init(problem.model, sc.model, sc.init, dtype, batched=True)(keys)
    run_keys = _fold_all(keys, 1)
    if problem.online:
        data = _seed_data(problem, keys, dtype)
        batched = True
    else:
        data, batched = problem.train, False
    observe = _observables.make_observer(problem, list(sc.record))  # unknown names fail here
    # the seeds are split over the devices by the runners only (their compiled loops run
    # per device): everything else (theory, checks) sees ordinary, unsplit arrays
    return RunSetup(
        scenario=sc,
        problem=problem,
        dtype=dtype,
        extras=built.extras,
        seeds=np.asarray(sc.seed_list, np.int64),
        seed_keys=keys,
        theta0=theta0,
        run_keys=run_keys,
        data=data,
        data_batched=batched,
        observe=observe,
        record=list(sc.record),
    )


def seed_slice(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


# ---------------------------------------------------------------------------
# runners
# ---------------------------------------------------------------------------


def make_runner(setup: RunSetup, preset):
    """The runner of a (resolved) solver preset for this setup: the preset builds it
    (:meth:`sde_bias.presets.DiscretePreset.make_runner`, ...)."""
    return preset.make_runner(setup)

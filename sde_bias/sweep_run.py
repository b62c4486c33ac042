"""Running a sweep's points: grouped by static structure, each group one compiled program.

Every engine-facing detail of sweeps is in this module (the rest of the sweep code sees
:func:`build_points`, :func:`group_points` and :func:`run_group` only).

**Groups.** Each point is built exactly as ``sde-bias run`` builds it
(:func:`sde_bias.build.build_setup`, :func:`sde_bias.build.make_runner`). A runner's
stepper and the observer are pytrees; their *signature* is the tree structure (static
fields included), the shape and dtype of every array leaf, and the value of every
non-float leaf. Points with equal signatures (and equal lengths, cadence, seed count,
precision and divergence threshold) form one group: they differ only in values (learning
rate, label noise, L1 weight, initial scale, the data's draw, ...). A change of shape or
of static structure (batch size, model width, ``label_noise: 0`` against ``> 0``) starts
another group.

**One program per group.** A group of ``P`` points with ``S`` seeds each runs as one
ensemble of ``P x S`` members (the seed axis of :func:`sde_bias.integrate.advance`, split
over the host devices like seeds). The leaves that differ between the points (Python
floats such as the learning rate, arrays such as a dataset) are taken out of the stepper
and the observer and handed to every member with its data: member ``(p, s)`` gets point
``p``'s values and seed ``s``'s data, keys and initial parameters, and rebuilds point
``p``'s stepper inside the compiled loop (:class:`_SweepStepper`). Leaves equal in every
point stay as they are (constants of the program, as in a single run).

**Same numbers as single runs.** Member ``(p, s)`` draws its randomness from seed ``s``'s
key exactly as the single run of point ``p`` does (the draws depend only on the seed and
the absolute step, docs/theory.md section 1). With ``precision: float64`` a swept float,
traced as a float64 scalar, enters the same IEEE operations as the Python float of the
single run, so the results are equal bit for bit (tested). With ``precision: float32``
the single run folds Python arithmetic on a hyperparameter (e.g. ``sqrt(lr)``) in
float64 and rounds once, while the sweep holds the hyperparameter as a float32 array and
computes in float32: results then agree to float32 rounding, not bit for bit.

Adaptive-step presets run point by point (their solver loop has a per-point end time), and
so does a group whose stepper branches in Python on a swept value (it cannot be traced).
Floats that are static fields (``SquaredLoss.scale``, ``Bernoulli.rho``, a teacher's
``noise_std``) are part of the structure: sweeping them gives one group per value.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

# ---------------------------------------------------------------------------
# building and grouping
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class BuiltPoint:
    scenario: Any
    setup: Any  # sde_bias.build.RunSetup
    runners: list  # one per resolved preset


def resolve_presets(sc, presets: dict) -> list:
    from .presets import resolve_preset
    from .errors import UserError

    missing = [r for r in sc.runners if r not in presets]
    if missing:
        raise UserError(f"no solver preset named {missing[0]!r}; available: {', '.join(sorted(presets))}")
    return [resolve_preset(presets[r], sc.runner_options.get(r)) for r in sc.runners]


def build_point(sc, resolved) -> BuiltPoint:
    """A point built as ``sde-bias run`` builds it (refuses impossible presets)."""
    from .build import build_setup, ensure_precision, make_runner

    ensure_precision(sc)
    setup = build_setup(sc)
    return BuiltPoint(sc, setup, [make_runner(setup, p) for p in resolved])


def _leaf_signature(x):
    if isinstance(x, (jax.Array, np.ndarray)):
        return ("array", tuple(x.shape), str(x.dtype))
    if isinstance(x, float):
        return ("float",)
    return ("value", type(x).__name__, repr(x))


def _tree_signature(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple(_leaf_signature(x) for x in leaves)


def _is_fixed_step(runner) -> bool:
    return hasattr(runner, "stepper")


def point_signature(bp: BuiltPoint):
    """What must be equal for two points to share one compiled program."""
    sc, st = bp.scenario, bp.setup
    parts = [
        sc.precision,
        sc.total_steps,
        sc.training.record_every,
        float(sc.training.divergence_threshold),
        st.num_seeds,
        tuple(sc.record),
        tuple(sc.runners),
        tuple(st.theta0.shape),
        st.data_batched,
        _tree_signature(st.data),
        _tree_signature(st.observe),
    ]
    for r in bp.runners:
        parts.append(_tree_signature(r.stepper) if _is_fixed_step(r) else ("adaptive", id(r)))
    return parts


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. a static field holding an array: not comparable
        return False


def group_points(built: list[BuiltPoint]) -> list[list[int]]:
    """Point indices grouped by :func:`point_signature` (first appearance order)."""
    keys: list = []
    groups: list[list[int]] = []
    for i, bp in enumerate(built):
        sig = point_signature(bp)
        for k, g in zip(keys, groups):
            if _equal(k, sig):
                g.append(i)
                break
        else:
            keys.append(sig)
            groups.append([i])
    return groups


# ---------------------------------------------------------------------------
# the varying leaves, handed to each member with its data
# ---------------------------------------------------------------------------


def _same(a, b) -> bool:
    if isinstance(a, (jax.Array, np.ndarray)):
        return (
            isinstance(b, (jax.Array, np.ndarray))
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(np.array_equal(np.asarray(a), np.asarray(b)))
        )
    return type(a) is type(b) and a == b


class _Bound(eqx.Module):
    """A pytree whose varying leaves are left out (``None``) and put back by :meth:`inner`."""

    shared: tuple
    treedef: Any = eqx.field(static=True)
    varying: tuple[int, ...] = eqx.field(static=True)

    def inner(self, hyper):
        leaves = list(self.shared)
        for i, v in zip(self.varying, hyper):
            leaves[i] = v
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def bind(trees: list, dtype) -> tuple[_Bound, list[tuple]]:
    """Split equal-structured pytrees (one per point) into one :class:`_Bound` and, per
    point, the tuple of its varying leaves (floats as ``dtype`` scalars)."""
    flat = [jax.tree_util.tree_flatten(t) for t in trees]
    treedef = flat[0][1]
    leaves0 = flat[0][0]
    varying = tuple(j for j in range(len(leaves0)) if not all(_same(leaves0[j], f[0][j]) for f in flat[1:]))
    shared = tuple(None if j in varying else x for j, x in enumerate(leaves0))

    def as_array(x):
        return jnp.asarray(x, dtype) if isinstance(x, float) else jnp.asarray(x)

    hyper = [tuple(as_array(f[0][j]) for j in varying) for f in flat]
    return _Bound(shared, treedef, varying), hyper


class _SweepStepper(eqx.Module):
    """A stepper whose member data is ``(varying leaves, seed data)``: it rebuilds its
    point's stepper and calls it."""

    bound: _Bound
    substeps: int = eqx.field(static=True)

    def _split(self, data):
        hyper, d = data
        return self.bound.inner(hyper[0]), d

    def init(self, theta, data):
        s, d = self._split(data)
        return s.init(theta, d)

    def draw(self, key, num_steps, data, dtype):
        s, d = self._split(data)
        return s.draw(key, num_steps, d, dtype)

    def step(self, theta, aux, data, draw):
        s, d = self._split(data)
        return s.step(theta, aux, d, draw)


class _SweepObserver(eqx.Module):
    bound: _Bound

    def __call__(self, theta, data):
        hyper, d = data
        return self.bound.inner(hyper[1])(theta, d)


def _member_data(setup):
    """A point's data with a leading seed axis (copied per seed when shared)."""
    if setup.data_batched:
        return setup.data
    s = setup.num_seeds
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (s,) + a.shape), setup.data)


def _concat(trees):
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=0), *trees)


def _group_setup(points: list[BuiltPoint], k: int):
    """The :class:`~sde_bias.build.RunSetup` and runner of preset ``k`` for a group: ``P x S``
    members, varying leaves in the member data."""
    from .build import FixedStepRunner, RunSetup

    st0 = points[0].setup
    s = st0.num_seeds
    sb, sh = bind([bp.runners[k].stepper for bp in points], st0.dtype)
    ob, oh = bind([bp.setup.observe for bp in points], st0.dtype)
    members = []
    for bp, h1, h2 in zip(points, sh, oh):
        hyper = (h1, h2)
        hyper = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (s,) + a.shape), hyper)
        members.append((hyper, _member_data(bp.setup)))
    data = _concat(members)
    stepper = _SweepStepper(sb, points[0].runners[k].stepper.substeps)
    setup = RunSetup(
        scenario=st0.scenario,
        problem=st0.problem,
        dtype=st0.dtype,
        extras={},
        seeds=np.concatenate([bp.setup.seeds for bp in points]),
        seed_keys=_concat([bp.setup.seed_keys for bp in points]),
        theta0=_concat([bp.setup.theta0 for bp in points]),
        run_keys=_concat([bp.setup.run_keys for bp in points]),
        data=data,
        data_batched=True,
        observe=_SweepObserver(ob),
        record=list(st0.record),
    )
    return setup, FixedStepRunner(stepper, points[0].runners[k].preset)


# ---------------------------------------------------------------------------
# running a group
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class GroupResult:
    """Records of one group: per runner group name, ``records[name]`` of shape
    ``[P, S, R+1, ...]``, ``diverged_at`` ``[P, S]``; ``steps`` ``[R+1]``."""

    points: list[int]
    steps: np.ndarray
    runners: dict[str, dict[str, Any]]
    wall_time_s: float = 0.0


def _run(runner, setup, sc, on_chunk=None):
    from .run import initial_records

    first = initial_records(setup)
    ens = runner.init(setup)
    parts = [first]
    total, chunk, every = sc.num_records, sc.chunk_records, sc.training.record_every
    done = 0
    while done < total:
        n = min(chunk, total - done)
        ens, rec = runner.advance(ens, setup, n, every)
        parts.append({k: np.asarray(v) for k, v in rec.items()})
        done += n
        if on_chunk is not None:
            on_chunk(done, total)
    records = {k: np.concatenate([p[k] for p in parts], axis=1) for k in first}
    return records, np.asarray(ens.diverged_at)


def run_group(scenarios: list, point_ids: list[int], presets: dict, on_chunk=None, built: list | None = None) -> GroupResult:
    """Build the points of one group (``scenarios[i]`` for ``i`` in ``point_ids``; or take
    them from ``built``, the :class:`BuiltPoint` of every point) and run every runner:
    fixed-step runners as one program over ``P x S`` members, adaptive runners point by
    point."""
    import time

    t0 = time.perf_counter()
    scs = [scenarios[i] for i in point_ids]
    resolved = resolve_presets(scs[0], presets)
    points = [built[i] for i in point_ids] if built is not None else [build_point(sc, resolved) for sc in scs]
    sc0 = points[0].scenario
    p, s = len(points), points[0].setup.num_seeds
    out: dict[str, dict[str, Any]] = {}
    for k, preset in enumerate(resolved):
        batched = None
        if _is_fixed_step(points[0].runners[k]) and p > 1:
            try:
                setup, runner = _group_setup(points, k)
                batched = _run(runner, setup, sc0, on_chunk)
            except jax.errors.ConcretizationTypeError:
                # a stepper branches in Python on a swept value: that value cannot be
                # traced, so run its points one by one (same numbers, one compile each)
                batched = None
        if batched is not None:
            records, div = batched
            records = {n: v.reshape((p, s) + v.shape[1:]) for n, v in records.items()}
            div = div.reshape(p, s)
        else:
            per = [_run(bp.runners[k], bp.setup, bp.scenario, on_chunk) for bp in points]
            records = {n: np.stack([r[0][n] for r in per]) for n in per[0][0]}
            div = np.stack([r[1] for r in per])
        out[preset.group] = {"records": records, "diverged_at": div, "preset": preset.name, "kind": preset.kind}
    steps = np.arange(sc0.num_records + 1) * sc0.training.record_every
    return GroupResult(list(point_ids), steps, out, time.perf_counter() - t0)

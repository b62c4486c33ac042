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
over the host devices like seeds; in calls of a few points each when the members' state
is large, :func:`points_per_call`, all of them one compiled program). The leaves that
differ between the points (Python floats such as the learning rate, arrays such as a
dataset) are taken out of the stepper and the observer and handed to every member with
its data: member ``(p, s)`` gets point ``p``'s values and seed ``s``'s keys and initial
parameters, and rebuilds point ``p``'s stepper inside the compiled loop
(:class:`_SweepStepper`). Leaves equal in every point stay as they are, as in a single run
(arrays shared by every member, Python numbers constants of the program). The training data is
treated the same way: when it is one dataset for all seeds (not per-seed, online data), its
leaves equal in every point are shared by all ``P x S`` members (not vmapped, exactly as a
single run shares them over its seeds) and only leaves that differ between points (a
swept ``data.seed``, say) travel with the members. Per-seed data is per member.

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
    """A stepper whose member data is ``(varying leaves, data)``: it rebuilds its point's
    stepper and data and calls it. ``data`` is :class:`_Bound` when the points share one
    dataset over their seeds (its varying leaves in ``hyper[2]``), else ``None`` (the
    member data carries the seed's data)."""

    bound: _Bound
    data: Any
    substeps: int = eqx.field(static=True)

    def _split(self, data):
        return self.bound.inner(data[0][0]), _member_dataset(self.data, data)

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
    data: Any  # as _SweepStepper.data

    def __call__(self, theta, data):
        return self.bound.inner(data[0][1])(theta, _member_dataset(self.data, data))


def _member_dataset(bound, data):
    """A member's dataset: rebuilt from the shared leaves and the member's varying ones
    (``data[0][2]``), or the seed's own data (``data[1]``)."""
    return data[1] if bound is None else bound.inner(data[0][2])


def _per_seed(tree, s: int):
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (s,) + a.shape), tree)


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
    if any(bp.setup.data_batched for bp in points):  # per-seed (online) data: per member
        db, dh = None, [() for _ in points]
        seed_data = [bp.setup.data for bp in points]
    else:  # one dataset per point: shared where equal in every point
        db, dh = bind([bp.setup.data for bp in points], st0.dtype)
        seed_data = [None for _ in points]
    data = _concat([(_per_seed((h1, h2, h3), s), d) for h1, h2, h3, d in zip(sh, oh, dh, seed_data)])
    stepper = _SweepStepper(sb, db, points[0].runners[k].stepper.substeps)
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
        observe=_SweepObserver(ob, db),
        record=list(st0.record),
    )
    return setup, FixedStepRunner(stepper, points[0].runners[k].preset)


# ---------------------------------------------------------------------------
# running a group
# ---------------------------------------------------------------------------

MEMBER_STATE_BYTES = 512 * 1024
"""The parameters of the members run by one call of the compiled loop fit in about this
many bytes (:func:`points_per_call`)."""


def points_per_call(num_points: int, num_seeds: int, theta0) -> int:
    """How many of a group's points one call of its compiled program runs: the largest
    divisor of ``num_points`` whose members' parameters (``points x seeds x p`` entries)
    fit in :data:`MEMBER_STATE_BYTES` (at least one point).

    The calls of a group share one compiled program (same member count, same varying
    leaves), so a smaller call costs no compilation; it keeps the members' state in the
    cache. Measured on matrix completion (20 x 20 factors, float32, 16 points x 64 seeds,
    2 CPU devices): one call of 1,024 members ran 1.3x slower per member-step than calls
    of 128 (SGD 2.23 s against 1.62 s for the 16 points, Euler-Maruyama 6.21 s against
    4.69 s); the hyperbola (2 parameters) still runs all its points in one call."""
    per_point = num_seeds * int(np.prod(theta0.shape[1:])) * np.dtype(theta0.dtype).itemsize
    fits = max(1, MEMBER_STATE_BYTES // max(1, per_point))
    return max(d for d in range(1, num_points + 1) if num_points % d == 0 and (d == 1 or d <= fits))


def _member_slice(setup, start: int, stop: int):
    """The members ``start:stop`` of a group's :class:`~sde_bias.build.RunSetup`."""
    if start == 0 and stop == setup.num_seeds:
        return setup
    cut = lambda t: jax.tree_util.tree_map(lambda a: a[start:stop], t)  # noqa: E731
    return dataclasses.replace(
        setup, seeds=setup.seeds[start:stop], seed_keys=cut(setup.seed_keys), theta0=cut(setup.theta0),
        run_keys=cut(setup.run_keys), data=cut(setup.data),
    )


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


def _tick(on_chunk, group: str, k: int, num_runners: int, call: int, num_calls: int):
    """``(done, total)`` records of one call -> ``on_chunk(runner group, fraction of the
    whole group done)`` (runners and calls counted as equal shares)."""
    if on_chunk is None:
        return None
    return lambda done, total: on_chunk(group, (k + (call + done / total) / num_calls) / num_runners)


def run_group(scenarios: list, point_ids: list[int], presets: dict, on_chunk=None, built: list | None = None) -> GroupResult:
    """Build the points of one group (``scenarios[i]`` for ``i`` in ``point_ids``; or take
    them from ``built``, the :class:`BuiltPoint` of every point) and run every runner:
    fixed-step runners as one program over ``P x S`` members, adaptive runners point by
    point. ``on_chunk(runner group, fraction)`` is called after every chunk of records
    (``training.chunk_records``) with the fraction of the group done."""
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
                calls = [_member_slice(setup, c, c + s * m) for m in [points_per_call(p, s, setup.theta0)]
                         for c in range(0, p * s, s * m)]
                parts = [_run(runner, part, sc0, _tick(on_chunk, preset.group, k, len(resolved), c, len(calls)))
                         for c, part in enumerate(calls)]
                batched = ({n: np.concatenate([r[0][n] for r in parts]) for n in parts[0][0]},
                           np.concatenate([r[1] for r in parts]))
            except jax.errors.ConcretizationTypeError:
                # a stepper branches in Python on a swept value: that value cannot be
                # traced, so run its points one by one (same numbers, one compile each)
                batched = None
        if batched is not None:
            records, div = batched
            records = {n: v.reshape((p, s) + v.shape[1:]) for n, v in records.items()}
            div = div.reshape(p, s)
        else:
            per = [_run(bp.runners[k], bp.setup, bp.scenario, _tick(on_chunk, preset.group, k, len(resolved), c, p))
                   for c, bp in enumerate(points)]
            records = {n: np.stack([r[0][n] for r in per]) for n in per[0][0]}
            div = np.stack([r[1] for r in per])
        out[preset.group] = {"records": records, "diverged_at": div, "preset": preset.name, "kind": preset.kind}
    steps = np.arange(sc0.num_records + 1) * sc0.training.record_every
    return GroupResult(list(point_ids), steps, out, time.perf_counter() - t0)

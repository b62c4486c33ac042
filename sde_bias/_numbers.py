"""Numbers a scenario may hold: finite, representable in its precision, within the ranges
of the integer types the run uses (YAML nested or repeated beyond reason is refused when it
is read, :func:`sde_bias.errors.parse_yaml`).

Every function returns problems as ``(key path, message, value)`` (the format of
:class:`~sde_bias.errors.ScenarioError`); an empty list means fine.

* :func:`nonfinite_problems`: ``.inf``/``.nan`` anywhere (every number of a scenario is a
  size, a rate, a scale or data, and none of them may be infinite or NaN);
* :func:`precision_problems`: numbers that overflow the scenario's float type, or that are
  non-zero but below its smallest normal number (they underflow: ``training.lr: 1e-50`` in
  float32 is a learning rate of 0, and a run that never moves);
* :func:`range_problems`: seeds beyond ``uint32`` (``jax.random.PRNGKey`` keys are two
  ``uint32`` words; the seeds are cast to ``uint32``), step counts beyond the ``int32``
  step counter, and arrays of more than :data:`MAX_ELEMENTS` elements.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import NO_VALUE, key_path

SEED_MAX = 2**32 - 1  # seeds are cast to uint32 before PRNGKey
MAX_STEPS = 2**31 - 1  # the ensemble's step counter is int32
MAX_ELEMENTS = 2**31 - 1  # one array (parameters of all seeds, a data set, ...)

_FLOATS = {"float32": np.finfo(np.float32), "float64": np.finfo(np.float64)}


def _leaves(obj, skip: tuple[str, ...] = ()):
    """``(path, value)`` of every scalar in a nested dict/list, depth first (iterative; the
    structure must have passed :func:`sde_bias.errors.structure_problem`)."""
    stack = [("", obj)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, dict):
            for k in reversed(list(v)):
                if path == "" and k in skip:
                    continue
                stack.append((key_path(path, k), v[k]))
        elif isinstance(v, (list, tuple)):
            for i in reversed(range(len(v))):
                stack.append((key_path(path, i), v[i]))
        else:
            yield path, v


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def nonfinite_problems(raw, skip: tuple[str, ...] = ("variants",)) -> list[tuple[str, str, Any]]:
    """Every ``inf`` or ``nan`` in a raw scenario mapping (``skip``: top-level keys not
    checked here, e.g. the variants, which are checked when applied)."""
    return [
        (path, "must be a finite number", v)
        for path, v in _leaves(raw, skip)
        if isinstance(v, float) and not math.isfinite(v)
    ]


def precision_problems(resolved: dict, precision: str) -> list[tuple[str, str, Any]]:
    """Numbers of the resolved scenario that overflow ``precision`` or underflow in it
    (non-zero with magnitude below the smallest normal number, which XLA flushes to 0)."""
    fi = _FLOATS[precision]
    tiny, big = float(fi.tiny), float(fi.max)
    out = []
    for path, v in _leaves(resolved, ("variants",)):
        if not _is_number(v):
            continue
        a = abs(v)
        if a > big:
            out.append((path, f"too large for {precision} (largest {big:.3g})", v))
        elif isinstance(v, float) and 0 < a < tiny:
            what = "a learning rate of 0: the run would not move" if path == "training.lr" else "0"
            out.append((path, f"underflows in {precision} (smallest normal number {tiny:.3g}): it would be {what}", v))
    return out


def range_problems(sc, facts=None) -> list[tuple[str, str, Any]]:
    """Seeds, step counts and array sizes of a validated scenario within the types the run
    uses (see the module docstring). ``facts``: the model's
    (:class:`sde_bias.model_checks.ModelFacts`); without them, every size that depends on
    the model is taken at its least (one parameter, scalar inputs), so what is refused
    without them is refused with them, before any model is built."""
    out = []
    s = sc.seeds
    last = s.base + s.count - 1
    if s.count - 1 > SEED_MAX:
        out.append(("seeds.count", f"at most 2^32 seeds (PRNGKey seeds are uint32)", s.count))
    elif last > SEED_MAX:
        out.append(("seeds.base", f"the seeds base .. base + count - 1 must be at most 2^32 - 1 = {SEED_MAX} "
                    f"(PRNGKey seeds are uint32): with count = {s.count}, base at most {SEED_MAX - s.count + 1}", s.base))
    data_seed = getattr(sc.data, "seed", 0)  # file data has none
    if data_seed > SEED_MAX:
        out.append(("data.seed", f"must be at most 2^32 - 1 = {SEED_MAX} (PRNGKey seeds are uint32)", data_seed))
    t = sc.training
    if t.steps is not None and t.steps > MAX_STEPS:
        out.append(("training.steps", f"at most 2^31 - 1 = {MAX_STEPS} steps (the step counter is int32)", t.steps))
    # the largest arrays a run allocates
    blocks = facts.blocks if facts is not None else {}
    p = sum(math.prod(b) for b in blocks.values()) if facts is not None else 1
    x_in = facts.input_shape if facts is not None else ()
    per_x = math.prod(x_in) if x_in else 1
    sizes = [("seeds.count", "seeds x parameters", s.count * p)]
    for name, n in blocks.items():
        sizes.append(("model", f"block {name}", math.prod(n)))
    d = sc.data
    for key in ("n_train", "n_test", "num_measurements"):
        n = getattr(d, key, None)
        if n is not None:
            size = n * per_x
            if d.type == "sparse_cosine":
                size = n * (facts.num_invariants if facts is not None else 1)
            elif d.type == "step_signal":
                size = n * sum(q[1] for q in d.pieces)
            sizes.append((f"data.{key}", f"data.{key} x input size", size))
    if d.type == "completion" and d.size is not None:
        sizes.append(("data.size", "data.size^2 entries", d.size**2))
    if d.type == "step_signal":
        sizes.append(("data.pieces", "signal length", sum(q[1] for q in d.pieces)))
    if sc.noise.scheme == "online":
        sizes.append(("noise.num_reference", "seeds x num_reference x input size", s.count * sc.noise.num_reference * per_x))
    for key, what, size in sizes:
        if size > MAX_ELEMENTS:
            out.append((key, f"{what} = {size:.3g} elements, more than one array can hold here "
                        f"(2^31 - 1 = {MAX_ELEMENTS})", _value_at(sc, key)))
    return out


def _value_at(sc, key: str):
    v: Any = sc
    for part in key.split("."):
        v = getattr(v, part, NO_VALUE)
        if v is NO_VALUE:
            return NO_VALUE
    return NO_VALUE if hasattr(v, "model_dump") else v

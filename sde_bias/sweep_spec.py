"""What a sweep is: the ``sweep:`` block, ``--grid``/``--zip``, and its points (no JAX).

A sweep varies scenario keys (the same key paths as ``--set``: ``training.lr``,
``noise.label_noise``, ``init.std``, ``data.seed``, ...) over values::

    sweep:
      grid:                                   # outer product, one dimension per key
        training.lr: [0.01, 0.02, 0.04]
        noise.label_noise: {linspace: [0.2, 1.0, 5]}
      zip:                                    # aligned: one dimension, named by the first key
        init.std: {logspace: [0.001, 0.1, 3]}
        data.seed: {range: [0, 3]}

Value forms: a non-empty list; ``{range: [a, b]}`` (integers ``a, a+1, ..., b-1``) or
``{range: [a, b, step]}``; ``{linspace: [a, b, n]}`` (``n`` equally spaced values from
``a`` to ``b``, both included); ``{logspace: [a, b, n]}`` (``n`` values from ``a`` to
``b`` equally spaced in log, both included: ``a`` and ``b`` are the values, not
exponents). A point is one value per key; it is applied to the scenario as the overrides
``KEY=VALUE`` after the variant and ``--set``, so a point equals ``sde-bias run SCENARIO
--set KEY=VALUE ...``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from .config_base import ConfigBlock


class SweepConfig(ConfigBlock):
    """The ``sweep:`` block of a scenario: ``grid`` keys (outer product) and ``zip`` keys
    (aligned, equal lengths). Values are checked by :func:`parse_values`."""

    grid: dict[str, Any] = Field(default_factory=dict)
    zip: dict[str, Any] = Field(default_factory=dict)


class SweepSpecError(Exception):
    """A bad sweep specification: ``key`` (``sweep.grid.training.lr`` or ``--grid ...``)
    and what was expected."""

    def __init__(self, where: str, message: str):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_values(spec: Any, where: str) -> list:
    """The values of one swept key from a list or ``{range|linspace|logspace: [...]}``."""
    if isinstance(spec, list):
        if not spec:
            raise SweepSpecError(where, "empty list of values")
        for v in spec:
            if isinstance(v, (dict, list)) or v is None:
                raise SweepSpecError(where, f"values must be scalars (got {v!r})")
        return list(spec)
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, args), = spec.items()
        if kind == "range":
            if not (isinstance(args, list) and len(args) in (2, 3) and all(_is_int(a) for a in args)):
                raise SweepSpecError(where, f"range: expected [a, b] or [a, b, step] of integers (got {args!r})")
            if len(args) == 3 and args[2] == 0:
                raise SweepSpecError(where, "range: step must not be 0")
            values = list(range(*args))
            if not values:
                raise SweepSpecError(where, f"range {args!r} is empty")
            return values
        if kind in ("linspace", "logspace"):
            if not (isinstance(args, list) and len(args) == 3 and _is_number(args[0]) and _is_number(args[1]) and _is_int(args[2])):
                raise SweepSpecError(where, f"{kind}: expected [a, b, n] with numbers a, b and an integer n (got {args!r})")
            a, b, n = float(args[0]), float(args[1]), args[2]
            if n < 1:
                raise SweepSpecError(where, f"{kind}: n must be at least 1 (got {n})")
            if kind == "logspace" and (a <= 0 or b <= 0):
                raise SweepSpecError(where, f"logspace: a and b are the end values and must be positive (got {args!r})")
            return _spaced(a, b, n, log=kind == "logspace")
    raise SweepSpecError(where, f"expected a list of values or {{range|linspace|logspace: [...]}} (got {spec!r})")


def _spaced(a: float, b: float, n: int, log: bool) -> list[float]:
    """``n`` values from ``a`` to ``b`` (both exact), equally spaced (in log with ``log``)."""
    if n == 1:
        return [a]
    if log:
        la, lb = math.log(a), math.log(b)
        inner = [math.exp(la + (lb - la) * i / (n - 1)) for i in range(1, n - 1)]
    else:
        inner = [a + (b - a) * i / (n - 1) for i in range(1, n - 1)]
    return [a] + inner + [b]


def parse_cli_values(text: str, option: str) -> tuple[str, list]:
    """``--grid KEY=V1,V2,...`` or ``--grid 'KEY={linspace: [a, b, n]}'`` -> ``(key, values)``."""
    from .errors import UserError, parse_yaml

    if "=" not in text:
        raise UserError(f"{option} {text!r}: expected KEY.PATH=V1,V2,... e.g. {option} training.lr=0.01,0.02")
    key, _, body = text.partition("=")
    key, body = key.strip(), body.strip()
    if not key or any(not p for p in key.split(".")):
        raise UserError(f"{option} {text!r}: bad key path {key!r}")
    if body.startswith("{") or body.startswith("["):
        spec = parse_yaml(body, f"{option} {text}")
    else:
        spec = [parse_yaml(v, f"{option} {text}") for v in body.split(",") if v.strip()]
    try:
        return key, parse_values(spec, f"{option} {key}")
    except SweepSpecError as e:
        raise UserError(str(e)) from None


@dataclass(frozen=True)
class Dim:
    """One dimension of a sweep: its name (the first key), the keys it sets and their values
    along it (``values[key][i]``)."""

    name: str
    keys: tuple[str, ...]
    values: dict[str, list]

    @property
    def size(self) -> int:
        return len(self.values[self.keys[0]])


@dataclass(frozen=True)
class SweepPlan:
    """The dimensions of a sweep (grid keys first, then the zip dimension) and its points
    in C order (the last dimension fastest)."""

    dims: tuple[Dim, ...]
    base_overrides: tuple[str, ...] = ()
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(d.size for d in self.dims)

    @property
    def keys(self) -> list[str]:
        return [k for d in self.dims for k in d.keys]

    def index(self, i: int) -> tuple[int, ...]:
        """The grid index of point ``i``."""
        return tuple(int(x) for x in _unravel(i, self.shape))

    def overrides(self, i: int) -> list[str]:
        """Point ``i`` as ``--set`` overrides (values written so YAML reads them back exactly)."""
        return [f"{k}={format_value(v)}" for k, v in self.points[i].items()]

    def label(self, i: int) -> str:
        return ", ".join(f"{k}={format_value(v)}" for k, v in self.points[i].items())


def _unravel(i: int, shape: tuple[int, ...]) -> list[int]:
    out = []
    for n in reversed(shape):
        out.append(i % n)
        i //= n
    return list(reversed(out))


def format_value(v) -> str:
    """A value as YAML text that reads back as the same value (floats by ``repr``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        import json

        return json.dumps(v)
    return str(v)


def _dims_from(grid: dict[str, list], zipped: dict[str, list], where_zip: str) -> tuple[Dim, ...]:
    dims = [Dim(k, (k,), {k: v}) for k, v in grid.items()]
    if zipped:
        lengths = {k: len(v) for k, v in zipped.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k} has {n}" for k, n in lengths.items())
            raise SweepSpecError(where_zip, f"zipped keys must have the same number of values ({shown})")
        keys = tuple(zipped)
        dims.append(Dim(keys[0], keys, dict(zipped)))
    return tuple(dims)


def make_plan(
    block: dict | None,
    cli_grid: list[tuple[str, list]] = (),
    cli_zip: list[tuple[str, list]] = (),
    base_overrides: tuple[str, ...] = (),
    source: str = "<scenario>",
) -> SweepPlan:
    """The sweep of a scenario's raw ``sweep:`` mapping plus ``--grid``/``--zip``
    (the command line replaces a key of the block, or adds one)."""
    grid: dict[str, list] = {}
    zipped: dict[str, list] = {}
    if block is not None:
        if not isinstance(block, dict) or set(block) - {"grid", "zip"}:
            raise SweepSpecError(f"{source}: sweep", f"expected a mapping with grid: and/or zip: (got {block!r})")
        for part, target in (("grid", grid), ("zip", zipped)):
            body = block.get(part) or {}
            if not isinstance(body, dict):
                raise SweepSpecError(f"{source}: sweep.{part}", f"expected a mapping KEY.PATH: values (got {body!r})")
            for k, spec in body.items():
                target[str(k)] = parse_values(spec, f"{source}: sweep.{part}.{k}")
    for k, v in cli_grid:
        zipped.pop(k, None)
        grid[k] = v
    for k, v in cli_zip:
        grid.pop(k, None)
        zipped[k] = v
    if not grid and not zipped:
        raise SweepSpecError(f"{source}: sweep", "no swept key: give a sweep: block or --grid/--zip KEY=V1,V2,...")
    for k in list(grid) + list(zipped):
        if any(not p for p in k.split(".")):
            raise SweepSpecError(f"{source}: sweep: {k}", "bad key path")
    dims = _dims_from(grid, zipped, f"{source}: sweep.zip")
    points = []
    for idx in itertools.product(*(range(d.size) for d in dims)):
        points.append({k: d.values[k][i] for d, i in zip(dims, idx) for k in d.keys})
    return SweepPlan(dims, tuple(base_overrides), points)

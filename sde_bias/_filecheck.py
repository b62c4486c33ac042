"""Open a run file for reading (``inspect``, ``plot``, ``report``), or refuse it with one
line: not a file, not HDF5, not written by sde_bias, or damaged (a root attribute or the
stored scenario missing or malformed, a runner group without its datasets, axes of
different lengths, data that cannot be read back).

A complete run and an interrupted one (``.tmp``, or a run killed while writing) are both
accepted as long as their datasets agree with each other.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np

from .errors import UserError

_ROOT_INT = ("total_steps", "record_every", "num_seeds")
_RUNNER_DATASETS = ("seed", "time", "step", "diverged_at", "last_params")


def _damaged(path, what: str) -> UserError:
    return UserError(f"{path}: damaged sde_bias run file: {what}")


@contextlib.contextmanager
def reading(path):
    """Turn a read error of HDF5 data (a truncated or corrupted file) into a user error."""
    try:
        yield
    except OSError as e:
        if isinstance(e, UserError):  # pragma: no cover - UserError is not an OSError
            raise
        raise _damaged(path, f"cannot read its data ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def check_run_file(f, path) -> None:
    """Raise :class:`UserError` if the open :class:`~sde_bias.store.RunFile` ``f`` is not
    a consistent run file."""
    import h5py

    from .errors import ScenarioError, parse_yaml

    h5 = f.h5
    a = h5.attrs
    text = a.get("scenario_yaml")
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    if not isinstance(text, str) or not text.strip():
        raise _damaged(path, "no scenario_yaml attribute")
    try:
        raw = parse_yaml(text, "scenario_yaml")
    except ScenarioError as e:
        raise _damaged(path, f"attribute {str(e).splitlines()[0]}") from None
    if bad := _scenario_problem(raw):
        raise _damaged(path, f"attribute scenario_yaml: {bad}")
    for k in _ROOT_INT:
        v = a.get(k)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or int(v) < (1 if k != "total_steps" else 0):
            raise _damaged(path, f"root attribute {k} should be a positive integer (got {v!r})")
    lr = a.get("lr")
    if not isinstance(lr, (float, np.floating, int, np.integer)) or not (math.isfinite(float(lr)) and float(lr) > 0):
        raise _damaged(path, f"root attribute lr should be a positive number (got {lr!r})")
    with reading(path):
        for p in f.runner_paths():
            g = h5[p]
            missing = [d for d in _RUNNER_DATASETS if not isinstance(g.get(d), h5py.Dataset)]
            if missing:
                raise _damaged(path, f"runner {p} has no dataset {missing[0]!r}")
            s, t = g["seed"].shape[0], g["time"].shape[0]
            if g["step"].shape != (t,) or g["diverged_at"].shape != (s,) or g["last_params"].shape[:1] != (s,):
                raise _damaged(path, f"runner {p}: step, diverged_at or last_params do not match seed [{s}] and time [{t}]")
            for ds in g.values():
                if isinstance(ds, h5py.Dataset) and "observable" in ds.attrs:
                    if ds.ndim < 2 or ds.shape[:2] != (s, t):
                        raise _damaged(path, f"runner {p}: {ds.name.split('/')[-1]} has shape {ds.shape}, "
                                       f"expected [seed {s}, time {t}, ...] (killed while writing? --resume repairs it)")
                    if t:
                        ds[:, t - 1]  # the last record can be read back
            if t:
                g["time"][t - 1]


def _scenario_problem(raw) -> str | None:
    """The first problem of a stored scenario: what the readers would trip on (a wrong type
    or value, a non-finite number), not keys left out (hand-written files may keep only
    what their reader needs)."""
    from pydantic import ValidationError

    from . import _numbers
    from .errors import ScenarioError
    from .pydantic_errors import errors_from_pydantic
    from .schema import Scenario

    if not isinstance(raw, dict):
        return f"not a mapping (got {type(raw).__name__})"
    if bad := _numbers.nonfinite_problems(raw):
        return str(ScenarioError("x", bad[:1])).split(": ", 1)[1]
    try:
        Scenario.model_validate(raw)
    except ValidationError as e:
        errs = [p for p, err in zip(errors_from_pydantic(e, Scenario), e.errors()) if err["type"] != "missing"]
        if errs:
            return str(ScenarioError("x", errs[:1])).split(": ", 1)[1]
    return None


def open_run(path):
    """A checked :class:`~sde_bias.store.RunFile` open for reading (close it)."""
    from .store import RunFile

    path = Path(path)
    if path.exists() and not path.is_file():
        raise UserError(f"{path}: not a file")
    f = RunFile.open(path)
    try:
        check_run_file(f, path)
    except BaseException:
        f.close()
        raise
    return f

"""Training data from a file: ``data: {type: file, path: ..., x: KEY, y: KEY[, test_x, test_y]}``.

Formats, by the file's suffix:

- ``.npz`` (numpy): ``KEY`` is an array name;
- ``.h5`` / ``.hdf5``: ``KEY`` is a dataset path (``group/name``);
- ``.csv``: a header line, then one sample per line. ``KEY`` is a column name (one number
  per sample), or the prefix of the columns ``KEY_0, KEY_1, ...`` (or ``KEY0, KEY1, ...``);
  a list of column names is also accepted. A row of columns is reshaped to the model's
  input (output) shape.

Arrays have one sample per row: ``x`` of shape ``(n, *input_shape)``, ``y`` of shape
``(n, *output_shape)`` (checked against the model at validation, with one-line errors
naming ``data.path`` / ``data.x`` and the shapes). Relative paths are relative to the
current directory. The arrays are copied into the run file (``train_x``, ``train_y``), so a
run does not depend on the file afterwards.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

from pydantic import Field

from .config_base import NO_VALUE, ConfigBlock

if TYPE_CHECKING:  # numpy is imported when a file is read (sde-bias --help stays light)
    import numpy as np

FORMATS = (".npz", ".h5", ".hdf5", ".csv")
Key = Annotated[str, Field(min_length=1)] | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class FileData(ConfigBlock):
    """Samples from a ``.npz``, ``.h5`` or ``.csv`` file (see the module docstring)."""

    type: Literal["file"]
    path: Annotated[str, Field(min_length=1)]
    x: Key
    y: Key
    test_x: Key | None = None
    test_y: Key | None = None


class FileArrays(NamedTuple):
    """The arrays read from a data file (``test_x``, ``test_y``: ``None`` when not asked)."""

    x: np.ndarray
    y: np.ndarray
    test_x: np.ndarray | None
    test_y: np.ndarray | None


class DataFileError(ValueError):
    """A data file problem: ``key`` (``data.path``, ``data.x``, ...) and the message."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


def resolve(path: str) -> Path:
    """The file of ``data.path`` (relative to the current directory)."""
    return Path(path).expanduser().resolve()


_CACHE: dict[tuple, FileArrays] = {}


def read_arrays(cfg: FileData) -> FileArrays:
    """Read the arrays named by ``cfg`` (cached while the file is unchanged). Raises
    :class:`DataFileError`."""
    path = resolve(cfg.path)
    if path.suffix.lower() not in FORMATS:
        raise DataFileError("data.path", f"unknown format {path.suffix or '(no suffix)'!r} of {cfg.path!r}; expected one of {', '.join(FORMATS)}")
    try:
        st = path.stat()
    except OSError:
        raise DataFileError("data.path", f"no such file: {cfg.path!r} (relative to the current directory {Path.cwd()})") from None
    keys = (cfg.x, cfg.y, cfg.test_x, cfg.test_y)
    cache_key = (str(path), st.st_mtime_ns, st.st_size, repr(keys))
    if cache_key not in _CACHE:
        if (cfg.test_x is None) != (cfg.test_y is None):
            raise DataFileError("data.test_x" if cfg.test_x is None else "data.test_y", "give both test_x and test_y, or neither")
        reader = {".npz": _read_npz, ".h5": _read_h5, ".hdf5": _read_h5, ".csv": _read_csv}[path.suffix.lower()]
        names = {"x": cfg.x, "y": cfg.y, "test_x": cfg.test_x, "test_y": cfg.test_y}
        arrays = reader(path, cfg.path, {k: v for k, v in names.items() if v is not None})
        _CACHE[cache_key] = FileArrays(arrays["x"], arrays["y"], arrays.get("test_x"), arrays.get("test_y"))
    return _CACHE[cache_key]


def _single_key(key, field: str, shown: str, fmt: str) -> str:
    if isinstance(key, list):
        raise DataFileError(f"data.{field}", f"a list of names selects csv columns; in a {fmt} file give one array name (file {shown})")
    return key


def _read_npz(path: Path, shown: str, names: dict) -> dict:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            out = {}
            for field, key in names.items():
                key = _single_key(key, field, shown, ".npz")
                if key not in f.files:
                    raise DataFileError(f"data.{field}", f"no array {key!r} in {shown} (arrays: {', '.join(f.files) or 'none'})")
                out[field] = np.asarray(f[key])
            return out
    except DataFileError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged file is one line
        raise DataFileError("data.path", f"cannot read {shown} as .npz: {type(e).__name__}: {e}") from None


def _read_h5(path: Path, shown: str, names: dict) -> dict:
    import numpy as np

    import h5py

    try:
        with h5py.File(path, "r") as f:
            out = {}
            for field, key in names.items():
                key = _single_key(key, field, shown, ".h5")
                obj = f.get(key)
                if not isinstance(obj, h5py.Dataset):
                    found = []
                    f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
                    raise DataFileError(f"data.{field}", f"no dataset {key!r} in {shown} (datasets: {', '.join(found[:10]) or 'none'})")
                out[field] = np.asarray(obj[()])
            return out
    except DataFileError:
        raise
    except Exception as e:  # noqa: BLE001
        raise DataFileError("data.path", f"cannot read {shown} as HDF5: {type(e).__name__}: {e}") from None


def _read_csv(path: Path, shown: str, names: dict) -> dict:
    import numpy as np

    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataFileError("data.path", f"cannot read {shown} as csv: {e}") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DataFileError("data.path", f"{shown}: a csv file needs a header line and at least one sample")
    header = [c.strip() for c in rows[0]]
    try:
        table = np.array([[float(c) for c in r] for r in rows[1:]], dtype=np.float64)
    except ValueError:
        bad = next(i for i, r in enumerate(rows[1:], start=2) if not _all_numbers(r))
        raise DataFileError("data.path", f"{shown}, line {bad}: every value after the header must be a number") from None
    if table.ndim != 2 or table.shape[1] != len(header):
        raise DataFileError("data.path", f"{shown}: every line needs {len(header)} values (one per header column)")
    out = {}
    for field, key in names.items():
        cols = _columns(header, key)
        if not cols:
            raise DataFileError(f"data.{field}", f"no column {key!r} (or {key}_0, {key}_1, ...) in {shown} (columns: {', '.join(header)})")
        out[field] = table[:, cols] if len(cols) > 1 or isinstance(key, list) else table[:, cols[0]]
    return out


def _all_numbers(row) -> bool:
    try:
        [float(c) for c in row]
    except ValueError:
        return False
    return True


def _columns(header: list[str], key) -> list[int]:
    if isinstance(key, list):
        return [header.index(k) for k in key] if all(k in header for k in key) else []
    if key in header:
        return [header.index(key)]
    numbered = {}
    for i, name in enumerate(header):
        m = re.fullmatch(re.escape(key) + r"_?(\d+)", name)
        if m:
            numbered[int(m.group(1))] = i
    if numbered and sorted(numbered) == list(range(len(numbered))):
        return [numbered[j] for j in range(len(numbered))]
    return []


def shape_problems(
    cfg: FileData,
    kind: str,
    input_shape: tuple[int, ...],
    output_shape: tuple[int, ...],
    input_bounds: tuple[int, ...] | None,
) -> tuple[list[tuple[str, str, Any]], int | None]:
    """Check the file's arrays against the model (``kind`` names it in messages). Returns
    ``(problems, number of training samples)``."""
    import numpy as np

    try:
        arr = read_arrays(cfg)
    except DataFileError as e:
        return [(e.key, e.message, NO_VALUE)], None
    csv_file = resolve(cfg.path).suffix.lower() == ".csv"
    problems = []
    pairs = [("x", "y", arr.x, arr.y)]
    if arr.test_x is not None:
        pairs.append(("test_x", "test_y", arr.test_x, arr.test_y))
    for fx, fy, x, y in pairs:
        for field, a, shape, what in ((fx, x, input_shape, "input"), (fy, y, output_shape, "output")):
            if conform(a, shape, csv_file) is None:
                need = "(" + ", ".join(["n", *map(str, shape)]) + (",)" if not shape else ")")
                problems.append((f"data.{field}", f"has shape {a.shape} in {cfg.path}; one {what} of model {kind} has shape {shape}, so it needs shape {need}", NO_VALUE))
            elif not np.all(np.isfinite(a)):
                problems.append((f"data.{field}", f"has non-finite values in {cfg.path}", NO_VALUE))
        if not problems and x.shape[:1] != y.shape[:1]:
            problems.append((f"data.{fy}", f"has {y.shape[0] if y.ndim else 0} samples in {cfg.path}, data.{fx} has {x.shape[0] if x.ndim else 0}", NO_VALUE))
        if input_bounds is not None and conform(x, input_shape, csv_file) is not None:
            xi = conform(x, input_shape, csv_file).reshape(x.shape[0], -1)
            ok = np.all(xi == np.round(xi)) and all(np.all((xi[:, k] >= 0) & (xi[:, k] < b)) for k, b in enumerate(input_bounds))
            if not ok:
                bounds = ", ".join(f"0 <= x[{k}] < {b}" for k, b in enumerate(input_bounds))
                problems.append((f"data.{fx}", f"model {kind} takes integer indices with {bounds} (file {cfg.path})", NO_VALUE))
    return problems, (int(arr.x.shape[0]) if arr.x.ndim else None)


def conform(a: np.ndarray, shape: tuple[int, ...], flat_rows: bool) -> np.ndarray | None:
    """``a`` as ``(n, *shape)`` (rows of a csv file are reshaped), or ``None`` if it does not
    fit."""
    if a.ndim >= 1 and a.shape[1:] == tuple(shape):
        return a
    if flat_rows and a.ndim in (1, 2) and math.prod(a.shape[1:]) == math.prod(shape):
        return a.reshape((a.shape[0],) + tuple(shape))
    return None


def model_arrays(cfg: FileData, input_shape: tuple[int, ...], output_shape: tuple[int, ...]):
    """``(x, y, test_x, test_y)`` shaped ``(n, *input_shape)`` / ``(n, *output_shape)`` (test
    arrays ``None`` when not asked). Raises :class:`DataFileError`."""
    arr = read_arrays(cfg)
    flat = resolve(cfg.path).suffix.lower() == ".csv"
    out = []
    for field, a, shape in zip(("x", "y", "test_x", "test_y"), arr, (input_shape, output_shape) * 2):
        if a is None:
            out.append(None)
            continue
        b = conform(a, shape, flat)
        if b is None:
            raise DataFileError(f"data.{field}", f"has shape {a.shape}, which does not fit the model's {shape} per sample")
        out.append(b)
    return tuple(out)

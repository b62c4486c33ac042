"""The output file of a run: checked before any compute, locked for the whole run.

A run writes ``<out>.tmp`` next to ``<out>`` and renames it when complete
(:func:`sde_bias.store.finalize`, an atomic ``os.replace``). Before anything is computed,
:func:`claim_output`

1. checks the path: not a directory, no file where a folder must be, every name within
   the file system's limit (also the ``.tmp`` and ``.lock`` names), the folder created and
   writable (by creating the lock file in it);
2. takes an exclusive lock on ``<out>.lock`` (``filelock``: an OS lock that dies with the
   process, so a killed run leaves no stale lock), held until the run has renamed its
   result. A second writer of the same path is refused at once, with one line.

Only the holder of the lock creates, resumes, deletes or renames ``<out>.tmp``, so no
process can remove another one's file in progress, and the lock file itself is left in
place (removing it would let two processes lock two different files of the same name).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

LOCK_SUFFIX = ".lock"
TMP_SUFFIX = ".tmp"


def lock_path_for(out) -> Path:
    out = Path(out)
    return out.with_name(out.name + LOCK_SUFFIX)


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _path_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_PATH_MAX"))
    except (OSError, ValueError, AttributeError):
        return 4096


def _exists(p: Path) -> bool:
    try:
        os.stat(p)
        return True
    except OSError:  # missing, or a name too long, or a file in the way
        return False


def _is_dir(p: Path) -> bool:
    return _exists(p) and p.is_dir()


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not _exists(p) and p != p.parent:
        p = p.parent
    return p


def _show(p, limit: int = 80) -> str:
    text = str(p)
    return text if len(text) <= limit else text[: limit // 2] + "..." + text[-limit // 2 + 3 :]


def _names_fit(path: Path, anc: Path, extra: tuple[str, ...] = ()) -> str | None:
    """A message if a name of ``path`` below ``anc`` (or one of ``extra``) is too long."""
    limit = _name_max(anc)
    for part in list(path.relative_to(anc).parts) + list(extra):
        n = len(os.fsencode(part))
        if n > limit:
            return f"the name {_show(part, 40)} is {n} bytes; the file system allows {limit}"
    return None


def check_folder(folder: Path, what: str, create: bool = True) -> None:
    """Refuse a folder path that cannot be made: a file in its way, a name too long. With
    ``create``, make the folder (and its parents)."""
    folder = Path(folder)
    anc = _existing_ancestor(folder.absolute())
    if not anc.is_dir():
        where = "is a file" if anc == folder.absolute() else f"{_show(anc)} is a file"
        raise UserError(f"{what} {_show(folder)}: {where}, not a folder")
    if (msg := _names_fit(folder.absolute(), anc)) is not None:
        raise UserError(f"{what} {_show(folder)}: {msg}")
    if not create:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{what} {folder}: cannot create the folder ({e.strerror or e})") from None


def check_output(out, origin: str = "--out") -> None:
    """Refuse, with one line, an output path that cannot be written (see the module
    docstring). ``origin`` says where the path came from (``--out`` or, for the default
    name, ``the scenario's name``), for the message."""
    out = Path(out)
    shown = f"{origin} {_show(out)}"
    tmp = out.with_name(out.name + TMP_SUFFIX)
    lock = lock_path_for(out)
    anc = _existing_ancestor(out.parent.absolute())
    if not anc.is_dir():
        raise UserError(f"{shown}: {_show(anc)} is a file, not a folder")
    if (msg := _names_fit(out.parent.absolute(), anc, (tmp.name, lock.name))) is not None:
        raise UserError(f"{shown}: {msg} (with the {TMP_SUFFIX} and {LOCK_SUFFIX} files next to it)")
    if len(os.fsencode(str(lock.absolute()))) >= _path_max(anc):
        raise UserError(f"{shown}: the path is too long for the file system ({_path_max(anc)} bytes)")
    if _is_dir(out):
        raise UserError(f"{shown}: is a directory; give a file name, e.g. {_show(out / 'run.h5')}")
    for p in (tmp, lock):
        if _is_dir(p):
            raise UserError(f"{shown}: {_show(p)} is a directory, in the way of the run's {p.suffix} file")
    check_folder(out.parent, f"{shown}: folder")
    try:  # the lock file doubles as the test that the folder is writable
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
    except OSError as e:
        raise UserError(f"{shown}: cannot write in {_show(out.parent)} ({e.strerror or e})") from None


class OutputLock:
    """The exclusive lock on an output path (``<out>.lock``), taken without waiting."""

    def __init__(self, out):
        from filelock import FileLock

        self.out = Path(out)
        self.path = lock_path_for(out)
        self._lock = FileLock(str(self.path), timeout=0)

    def acquire(self) -> "OutputLock":
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise UserError(
                f"{self.out} is being written by another sde-bias run (it holds {self.path}); "
                "wait for it to finish or choose another --out"
            ) from None
        except OSError as e:
            raise UserError(f"{self.out}: cannot lock {self.path} ({e.strerror or e})") from None
        return self

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def claim_output(out, origin: str = "--out") -> OutputLock:
    """:func:`check_output`, then the lock (held: release it when the run is done)."""
    check_output(out, origin)
    return OutputLock(out).acquire()

"""Where scenario files are found: a path, or a bare name looked up in ``scenarios/``.

The search order is the current directory's ``scenarios/`` then the repository's own
``scenarios/`` (for an editable install), each once.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError


def scenario_dirs() -> list[Path]:
    """The folders searched for bare scenario names, in order, without duplicates."""
    dirs = [Path("scenarios"), Path(__file__).resolve().parent.parent / "scenarios"]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def resolve_scenario_path(name: str) -> Path:
    """``name`` if it is an existing path, else ``<dir>/<name>.yaml`` from :func:`scenario_dirs`."""
    p = Path(name)
    if p.exists():
        return p
    if p.suffix == "" and len(p.parts) == 1:
        for d in scenario_dirs():
            q = d / f"{name}.yaml"
            if q.exists():
                return q
    raise UserError(f"{name}: no such scenario file")

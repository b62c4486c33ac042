"""User errors and YAML loading: the leaf of the configuration layer (PyYAML only).

Every mistake of the user becomes a :class:`UserError` (the command line prints its
message and exits with code 2, no traceback); a bad scenario or preset is a
:class:`ScenarioError` listing every problem as ``FILE: KEY.PATH: what was expected (got
VALUE)``. YAML is read with :class:`YamlLoader`: floats like ``1e-3``, duplicate keys
rejected, and syntax errors, deep nesting and alias bombs reported with their line or key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

NO_VALUE: Any = object()
"""The value of a problem ``(key path, message, value)`` that has no value to show."""

MAX_DEPTH = 32  # the deepest shipped value (attention inputs) is 5 levels
MAX_NODES = 2_000_000


class UserError(Exception):
    """A mistake of the user (bad file, bad option, bad value). The command line prints
    its message and exits with code 2, without a traceback."""


class ScenarioError(UserError):
    """An invalid scenario or preset. ``problems`` is a list of ``(path, message, value)``;
    the message has one line per problem: ``FILE: KEY.PATH: what was expected (got VALUE)``."""

    def __init__(self, source: str, problems: list[tuple[str, str, Any]], note: str = ""):
        self.source = str(source)
        self.problems = list(problems)
        lines = []
        for path, message, value in self.problems:
            where = f"{self.source}: {path}: " if path else f"{self.source}: "
            got = "" if value is NO_VALUE else f" (got {short_repr(value)})"
            lines.append(where + message + got)
        if note:
            lines.append(note)
        super().__init__("\n".join(lines))


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.1 needs ``1.0e-3``) and rejects
    duplicate keys."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# ---------------------------------------------------------------------------
# YAML: nesting and size limits (an alias that contains itself, alias bombs)
# ---------------------------------------------------------------------------


def key_path(path: str, key) -> str:
    """``path`` extended by a mapping key (``a.b``) or a list index (``a[2]``)."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def structure_problem(obj) -> tuple[str, str] | None:
    """``(path, message)`` if ``obj`` (parsed YAML) is nested deeper than
    :data:`MAX_DEPTH` or has more than :data:`MAX_NODES` values; ``None`` otherwise."""
    stack = [("", obj, 0)]
    nodes = 0
    while stack:
        path, v, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return path, f"more than {MAX_NODES:,} values (an alias expanded too often?)"
        if isinstance(v, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                return path, f"nested more than {MAX_DEPTH} levels deep"
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, a in items:
                stack.append((key_path(path, k), a, depth + 1))
    return None


def yaml_depth_problem(text: str, loader) -> tuple[str, str] | None:
    """``(where, message)`` if the YAML ``text`` nests collections more than
    :data:`MAX_DEPTH` levels deep, found from the parser's event stream (which, unlike
    building the value, does not recurse), so ``where`` names the line and the key path."""
    stack: list[list] = []  # [path, is_mapping, expecting_key, index or key]

    def value_path() -> str:
        if not stack:
            return ""
        path, is_map, _, at = stack[-1]
        return key_path(path, at)

    def done_value():
        if stack:
            top = stack[-1]
            if top[1]:
                top[2] = True
            else:
                top[3] += 1

    for ev in yaml.parse(text, Loader=loader):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.ScalarEvent, yaml.AliasEvent)):
            if stack and stack[-1][1] and stack[-1][2]:  # a mapping key
                stack[-1][2] = False
                stack[-1][3] = ev.value if isinstance(ev, yaml.ScalarEvent) else "?"
                if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                    stack.append(["?", isinstance(ev, yaml.MappingStartEvent), True, 0])
                continue
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    m = ev.start_mark
                    return value_path(), f"nested more than {MAX_DEPTH} levels deep (line {m.line + 1}, column {m.column + 1})"
                stack.append([value_path(), isinstance(ev, yaml.MappingStartEvent), True, 0])
            else:
                done_value()
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            stack.pop()
            done_value()
    return None


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text (floats like ``1e-3``, duplicate keys rejected); a syntax error
    becomes a :class:`ScenarioError` naming the line."""
    try:
        deep = yaml_depth_problem(text, YamlLoader)
        if deep is not None:
            raise ScenarioError(source, [(deep[0], f"invalid YAML: {deep[1]}", NO_VALUE)])
        value = yaml.load(text, Loader=YamlLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e)
        raise ScenarioError(source, [(where, f"invalid YAML: {what}", NO_VALUE)]) from None
    except RecursionError:
        raise ScenarioError(source, [("", f"invalid YAML: nested more than {MAX_DEPTH} levels deep", NO_VALUE)]) from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ScenarioError(source, [("", f"invalid YAML: {str(e).splitlines()[0]}", NO_VALUE)]) from None
    bad = structure_problem(value)
    if bad is not None:
        raise ScenarioError(source, [(bad[0], f"invalid YAML: {bad[1]}", NO_VALUE)])
    return value


def read_yaml_file(path) -> Any:
    """Read and parse a YAML file; a missing or unreadable file is a :class:`UserError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    return parse_yaml(text, str(path))


__all__ = ["NO_VALUE", "MAX_DEPTH", "MAX_NODES", "key_path", "structure_problem", "yaml_depth_problem", "UserError", "ScenarioError", "YamlLoader", "parse_yaml", "read_yaml_file", "short_repr"]

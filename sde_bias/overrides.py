"""Variants and ``--set`` overrides of a raw scenario mapping (before validation).

``deep_merge`` lays a variant over the base; ``parse_override`` reads ``KEY.PATH=VALUE``
(the value as YAML) and ``apply_override`` sets it, list items addressed by index.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import UserError, parse_yaml, short_repr



def deep_merge(base: dict, patch: dict) -> dict:
    """``patch`` over ``base``: mappings merge recursively, anything else replaces;
    a ``null`` value removes the key (so its default applies). A mapping whose ``type``
    changes (e.g. ``model: {type: linear, dim: 200}`` over a cumsum_hadamard model) is
    replaced as a whole."""
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict) and not _retyped(out[k], v):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _retyped(old: dict, new: dict) -> bool:
    """A patch that changes ``type`` (model, data) or ``kind`` replaces the mapping."""
    return any(k in new and k in old and new[k] != old[k] for k in ("type", "kind"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'training.lr=0.01'`` -> ``(['training', 'lr'], 0.01)`` (value parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. --set training.lr=0.01")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise UserError(f"--set {text!r}: bad key path {key!r}")
    parsed = parse_yaml(value, f"--set {text}") if value.strip() else None
    return key.split("."), parsed


def apply_override(raw: dict, keys: list[str], value: Any, text: str) -> dict:
    out = copy.deepcopy(raw)
    node = out
    for i, k in enumerate(keys[:-1]):
        if isinstance(node, list):
            node = _list_item(node, k, text)
            continue
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        elif not isinstance(nxt, (dict, list)):
            raise UserError(
                f"--set {text}: {'.'.join(keys[: i + 1])} is {short_repr(nxt)}, not a mapping"
            )
        node = nxt
    last = keys[-1]
    if isinstance(node, list):
        idx = _index(node, last, text)
        node[idx] = value
    elif value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return out


def _index(lst, k, text):
    try:
        i = int(k)
    except ValueError:
        raise UserError(f"--set {text}: {k!r} is not a list index") from None
    if not -len(lst) <= i < len(lst):
        raise UserError(f"--set {text}: index {i} out of range (list of {len(lst)})")
    return i


def _list_item(lst, k, text):
    return lst[_index(lst, k, text)]


__all__ = ["deep_merge", "parse_override", "apply_override"]

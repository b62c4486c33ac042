"""A pydantic :class:`~pydantic.ValidationError` as problems ``(key path, message, value)``.

The location pydantic reports is followed through the schema classes, so the path is the
one the user wrote (``data.teacher.std``, ``runners[2]``: union tags dropped, aliases such
as ``from`` kept) and an unknown key is reported with the keys its block allows and the
closest one.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from .config_base import NO_VALUE



def _unwrap(ann):
    """Strip Annotated/Optional; return (origin, args, discriminated_union_members)."""
    while typing.get_origin(ann) is Annotated:
        ann = typing.get_args(ann)[0]
    origin = typing.get_origin(ann)
    if origin in (Union, types.UnionType):
        members = [_strip_annotated(a) for a in typing.get_args(ann) if a is not type(None)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        if len(models) > 1:
            return "union", models
        if len(members) == 1:
            return _unwrap(members[0])
        if len(models) == 1:
            return _unwrap(models[0])
        return None, None
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "model", ann
    if origin is dict:
        return "dict", typing.get_args(ann)[1]
    if origin is list:
        return "list", typing.get_args(ann)[0]
    return None, None


def _strip_annotated(ann):
    while typing.get_origin(ann) is Annotated:
        ann = typing.get_args(ann)[0]
    return ann


def _tag_of(model_cls) -> str | None:
    if isinstance(getattr(model_cls, "tag", None), str):  # a block whose type is free text
        return model_cls.tag
    f = model_cls.model_fields.get("type") or model_cls.model_fields.get("kind")
    if f is None:
        return None
    args = typing.get_args(f.annotation)
    return args[0] if args else None


def _walk(root_cls, loc):
    """Follow a pydantic error location through the schema classes. Returns the clean
    dotted path (union tags dropped) and the model class that contains the last key."""
    parts: list[str] = []
    kind, cur = "model", root_cls
    parent = None
    i = 0
    loc = list(loc)
    while i < len(loc):
        el = loc[i]
        if kind == "union":
            tags = {_tag_of(m): m for m in cur}
            if el in tags:
                kind, cur = "model", tags[el]
                i += 1
                continue
            kind, cur = None, None
        if kind == "model":
            parent = cur
            parts.append(str(el))
            field = _field(cur, el) if isinstance(el, str) else None
            kind, cur = _unwrap(field.annotation) if field is not None else (None, None)
        elif kind == "dict":
            parent = None
            parts.append(str(el))
            kind, cur = _unwrap(cur)
        elif kind == "list":
            parent = None
            parts.append(f"[{el}]")
            kind, cur = _unwrap(cur)
        else:
            parent = None
            parts.append(f"[{el}]" if isinstance(el, int) else str(el))
        i += 1
    path = ""
    for p in parts:
        path += p if (p.startswith("[") or not path) else "." + p
    return path, parent


def _field(model_cls, key: str):
    """The field of ``model_cls`` named ``key`` in the file (its alias, e.g. ``from``)."""
    for name, f in model_cls.model_fields.items():
        if key == (f.alias or name):
            return f
    return model_cls.model_fields.get(key)


def _message_for(err: dict, parent) -> str:
    typ = err["type"]
    ctx = err.get("ctx") or {}
    if typ == "extra_forbidden":
        key = str(err["loc"][-1])
        allowed = [f.alias or k for k, f in parent.model_fields.items()] if parent is not None else []
        hint = difflib.get_close_matches(key, allowed, n=1)
        text = f"unknown key {key!r}"
        if hint:
            text += f" (did you mean {hint[0]!r}?)"
        if allowed:
            text += "; allowed keys: " + ", ".join(allowed)
        return text
    if typ == "missing":
        return "required key is missing"
    if typ in ("union_tag_invalid", "union_tag_not_found"):
        disc = ctx.get("discriminator", "type").strip(chr(39))
        disc = "type" if disc.endswith("()") else disc  # a callable discriminator reads `type`
        if typ == "union_tag_invalid":
            return f"unknown {disc} {ctx.get('tag')!r}; expected one of: {ctx.get('expected_tags')}"
        return f"needs a {disc} key"
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if msg.startswith("Input should be"):
        msg = "should be" + msg[len("Input should be"):]
    return msg


def errors_from_pydantic(exc: ValidationError, root_cls) -> list[tuple[str, str, Any]]:
    """The errors of ``exc`` (raised validating ``root_cls``) as ``(key path, message,
    value)``; ``value`` is ``NO_VALUE`` for a missing or unknown key."""
    out = []
    for err in exc.errors():
        path, parent = _walk(root_cls, err["loc"])
        value = NO_VALUE if err["type"] in ("missing", "extra_forbidden") else err.get("input", NO_VALUE)
        if err["type"] == "union_tag_invalid":
            value = NO_VALUE
        out.append((path, _message_for(err, parent), value))
    return out


__all__ = ["errors_from_pydantic"]

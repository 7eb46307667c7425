"""A pydantic field as the text of one row of an options table: its type, default,
constraints and description, rendered from the field itself (pure: a model in, rows out), for
:mod:`bench.describe`'s terminal tables and docs/reference.md."""

from __future__ import annotations

import inspect
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

@dataclass(frozen=True)
class Row:
    """One key of an options table, every cell already text."""

    key: str
    type: str
    default: str
    constraints: str
    description: str




def type_text(tp: Any) -> str:
    """A type annotation as a reader writes it: ``int | None``, ``list[str]``, a Literal as its
    choices (``"cpu" | "cuda"``), an options model as ``table``; Annotated metadata dropped
    (its constraints are shown by :func:`constraints_text`)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None) or tp is None:
        return "None"
    if tp is Any:
        return "any"
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"tuple[{type_text(args[0])}, ...]"
        return f"{name}[{', '.join(type_text(a) for a in args)}]"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "table"
    return getattr(tp, "__name__", str(tp))


_BOUNDS = (("ge", ">= {}"), ("gt", "> {}"), ("le", "<= {}"), ("lt", "< {}"),
           ("multiple_of", "multiple of {}"), ("min_length", "length >= {}"),
           ("max_length", "length <= {}"), ("pattern", "matches {}"))


def _bounds(metadata: list[Any]) -> list[str]:
    out = []
    for item in metadata:
        for attr, fmt in _BOUNDS:
            value = getattr(item, attr, None)
            if value is not None:
                out.append(fmt.format(value))
        if getattr(item, "allow_inf_nan", None) is True:  # options refuse inf and NaN otherwise
            out.append("inf and nan allowed")
    return out


def constraints_text(field: FieldInfo) -> str:
    """The field's declared range, length and pattern; the bounds of the items of a list or
    dict (``Annotated[float, Field(ge=0)]`` values) as ``each >= 0``."""
    out = _bounds(field.metadata)
    for arg in typing.get_args(field.annotation):
        if typing.get_origin(arg) is typing.Annotated:
            inner = [m for a in typing.get_args(arg)[1:]
                     for m in (a.metadata if isinstance(a, FieldInfo) else [a])]
            out += [f"each {b}" for b in _bounds(inner)]
    return ", ".join(out)


def value_text(value: Any) -> str:
    """A value as it is written in a matrix file (TOML): strings quoted, true/false, lists in
    brackets; None (TOML has none) as ``None``, meaning the key is left out."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, BaseModel):
        return value_text(value.model_dump())
    return repr(value)


def default_text(field: FieldInfo) -> str:
    """The default a key takes when it is left out; ``required`` when it has none. A nested
    options table whose default differs from its own defaults names what differs."""
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        own = type(value)().model_dump()
        changed = {k: v for k, v in value.model_dump().items() if own.get(k) != v}
        if not changed:
            return "its defaults"
        return "its defaults, but " + ", ".join(f"{k} = {value_text(v)}"
                                                for k, v in changed.items())
    return value_text(value)


def rows(model: type[BaseModel]) -> tuple[Row, ...]:
    """Every key of an options model, in the model's order."""
    return tuple(Row(name, type_text(f.annotation), default_text(f), constraints_text(f),
                     " ".join((f.description or "").split()))
                 for name, f in model.model_fields.items())


def doc_text(obj: Any) -> str:
    """A class's own docstring (not its base's), paragraphs kept, lines joined."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else None
    if not doc:
        return ""
    paragraphs = inspect.cleandoc(doc).replace("``", "`").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


# --------------------------------------------------------------------------- sections

"""Pydantic's validation errors as positioned problems (step 4 of :mod:`bastion.spec.loader`).

:func:`from_pydantic` looks each error's location up in the recorded positions (the parent
mapping for a missing key; a cross-field check's own node for a ``bastion_at`` error) and
says what was expected and what was given: the allowed keys and literal options are read
from :class:`~bastion.spec.config.PipelineConfig`'s declared types. :func:`describe` shows a
given value briefly, never more than 60 characters.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from bastion.spec._checks import AT
from bastion.spec._yaml_tree import KeyPath, Problem, dotted, position
from bastion.spec.config import PipelineConfig

__all__ = ["describe", "from_pydantic"]

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def from_pydantic(err: Mapping[str, Any], marks: Mapping[KeyPath, tuple[int, int]]) -> Problem:
    """One pydantic error, positioned in the file and said in the loader's words."""
    loc = tuple(part for part in err["loc"] if part != "[key]")
    kind: str = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    given = err.get("input")
    at = loc[:-1] if kind == "missing" else loc
    if kind == AT:  # a cross-field check that names its own node below the model
        at = (*loc, *ctx["at"])
    line, col = position(at, marks)
    if kind == AT:
        what = str(ctx["what"])
    elif kind == "missing":
        what = f"missing required key {str(loc[-1])!r}"
    elif kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        what = "unknown key" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
    elif kind == "literal_error":
        options = _literal_options(loc) or [ctx.get("expected", "?")]
        what = f"expected one of: {', '.join(options)}; got {describe(given)}"
    elif kind == "string_pattern_mismatch":
        what = f"expected a string matching {ctx.get('pattern')}, got {describe(given)}"
    elif kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        what = f"expected a number {_BOUNDS[kind]} {bound}, got {describe(given)}"
    elif kind in ("too_short", "string_too_short"):
        what = f"expected at least {ctx.get('min_length')} item(s), got {describe(given)}"
    elif kind in ("too_long", "string_too_long"):
        what = f"expected at most {ctx.get('max_length')} item(s), got {describe(given)}"
    elif kind in _EXPECTED:
        what = f"expected {_EXPECTED[kind]}, got {describe(given)}"
    elif kind == "value_error":
        what = str(err["msg"]).removeprefix("Value error, ")
    else:
        what = f"{err['msg']}, got {describe(given)}"
    return Problem(line, col, dotted(tuple(str(p) for p in at)), what)


def _annotation_at(loc: Sequence[Any]) -> Any:
    """The declared type at a location of the config, or None if it cannot be followed."""
    tp: Any = PipelineConfig
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {(f.alias or n): f for n, f in tp.model_fields.items()}
            if part not in fields:
                return None
            tp = fields[part].annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
    return _unwrap(tp)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _allowed_keys(loc: Sequence[Any]) -> list[str]:
    tp = _annotation_at(loc)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return sorted((f.alias or n) for n, f in tp.model_fields.items())
    return []


def _literal_options(loc: Sequence[Any]) -> list[str]:
    tp = _annotation_at(loc)
    if typing.get_origin(tp) is typing.Literal:
        return [str(a) for a in typing.get_args(tp)]
    return []


def describe(value: Any) -> str:
    """A given value as a message shows it: its kind, or its repr cut to 60 characters."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

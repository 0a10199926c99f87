"""The one-line messages of params errors, and validating a model with them.

A pydantic :class:`~pydantic.ValidationError` becomes ``dotted.key: value problem (expected ...)``
(:func:`format_validation_error`); the annotation markers :class:`Expect` and :class:`Walk` that the
schema (:mod:`cephalo.config.schema`) puts on its fields say what a field expects in words. This
module knows no section: the schema imports it, and :mod:`cephalo.config.load` reads files with both.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError

__all__ = ["Expect", "Walk", "suggest", "validate_section", "format_validation_error"]

M = TypeVar("M", bound=BaseModel)


class Expect:
    """Annotated marker: the human text of what a field expects (used in error messages)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"Expect({self.text!r})"


class Walk:
    """Annotated marker for error messages: the value at this field is validated as ``model``
    (``keyed``: a mapping of names to such values), so its nested keys can be described."""

    def __init__(self, model: Any, keyed: bool = False):
        self.model = model
        self.keyed = keyed


def suggest(key: str, valid: list[str]) -> str | None:
    """The closest valid name to ``key`` (``difflib``), or None."""
    close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1, cutoff=0.6)
    return close[0] if close else None


def validate_section(model: type[M], data: Any, prefix: str = "", source: str | Path | None = None) -> M:
    """Validate one section (``prefix`` = its dotted place in the file, e.g. ``"train"``).

    Raises:
        ConfigError: the first error as one line.
    """
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, model, prefix), source) from None


# --- messages -----------------------------------------------------------------------------
def _dotted(parts: list) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _flatten(err: dict) -> tuple[list, dict]:
    """(location, innermost error): unwraps the per-stage errors of ``train.stages``."""
    loc = list(err["loc"])
    ctx = err.get("ctx") or {}
    while err["type"] == "stage" and "inner" in ctx:
        inner = ctx["inner"]
        loc = loc + list(ctx["prefix"]) + list(inner["loc"])
        err = inner
        ctx = err.get("ctx") or {}
    return loc, err


def format_validation_error(e: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """One line for the first error of ``e``: ``dotted.key: value problem (expected ...)``.

    Further errors are counted (``(+2 more errors)``) so a user fixing one sees there are others.
    """
    errors = e.errors()
    loc, err = _flatten(errors[0])
    base = [p for p in prefix.split(".") if p] if prefix else []
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    typ = err["type"]
    ctx = err.get("ctx") or {}
    if typ == "unknown_key":
        key = _dotted(base + loc + [ctx["key"]])
        if ctx.get("suggestion"):
            return f"{key}: unknown key; did you mean {ctx['suggestion']!r}?{more}"
        return f"{key}: unknown key (valid: {', '.join(ctx.get('valid') or [])}){more}"
    if typ == "extra_forbidden":
        return f"{_dotted(base + loc)}: unknown key{more}"
    key = _dotted(base + loc)
    if typ == "step":  # the message carries its own [i].step.arg suffix
        return f"{key}{err['msg']}{more}"
    expected = _expected(model, loc)
    tail = f" (expected {expected})" if expected else ""
    if typ == "missing":
        return f"{key}: missing{tail}{more}"
    value = err.get("input")
    problem = _PROBLEMS.get(typ)
    if problem is None:
        problem = err["msg"]
        for lead in ("Value error, ", "Assertion failed, "):
            problem = problem.removeprefix(lead)
        problem = problem[:1].lower() + problem[1:]
    if (
        typ in ("model_type", "model_attributes_type", "dict_type", "list_type", "tuple_type")
        or isinstance(value, (dict, list))
        and len(repr(value)) > 60
    ):
        shown = type(value).__name__ if not isinstance(value, (str, int, float, bool)) else repr(value)
    else:
        shown = repr(value)
    if typ in ("init", "source"):  # model-level consistency checks: no single value to show
        return f"{key}: {problem}{more}"
    return f"{key}: {shown} {problem}{tail}{more}"


_PROBLEMS = {
    "int_parsing": "is not an integer",
    "int_type": "is not an integer",
    "int_from_float": "is not an integer",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "bool_parsing": "is not true/false",
    "bool_type": "is not true/false",
    "string_type": "is not a string",
    "literal_error": "is not allowed",
    "greater_than": "is too small",
    "greater_than_equal": "is too small",
    "less_than": "is too large",
    "less_than_equal": "is too large",
    "model_type": "is not a mapping",
    "model_attributes_type": "is not a mapping",
    "dict_type": "is not a mapping",
    "list_type": "is not a list",
    "tuple_type": "is not a list",
    "too_short": "is too short",
    "too_long": "is too long",
    "string_pattern_mismatch": "is not allowed",
    "device": "is not a device",
    "none_required": "is not allowed",
}


def _unwrap(tp: Any) -> tuple[Any, list, bool]:
    """(bare type, Annotated metadata, nullable) of an annotation."""
    meta: list = []
    nullable = False
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            args = typing.get_args(tp)
            tp, meta = args[0], meta + list(args[1:])
            continue
        if origin in (typing.Union, getattr(types, "UnionType", None)):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) < len(typing.get_args(tp)):
                nullable = True
            if len(args) == 1:
                tp = args[0]
                continue
        return tp, meta, nullable


def _field_annotation(model: type[BaseModel], name: str) -> Any:
    f = model.model_fields[name]
    return typing.Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation


def _expected(model: type[BaseModel], loc: list) -> str | None:
    """What the field at ``loc`` (under ``model``) expects, in words; None when it cannot be found."""
    tp: Any = model
    meta: list = []
    nullable = False
    for part in loc:
        bare, m, _n = _unwrap(tp)
        walk = next((x for x in m if isinstance(x, Walk)), None)
        if walk is not None:
            if walk.keyed:  # this part is a name (e.g. a stage); its value is a walk.model
                tp = walk.model
                continue
            bare = walk.model
        if isinstance(bare, type) and issubclass(bare, BaseModel):
            if part not in bare.model_fields:
                return None
            tp = _field_annotation(bare, part)
        else:
            origin = typing.get_origin(bare)
            args = typing.get_args(bare)
            if origin is dict and args:
                tp = args[1]
            elif origin in (list, tuple) and args and isinstance(part, int):
                tp = args[0]
            else:
                return None
    bare, meta, nullable = _unwrap(tp)
    return _describe(bare, meta, nullable)


def _describe(bare: Any, meta: list, nullable: bool) -> str | None:
    for m in meta:
        if isinstance(m, Expect):
            return m.text + (" or null" if nullable else "")
    bounds = []
    for m in meta:
        for fm in [m, *(getattr(m, "metadata", None) or [])]:  # annotated_types, or a FieldInfo holding them
            for cls, attr, sym in ((Ge, "ge", ">="), (Gt, "gt", ">"), (Le, "le", "<="), (Lt, "lt", "<")):
                if isinstance(fm, cls):
                    bounds.append(f"{sym} {getattr(fm, attr)}")
    b = (" " + " and ".join(bounds)) if bounds else ""
    origin = typing.get_origin(bare)
    if origin is typing.Literal:
        text = " | ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in typing.get_args(bare))
    elif bare is bool:
        text = "true or false"
    elif bare is int:
        text = "an integer >= 1" if b == " >= 1" else f"an integer{b}"
    elif bare is float:
        text = f"a number{b}"
    elif bare is str:
        text = "a string"
    elif origin is list or bare is list:
        text = "a list"
    elif origin is tuple:
        text = f"a list of {len(typing.get_args(bare))} numbers"
    elif origin is dict or bare is dict:
        text = "a mapping"
    elif isinstance(bare, type) and issubclass(bare, BaseModel):
        text = "a mapping with keys " + ", ".join(bare.model_fields)
    else:
        return None
    return text + (" or null" if nullable else "")

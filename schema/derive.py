"""GraphQL types derived from the plain declarations in resolvers/: errors, their items, filters.

A declaration is a dataclass whose docstring describes it and whose fields carry `doc(...)`
metadata; `GlobalId` fields become `ID`. The derived type has the same fields, in order.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Annotated, Any, Optional, TypeVar, Union, get_args, get_origin, get_type_hints

import strawberry

from resolvers.codes import ErrorCode
from resolvers.ids import GLOBAL_ID

T = TypeVar("T")

# Derived GraphQL type → the declaration it came from, and back.
_DERIVED: dict[type, type] = {}
_ORIGIN: dict[type, type] = {}


def annotation(hint: Any) -> Any:
    """The GraphQL-side annotation for a declaration's field type."""
    if hint is ErrorCode:
        # `code` fields are String! in the contract; enum ErrorCode lists their values.
        return str
    origin = get_origin(hint)
    if origin is Annotated:
        base, *extras = get_args(hint)
        return strawberry.ID if GLOBAL_ID in extras else annotation(base)
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(hint) if a is not type(None)]
        (inner,) = members
        return Optional[annotation(inner)]  # noqa: UP045 - built at run time
    if origin is list:
        (item,) = get_args(hint)
        return list[annotation(item)]  # type: ignore[misc]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return derived(hint)
    return hint


def derived(
    declaration: type,
    *,
    name: str | None = None,
    description: str | None = None,
    base: type | None = None,
    skip: frozenset[str] = frozenset(),
    input: bool = False,
) -> type:
    """The GraphQL object (or input) type of a declaration, built once."""
    if declaration in _DERIVED:
        return _DERIVED[declaration]
    hints = get_type_hints(declaration, include_extras=True)
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__annotations__": annotations}
    for f in dataclasses.fields(declaration):
        if f.name in skip:
            continue
        annotations[f.name] = annotation(hints[f.name])
        options: dict[str, Any] = {"description": f.metadata.get("doc")}
        if "deprecated" in f.metadata:
            options["deprecation_reason"] = f.metadata["deprecated"]
        if input and f.default is not dataclasses.MISSING:
            options["default"] = f.default
        namespace[f.name] = strawberry.field(**options)
    type_name = str(name or getattr(declaration, "graphql_name", declaration.__name__))
    description = description or (declaration.__doc__ or "").strip() or None
    cls = type(type_name, (base,) if base is not None else (), namespace)
    decorate = strawberry.input if input else strawberry.type
    result: type = decorate(cls, name=type_name, description=description)
    _DERIVED[declaration] = result
    _ORIGIN[result] = declaration
    return result


def to_graphql(value: Any, **extra: Any) -> Any:
    """A declared value as an instance of its derived GraphQL type (recursively)."""
    if isinstance(value, list):
        return [to_graphql(v) for v in value]
    if not dataclasses.is_dataclass(value) or type(value) not in _DERIVED:
        return value
    target = _DERIVED[type(value)]
    own = {f.name: to_graphql(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return target(**own, **extra)


def plain(value: object | None, declaration: type[T]) -> T | None:
    """A derived input, as received, back as its declaration (the resolvers' view)."""
    if value is None:
        return None
    assert _ORIGIN.get(type(value)) is declaration, (type(value), declaration)
    names = [f.name for f in dataclasses.fields(declaration)]  # type: ignore[arg-type]
    return declaration(**{n: getattr(value, n) for n in names})


def declared(value: Any) -> Any:
    """A derived input back as its declaration; any other value as it is."""
    origin = _ORIGIN.get(type(value))
    return value if origin is None else plain(value, origin)


def input_of(declaration: type) -> Any:
    """The GraphQL input type of a filter declared in resolvers/."""
    return derived(declaration, input=True)

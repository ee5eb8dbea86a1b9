"""Node: the global id interface, the registry of Node types, and `node(id:)`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Self, TypeVar

import strawberry
from sqlalchemy import ColumnElement

from resolvers import nodes
from resolvers.context import Context
from resolvers.ids import encode_id
from resolvers.loaders import loader
from resolvers.nodes import Lookup
from schema.context import Info
from schema.permissions import signed_in


@strawberry.interface(description="An object with a global id; `node(id:)` fetches any of them.")
class Node:
    id: strawberry.ID = strawberry.field(description="Opaque global id.")

    @classmethod
    def from_row(cls, row: Any) -> Self:
        """The row as this type: its declared fields, read from the row's columns of the same
        name or computed as the type's registration says; nothing else of the row shows."""
        return _PROJECTIONS[cls](row)


T = TypeVar("T", bound=type[Node])
_PROJECTIONS: dict[type, Callable[[Any], Any]] = {}

# GraphQL type name → the type, and how `node(id:)` finds a row of it for the caller.
NODE_TYPES: dict[str, Any] = {}
LOOKUPS: dict[str, Lookup] = {}
# GraphQL type name → the predicate its lookup applies, for `node(id:)` in the compiled path:
# the declaration LOOKUPS' loaders are built from, so the two paths cannot drift apart.
SCOPES: dict[str, Callable[[Context], ColumnElement[bool]] | None] = {}
# Table → the Node type that projects its rows.
ROW_TYPES: dict[type, Any] = {}


@dataclass(frozen=True)
class FromColumns:
    """A field computed from some of the row's columns (read by both executors)."""

    compute: Callable[..., Any]
    columns: tuple[str, ...]

    def __call__(self, row: Any) -> Any:
        return self.compute(*(getattr(row, c) for c in self.columns))


def computed(compute: Callable[..., Any], *columns: str) -> FromColumns:
    return FromColumns(compute, columns)


# Node type → its computed fields, by python name.
COMPUTED: dict[type, dict[str, FromColumns]] = {}


@dataclass(frozen=True)
class ById:
    """Declares a root field that answers the object whose global id is its `id` argument:
    of `type_name` only, or (None) of any Node type. The compiled path plans it from this."""

    type_name: str | None = None


def node(model: type, lookup: loader[int, Any], **computed: FromColumns) -> Callable[[T], T]:
    """Register the Node type of `model`'s rows.

    `lookup` is the scoped loader (of a LoaderGroup) `node(id:)` uses; `computed` names the fields
    that are not a column of the same name, with the columns each is computed from.
    """

    def register(cls: T) -> T:
        name = cls.__name__
        fields = cls.__strawberry_definition__.fields  # type: ignore[attr-defined]
        columns = [
            f.python_name
            for f in fields
            if f.base_resolver is None and f.python_name not in ("id", "row", *computed)
        ]

        def project(row: Any) -> Any:
            values = {c: getattr(row, c) for c in columns}
            values.update({f: fn(row) for f, fn in computed.items()})
            return cls(id=gid(name, row.id), row=row, **values)  # type: ignore[call-arg]

        COMPUTED[cls] = dict(computed)
        NODE_TYPES[name] = cls
        LOOKUPS[name] = lookup.of
        SCOPES[name] = lookup.where
        ROW_TYPES[model] = cls
        _PROJECTIONS[cls] = project
        return cls

    return register


def as_graphql(value: Any) -> Any:
    """Rows (and lists of them) as their Node types; anything else as it is."""
    if isinstance(value, list):
        return [as_graphql(v) for v in value]
    kind = ROW_TYPES.get(type(value))
    return value if kind is None else kind.from_row(value)


def gid(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(encode_id(type_name, pk))


def project(type_name: str, row: Any) -> Any:
    """A row as its Node type (by name, so that domain modules need not import each other)."""
    return NODE_TYPES[type_name].from_row(row)


def project_all(type_name: str, rows: list[Any]) -> list[Any]:
    cls = NODE_TYPES[type_name]
    return [cls.from_row(r) for r in rows]


def maybe(type_name: str, row: Any | None) -> Any | None:
    return None if row is None else NODE_TYPES[type_name].from_row(row)


@strawberry.type
class NodeQuery:
    @strawberry.field(
        description="Any object by global id; null when missing or not visible to the caller.",
        extensions=signed_in(),
        metadata={"by_id": ById()},
    )
    async def node(
        self,
        info: Info,
        id: Annotated[
            strawberry.ID, strawberry.argument(description="The id of any object (a Node).")
        ],
    ) -> Node | None:
        found = await nodes.node(info.context, id=id, lookups=LOOKUPS)
        return None if found is None else project(*found)

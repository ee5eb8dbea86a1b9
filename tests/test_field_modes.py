"""How every field a query can read executes: compiled (one statement) or standard-only, why.

The listing is made by asking the compiled path's planner about a small document reaching each
field (`node(id:)` for a Node type's fields, the root itself for Query's, through the parent
for other objects), so it says what the planner does, not what a table says it should. It is
committed in tests/field_modes.txt; a field whose mode changes fails this test until the
listing is written again on purpose:

    .venv/bin/python -m tests.test_field_modes > tests/field_modes.txt
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLUnionType,
    get_named_type,
    parse,
)

from resolvers import compiled as sql
from resolvers.context import Limits
from resolvers.ids import encode_id
from schema import schema
from schema.compiled import compile_operation
from schema.nodes import NODE_TYPES

LISTING = Path(__file__).parent / "field_modes.txt"


def _value(name: str, kind: Any) -> str:
    """A literal for a required argument (any well-formed value: planning reads no rows)."""
    named = get_named_type(kind)
    if named.name == "ID":
        return f'"{encode_id(name.removesuffix("Id").capitalize(), 1)}"'
    if isinstance(named, GraphQLEnumType):
        return str(next(iter(named.values)))
    if isinstance(named, GraphQLInputObjectType):
        return "{}"
    return {"Int": "1", "Boolean": "true", "Float": "1"}.get(named.name, '"x"')


def _call(name: str, field: GraphQLField) -> str:
    required = [
        f"{arg}: {_value(arg, a.type)}"
        for arg, a in field.args.items()
        if isinstance(a.type, GraphQLNonNull)
    ]
    return f"{name}({', '.join(required)})" if required else name


def _inside(field: GraphQLField) -> str:
    """The least selection of a field's value."""
    named = get_named_type(field.type)
    if isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLUnionType):
        if named.name.endswith("Connection"):
            return " { totalCount }"
        return " { __typename }"
    return ""


def _mode(document: str) -> str:
    try:
        compile_operation(schema, parse(document), None, Limits())
    except sql.NotCompilable as exc:
        return f"standard: {exc.__cause__ or exc}"
    return "compiled"


def listing() -> list[str]:
    lines = []
    gql = schema._schema
    assert gql.query_type is not None
    for name, field in sorted(gql.query_type.fields.items()):
        if name.startswith("__"):
            continue
        lines.append(f"Query.{name}: {_mode('{ ' + _call(name, field) + _inside(field) + ' }')}")
    for type_name in sorted(NODE_TYPES):
        kind = gql.type_map[type_name]
        assert isinstance(kind, GraphQLObjectType)
        for name, field in sorted(kind.fields.items()):
            selection = _call(name, field) + _inside(field)
            found = encode_id(type_name, 1)
            document = f'{{ node(id: "{found}") {{ ... on {type_name} {{ {selection} }} }} }}'
            lines.append(f"{type_name}.{name}: {_mode(document)}")
    return lines


def test_every_fields_mode_is_as_listed() -> None:
    expected = LISTING.read_text().splitlines()
    found = listing()
    changed = sorted(set(found) ^ set(expected))
    assert found == expected, (
        "fields whose execution changed (write the listing again if meant: "
        ".venv/bin/python -m tests.test_field_modes > tests/field_modes.txt):\n"
        + "\n".join(changed)
    )


# Lists the executor answers by design: the change feed reads in commit order with its own
# paging (resolvers/changes.py), polled by machines rather than read on screens.
STANDARD_LISTS = frozenset({"Query.changes"})


def test_every_list_compiles() -> None:
    """Every connection root compiles: a document falling back costs the executor's ~10 ms."""
    query = schema._schema.query_type
    assert query is not None
    roots = {
        f"Query.{name}"
        for name, field in query.fields.items()
        if get_named_type(field.type).name.endswith("Connection")
        and f"Query.{name}" not in STANDARD_LISTS
    }
    lists = [line for line in listing() if line.split(":")[0] in roots]
    assert len(lists) == len(roots) >= 10
    assert all(line.endswith(": compiled") for line in lists), lists


if __name__ == "__main__":
    sys.stdout.write("\n".join(listing()) + "\n")

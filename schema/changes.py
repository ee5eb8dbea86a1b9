"""The change policy: what may change between the released SDL and the schema as it is now.

`schema/released.graphql` is the contract as last released. A change that breaks a client of
it (graphql-core's `find_breaking_changes`: a field, argument, input field or enum value
removed, a type changed…) is allowed only for what the released SDL had already deprecated:
clients were told. Releasing copies schema/schema.graphql over schema/released.graphql and
notes the release in CHANGELOG.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from graphql import (
    BreakingChange,
    BreakingChangeType,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
    find_breaking_changes,
)

HERE = Path(__file__).resolve().parent
RELEASED = HERE / "released.graphql"
CURRENT = HERE / "schema.graphql"

# What each removal names, in graphql-core's words: the coordinate deprecated before.
_REMOVED = {
    BreakingChangeType.FIELD_REMOVED: re.compile(r"^Field (\w+)\.(\w+) was removed\.$"),
    BreakingChangeType.ARG_REMOVED: re.compile(r"^Argument (\w+)\.(\w+)\((\w+):\) was removed\.$"),
    BreakingChangeType.VALUE_REMOVED_FROM_ENUM: re.compile(
        r"^Enum value (\w+)\.(\w+) was removed\.$"
    ),
}


@dataclass(frozen=True)
class Refused:
    """A breaking change the released SDL had not announced."""

    kind: str
    description: str


def refused_changes(released: str, current: str) -> list[Refused]:
    """Every breaking change from `released` to `current` that was not deprecated first."""
    old, new = build_schema(released), build_schema(current)
    return [
        Refused(change.type.name, change.description)
        for change in find_breaking_changes(old, new)
        if not _announced(old, change)
    ]


def _announced(old: GraphQLSchema, change: BreakingChange) -> bool:
    pattern = _REMOVED.get(BreakingChangeType(change.type))
    found = pattern.match(change.description) if pattern is not None else None
    if found is None:
        return False
    type_ = old.get_type(found[1])
    if change.type is BreakingChangeType.VALUE_REMOVED_FROM_ENUM:
        value = type_.values.get(found[2]) if isinstance(type_, GraphQLEnumType) else None
        return value is not None and value.deprecation_reason is not None
    if not isinstance(type_, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
        return False
    field = type_.fields.get(found[2])
    if field is None:
        return False
    if change.type is BreakingChangeType.ARG_REMOVED:
        argument = getattr(field, "args", {}).get(found[3])
        return argument is not None and argument.deprecation_reason is not None
    return field.deprecation_reason is not None

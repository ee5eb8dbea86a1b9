"""The Error interface, and one GraphQL error type per error declared in resolvers/outcomes."""

from __future__ import annotations

import strawberry

from resolvers import outcomes
from schema import enums  # noqa: F401 - errors' enum fields use the registered enums
from schema.derive import derived


@strawberry.interface(description="An expected failure of a mutation; nothing was changed.")
class Error:
    code: str = strawberry.field(description="Stable machine-readable code, e.g. NOT_FOUND.")
    message: str = strawberry.field(description="Human-readable explanation.")


def error_type(declaration: type[outcomes.Problem]) -> type:
    return derived(
        declaration,
        name=declaration.graphql_name,
        description=declaration.about,
        base=Error,
        skip=frozenset({"message"}),
    )


ERROR_TYPES: dict[type[outcomes.Problem], type] = {p: error_type(p) for p in outcomes.PROBLEMS}

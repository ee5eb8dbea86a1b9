"""The Error interface, one GraphQL error type per error declared in resolvers/outcomes, and
the list of every code an answer can carry (enum ErrorCode, from resolvers/codes)."""

from __future__ import annotations

import strawberry

from resolvers import outcomes
from resolvers.codes import ErrorCode
from schema import enums  # noqa: F401 - errors' enum fields use the registered enums
from schema.derive import derived

# Listed in the schema for clients to read and generate from; fields stay String!, so that a
# code added later is not a breaking change for clients that switch over it.
strawberry.enum(
    ErrorCode,
    name="ErrorCode",
    description="Every code an answer can carry: `Error.code` of a mutation's error types, "
    "`ItemError.code` of a bulk item, `extensions.code` of a top-level error, and the HTTP "
    "layer's refusals, which have the same shape. The fields themselves are String!: expect "
    "codes added later.",
)
for _value in ErrorCode.__strawberry_definition__.values:  # type: ignore[attr-defined]
    _value.description = ErrorCode[_value.name].description
    _value.deprecation_reason = ErrorCode[_value.name].deprecated


@strawberry.interface(description="An expected failure of a mutation; nothing was changed.")
class Error:
    code: str = strawberry.field(
        description="Stable machine-readable code, e.g. NOT_FOUND (one of enum ErrorCode)."
    )
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

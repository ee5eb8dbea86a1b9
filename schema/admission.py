"""Whether a request may run: every limit on what its document and variables ask, in one place.

Both read paths call `admission` with the same prepared document, variables and cost: the
standard executor (schema/extensions.py) answers its refusal; the compiled path
(server/compiled.py) answers nothing it refuses and leaves the request to the standard executor,
so a limit added here holds on both, with one body. Its checks, in order:

- the document's verdict, made once per document by schema/documents.py: syntax, tokens
  (MAX_TOKENS_EXCEEDED), depth (MAX_DEPTH_EXCEEDED), aliases (MAX_ALIASES_EXCEEDED) and
  GraphQL's own rules (GRAPHQL_VALIDATION_FAILED);
- the node estimate (MAX_COST_EXCEEDED, schema/cost.py), fixed by document and variables;
- text no database can store, in the document or the variables (INVALID).

What comes before either path is checked once too, in the HTTP layer (server/http.py: the
body; server/graphql.py: the caller's fair-use budget, RATE_LIMITED).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError, Node, StringValueNode

from resolvers.errors import InvalidInput, MaxCostExceeded, OperationError
from schema.cost import DEFAULT_COUNT_COST, DEFAULT_LIST_BOUND
from schema.documents import Prepared

# Why a request may not run: an error of the document's validation, or a top-level error.
Refusal = GraphQLError | OperationError


@dataclass(frozen=True)
class QueryLimits:
    """The limits on what a document asks, each a setting (server/services.py)."""

    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 4000
    max_cost: int = 50_000
    page_size: int = 50  # what a connection without `first` costs
    list_bound: int = DEFAULT_LIST_BOUND  # what a list without a declared bound costs
    count_cost: int = DEFAULT_COUNT_COST  # what a totalCount costs
    document_cache_bytes: int = 64 * 1024 * 1024  # parsed documents kept (schema/documents.py)
    introspection_cache_bytes: int = 16 * 1024 * 1024  # anonymous introspection answers
    persisted_query_cache_bytes: int = 16 * 1024 * 1024  # registered hashes' documents
    anonymous_introspection: bool = False


def admission(
    prepared: Prepared,
    variables: dict[str, Any] | None,
    cost: int,
    limits: QueryLimits,
) -> Refusal | None:
    """Why this request may not run (None: it may), whichever path answers it."""
    if not prepared.valid:
        return prepared.errors[0]
    if cost > limits.max_cost:
        return MaxCostExceeded(
            f"The request may fetch {cost} objects; the limit is {limits.max_cost}. Ask for "
            "smaller pages (`first`) or fewer nested lists.",
            cost=cost,
            limit=limits.max_cost,
        )
    if prepared.schema_selections > 1:
        # Each full introspection costs most of a second of CPU and answers the same each time:
        # 29 aliases of it in one document would hold a core for many seconds.
        return InvalidInput(
            "A document may select __schema once (its answer is the same each time): drop the "
            "other selections or aliases of it."
        )
    return unstorable(prepared.query, prepared.document, variables)


def unstorable(
    query: str | None, document: Node | None, variables: dict[str, Any] | None
) -> InvalidInput | None:
    """Text of the request no database can store (U+0000 in PostgreSQL; a lone surrogate, which
    is not Unicode text, in either): refused as INVALID, with the variable's path as `field`."""
    if document_has_nul(query, document):
        return InvalidInput(f"Text may not contain {NUL}.")
    found = unstorable_variable(variables)
    if found is None:
        return None
    path, what = found
    # A key may hold the character itself: named escaped, so that the answer can be sent.
    path = path.encode("utf-8", "backslashreplace").decode()
    return InvalidInput(f"Text may not contain {what}: {path} does.", field=path)


NUL = "the NUL character (U+0000)"
LONE_SURROGATE = "a lone surrogate (U+D800 to U+DFFF; send UTF-8 text)"
_SURROGATE = re.compile("[\ud800-\udfff]")


def document_has_nul(query: str | None, document: Node | None) -> bool:
    if "\x00" in (query or ""):
        return True
    if "\\u" not in (query or "") or document is None:
        return False  # without an escape, the document's strings are as the text shows
    return any("\x00" in value for value in _string_literals(document))


def unstorable_variable(value: object, path: str = "") -> tuple[str, str] | None:
    """The path of the first variable (or object key) holding unstorable text, and what."""
    if isinstance(value, str):
        if "\x00" in value:
            return path, NUL
        if _SURROGATE.search(value):
            return path, LONE_SURROGATE
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            found = unstorable_variable(key, inner) or unstorable_variable(item, inner)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable_variable(item, f"{path}.{index}")
            if found is not None:
                return found
    return None


def _string_literals(node: object) -> Iterator[str]:
    if isinstance(node, StringValueNode):
        yield node.value
    elif isinstance(node, Node):
        for key in node.keys:
            child = getattr(node, key, None)
            for item in child if isinstance(child, tuple | list) else (child,):
                yield from _string_literals(item)

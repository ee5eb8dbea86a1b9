"""Documents parsed and validated once per request, and kept only for callers who signed in.

A POST's document is parsed and validated once (`Documents.prepare`) before either executor
runs: the compiled read path plans from it, and the standard executor is handed the same
(`schema/extensions.py`, `Operation.on_parse`). A document is kept for later requests only
when its own request signed in (`Documents.keep`): a request that fails authentication or
validation leaves no entry behind, so anonymous 1 MB bodies cannot fill the process. What is
kept is bounded in bytes (schema/caches.py); the compiled path's plans for a document are kept
on it, so they leave with it.

Automatic persisted queries register the same way: a request sending a document with its
SHA-256 (`extensions.persistedQuery`) registers that hash for the document only when the
document is kept, so a later request may send the hash alone (`Documents.registered`, bounded
in bytes too). Trusted documents (`CASELOAD_TRUSTED_DOCUMENTS`) are pinned: parsed at start and
never evicted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    Node,
    OperationDefinitionNode,
    OperationType,
    parse,
)
from strawberry.schema.schema import validate_document

from schema.caches import BoundedCache

# What a kept document holds alive per character of its text: measured at 80-110 bytes for
# the parsed screens of the web client; the plans of the compiled path come on top.
BYTES_PER_CHARACTER = 200
# Larger documents are parsed for their own request and not kept.
MAX_KEPT_CHARACTERS = 16 * 1024
# What a registered hash holds alive besides its document's text: the hash, the entry, the
# text object's header.
REGISTRATION_BYTES = 300
# Larger documents are not registered: their clients keep sending them.
MAX_REGISTERED_CHARACTERS = 256 * 1024


@dataclass(eq=False)
class Prepared:
    """One document as a request sent it: parsed (or the syntax error) and validated."""

    query: str
    document: DocumentNode | None
    errors: list[GraphQLError]
    # The compiled path's plan per operation name (None: the standard executor answers).
    plans: dict[str | None, Any] = field(default_factory=dict)
    # The cost estimate per operation name, for operations without variables.
    costs: dict[str | None, int] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.document is not None and not self.errors

    @functools.cached_property
    def schema_selections(self) -> int:
        """How many times the document selects `__schema` (in its operations and fragments):
        counted once per kept document, not per request."""
        found = 0
        pending: list[Node] = [] if self.document is None else [self.document]
        while pending:
            node = pending.pop()
            if isinstance(node, FieldNode) and node.name.value == "__schema":
                found += 1
            for key in ("definitions", "selection_set", "selections"):
                value = getattr(node, key, None)
                if isinstance(value, Node):
                    pending.append(value)
                elif isinstance(value, tuple | list):
                    pending.extend(v for v in value if isinstance(v, Node))
        return found

    def reads(self, operation_name: str | None) -> bool:
        """Whether the operation the request picks is a query."""
        if self.document is None:
            return False
        for d in self.document.definitions:
            if isinstance(d, OperationDefinitionNode) and (
                operation_name is None or (d.name is not None and d.name.value == operation_name)
            ):
                return d.operation is OperationType.QUERY
        return False

    def names(self) -> set[str | None]:
        """The operation names a request may pick (None: the only one)."""
        if self.document is None:
            return set()
        operations = [
            d for d in self.document.definitions if isinstance(d, OperationDefinitionNode)
        ]
        names: set[str | None] = {o.name.value for o in operations if o.name is not None}
        if len(operations) == 1:
            names.add(None)
        return names


# The request's document, prepared by the HTTP layer, for the executor that answers it, and
# the request's cost estimate (None: not made yet).
_current: ContextVar[Prepared | None] = ContextVar("caseload_prepared", default=None)
_cost: ContextVar[int | None] = ContextVar("caseload_cost", default=None)
# The SHA-256 the request sent with its document (automatic persisted queries), checked against
# the document already: registered when the document is kept.
_registering: ContextVar[str | None] = ContextVar("caseload_registering", default=None)


class Documents:
    """The process's parsed documents, one entry per document text."""

    def __init__(
        self,
        schema: GraphQLSchema,
        rules: list[type[ASTValidationRule]],
        max_tokens: int,
        budget: int,
        estimate: Callable[[DocumentNode, str | None, dict[str, Any] | None], int],
        registered_budget: int = 16 * 1024 * 1024,
    ) -> None:
        self.schema = schema
        self.rules = tuple(rules)
        self.max_tokens = max_tokens
        self.estimate = estimate
        self.kept: BoundedCache[str, Prepared] = BoundedCache(
            budget, MAX_KEPT_CHARACTERS * BYTES_PER_CHARACTER
        )
        # Automatic persisted queries: SHA-256 (hex) → the document's text.
        self.registered: BoundedCache[str, str] = BoundedCache(
            registered_budget, MAX_REGISTERED_CHARACTERS + REGISTRATION_BYTES
        )
        # Trusted documents, parsed at start and kept for the process's life.
        self.pinned: dict[str, Prepared] = {}
        self.parsed = 0  # documents parsed (tests read it)

    def prepare(self, query: str) -> Prepared:
        """The document of `query`: the request's own if prepared already, a kept one, or parsed
        and validated now (not kept: see `keep`)."""
        current = _current.get()
        if current is not None and current.query == query:
            return current
        pinned = self.pinned.get(query)
        if pinned is not None:
            return pinned
        kept = self.kept.get(query)
        if kept is not None:
            return kept
        self.parsed += 1
        try:
            document = parse(query, max_tokens=self.max_tokens)
        except GraphQLError as error:
            return Prepared(query, None, [error])
        return Prepared(query, document, validate_document(self.schema, document, self.rules))

    def keep(self, prepared: Prepared) -> None:
        """Keep a valid document for later requests, and register the hash its request sent
        with it: its request has signed in."""
        if not prepared.valid:
            return
        if prepared.query not in self.kept and prepared.query not in self.pinned:
            self.kept.put(prepared.query, prepared, len(prepared.query) * BYTES_PER_CHARACTER)
        sha256 = _registering.get()
        if sha256 is not None and sha256 not in self.registered:
            self.registered.put(sha256, prepared.query, len(prepared.query) + REGISTRATION_BYTES)

    def pin(self, prepared: Prepared) -> None:
        """Keep a valid document for the process's life (a trusted document)."""
        assert prepared.valid
        self.pinned[prepared.query] = prepared
        self.kept.pop(prepared.query)

    @staticmethod
    def registering(sha256: str | None) -> Any:
        """Register `sha256` for the request's document if it is kept (returns a reset token)."""
        return _registering.set(sha256)

    @staticmethod
    def registered_done(token: Any) -> None:
        _registering.reset(token)

    def cost(
        self, prepared: Prepared, operation_name: str | None, variables: dict[str, Any] | None
    ) -> int:
        """The request's node estimate (schema/cost.py): the HTTP layer's, once per request,
        kept on the document for operations whose cost no variable changes."""
        known = _cost.get()
        if known is not None and _current.get() is prepared:
            return known
        if prepared.document is None or prepared.errors:
            return 0
        kept = prepared.costs.get(operation_name)
        if kept is not None:
            return kept
        found = self.estimate(prepared.document, operation_name, variables)
        operations = [
            d for d in prepared.document.definitions if isinstance(d, OperationDefinitionNode)
        ]
        if operation_name in prepared.names() and not any(
            o.variable_definitions
            for o in operations
            if operation_name is None or (o.name is not None and o.name.value == operation_name)
        ):
            prepared.costs[operation_name] = found
        return found

    @staticmethod
    def use(prepared: Prepared | None, cost: int | None = None) -> Any:
        """Hand `prepared` and its request's cost to the executor answering this request
        (returns a reset token)."""
        return _current.set(prepared), _cost.set(cost)

    @staticmethod
    def done(token: Any) -> None:
        current, cost = token
        _cost.reset(cost)
        _current.reset(current)

"""Operation-wide behaviour: authentication gate, transaction, limits, error shaping."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    FieldNode,
    GraphQLError,
    Node,
    OperationDefinitionNode,
    StringValueNode,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from resolvers.errors import (
    CommitFailed,
    InvalidInput,
    OperationError,
    Unauthenticated,
    Unavailable,
)
from schema.context import RequestContext
from schema.introspection import CacheKey, IntrospectionCache, refusal

log = logging.getLogger("caseload.graphql")


@dataclass(frozen=True)
class QueryLimits:
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 4000
    cache_size: int = 256
    anonymous_introspection: bool = False


def limit_rules(limits: QueryLimits) -> list[type[ASTValidationRule]]:
    """Build the limit rules once per schema.

    The validation cache keys on the rule classes; Strawberry's own limiter extensions
    build a new class per request, so the cache would never hit (Strawberry #4635).
    """
    return [
        depth_validator(limits.max_depth, None, None),
        alias_validator(limits.max_aliases),
    ]


def is_introspection(ctx_document: object, operation_name: str | None) -> bool:
    """Whether every root field of the operation is an introspection field."""
    definitions = getattr(ctx_document, "definitions", [])
    operations = [d for d in definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return False
    selections = operations[0].selection_set.selections
    return all(isinstance(s, FieldNode) and s.name.value.startswith("__") for s in selections)


class Operation(SchemaExtension):
    """One transaction per operation, committed only when a mutation ran without errors."""

    def __init__(self, introspection: IntrospectionCache | None = None) -> None:
        self.introspection = introspection  # None: anonymous introspection is refused

    def _ctx(self) -> RequestContext:
        ctx = self.execution_context.context
        assert isinstance(ctx, RequestContext)
        return ctx

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [shape_error(e, debug=self._ctx().debug) for e in result.errors]

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self._ctx()
        ec = self.execution_context
        mutation = ec.operation_type == OperationType.MUTATION
        ctx.db.write_intent = mutation
        if ctx.sign_in is not None and ctx.principal is None:
            await ctx.sign_in(ctx)  # the operation's first statement, in its transaction
        if ctx.principal is None:
            key = anonymous_introspection(ctx, ec, self.introspection)
            try:
                yield
                if key is not None and isinstance(ec.result, GraphQLExecutionResult):
                    assert self.introspection is not None
                    self.introspection.put(key, ec.result)
            finally:
                await quietly(ctx.db.rollback())
                await quietly(ctx.db.close())
            return
        if has_nul(ec):
            error = InvalidInput("Text may not contain the NUL character (U+0000).")
            ec.result = GraphQLExecutionResult(
                data=None, errors=[GraphQLError(error.message, original_error=error)]
            )
            yield
            await quietly(ctx.db.rollback())
            await quietly(ctx.db.close())
            return
        try:
            yield
            result = ec.result
            if mutation and isinstance(result, GraphQLExecutionResult) and not result.errors:
                await commit(ctx, result)
            else:
                await quietly(ctx.db.rollback())
        finally:
            await quietly(ctx.db.close())


async def commit(ctx: RequestContext, result: GraphQLExecutionResult) -> None:
    """Commit; if the database refuses, the answer says so (never with the driver's words)."""
    try:
        await ctx.db.commit()
    except Exception as exc:
        log.error("commit failed", exc_info=exc)
        await quietly(ctx.db.rollback())
        failure = CommitFailed("The change could not be saved; nothing was changed. Try again.")
        result.data = None
        result.errors = [GraphQLError(failure.message, original_error=failure)]


async def quietly(step: Awaitable[None]) -> None:
    """Finish a transaction step whose failure (a dead connection) must not hide the answer."""
    try:
        await step
    except Exception as exc:
        log.warning("ending the transaction failed", exc_info=exc)


def has_nul(ec: ExecutionContext) -> bool:
    """Whether any text of the request holds U+0000 (PostgreSQL cannot store it)."""
    return document_has_nul(ec.query, ec.graphql_document) or _nul_in(ec.variables)


def document_has_nul(query: str | None, document: Node | None) -> bool:
    if "\x00" in (query or ""):
        return True
    if "\\u" not in (query or "") or document is None:
        return False  # without an escape, the document's strings are as the text shows
    return any("\x00" in value for value in _string_literals(document))


def variables_have_nul(variables: object) -> bool:
    return _nul_in(variables)


def _nul_in(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_nul_in(k) or _nul_in(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_nul_in(v) for v in value)
    return False


def _string_literals(node: object) -> Iterator[str]:
    if isinstance(node, StringValueNode):
        yield node.value
    elif isinstance(node, Node):
        for key in node.keys:
            child = getattr(node, key, None)
            for item in child if isinstance(child, tuple | list) else (child,):
                yield from _string_literals(item)


def anonymous_introspection(
    ctx: RequestContext, ec: ExecutionContext, cache: IntrospectionCache | None
) -> CacheKey | None:
    """Without credentials only introspection runs, and only when enabled.

    Sets the refusal or the cached answer as the result; otherwise returns the key under
    which to keep the answer once it has run.
    """
    document = ec.graphql_document
    message = ctx.auth_error or "Sign in first: send an Authorization header."
    if document is not None and is_introspection(document, ec.operation_name):
        if cache is None:
            message = ctx.auth_error or "Sign in first: introspection needs credentials here."
        else:
            message = refusal(document) or ""
    if message:
        error = Unauthenticated(message)
        ec.result = GraphQLExecutionResult(
            data=None, errors=[GraphQLError(error.message, original_error=error)]
        )
        return None
    assert cache is not None
    key = cache.key(ec.query, ec.operation_name, ec.variables)
    ec.result = cache.get(key)
    return key if ec.result is None else None


def _cause(error: GraphQLError) -> BaseException | None:
    """The exception behind an error, through GraphQL's wrappings (a variable's coercion)."""
    cause: BaseException | None = error.original_error
    while isinstance(cause, GraphQLError) and cause.original_error is not None:
        cause = cause.original_error
    return cause


def _coded(
    error: GraphQLError, code: str, message: str | None = None, **more: object
) -> GraphQLError:
    return GraphQLError(
        message or error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={**(error.extensions or {}), "code": code, **more},
    )


def shape_error(error: GraphQLError, *, debug: bool) -> GraphQLError:
    """Every error carries a code; expected failures keep theirs, the unexpected are masked."""
    original = _cause(error)
    if original is None or isinstance(original, GraphQLError):
        if error.extensions and "code" in error.extensions:
            return error
        # syntax and validation errors: the client's to read
        return _coded(error, "GRAPHQL_VALIDATION_FAILED")
    if isinstance(original, OperationError):
        message = original.message if error.original_error is original else error.message
        return _coded(error, original.code, message, **original.extensions)
    if isinstance(original, DBAPIError) and (
        isinstance(original, OperationalError | InterfaceError) or original.connection_invalidated
    ):
        # A lost connection, or a database too busy: nothing was changed, the client may retry.
        unavailable = Unavailable("The database could not complete the request. Try again.")
        return _coded(error, unavailable.code, unavailable.message)
    if debug:
        return GraphQLError(
            f"{type(original).__name__}: {original}",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR"},
        )
    return GraphQLError(
        "Unexpected error.",
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": "INTERNAL_SERVER_ERROR"},
    )


def extensions(limits: QueryLimits) -> list[object]:
    rules = limit_rules(limits)
    cache = IntrospectionCache() if limits.anonymous_introspection else None
    return [
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        lambda: ParserCache(maxsize=limits.cache_size),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=limits.cache_size),
        lambda: Operation(cache),
    ]


__all__ = ["Operation", "QueryLimits", "extensions", "log", "shape_error"]

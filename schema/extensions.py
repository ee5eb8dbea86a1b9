"""Operation-wide behaviour: authentication gate, transaction, limits, error shaping.

Limits, each a setting, each refused with its own code before any resolver runs, all listed
once in schema/admission.py (which the compiled path calls too): depth and aliases as
validation rules and tokens while parsing (schema/documents.py, once per request), the node
estimate and unstorable text at execution, because variables count. Every answer carries the
estimate as `extensions.cost`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    ValidationContext,
    specified_rules,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from db.session import ConnectionLost, StatementTimedOut
from resolvers.codes import ErrorCode
from resolvers.errors import (
    CommitFailed,
    OperationError,
    Timeout,
    Unauthenticated,
    Unavailable,
)
from schema.admission import QueryLimits, admission
from schema.context import RequestContext, Retries
from schema.cost import estimate
from schema.documents import Documents, Prepared
from schema.introspection import CacheKey, IntrospectionCache, refusal

log = logging.getLogger("caseload.graphql")


MAX_DEPTH_EXCEEDED = ErrorCode.MAX_DEPTH_EXCEEDED
MAX_ALIASES_EXCEEDED = ErrorCode.MAX_ALIASES_EXCEEDED
MAX_TOKENS_EXCEEDED = ErrorCode.MAX_TOKENS_EXCEEDED
LOST = "The database connection was lost; nothing was changed. Try again."
TIMED_OUT = (
    "The request took longer than the database allows; nothing was changed. Ask for less "
    "(smaller pages, narrower filters, fewer counts)."
)


def limit_rules(limits: QueryLimits) -> list[type[ASTValidationRule]]:
    """Build the limit rules once per schema.

    The validation cache keys on the rule classes; Strawberry's own limiter extensions
    build a new class per request, so the cache would never hit (Strawberry #4635).
    """
    return [
        coded(depth_validator(limits.max_depth, None, None), MAX_DEPTH_EXCEEDED),
        coded(alias_validator(limits.max_aliases), MAX_ALIASES_EXCEEDED),
    ]


def coded(rule: type[ASTValidationRule], code: ErrorCode) -> type[ASTValidationRule]:
    """The rule, its errors carrying `extensions.code`."""

    class Coded(rule):  # type: ignore[valid-type, misc]
        def __init__(self, context: ValidationContext) -> None:
            report = context.on_error

            def with_code(error: GraphQLError) -> None:
                error.extensions = {**(error.extensions or {}), "code": code}
                report(error)

            context.on_error = with_code  # type: ignore[method-assign]
            try:
                super().__init__(context)
            finally:
                context.on_error = report  # type: ignore[method-assign]

    Coded.__name__ = Coded.__qualname__ = f"Coded{rule.__name__}"
    return Coded


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

    def __init__(
        self, limits: QueryLimits | None = None, introspection: IntrospectionCache | None = None
    ) -> None:
        self.limits = limits or QueryLimits()
        self.introspection = introspection  # None: anonymous introspection is refused
        self.cost = 0
        self.prepared: Prepared | None = None

    def _ctx(self) -> RequestContext:
        ctx = self.execution_context.context
        assert isinstance(ctx, RequestContext)
        return ctx

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        except GraphQLError as error:
            # A syntax error (the token limit's included), raised by the parser cache before
            # any result exists: shaped on its way out.
            raise shape_error(error, debug=self._ctx().debug) from error
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [shape_error(e, debug=self._ctx().debug) for e in result.errors]

    def on_parse(self) -> Iterator[None]:
        """The request's document as the HTTP layer prepared it (parsed once per request)."""
        ec = self.execution_context
        documents: Documents = ec.schema.documents  # type: ignore[attr-defined]
        self.prepared = documents.prepare(ec.query or "")
        if self.prepared.document is None:
            raise self.prepared.errors[0]  # the syntax error, shaped in on_operation
        ec.graphql_document = self.prepared.document
        yield

    def on_validate(self) -> Iterator[None]:
        assert self.prepared is not None
        self.execution_context.pre_execution_errors = list(self.prepared.errors)
        yield

    def get_results(self) -> dict[str, Any]:
        """Only values fixed by the document and variables: a retry answers the same."""
        return {"cost": self.cost}

    def _estimate(self, ec: ExecutionContext) -> int:
        if self.prepared is None:
            return 0
        documents: Documents = ec.schema.documents  # type: ignore[attr-defined]
        return documents.cost(self.prepared, ec.operation_name, ec.variables)

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self._ctx()
        ec = self.execution_context
        self.cost = self._estimate(ec)
        mutation = ec.operation_type == OperationType.MUTATION
        ctx.db.write_intent = mutation
        if ctx.sign_in is not None and ctx.principal is None:
            try:
                await ctx.sign_in(ctx)  # the operation's first statement, in its transaction
            except Exception as exc:
                # The database could not be asked (out of reach, or found dead twice): answered
                # with a code, like any error, never in the driver's words.
                refuse(ec, exc)
                timed_out(ctx, ec)
                yield
                await quietly(ctx.db.rollback())
                await quietly(ctx.db.close())
                return
        if ctx.principal is not None and self.prepared is not None:
            # Signed in: the document may be kept for this caller's next requests (a refusal
            # below included: its next one is then refused without parsing it again).
            ec.schema.documents.keep(self.prepared)  # type: ignore[attr-defined]
        if ctx.principal is not None and self.prepared is not None:
            # Fixed by the document and variables alone: refused before anything runs for it.
            refused = admission(self.prepared, ec.variables, self.cost, self.limits)
            if refused is not None:
                refuse(ec, refused)
                yield
                await quietly(ctx.db.rollback())
                await quietly(ctx.db.close())
                return
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
        retries = ctx.retries if mutation else None
        perform = True
        try:
            if retries is not None:
                perform = await claim(ctx, ec, retries)
            yield
            result = ec.result
            if timed_out(ctx, ec):
                await quietly(ctx.db.rollback())
            elif ctx.db.lost is not None and isinstance(result, GraphQLExecutionResult):
                # The transaction is gone, whatever the fields answered: one error for the whole.
                lost = Unavailable(LOST)
                result.data = None
                result.errors = [GraphQLError(lost.message, original_error=lost)]
                await quietly(ctx.db.rollback())
            elif (
                perform
                and mutation
                and isinstance(result, GraphQLExecutionResult)
                and not result.errors
            ):
                await commit(ctx, result, retries, self.cost)
            else:
                await quietly(ctx.db.rollback())
        finally:
            await quietly(ctx.db.close())


def timed_out(ctx: RequestContext, ec: ExecutionContext) -> bool:
    """A statement ran out of time: the transaction is gone, whatever the fields answered —
    one TIMEOUT for the whole operation, and HTTP 504 (there is no data)."""
    if ctx.db.timed_out is None:
        return False
    timeout = Timeout(TIMED_OUT)
    errors = [GraphQLError(timeout.message, original_error=timeout)]
    if isinstance(ec.result, GraphQLExecutionResult):  # the executor returns this very object
        ec.result.data, ec.result.errors = None, errors
    else:
        ec.result = GraphQLExecutionResult(data=None, errors=errors)
    if ctx.response is not None:
        ctx.response.status_code = 504
    return True


def refuse(ec: ExecutionContext, error: Exception) -> None:
    """Answer with a top-level error instead of executing."""
    message = error.message if isinstance(error, OperationError) else str(error)
    ec.result = GraphQLExecutionResult(
        data=None, errors=[GraphQLError(message, original_error=error)]
    )


async def claim(ctx: RequestContext, ec: ExecutionContext, retries: Retries) -> bool:
    """Claim the request's idempotency key; False (the answer already set) when the operation
    is not to run: an earlier answer is sent instead, or the key is refused."""
    try:
        if await retries.claim(ctx):
            return True
    except Exception as exc:  # shaped like any other: a code, never the driver's words
        refuse(ec, exc)
        return False
    ec.result = GraphQLExecutionResult(data=None)  # not sent: the kept answer is
    return False


async def commit(
    ctx: RequestContext, result: GraphQLExecutionResult, retries: Retries | None, cost: int
) -> None:
    """Commit (with the answer, for a retryable request); if the database refuses, the answer
    says so (never with the driver's words)."""
    try:
        if retries is not None:
            await retries.keep(ctx, {"data": result.data, "extensions": {"cost": cost}})
        await ctx.db.commit()
    except Exception as exc:
        if retries is not None:
            retries.forget()
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
    error: GraphQLError, code: ErrorCode, message: str | None = None, **more: object
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
        if isinstance(error, GraphQLSyntaxError) and error.message.endswith(
            "tokens. Parsing aborted."
        ):
            return _coded(error, MAX_TOKENS_EXCEEDED)
        # syntax and validation errors: the client's to read
        return _coded(error, ErrorCode.GRAPHQL_VALIDATION_FAILED)
    if isinstance(original, OperationError):
        message = original.message if error.original_error is original else error.message
        return _coded(error, original.code, message, **original.extensions)
    if isinstance(original, StatementTimedOut):
        return _coded(error, Timeout.code, TIMED_OUT)
    if isinstance(original, ConnectionLost | ConnectionError | PoolTimeout) or (
        isinstance(original, DBAPIError)
        and (
            isinstance(original, OperationalError | InterfaceError)
            or original.connection_invalidated
        )
    ):
        # A lost or refused connection, no pooled connection free in time, or a database too
        # busy: nothing was changed, the client may retry.
        unavailable = Unavailable("The database could not complete the request. Try again.")
        return _coded(error, unavailable.code, unavailable.message)
    if debug:
        return GraphQLError(
            f"{type(original).__name__}: {original}",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": ErrorCode.INTERNAL_SERVER_ERROR},
        )
    return GraphQLError(
        "Unexpected error.",
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": ErrorCode.INTERNAL_SERVER_ERROR},
    )


def extensions(limits: QueryLimits) -> list[object]:
    """Parsing, validation (with the limit rules) and their caches are schema/documents.py's,
    read by `Operation`; the schema holds its `Documents` (schema/__init__.py)."""
    cache = (
        IntrospectionCache(limits.introspection_cache_bytes)
        if limits.anonymous_introspection
        else None
    )
    return [lambda: Operation(limits, cache)]


def documents(schema: GraphQLSchema, limits: QueryLimits) -> Documents:
    """The schema's documents, validated by GraphQL's rules and the limit rules, and their
    cost estimate."""
    rules = [*specified_rules, *limit_rules(limits)]

    def cost(document: DocumentNode, name: str | None, variables: dict[str, Any] | None) -> int:
        return estimate(
            schema,
            document,
            name,
            variables,
            page_size=limits.page_size,
            list_bound=limits.list_bound,
            count_cost=limits.count_cost,
        )

    return Documents(
        schema,
        rules,
        limits.max_tokens,
        limits.document_cache_bytes,
        cost,
        limits.persisted_query_cache_bytes,
    )


__all__ = [
    "MAX_ALIASES_EXCEEDED",
    "MAX_DEPTH_EXCEEDED",
    "MAX_TOKENS_EXCEEDED",
    "Operation",
    "QueryLimits",
    "extensions",
    "log",
    "shape_error",
]

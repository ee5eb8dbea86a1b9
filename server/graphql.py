"""The GraphQL endpoint: bodies checked before authentication; one RequestContext per request.

A mutation request with `Idempotency-Key: <key>` is performed at most once per principal and
key (db/idempotency.py): its answer is kept, in the transaction of its effects, for
`CASELOAD_IDEMPOTENCY_TTL_SECONDS`, and a retry with the same key and body is answered with
those bytes; another body with the same key is refused (IDEMPOTENCY_KEY_REUSED). An operation
that answers a top-level error changed nothing and keeps nothing: its retry runs again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult

from db import idempotency
from db.base import utcnow
from db.session import Database
from policies.principal import Principal
from resolvers.context import Limits
from resolvers.errors import IdempotencyKeyReused, Unauthenticated
from schema.context import RequestContext
from schema.documents import Documents
from server.auth import AuthFailure
from server.compiled import CompiledReads
from server.http import (
    HTTP_CODES,
    ClientGone,
    GraphQLBody,
    Refused,
    error_response,
    read_graphql_body,
)
from server.logs import current_record, describe
from server.services import Services

# The body read and checked in __call__, handed to parse_http_body within the same request.
_body: ContextVar[GraphQLBody | None] = ContextVar("caseload_graphql_body", default=None)
_FIRST_OPERATION = re.compile(r"^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)")

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
_SANE_KEY = re.compile(r"[\x21-\x7e]{1,200}")


def principal_key(principal: Principal) -> str:
    """Whose idempotency keys these are: an API key, or a person acting in an organisation."""
    if principal.api_key_id is not None:
        return f"apikey:{principal.api_key_id}"
    organisation = "-" if principal.organisation_id is None else principal.organisation_id
    return f"user:{principal.user_id}@{organisation}"


def fingerprint(body: GraphQLBody) -> str:
    """The request body, as far as it decides what the operation does."""
    canonical = json.dumps(
        {
            "query": body.query,
            "variables": body.variables or {},
            "operationName": body.operation_name,
            "extensions": body.extensions or {},
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Retry:
    """One request's Idempotency-Key, as the operation claims it (schema.context.Retries)."""

    key: str
    fingerprint: str
    ttl: timedelta
    claimed: idempotency.Claimed | None = None
    answer: str | None = None  # the body to send: kept by this request, or an earlier one's
    replayed: bool = False

    async def claim(self, ctx: RequestContext) -> bool:
        found = await idempotency.claim(
            ctx.db,
            principal=principal_key(ctx.me),
            key=self.key,
            fingerprint=self.fingerprint,
            now=ctx.now,
            ttl=self.ttl,
        )
        if isinstance(found, idempotency.Reused):
            raise IdempotencyKeyReused(
                f"This {IDEMPOTENCY_KEY_HEADER} was used for another request; "
                "send a new key with a new request."
            )
        if isinstance(found, idempotency.Kept):
            self.answer, self.replayed = found.answer, True
            return False
        self.claimed = found
        return True

    async def keep(self, ctx: RequestContext, answer: dict[str, Any]) -> None:
        assert self.claimed is not None
        text = json.dumps(answer)
        await idempotency.keep(ctx.db, self.claimed, text)
        self.answer = text

    def forget(self) -> None:
        self.answer = None


def retry_of(request: Request, body: GraphQLBody, ttl: timedelta) -> Retry | None:
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is None:
        return None
    if not _SANE_KEY.fullmatch(key):
        raise Refused(
            400,
            "BAD_REQUEST",
            f"{IDEMPOTENCY_KEY_HEADER} must be 1 to 200 visible ASCII characters, e.g. a UUID.",
        )
    return Retry(key, fingerprint(body), ttl)


# The request's Idempotency-Key, read in __call__ and claimed by the operation.
_retry: ContextVar[Retry | None] = ContextVar("caseload_retry", default=None)


class CaseloadGraphQL(GraphQL[RequestContext, None]):
    def __init__(
        self, services: Services, render_page: Callable[[Request], Response] | None = None
    ) -> None:
        super().__init__(
            services.schema,
            graphql_ide="graphiql" if render_page is not None else None,
            allow_queries_via_get=True,
        )
        self.services = services
        self.render_page = render_page
        settings = services.settings
        self.limits = Limits(
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
            max_bulk_items=settings.max_bulk_items,
            max_search_length=settings.max_search_length,
        )
        self.documents: Documents = services.schema.documents
        self.compiled = CompiledReads(services, self.limits) if settings.compiled_reads else None

    def encode_json(self, data: object) -> bytes:
        # orjson, for speed; the compiled path answers through it too, byte for byte alike.
        return orjson.dumps(data)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response: Response
        prepared = None
        try:
            retry = None
            if request.method == "POST":
                # Before authentication and before Strawberry: nothing runs on a refused body.
                settings = self.services.settings
                body = await read_graphql_body(request, settings.max_body_bytes)
                _record_operation(body.operation_name, body.query)
                retry = retry_of(request, body, timedelta(seconds=settings.idempotency_ttl_seconds))
                now = utcnow()
                credentials = self.services.authenticator.read(
                    request.headers.get("authorization"), now
                )
                anonymous = credentials is None or isinstance(credentials, AuthFailure)
                if anonymous and not self.services.query_limits.anonymous_introspection:
                    # Nothing an anonymous caller sends is parsed here: it could only be refused.
                    assert credentials is None or isinstance(credentials, AuthFailure)
                    _record_codes([Unauthenticated.code])
                    response = unauthenticated(credentials, body.query)
                    await response(scope, receive, send)
                    return
                # Parsed and validated once, for whichever executor answers.
                prepared = self.documents.prepare(body.query)
                if (
                    self.compiled is not None
                    and retry is None
                    and credentials is not None
                    and not isinstance(credentials, AuthFailure)
                ):
                    answered = await self.compiled.answer(body, prepared, credentials, now)
                    if answered is not None:
                        response = Response(answered, media_type="application/json")
                        await response(scope, receive, send)
                        return
            else:
                body = None
            token, retry_token = _body.set(body), _retry.set(retry)
            prepared_token = self.documents.use(prepared)
            try:
                response = await self.run(request)
            finally:
                self.documents.done(prepared_token)
                _body.reset(token)
                _retry.reset(retry_token)
            if retry is not None and retry.answer is not None:
                # The kept answer, byte for byte: the first request sends it too.
                response = Response(retry.answer, status_code=200, media_type="application/json")
                if retry.replayed:
                    _record_outcome("replayed")
        except ClientGone:
            return
        except Refused as refused:
            _record_codes([refused.code])
            response = refused.response()
        except HTTPException as exc:
            code = HTTP_CODES.get(exc.status_code, "BAD_REQUEST")
            _record_codes([code])
            headers = {"Allow": "GET, POST"} if exc.status_code == 405 else None
            response = error_response(exc.status_code, code, exc.reason, headers)
        await response(scope, receive, send)

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        body = _body.get()
        if body is not None:
            return GraphQLRequestData(
                query=body.query,
                variables=body.variables,
                operation_name=body.operation_name,
                extensions=body.extensions,
                protocol="http",
            )
        data = await super().parse_http_body(request)  # GET: the query string
        if isinstance(data, GraphQLRequestData):
            _record_operation(data.operation_name, data.query)
        return data

    async def render_graphql_ide(self, request: Request) -> Response:
        assert self.render_page is not None
        return self.render_page(request)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if result.errors:
            _record_codes(
                [str((e.extensions or {}).get("code") or "GRAPHQL_ERROR") for e in result.errors]
            )
        return await super().process_result(request, result)

    async def get_context(self, request: Request, response: Response) -> RequestContext:  # type: ignore[override]
        services = self.services
        now = utcnow()
        credentials = services.authenticator.read(request.headers.get("authorization"), now)
        said = request.headers.get("x-caseload-client") or request.headers.get("user-agent")

        async def sign_in(ctx: RequestContext) -> None:
            if credentials is None or isinstance(credentials, AuthFailure):
                return
            stmt, params = services.authenticator.statement(credentials)
            rows = (await ctx.db.execute(stmt, params)).all()
            found = services.authenticator.principal(credentials, rows, ctx.now)
            if isinstance(found, AuthFailure):
                ctx.auth_error = found.message
                return
            signed_in(ctx, found, services)
            await services.authenticator.used(found, rows, ctx.now, ctx.db)

        return RequestContext(
            db=Database(services.maker),
            now=now,
            principal=None,
            policy=None,
            limits=self.limits,
            user_agent=(said or "")[:200] or None,
            request=request,
            response=response,
            auth_error=credentials.message if isinstance(credentials, AuthFailure) else None,
            debug=services.settings.debug,
            sign_in=sign_in,
            retries=_retry.get(),
        )


def unauthenticated(credentials: AuthFailure | None, query: str) -> Response:
    """A request without usable credentials, refused before its document is read, in the
    shape the executor gives UNAUTHENTICATED (nothing was estimated or run: cost 0)."""
    if credentials is not None:
        message = credentials.message
    elif "__schema" in query or "__type" in query:
        message = "Sign in first: introspection needs credentials here."
    else:
        message = "Sign in first: send an Authorization header."
    body = {
        "data": None,
        "errors": [{"message": message, "extensions": {"code": Unauthenticated.code}}],
        "extensions": {"cost": 0},
    }
    return Response(orjson.dumps(body), media_type="application/json")


def signed_in(ctx: RequestContext, principal: Principal, services: Services) -> None:
    ctx.principal = principal
    ctx.policy = services.policies.for_principal(principal, ctx.now)
    ctx.client = principal.client
    record = current_record()
    if record is not None:
        record.principal = describe(principal)


def _record_operation(name: str | None, query: str | None) -> None:
    record = current_record()
    if record is None:
        return
    if name is None and query is not None:
        match = _FIRST_OPERATION.match(query)
        name = match[1] if match else None
    record.operation = name[:100] if name else None


def _record_outcome(outcome: str) -> None:
    record = current_record()
    if record is not None:
        record.outcome = outcome


def _record_codes(codes: list[str]) -> None:
    record = current_record()
    if record is not None:
        record.codes = sorted(set(codes))

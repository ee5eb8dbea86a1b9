"""The GraphQL endpoint: bodies checked before authentication; one RequestContext per request.

A mutation request with `Idempotency-Key: <key>` is performed at most once per principal and
key (db/idempotency.py): its answer is kept, in the transaction of its effects, for
`CASELOAD_IDEMPOTENCY_TTL_SECONDS`, and a retry with the same key and body is answered with
those bytes; another body with the same key is refused (IDEMPOTENCY_KEY_REUSED). An operation
that answers a top-level error changed nothing and keeps nothing: its retry runs again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import OperationDefinitionNode, OperationType
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult

from db import idempotency
from db.base import utcnow
from db.session import Database
from policies.principal import Principal
from resolvers.codes import ErrorCode
from resolvers.compiled import Budget
from resolvers.context import Limits
from resolvers.errors import IdempotencyKeyReused, Unauthenticated
from schema.context import RequestContext
from schema.documents import Documents, Prepared
from server.auth import ORGANISATION_HEADER, AuthFailure, Credentials
from server.compiled import CompiledReads
from server.fairuse import RATE_LIMITED, FairUse, Verdict, budget_key, crowded
from server.fairuse import headers as fair_use_headers
from server.fairuse import points as fair_use_points
from server.fairuse import refusal as fair_use_refusal
from server.http import (
    GRAPHQL_RESPONSE,
    GRAPHQL_RESPONSE_CONTENT_TYPE,
    HTTP_CODES,
    JSON,
    ClientGone,
    GraphQLBody,
    Refused,
    SentBody,
    challenge,
    error_response,
    graphql_status,
    negotiate,
    query_string_body,
    read_graphql_body,
)
from server.live import Connection, Hub, LiveOperation, Refusal, TextFrames, TransportWS, check
from server.logs import current_record, describe
from server.persisted import load_trusted, resolve
from server.services import Services

log = logging.getLogger("caseload.graphql")

# The body read and checked in __call__, handed to parse_http_body within the same request.
_body: ContextVar[GraphQLBody | None] = ContextVar("caseload_graphql_body", default=None)
# The media type the request's answer is in (server.http.negotiate), for create_response.
_media: ContextVar[str] = ContextVar("caseload_media", default=JSON)
# A GET whose query string names a document (as text, by id, or by its hash).
GET_BODY = frozenset({"query", "documentId", "extensions"})
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
    """The request body, as far as it decides what the operation does (a document named by its
    hash is that document)."""
    extensions = {k: v for k, v in (body.extensions or {}).items() if k != "persistedQuery"}
    canonical = json.dumps(
        {
            "query": body.query,
            "variables": body.variables or {},
            "operationName": body.operation_name,
            "extensions": extensions,
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
            ErrorCode.BAD_REQUEST,
            f"{IDEMPOTENCY_KEY_HEADER} must be 1 to 200 visible ASCII characters, e.g. a UUID.",
        )
    return Retry(key, fingerprint(body), ttl)


# The request's Idempotency-Key, read in __call__ and claimed by the operation.
_retry: ContextVar[Retry | None] = ContextVar("caseload_retry", default=None)


class CaseloadGraphQL(GraphQL[RequestContext, None]):
    graphql_transport_ws_handler_class = TransportWS
    websocket_adapter_class = TextFrames

    def __init__(
        self, services: Services, render_page: Callable[[Request], Response] | None = None
    ) -> None:
        settings = services.settings
        super().__init__(
            services.schema,
            graphql_ide="graphiql" if render_page is not None else None,
            allow_queries_via_get=True,
            # Subscriptions: graphql-transport-ws only (server/live.py signs it in).
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(
                seconds=settings.subscription_init_timeout_seconds
            ),
            max_subscriptions_per_connection=settings.subscriptions_per_connection,
            allowed_origins=settings.origins,
        )
        self.services = services
        self.render_page = render_page
        self.limits = Limits(
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
            max_bulk_items=settings.max_bulk_items,
            max_search_length=settings.max_search_length,
            changes_retention_days=settings.changes_retention_days,
            allow_http_issuers=settings.oidc_allow_http,
            webhook_allow_http=settings.webhook_allow_http,
            webhook_allow_private=settings.webhook_allow_private,
        )
        self.documents: Documents = services.schema.documents
        self.compiled = CompiledReads(services, self.limits) if settings.compiled_reads else None
        self.trusted = (
            load_trusted(settings.trusted_documents, self.documents)
            if settings.trusted_documents is not None
            else None
        )
        if self.trusted is not None and self.compiled is not None:
            # Their plans are made now, not by their first requests.
            for prepared in self.documents.pinned.values():
                for name in prepared.names():
                    if prepared.reads(name):
                        self.compiled.operation(prepared, name)
        self.hub = Hub(services, self.limits)

    def encode_json(self, data: object) -> bytes:
        # orjson, for speed; the compiled path answers through it too, byte for byte alike.
        return orjson.dumps(data)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.run(WebSocket(scope, receive=receive, send=send))
            return
        request = Request(scope, receive)
        response: Response | None
        media = negotiate(request.headers.get("accept"))
        media_token = _media.set(media)
        try:
            response = await self.respond_within_lanes(request, receive)
        finally:
            _media.reset(media_token)
        if response is None:
            return  # the client left
        finish(response, media, request.headers.get("authorization"))
        if request.method == "GET":
            response = validated(response, request.headers.get("if-none-match"))
        await response(scope, receive, send)

    async def respond_within_lanes(self, request: Request, receive: Receive) -> Response | None:
        """The response, charged to the caller's budget (None when the client has left)."""
        response: Response | None
        # Whose budget the request spends, from what its credentials say (no I/O).
        now = utcnow()
        credentials = await self.services.authenticator.read(
            request.headers.get("authorization"), now, request.headers.get(ORGANISATION_HEADER)
        )
        spending = Spending(
            self.services.fair_use,
            budget_key(credentials, request.client.host if request.client else None),
        )
        lanes = self.services.lanes
        if not await lanes.enter(spending.key):
            # The credential already has its fill of requests running and waiting.
            _record_codes([RATE_LIMITED])
            return crowded(lanes)
        try:
            response = await self.respond(request, receive, credentials, utcnow(), spending)
        finally:
            lanes.leave(spending.key)
        if response is None:
            return None
        if spending.verdict is None:
            await spending.charge(1)  # a refused body is an answer too
        assert spending.verdict is not None
        response.headers.update(fair_use_headers(spending.verdict))
        return response

    async def respond(
        self,
        request: Request,
        receive: Receive,
        credentials: Credentials | AuthFailure | None,
        now: datetime,
        spending: Spending,
    ) -> Response | None:
        """The response to send; None when the client has left."""
        try:
            sent = await self.body_of(request)
            if sent is None:
                return await self.answer(request, None, None, None)  # GraphiQL, or refused
            body, registering = resolve(sent, self.documents, self.trusted)
            _record_operation(body.operation_name, body.query)
            # The body is read: a client that leaves now cancels what runs for it.
            token = self.documents.registering(registering)
            try:
                work = self.admit(request, body, credentials, now, spending)
                return await until_gone(receive, work)
            finally:
                self.documents.registered_done(token)
        except ClientGone:
            return None
        except Refused as refused:
            _record_codes([refused.code])
            return refused.response()
        except HTTPException as exc:
            code = HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
            _record_codes([code])
            headers = {"Allow": "GET, POST"} if exc.status_code == 405 else None
            return error_response(exc.status_code, code, exc.reason, headers)

    async def body_of(self, request: Request) -> SentBody | None:
        """The request's GraphQL body: a POST's, checked before anything else runs, or a GET's
        query string (None without a `query`, `documentId` or `extensions`: GraphiQL, or
        Strawberry's refusal)."""
        if request.method == "POST":
            return await read_graphql_body(request, self.services.settings.max_body_bytes)
        if request.method != "GET" or not GET_BODY.intersection(request.query_params.keys()):
            return None
        return query_string_body(request)

    async def admit(
        self,
        request: Request,
        body: GraphQLBody,
        credentials: Credentials | AuthFailure | None,
        now: datetime,
        spending: Spending,
    ) -> Response:
        """Everything a request does before and while it runs: parse once, plan within the
        budget, estimate, charge the caller's budget, then answer by one of the two paths."""
        started = time.thread_time()
        settings = self.services.settings
        retry = (
            retry_of(request, body, timedelta(seconds=settings.idempotency_ttl_seconds))
            if request.method == "POST"
            else None
        )
        anonymous = credentials is None or isinstance(credentials, AuthFailure)
        if anonymous and not self.services.query_limits.anonymous_introspection:
            # Nothing an anonymous caller sends is parsed here: it could only be refused.
            assert credentials is None or isinstance(credentials, AuthFailure)
            if not await spending.charge(1):
                return spending.refusal()
            _record_codes([Unauthenticated.code])
            return unauthenticated(credentials, body.query, _media.get())
        kept = body.query in self.documents.kept or body.query in self.documents.pinned
        # Parsed and validated once, for whichever executor answers.
        prepared = self.documents.prepare(body.query)
        if prepared.valid:
            refuse_unnamed(request, body, prepared)
        parsing_ms = (time.thread_time() - started) * 1000
        cold = self.services.cold_lanes
        if kept or not prepared.reads(body.operation_name):
            return await self.run_admitted(
                request, body, credentials, now, spending, retry, prepared, parsing_ms
            )
        # A query not seen before is planned and, often, run by the standard executor: the
        # costliest work a request can ask for. One credential's such queries run one at a
        # time, so that a stream of never-seen documents takes one turn of the event loop.
        if not await cold.enter(spending.key):
            _record_codes([RATE_LIMITED])
            return crowded(cold)
        try:
            return await self.run_admitted(
                request, body, credentials, now, spending, retry, prepared, parsing_ms
            )
        finally:
            cold.leave(spending.key)

    async def run_admitted(
        self,
        request: Request,
        body: GraphQLBody,
        credentials: Credentials | AuthFailure | None,
        now: datetime,
        spending: Spending,
        retry: Retry | None,
        prepared: Prepared,
        parsing_ms: float,
    ) -> Response:
        settings = self.services.settings
        started = time.thread_time()
        cost = self.documents.cost(prepared, body.operation_name, body.variables)
        budget = Budget(settings.plan_budget_ms)
        planned = None
        if (
            self.compiled is not None
            and retry is None
            and credentials is not None
            and not isinstance(credentials, AuthFailure)
        ):
            planned = self.compiled.plan(body, prepared, cost, budget)
        planning_ms = parsing_ms + (time.thread_time() - started) * 1000
        # Charged before it runs: its cost, and the CPU it took to get here.
        if not await spending.charge(fair_use_points(cost, planning_ms)):
            return spending.refusal()
        planned_ms = budget.spent_ms
        try:
            if planned is not None:
                assert credentials is not None and not isinstance(credentials, AuthFailure)
                answered = await self.compiled.answer(  # type: ignore[union-attr]
                    body, prepared, planned, credentials, now, cost, budget
                )
                if answered is not None:
                    return Response(
                        answered.body, status_code=answered.status, media_type="application/json"
                    )
            return await self.answer(request, body, retry, prepared, cost)
        finally:
            # Planning this caller's statement, done while answering, counts too.
            later = budget.spent_ms - planned_ms
            if planned is not None and later >= 1:
                await spending.fee(fair_use_points(0, later))

    async def answer(
        self,
        request: Request,
        body: GraphQLBody | None,
        retry: Retry | None,
        prepared: Prepared | None,
        cost: int | None = None,
    ) -> Response:
        """The standard executor's answer (Strawberry), with what the request already did."""
        token, retry_token = _body.set(body), _retry.set(retry)
        prepared_token = self.documents.use(prepared, cost)
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
        return response

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

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET naming its document by id has no `query` either: it is run, not GraphiQL.
        return _body.get() is None and super().should_render_graphql_ide(request)

    async def render_graphql_ide(self, request: Request) -> Response:
        assert self.render_page is not None
        return self.render_page(request)

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        if isinstance(response_data, dict) and not sub_response.status_code:
            media = _media.get()
            status = graphql_status(response_data, media)
            if media == GRAPHQL_RESPONSE and status in (400, 401, 429):
                # Refused before anything ran: a request error, which has no `data`
                # (GraphQL-over-HTTP; application/json keeps `"data": null`).
                response_data.pop("data", None)
            sub_response.status_code = status
        return super().create_response(response_data, sub_response)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if result.errors:
            _record_codes(
                [str((e.extensions or {}).get("code") or "GRAPHQL_ERROR") for e in result.errors]
            )
        return await super().process_result(request, result)

    def socket_context(self, connection: Connection) -> RequestContext:
        """One websocket operation's context: signed in again, in its own transaction, with
        the websocket's credentials."""
        services = self.services

        async def sign_in(ctx: RequestContext) -> None:
            found = await check(
                services, ctx.db, connection.header, ctx.now, connection.organisation
            )
            if isinstance(found, Refusal):
                ctx.auth_error = found.reason
                await connection.close(found.code, found.reason)
                return
            signed_in(ctx, found, services)

        return RequestContext(
            db=Database(services.maker),
            now=utcnow(),
            principal=None,
            policy=None,
            limits=self.limits,
            debug=services.settings.debug,
            sign_in=sign_in,
            live=LiveOperation(self.hub, connection),
        )

    async def get_context(self, request: Request, response: Response) -> RequestContext:  # type: ignore[override]
        services = self.services
        now = utcnow()
        credentials = await services.authenticator.read(
            request.headers.get("authorization"), now, request.headers.get(ORGANISATION_HEADER)
        )
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


@dataclass
class Spending:
    """One request's charges to its caller's fair-use budget (server/fairuse.py)."""

    fair_use: FairUse
    key: str
    verdict: Verdict | None = None

    async def charge(self, points: int) -> bool:
        """Spend `points` before running; False when they do not fit (nothing spent)."""
        self.verdict = await self.fair_use.charge(self.key, points)
        return self.verdict.allowed

    async def fee(self, points: int) -> None:
        """Spend what was found to be used while running (never refused: it is done)."""
        verdict = await self.fair_use.charge(self.key, points)
        if verdict.allowed:
            self.verdict = verdict

    def refusal(self) -> Response:
        assert self.verdict is not None
        _record_codes([RATE_LIMITED])
        return fair_use_refusal(self.verdict)


async def until_gone(receive: Receive, work: Awaitable[Response]) -> Response | None:
    """`work`'s response; None when the client disconnected first. Then the work is cancelled,
    and with it a statement still running for it (asyncpg cancels it in PostgreSQL): nobody is
    waiting for the answer."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watch.cancel()
    if task.done():
        return task.result()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception as exc:
        log.warning("work cancelled for a client that left ended with an error", exc_info=exc)
    _record_outcome("client_disconnected")
    return None


# How far into an anonymous document to look for introspection, to word the refusal (only).
INTROSPECTION_HINT = 4096


def unauthenticated(credentials: AuthFailure | None, query: str, media: str) -> Response:
    """A request without usable credentials, refused before its document is read, in the
    shape the executor gives UNAUTHENTICATED (nothing was estimated or run: cost 0): HTTP 401."""
    if credentials is not None:
        message = credentials.message
    elif "__schema" in query[:INTROSPECTION_HINT] or "__type" in query[:INTROSPECTION_HINT]:
        message = "Sign in first: introspection needs credentials here."
    else:
        message = "Sign in first: send an Authorization header."
    body: dict[str, Any] = {
        "data": None,
        "errors": [{"message": message, "extensions": {"code": Unauthenticated.code}}],
        "extensions": {"cost": 0},
    }
    if media == GRAPHQL_RESPONSE:
        del body["data"]  # refused before anything ran: a request error
    return Response(orjson.dumps(body), status_code=401, media_type=JSON)


def refuse_unnamed(request: Request, body: GraphQLBody, prepared: Prepared) -> None:
    """Refuse a request whose operation cannot be told (GraphQL-over-HTTP: a request error),
    and under application/graphql-response+json a GET that would change something (405)."""
    if body.operation_name not in prepared.names():
        if body.operation_name is None:
            raise Refused(
                400,
                ErrorCode.BAD_REQUEST,
                "The document holds several operations: name the one to run in `operationName`.",
            )
        raise Refused(
            400, ErrorCode.BAD_REQUEST, f'Unknown operation named "{body.operation_name}".'
        )
    if subscribes(prepared, body.operation_name):
        raise Refused(400, ErrorCode.BAD_REQUEST, SUBSCRIBE_OVER_WEBSOCKET)
    if (
        request.method == "GET"
        and _media.get() == GRAPHQL_RESPONSE
        and not prepared.reads(body.operation_name)
    ):
        raise Refused(
            405,
            ErrorCode.METHOD_NOT_ALLOWED,
            "Only queries are answered over GET: send mutations with POST.",
            {"Allow": "POST"},
        )


SUBSCRIBE_OVER_WEBSOCKET = (
    "Subscriptions run over the websocket on /graphql (graphql-transport-ws, with "
    "Authorization in connection_init's payload), not over HTTP."
)


def subscribes(prepared: Prepared, operation_name: str | None) -> bool:
    """Whether the operation the request picks is a subscription."""
    for d in prepared.document.definitions if prepared.document is not None else ():
        if isinstance(d, OperationDefinitionNode) and (
            operation_name is None or (d.name is not None and d.name.value == operation_name)
        ):
            return d.operation is OperationType.SUBSCRIPTION
    return False


def finish(response: Response, media: str, authorization: str | None) -> None:
    """What every answer of /graphql carries: the media type asked for, and on a 401 the
    challenge that says how to authenticate."""
    response.headers.add_vary_header("Accept")
    if media != JSON and response.headers.get("content-type") == JSON:
        response.headers["content-type"] = GRAPHQL_RESPONSE_CONTENT_TYPE
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = challenge(authorization)


# What a GET's answer may be revalidated with: no shared cache keeps it (it is one caller's),
# and a browser asks again each time, sending the ETag it holds (If-None-Match).
CACHE_CONTROL = "private, no-cache"
_CACHEABLE = (JSON, GRAPHQL_RESPONSE)


def validated(response: Response, if_none_match: str | None) -> Response:
    """A GET's answer with a strong ETag (the SHA-256 of its body) and Cache-Control; 304 with
    no body when the client holds the same (RFC 9110 13.1.2: compared weakly)."""
    content_type = response.headers.get("content-type", "").split(";", 1)[0]
    if response.status_code != 200 or content_type not in _CACHEABLE:
        return response
    digest = hashlib.sha256(bytes(response.body)).digest()
    tag = '"' + base64.urlsafe_b64encode(digest).rstrip(b"=").decode() + '"'
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = CACHE_CONTROL
    if if_none_match is None or not _matches(if_none_match, tag):
        return response
    _record_outcome("not_modified")
    unchanged = Response(status_code=304)
    unchanged.raw_headers = [
        (name, value)
        for name, value in response.raw_headers
        if name not in (b"content-length", b"content-type")
    ]
    return unchanged


def _matches(if_none_match: str, tag: str) -> bool:
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False


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

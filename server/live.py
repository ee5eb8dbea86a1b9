"""Subscriptions: the change outbox followed live over graphql-transport-ws on /graphql.

Signing in. A websocket signs in once, in `connection_init` (`Authorization` in its payload, read
as the HTTP header is): without usable credentials it is closed with 4401, with those of a known
user or key that may not act (revoked, deactivated, no membership) with 4403.

One hub per process follows the outbox (resolvers/changes.py) for every subscriber of the
process. It wakes when a commit is announced — PostgreSQL's NOTIFY, sent by the committing
transaction and delivered only if it commits, on one listening connection per process; SQLite's
in-process news after commit — and at least every `subscription_sweep_seconds`. Each time it:

1. checks every subscriber's credentials again, one statement per credential, not per
   subscriber: an expired token, a revoked key or a deactivated membership closes the websocket
   (4401/4403), a changed role reads under the new scopes from now on;
2. reads the outbox once per group of subscribers with the same principal, filter and place in
   the feed — the feed's own read (`resolvers.changes.since`), so a change whose object a
   subscriber cannot see now is not sent, by the one rule of visibility the feed has;
3. hands each subscriber its changes with that group's reading context: each change's fields
   (its subject, actor, and what is selected under them) are read under the group's scopes,
   through one set of dataloaders, on one connection per wake, whatever the number of
   subscribers.

Bounds: subscriptions per websocket and per credential (an error for the one over), changes
waiting per subscription (the websocket closes with 1013 when a subscriber reads too slowly:
resume with `after`), `connection_init` within its timeout (4408), the protocol's ping answered
with pong. A subscription's document passes the same admission (depth, aliases, cost) as a query.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from graphql import GraphQLError, OperationDefinitionNode, OperationType
from sqlalchemy import bindparam
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.types import ExecutionResult
from strawberry.utils.aio import aclosing

from db import models
from db.base import utcnow
from db.models import Allocation
from db.session import Database
from policies.principal import Principal
from resolvers import changes
from resolvers.codes import ErrorCode
from resolvers.context import Limits
from resolvers.errors import OperationError
from schema.caches import BoundedCache
from schema.context import RequestContext
from schema.extensions import shape_error
from server.auth import ORGANISATION_HEADER, Authenticator, AuthFailure, Credentials
from server.fairuse import budget_key
from server.http import Refused, checked_body
from server.persisted import resolve
from server.services import Services

if TYPE_CHECKING:
    from server.graphql import CaseloadGraphQL

log = logging.getLogger("caseload.live")

UNAUTHORIZED = 4401  # no usable credentials
FORBIDDEN = 4403  # a known user or key that may not act
TOO_SLOW = 1013  # the subscriber left too many changes waiting ("try again later")
# What one kept read holds alive (its statement's tree, for one principal and filter): measured
# at 44 KB over 400 principals of four roles (tracemalloc). The reads kept are bounded by
# bytes: a quarter of the document cache's budget, about 340 at the default; one evicted is
# built again at its next wake (the SQL is compiled once per shape by SQLAlchemy's cache).
READ_BYTES = 48 * 1024
# The instant the scopes are read at, as a parameter of the reads kept (policies/scopes.py
# compares times with it only in SQL).
NOW: Any = bindparam("caseload_now", type_=Allocation.expires_at.type)
LINGER = 1.0  # seconds a wake's connection is kept for its subscribers' reads
MAX_REASON = 120  # bytes of a close frame's reason (the protocol allows 123)
SIGN_IN_FIRST = "Sign in first: send Authorization in connection_init's payload."
NOT_OVER_WEBSOCKET = (
    "The websocket serves subscriptions: send queries and mutations to /graphql over HTTP."
)


class TooManySubscriptions(OperationError):
    code = ErrorCode.RATE_LIMITED


async def read_credentials(
    authenticator: Authenticator, header: str | None, now: datetime, organisation: str | None
) -> Credentials | AuthFailure | None:
    """What an Authorization value claims (the one place subscriptions read it); `organisation`
    is the connection's X-Caseload-Organisation, as over HTTP."""
    return await authenticator.read(header, now, organisation)


@dataclass(frozen=True)
class Refusal:
    code: int
    reason: str


async def check(
    services: Services, db: Database, header: str | None, now: datetime, organisation: str | None
) -> Principal | Refusal:
    """Who an Authorization value (with the connection's X-Caseload-Organisation) signs in as
    now, as HTTP decides it (one statement)."""
    authenticator = services.authenticator
    credentials = await read_credentials(authenticator, header, now, organisation)
    if credentials is None:
        return Refusal(UNAUTHORIZED, SIGN_IN_FIRST)
    if isinstance(credentials, AuthFailure):
        return Refusal(UNAUTHORIZED, credentials.message)
    stmt, params = authenticator.statement(credentials)
    rows = (await db.execute(stmt, params)).all()
    found = authenticator.principal(credentials, rows, now)
    if isinstance(found, AuthFailure):
        return Refusal(FORBIDDEN if found.forbidden else UNAUTHORIZED, found.message)
    return found


@dataclass
class Connection:
    """One signed-in websocket."""

    header: str
    credential: str  # whose subscriptions these are, for the cap per credential
    closer: Callable[[int, str], Awaitable[None]]
    closed: bool = False
    # The organisation a token without one acts in (X-Caseload-Organisation), for every check.
    organisation: str | None = None

    @property
    def signs_in_as(self) -> tuple[str, str | None]:
        """What every check of this connection reads."""
        return self.header, self.organisation

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):  # the client may be gone already
            await self.closer(code, reason.encode()[:MAX_REASON].decode(errors="ignore"))


class Reading:
    """What one wake of the hub read for one group of subscribers: their principal, scopes and
    dataloaders, on the wake's one connection; closed once every subscriber is done with it."""

    def __init__(self, ctx: RequestContext, batch: Batch) -> None:
        self.ctx = ctx
        self.batch = batch


class Batch:
    """One wake's connection, shared by its readings: kept while subscribers read their
    changes (their subjects through the loaders), closed when the last is done with it, or
    `LINGER` seconds after the wake, whichever is first (a slow subscriber's reads then take
    a connection again, and give it back when it is done)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.holders = 1  # the hub, while it reads

    def hold(self) -> None:
        self.holders += 1

    async def release(self) -> None:
        self.holders -= 1
        if self.holders <= 0:
            await self.close()

    def linger(self) -> None:
        """The hub is done reading: close by `LINGER` at the latest."""
        if self.holders > 1:
            asyncio.get_running_loop().call_later(
                LINGER, lambda: asyncio.ensure_future(self.close())
            )

    async def close(self) -> None:
        """Closed (rows read stay loaded); a later read takes a connection again."""
        try:
            await self.db.close()
        except Exception as exc:  # a connection lost meanwhile: the next read takes another
            log.warning("closing a delivery's connection failed", exc_info=exc)


@dataclass(eq=False)
class Follower:
    """One subscription, following the outbox from `cursor` (position, id)."""

    connection: Connection
    filter: changes.ChangeFilter | None
    cursor: tuple[int, int]
    cap: int
    queue: asyncio.Queue[tuple[list[models.Change], Reading]] = field(default_factory=asyncio.Queue)
    waiting: int = 0  # changes queued

    @property
    def catching_up(self) -> bool:
        """Reading a backlog (resumed with `after`, or a page came back full): read a page
        at a time, each once the last is sent. Otherwise live: every change as it commits,
        and a subscriber that leaves more than its queue holds waiting is closed."""
        return self.cursor[1] != changes.FOLLOWED

    def offer(self, rows: list[models.Change], reading: Reading) -> bool:
        """Queue changes; False when the subscriber already has its fill waiting."""
        if self.waiting + len(rows) > self.cap:
            return False
        reading.batch.hold()
        self.waiting += len(rows)
        self.queue.put_nowait((rows, reading))
        return True


def _filter_key(filter: changes.ChangeFilter | None) -> Any:
    if filter is None:
        return None
    return (
        None if filter.subject_types is None else tuple(filter.subject_types),
        None if filter.actions is None else tuple(filter.actions),
        filter.learner_id,
    )


class Hub:
    """Every subscription of this process, fed from the outbox (see the module's doc)."""

    def __init__(self, services: Services, limits: Limits) -> None:
        self.services = services
        self.limits = limits
        settings = services.settings
        self.followers: set[Follower] = set()
        self.per_credential: Counter[str] = Counter()
        self.wakeup = asyncio.Event()
        self.sweep = settings.subscription_sweep_seconds
        self.page = settings.max_page_size
        self.announced = 0  # the highest position a commit announced
        self.delivered = 0  # the head of the last wake
        self._task: asyncio.Task[None] | None = None
        self.statements: BoundedCache[Any, Any] = BoundedCache(settings.document_cache_bytes // 4)
        self.wakes = 0
        self.reads = 0

    # Lifetime --------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        self.wakeup.set()

    def _announced(self, position: int | None) -> None:
        if position is None:
            self.wake()
            return
        self.announced = max(self.announced, position)
        if self.announced > self.delivered:
            self.wake()

    async def _run(self) -> None:
        stop = self.services.commits.listen(self._announced)
        self.wake()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.sweep):
                        await self.wakeup.wait()
                self.wakeup.clear()
                if not self.followers:
                    continue
                try:
                    await self.deliver()
                except Exception as exc:
                    log.warning("could not deliver changes to subscribers", exc_info=exc)
                    await asyncio.sleep(1)
                    self.wake()
        finally:
            stop()

    # Subscribers -----------------------------------------------------------------------

    def admit(self, connection: Connection) -> None:
        cap = self.services.settings.subscriptions_per_credential
        if self.per_credential[connection.credential] >= cap:
            raise TooManySubscriptions(
                f"This credential already has {cap} subscriptions open in this process: "
                "end one first."
            )

    def add(self, follower: Follower) -> None:
        self.followers.add(follower)
        self.per_credential[follower.connection.credential] += 1
        self.start()
        self.wake()

    def remove(self, follower: Follower) -> None:
        if follower in self.followers:
            self.followers.discard(follower)
            self.per_credential[follower.connection.credential] -= 1
            if self.per_credential[follower.connection.credential] <= 0:
                del self.per_credential[follower.connection.credential]

    # Delivery --------------------------------------------------------------------------

    def _statement(self, principal: Principal, filter: changes.ChangeFilter | None) -> Any:
        """The read for a principal and filter, built (and its SQL compiled) once and run with
        new bounds at each wake. Its scopes' instant (an allocation's expiry) is a parameter,
        `:caseload_now`, given the wake's time."""
        key = (dataclasses.replace(principal, client=None), _filter_key(filter))
        read = self.statements.get(key)
        if read is None:
            symbolic = RequestContext(
                db=Database(self.services.maker),  # never used: the statement is only built
                now=utcnow(),
                principal=principal,
                policy=self.services.policies.for_principal(principal, NOW),
                limits=self.limits,
            )
            read = changes.since(symbolic, filter)
            self.statements.put(key, read, READ_BYTES)
        return read

    async def deliver(self) -> None:
        """One wake: check credentials, read the outbox per group, queue what each may see."""
        services = self.services
        now = utcnow()
        db = Database(services.maker)
        batch = Batch(db)
        self.wakes += 1
        try:
            until = await changes.head(RequestContext(db=db, now=now, principal=None, policy=None))
            self.delivered = until
            followers = [f for f in self.followers if not f.connection.closed]
            found: dict[tuple[str, str | None], Principal | Refusal] = {}
            for header, organisation in {f.connection.signs_in_as for f in followers}:
                found[header, organisation] = await check(services, db, header, now, organisation)
            groups: dict[Any, list[Follower]] = {}
            shapes: dict[Any, Principal] = {}
            for follower in followers:
                who = found[follower.connection.signs_in_as]
                if isinstance(who, Refusal):
                    self.remove(follower)
                    await follower.connection.close(who.code, who.reason)
                    continue
                if follower.cursor >= (until, changes.FOLLOWED):
                    continue
                if follower.catching_up and follower.waiting:
                    continue  # reading a backlog: the next page once this one is sent
                # Principals alike but for how they signed in read alike.
                shape = dataclasses.replace(who, client=None)
                key = (shape, _filter_key(follower.filter), follower.cursor)
                shapes[key] = who
                groups.setdefault(key, []).append(follower)
            for key, members in groups.items():
                await self._read(batch, now, until, shapes[key], key[2], members)
        finally:
            batch.linger()
            await batch.release()

    async def _read(
        self,
        batch: Batch,
        now: datetime,
        until: int,
        principal: Principal,
        cursor: tuple[int, int],
        members: list[Follower],
    ) -> None:
        services = self.services
        ctx = RequestContext(
            db=batch.db,
            now=now,
            principal=principal,
            policy=services.policies.for_principal(principal, now),
            limits=self.limits,
            client=principal.client,
            debug=services.settings.debug,
        )
        limit = self.page
        if members[0].catching_up:
            limit = min(limit, members[0].cap)
        read = self._statement(principal, members[0].filter)
        found = await batch.db.execute(read, {**changes.bounds(cursor, until, limit), NOW.key: now})
        rows = list(found.scalars().all())
        self.reads += 1
        full = len(rows) == limit
        after = (rows[-1].position or 0, rows[-1].id) if full else (until, changes.FOLLOWED)
        if full:
            self.wake()  # the rest of the backlog, once this page is sent
        reading = Reading(ctx, batch)
        for follower in members:
            follower.cursor = after
            if rows and not follower.offer(rows, reading):
                self.remove(follower)
                await follower.connection.close(
                    TOO_SLOW, "Too many changes waiting: read faster, or resume with `after`."
                )


def _use(ctx: RequestContext, reading: Reading) -> None:
    """The subscriber's context reads as its group's does, for one change."""
    source = reading.ctx
    ctx.db, ctx.now, ctx.principal, ctx.policy = (
        source.db,
        source.now,
        source.principal,
        source.policy,
    )
    ctx.client = source.client
    ctx._groups = source._groups


@dataclass
class LiveOperation:
    """A websocket operation's access to the hub (schema.context.Live)."""

    hub: Hub
    connection: Connection

    async def follow(
        self, ctx: RequestContext, after: str | None, filter: Any
    ) -> AsyncIterator[models.Change]:
        start = await changes.start(ctx, after, filter)
        self.hub.admit(self.connection)
        # Nothing is read for the subscriber until a change commits: no connection is held.
        await ctx.db.rollback()
        await ctx.db.close()
        follower = Follower(
            self.connection, filter, start, self.hub.services.settings.subscription_queue
        )
        return self._stream(ctx, follower)

    async def _stream(
        self, ctx: RequestContext, follower: Follower
    ) -> AsyncIterator[models.Change]:
        hub, own = self.hub, ctx.db
        hub.add(follower)
        try:
            while True:
                rows, reading = await follower.queue.get()
                try:
                    for row in rows:
                        follower.waiting -= 1
                        _use(ctx, reading)
                        yield row
                finally:
                    ctx.db = own
                    await reading.batch.release()
                if follower.catching_up and follower.queue.empty():
                    hub.wake()
        finally:
            hub.remove(follower)
            ctx.db = own
            while not follower.queue.empty():
                _, reading = follower.queue.get_nowait()
                await reading.batch.release()


# The websocket protocol --------------------------------------------------------------------


def operation_type(app: CaseloadGraphQL, query: str, name: str | None) -> OperationType | None:
    """The kind of operation a document asks for (None: it cannot be told)."""
    prepared = app.documents.prepare(query)
    if prepared.document is None:
        return None
    operations = [
        d
        for d in prepared.document.definitions
        if isinstance(d, OperationDefinitionNode)
        and (name is None or (d.name is not None and d.name.value == name))
    ]
    return operations[0].operation if len(operations) == 1 else None


class TextFrames(ASGIWebSocketAdapter):
    """graphql-transport-ws speaks in text frames (the HTTP answers' JSON is bytes)."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class TransportWS(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """Strawberry's graphql-transport-ws, signed in at `connection_init`, one context per
    operation, subscriptions only, errors coded as over HTTP."""

    connection: Connection | None = None

    @property
    def app(self) -> CaseloadGraphQL:
        return self.view  # type: ignore[return-value]

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            await self.websocket.close(code=4400, reason="Invalid connection init payload")
            return
        if self.connection_init_received:
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self.connection_init_received = True
        header = payload.get("Authorization", payload.get("authorization"))
        if header is not None and not isinstance(header, str):
            await self.websocket.close(code=4400, reason="Authorization must be a string.")
            return
        organisation = payload.get(ORGANISATION_HEADER, payload.get(ORGANISATION_HEADER.lower()))
        if organisation is None:  # else the websocket handshake's header, as over HTTP
            organisation = self.websocket.ws.headers.get(ORGANISATION_HEADER)  # type: ignore[attr-defined]
        if organisation is not None and not isinstance(organisation, str):
            await self.websocket.close(code=4400, reason=f"{ORGANISATION_HEADER} must be a string.")
            return
        services = self.app.services
        db = Database(services.maker)
        try:
            found = await check(services, db, header, utcnow(), organisation)
        finally:
            await db.close()
        if isinstance(found, Refusal):
            reason = found.reason.encode()[:MAX_REASON].decode(errors="ignore")
            await self.websocket.close(code=found.code, reason=reason)
            return
        assert header is not None
        credentials = await read_credentials(services.authenticator, header, utcnow(), organisation)
        assert credentials is not None and not isinstance(credentials, AuthFailure)
        self.connection = Connection(
            header,
            budget_key(credentials, None),
            closer=self.websocket.close,
            organisation=organisation,
        )
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        """The document as over HTTP: sent as `query`, or named by `documentId` or
        `extensions.persistedQuery`; with trusted documents, only those (server/persisted.py).
        A document refused so answers an `error` for its operation. A document sent with its
        hash registers it (automatic persisted queries), as a signed-in POST does."""
        payload: Any = message.get("payload")
        if not isinstance(payload, dict):
            await self.handle_invalid_message("A subscribe message's payload must be an object.")
            return
        if self.connection_acknowledged and message["id"] not in self.operations:
            sent = dict(payload)
            if sent.get("query") == "" and ("documentId" in sent or "extensions" in sent):
                del sent["query"]  # a client whose type needs a string sends "" with an id
            try:
                body, registering = resolve(
                    checked_body(sent), self.app.documents, self.app.trusted
                )
            except Refused as refused:
                error = GraphQLError(refused.message, extensions={"code": refused.code})
                await self.send_message(
                    {"id": message["id"], "type": "error", "payload": [error.formatted]}
                )
                return
            if registering is not None:
                # Sent with its hash on a signed-in websocket: registered as over HTTP, when
                # the document validates (a later `subscribe` or POST may send the hash alone).
                documents = self.app.documents
                token = documents.registering(registering)
                try:
                    documents.keep(documents.prepare(body.query))
                finally:
                    documents.registered_done(token)
            payload = {**payload, "query": body.query}
            message = {**message, "payload": payload}
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[RequestContext, None]) -> None:
        try:
            kind = operation_type(self.app, operation.query, operation.operation_name)
            if kind is not None and kind is not OperationType.SUBSCRIPTION:
                error = GraphQLError(NOT_OVER_WEBSOCKET, extensions={"code": ErrorCode.BAD_REQUEST})
                await operation.send_initial_errors([error])
                return
            assert self.connection is not None
            context = self.app.socket_context(self.connection)
            result_source = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with aclosing(result_source):
                await self._send_result_stream(operation, self._shaped(result_source, context))
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except _OperationStreamClosed:
            return
        except Exception as error:
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise

    async def _shaped(self, source: Any, ctx: RequestContext) -> AsyncGenerator[Any, None]:
        async for result in source:
            if isinstance(result, ExecutionResult) and result.errors:
                result.errors = [shape_error(e, debug=ctx.debug) for e in result.errors]
            yield result

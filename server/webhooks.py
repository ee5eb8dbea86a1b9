"""The webhook sender: reads the change outbox after commit and delivers to the endpoints.

Two steps, each its own short transaction, repeated by every sender:

- Fan-out. For each enabled endpoint whose read position is behind the last committed change,
  one delivery row per change of its organisation and actions up to that change, and the
  endpoint's position moved on. Positions are commit order (resolvers/changes.py): a change
  that commits later has a higher one, so nothing is passed over.
- Send. The oldest due delivery at the head of its endpoint's queue (no earlier undelivered
  change of that endpoint: commit order per endpoint) is claimed, posted, and its outcome
  written. On PostgreSQL the claim is `FOR UPDATE SKIP LOCKED`, held through the post: two
  senders never post the same delivery at once, and a sender that dies mid-post releases it
  with its connection, for another to post again with the same `webhook-id`. On SQLite one
  process sends (the one holding a lock file beside the database), and posts between two
  transactions (a write transaction held through a post would stop every writer).

A failed try (no 2xx answer within 5 s) is tried again after the next wait of
CASELOAD_WEBHOOK_RETRY_SCHEDULE; after the last, the delivery is FAILED and the endpoint
disabled, with an audit event saying so.

An idle sender looks for work when changes commit (server/commits.py: PostgreSQL's NOTIFY, or
SQLite's in-process news, the same the subscription hub wakes on) and at least every 0.25 s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import httpx
import orjson
from sqlalchemy import (
    BigInteger,
    Row,
    Table,
    bindparam,
    exists,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from db.base import UtcDateTime, utcnow
from db.engine import WRITE_INTENT, create_engine
from db.models import (
    AuditAction,
    Change,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from db.session import Database, session_maker
from policies.principal import system_principal
from resolvers import webhooks
from resolvers.audit import audit
from resolvers.changes import TAG
from resolvers.context import Context, Limits
from resolvers.ids import encode_id
from resolvers.outcomes import Invalid
from resolvers.pagination import encode_cursor
from server.commits import Commits
from server.settings import Settings

log = logging.getLogger("caseload.webhooks")

TIMEOUT_SECONDS = 5.0
KEPT_BYTES = 1024  # of a receiver's answer
POLL_SECONDS = 0.25  # an idle sender looks for work this often, besides when woken by a commit
FAN_OUT_BATCH = 1000  # commit positions read for one endpoint in one transaction
LANES = 2  # deliveries one PostgreSQL process posts at once (to different endpoints)
BATCH = 20  # deliveries of one endpoint claimed together, posted one after the other
USER_AGENT = "Caseload-Webhooks/1"
PENDING = WebhookDeliveryStatus.PENDING


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks' `webhook-signature`: v1 and the base64 HMAC-SHA256 of
    `id.timestamp.body`, keyed with the secret's bytes."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(webhooks.secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def payload(row: Row[Any]) -> bytes:
    """The thin payload: what changed and where; the receiver reads the rest with its key."""
    return orjson.dumps(
        {
            "type": row.action.value,
            "timestamp": row.at.isoformat(),
            "data": {
                "changeCursor": encode_cursor(TAG, [row.position, row.change_id, row.at]),
                "subjectType": row.subject_type,
                "subjectId": encode_id(row.subject_type, row.subject_id),
                "organisationId": encode_id("Organisation", row.organisation_id),
            },
        }
    )


@dataclass(frozen=True)
class Outcome:
    """What one try got: an HTTP status and the start of the answer, or why none."""

    status: int | None = None
    body: str | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


_earlier = aliased(WebhookDelivery)
_HEAD = ~exists().where(
    _earlier.endpoint_id == WebhookDelivery.endpoint_id,
    _earlier.status == PENDING,
    tuple_(_earlier.change_position, _earlier.change_id)
    < tuple_(WebhookDelivery.change_position, WebhookDelivery.change_id),
)


class Sender:
    """Delivers webhooks until stopped; every server process runs one (`caseload worker` too)."""

    def __init__(
        self,
        settings: Settings,
        *,
        poll_seconds: float = POLL_SECONDS,
        lanes: int = LANES,
        engine: AsyncEngine | None = None,
        commits: Commits | None = None,
    ) -> None:
        self.postgres = not settings.is_sqlite
        self.lanes = lanes if self.postgres else 1
        self.engine = engine or create_engine(
            settings.database_url,
            pool_size=self.lanes + 1,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        self._own_engine = engine is None
        self.maker: async_sessionmaker[AsyncSession] = session_maker(self.engine)
        self.retries: list[timedelta] = settings.webhook_retries
        self.limits = Limits(
            webhook_allow_http=settings.webhook_allow_http,
            webhook_allow_private=settings.webhook_allow_private,
        )
        self.poll_seconds = poll_seconds
        # Woken when changes commit (the poll is the backstop); one event per lane.
        self.commits = commits or Commits(
            settings.database_url, postgres=self.postgres, local_key=str(self.engine.url)
        )
        self._own_commits = commits is None
        self._wakeups: list[asyncio.Event] = []
        self._stop_listening: Callable[[], None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # SQLite: one process sends; the one holding this file's lock (servers of one file
        # started with --workers N, or a worker beside them, wait their turn).
        database = settings.sqlite_path()
        self._lock_path = (
            None if database is None else database.with_name(database.name + ".webhooks.lock")
        )
        self._lock_fd: int | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False
            )
        return self._client

    def start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._wakeups = [asyncio.Event() for _ in range(self.lanes)]
        self._stop_listening = self.commits.listen(self.wake)
        self._tasks = [
            loop.create_task(self._run(wakeup), name="webhook-sender") for wakeup in self._wakeups
        ]

    def wake(self, _position: int | None = None) -> None:
        """Changes have committed: look for work now rather than at the next poll."""
        for wakeup in self._wakeups:
            wakeup.set()

    async def aclose(self) -> None:
        """Stop the lanes (a post under way is abandoned: its delivery stays to be sent)."""
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        if self._own_commits:
            await self.commits.aclose()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock for another process
            self._lock_fd = None
        if self._own_engine:
            await self.engine.dispose()

    def _take_lock(self) -> bool:
        """Whether this process may send (always on PostgreSQL: claims decide there)."""
        if self._lock_path is None or self._lock_fd is not None:
            return True
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    async def _run(self, wakeup: asyncio.Event) -> None:
        while True:
            if not self._take_lock():  # another process sends on this SQLite file
                await asyncio.sleep(1.0)
                continue
            wakeup.clear()  # a commit from here on wakes the wait below
            try:
                busy = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away, say: try again later
                log.warning("webhook sender step failed", exc_info=exc)
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await wakeup.wait()

    async def step(self) -> bool:
        """Fan out what has committed, then send one due delivery; whether there was work."""
        fanned = await self.fan_out()
        sent = await self.send_one()
        return fanned or sent

    async def drain(self) -> int:
        """Run steps until none finds work; how many did (tests drive the sender so)."""
        done = 0
        while await self.step():
            done += 1
        return done

    # Fan-out -------------------------------------------------------------------------------

    async def fan_out(self) -> bool:
        top_stmt = select(func.coalesce(func.max(Change.position), 0))
        behind = select(
            WebhookEndpoint.id,
            WebhookEndpoint.organisation_id,
            WebhookEndpoint.events,
            WebhookEndpoint.after_position,
        ).where(WebhookEndpoint.disabled_at.is_(None))
        async with self.maker() as session:
            top = (await session.execute(top_stmt)).scalar_one()
            pending = (
                await session.execute(
                    select(func.count()).where(
                        WebhookEndpoint.disabled_at.is_(None),
                        WebhookEndpoint.after_position < top,
                    )
                )
            ).scalar_one()
            await session.rollback()
        if not pending:
            return False
        now = utcnow()
        async with self.maker() as session:
            await session.connection(execution_options={WRITE_INTENT: True})
            stmt = behind.where(WebhookEndpoint.after_position < top).order_by(WebhookEndpoint.id)
            if self.postgres:
                stmt = stmt.with_for_update(skip_locked=True)
            endpoints = (await session.execute(stmt.limit(100))).all()
            for endpoint in endpoints:
                upto = min(top, endpoint.after_position + FAN_OUT_BATCH)
                actions = webhooks.events_of(endpoint.events)
                changes = select(
                    literal(endpoint.id),
                    literal(endpoint.organisation_id),
                    Change.id,
                    Change.position,
                    literal(PENDING.value),
                    literal(0),
                    literal(now, UtcDateTime()),
                    literal(now, UtcDateTime()),
                ).where(
                    Change.position > endpoint.after_position,
                    Change.position <= upto,
                    Change.organisation_id == endpoint.organisation_id,
                    Change.action.in_(actions),
                )
                await session.execute(
                    insert(WebhookDelivery).from_select(
                        [
                            "endpoint_id",
                            "organisation_id",
                            "change_id",
                            "change_position",
                            "status",
                            "attempts",
                            "created_at",
                            "next_attempt_at",
                        ],
                        changes,
                    )
                )
                await session.execute(
                    update(WebhookEndpoint)
                    .where(WebhookEndpoint.id == endpoint.id)
                    .values(after_position=upto)
                )
            await session.commit()
        return bool(endpoints)

    # Sending -------------------------------------------------------------------------------

    @staticmethod
    def _deliveries() -> Any:
        """Deliveries with what a post needs: the endpoint's URL and secret, the change."""
        return (
            select(
                WebhookDelivery.id,
                WebhookDelivery.attempts,
                WebhookDelivery.change_id,
                WebhookDelivery.change_position,
                WebhookDelivery.endpoint_id,
                WebhookDelivery.organisation_id,
                WebhookEndpoint.url,
                WebhookEndpoint.secret,
                Change.action,
                Change.at,
                Change.position,
                Change.subject_type,
                Change.subject_id,
            )
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .join(Change, Change.id == WebhookDelivery.change_id)
            .where(
                WebhookDelivery.status == PENDING,
                WebhookDelivery.next_attempt_at <= utcnow(),
                WebhookEndpoint.disabled_at.is_(None),
            )
        )

    def _head(self) -> Any:
        """The oldest due delivery at the head of its endpoint's queue, claimed."""
        stmt = (
            self._deliveries()
            .where(_HEAD)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(1)
        )
        if self.postgres:
            stmt = stmt.with_for_update(of=WebhookDelivery, skip_locked=True)
        return stmt

    def _behind(self, head: Row[Any]) -> Any:
        """The due deliveries queued right behind a claimed head, in commit order (no other
        sender claims them: they are no head while it is pending)."""
        stmt = (
            self._deliveries()
            .where(
                WebhookDelivery.endpoint_id == head.endpoint_id,
                tuple_(WebhookDelivery.change_position, WebhookDelivery.change_id)
                > tuple_(literal(head.change_position, BigInteger), literal(head.change_id)),
            )
            .order_by(WebhookDelivery.change_position, WebhookDelivery.change_id)
            .limit(BATCH - 1)
        )
        if self.postgres:
            stmt = stmt.with_for_update(of=WebhookDelivery)
        return stmt

    async def send_one(self) -> bool:
        """Claim the head of one endpoint's queue and what is due behind it, and post them in
        order, up to the first that fails (the rest wait behind it)."""
        db = Database(self.maker)
        try:
            head = (await db.execute(self._head())).first()
            if head is None:
                await db.rollback()
                return False
            rows = [head, *(await db.execute(self._behind(head))).all()]
            if not self.postgres:  # post outside any transaction (see the module's doc)
                await db.rollback()
            delivered: list[tuple[Row[Any], Outcome]] = []
            failed: tuple[Row[Any], Outcome] | None = None
            for row in rows:
                outcome = await self.post(row)
                if not outcome.delivered:
                    failed = (row, outcome)
                    break
                delivered.append((row, outcome))
            if not self.postgres:
                await db.close()
                db = Database(self.maker)
                db.write_intent = True
            await self.record_delivered(db, delivered)
            if failed is not None:
                await self.record(db, *failed)
            await db.commit()
            return True
        except BaseException:
            await db.rollback()
            raise
        finally:
            await db.close()

    async def post(self, row: Row[Any]) -> Outcome:
        """One try: resolve, check the addresses, post to the checked one; never raises."""
        target = webhooks.parse_url(row.url, self.limits)
        if isinstance(target, Invalid):
            return Outcome(error=f"refused: {target.message}")
        addresses = await webhooks.resolve(target, allow_private=self.limits.webhook_allow_private)
        if isinstance(addresses, str):
            return Outcome(error=f"refused: {addresses}")
        address = addresses[0]
        host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
        connect = target.url._replace(netloc=f"{host}:{target.port}").geturl()
        msg_id = webhooks.webhook_id(row.change_id)
        body = payload(row)
        timestamp = int(time.time())
        headers = {
            "Host": target.url.netloc,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(row.secret, msg_id, timestamp, body),
        }
        extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                request = self.client.build_request(
                    "POST", connect, content=body, headers=headers, extensions=extensions
                )
                response = await self.client.send(request, stream=True)
                try:
                    kept = bytearray()
                    async for chunk in response.aiter_raw():
                        kept += chunk
                        if len(kept) >= KEPT_BYTES:
                            break
                finally:
                    await response.aclose()
        except TimeoutError:
            return Outcome(error=f"no answer within {TIMEOUT_SECONDS:g} s")
        except httpx.HTTPError as exc:
            return Outcome(error=(f"{type(exc).__name__}: {exc}")[:500])
        text = bytes(kept[:KEPT_BYTES]).decode(errors="replace")[:KEPT_BYTES]
        return Outcome(status=response.status_code, body=text or None)

    async def record_delivered(
        self, db: Database, delivered: list[tuple[Row[Any], Outcome]]
    ) -> None:
        """Write the tries the receiver accepted, in one statement."""
        if not delivered:
            return
        now = utcnow()
        table = cast(Table, WebhookDelivery.__table__)
        await db.execute(
            update(table)
            .where(
                table.c.id == bindparam("b_id"),
                table.c.status == PENDING.value,
                table.c.attempts == bindparam("b_attempts"),
            )
            .values(
                status=WebhookDeliveryStatus.DELIVERED.value,
                attempts=bindparam("b_tries"),
                last_attempt_at=now,
                delivered_at=now,
                response_status=bindparam("b_status"),
                response_body=bindparam("b_body"),
                error=None,
            ),
            [
                {
                    "b_id": row.id,
                    "b_attempts": row.attempts,
                    "b_tries": row.attempts + 1,
                    "b_status": outcome.status,
                    "b_body": outcome.body,
                }
                for row, outcome in delivered
            ],
        )

    async def record(self, db: Database, row: Row[Any], outcome: Outcome) -> None:
        """Write a try's outcome (unless the delivery changed meanwhile: redelivered, deleted)."""
        now = utcnow()
        attempts = row.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_attempt_at": now,
            "response_status": outcome.status,
            "response_body": outcome.body,
            "error": outcome.error,
        }
        last = attempts > len(self.retries)
        if outcome.delivered:
            values.update(status=WebhookDeliveryStatus.DELIVERED, delivered_at=now)
        elif last:
            values.update(status=WebhookDeliveryStatus.FAILED)
        else:
            values.update(next_attempt_at=now + self.retries[attempts - 1])
        written = (
            await db.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == row.id,
                    WebhookDelivery.status == PENDING,
                    WebhookDelivery.attempts == row.attempts,
                )
                .values(**values)
                .returning(WebhookDelivery.id)
            )
        ).first()
        if written is None or outcome.delivered or not last:
            return
        why = outcome.error or f"HTTP {outcome.status}"
        reason = (
            f"Every try of delivery {encode_id('WebhookDelivery', row.id)} failed "
            f"({attempts} tries; the last: {why})."
        )[:500]
        disabled = (
            await db.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == row.endpoint_id, WebhookEndpoint.disabled_at.is_(None))
                .values(disabled_at=now, disabled_reason=reason, updated_at=now)
                .returning(WebhookEndpoint.id)
            )
        ).first()
        if disabled is None:
            return
        log.warning("webhook endpoint %s disabled: %s", row.endpoint_id, reason)
        principal = system_principal(row.organisation_id, client="webhooks")
        ctx = Context(db=db, now=now, principal=principal, policy=None, client="webhooks")
        await audit(
            ctx,
            AuditAction.WEBHOOK_ENDPOINT_DISABLED,
            WebhookEndpoint(id=row.endpoint_id),
            organisation_id=row.organisation_id,
            details={
                "deliveryId": encode_id("WebhookDelivery", row.id),
                "attempts": attempts,
                "reason": why[:200],
            },
        )

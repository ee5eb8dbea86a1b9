"""The benchmark's own PostgreSQL database: made and seeded once, its people, its statements."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from db.engine import normalise_url
from db.models import Learner, Membership, MembershipRole, Organisation, RecordAssignment, User

T = TypeVar("T")

# Connections of the benchmark itself are left out of what it watches and cancels.
APPLICATION_NAME = "caseload-bench-neighbours"
PRESET = "bench"


def engine_for(url: str, database: str | None = None) -> AsyncEngine:
    target = make_url(normalise_url(url))
    if database is not None:
        target = target.set(database=database)
    return create_async_engine(
        target,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"server_settings": {"application_name": APPLICATION_NAME}},
    )


async def using(url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    engine = engine_for(url)
    try:
        return await work(engine)
    finally:
        await engine.dispose()


async def create_if_missing(url: str) -> bool:
    """Create the database named in `url` on its server; True when it was made now."""
    name = make_url(normalise_url(url)).database
    if not name:
        raise ValueError(f"{url} names no database")
    server = engine_for(url, "postgres")
    try:
        async with server.connect() as conn:
            found = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if found is None:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
                return True
            return False
    finally:
        await server.dispose()


async def is_seeded(engine: AsyncEngine) -> bool:
    """The bench preset is written in one transaction: its first organisation means all of it."""
    async with engine.connect() as conn:
        try:
            found = await conn.scalar(
                select(Organisation.id).where(Organisation.slug == f"{PRESET}-1")
            )
        except DBAPIError:  # not migrated yet
            return False
    return found is not None


@dataclass(frozen=True)
class Cast:
    """Who plays each part, all in the organisation with the most learners."""

    organisation: str
    victim: str  # an assessor with the fullest caseload
    admin: str
    unseen: str  # the caller sending never-seen documents


async def find_cast(engine: AsyncEngine) -> Cast:
    async with engine.connect() as conn:
        organisation_id, slug = (
            await conn.execute(
                select(Learner.organisation_id, Organisation.slug)
                .join(Organisation, Organisation.id == Learner.organisation_id)
                .group_by(Learner.organisation_id, Organisation.slug)
                .order_by(func.count().desc())
                .limit(1)
            )
        ).one()

        def with_role(*roles: str) -> Select[str]:
            return (
                select(User.email)
                .join(Membership, Membership.user_id == User.id)
                .join(MembershipRole, MembershipRole.membership_id == Membership.id)
                .where(
                    Membership.organisation_id == organisation_id,
                    Membership.deactivated_at.is_(None),
                    MembershipRole.role.in_(roles),
                )
            )

        victim = await conn.scalar(
            with_role("ASSESSOR")
            .join(RecordAssignment, RecordAssignment.user_id == User.id)
            .where(RecordAssignment.ended_at.is_(None))
            .group_by(User.id, User.email)
            .order_by(func.count().desc(), User.id)
            .limit(1)
        )
        # The bench preset has no ADMIN: its super admin administers the organisation.
        admin = await conn.scalar(
            with_role("ADMIN", "SUPER_ADMIN")
            .order_by((MembershipRole.role == "ADMIN").desc(), User.id)
            .limit(1)
        )
        unseen = await conn.scalar(
            with_role("SENIOR_ASSESSOR", "MANAGER").order_by(MembershipRole.role, User.id).limit(1)
        )
    if victim is None or admin is None or unseen is None:
        raise RuntimeError(f"{slug} lacks an assessor with records, an admin or a senior assessor")
    return Cast(organisation=slug, victim=victim, admin=admin, unseen=unseen)


@dataclass
class Statements:
    """What PostgreSQL showed of the server's statements while one request ran."""

    seen: dict[tuple[int, datetime], float] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        return sum(self.seen.values()) * 1000

    @property
    def longest_ms(self) -> float:
        return max(self.seen.values(), default=0.0) * 1000


class Watch:
    """The server's statements in pg_stat_activity: sampled, waited for, cancelled."""

    SAMPLE_MS = 20.0
    _OTHERS = """
        FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend'
          AND application_name <> :me AND pid <> pg_backend_pid()
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def during(self, work: Awaitable[T]) -> tuple[T, Statements]:
        """Run `work`, sampling the statements that start meanwhile.

        A statement seen finished counts from its start to its end; one still running when
        sampling stops counts up to the last sample. Statements shorter than a sample may go
        unseen: the figures are for the long ones.
        """
        statements = Statements()
        task = asyncio.ensure_future(work)
        async with self.engine.connect() as conn:
            since = await conn.scalar(text("SELECT clock_timestamp()"))
            while True:
                finished = task.done()  # then this sample sees its last statement ended
                rows = await conn.execute(
                    text(
                        "SELECT pid, query_start, "
                        "EXTRACT(EPOCH FROM (CASE WHEN state = 'active' THEN clock_timestamp() "
                        "ELSE state_change END) - query_start) " + self._OTHERS
                    ),
                    {"me": APPLICATION_NAME},
                )
                for pid, started, seconds in rows:
                    if started is not None and started >= since and seconds is not None:
                        statements.seen[(pid, started)] = float(seconds)
                if finished:
                    break
                await asyncio.sleep(self.SAMPLE_MS / 1000)
        return await task, statements

    async def running(self) -> int:
        return (await self.connections())[1]

    async def connections(self) -> tuple[int, int]:
        """The server's connections in use (in a transaction), and those running a statement."""
        async with self.engine.connect() as conn:
            in_use, running = (
                await conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE state <> 'idle'), "
                        "count(*) FILTER (WHERE state = 'active') " + self._OTHERS
                    ),
                    {"me": APPLICATION_NAME},
                )
            ).one()
        return int(in_use), int(running)

    async def settle(self, wait_seconds: float) -> int:
        """Wait for the server's statements to end; cancel those still running after that.

        The database is the benchmark's own: a statement left running would weigh on the
        next phase. A compiled read that is cancelled is run again by the standard executor,
        so cancelling goes on until nothing runs (for ten seconds at most). Returns how many
        statements were cancelled.
        """
        await self._quiet(wait_seconds)
        cancelled = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            async with self.engine.connect() as conn:
                now = await conn.scalar(
                    text(
                        "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) "
                        + self._OTHERS
                        + " AND state = 'active'"
                    ),
                    {"me": APPLICATION_NAME},
                )
            cancelled += int(now or 0)
            await self._quiet(1.0)
            if not await self.running():
                break
        return cancelled

    async def _quiet(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not await self.running():
                return
            await asyncio.sleep(0.2)

"""One session, one transaction per operation; safe under concurrent field resolution."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Executable, Result, Select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import WRITE_INTENT, is_timeout

T = TypeVar("T")

log = logging.getLogger("caseload.db")


class ConnectionLost(Exception):
    """The transaction's connection died after its first statement: what the transaction had
    done is gone with it, so the operation can neither go on nor be kept."""


class StatementTimedOut(Exception):
    """A statement ran past the statement timeout: the database stopped it, and the
    transaction cannot go on (PostgreSQL refuses every later statement of it)."""


class Database:
    """A request's unit of work.

    Strawberry resolves sibling fields concurrently; an AsyncSession cannot run two
    statements at once, so every statement passes through one lock. The transaction
    starts on first use and ends with `commit()` or `rollback()`.

    The pool hands out connections unchecked (no ping per checkout). A connection found dead
    by the transaction's first statement is replaced and that statement run once more:
    nothing had been done in the transaction, so nothing can happen twice. Found dead later,
    the statement fails, `lost` says so, and every later statement of the transaction fails
    with `ConnectionLost`; SQLAlchemy has already taken the dead connection out of the pool.
    """

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self._maker = maker
        self._session: AsyncSession | None = None
        self._lock = asyncio.Lock()
        self._begun = False  # the current transaction has sent a statement
        self.lost: DBAPIError | None = None
        self.timed_out: DBAPIError | None = None
        self.write_intent = False
        self.statements = 0
        # Statements the transaction runs last, just before it commits, in order (each once).
        self.before_commit: list[Executable] = []
        # Called once the transaction has committed (never after a rollback), in order.
        self.after_commit: list[Callable[[], None]] = []
        bind = maker.kw.get("bind")
        self.dialect: str = bind.dialect.name if bind is not None else "unknown"
        # Which database this is (its URL, password hidden), for db/notify.py.
        self.url: str = str(bind.url) if bind is not None else ""

    async def _ensure(self) -> AsyncSession:
        if self._session is None:
            self._session = self._maker()
            await self._session.connection(
                execution_options={WRITE_INTENT: True} if self.write_intent else None
            )
        return self._session

    async def _run(self, step: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run one step of the transaction (the caller holds the lock)."""
        if self.lost is not None:
            raise ConnectionLost("The transaction's connection was lost.") from self.lost
        if self.timed_out is not None:
            raise StatementTimedOut("A statement ran out of time.") from self.timed_out
        first, self._begun = not self._begun, True
        try:
            return await step(await self._ensure())
        except DBAPIError as exc:
            if is_timeout(exc):
                self.timed_out = exc
                raise StatementTimedOut("A statement ran out of time.") from exc
            if not exc.connection_invalidated:
                raise
            if not first:
                self.lost = exc
                raise
            log.warning("connection found dead; the first statement runs on a new one")
        await self._discard()
        try:
            return await step(await self._ensure())
        except DBAPIError as exc:
            if is_timeout(exc):
                self.timed_out = exc
                raise StatementTimedOut("A statement ran out of time.") from exc
            if exc.connection_invalidated:
                self.lost = exc
            raise

    async def _discard(self) -> None:
        """Drop the session whose connection died (the pool has already let it go)."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            await session.close()
        except Exception as exc:
            log.warning("closing a session on a dead connection failed", exc_info=exc)

    async def execute(
        self, stmt: Executable, params: dict[str, Any] | list[dict[str, Any]] | None = None
    ) -> Result[Any]:
        async def step(session: AsyncSession) -> Result[Any]:
            self.statements += 1
            return await session.execute(stmt, params)

        async with self._lock:
            return await self._run(step)

    async def scalars(self, stmt: Select[T]) -> Sequence[T]:
        return (await self.execute(stmt)).scalars().all()

    async def scalar(self, stmt: Select[T]) -> T | None:
        return (await self.execute(stmt)).scalar_one_or_none()

    async def add(self, *rows: Any) -> None:
        """Add rows and flush them, so that their ids are known."""

        async def step(session: AsyncSession) -> None:
            session.add_all(rows)
            self.statements += len(rows)
            await session.flush()

        async with self._lock:
            await self._run(step)

    async def try_add(self, *rows: Any) -> bool:
        """Add and flush rows inside a savepoint; False (and nothing kept) on a unique clash."""

        async def step(session: AsyncSession) -> bool:
            savepoint = await session.begin_nested()
            session.add_all(rows)
            self.statements += len(rows) + 2
            try:
                await session.flush()
            except IntegrityError:
                await savepoint.rollback()
                return False
            await savepoint.commit()
            return True

        async with self._lock:
            return await self._run(step)

    async def try_execute(self, stmt: Executable) -> bool:
        """Run a write inside a savepoint; False (and nothing kept) on a unique clash."""

        async def step(session: AsyncSession) -> bool:
            savepoint = await session.begin_nested()
            self.statements += 3
            try:
                await session.execute(stmt)
            except IntegrityError:
                await savepoint.rollback()
                return False
            await savepoint.commit()
            return True

        async with self._lock:
            return await self._run(step)

    async def begin_savepoint(self) -> Any:
        async def step(session: AsyncSession) -> Any:
            self.statements += 1
            return await session.begin_nested()

        async with self._lock:
            return await self._run(step)

    async def end_savepoint(self, savepoint: Any, *, keep: bool) -> None:
        async def step(_session: AsyncSession) -> None:
            self.statements += 1
            if keep:
                await savepoint.commit()
            else:
                await savepoint.rollback()

        async with self._lock:
            await self._run(step)

    async def commit(self) -> None:
        async with self._lock:
            if self.lost is not None:
                raise ConnectionLost("The transaction's connection was lost.") from self.lost
            if self.timed_out is not None:
                raise StatementTimedOut("A statement ran out of time.") from self.timed_out
            if self._session is not None:
                for stmt in self.before_commit:
                    await self._run(partial(_execute, stmt))
                await self._session.commit()
            self._begun = False
            self.before_commit = []
            done, self.after_commit = self.after_commit, []
        for callback in done:
            callback()

    async def rollback(self) -> None:
        async with self._lock:
            if self._session is not None:
                await self._session.rollback()
            self._begun, self.lost, self.timed_out = False, None, None
            self.before_commit = []
            self.after_commit = []

    async def close(self) -> None:
        async with self._lock:
            if self._session is not None:
                await self._session.close()
                self._session = None
            self._begun, self.lost, self.timed_out = False, None, None


async def _execute(stmt: Executable, session: AsyncSession) -> None:
    await session.execute(stmt)


def session_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

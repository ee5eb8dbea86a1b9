"""One session, one transaction per operation; safe under concurrent field resolution."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Executable, Result, Select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import WRITE_INTENT

T = TypeVar("T")


class Database:
    """A request's unit of work.

    Strawberry resolves sibling fields concurrently; an AsyncSession cannot run two
    statements at once, so every statement passes through one lock. The transaction
    starts on first use and ends with `commit()` or `rollback()`.
    """

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self._maker = maker
        self._session: AsyncSession | None = None
        self._lock = asyncio.Lock()
        self.write_intent = False
        self.statements = 0
        bind = maker.kw.get("bind")
        self.dialect: str = bind.dialect.name if bind is not None else "unknown"

    async def _ensure(self) -> AsyncSession:
        if self._session is None:
            self._session = self._maker()
            await self._session.connection(
                execution_options={WRITE_INTENT: True} if self.write_intent else None
            )
        return self._session

    async def execute(
        self, stmt: Executable, params: dict[str, Any] | list[dict[str, Any]] | None = None
    ) -> Result[Any]:
        async with self._lock:
            session = await self._ensure()
            self.statements += 1
            return await session.execute(stmt, params)

    async def scalars(self, stmt: Select[T]) -> Sequence[T]:
        return (await self.execute(stmt)).scalars().all()

    async def scalar(self, stmt: Select[T]) -> T | None:
        return (await self.execute(stmt)).scalar_one_or_none()

    async def add(self, *rows: Any) -> None:
        """Add rows and flush them, so that their ids are known."""
        async with self._lock:
            session = await self._ensure()
            session.add_all(rows)
            self.statements += len(rows)
            await session.flush()

    async def try_add(self, *rows: Any) -> bool:
        """Add and flush rows inside a savepoint; False (and nothing kept) on a unique clash."""
        async with self._lock:
            session = await self._ensure()
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

    async def try_execute(self, stmt: Executable) -> bool:
        """Run a write inside a savepoint; False (and nothing kept) on a unique clash."""
        async with self._lock:
            session = await self._ensure()
            savepoint = await session.begin_nested()
            self.statements += 3
            try:
                await session.execute(stmt)
            except IntegrityError:
                await savepoint.rollback()
                return False
            await savepoint.commit()
            return True

    async def begin_savepoint(self) -> Any:
        async with self._lock:
            session = await self._ensure()
            self.statements += 1
            return await session.begin_nested()

    async def end_savepoint(self, savepoint: Any, *, keep: bool) -> None:
        async with self._lock:
            self.statements += 1
            if keep:
                await savepoint.commit()
            else:
                await savepoint.rollback()

    async def commit(self) -> None:
        async with self._lock:
            if self._session is not None:
                await self._session.commit()

    async def rollback(self) -> None:
        async with self._lock:
            if self._session is not None:
                await self._session.rollback()

    async def close(self) -> None:
        async with self._lock:
            if self._session is not None:
                await self._session.close()
                self._session = None


def session_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

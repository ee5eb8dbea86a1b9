"""Engine construction for SQLite (aiosqlite) and PostgreSQL (asyncpg) from one URL."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_

# Execution option that makes SQLite take the write lock at BEGIN, so that two writers
# queue on busy_timeout instead of one failing with "database is locked" on upgrade.
WRITE_INTENT = "caseload_write_intent"
# Execution option that lifts the statement timeout for a connection's statements (migrations).
UNBOUNDED = "caseload_unbounded"
# Where a SQLite connection keeps its Deadline (the pooled connection's `info`).
DEADLINE = "caseload_deadline"
# SQLite calls the progress handler every this many virtual machine instructions.
PROGRESS_EVERY = 1000
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement cancelled (its timeout)


class Deadline:
    """When the statement running on one SQLite connection must stop: its progress handler,
    called from the connection's own thread, interrupts the statement once `at` passes."""

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at: float | None = None

    def start(self) -> None:
        self.at = time.monotonic() + self.seconds

    def stop(self) -> None:
        self.at = None

    def expire(self) -> None:
        """Stop the running statement now (its client has gone)."""
        self.at = 0.0

    def __call__(self) -> int:
        at = self.at
        return 1 if at is not None and time.monotonic() > at else 0


def is_timeout(error: BaseException) -> bool:
    """Whether the database stopped a statement at its timeout (or on request): PostgreSQL's
    query_canceled, or SQLite's interruption, raised by either driver or through SQLAlchemy,
    or the cause of the error raised instead (SQLite ends the whole transaction on an
    interrupted write, and the ORM's rollback of its savepoint then fails)."""
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        found = pending.pop()
        if found is None or id(found) in seen:
            continue
        seen.add(id(found))
        if (
            isinstance(found, asyncpg.QueryCanceledError)
            or getattr(found, "sqlstate", None) == QUERY_CANCELED
            or (type(found).__name__ == "OperationalError" and str(found) == "interrupted")
        ):
            return True
        if isinstance(found, DBAPIError):
            pending.append(found.orig)
        pending += [found.__cause__, found.__context__]
    return False


def normalise_url(url: str) -> str:
    """Accept plain driver-less URLs and pick the async driver."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    max_overflow: int = 0,
    pool_timeout: float = 30.0,
    random_page_cost: float | None = None,
    statement_timeout_ms: int | None = None,
    plan_cache_mode: str | None = None,
) -> AsyncEngine:
    """A pool of `pool_size` (+ `max_overflow`) connections, each waited for at most
    `pool_timeout` seconds; SQLite one file per URL.

    `random_page_cost` is set on every PostgreSQL session: the scope predicates read a
    caller's few rows through indexes, and with the server's default (4, for uncached disks)
    the planner hashes a whole table instead when it is small (at 10,000 learners, q1's
    statement went from 3.45 to 2.55 ms with 1.1). `plan_cache_mode` likewise (PostgreSQL's
    own for prepared statements: `force_generic_plan` plans each statement once).

    No ping on checkout (a round trip per operation): a connection found dead is replaced
    where it is found, and its statement run again where that is safe (db/session.py).
    `statement_timeout_ms` bounds every statement (None or 0: unbounded): PostgreSQL's own
    `statement_timeout`, set when each connection opens (no round trip per request); on SQLite
    a progress handler that interrupts a statement past its deadline (`Deadline`, started by
    each statement). Either way the statement fails (`is_timeout`); a connection with the
    execution option UNBOUNDED (migrations) runs without it.

    JSON from the database (asyncpg's json codec: the compiled path's answers; JSON columns)
    is read with orjson, about twice as fast as json on a page; the numbers in it are ids and
    counts, which orjson reads exactly (it reads integers past 64 bits as floats).
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            echo=echo,
            connect_args={"timeout": 30},
            json_deserializer=orjson.loads,
            **(
                {}
                if ":memory:" in url
                else {
                    "pool_size": pool_size,
                    "max_overflow": max_overflow,
                    "pool_timeout": pool_timeout,
                }
            ),
        )
        _configure_sqlite(engine, statement_timeout_ms)
        return engine
    server_settings = {}
    if random_page_cost is not None:
        server_settings["random_page_cost"] = str(random_page_cost)
    if statement_timeout_ms:
        server_settings["statement_timeout"] = str(statement_timeout_ms)
    if plan_cache_mode:
        server_settings["plan_cache_mode"] = plan_cache_mode
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        json_deserializer=orjson.loads,
        connect_args={"server_settings": server_settings},
    )


def _configure_sqlite(engine: AsyncEngine, statement_timeout_ms: int | None) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (savepoints work).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        if statement_timeout_ms:
            deadline = Deadline(statement_timeout_ms / 1000)
            record.info[DEADLINE] = deadline
            await_(dbapi_connection._connection.set_progress_handler(deadline, PROGRESS_EVERY))

    if statement_timeout_ms:

        @event.listens_for(sync_engine, "before_cursor_execute")
        def _start(conn: Connection, *_: object) -> None:
            deadline = conn.info.get(DEADLINE)
            if deadline is not None and not conn.get_execution_options().get(UNBOUNDED):
                deadline.start()

        @event.listens_for(sync_engine, "after_cursor_execute")
        def _stop(conn: Connection, *_: object) -> None:
            deadline = conn.info.get(DEADLINE)
            if deadline is not None:
                deadline.stop()

        @event.listens_for(sync_engine, "handle_error")
        def _stopped(context: Any) -> None:
            connection = context.connection
            deadline = connection.info.get(DEADLINE) if connection is not None else None
            if deadline is not None:
                deadline.stop()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_INTENT, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

"""Engine construction for SQLite (aiosqlite) and PostgreSQL (asyncpg) from one URL."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# Execution option that makes SQLite take the write lock at BEGIN, so that two writers
# queue on busy_timeout instead of one failing with "database is locked" on upgrade.
WRITE_INTENT = "caseload_write_intent"


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
) -> AsyncEngine:
    """A pool of `pool_size` (+ `max_overflow`) connections, each waited for at most
    `pool_timeout` seconds; SQLite one file per URL.

    `random_page_cost` is set on every PostgreSQL session: the scope predicates read a
    caller's few rows through indexes, and with the server's default (4, for uncached disks)
    the planner hashes a whole table instead when it is small (at 10,000 learners, q1's
    statement went from 3.45 to 2.55 ms with 1.1).

    No ping on checkout (a round trip per operation): a connection found dead is replaced
    where it is found, and its statement run again where that is safe (db/session.py).
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
        _configure_sqlite(engine)
        return engine
    server_settings = {}
    if random_page_cost is not None:
        server_settings["random_page_cost"] = str(random_page_cost)
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        json_deserializer=orjson.loads,
        connect_args={"server_settings": server_settings},
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (savepoints work).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_INTENT, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

"""Alembic, driven from code: the only way the schema changes."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import UNBOUNDED

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Migration(NamedTuple):
    """The revision before and after an upgrade; None for an empty database."""

    before: str | None
    after: str | None


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def on_dialect(dialect: str) -> Callable[..., bool]:
    """Alembic's `include_object` comparing the models with a database of this dialect: an
    index declared for another dialect only (`ddl_if`, e.g. db.models.trigram_index) is not
    expected there."""

    def include(item: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        condition = getattr(item, "_ddl_if", None)
        wanted = None if condition is None else condition.dialect
        return reflected or wanted is None or wanted == dialect

    return include


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's revision. Pooled connections are not pinged: one the database had
    dropped (after a restart, say) is replaced and the revision asked once more."""
    try:
        return await _read_revision(engine)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return await _read_revision(engine)


async def _read_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> Migration:
    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        database = engine.url.database
        if database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)

    def run(connection: Connection) -> Migration:
        before = _current(connection)
        command.upgrade(alembic_config(connection), revision)
        return Migration(before, _current(connection))

    async with engine.begin() as conn:
        await unbounded(conn)
        return await conn.run_sync(run)


async def unbounded(conn: AsyncConnection) -> None:
    """Lift the statement timeout for this connection's transaction: a migration may build an
    index over every row."""
    await conn.execution_options(**{UNBOUNDED: True})
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("SET LOCAL statement_timeout = 0")


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    async with engine.begin() as conn:
        await unbounded(conn)
        await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))

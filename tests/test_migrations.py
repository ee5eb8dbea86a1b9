"""Alembic is the only way the schema changes: the migrations build exactly the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from db.base import Base
from db.engine import create_engine
from db.migrate import downgrade, upgrade
from tests.conftest import Backend


async def test_migrations_match_the_models(backend: Backend) -> None:
    async with backend.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
            )
        )
    assert diff == []


async def test_partial_unique_indexes_exist(backend: Backend) -> None:
    async with backend.engine.connect() as conn:
        indexes = await conn.run_sync(
            lambda sync: {i["name"]: i for i in inspect(sync).get_indexes("record_assignments")}
        )
    assert indexes["uq_record_assignments_active"]["unique"]


async def test_upgrade_downgrade_upgrade(tmp_path: object) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/m.sqlite3")
    try:
        await upgrade(engine)
        await downgrade(engine)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert tables == ["alembic_version"]
        await upgrade(engine)
    finally:
        await engine.dispose()

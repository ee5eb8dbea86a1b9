"""Alembic is the only way the schema changes: the migrations build exactly the models."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from db.base import Base
from db.engine import create_engine
from db.migrate import downgrade, on_dialect, upgrade
from db.models import Learner, User
from resolvers.context import Limits
from resolvers.pagination import matches, search_pattern
from tests.conftest import Backend


async def test_migrations_match_the_models(backend: Backend) -> None:
    async with backend.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(
                    sync,
                    opts={"compare_type": True, "include_object": on_dialect(sync.dialect.name)},
                ),
                Base.metadata,
            )
        )
    assert diff == []


async def test_partial_unique_indexes_exist(backend: Backend) -> None:
    async with backend.engine.connect() as conn:
        indexes = await conn.run_sync(
            lambda sync: {i["name"]: i for i in inspect(sync).get_indexes("record_assignments")}
        )
    assert indexes["uq_record_assignments_active"]["unique"]


async def test_upgrade_downgrade_upgrade(empty_database: str) -> None:
    engine = create_engine(empty_database)
    try:
        await upgrade(engine)
        await downgrade(engine)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert tables == ["alembic_version"]
        await upgrade(engine)
    finally:
        await engine.dispose()


# Each column a substring search reads, and the trigram index PostgreSQL reads it through.
TRIGRAM_INDEXES = {
    "ix_learners_name_trgm": Learner.name,
    "ix_learners_email_trgm": Learner.email,
    "ix_users_name_trgm": User.name,
    "ix_users_email_trgm": User.email,
}


def _index_scans(plan: dict[str, Any]) -> set[str]:
    found = {plan["Index Name"]} if plan["Node Type"] == "Bitmap Index Scan" else set()
    for child in plan.get("Plans", ()):
        found |= _index_scans(child)
    return found


async def test_a_search_term_of_three_characters_can_read_a_trigram_index(
    backend: Backend,
) -> None:
    """On PostgreSQL each searched column has a GIN trigram index that the very expression the
    search builds (`matches`) can use; SQLite has none, and scans."""
    await backend.clear(truncate=True)  # estimates of empty tables, not of earlier tests' rows
    async with backend.engine.connect() as conn:
        indexes = await conn.run_sync(
            lambda sync: {
                i["name"]
                for table in ("learners", "users")
                for i in inspect(sync).get_indexes(table)
            }
        )
        if backend.name == "sqlite":
            assert not indexes & set(TRIGRAM_INDEXES)
            return
        assert set(TRIGRAM_INDEXES) <= indexes
        pattern = search_pattern(Limits(), " Ann ")
        # The tables are all but empty: the planner would rather scan them, unless told not to.
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        for name, column in TRIGRAM_INDEXES.items():
            stmt = select(column.class_.id).where(matches(column, pattern))
            sql = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()
            assert _index_scans(plan[0]["Plan"]) == {name}, (name, plan)

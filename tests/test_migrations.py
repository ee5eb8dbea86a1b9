"""Alembic is the only way the schema changes: the migrations build exactly the models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import column, insert, inspect, select, table, text

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


async def test_upgrading_links_each_earlier_change_to_its_one_audit_event(
    empty_database: str,
) -> None:
    """0018 links the changes written before it to the audit event written with them: by
    object where the event names one, else the one event of that time, action and actor (a
    bulk action's); where two events could be it, the change stays unlinked."""
    events = table(
        "audit_events",
        column("id"),
        column("at"),
        column("action"),
        column("subject_type"),
        column("subject_id"),
    )
    changes = table(
        "changes",
        column("id"),
        column("position"),
        column("at"),
        column("action"),
        column("subject_type"),
        column("subject_id"),
    )
    t1, t2, t3 = (datetime(2026, 12, 1, 9, m, tzinfo=UTC) for m in (1, 2, 3))
    engine = create_engine(empty_database)
    try:
        await upgrade(engine, "0017")
        async with engine.begin() as conn:
            await conn.execute(
                insert(events),
                [
                    {
                        "id": 1,
                        "at": t1,
                        "action": "LEARNER_CREATED",
                        "subject_type": "Learner",
                        "subject_id": 7,
                    },
                    {
                        "id": 2,
                        "at": t1,
                        "action": "LEARNER_CREATED",
                        "subject_type": "Learner",
                        "subject_id": 8,
                    },
                    {
                        "id": 3,
                        "at": t2,
                        "action": "LICENCES_RECALLED",
                        "subject_type": "Licence",
                        "subject_id": None,
                    },
                    {
                        "id": 4,
                        "at": t3,
                        "action": "LICENCES_RECALLED",
                        "subject_type": "Licence",
                        "subject_id": None,
                    },
                    {
                        "id": 5,
                        "at": t3,
                        "action": "LICENCES_RECALLED",
                        "subject_type": "Licence",
                        "subject_id": None,
                    },
                ],
            )
            await conn.execute(
                insert(changes),
                [
                    {
                        "id": 10,
                        "position": 1,
                        "at": t1,
                        "action": "LEARNER_CREATED",
                        "subject_type": "Learner",
                        "subject_id": 7,
                    },
                    {
                        "id": 11,
                        "position": 1,
                        "at": t1,
                        "action": "LEARNER_CREATED",
                        "subject_type": "Learner",
                        "subject_id": 8,
                    },
                    {
                        "id": 12,
                        "position": 2,
                        "at": t2,
                        "action": "LICENCES_RECALLED",
                        "subject_type": "Licence",
                        "subject_id": 1,
                    },
                    {
                        "id": 13,
                        "position": 2,
                        "at": t2,
                        "action": "LICENCES_RECALLED",
                        "subject_type": "Licence",
                        "subject_id": 2,
                    },
                    {
                        "id": 14,
                        "position": 3,
                        "at": t3,
                        "action": "LICENCES_RECALLED",
                        "subject_type": "Licence",
                        "subject_id": 3,
                    },
                ],
            )
        await upgrade(engine)
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT id, audit_event_id FROM changes"))
            linked: dict[int, int | None] = {pk: event for pk, event in rows}
        assert linked == {10: 1, 11: 2, 12: 3, 13: 3, 14: None}
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


async def test_rules_made_twice_before_keep_the_oldest_in_force(empty_database: str) -> None:
    """Migration 0010 makes one rule in force per course, scope and units: copies made before
    it are marked deleted, the oldest (the one that fired) stays."""
    engine = create_engine(empty_database)
    try:
        await upgrade(engine, "0009")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO organisations (id, name, slug, created_at) "
                    "VALUES (1, 'O', 'o', '2026-01-01')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO courses (id, title, code, created_at) "
                    "VALUES (1, 'C', 'C1', '2026-01-01')"
                )
            )
            await conn.execute(
                text("INSERT INTO locations (id, organisation_id, name) VALUES (1, 1, 'L')")
            )
            rules = [
                (1, "ENTIRE_COMPANY", None, False),
                (2, "ENTIRE_COMPANY", None, True),  # deleted already: stays so
                (3, "ENTIRE_COMPANY", None, False),  # a copy of 1
                (4, "LOCATION", 1, False),
                (5, "LOCATION", 1, False),  # a copy of 4
                (6, "ENTIRE_COMPANY", None, False),  # another copy of 1
            ]
            for pk, scope, location, deleted in rules:
                await conn.execute(
                    text(
                        "INSERT INTO auto_allocation_rules (id, organisation_id, course_id, scope, "
                        "location_id, created_at) "
                        "VALUES (:pk, 1, 1, :scope, :location, '2026-01-01')"
                    ),
                    {"pk": pk, "scope": scope, "location": location},
                )
                if deleted:
                    await conn.execute(
                        text(
                            "UPDATE auto_allocation_rules SET deleted_at = created_at "
                            "WHERE id = :pk"
                        ),
                        {"pk": pk},
                    )
        await upgrade(engine)
        async with engine.connect() as conn:
            in_force = await conn.execute(
                text("SELECT id FROM auto_allocation_rules WHERE deleted_at IS NULL ORDER BY id")
            )
            assert list(in_force.scalars()) == [1, 4]
    finally:
        await engine.dispose()

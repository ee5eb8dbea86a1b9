"""trigram indexes for substring search (PostgreSQL's pg_trgm; nothing on SQLite)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# (index, table, column): the columns a search matches with ILIKE '%term%' on their own.
# Not apprentice_records.programme: the records search is `programme ILIKE … OR the learner's
# name ILIKE …`, an OR across two tables, which PostgreSQL evaluates on the organisation's
# records whatever index the programme has (its learners' names read the index below).
TRIGRAM_INDEXES = (
    ("ix_learners_name_trgm", "learners", "name"),
    ("ix_learners_email_trgm", "learners", "email"),
    ("ix_users_name_trgm", "users", "name"),
    ("ix_users_email_trgm", "users", "email"),
)


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _postgresql():
        return  # SQLite has no trigram index: its searches scan
    # A trusted extension (PostgreSQL 13+): the database's owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, table, column in TRIGRAM_INDEXES:
        op.create_index(
            name,
            table,
            [column],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={column: "gin_trgm_ops"},
        )


def downgrade() -> None:
    if not _postgresql():
        return
    for name, table, _column in reversed(TRIGRAM_INDEXES):
        op.drop_index(name, table_name=table)
    # The extension stays: it may have been there before, or serve something else.

"""the change outbox: one row per committed change to one object, in commit order

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import db.base

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("id", ID, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("at", db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("organisation_id", ID, nullable=True),
        sa.Column("actor_id", ID, nullable=True),
        sa.Column("api_key_id", ID, nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject_type", sa.String(length=64), nullable=False),
        sa.Column("subject_id", ID, nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["organisation_id"], ["organisations.id"], name="fk_changes_organisation_id_organisations"
        ),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name="fk_changes_actor_id_users"),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name="fk_changes_api_key_id_api_keys"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_changes"),
    )
    op.create_index("ix_changes_position", "changes", ["position", "id"])
    op.create_index(
        "ix_changes_unpositioned",
        "changes",
        ["id"],
        sqlite_where=sa.text("position IS NULL"),
        postgresql_where=sa.text("position IS NULL"),
    )
    op.create_index("ix_changes_subject", "changes", ["subject_type", "subject_id"])
    op.create_index("ix_changes_at", "changes", ["at"])


def downgrade() -> None:
    op.drop_index("ix_changes_at", table_name="changes")
    op.drop_index("ix_changes_subject", table_name="changes")
    op.drop_index("ix_changes_unpositioned", table_name="changes")
    op.drop_index("ix_changes_position", table_name="changes")
    op.drop_table("changes")

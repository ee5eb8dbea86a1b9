"""index for the assigned scopes: a user's active assignments by organisation, index-only

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-07 22:50:00
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

ACTIVE = sa.text("ended_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_record_assignments_user_org_active",
        "record_assignments",
        ["user_id", "organisation_id", "record_id"],
        unique=False,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("ix_record_assignments_user_org_active", table_name="record_assignments")

"""indexes for the unassigned filter and count: live records and active assignments by organisation

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ACTIVE = sa.text("ended_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_records_org_status_learner",
        "apprentice_records",
        ["organisation_id", "status", "learner_id", "id"],
        unique=False,
    )
    op.create_index(
        "ix_record_assignments_org_role_active",
        "record_assignments",
        ["organisation_id", "role", "record_id"],
        unique=False,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("ix_record_assignments_org_role_active", table_name="record_assignments")
    op.drop_index("ix_records_org_status_learner", table_name="apprentice_records")

"""one active coordinator per record; audit client from the credential, user agent apart

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ONE_COORDINATOR = sa.text("role = 'TRAINING_COORDINATOR' AND ended_at IS NULL")


def upgrade() -> None:
    # Records that gained a second coordinator keep the newest; the others end now.
    op.execute(
        """
        UPDATE record_assignments SET ended_at = CURRENT_TIMESTAMP
        WHERE role = 'TRAINING_COORDINATOR' AND ended_at IS NULL AND id < (
            SELECT max(newer.id) FROM record_assignments AS newer
            WHERE newer.record_id = record_assignments.record_id
              AND newer.role = 'TRAINING_COORDINATOR' AND newer.ended_at IS NULL
        )
        """
    )
    op.create_index(
        "uq_record_assignments_one_coordinator",
        "record_assignments",
        ["record_id"],
        unique=True,
        sqlite_where=ONE_COORDINATOR,
        postgresql_where=ONE_COORDINATOR,
    )
    op.add_column("audit_events", sa.Column("user_agent", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("user_agent")
    op.drop_index("uq_record_assignments_one_coordinator", table_name="record_assignments")

"""one auto-allocation rule in force per course, scope and units

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 17:00:00

Rules made twice before this migration are kept as history: every copy but the oldest is
marked deleted, which changes nothing (a learner's licence for a course comes from its oldest
matching rule).
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

IN_FORCE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.execute(
        """
        UPDATE auto_allocation_rules SET deleted_at = created_at
        WHERE deleted_at IS NULL AND EXISTS (
            SELECT 1 FROM auto_allocation_rules AS older
            WHERE older.deleted_at IS NULL
              AND older.organisation_id = auto_allocation_rules.organisation_id
              AND older.course_id = auto_allocation_rules.course_id
              AND older.scope = auto_allocation_rules.scope
              AND coalesce(older.location_id, 0) = coalesce(auto_allocation_rules.location_id, 0)
              AND coalesce(older.department_id, 0)
                  = coalesce(auto_allocation_rules.department_id, 0)
              AND older.id < auto_allocation_rules.id
        )
        """
    )
    op.create_index(
        "uq_auto_allocation_rules_in_force",
        "auto_allocation_rules",
        [
            "organisation_id",
            "course_id",
            "scope",
            sa.text("coalesce(location_id, 0)"),
            sa.text("coalesce(department_id, 0)"),
        ],
        unique=True,
        sqlite_where=IN_FORCE,
        postgresql_where=IN_FORCE,
    )


def downgrade() -> None:
    op.drop_index("uq_auto_allocation_rules_in_force", table_name="auto_allocation_rules")

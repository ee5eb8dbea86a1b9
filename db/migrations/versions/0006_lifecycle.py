"""people and records over time: deactivated memberships, the evidence queue, organisations by name

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

import db.base
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("memberships") as batch:
        batch.add_column(
            sa.Column("deactivated_at", db.base.UtcDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("deactivated_by_id", Id, nullable=True))
        batch.create_foreign_key(
            op.f("fk_memberships_deactivated_by_id_users"),
            "users",
            ["deactivated_by_id"],
            ["id"],
        )
    op.create_index(
        "ix_evidence_queue",
        "evidence",
        ["organisation_id", "status", "submitted_at", "id"],
        unique=False,
    )
    op.create_index("ix_organisations_name", "organisations", ["name", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_organisations_name", table_name="organisations")
    op.drop_index("ix_evidence_queue", table_name="evidence")
    with op.batch_alter_table("memberships") as batch:
        batch.drop_constraint(op.f("fk_memberships_deactivated_by_id_users"), type_="foreignkey")
        batch.drop_column("deactivated_by_id")
        batch.drop_column("deactivated_at")

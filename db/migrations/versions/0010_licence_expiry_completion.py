"""licences expire and complete: expires_at, completed_at

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

import db.base
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns: added in place on SQLite too. Expiry is read at request time against
    # `status = 'ACTIVE'`; the partial unique index on ACTIVE licences stays as it is.
    for column in ("expires_at", "completed_at"):
        op.add_column(
            "licences", sa.Column(column, db.base.UtcDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("licences") as batch:
        batch.drop_column("completed_at")
        batch.drop_column("expires_at")

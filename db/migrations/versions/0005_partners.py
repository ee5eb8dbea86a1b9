"""partners: API keys from the API, audit trail indexes, idempotency keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

import db.base
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # SQLite adds a column with its REFERENCES inline; a batch copy would drop api_keys,
    # which audit_events references.
    op.add_column(
        "api_keys",
        sa.Column(
            "created_by_id",
            Id,
            sa.ForeignKey("users.id", name=op.f("fk_api_keys_created_by_id_users")),
            nullable=True,
        ),
        inline_references=sqlite,
    )
    op.add_column(
        "api_keys", sa.Column("last_used_at", db.base.UtcDateTime(timezone=True), nullable=True)
    )
    op.create_index("ix_api_keys_org", "api_keys", ["organisation_id", "id"])

    op.drop_index("ix_audit_org", table_name="audit_events")
    op.create_index("ix_audit_org_at", "audit_events", ["organisation_id", "at", "id"])
    op.create_index(
        "ix_audit_org_action_at", "audit_events", ["organisation_id", "action", "at", "id"]
    )
    op.create_index("ix_audit_actor_at", "audit_events", ["actor_id", "at", "id"])
    op.create_index("ix_audit_api_key_at", "audit_events", ["api_key_id", "at", "id"])

    op.create_table(
        "idempotency_keys",
        sa.Column("id", Id, nullable=False),
        sa.Column("principal", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("created_at", db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        "uq_idempotency_keys_principal_key", "idempotency_keys", ["principal", "key"], unique=True
    )
    op.create_index("ix_idempotency_keys_expires", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_expires", table_name="idempotency_keys")
    op.drop_index("uq_idempotency_keys_principal_key", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")

    op.drop_index("ix_audit_api_key_at", table_name="audit_events")
    op.drop_index("ix_audit_actor_at", table_name="audit_events")
    op.drop_index("ix_audit_org_action_at", table_name="audit_events")
    op.drop_index("ix_audit_org_at", table_name="audit_events")
    op.create_index("ix_audit_org", "audit_events", ["organisation_id", "id"])

    op.drop_index("ix_api_keys_org", table_name="api_keys")
    if op.get_bind().dialect.name == "sqlite":
        # A copy of the table without the columns (refused while audit events name a key).
        with op.batch_alter_table("api_keys") as batch:
            batch.drop_column("last_used_at")
            batch.drop_column("created_by_id")
    else:
        op.drop_constraint("fk_api_keys_created_by_id_users", "api_keys", type_="foreignkey")
        op.drop_column("api_keys", "last_used_at")
        op.drop_column("api_keys", "created_by_id")

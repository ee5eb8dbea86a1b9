"""organisation identity providers: an OpenID Connect issuer bound to one organisation

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import db.base

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "identity_providers",
        sa.Column("id", ID, nullable=False),
        sa.Column("organisation_id", ID, nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("audience", sa.String(length=500), nullable=False),
        sa.Column("email_claim", sa.String(length=100), nullable=False),
        sa.Column("updated_at", db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name="fk_identity_providers_organisation_id_organisations",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_identity_providers"),
        sa.UniqueConstraint("organisation_id", name="uq_identity_providers_organisation_id"),
        sa.UniqueConstraint("issuer", "audience", name="uq_identity_providers_issuer"),
    )


def downgrade() -> None:
    op.drop_table("identity_providers")

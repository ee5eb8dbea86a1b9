"""an index for every order a list offers: (organisation, sort column, id)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 19:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_learners_org_created", "learners", ["organisation_id", "created_at", "id"]),
    ("ix_records_org_programme", "apprentice_records", ["organisation_id", "programme", "id"]),
    ("ix_licences_org", "licences", ["organisation_id", "id"]),
    ("ix_evidence_org_submitted", "evidence", ["organisation_id", "submitted_at", "id"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in INDEXES:
        op.drop_index(name, table_name=table)

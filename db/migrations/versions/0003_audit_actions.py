"""audit actions from one vocabulary, object then verb

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RENAMED = {
    "organisation.create": "ORGANISATION_CREATED",
    "location.create": "LOCATION_CREATED",
    "department.create": "DEPARTMENT_CREATED",
    "staff.create": "STAFF_MEMBER_CREATED",
    "external_assessor.create": "EXTERNAL_ASSESSOR_CREATED",
    "learner.create": "LEARNER_CREATED",
    "record.create": "APPRENTICE_RECORD_CREATED",
    "allocation.create": "ASSESSOR_ALLOCATED",
    "allocation.end": "ASSESSOR_DEALLOCATED",
    "records.assign": "RECORDS_ASSIGNED",
    "records.unassign": "RECORDS_UNASSIGNED",
    "records.assign_coordinator": "TRAINING_COORDINATOR_ASSIGNED",
    "evidence.submit": "EVIDENCE_SUBMITTED",
    "evidence.decide": "EVIDENCE_DECIDED",
}

events = sa.table("audit_events", sa.column("action", sa.String))


def upgrade() -> None:
    for old, new in RENAMED.items():
        op.execute(events.update().where(events.c.action == old).values(action=new))


def downgrade() -> None:
    for old, new in RENAMED.items():
        op.execute(events.update().where(events.c.action == new).values(action=old))

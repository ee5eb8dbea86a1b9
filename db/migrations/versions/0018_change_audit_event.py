"""each change points at the audit event it comes from: one record of who, how and what

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_changes = sa.table(
    "changes",
    sa.column("id", ID),
    sa.column("audit_event_id", ID),
    sa.column("at"),
    sa.column("organisation_id", ID),
    sa.column("actor_id", ID),
    sa.column("api_key_id", ID),
    sa.column("action"),
    sa.column("subject_type"),
    sa.column("subject_id", ID),
)
_events = sa.table(
    "audit_events",
    sa.column("id", ID),
    sa.column("at"),
    sa.column("organisation_id", ID),
    sa.column("actor_id", ID),
    sa.column("api_key_id", ID),
    sa.column("action"),
    sa.column("subject_type"),
    sa.column("subject_id", ID),
)


def _backfill(*, same_subject: bool) -> None:
    """Link the changes still unlinked to the one audit event written with them (same time,
    action, organisation, actor and key; `same_subject`: and object). Where two or more events
    could be it, the change stays unlinked rather than take the wrong one's details."""
    same = [
        _events.c.at == _changes.c.at,
        _events.c.action == _changes.c.action,
        _events.c.organisation_id.is_not_distinct_from(_changes.c.organisation_id),
        _events.c.actor_id.is_not_distinct_from(_changes.c.actor_id),
        _events.c.api_key_id.is_not_distinct_from(_changes.c.api_key_id),
    ]
    if same_subject:
        same += [
            _events.c.subject_type == _changes.c.subject_type,
            _events.c.subject_id == _changes.c.subject_id,
        ]
    only = (
        sa.select(sa.func.min(_events.c.id))
        .where(*same)
        .having(sa.func.count() == 1)
        .scalar_subquery()
    )
    op.execute(
        sa.update(_changes)
        .where(_changes.c.audit_event_id.is_(None))
        .values(audit_event_id=only)
    )


def upgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("audit_event_id", ID, nullable=True))
        batch.create_foreign_key(
            "fk_changes_audit_event_id_audit_events", "audit_events", ["audit_event_id"], ["id"]
        )
    op.create_index("ix_changes_audit_event", "changes", ["audit_event_id"])
    _backfill(same_subject=True)  # an event on one object: its own change
    _backfill(same_subject=False)  # a bulk action's objects, the objects an action touched


def downgrade() -> None:
    op.drop_index("ix_changes_audit_event", table_name="changes")
    with op.batch_alter_table("changes") as batch:
        batch.drop_constraint("fk_changes_audit_event_id_audit_events", type_="foreignkey")
        batch.drop_column("audit_event_id")

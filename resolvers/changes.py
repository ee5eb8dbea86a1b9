"""The change outbox and the feed that reads it: every committed change, in commit order.

Writing. Every mutation records what it did through `resolvers.audit.audit_all`, in its own
transaction; the same call writes the outbox: one `changes` row per audit verb and object (a
bulk action, whose audit event names a table, writes one row per object it names). A rolled-back
mutation leaves none, and a repeat that changes nothing writes no audit event and so no change.

Position. A reader stores the cursor of the last change it saw and must never miss a change that
commits later with an earlier position. An id from a sequence does not give that on PostgreSQL:
ids are taken before commit, so a transaction holding id 7 can commit after a reader has seen
id 8 and moved past it. Instead each row stores its transaction's id, `pg_current_xact_id()`,
and a reader reads only rows whose xid is below its snapshot's xmin
(`pg_snapshot_xmin(pg_current_snapshot())`): every transaction below the xmin has finished,
committed or rolled back, so no row can still appear below that bound. The cursor is (xid, id);
the id orders the rows of one transaction. The order is that of the transactions' first write,
which respects commit order for every pair of transactions that did not overlap (one committed
before the other began); overlapping ones are ordered by xid, the same way for every reader. A
long transaction holds the bound back: changes after it wait until it ends, none is skipped.

On SQLite writers are serialised (BEGIN IMMEDIATE), so an id is taken and committed before the
next writer begins: the plain increasing id is commit order and xid is 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Text, cast, func, insert, literal

from db.models import AuditAction, Change
from resolvers.context import Context
from resolvers.ids import decode_id, encode_id


@dataclass(frozen=True)
class Written:
    """One object a change is about, with what the change says of it."""

    subject_type: str
    subject_id: int
    details: dict[str, Any] | None


# Bulk actions: which list in the audit details names the objects, their type, and which of the
# event's other details each object's change keeps.
_PER_OBJECT: dict[AuditAction, tuple[str, tuple[str, ...]]] = {
    AuditAction.LEARNERS_IMPORTED: ("learnerIds", ()),
    AuditAction.LICENCES_ALLOCATED: ("licenceIds", ("courseId", "ruleId", "expiresAt")),
    AuditAction.LICENCES_RECALLED: ("licenceIds", ()),
    AuditAction.LICENCES_WITHHELD: ("learnerIds", ("courseId", "ruleId", "reason")),
    AuditAction.RECORDS_ASSIGNED: ("assignmentIds", ("role",)),
    AuditAction.RECORDS_UNASSIGNED: ("endedAssignmentIds", ("role", "assigneeId")),
}


def changes_of(
    action: AuditAction,
    subject_type: str,
    subject_id: int | None,
    details: Mapping[str, Any] | None,
) -> list[Written]:
    """The changes one audit event stands for: one per object it acted on."""
    per_object = _PER_OBJECT.get(action)
    if per_object is None or details is None or per_object[0] not in details:
        if subject_id is None:  # an event on a whole table names its objects in its details
            return []
        return [Written(subject_type, subject_id, None if details is None else dict(details))]
    listed, kept = per_object
    common = {k: details[k] for k in kept if k in details}
    if action is AuditAction.RECORDS_ASSIGNED and subject_id is not None:
        common["assigneeId"] = encode_id(subject_type, subject_id)
    found = []
    for value in details[listed]:
        type_name, pk = decode_id(value)
        found.append(Written(type_name, pk, dict(common) or None))
    return found


def transaction_position(dialect: str) -> ColumnElement[int]:
    """The writing transaction's place in commit order (see the module docstring)."""
    if dialect == "postgresql":
        return cast(cast(func.pg_current_xact_id(), Text), BigInteger)
    return literal(0, BigInteger)


async def write_changes(
    ctx: Context,
    at: datetime,
    events: Sequence[tuple[AuditAction, str, int | None, int | None, Mapping[str, Any] | None]],
) -> None:
    """Write the outbox rows of (action, subject type, subject id, organisation, details)."""
    me = ctx.me
    rows = [
        {
            "at": at,
            "organisation_id": organisation_id,
            "actor_id": me.actor_id,
            "api_key_id": me.api_key_id,
            "action": action,
            "subject_type": w.subject_type,
            "subject_id": w.subject_id,
            "details": w.details,
        }
        for action, subject_type, subject_id, organisation_id, details in events
        for w in changes_of(action, subject_type, subject_id, details)
    ]
    if rows:
        stmt = insert(Change).values(xid=transaction_position(ctx.db.dialect))
        await ctx.db.execute(stmt, rows)

"""The change outbox and the feed that reads it: every committed change, in commit order.

Writing. Every mutation records what it did through `resolvers.audit.audit_all`, in its own
transaction; the same call writes the outbox: one `changes` row per audit verb and object (a
bulk action, whose audit event names a table, writes one row per object it names), each naming
the audit event it comes from (`audit_event_id`): the event is the record of who did it, through
which client, with which details, and `auditEvents` lists the events, newest first, while the
feed lists their changes in commit order. A rolled-back mutation leaves neither, and a repeat
that changes nothing writes no audit event and so no change.

Position. A reader stores the cursor of the last change it saw and must never miss a change that
commits later with an earlier position. An id from a sequence does not give that on PostgreSQL:
ids are taken before commit, so a transaction holding id 7 can commit after a reader has seen
id 8 and moved past it. Nor does the writing transaction's id bounded by the reader's snapshot
xmin (`pg_snapshot_xmin(pg_current_snapshot())`) serve well: the xmin is the cluster's, so any
transaction in any database of the server (a report, a migration, another application) holds
every reader back for as long as it runs; on the shared test server it did so all the time.

So the position is given at commit, by a single sequencer: the last thing a transaction that
wrote changes does before it commits is take a transaction-scoped advisory lock and stamp its
rows with one more than the highest position committed (`Database.before_commit`). The lock is
released only after the commit is visible, so the next writer's position is higher and commits
later: positions are commit order, and a reader reads `position > cursor` with no bound to wait
on. Writers queue on the lock only for that last statement and their commit. The cursor is
(position, id); the id orders the rows of one transaction. A rolled-back transaction leaves no
row, a rolled-back savepoint none of its own.

On SQLite writers are serialised (BEGIN IMMEDIATE), so the same stamp needs no lock.

Telling subscribers. On PostgreSQL the same transaction, after its stamp, sends NOTIFY with its
position on `db.notify.CHANNEL`: PostgreSQL delivers it to every listening process only if the
transaction commits, so a rolled-back mutation tells nobody. On SQLite (one process writes) the
committed transaction tells this process's subscribers itself (`db.notify.committed`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    cast,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from db import notify
from db.models import (
    Allocation,
    ApiKey,
    ApprenticeRecord,
    AuditAction,
    AutoAllocationRule,
    Change,
    Course,
    Department,
    Evidence,
    Learner,
    Licence,
    LicencePool,
    Location,
    Organisation,
    RecordAssignment,
    User,
)
from policies.vocabulary import Action, Resource, Role
from resolvers.context import Context
from resolvers.errors import InvalidInput
from resolvers.ids import GlobalId, MalformedId, decode_id, encode_id
from resolvers.outcomes import doc
from resolvers.pagination import decode_cursor, encode_cursor, page_size
from resolvers.relations import Ref


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


# What `write_changes` writes changes for: (audit event id, action, subject type, subject id,
# organisation, details).
Event = tuple[int, AuditAction, str, int | None, int | None, Mapping[str, Any] | None]


def touched_events(
    audit_event_id: int,
    action: AuditAction,
    organisation_id: int | None,
    details: Mapping[str, Any] | None,
    touched: Sequence[tuple[str, int]],
) -> list[Event]:
    """The events, for `write_changes`, of the other objects an audit event's action changed
    besides its subject and the objects its details list (a pool whose seats a bulk action
    used, the assignments a deactivation ended): one change each, with the event's details (a
    bulk action's, as each of its objects' change keeps them)."""
    per_object = _PER_OBJECT.get(action)
    plain: dict[str, Any] | None = None if details is None else dict(details)
    if per_object is not None and plain is not None:
        plain = {k: plain[k] for k in per_object[1] if k in plain} or None
    return [
        (audit_event_id, action, t, pk, organisation_id, plain) for t, pk in dict.fromkeys(touched)
    ]


# pg_advisory_xact_lock's key for the sequencer (any constant no other lock uses).
SEQUENCER_LOCK = 0x4341_5345_4C4F_4144 & 0x7FFF_FFFF_FFFF_FFFF
_later = aliased(Change)
_STAMP = (
    update(Change)
    .where(Change.position.is_(None))
    .values(position=select(func.coalesce(func.max(_later.position), 0) + 1).scalar_subquery())
    .execution_options(synchronize_session=False)
)
# After the stamp, under the sequencer's lock: the highest position is the transaction's own.
_NOTIFY = select(
    func.pg_notify(
        notify.CHANNEL, cast(select(func.max(Change.position)).scalar_subquery(), String)
    )
)


def sequence_at_commit(ctx: Context) -> None:
    """Have the transaction stamp its changes with their commit position, once, last, and
    tell subscribers once it has committed."""
    if _STAMP in ctx.db.before_commit:
        return
    if ctx.db.dialect == "postgresql":
        ctx.db.before_commit.append(select(func.pg_advisory_xact_lock(SEQUENCER_LOCK)))
        ctx.db.before_commit.extend([_STAMP, _NOTIFY])
        return
    ctx.db.before_commit.append(_STAMP)
    ctx.db.after_commit.append(partial(notify.committed, ctx.db.url))


async def write_changes(
    ctx: Context,
    at: datetime,
    events: Sequence[Event],
) -> None:
    """Write the outbox rows of the events, each pointing at the audit event it comes from."""
    me = ctx.me
    rows = [
        {
            "audit_event_id": audit_event_id,
            "at": at,
            "organisation_id": organisation_id,
            "actor_id": me.actor_id,
            "api_key_id": me.api_key_id,
            "action": action,
            "subject_type": w.subject_type,
            "subject_id": w.subject_id,
            "details": w.details,
        }
        for audit_event_id, action, subject_type, subject_id, organisation_id, details in events
        for w in changes_of(action, subject_type, subject_id, details)
    ]
    if rows:
        await ctx.db.execute(insert(Change), rows)
        sequence_at_commit(ctx)


# Deleting expired changes -------------------------------------------------------------------

# Rows one transaction deletes, and transactions one run takes at most: a backlog (the first
# run after a long stop) goes over several runs, never one long lock.
DELETE_BATCH = 5_000
DELETE_BATCHES_PER_RUN = 20


async def delete_expired(
    maker: async_sessionmaker[AsyncSession],
    now: datetime,
    retention_days: int,
    *,
    batch: int = DELETE_BATCH,
    batches: int = DELETE_BATCHES_PER_RUN,
) -> int:
    """Delete changes older than the feed keeps, `batch` rows a transaction, at most `batches`
    transactions; how many were deleted. A cursor that named one is already INVALID (its time
    is past the retention). The change holding the highest position is kept, so that the
    sequencer never gives a position again."""
    cutoff = now - timedelta(days=retention_days)
    highest = select(func.max(_later.position)).scalar_subquery()
    doomed = (
        select(Change.id)
        .where(Change.at < cutoff, Change.position.is_not(None), Change.position < highest)
        .order_by(Change.id)
        .limit(batch)
    )
    stmt = delete(Change).where(Change.id.in_(doomed)).execution_options(synchronize_session=False)
    deleted = 0
    for _ in range(batches):
        async with maker() as session, session.begin():
            found = (await session.execute(stmt)).rowcount or 0  # type: ignore[attr-defined]
        deleted += found
        if found < batch:
            break
    return deleted


# Reading the feed ---------------------------------------------------------------------------


class ChangeSubject(enum.StrEnum):
    """The kinds of object a change can be about."""

    ORGANISATION = "Organisation"
    LOCATION = "Location"
    DEPARTMENT = "Department"
    USER = "User"
    LEARNER = "Learner"
    APPRENTICE_RECORD = "ApprenticeRecord"
    ASSIGNMENT = "Assignment"
    ALLOCATION = "Allocation"
    EVIDENCE = "Evidence"
    COURSE = "Course"
    LICENCE_POOL = "LicencePool"
    LICENCE = "Licence"
    AUTO_ALLOCATION_RULE = "AutoAllocationRule"
    API_KEY = "ApiKey"


# Each kind's table and the policy resources through which a reader sees its rows.
_SUBJECTS: dict[ChangeSubject, tuple[type[Any], tuple[Resource, ...]]] = {
    ChangeSubject.ORGANISATION: (Organisation, (Resource.ORGANISATION,)),
    ChangeSubject.LOCATION: (Location, (Resource.LOCATION,)),
    ChangeSubject.DEPARTMENT: (Department, (Resource.DEPARTMENT,)),
    ChangeSubject.USER: (User, (Resource.STAFF, Resource.EXTERNAL_ASSESSOR)),
    ChangeSubject.LEARNER: (Learner, (Resource.LEARNER,)),
    ChangeSubject.APPRENTICE_RECORD: (ApprenticeRecord, (Resource.RECORD,)),
    ChangeSubject.ASSIGNMENT: (RecordAssignment, (Resource.ASSIGNMENT,)),
    ChangeSubject.ALLOCATION: (Allocation, (Resource.ALLOCATION,)),
    ChangeSubject.EVIDENCE: (Evidence, (Resource.EVIDENCE,)),
    ChangeSubject.COURSE: (Course, (Resource.COURSE,)),
    ChangeSubject.LICENCE_POOL: (LicencePool, (Resource.LICENCE_POOL,)),
    ChangeSubject.LICENCE: (Licence, (Resource.LICENCE,)),
    ChangeSubject.AUTO_ALLOCATION_RULE: (AutoAllocationRule, (Resource.AUTO_ALLOCATION_RULE,)),
    ChangeSubject.API_KEY: (ApiKey, (Resource.API_KEY,)),
}
# DESIGN.md, Reads, row "changes": support follows organisations, staff (not the external
# assessor directory), courses and pools.
_SUPPORT_FOLLOWS: dict[ChangeSubject, tuple[Resource, ...]] = {
    ChangeSubject.ORGANISATION: (Resource.ORGANISATION,),
    ChangeSubject.USER: (Resource.STAFF,),
    ChangeSubject.COURSE: (Resource.COURSE,),
    ChangeSubject.LICENCE_POOL: (Resource.LICENCE_POOL,),
}
# The tables whose rows belong to one learner, for `learnerId`.
_OF_LEARNER: dict[ChangeSubject, Any] = {
    ChangeSubject.APPRENTICE_RECORD: ApprenticeRecord.learner_id,
    ChangeSubject.ALLOCATION: Allocation.learner_id,
    ChangeSubject.LICENCE: Licence.learner_id,
}
_THROUGH_RECORD: dict[ChangeSubject, tuple[Any, Any]] = {
    ChangeSubject.ASSIGNMENT: (RecordAssignment.id, RecordAssignment.record_id),
    ChangeSubject.EVIDENCE: (Evidence.id, Evidence.record_id),
}

# The person who made a change, where the reader may see staff; an API key's changes name none.
ACTOR = Ref(User, "actor_id", Resource.STAFF, unless="api_key_id")

TAG = "changes"
RESYNC = (
    "The cursor is older than the change feed keeps ({days} days): read the lists again, then "
    "follow the feed from its start."
)


@dataclass(frozen=True)
class ChangeFilter:
    """Narrow the change feed; what the reader cannot see is never listed, filter or not."""

    subject_types: list[ChangeSubject] | None = field(
        default=None, metadata=doc("Only changes to these kinds of object.")
    )
    actions: list[AuditAction] | None = field(
        default=None, metadata=doc("Only these kinds of change.")
    )
    learner_id: GlobalId | None = field(
        default=None,
        metadata=doc(
            "Only changes to this learner or to what belongs to them: their records, "
            "assignments, evidence, allocations and licences."
        ),
    )


@dataclass
class FeedPage:
    rows: list[Change]
    cursors: list[str]
    has_next_page: bool


def _visible(
    ctx: Context,
    kinds: Sequence[ChangeSubject],
    through: Mapping[ChangeSubject, tuple[Resource, ...]] | None = None,
) -> ColumnElement[bool]:
    """Changes whose object the reader sees now: per kind, its table's scope, uncorrelated
    (`through`: the resources that show a kind, where not all of its table's do)."""
    clauses = []
    for kind in kinds:
        model, resources = _SUBJECTS[kind]
        resources = (through or {}).get(kind, resources)
        held = [r for r in resources if ctx.rules.holds(r, Action.READ)]
        if not held:
            continue
        scope = or_(*(ctx.rules.where(r) for r in held))
        clauses.append(
            and_(
                Change.subject_type == kind.value,
                Change.subject_id.in_(select(model.id).where(scope)),
            )
        )
    return or_(*clauses) if clauses else false()


def _of_learner(value: str) -> ColumnElement[bool]:
    try:
        type_name, pk = decode_id(value)
    except MalformedId as exc:
        raise InvalidInput("learnerId is not a valid id.", field="learnerId") from exc
    if type_name != "Learner":
        return false()
    clauses = [and_(Change.subject_type == ChangeSubject.LEARNER.value, Change.subject_id == pk)]
    for kind, column in _OF_LEARNER.items():
        model = column.class_
        clauses.append(
            and_(
                Change.subject_type == kind.value,
                Change.subject_id.in_(select(model.id).where(column == pk)),
            )
        )
    records = select(ApprenticeRecord.id).where(ApprenticeRecord.learner_id == pk)
    for kind, (key, record_id) in _THROUGH_RECORD.items():
        model = key.class_
        clauses.append(
            and_(
                Change.subject_type == kind.value,
                Change.subject_id.in_(select(model.id).where(record_id.in_(records))),
            )
        )
    return or_(*clauses)


def _kept_from(ctx: Context) -> datetime:
    return ctx.now - timedelta(days=ctx.limits.changes_retention_days)


def _after(ctx: Context, after: str) -> tuple[int, int]:
    """A cursor's (position, id); INVALID when older than the feed keeps."""
    position, pk, at = decode_cursor(after, TAG, (int, int, datetime), field="after")
    if at < _kept_from(ctx):
        raise InvalidInput(RESYNC.format(days=ctx.limits.changes_retention_days), field="after")
    return position, pk


def _beyond(position: int, pk: int) -> ColumnElement[bool]:
    return tuple_(Change.position, Change.id) > tuple_(literal(position, BigInteger), pk)


def _readable(ctx: Context, filter: ChangeFilter | None) -> list[ColumnElement[bool]]:
    """The changes the reader may see, narrowed by the filter: the one rule of visibility."""
    conditions: list[ColumnElement[bool]] = []
    kinds = list(_SUBJECTS)
    through = None
    if Role.SUPPORT in ctx.me.roles:
        kinds = [k for k in kinds if k in _SUPPORT_FOLLOWS]
        through = _SUPPORT_FOLLOWS
    if filter is not None and filter.subject_types is not None:
        kinds = [k for k in kinds if k in filter.subject_types]
    if filter is not None and filter.actions is not None:
        conditions.append(Change.action.in_(filter.actions))
    if filter is not None and filter.learner_id is not None:
        conditions.append(_of_learner(filter.learner_id))
    conditions.append(_visible(ctx, kinds, through))
    return conditions


async def feed(
    ctx: Context,
    *,
    after: str | None = None,
    first: int | None = None,
    filter: ChangeFilter | None = None,
) -> FeedPage:
    """The reader's next page of changes, oldest first in commit order."""
    size = page_size(ctx.limits, first)
    conditions: list[ColumnElement[bool]] = [
        Change.position.is_not(None),
        Change.at >= _kept_from(ctx),
    ]
    if after is not None:
        conditions.append(_beyond(*_after(ctx, after)))
    conditions.extend(_readable(ctx, filter))
    if size == 0:
        return FeedPage([], [], False)
    stmt = select(Change).where(*conditions).order_by(Change.position, Change.id).limit(size + 1)
    rows = list(await ctx.db.scalars(stmt))
    more = len(rows) > size
    rows = rows[:size]
    return FeedPage(
        rows=rows,
        cursors=[cursor_of(r) for r in rows],
        has_next_page=more,
    )


# Following the feed live (subscriptions) --------------------------------------------------

# An id past every row's: (position, FOLLOWED) stands after every change at that position.
FOLLOWED = 2**62


async def head(ctx: Context) -> int:
    """The highest position committed (0 before the first change)."""
    return await ctx.db.scalar(select(func.coalesce(func.max(Change.position), 0))) or 0


async def start(ctx: Context, after: str | None, filter: ChangeFilter | None) -> tuple[int, int]:
    """Where a follower starts: after its cursor (checked as the feed checks it), else after
    everything committed so far. The filter is checked here too, before anything is followed."""
    if filter is not None:
        _readable(ctx, filter)  # a malformed learnerId is INVALID now, not at the first change
    if after is not None:
        return _after(ctx, after)
    return await head(ctx), FOLLOWED


def since(ctx: Context, filter: ChangeFilter | None) -> Select[Change]:
    """The feed's read for followers: the changes after (`:after_position`, `:after_id`) up to
    position `:until` the reader may see, at most `:limit`, in commit order. Built once for a
    reader and filter, run with new bounds as the outbox grows (one read serves every follower
    with the same scopes, filter and place)."""
    return (
        select(Change)
        .where(
            Change.position.is_not(None),
            Change.position <= bindparam("until", type_=BigInteger),
            tuple_(Change.position, Change.id)
            > tuple_(
                bindparam("after_position", type_=BigInteger),
                bindparam("after_id", type_=BigInteger),
            ),
            *_readable(ctx, filter),
        )
        .order_by(Change.position, Change.id)
        .limit(bindparam("limit"))
    )


def bounds(after: tuple[int, int], until: int, limit: int) -> dict[str, int]:
    """The parameters of `since`."""
    return {"after_position": after[0], "after_id": after[1], "until": until, "limit": limit}


def cursor_of(row: Change) -> str:
    return encode_cursor(TAG, [row.position, row.id, row.at])

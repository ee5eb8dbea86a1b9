"""Apprentice records: the records view and record creation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from db.models import ApprenticeRecord, AssignmentRole, AuditAction, Learner, RecordStatus
from policies.vocabulary import Action, Resource, refusal
from resolvers.audit import audit
from resolvers.common import (
    clean_name,
    filter_id,
    mutation_target,
    parse_id,
    record_has_assignment,
)
from resolvers.context import Context, Limits, LoaderGroup
from resolvers.errors import Forbidden
from resolvers.ids import GlobalId, encode_id, gid_of
from resolvers.learners import LearnerLoaders
from resolvers.loaders import Children, scoped
from resolvers.outcomes import Invalid, NotFound, RecordArchived, doc
from resolvers.pagination import (
    FilterValues,
    ListSource,
    Sort,
    matches,
    search_pattern,
)
from resolvers.people import seen_user
from resolvers.relations import Ref

RECORDS_OF_LEARNER = Children(
    ApprenticeRecord, ApprenticeRecord.learner_id, Resource.RECORD, (ApprenticeRecord.id,)
)


LEARNER_OF_RECORD = Ref(Learner, "learner_id", Resource.LEARNER)


class RecordLoaders(LoaderGroup):
    record = scoped(ApprenticeRecord, Resource.RECORD)


@dataclass(frozen=True)
class RecordFilter:
    """Narrow the records view."""

    search: str | None = field(
        default=None, metadata=doc("Part of the programme or the learner's name.")
    )
    assignee_id: GlobalId | None = field(
        default=None, metadata=doc("Actively assigned to this user.")
    )
    unassigned: bool | None = field(
        default=None, metadata=doc("True: no active assessor; false: at least one.")
    )
    status: RecordStatus | None = field(
        default=None, metadata=doc("LIVE (the default) or ARCHIVED.")
    )
    learner_id: GlobalId | None = field(default=None, metadata=doc("This learner's."))


@dataclass(frozen=True)
class ApprenticeRecordCreated:
    record: ApprenticeRecord


@dataclass(frozen=True)
class ApprenticeRecordArchived:
    record: ApprenticeRecord
    unchanged: bool = False


@dataclass(frozen=True)
class ApprenticeRecordRestored:
    record: ApprenticeRecord
    unchanged: bool = False


async def archived_among(
    ctx: Context, record_ids: Sequence[int], *, exclusive: bool = False
) -> set[int]:
    """Which of these records are archived, with their rows locked until the operation ends, so
    that archiving waits for a change in flight and a change waits for archiving (SQLite
    already holds the write lock). `exclusive` for changes that may race with each other."""
    rows: Sequence[Any] = (
        await ctx.db.execute(
            select(ApprenticeRecord.id, ApprenticeRecord.status)
            .where(ApprenticeRecord.id.in_(record_ids))
            .order_by(ApprenticeRecord.id)
            .with_for_update(read=not exclusive)
        )
    ).all()
    return {pk for pk, status in rows if status == RecordStatus.ARCHIVED}


def _prepare(
    limits: Limits, f: RecordFilter | None, _arguments: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The filter's checked values; a malformed id, an unknown status or too long a search is
    INVALID. The live records view is the default: LIVE unless a status is asked for."""
    values: dict[str, Any] = {"status": RecordStatus.LIVE.value}
    if f is None:
        return values
    pattern = search_pattern(limits, f.search)
    if pattern is not None:
        values["search"] = pattern
    if f.status is not None:
        values["status"] = RecordStatus(f.status).value
    for name, value, type_name, field_name in (
        ("learner", f.learner_id, "Learner", "learnerId"),
        ("assignee", f.assignee_id, "User", "assigneeId"),
    ):
        pk = filter_id(value, type_name, field_name)
        if pk is not None:
            values[name] = pk
    if f.unassigned is not None:
        values["unassigned"] = f.unassigned
    return values


def _conditions(ctx: Context, v: FilterValues) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if "search" in v:
        learner_match = (
            select(Learner.id)
            .where(matches(Learner.name, v["search"]), ctx.rules.where(Resource.LEARNER))
            .correlate(None)
        )
        found.append(
            or_(
                matches(ApprenticeRecord.programme, v["search"]),
                ApprenticeRecord.learner_id.in_(learner_match),
            )
        )
    if "status" in v:
        found.append(ApprenticeRecord.status == v["status"])
    if "learner" in v:
        found.append(ApprenticeRecord.learner_id == v["learner"])
    if "assignee" in v:
        found.append(record_has_assignment(ctx, user=seen_user(ctx, v["assignee"])))
    if "unassigned" in v:
        assessed = record_has_assignment(ctx, role=AssignmentRole.ASSESSOR)
        found.append(~assessed if v["unassigned"] else assessed)
    return found


RECORDS: ListSource[ApprenticeRecord, RecordFilter] = ListSource(
    "apprenticeRecords",
    ApprenticeRecord,
    Resource.RECORD,
    (
        Sort("CREATED", (), "In the order they were created."),
        Sort("PROGRAMME", (ApprenticeRecord.programme,), "By programme."),
    ),
    prepare=_prepare,
    conditions=_conditions,
)


async def create_apprentice_record(
    ctx: Context, *, learner_id: str, programme: str, start_date: date | None
) -> ApprenticeRecordCreated | Invalid | NotFound:
    if not ctx.rules.holds(Resource.RECORD, Action.CREATE):
        raise Forbidden(refusal(Resource.RECORD, Action.CREATE))
    pk = parse_id(learner_id, "Learner", "learnerId")
    if isinstance(pk, Invalid | NotFound):
        return pk
    learner = await ctx.loaders(LearnerLoaders).learner.load(pk)
    if learner is None:
        return NotFound(id=learner_id)
    if not ctx.rules.may_act_in(Resource.RECORD, Action.CREATE, learner.organisation_id):
        raise Forbidden(refusal(Resource.RECORD, Action.CREATE))
    clean = clean_name(programme, "programme", limit=300)
    if isinstance(clean, Invalid):
        return clean
    record = ApprenticeRecord(
        organisation_id=learner.organisation_id,
        learner_id=learner.id,
        programme=clean,
        status=RecordStatus.LIVE,
        start_date=start_date,
        created_at=ctx.now,
    )
    await ctx.db.add(record)
    await audit(
        ctx,
        AuditAction.APPRENTICE_RECORD_CREATED,
        record,
        organisation_id=learner.organisation_id,
        details={"learnerId": gid_of(learner), "programme": clean},
    )
    return ApprenticeRecordCreated(record)


async def archive_apprentice_record(
    ctx: Context, *, record_id: str
) -> ApprenticeRecordArchived | Invalid | NotFound | RecordArchived:
    """Make a record read-only; its assignments stay, so its assignees keep read access.
    An archived record stays so, unchanged. (RecordArchived stays in the answer's union for
    clients written against it; it is no longer answered.)"""
    record = await mutation_target(ctx, record_id, ApprenticeRecord, "recordId", Action.ARCHIVE)
    if isinstance(record, Invalid | NotFound):
        return record
    if not await _set_status(ctx, record, RecordStatus.LIVE, RecordStatus.ARCHIVED):
        return ApprenticeRecordArchived(record, unchanged=True)
    await audit(
        ctx,
        AuditAction.APPRENTICE_RECORD_ARCHIVED,
        record,
        organisation_id=record.organisation_id,
        details={"learnerId": encode_id("Learner", record.learner_id)},
    )
    return ApprenticeRecordArchived(record)


async def restore_apprentice_record(
    ctx: Context, *, record_id: str
) -> ApprenticeRecordRestored | Invalid | NotFound:
    record = await mutation_target(ctx, record_id, ApprenticeRecord, "recordId", Action.ARCHIVE)
    if isinstance(record, Invalid | NotFound):
        return record
    if not await _set_status(ctx, record, RecordStatus.ARCHIVED, RecordStatus.LIVE):
        return ApprenticeRecordRestored(record, unchanged=True)  # live already
    await audit(
        ctx,
        AuditAction.APPRENTICE_RECORD_RESTORED,
        record,
        organisation_id=record.organisation_id,
        details={"learnerId": encode_id("Learner", record.learner_id)},
    )
    return ApprenticeRecordRestored(record)


async def _set_status(
    ctx: Context, record: ApprenticeRecord, old: RecordStatus, new: RecordStatus
) -> bool:
    """Move the record from `old` to `new`; False when it is not in `old` (decided in the
    database, so that two admins at once cannot both move it). With only two statuses, a
    record not in `old` is in `new` already."""
    moved = await ctx.db.execute(
        update(ApprenticeRecord)
        .where(ApprenticeRecord.id == record.id, ApprenticeRecord.status == old)
        .values(status=new)
    )
    set_committed_value(record, "status", new)
    return moved.rowcount == 1  # type: ignore[attr-defined, no-any-return]

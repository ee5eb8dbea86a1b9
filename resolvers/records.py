"""Apprentice records: the records view and record creation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import exists, or_, select

from db.models import ApprenticeRecord, AssignmentRole, Learner, RecordAssignment, RecordStatus
from policies.vocabulary import Action, Resource
from resolvers.common import active_assignment_of_record, audit, clean_name, filter_id, parse_id
from resolvers.context import Context
from resolvers.errors import Forbidden, InvalidInput
from resolvers.outcomes import Invalid, NotFound
from resolvers.pagination import Page, contains, paginate


@dataclass(frozen=True)
class RecordFilter:
    search: str | None = None
    assignee_id: str | None = None
    unassigned: bool | None = None
    status: str | None = None
    learner_id: str | None = None


@dataclass(frozen=True)
class ApprenticeRecordCreated:
    record: ApprenticeRecord


async def apprentice_records(
    ctx: Context, *, first: int | None, after: str | None, filter: RecordFilter | None
) -> Page[ApprenticeRecord]:
    f = filter or RecordFilter()
    stmt = select(ApprenticeRecord).where(ctx.rules.where(Resource.RECORD))
    if f.search and f.search.strip():
        learner_match = select(Learner.id).where(contains(Learner.name, f.search))
        stmt = stmt.where(
            or_(
                contains(ApprenticeRecord.programme, f.search),
                ApprenticeRecord.learner_id.in_(learner_match),
            )
        )
    if f.status is not None:
        try:
            status = RecordStatus(f.status.strip().upper())
        except ValueError as exc:
            allowed = ", ".join(s.value for s in RecordStatus)
            raise InvalidInput(f"status must be one of {allowed}.", field="status") from exc
        stmt = stmt.where(ApprenticeRecord.status == status)
    learner = filter_id(f.learner_id, "Learner", "learnerId")
    if learner is not None:
        stmt = stmt.where(ApprenticeRecord.learner_id == learner)
    assignee = filter_id(f.assignee_id, "User", "assigneeId")
    if assignee is not None:
        stmt = stmt.where(
            exists(
                select(RecordAssignment.id).where(
                    RecordAssignment.record_id == ApprenticeRecord.id,
                    RecordAssignment.user_id == assignee,
                    RecordAssignment.ended_at.is_(None),
                )
            )
        )
    if f.unassigned is not None:
        assigned = active_assignment_of_record(AssignmentRole.ASSESSOR)
        stmt = stmt.where(~assigned if f.unassigned else assigned)
    return await paginate(
        ctx,
        stmt,
        order=[ApprenticeRecord.id],
        key=lambda row: (row.id,),
        key_types=(int,),
        first=first,
        after=after,
    )


async def create_apprentice_record(
    ctx: Context, *, learner_id: str, programme: str, start_date: date | None
) -> ApprenticeRecordCreated | Invalid | NotFound:
    if not ctx.rules.holds(Resource.RECORD, Action.CREATE):
        raise Forbidden("You may not create apprentice records.")
    pk = parse_id(learner_id, "Learner", "learnerId")
    if isinstance(pk, Invalid | NotFound):
        return pk
    learner = await ctx.loaders.learner.load(pk)
    if learner is None:
        return NotFound(id=learner_id)
    if not ctx.rules.may_act_in(Resource.RECORD, Action.CREATE, learner.organisation_id):
        raise Forbidden("You may not create apprentice records for this learner.")
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
        action="record.create",
        subject_type="ApprenticeRecord",
        subject_id=record.id,
        organisation_id=learner.organisation_id,
        details={"learnerId": learner.id, "programme": clean},
    )
    return ApprenticeRecordCreated(record)

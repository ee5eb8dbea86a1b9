"""Apprentice record assignment: one at a time or in bulk, all or nothing, with history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select, text, update
from strawberry.dataloader import DataLoader

from db.models import (
    ApprenticeRecord,
    AssignmentRole,
    AuditAction,
    Membership,
    MembershipRole,
    RecordAssignment,
    RecordStatus,
    User,
)
from db.queries import insert_skipping_conflicts
from policies.vocabulary import Action, Resource, Role
from resolvers.allocations import ACTIVE_ALLOCATIONS_OF_LEARNER, ASSESSOR_OF_ALLOCATION
from resolvers.audit import audit
from resolvers.codes import ErrorCode
from resolvers.common import mutation_target, parse_id, parse_optional_id
from resolvers.context import Context, LoaderGroup
from resolvers.ids import MalformedId, decode_id, encode_id, gid_of
from resolvers.loaders import Children, loader, scoped
from resolvers.outcomes import (
    BulkRejected,
    IneligibleAssignee,
    Invalid,
    ItemProblem,
    NotFound,
    RecordArchived,
)
from resolvers.people import visible_user
from resolvers.records import RECORDS_OF_LEARNER, archived_among
from resolvers.relations import ByArgument, Distinct, Path, Ref

ACTIVE_ASSIGNMENTS_OF_RECORD = Children(
    RecordAssignment,
    RecordAssignment.record_id,
    Resource.ASSIGNMENT,
    (RecordAssignment.id,),
    only=lambda ctx: [RecordAssignment.ended_at.is_(None)],
)
ALL_ASSIGNMENTS_OF_RECORD = Children(
    RecordAssignment,
    RecordAssignment.record_id,
    Resource.ASSIGNMENT,
    (RecordAssignment.assigned_at.desc(), RecordAssignment.id.desc()),
)
# Active assignments; with `includeEnded`, the record's whole history, newest first.
ASSIGNMENTS_OF_RECORD = ByArgument(
    lambda include_ended=False: (
        ALL_ASSIGNMENTS_OF_RECORD if include_ended else ACTIVE_ASSIGNMENTS_OF_RECORD
    )
)


RECORD_OF_ASSIGNMENT = Ref(ApprenticeRecord, "record_id", Resource.RECORD)
ASSIGNEE = Ref(User, "user_id")
ASSIGNED_BY = Ref(User, "assigned_by_id")
ASSIGNMENT_ENDED_BY = Ref(User, "ended_by_id")
# Everyone assigned to the learner's records, then everyone allocated to the learner: each once.
ASSESSORS_OF_LEARNER = Distinct(
    Path(RECORDS_OF_LEARNER, ACTIVE_ASSIGNMENTS_OF_RECORD, ASSIGNEE),
    Path(ACTIVE_ALLOCATIONS_OF_LEARNER, ASSESSOR_OF_ALLOCATION),
)


class AssignmentLoaders(LoaderGroup):
    assignment = scoped(RecordAssignment, Resource.ASSIGNMENT)

    @loader
    @staticmethod
    def caseload(ctx: Context) -> DataLoader[int, int]:
        """Each user's active assignments on live records that the caller can see."""
        visible = ctx.rules.where(Resource.ASSIGNMENT)
        live = (
            select(ApprenticeRecord.id)
            .where(ApprenticeRecord.status == RecordStatus.LIVE, ctx.rules.where(Resource.RECORD))
            .correlate(None)
        )

        async def load(user_ids: Sequence[int]) -> list[int]:
            stmt = (
                select(RecordAssignment.user_id, func.count())
                .where(
                    RecordAssignment.user_id.in_(user_ids),
                    RecordAssignment.ended_at.is_(None),
                    RecordAssignment.record_id.in_(live),
                    visible,
                )
                .group_by(RecordAssignment.user_id)
            )
            rows: Sequence[Any] = (await ctx.db.execute(stmt)).all()
            counts = {user_id: count for user_id, count in rows}
            return [int(counts.get(u, 0)) for u in user_ids]

        return DataLoader(load_fn=load)


async def caseload_count(ctx: Context, user_id: int) -> int:
    return await ctx.loaders(AssignmentLoaders).caseload.load(user_id)


def caseload_column(ctx: Context, columns: Any) -> Any:
    """`caseload_count` in SQL over a users table's (or alias's) columns: the caseload loader's
    count as a correlated subquery, its records joined rather than nested (SQLite's parser
    stack is bounded), and the assignments' own scope left out where their record's implies it.
    The compiled path's form of `User.caseloadCount`."""
    implied = ctx.rules.implied_by_parent(
        Resource.ASSIGNMENT, Resource.RECORD, ApprenticeRecord, "record_id"
    )
    return (
        select(func.count())
        .select_from(RecordAssignment)
        .join(ApprenticeRecord, ApprenticeRecord.id == RecordAssignment.record_id)
        .where(
            RecordAssignment.user_id == columns["id"],
            RecordAssignment.ended_at.is_(None),
            ApprenticeRecord.status == RecordStatus.LIVE,
            ctx.rules.where(Resource.RECORD),
            *(() if implied else (ctx.rules.where(Resource.ASSIGNMENT),)),
        )
        .correlate(columns["id"].table)
        .scalar_subquery()
    )


# Which organisation roles may take which kind of assignment.
FITS: dict[AssignmentRole, frozenset[Role]] = {
    AssignmentRole.ASSESSOR: frozenset({Role.ASSESSOR, Role.SENIOR_ASSESSOR}),
    AssignmentRole.TRAINING_COORDINATOR: frozenset({Role.TRAINING_COORDINATOR}),
}


@dataclass(frozen=True)
class RecordsAssigned:
    assignments: list[RecordAssignment]
    unchanged: int
    replaced: list[RecordAssignment]


@dataclass(frozen=True)
class RecordsUnassigned:
    ended: list[RecordAssignment]
    unchanged: int  # records with nothing to end


@dataclass(frozen=True)
class TrainingCoordinatorAssigned:
    assignment: RecordAssignment
    replaced: RecordAssignment | None
    unchanged: bool = False


async def _records(
    ctx: Context, record_ids: Sequence[str]
) -> list[ApprenticeRecord] | Invalid | BulkRejected:
    """Every id a live record the caller may assign, or the reason for each one that is not.

    The records stay locked until the operation ends (see `archived_among`)."""
    if not record_ids:
        return Invalid("Give at least one record id.", field="recordIds")
    if len(record_ids) > ctx.limits.max_bulk_items:
        return Invalid(
            f"At most {ctx.limits.max_bulk_items} record ids in one call.", field="recordIds"
        )
    problems: list[ItemProblem] = []
    wanted: dict[int, str] = {}
    for value in dict.fromkeys(record_ids):
        try:
            type_name, pk = decode_id(value)
        except MalformedId:
            problems.append(ItemProblem(value, ErrorCode.INVALID, "Not a valid id."))
            continue
        if type_name != "ApprenticeRecord":
            problems.append(ItemProblem(value, ErrorCode.NOT_FOUND, "No such apprentice record."))
            continue
        wanted[pk] = value
    permitted = case((ctx.rules.where(Resource.RECORD, Action.ASSIGN), 1), else_=0)
    rows: Sequence[Any] = (
        await ctx.db.execute(
            select(ApprenticeRecord, permitted).where(
                ApprenticeRecord.id.in_(list(wanted)), ctx.rules.where(Resource.RECORD)
            )
        )
    ).all()
    found = {row[0].id: row for row in rows}
    archived = await archived_among(ctx, list(found), exclusive=True) if found else set()
    for pk, value in wanted.items():
        if pk not in found:
            problems.append(ItemProblem(value, ErrorCode.NOT_FOUND, "No such apprentice record."))
        elif not found[pk][1]:
            problems.append(
                ItemProblem(value, ErrorCode.FORBIDDEN, "You may not assign this record.")
            )
        elif pk in archived:
            problems.append(
                ItemProblem(value, RecordArchived.code, "This apprentice record is archived.")
            )
    if problems:
        return BulkRejected(items=problems)
    return [found[pk][0] for pk in wanted]


async def _assignee(
    ctx: Context, value: str, field: str, role: AssignmentRole, organisations: set[int]
) -> User | Invalid | NotFound | IneligibleAssignee:
    """A visible user who can take `role` in every one of `organisations`."""
    pk = parse_id(value, "User", field)
    if isinstance(pk, Invalid | NotFound):
        return pk
    user = await ctx.db.scalar(select(User).where(User.id == pk, visible_user(ctx)))
    if user is None:
        return NotFound(id=value)
    holding = (
        select(Membership.organisation_id, Membership.deactivated_at)
        .join(MembershipRole, MembershipRole.membership_id == Membership.id)
        .where(
            Membership.user_id == user.id,
            Membership.organisation_id.in_(organisations),
            MembershipRole.role.in_([r.value for r in FITS[role]]),
        )
        .distinct()
    )
    held: Sequence[Any] = (await ctx.db.execute(holding)).all()
    if any(deactivated_at is not None for _, deactivated_at in held):
        return IneligibleAssignee(
            id=value, message="This person has been deactivated and cannot take assignments."
        )
    if {organisation_id for organisation_id, _ in held} != organisations:
        fits = " or ".join(sorted(r.value for r in FITS[role]))
        return IneligibleAssignee(
            id=value,
            message=f"{role.value} assignments need a member of the organisation with role {fits}.",
        )
    return user


def _active() -> Any:
    return text("ended_at IS NULL")


async def _insert_assignments(
    ctx: Context, records: Sequence[ApprenticeRecord], user: User, role: AssignmentRole
) -> list[RecordAssignment]:
    """Insert active assignments; pairs already active are skipped by the partial unique index."""
    if not records:
        return []
    stmt = insert_skipping_conflicts(
        ctx.db.dialect,
        RecordAssignment,
        index_elements=["record_id", "user_id", "role"],
        index_where=_active(),
    ).returning(RecordAssignment)
    rows = [
        {
            "organisation_id": r.organisation_id,
            "record_id": r.id,
            "user_id": user.id,
            "role": role,
            "assigned_at": ctx.now,
            "assigned_by_id": ctx.me.user_id,
        }
        for r in records
    ]
    result = await ctx.db.execute(stmt, rows)
    return list(result.scalars().all())


async def assign_records(
    ctx: Context, *, assignee_id: str, record_ids: Sequence[str], role: AssignmentRole
) -> RecordsAssigned | Invalid | NotFound | BulkRejected | IneligibleAssignee:
    records = await _records(ctx, record_ids)
    if isinstance(records, Invalid | BulkRejected):
        return records
    organisations = {r.organisation_id for r in records}
    user = await _assignee(ctx, assignee_id, "assigneeId", role, organisations)
    if isinstance(user, Invalid | NotFound | IneligibleAssignee):
        return user
    replaced: list[RecordAssignment] = []
    if role is AssignmentRole.TRAINING_COORDINATOR:
        # A record has one coordinator: the new one replaces whoever holds it now.
        ids = [r.id for r in records]  # locked by _records
        replaced = await _end(
            ctx,
            RecordAssignment.record_id.in_(ids),
            RecordAssignment.role == role,
            RecordAssignment.user_id != user.id,
        )
    created = await _insert_assignments(ctx, records, user, role)
    created.sort(key=lambda a: a.record_id)
    for organisation_id in sorted(organisations):

        def here(rows: Sequence[Any], organisation_id: int = organisation_id) -> list[str]:
            return [gid_of(r) for r in rows if r.organisation_id == organisation_id]

        if not here(created) and not here(replaced):
            continue  # nothing changed in this organisation: no event
        await audit(
            ctx,
            AuditAction.RECORDS_ASSIGNED,
            user,
            organisation_id=organisation_id,
            details={
                "role": role.value,
                "recordIds": here(records),
                "assignmentIds": here(created),
                "replacedAssignmentIds": here(replaced),
            },
        )
    return RecordsAssigned(
        assignments=created, unchanged=len(records) - len(created), replaced=replaced
    )


async def _end(ctx: Context, *conditions: Any) -> list[RecordAssignment]:
    stmt = (
        update(RecordAssignment)
        .where(RecordAssignment.ended_at.is_(None), *conditions)
        .values(ended_at=ctx.now, ended_by_id=ctx.me.user_id)
        .returning(RecordAssignment)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    ended = list((await ctx.db.execute(stmt)).scalars().all())
    return sorted(ended, key=lambda a: (a.record_id, a.id))


async def unassign_records(
    ctx: Context,
    *,
    record_ids: Sequence[str],
    assignee_id: str | None,
    role: AssignmentRole | None,
) -> RecordsUnassigned | Invalid | NotFound | BulkRejected:
    records = await _records(ctx, record_ids)
    if isinstance(records, Invalid | BulkRejected):
        return records
    user_pk = parse_optional_id(assignee_id, "User", "assigneeId")
    if isinstance(user_pk, Invalid | NotFound):
        return user_pk
    conditions: list[Any] = [RecordAssignment.record_id.in_([r.id for r in records])]
    if user_pk is not None:
        if (
            await ctx.db.scalar(select(User.id).where(User.id == user_pk, visible_user(ctx)))
            is None
        ):
            assert assignee_id is not None
            return NotFound(id=assignee_id)
        conditions.append(RecordAssignment.user_id == user_pk)
    if role is not None:
        conditions.append(RecordAssignment.role == role)
    ended = await _end(ctx, *conditions)
    for organisation_id in sorted({a.organisation_id for a in ended}):
        await audit(
            ctx,
            AuditAction.RECORDS_UNASSIGNED,
            ApprenticeRecord,
            organisation_id=organisation_id,
            details={
                "recordIds": [gid_of(r) for r in records if r.organisation_id == organisation_id],
                "assigneeId": None if user_pk is None else encode_id("User", user_pk),
                "role": None if role is None else role.value,
                "endedAssignmentIds": [
                    gid_of(a) for a in ended if a.organisation_id == organisation_id
                ],
            },
        )
    return RecordsUnassigned(
        ended=ended, unchanged=len(records) - len({a.record_id for a in ended})
    )


async def assign_training_coordinator(
    ctx: Context, *, record_id: str, coordinator_id: str
) -> TrainingCoordinatorAssigned | Invalid | NotFound | IneligibleAssignee | RecordArchived:
    record = await mutation_target(ctx, record_id, ApprenticeRecord, "recordId", Action.ASSIGN)
    if isinstance(record, Invalid | NotFound):
        return record
    if await archived_among(ctx, [record.id], exclusive=True):
        return RecordArchived(id=record_id)
    role = AssignmentRole.TRAINING_COORDINATOR
    user = await _assignee(ctx, coordinator_id, "coordinatorId", role, {record.organisation_id})
    if isinstance(user, Invalid | NotFound | IneligibleAssignee):
        return user
    current = await ctx.db.scalars(
        select(RecordAssignment).where(
            RecordAssignment.record_id == record.id,
            RecordAssignment.role == role,
            RecordAssignment.ended_at.is_(None),
        )
    )
    same = [a for a in current if a.user_id == user.id]
    replaced = await _end(
        ctx,
        RecordAssignment.record_id == record.id,
        RecordAssignment.role == role,
        RecordAssignment.user_id != user.id,
    )
    if same:
        assignment = same[0]
        if not replaced:  # the coordinator already, alone (the record is locked: no race)
            return TrainingCoordinatorAssigned(assignment, replaced=None, unchanged=True)
    else:
        (assignment,) = await _insert_assignments(ctx, [record], user, role)
    await audit(
        ctx,
        AuditAction.TRAINING_COORDINATOR_ASSIGNED,
        record,
        organisation_id=record.organisation_id,
        details={
            "coordinatorId": gid_of(user),
            "assignmentId": gid_of(assignment),
            "replacedAssignmentIds": [gid_of(a) for a in replaced],
        },
        touched=[*([] if same else [assignment]), *replaced],
    )
    return TrainingCoordinatorAssigned(
        assignment=assignment, replaced=replaced[0] if replaced else None
    )

"""External assessor allocation: managers and admins give an outside assessor one learner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from db.models import Allocation, AuditAction, Learner, User, UserKind
from policies.vocabulary import Action, Resource
from resolvers.audit import audit
from resolvers.common import mutation_target, parse_id
from resolvers.context import Context, LoaderGroup
from resolvers.ids import encode_id, gid_of
from resolvers.loaders import Children, scoped
from resolvers.outcomes import AlreadyExists, Invalid, NotExternalAssessor, NotFound
from resolvers.people import visible_user
from resolvers.relations import ByArgument, Ref

ACTIVE_ALLOCATIONS_OF_LEARNER = Children(
    Allocation,
    Allocation.learner_id,
    Resource.ALLOCATION,
    (Allocation.id,),
    only=lambda ctx: [
        Allocation.ended_at.is_(None),
        or_(Allocation.expires_at.is_(None), Allocation.expires_at > ctx.now),
    ],
)

ALL_ALLOCATIONS_OF_LEARNER = Children(
    Allocation,
    Allocation.learner_id,
    Resource.ALLOCATION,
    (Allocation.allocated_at.desc(), Allocation.id.desc()),
)
# Current allocations; with `includeEnded`, every one (ended and expired too), newest first.
ALLOCATIONS_OF_LEARNER = ByArgument(
    lambda include_ended=False: (
        ALL_ALLOCATIONS_OF_LEARNER if include_ended else ACTIVE_ALLOCATIONS_OF_LEARNER
    )
)


LEARNER_OF_ALLOCATION = Ref(Learner, "learner_id", Resource.LEARNER)
ASSESSOR_OF_ALLOCATION = Ref(User, "assessor_id")
ALLOCATED_BY = Ref(User, "allocated_by_id")
ALLOCATION_ENDED_BY = Ref(User, "ended_by_id")


class AllocationLoaders(LoaderGroup):
    allocation = scoped(Allocation, Resource.ALLOCATION)


@dataclass(frozen=True)
class AssessorAllocated:
    allocation: Allocation
    unchanged: bool = False


@dataclass(frozen=True)
class AssessorDeallocated:
    allocation: Allocation
    unchanged: bool = False


ALREADY_ALLOCATED = (
    "This assessor is already allocated to this learner, with another expiry: deallocate them "
    "first."
)


async def _learner_and_assessor(
    ctx: Context, learner_id: str, assessor_id: str
) -> tuple[Learner, int] | Invalid | NotFound:
    assessor_pk = parse_id(assessor_id, "User", "assessorId")
    if isinstance(assessor_pk, Invalid | NotFound):
        return assessor_pk
    learner = await mutation_target(ctx, learner_id, Learner, "learnerId", Action.ALLOCATE)
    if isinstance(learner, Invalid | NotFound):
        return learner
    return learner, assessor_pk


async def allocate_assessor(
    ctx: Context, *, learner_id: str, assessor_id: str, expires_at: datetime | None
) -> AssessorAllocated | Invalid | NotFound | AlreadyExists | NotExternalAssessor:
    found = await _learner_and_assessor(ctx, learner_id, assessor_id)
    if isinstance(found, Invalid | NotFound):
        return found
    learner, assessor_pk = found
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= ctx.now:
            return Invalid("expiresAt must be in the future.", field="expiresAt")
    assessor = await ctx.db.scalar(select(User).where(User.id == assessor_pk, visible_user(ctx)))
    if assessor is None:
        return NotFound(id=assessor_id)
    if assessor.kind != UserKind.EXTERNAL_ASSESSOR:
        return NotExternalAssessor(id=assessor_id)

    current = await ctx.db.scalar(
        select(Allocation).where(
            Allocation.learner_id == learner.id,
            Allocation.assessor_id == assessor.id,
            Allocation.ended_at.is_(None),
        )
    )
    if current is not None:
        if current.expires_at is None or current.expires_at > ctx.now:
            if current.expires_at == expires_at:  # allocated already, as asked
                return AssessorAllocated(current, unchanged=True)
            return AlreadyExists(ALREADY_ALLOCATED)
        # An expired allocation grants nothing; close it so that the new one can start.
        await ctx.db.execute(
            update(Allocation)
            .where(Allocation.id == current.id, Allocation.ended_at.is_(None))
            .values(ended_at=current.expires_at, ended_by_id=ctx.me.user_id)
        )
    allocation = Allocation(
        organisation_id=learner.organisation_id,
        learner_id=learner.id,
        assessor_id=assessor.id,
        allocated_at=ctx.now,
        allocated_by_id=ctx.me.user_id,
        expires_at=expires_at,
    )
    if not await ctx.db.try_add(allocation):  # allocated by someone else meanwhile
        return await _allocated_meanwhile(ctx, learner.id, assessor.id, expires_at)
    await audit(
        ctx,
        AuditAction.ASSESSOR_ALLOCATED,
        allocation,
        organisation_id=learner.organisation_id,
        details={
            "learnerId": gid_of(learner),
            "assessorId": gid_of(assessor),
            "expiresAt": None if expires_at is None else expires_at.isoformat(),
        },
    )
    return AssessorAllocated(allocation)


async def _allocated_meanwhile(
    ctx: Context, learner_id: int, assessor_id: int, expires_at: datetime | None
) -> AssessorAllocated | AlreadyExists:
    """The allocation another request made first (the unique index decided)."""
    current = await ctx.db.scalar(
        select(Allocation).where(
            Allocation.learner_id == learner_id,
            Allocation.assessor_id == assessor_id,
            Allocation.ended_at.is_(None),
        )
    )
    if current is not None and current.expires_at == expires_at:
        return AssessorAllocated(current, unchanged=True)
    return AlreadyExists(ALREADY_ALLOCATED)


NOT_ALLOCATED = "This assessor has never been allocated to this learner."


async def deallocate_assessor(
    ctx: Context, *, learner_id: str, assessor_id: str
) -> AssessorDeallocated | Invalid | NotFound:
    """End the allocation; one ended already stays so, unchanged (the latest is answered)."""
    found = await _learner_and_assessor(ctx, learner_id, assessor_id)
    if isinstance(found, Invalid | NotFound):
        return found
    learner, assessor_pk = found
    # The open allocation if there is one, else the latest ended one: history, which the
    # caller sees because they see the learner.
    allocation = await ctx.db.scalar(
        select(Allocation)
        .where(Allocation.learner_id == learner.id, Allocation.assessor_id == assessor_pk)
        .order_by(Allocation.ended_at.is_not(None), Allocation.id.desc())
        .limit(1)
    )
    if allocation is None:
        return NotFound(id=assessor_id, message=NOT_ALLOCATED)
    ended = await ctx.db.execute(
        update(Allocation)
        .where(Allocation.id == allocation.id, Allocation.ended_at.is_(None))
        .values(ended_at=ctx.now, ended_by_id=ctx.me.user_id)
    )
    if ended.rowcount != 1:  # type: ignore[attr-defined]
        current = await ctx.db.scalar(
            select(Allocation)
            .where(Allocation.id == allocation.id)
            .execution_options(populate_existing=True)
        )
        return AssessorDeallocated(current or allocation, unchanged=True)
    set_committed_value(allocation, "ended_at", ctx.now)
    set_committed_value(allocation, "ended_by_id", ctx.me.user_id)
    await audit(
        ctx,
        AuditAction.ASSESSOR_DEALLOCATED,
        allocation,
        organisation_id=learner.organisation_id,
        details={"learnerId": gid_of(learner), "assessorId": encode_id("User", assessor_pk)},
    )
    return AssessorDeallocated(allocation)

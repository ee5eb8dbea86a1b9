"""Learners: lists, single learners, creation (with a sign-in when an email is given), changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from db.models import (
    ApprenticeRecord,
    AssignmentRole,
    AuditAction,
    Department,
    Learner,
    Location,
    Organisation,
    RecordStatus,
    User,
)
from policies.vocabulary import Action, Resource, Role, refusal
from resolvers.audit import audit
from resolvers.common import (
    UNCHANGED,
    Unchanged,
    clean_email,
    clean_name,
    filter_id,
    learner_has_record,
    mutation_target,
    record_has_assignment,
)
from resolvers.context import Context, LoaderGroup
from resolvers.errors import Forbidden
from resolvers.ids import GlobalId, encode_id, pk_of
from resolvers.loaders import scoped
from resolvers.organisations import OrganisationLoaders, unit_in
from resolvers.outcomes import AlreadyExists, Invalid, NotFound, doc
from resolvers.pagination import Page, contains, paginate
from resolvers.people import (
    ELSEWHERE,
    EMAIL_IN_USE,
    belongs_elsewhere,
    grant_roles,
    membership_of,
    person_for,
    rename_person,
    seen_user,
)


class LearnerLoaders(LoaderGroup):
    learner = scoped(Learner, Resource.LEARNER)


@dataclass(frozen=True)
class LearnerFilter:
    """Narrow the learner list."""

    search: str | None = field(default=None, metadata=doc("Part of a name or email."))
    location_id: GlobalId | None = field(default=None, metadata=doc("At this location."))
    department_id: GlobalId | None = field(default=None, metadata=doc("In this department."))
    assigned_to: GlobalId | None = field(
        default=None, metadata=doc("With a live record actively assigned to this user.")
    )
    unassigned: bool | None = field(
        default=None,
        metadata=doc("True: no record has an active assessor; false: some record has."),
    )


@dataclass(frozen=True)
class LearnerCreated:
    learner: Learner


@dataclass(frozen=True)
class LearnerUpdated:
    learner: Learner


async def learners(
    ctx: Context, *, first: int | None, after: str | None, filter: LearnerFilter | None
) -> Page[Learner]:
    f = filter or LearnerFilter()
    stmt = select(Learner).where(ctx.rules.where(Resource.LEARNER))
    if f.search and f.search.strip():
        stmt = stmt.where(or_(contains(Learner.name, f.search), contains(Learner.email, f.search)))
    location = filter_id(f.location_id, "Location", "locationId")
    if location is not None:
        stmt = stmt.where(Learner.location_id == location)
    department = filter_id(f.department_id, "Department", "departmentId")
    if department is not None:
        stmt = stmt.where(Learner.department_id == department)
    assignee = filter_id(f.assigned_to, "User", "assignedTo")
    if assignee is not None:
        stmt = stmt.where(
            learner_has_record(
                ctx,
                ApprenticeRecord.status == RecordStatus.LIVE,
                record_has_assignment(ctx, user=seen_user(ctx, assignee)),
            )
        )
    if f.unassigned is not None:
        assessed = learner_has_record(
            ctx,
            ApprenticeRecord.status == RecordStatus.LIVE,
            record_has_assignment(ctx, role=AssignmentRole.ASSESSOR),
        )
        stmt = stmt.where(~assessed if f.unassigned else assessed)
    return await paginate(
        ctx,
        stmt,
        order=[Learner.name, Learner.id],
        key=lambda row: (row.name, row.id),
        key_types=(str, int),
        first=first,
        after=after,
    )


async def learner(ctx: Context, *, id: str) -> Learner | None:
    pk = pk_of(id, "Learner")
    return None if pk is None else await ctx.loaders(LearnerLoaders).learner.load(pk)


async def learner_of(ctx: Context, learner_id: int) -> Learner:
    """The learner of a visible record or allocation: visible under every scope that shows it."""
    row = await ctx.loaders(LearnerLoaders).learner.load(learner_id)
    if row is None:
        raise LookupError("the learner of a visible row is not visible")
    return row


async def organisation_of(ctx: Context, learner: Learner) -> Organisation:
    """The organisation of a visible learner, shown because the learner is visible."""
    row = await ctx.loaders(OrganisationLoaders).organisation_ref.load(learner.organisation_id)
    assert row is not None
    return row


async def create_learner(
    ctx: Context,
    *,
    name: str,
    email: str | None,
    location_id: str | None,
    department_id: str | None,
) -> LearnerCreated | Invalid | NotFound | AlreadyExists:
    """A learner in the caller's organisation; an email gives them a LEARNER sign-in."""
    me = ctx.me
    if not ctx.rules.holds(Resource.LEARNER, Action.CREATE) or me.organisation_id is None:
        raise Forbidden(refusal(Resource.LEARNER, Action.CREATE))
    org = me.organisation_id
    if not ctx.rules.may_act_in(Resource.LEARNER, Action.CREATE, org):
        raise Forbidden(refusal(Resource.LEARNER, Action.CREATE))
    clean = clean_name(name)
    if isinstance(clean, Invalid):
        return clean
    clean_e = None if email is None or not email.strip() else clean_email(email)
    if isinstance(clean_e, Invalid):
        return clean_e
    location = await unit_in(ctx, Location, location_id, org, "locationId")
    if isinstance(location, Invalid | NotFound):
        return location
    department = await unit_in(ctx, Department, department_id, org, "departmentId")
    if isinstance(department, Invalid | NotFound):
        return department

    user_id = None
    if clean_e is not None:
        linked = await _sign_in_for(ctx, name=clean, email=clean_e, organisation_id=org)
        if isinstance(linked, AlreadyExists):
            return linked
        user_id = linked
    row = Learner(
        organisation_id=org,
        user_id=user_id,
        name=clean,
        email=clean_e,
        location_id=location,
        department_id=department,
        created_at=ctx.now,
    )
    if not await ctx.db.try_add(row):
        return AlreadyExists("This person is already a learner here.", field="email")
    await audit(ctx, AuditAction.LEARNER_CREATED, row, organisation_id=org)
    return LearnerCreated(row)


async def _sign_in_for(
    ctx: Context, *, name: str, email: str, organisation_id: int
) -> int | AlreadyExists:
    """The user a new learner signs in as: new, or a person already in the organisation."""
    user = await person_for(ctx, name=name, email=email, organisation_id=organisation_id)
    if isinstance(user, AlreadyExists):
        return user
    if await ctx.db.scalar(
        select(Learner.id).where(
            Learner.user_id == user.id, Learner.organisation_id == organisation_id
        )
    ):
        return AlreadyExists("This person is already a learner here.", field="email")
    await grant_roles(ctx, await membership_of(ctx, user, organisation_id), {Role.LEARNER})
    return user.id


async def update_learner(
    ctx: Context,
    *,
    learner_id: str,
    name: str | Unchanged | None = UNCHANGED,
    email: str | Unchanged | None = UNCHANGED,
    location_id: str | Unchanged | None = UNCHANGED,
    department_id: str | Unchanged | None = UNCHANGED,
) -> LearnerUpdated | Invalid | NotFound | AlreadyExists:
    """Change a learner. The name and email of a learner who signs in are their sign-in's too;
    an email given to a learner without a sign-in gives them one, as at creation. Changing
    units does not fire auto-allocation rules (they reach people when they are created)."""
    learner = await mutation_target(ctx, learner_id, Learner, "learnerId", Action.UPDATE)
    if isinstance(learner, Invalid | NotFound):
        return learner
    new_name = None if name is UNCHANGED or name is None else clean_name(name)
    if isinstance(new_name, Invalid):
        return new_name
    new_email = None if email is UNCHANGED or email is None else clean_email(email)
    if isinstance(new_email, Invalid):
        return new_email
    units_given = location_id is not UNCHANGED or department_id is not UNCHANGED
    if new_name is None and new_email is None and not units_given:
        return Invalid("Give something to change: name, email, locationId or departmentId.")
    org = learner.organisation_id
    values: dict[str, Any] = {}
    changed: dict[str, str | None] = {}
    for kind, given, column, field_name in (
        (Location, location_id, "location_id", "locationId"),
        (Department, department_id, "department_id", "departmentId"),
    ):
        if given is UNCHANGED:
            continue
        unit = await unit_in(ctx, kind, given, org, field_name)
        if isinstance(unit, Invalid | NotFound):
            return unit
        if unit != getattr(learner, column):
            values[column] = unit
            changed[field_name] = None if unit is None else encode_id(kind.__name__, unit)
    rename = new_name is not None and new_name != learner.name
    re_email = new_email is not None and new_email != learner.email
    user = None
    if learner.user_id is not None and (rename or re_email):
        user = await ctx.db.scalar(select(User).where(User.id == learner.user_id))
        assert user is not None
        if await belongs_elsewhere(ctx, user, org):
            raise Forbidden(ELSEWHERE.format(what="name or email"))
    if re_email:
        assert new_email is not None
        if user is None:
            linked = await _sign_in_for(
                ctx, name=new_name or learner.name, email=new_email, organisation_id=org
            )
            if isinstance(linked, AlreadyExists):
                return linked
            values["user_id"] = linked
        elif not await ctx.db.try_execute(
            update(User).where(User.id == user.id).values(email=new_email)
        ):
            return AlreadyExists(EMAIL_IN_USE, field="email")
        values["email"] = new_email
        changed["email"] = None
    if rename:
        assert new_name is not None
        values["name"] = new_name
        changed["name"] = None
        if user is not None:
            await rename_person(ctx, user, new_name)
    if values:
        await ctx.db.execute(update(Learner).where(Learner.id == learner.id).values(**values))
        for column, value in values.items():
            set_committed_value(learner, column, value)
    await audit(
        ctx,
        AuditAction.LEARNER_UPDATED,
        learner,
        organisation_id=org,
        details={
            "fields": sorted(changed),
            **{k: v for k, v in changed.items() if k not in ("name", "email")},
        },
    )
    return LearnerUpdated(learner)

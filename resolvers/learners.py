"""Learners: lists, single learners, creation (with a sign-in when an email is given)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, or_, select

from db.models import (
    ApprenticeRecord,
    AssignmentRole,
    AuditAction,
    Department,
    Learner,
    Location,
    RecordStatus,
)
from policies.vocabulary import Action, Resource, Role, refusal
from resolvers.audit import audit
from resolvers.common import (
    clean_email,
    clean_name,
    filter_id,
    learner_has_record,
    record_has_assignment,
)
from resolvers.context import Context, LoaderGroup
from resolvers.errors import Forbidden
from resolvers.ids import GlobalId, pk_of
from resolvers.loaders import scoped
from resolvers.organisations import unit_in
from resolvers.outcomes import AlreadyExists, Invalid, NotFound, doc
from resolvers.pagination import FilterValues, ListSource, Page, like_pattern, matches, page_of
from resolvers.people import grant_roles, membership_of, person_for, seen_user
from resolvers.relations import Ref

LOCATION_OF_LEARNER = Ref(Location, "location_id")
DEPARTMENT_OF_LEARNER = Ref(Department, "department_id")


class LearnerLoaders(LoaderGroup):
    learner = scoped(Learner, Resource.LEARNER)


@dataclass(frozen=True)
class LearnerFilter:
    """Narrow the learner list."""

    search: str | None = field(default=None, metadata=doc("Part of a name or email."))
    location_id: GlobalId | None = field(default=None, metadata=doc("At this location."))
    department_id: GlobalId | None = field(default=None, metadata=doc("In this department."))
    assigned_to: GlobalId | None = field(
        default=None, metadata=doc("With a record actively assigned to this user.")
    )
    unassigned: bool | None = field(
        default=None,
        metadata=doc("True: no record has an active assessor; false: some record has."),
    )


@dataclass(frozen=True)
class LearnerCreated:
    learner: Learner


def _prepare(f: LearnerFilter | None) -> dict[str, Any]:
    """The filter's checked values; a malformed id is INVALID."""
    if f is None:
        return {}
    values: dict[str, Any] = {}
    if f.search and f.search.strip():
        values["search"] = like_pattern(f.search)
    for name, value, type_name, field_name in (
        ("location", f.location_id, "Location", "locationId"),
        ("department", f.department_id, "Department", "departmentId"),
        ("assignee", f.assigned_to, "User", "assignedTo"),
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
        found.append(or_(matches(Learner.name, v["search"]), matches(Learner.email, v["search"])))
    if "location" in v:
        found.append(Learner.location_id == v["location"])
    if "department" in v:
        found.append(Learner.department_id == v["department"])
    if "assignee" in v:
        assigned = record_has_assignment(ctx, user=seen_user(ctx, v["assignee"]))
        found.append(learner_has_record(ctx, assigned))
    if "unassigned" in v:
        assessed = learner_has_record(
            ctx,
            ApprenticeRecord.status == RecordStatus.LIVE,
            record_has_assignment(ctx, role=AssignmentRole.ASSESSOR),
        )
        found.append(~assessed if v["unassigned"] else assessed)
    return found


LEARNERS: ListSource[Learner, LearnerFilter] = ListSource(
    Learner,
    Resource.LEARNER,
    order=(Learner.name, Learner.id),
    prepare=_prepare,
    conditions=_conditions,
)


async def learners(
    ctx: Context, *, first: int | None, after: str | None, filter: LearnerFilter | None
) -> Page[Learner]:
    return await page_of(ctx, LEARNERS, filter, first=first, after=after)


async def learner(ctx: Context, *, id: str) -> Learner | None:
    pk = pk_of(id, "Learner")
    return None if pk is None else await ctx.loaders(LearnerLoaders).learner.load(pk)


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

"""People: the viewer, staff, and the external assessor directory."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select, update
from strawberry.dataloader import DataLoader

from db.models import (
    AuditAction,
    Department,
    Learner,
    Location,
    Membership,
    MembershipRole,
    Organisation,
    User,
    UserKind,
)
from db.queries import insert_skipping_conflicts
from policies.vocabulary import MEMBERSHIP_ROLES, Action, Resource, Role, refusal
from resolvers.audit import audit
from resolvers.common import clean_email, clean_name
from resolvers.context import Context, LoaderGroup
from resolvers.errors import Forbidden
from resolvers.loaders import by_id, loader, ref
from resolvers.organisations import OrganisationLoaders, target_organisation, unit_in
from resolvers.outcomes import AlreadyExists, Invalid, NotFound, doc
from resolvers.pagination import Page, contains, paginate

ROLE_ORDER = list(Role)


class PeopleLoaders(LoaderGroup):
    user_ref = ref(User)
    user = loader(lambda ctx: by_id(ctx, User, visible_user(ctx)))

    @loader
    @staticmethod
    def roles(ctx: Context) -> DataLoader[int, list[Role]]:
        """Each user's roles in the organisation the caller acts in."""
        organisation_id = ctx.me.organisation_id

        async def load(user_ids: Sequence[int]) -> list[list[Role]]:
            if organisation_id is None:
                return [[] for _ in user_ids]
            stmt = (
                select(Membership.user_id, MembershipRole.role)
                .join(MembershipRole, MembershipRole.membership_id == Membership.id)
                .where(
                    Membership.user_id.in_(user_ids),
                    Membership.organisation_id == organisation_id,
                )
            )
            roles: defaultdict[int, list[Role]] = defaultdict(list)
            rows: Sequence[Any] = (await ctx.db.execute(stmt)).all()
            for user_id, role in rows:
                roles[user_id].append(Role(role))
            return [sorted(roles.get(u, []), key=ROLE_ORDER.index) for u in user_ids]

        return DataLoader(load_fn=load)


@dataclass(frozen=True)
class StaffFilter:
    """Narrow the staff list."""

    search: str | None = field(default=None, metadata=doc("Part of a name or email."))
    roles: list[Role] | None = field(
        default=None, metadata=doc("Only people holding any of these roles.")
    )


@dataclass(frozen=True)
class Viewer:
    user: User
    organisation: Organisation | None
    roles: list[Role]


@dataclass(frozen=True)
class StaffMemberCreated:
    user: User


@dataclass(frozen=True)
class ExternalAssessorCreated:
    assessor: User


async def viewer(ctx: Context) -> Viewer:
    me = ctx.me
    user = await ctx.loaders(PeopleLoaders).user_ref.load(me.user_id)
    assert user is not None
    organisation = (
        None
        if me.organisation_id is None
        else await ctx.loaders(OrganisationLoaders).organisation_ref.load(me.organisation_id)
    )
    return Viewer(
        user=user, organisation=organisation, roles=sorted(me.roles, key=ROLE_ORDER.index)
    )


def _people_search(search: str | None) -> list[ColumnElement[bool]]:
    if not search or not search.strip():
        return []
    return [or_(contains(User.name, search), contains(User.email, search))]


async def staff(
    ctx: Context, *, first: int | None, after: str | None, filter: StaffFilter | None
) -> Page[User]:
    search, roles = (filter.search, filter.roles) if filter else (None, None)
    stmt = select(User).where(ctx.rules.where(Resource.STAFF), *_people_search(search))
    if roles:
        membership = select(Membership.user_id).join(
            MembershipRole, MembershipRole.membership_id == Membership.id
        )
        membership = membership.where(MembershipRole.role.in_([r.value for r in roles]))
        if ctx.me.organisation_id is not None:
            membership = membership.where(Membership.organisation_id == ctx.me.organisation_id)
        stmt = stmt.where(User.id.in_(membership))
    return await paginate(
        ctx,
        stmt,
        order=[User.name, User.id],
        key=lambda u: (u.name, u.id),
        key_types=(str, int),
        first=first,
        after=after,
    )


async def external_assessors(
    ctx: Context, *, first: int | None, after: str | None, search: str | None = None
) -> Page[User]:
    stmt = select(User).where(ctx.rules.where(Resource.EXTERNAL_ASSESSOR), *_people_search(search))
    return await paginate(
        ctx,
        stmt,
        order=[User.name, User.id],
        key=lambda u: (u.name, u.id),
        key_types=(str, int),
        first=first,
        after=after,
    )


async def create_external_assessor(
    ctx: Context, *, name: str, email: str
) -> ExternalAssessorCreated | Invalid | AlreadyExists:
    if not ctx.rules.holds(Resource.EXTERNAL_ASSESSOR, Action.CREATE):
        raise Forbidden(refusal(Resource.EXTERNAL_ASSESSOR, Action.CREATE))
    clean = clean_name(name)
    if isinstance(clean, Invalid):
        return clean
    clean_e = clean_email(email)
    if isinstance(clean_e, Invalid):
        return clean_e
    user = User(email=clean_e, name=clean, kind=UserKind.EXTERNAL_ASSESSOR, created_at=ctx.now)
    if not await ctx.db.try_add(user):
        return AlreadyExists("A user with this email exists.", field="email")
    await audit(ctx, AuditAction.EXTERNAL_ASSESSOR_CREATED, user, organisation_id=None)
    return ExternalAssessorCreated(user)


async def create_staff_member(
    ctx: Context,
    *,
    organisation_id: str | None,
    name: str,
    email: str,
    roles: Sequence[Role],
    location_id: str | None,
    department_id: str | None,
) -> StaffMemberCreated | Invalid | NotFound | AlreadyExists:
    """Give a person a membership: a new user, or an existing staff user from elsewhere."""
    org = await target_organisation(ctx, Resource.STAFF, organisation_id)
    if isinstance(org, Invalid | NotFound):
        return org
    clean = clean_name(name)
    if isinstance(clean, Invalid):
        return clean
    clean_e = clean_email(email)
    if isinstance(clean_e, Invalid):
        return clean_e
    wanted = set(roles)
    if not wanted:
        return Invalid("Give at least one role.", field="roles")
    if not wanted <= MEMBERSHIP_ROLES:
        return Invalid(
            "External assessor and support are kinds of user, not organisation roles.",
            field="roles",
        )
    if Role.SUPER_ADMIN in wanted and not (ctx.me.roles & {Role.SUPPORT, Role.SUPER_ADMIN}):
        raise Forbidden("Only support or a super admin can make a super admin.")
    location = await unit_in(ctx, Location, location_id, org, "locationId")
    if isinstance(location, Invalid | NotFound):
        return location
    department = await unit_in(ctx, Department, department_id, org, "departmentId")
    if isinstance(department, Invalid | NotFound):
        return department

    user = await person_for(ctx, name=clean, email=clean_e, organisation_id=org)
    if isinstance(user, AlreadyExists):
        return user
    membership_id = await membership_of(ctx, user, org, location=location, department=department)
    held = set(
        await ctx.db.scalars(
            select(MembershipRole.role).where(MembershipRole.membership_id == membership_id)
        )
    )
    if held - {Role.LEARNER.value}:
        return AlreadyExists("This person is already a member of staff here.", field="email")
    await grant_roles(ctx, membership_id, wanted)
    await audit(
        ctx,
        AuditAction.STAFF_MEMBER_CREATED,
        user,
        organisation_id=org,
        details={"roles": sorted(r.value for r in wanted)},
    )
    return StaffMemberCreated(user)


EMAIL_IN_USE = "This email is already in use."


async def person_for(
    ctx: Context, *, name: str, email: str, organisation_id: int
) -> User | AlreadyExists:
    """The person an email names, for a membership or learner record in `organisation_id`.

    A new email makes a new staff user. An email held by someone already in the organisation
    (a membership or a learner record there) is that person, unchanged. Any other account
    answers AlreadyExists, whatever its kind and without revealing it — except that support
    may give a staff user of another organisation a second membership.
    """
    user = await ctx.db.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, name=name, kind=UserKind.STAFF, created_at=ctx.now)
        if not await ctx.db.try_add(user):
            return AlreadyExists(EMAIL_IN_USE, field="email")
        return user
    if user.kind == UserKind.STAFF:
        here = or_(
            exists().where(
                Membership.user_id == user.id, Membership.organisation_id == organisation_id
            ),
            exists().where(Learner.user_id == user.id, Learner.organisation_id == organisation_id),
        )
        if Role.SUPPORT in ctx.me.roles or await ctx.db.scalar(select(here)):
            return user
    return AlreadyExists(EMAIL_IN_USE, field="email")


async def membership_of(
    ctx: Context,
    user: User,
    organisation_id: int,
    *,
    location: int | None = None,
    department: int | None = None,
) -> int:
    """The person's membership of the organisation, made if missing (safe against a race)."""
    await ctx.db.execute(
        insert_skipping_conflicts(
            ctx.db.dialect, Membership, index_elements=["user_id", "organisation_id"]
        ).values(
            user_id=user.id,
            organisation_id=organisation_id,
            location_id=location,
            department_id=department,
            created_at=ctx.now,
        )
    )
    mine = and_(Membership.user_id == user.id, Membership.organisation_id == organisation_id)
    if (location, department) != (None, None):
        await ctx.db.execute(
            update(Membership).where(mine).values(location_id=location, department_id=department)
        )
    membership_id = await ctx.db.scalar(select(Membership.id).where(mine))
    assert membership_id is not None
    return membership_id


async def grant_roles(ctx: Context, membership_id: int, roles: set[Role]) -> None:
    await ctx.db.execute(
        insert_skipping_conflicts(
            ctx.db.dialect, MembershipRole, index_elements=["membership_id", "role"]
        ),
        [{"membership_id": membership_id, "role": r.value} for r in sorted(roles)],
    )


async def user_roles(ctx: Context, user: User) -> list[Role]:
    if user.kind == UserKind.EXTERNAL_ASSESSOR:
        return [Role.EXTERNAL_ASSESSOR]
    if user.kind == UserKind.SUPPORT:
        return [Role.SUPPORT]
    return await ctx.loaders(PeopleLoaders).roles.load(user.id)


def seen_user(ctx: Context, pk: int) -> Select[int]:
    """The user with this id if the caller may see them: a filter on a person the caller cannot
    see matches nothing, exactly like a made-up id."""
    return select(User.id).where(User.id == pk, visible_user(ctx)).correlate(None)


def visible_user(ctx: Context) -> ColumnElement[bool]:
    """Users the caller may look up by id: through the staff or the directory scope."""
    return or_(ctx.rules.where(Resource.STAFF), ctx.rules.where(Resource.EXTERNAL_ASSESSOR))

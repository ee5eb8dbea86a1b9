"""People: the viewer, staff, the external assessor directory; changing and deactivating staff."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    func,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.orm.attributes import set_committed_value
from strawberry.dataloader import DataLoader

from db.models import (
    AuditAction,
    Department,
    Learner,
    Location,
    Membership,
    MembershipRole,
    Organisation,
    RecordAssignment,
    User,
    UserKind,
)
from db.queries import comma_joined, insert_skipping_conflicts
from policies.vocabulary import MEMBERSHIP_ROLES, Action, Resource, Role, refusal
from resolvers.audit import audit
from resolvers.common import (
    UNCHANGED,
    Unchanged,
    clean_avatar_url,
    clean_email,
    clean_name,
    filter_id,
    mutation_target,
)
from resolvers.context import Context, Limits, LoaderGroup
from resolvers.errors import Forbidden
from resolvers.ids import encode_id
from resolvers.loaders import loader, lookup, ref
from resolvers.organisations import OrganisationLoaders, target_organisation, unit_in
from resolvers.outcomes import AlreadyExists, Invalid, NotFound, doc
from resolvers.pagination import FilterValues, ListSource, Sort, matches, search_of, search_pattern

ROLE_ORDER = list(Role)


class PeopleLoaders(LoaderGroup):
    user_ref = ref(User)
    user = lookup(User, lambda ctx: visible_user(ctx))

    @loader
    @staticmethod
    def membership(ctx: Context) -> DataLoader[tuple[int, int], MembershipView | None]:
        """Each (user, organisation) membership, where the caller may read that organisation
        (support: any; others: their own)."""

        async def load(keys: Sequence[tuple[int, int]]) -> list[MembershipView | None]:
            stmt = (
                select(
                    Membership.user_id,
                    Membership.organisation_id,
                    Membership.deactivated_at,
                    MembershipRole.role,
                )
                .join(Organisation, Organisation.id == Membership.organisation_id)
                .outerjoin(MembershipRole, MembershipRole.membership_id == Membership.id)
                .where(
                    Membership.user_id.in_({u for u, _ in keys}),
                    Membership.organisation_id.in_({o for _, o in keys}),
                    ctx.rules.where(Resource.ORGANISATION),
                )
            )
            roles: defaultdict[tuple[int, int], list[Role]] = defaultdict(list)
            deactivated: dict[tuple[int, int], datetime | None] = {}
            rows: Sequence[Any] = (await ctx.db.execute(stmt)).all()
            for user_id, organisation_id, deactivated_at, role in rows:
                deactivated[(user_id, organisation_id)] = deactivated_at
                if role is not None:
                    roles[(user_id, organisation_id)].append(Role(role))
            return [
                MembershipView(sorted(roles[k], key=ROLE_ORDER.index), deactivated[k])
                if k in deactivated
                else None
                for k in keys
            ]

        return DataLoader(load_fn=load)


@dataclass(frozen=True)
class MembershipView:
    """A person's place in one organisation, as the caller may see it."""

    roles: list[Role]
    deactivated_at: datetime | None


@dataclass(frozen=True)
class StaffFilter:
    """Narrow the staff list."""

    search: str | None = field(default=None, metadata=doc("Part of a name or email."))
    roles: list[Role] | None = field(
        default=None, metadata=doc("Only people holding any of these roles.")
    )
    deactivated: bool | None = field(
        default=None,
        metadata=doc("True: only people deactivated here; left out or false: active staff."),
    )


@dataclass(frozen=True)
class ExternalAssessorFilter:
    """Narrow the external assessor directory."""

    search: str | None = field(default=None, metadata=doc("Part of a name or email."))


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


@dataclass(frozen=True)
class ExternalAssessorUpdated:
    assessor: User
    unchanged: bool = False  # every value given was already so: nothing written


@dataclass(frozen=True)
class StaffMemberUpdated:
    user: User
    unchanged: bool = False


@dataclass(frozen=True)
class StaffMemberDeactivated:
    user: User
    ended_assignments: int
    unchanged: bool = False


@dataclass(frozen=True)
class ViewerMembership:
    """One active membership of the signed-in person, in any organisation."""

    organisation: Organisation
    roles: list[Role]
    location: Location | None
    department: Department | None


async def viewer_memberships(ctx: Context) -> list[ViewerMembership]:
    """Every active membership of the signed-in person, whichever organisation the credential
    names: two statements (the memberships with their units, then their roles). An API key or
    the command line acts for an organisation, not a person: none."""
    me = ctx.me
    if me.api_key_id is not None or me.system or me.kind is not UserKind.STAFF:
        return []
    rows: Sequence[Any] = (
        await ctx.db.execute(
            select(Membership.id, Organisation, Location, Department)
            .join(Organisation, Organisation.id == Membership.organisation_id)
            .outerjoin(Location, Location.id == Membership.location_id)
            .outerjoin(Department, Department.id == Membership.department_id)
            .where(Membership.user_id == me.user_id, Membership.deactivated_at.is_(None))
            .order_by(Organisation.name, Organisation.id)
        )
    ).all()
    if not rows:
        return []
    roles: defaultdict[int, list[Role]] = defaultdict(list)
    held: Sequence[Any] = (
        await ctx.db.execute(
            select(MembershipRole.membership_id, MembershipRole.role).where(
                MembershipRole.membership_id.in_([row[0] for row in rows])
            )
        )
    ).all()
    for membership_id, role in held:
        roles[membership_id].append(Role(role))
    return [
        ViewerMembership(
            organisation=organisation,
            roles=sorted(roles[membership_id], key=ROLE_ORDER.index),
            location=location,
            department=department,
        )
        for membership_id, organisation, location, department in rows
    ]


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


def _people_search(ctx: Context, search: str | None) -> list[ColumnElement[bool]]:
    pattern = search_pattern(ctx.limits, search)
    if pattern is None:
        return []
    return [or_(matches(User.name, pattern), matches(User.email, pattern))]


def _staff_prepare(
    limits: Limits, f: StaffFilter | None, _arguments: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The filter's checked values: each role asked for is a flag (the set of roles shapes the
    statement), a search its LIKE pattern (too long: INVALID)."""
    f = f or StaffFilter()
    values: dict[str, Any] = {"deactivated": bool(f.deactivated)}
    pattern = search_pattern(limits, f.search)
    if pattern is not None:
        values["search"] = pattern
    for role in f.roles or ():
        values[f"role_{role.value}"] = True
    return values


def _staff_conditions(ctx: Context, v: FilterValues) -> list[ColumnElement[bool]]:
    found = [staff_membership_here(ctx, deactivated=v["deactivated"]), *_searching(v)]
    roles = [r.value for r in Role if v.get(f"role_{r.value}")]
    if roles:
        membership = select(Membership.user_id).join(
            MembershipRole, MembershipRole.membership_id == Membership.id
        )
        # Equalities, not IN: the compiled path binds no list (its statement is compiled once
        # with every value a parameter, and a list would have to be spelled out there).
        membership = membership.where(or_(*(MembershipRole.role == r for r in roles)))
        if ctx.me.organisation_id is not None:
            membership = membership.where(Membership.organisation_id == ctx.me.organisation_id)
        found.append(User.id.in_(membership))
    return found


def _searching(v: FilterValues) -> list[ColumnElement[bool]]:
    if "search" not in v:
        return []
    return [or_(matches(User.name, v["search"]), matches(User.email, v["search"]))]


PEOPLE_SORTS = (Sort("NAME", (User.name,), "By name."),)

# The assignee drop-down: active staff unless the filter asks for deactivated ones, by name.
STAFF: ListSource[User, StaffFilter] = ListSource(
    "staff",
    User,
    Resource.STAFF,
    PEOPLE_SORTS,
    prepare=_staff_prepare,
    conditions=_staff_conditions,
)


def staff_membership_here(ctx: Context, *, deactivated: bool) -> ColumnElement[bool]:
    """The user (correlated) has a staff membership, active or deactivated as asked, in the
    caller's organisation (support: in any)."""
    clauses = [
        Membership.user_id == User.id,
        MembershipRole.membership_id == Membership.id,
        MembershipRole.role != Role.LEARNER.value,
        Membership.deactivated_at.is_not(None)
        if deactivated
        else Membership.deactivated_at.is_(None),
    ]
    if ctx.me.organisation_id is not None:
        clauses.append(Membership.organisation_id == ctx.me.organisation_id)
    return exists(select(Membership.id).where(*clauses).correlate(User))


def _directory_prepare(
    limits: Limits, f: ExternalAssessorFilter | None, arguments: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The search asked for (`search` is the former place of `filter.search`)."""
    wanted = search_of(None if f is None else f.search, (arguments or {}).get("search"))
    pattern = search_pattern(limits, wanted)
    return {} if pattern is None else {"search": pattern}


# The external assessor directory, by name.
EXTERNAL_ASSESSORS: ListSource[User, ExternalAssessorFilter] = ListSource(
    "externalAssessors",
    User,
    Resource.EXTERNAL_ASSESSOR,
    PEOPLE_SORTS,
    prepare=_directory_prepare,
    conditions=lambda _ctx, v: _searching(v),
)


async def create_external_assessor(
    ctx: Context, *, name: str, email: str, avatar_url: str | None = None
) -> ExternalAssessorCreated | Invalid | AlreadyExists:
    if not ctx.rules.holds(Resource.EXTERNAL_ASSESSOR, Action.CREATE):
        raise Forbidden(refusal(Resource.EXTERNAL_ASSESSOR, Action.CREATE))
    clean = clean_name(name)
    if isinstance(clean, Invalid):
        return clean
    clean_e = clean_email(email)
    if isinstance(clean_e, Invalid):
        return clean_e
    picture = clean_avatar_url(avatar_url)
    if isinstance(picture, Invalid):
        return picture
    user = User(
        email=clean_e,
        name=clean,
        kind=UserKind.EXTERNAL_ASSESSOR,
        avatar_url=picture,
        created_at=ctx.now,
    )
    if not await ctx.db.try_add(user):
        return AlreadyExists("A user with this email exists.", field="email")
    await audit(ctx, AuditAction.EXTERNAL_ASSESSOR_CREATED, user, organisation_id=None)
    return ExternalAssessorCreated(user)


async def update_external_assessor(
    ctx: Context,
    *,
    user_id: str,
    name: str | Unchanged | None = UNCHANGED,
    email: str | Unchanged | None = UNCHANGED,
    avatar_url: str | Unchanged | None = UNCHANGED,
) -> ExternalAssessorUpdated | Invalid | NotFound | AlreadyExists:
    """Change an external assessor's profile: name, email, picture (support; DESIGN.md: an
    external assessor's name and email change only through support)."""
    assessor = await mutation_target(
        ctx, user_id, User, "userId", Action.UPDATE, Resource.EXTERNAL_ASSESSOR
    )
    if isinstance(assessor, Invalid | NotFound):
        return assessor
    values: dict[str, Any] = {}
    if not isinstance(name, Unchanged) and name is not None:
        clean = clean_name(name)
        if isinstance(clean, Invalid):
            return clean
        values["name"] = clean
    if not isinstance(email, Unchanged) and email is not None:
        clean_e = clean_email(email)
        if isinstance(clean_e, Invalid):
            return clean_e
        values["email"] = clean_e
    if not isinstance(avatar_url, Unchanged):
        picture = clean_avatar_url(avatar_url)
        if isinstance(picture, Invalid):
            return picture
        values["avatar_url"] = picture
    if not values:
        return Invalid("Give something to change: name, email or avatarUrl.")
    changed = {k: v for k, v in values.items() if getattr(assessor, k) != v}
    if not changed:
        return ExternalAssessorUpdated(assessor, unchanged=True)
    # another person's email: the unique index decides, the write is rolled back
    if not await ctx.db.try_execute(update(User).where(User.id == assessor.id).values(**changed)):
        return AlreadyExists("A user with this email exists.", field="email")
    for key, value in changed.items():
        set_committed_value(assessor, key, value)
    fields = {"name": "name", "email": "email", "avatar_url": "avatarUrl"}
    await audit(
        ctx,
        AuditAction.EXTERNAL_ASSESSOR_UPDATED,
        assessor,
        organisation_id=None,
        details={"fields": sorted(fields[k] for k in changed)},
    )
    return ExternalAssessorUpdated(assessor)


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


async def membership_in(
    ctx: Context, user: User, organisation_id: str | None
) -> MembershipView | None:
    """The person's membership of the named organisation (default: the caller's), as far as the
    caller may read that organisation."""
    organisation = filter_id(organisation_id, "Organisation", "organisationId")
    if organisation is None:
        organisation = ctx.me.organisation_id
    if organisation is None or user.kind != UserKind.STAFF:
        return None
    return await ctx.loaders(PeopleLoaders).membership.load((user.id, organisation))


async def user_roles(ctx: Context, user: User, organisation_id: str | None = None) -> list[Role]:
    if user.kind == UserKind.EXTERNAL_ASSESSOR:
        return [Role.EXTERNAL_ASSESSOR]
    if user.kind == UserKind.SUPPORT:
        return [Role.SUPPORT]
    found = await membership_in(ctx, user, organisation_id)
    return [] if found is None else found.roles


def _membership_value(ctx: Context, columns: Any, value: Any, *, roles: bool = False) -> Any:
    """`value` of the person's membership of the caller's organisation (NULL: none), over its
    roles' rows when `roles`, as a subquery correlated to a users table's (or alias's) columns
    (joined, not nested: SQLite's parser stack is bounded), read through the same
    organisation scope as the membership loader."""
    organisation = ctx.me.organisation_id
    if organisation is None:
        return null()
    stmt = (
        select(value)
        .select_from(Membership)
        .join(Organisation, Organisation.id == Membership.organisation_id)
    )
    if roles:
        stmt = stmt.join(MembershipRole, MembershipRole.membership_id == Membership.id)
    return (
        stmt.where(
            Membership.user_id == columns["id"],
            Membership.organisation_id == organisation,
            ctx.rules.where(Resource.ORGANISATION),
        )
        .correlate(columns["id"].table)
        .scalar_subquery()
    )


def roles_column(ctx: Context, columns: Any) -> Any:
    """`user_roles` (no organisation named) in SQL over a users table's (or alias's) columns:
    the roles of the person's membership here, comma-joined (NULL: none); `roles_shown` gives
    the response form from it and the person's kind. The compiled path's form of
    `User.roles`."""
    return _membership_value(ctx, columns, comma_joined(MembershipRole.role), roles=True)


def roles_shown(joined: str | None, kind: str) -> list[str]:
    """The roles `roles_column` gathers, for a person of this kind, as `user_roles` answers."""
    if kind == UserKind.EXTERNAL_ASSESSOR:
        return [Role.EXTERNAL_ASSESSOR.value]
    if kind == UserKind.SUPPORT:
        return [Role.SUPPORT.value]
    if kind != UserKind.STAFF or not joined:
        return []
    return [r.value for r in sorted((Role(r) for r in joined.split(",")), key=ROLE_ORDER.index)]


def deactivated_column(ctx: Context, columns: Any) -> Any:
    """`deactivated_at` (no organisation named) in SQL: the compiled path's form of
    `User.deactivatedAt`, shown by `deactivated_shown` with the person's kind."""
    return _membership_value(ctx, columns, Membership.deactivated_at)


def deactivated_shown(value: str | None, kind: str) -> str | None:
    """`deactivated_column`'s value for a person of this kind, as `deactivated_at` answers."""
    from resolvers.compiled import as_datetime

    return as_datetime(value) if kind == UserKind.STAFF else None


async def deactivated_at(
    ctx: Context, user: User, organisation_id: str | None = None
) -> datetime | None:
    found = await membership_in(ctx, user, organisation_id)
    return None if found is None else found.deactivated_at


def seen_user(ctx: Context, pk: int) -> Select[int]:
    """The user with this id if the caller may see them: a filter on a person the caller cannot
    see matches nothing, exactly like a made-up id."""
    return select(User.id).where(User.id == pk, visible_user(ctx)).correlate(None)


def visible_user(ctx: Context) -> ColumnElement[bool]:
    """Users the caller may look up by id: through the staff or the directory scope."""
    return or_(ctx.rules.where(Resource.STAFF), ctx.rules.where(Resource.EXTERNAL_ASSESSOR))


# Changing and deactivating staff ---------------------------------------------------------

ELSEWHERE = "This person also belongs elsewhere: only support can change their {what}."
SUPER_ADMIN_ONLY = "Only a super admin can give or take away the super admin role."


async def belongs_elsewhere(ctx: Context, user: User, organisation_id: int | None) -> bool:
    """Whether the person is more than this organisation's: a membership or learner record in
    another organisation, or an account that belongs to no organisation (external assessor,
    support). Their name and email change only through support."""
    if user.kind != UserKind.STAFF:
        return True
    elsewhere = or_(
        exists().where(
            Membership.user_id == user.id, Membership.organisation_id != organisation_id
        ),
        exists().where(Learner.user_id == user.id, Learner.organisation_id != organisation_id),
    )
    return bool(await ctx.db.scalar(select(elsewhere)))


async def rename_person(ctx: Context, user: User, name: str) -> None:
    await ctx.db.execute(update(User).where(User.id == user.id).values(name=name))
    set_committed_value(user, "name", name)


async def _membership_here(ctx: Context, user: User) -> tuple[Membership, set[Role]]:
    """The person's membership of the caller's organisation (the target is staff there)."""
    organisation_id = ctx.me.organisation_id
    membership = await ctx.db.scalar(
        select(Membership).where(
            Membership.user_id == user.id, Membership.organisation_id == organisation_id
        )
    )
    assert membership is not None, "a staff member visible here has a membership here"
    roles = await ctx.db.scalars(
        select(MembershipRole.role).where(MembershipRole.membership_id == membership.id)
    )
    return membership, {Role(r) for r in roles}


async def _other_active_super_admins(ctx: Context, membership: Membership) -> int:
    """Active super admins of the membership's organisation besides this one. The organisation
    row stays locked until the operation ends, so two super admins demoting or deactivating
    each other at once cannot leave none (SQLite already holds the write lock)."""
    await ctx.db.execute(
        select(Organisation.id)
        .where(Organisation.id == membership.organisation_id)
        .with_for_update()
    )
    count = await ctx.db.scalar(
        select(func.count())
        .select_from(Membership)
        .join(MembershipRole, MembershipRole.membership_id == Membership.id)
        .where(
            Membership.organisation_id == membership.organisation_id,
            Membership.id != membership.id,
            Membership.deactivated_at.is_(None),
            MembershipRole.role == Role.SUPER_ADMIN.value,
        )
    )
    return int(count or 0)


async def update_staff_member(
    ctx: Context,
    *,
    user_id: str,
    name: str | Unchanged | None = UNCHANGED,
    roles: Sequence[Role] | Unchanged | None = UNCHANGED,
    location_id: str | Unchanged | None = UNCHANGED,
    department_id: str | Unchanged | None = UNCHANGED,
    avatar_url: str | Unchanged | None = UNCHANGED,
) -> StaffMemberUpdated | Invalid | NotFound:
    """Change a staff member: admins here (name, picture, roles, units); support the name and
    picture of anyone. A person's name and picture are theirs everywhere: for someone who also
    belongs elsewhere only support changes them."""
    user = await mutation_target(ctx, user_id, User, "userId", Action.UPDATE)
    if isinstance(user, Invalid | NotFound):
        return user
    new_name = None if name is UNCHANGED or name is None else clean_name(name)
    if isinstance(new_name, Invalid):
        return new_name
    picture = None if isinstance(avatar_url, Unchanged) else clean_avatar_url(avatar_url)
    if isinstance(picture, Invalid):
        return picture
    wanted = None if roles is UNCHANGED or roles is None else set(roles)
    units_given = location_id is not UNCHANGED or department_id is not UNCHANGED
    if new_name is None and wanted is None and not units_given and avatar_url is UNCHANGED:
        return Invalid(
            "Give something to change: name, roles, locationId, departmentId or avatarUrl."
        )
    changed: dict[str, Any] = {}
    organisation_id = ctx.me.organisation_id
    rename = new_name is not None and new_name != user.name
    repicture = avatar_url is not UNCHANGED and picture != user.avatar_url
    if organisation_id is None:  # support: a person's name, not their place in an organisation
        if wanted is not None or units_given:
            raise Forbidden("Roles and units are changed by the organisation's own admins.")
    elif (rename or repicture) and await belongs_elsewhere(ctx, user, organisation_id):
        raise Forbidden(ELSEWHERE.format(what="name" if rename else "picture"))
    if organisation_id is not None:
        membership, held = await _membership_here(ctx, user)
        if membership.deactivated_at is not None:
            return Invalid("This person has been deactivated here.", field="userId")
        if wanted is not None:
            roles_changed = await _change_roles(ctx, membership, held, wanted)
            if isinstance(roles_changed, Invalid):
                return roles_changed
            if roles_changed:
                changed["roles"] = sorted(r.value for r in roles_changed)
        units = await _change_units(ctx, membership, location_id, department_id)
        if isinstance(units, Invalid | NotFound):
            return units
        changed.update(units)
    if rename:
        assert new_name is not None
        await rename_person(ctx, user, new_name)
        changed["name"] = True
    if repicture:
        await ctx.db.execute(update(User).where(User.id == user.id).values(avatar_url=picture))
        set_committed_value(user, "avatar_url", picture)
        changed["avatarUrl"] = True
    personal = ("name", "avatarUrl")
    if not changed:  # every value given was already so
        return StaffMemberUpdated(user, unchanged=True)
    await audit(
        ctx,
        AuditAction.STAFF_MEMBER_UPDATED,
        user,
        organisation_id=organisation_id,
        details={
            "fields": sorted(changed),
            **{k: v for k, v in changed.items() if k not in personal},
        },
    )
    return StaffMemberUpdated(user)


async def _change_roles(
    ctx: Context, membership: Membership, held: set[Role], wanted: set[Role]
) -> set[Role] | Invalid:
    """Give the membership exactly `wanted` as its staff roles (LEARNER, which comes with a
    learner record, stays as it is). Returns the new roles when they changed."""
    if not wanted:
        return Invalid("Give at least one role.", field="roles")
    if not wanted <= MEMBERSHIP_ROLES - {Role.LEARNER}:
        return Invalid(
            "Staff roles only: LEARNER comes with a learner record, and external assessor and "
            "support are kinds of user.",
            field="roles",
        )
    new = wanted | (held & {Role.LEARNER})
    if new == held:
        return set()
    if Role.SUPER_ADMIN in held ^ new:
        if Role.SUPER_ADMIN not in ctx.me.roles:
            raise Forbidden(SUPER_ADMIN_ONLY)
        if Role.SUPER_ADMIN in held and not await _other_active_super_admins(ctx, membership):
            return Invalid(
                "This is the organisation's last active super admin: make another super admin "
                "first.",
                field="roles",
            )
    await ctx.db.execute(
        delete(MembershipRole).where(
            MembershipRole.membership_id == membership.id,
            MembershipRole.role.in_([r.value for r in held - new]),
        )
    )
    if new - held:
        await grant_roles(ctx, membership.id, new - held)
    return new


async def _change_units(
    ctx: Context,
    membership: Membership,
    location_id: str | Unchanged | None,
    department_id: str | Unchanged | None,
) -> dict[str, str | None] | Invalid | NotFound:
    """Move the membership to other units (null: none). A manager's team follows at once: the
    team scope reads the membership on every request."""
    values: dict[str, int | None] = {}
    changed: dict[str, str | None] = {}
    for kind, given, column, field_name in (
        (Location, location_id, "location_id", "locationId"),
        (Department, department_id, "department_id", "departmentId"),
    ):
        if given is UNCHANGED:
            continue
        unit = await unit_in(ctx, kind, given, membership.organisation_id, field_name)
        if isinstance(unit, Invalid | NotFound):
            return unit
        if unit != getattr(membership, column):
            values[column] = unit
            changed[field_name] = None if unit is None else encode_id(kind.__name__, unit)
    if values:
        await ctx.db.execute(
            update(Membership).where(Membership.id == membership.id).values(**values)
        )
    return changed


async def deactivate_staff_member(
    ctx: Context, *, user_id: str
) -> StaffMemberDeactivated | Invalid | NotFound:
    """Their sign-in stops working here at their next request; their assignments here end
    (archived records included, history kept); they stay in history."""
    user = await mutation_target(ctx, user_id, User, "userId", Action.DEACTIVATE)
    if isinstance(user, Invalid | NotFound):
        return user
    membership, held = await _membership_here(ctx, user)
    if Role.SUPER_ADMIN in held:
        if Role.SUPER_ADMIN not in ctx.me.roles:
            raise Forbidden("Only a super admin can deactivate a super admin.")
        if membership.deactivated_at is None and not await _other_active_super_admins(
            ctx, membership
        ):
            return Invalid(
                "This is the organisation's last active super admin: make another super admin "
                "first.",
                field="userId",
            )
    deactivated = await ctx.db.execute(
        update(Membership)
        .where(Membership.id == membership.id, Membership.deactivated_at.is_(None))
        .values(deactivated_at=ctx.now, deactivated_by_id=ctx.me.user_id)
    )
    if deactivated.rowcount != 1:  # type: ignore[attr-defined]
        return StaffMemberDeactivated(user, ended_assignments=0, unchanged=True)
    ending = (
        update(RecordAssignment)
        .where(
            RecordAssignment.user_id == user.id,
            RecordAssignment.organisation_id == membership.organisation_id,
            RecordAssignment.ended_at.is_(None),
        )
        .values(ended_at=ctx.now, ended_by_id=ctx.me.user_id)
        .returning(RecordAssignment.id)
        .execution_options(synchronize_session=False)
    )
    ended = list((await ctx.db.execute(ending)).scalars().all())
    await audit(
        ctx,
        AuditAction.STAFF_MEMBER_DEACTIVATED,
        user,
        organisation_id=membership.organisation_id,
        details={"endedAssignmentIds": [encode_id("Assignment", pk) for pk in sorted(ended)]},
        touched=[("Assignment", pk) for pk in sorted(ended)],
    )
    return StaffMemberDeactivated(user, ended_assignments=len(ended))

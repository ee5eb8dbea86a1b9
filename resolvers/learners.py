"""Learners: lists, single learners, creation (with a sign-in when an email is given), changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import ColumnElement, insert, literal, or_, select, union, update
from sqlalchemy.orm.attributes import set_committed_value

from db.models import (
    ApprenticeRecord,
    AssignmentRole,
    AuditAction,
    Department,
    Learner,
    Licence,
    Location,
    Membership,
    MembershipRole,
    Organisation,
    RecordStatus,
    User,
    UserKind,
)
from db.queries import insert_skipping_conflicts
from policies.vocabulary import Action, Resource, Role, refusal
from resolvers.audit import Entry, audit, audit_all
from resolvers.codes import ErrorCode
from resolvers.common import (
    LEARNER_SORTS,
    UNCHANGED,
    Unchanged,
    clean_avatar_url,
    clean_email,
    clean_name,
    filter_id,
    learner_has_record,
    mutation_target,
    record_has_assignment,
)
from resolvers.context import Context, Limits, LoaderGroup
from resolvers.errors import Forbidden, InvalidInput
from resolvers.ids import GlobalId, MalformedId, decode_id, encode_id, gid_of, pk_of
from resolvers.loaders import scoped
from resolvers.organisations import unit_in
from resolvers.outcomes import (
    AlreadyExists,
    BulkRejected,
    Invalid,
    ItemProblem,
    NotFound,
    doc,
)
from resolvers.pagination import (
    FilterValues,
    ListSource,
    matches,
    search_pattern,
)
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
from resolvers.relations import Ref
from resolvers.rules import Withheld, fire_rules

ORGANISATION_OF_LEARNER = Ref(Organisation, "organisation_id")  # shown on a visible learner
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
    assignee_id: GlobalId | None = field(
        default=None, metadata=doc("With a live record actively assigned to this user.")
    )
    assigned_to: GlobalId | None = field(
        default=None,
        metadata=doc(
            "The same as assigneeId, its former name; giving both is INVALID.",
            deprecated="Use assigneeId.",
        ),
    )
    unassigned: bool | None = field(
        default=None,
        metadata=doc("True: no record has an active assessor; false: some record has."),
    )


@dataclass(frozen=True)
class LearnerCreated:
    learner: Learner
    licences: list[Licence] = field(default_factory=list)
    withheld: list[Withheld] = field(default_factory=list)


@dataclass(frozen=True)
class LearnerUpdated:
    learner: Learner
    unchanged: bool = False


@dataclass(frozen=True)
class LearnersImported:
    learners: list[Learner]
    licences_issued: int
    withheld: list[Withheld]


class NewLearner(Protocol):
    """One row of an import: the fields of createLearner's input."""

    name: str
    email: str | None
    location_id: str | None
    department_id: str | None
    avatar_url: str | None


def _prepare(
    limits: Limits, f: LearnerFilter | None, _arguments: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The filter's checked values; a malformed id or too long a search is INVALID."""
    if f is None:
        return {}
    values: dict[str, Any] = {}
    pattern = search_pattern(limits, f.search)
    if pattern is not None:
        values["search"] = pattern
    if f.assignee_id is not None and f.assigned_to is not None:
        raise InvalidInput(
            "Give assigneeId only: assignedTo is its former name.", field="assigneeId"
        )
    assignee, assignee_field = (
        (f.assigned_to, "assignedTo")
        if f.assigned_to is not None
        else (f.assignee_id, "assigneeId")
    )
    for name, value, type_name, field_name in (
        ("location", f.location_id, "Location", "locationId"),
        ("department", f.department_id, "Department", "departmentId"),
        ("assignee", assignee, "User", assignee_field),
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
        live = ApprenticeRecord.status == RecordStatus.LIVE
        found.append(learner_has_record(ctx, live, assigned))
    if "unassigned" in v:
        assessed = learner_has_record(
            ctx,
            ApprenticeRecord.status == RecordStatus.LIVE,
            record_has_assignment(ctx, role=AssignmentRole.ASSESSOR),
        )
        found.append(~assessed if v["unassigned"] else assessed)
    return found


LEARNERS: ListSource[Learner, LearnerFilter] = ListSource(
    "learners",
    Learner,
    Resource.LEARNER,
    LEARNER_SORTS,
    prepare=_prepare,
    conditions=_conditions,
)


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
    avatar_url: str | None = None,
) -> LearnerCreated | Invalid | NotFound | AlreadyExists:
    """A learner in the caller's organisation; an email gives them a LEARNER sign-in. Every
    matching auto-allocation rule issues its licence, or reports it withheld."""
    org = _creating_in(ctx)
    clean = clean_name(name)
    if isinstance(clean, Invalid):
        return clean
    clean_e = None if email is None or not email.strip() else clean_email(email)
    if isinstance(clean_e, Invalid):
        return clean_e
    picture = clean_avatar_url(avatar_url)
    if isinstance(picture, Invalid):
        return picture
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
        avatar_url=picture,
    )
    if not await ctx.db.try_add(row):
        return AlreadyExists("This person is already a learner here.", field="email")
    signs_in = [] if user_id is None else [("User", user_id)]  # now a learner here
    await audit(ctx, AuditAction.LEARNER_CREATED, row, organisation_id=org, touched=signs_in)
    fired = await fire_rules(ctx, [row])
    return LearnerCreated(row, licences=fired.licences, withheld=fired.withheld)


def _creating_in(ctx: Context) -> int:
    """The organisation the caller creates learners in (their own); Forbidden if none."""
    org = ctx.me.organisation_id
    if org is None or not ctx.rules.may_act_in(Resource.LEARNER, Action.CREATE, org):
        raise Forbidden(refusal(Resource.LEARNER, Action.CREATE))
    return org


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


@dataclass
class _Row:
    index: str
    name: str
    email: str | None
    location_id: int | None
    department_id: int | None
    avatar_url: str | None = None


async def import_learners(
    ctx: Context, *, learners: Sequence[NewLearner]
) -> LearnersImported | Invalid | BulkRejected:
    """Up to 1,000 learners, all or none, in a fixed number of statements; rules fire for
    every row. A rejection names each offending row by its index ("0", "1", …)."""
    org = _creating_in(ctx)
    if not learners:
        return Invalid("Give at least one learner.", field="learners")
    if len(learners) > ctx.limits.max_bulk_items:
        return Invalid(
            f"At most {ctx.limits.max_bulk_items} learners in one call.", field="learners"
        )
    rows, problems = _clean_rows(learners)
    problems += await _check_units(ctx, org, rows)
    problems += await _check_emails(ctx, org, rows)
    if problems:
        return BulkRejected(items=sorted(problems, key=lambda p: int(p.id)))

    users = await _sign_ins(ctx, org, [r for r in rows if r.email is not None])
    if isinstance(users, BulkRejected):
        return users
    # One statement; ids follow the rows' order (sorted back below).
    created = list(
        (
            await ctx.db.execute(
                insert(Learner).returning(Learner),
                [
                    {
                        "organisation_id": org,
                        "user_id": None if r.email is None else users[r.email],
                        "name": r.name,
                        "email": r.email,
                        "location_id": r.location_id,
                        "department_id": r.department_id,
                        "created_at": ctx.now,
                        "avatar_url": r.avatar_url,
                    }
                    for r in rows
                ],
            )
        )
        .scalars()
        .all()
    )
    created.sort(key=lambda x: x.id)
    fired = await fire_rules(ctx, created)
    await audit_all(
        ctx,
        [
            Entry(
                AuditAction.LEARNERS_IMPORTED,
                Learner,
                org,
                {
                    "learnerIds": [gid_of(x) for x in created],
                    "licencesIssued": len(fired.licences),
                    "licencesWithheld": len(fired.withheld),
                },
                tuple(("User", pk) for pk in sorted(set(users.values()))),  # now learners here
            )
        ],
    )
    return LearnersImported(
        learners=created, licences_issued=len(fired.licences), withheld=fired.withheld
    )


def _unit_pk(value: str | None, type_name: str) -> int | ErrorCode | None:
    """The unit's primary key, None when not given, or the item code when unusable."""
    if value is None:
        return None
    try:
        found, pk = decode_id(value)
    except MalformedId:
        return ErrorCode.INVALID
    return pk if found == type_name else ErrorCode.NOT_FOUND


def _clean_rows(learners: Sequence[NewLearner]) -> tuple[list[_Row], list[ItemProblem]]:
    rows: list[_Row] = []
    problems: list[ItemProblem] = []
    for n, given in enumerate(learners):
        index = str(n)
        name = clean_name(given.name)
        email = None if given.email is None or not given.email.strip() else clean_email(given.email)
        location = _unit_pk(given.location_id, "Location")
        department = _unit_pk(given.department_id, "Department")
        picture = clean_avatar_url(given.avatar_url)
        if isinstance(name, Invalid):
            problems.append(ItemProblem(index, ErrorCode.INVALID, name.message))
        elif isinstance(email, Invalid):
            problems.append(ItemProblem(index, ErrorCode.INVALID, email.message))
        elif isinstance(picture, Invalid):
            problems.append(ItemProblem(index, ErrorCode.INVALID, picture.message))
        elif isinstance(location, ErrorCode):
            problems.append(ItemProblem(index, location, "locationId is not a location here."))
        elif isinstance(department, ErrorCode):
            problems.append(
                ItemProblem(index, department, "departmentId is not a department here.")
            )
        else:
            rows.append(_Row(index, name, email, location, department, picture))
    return rows, problems


async def _check_units(ctx: Context, org: int, rows: list[_Row]) -> list[ItemProblem]:
    """Every unit named is one of the organisation's (one statement)."""
    locations = {r.location_id for r in rows if r.location_id is not None}
    departments = {r.department_id for r in rows if r.department_id is not None}
    if not locations and not departments:
        return []
    found: Sequence[Any] = (
        await ctx.db.execute(
            union(
                select(literal("L").label("kind"), Location.id).where(
                    Location.id.in_(locations), Location.organisation_id == org
                ),
                select(literal("D").label("kind"), Department.id).where(
                    Department.id.in_(departments), Department.organisation_id == org
                ),
            )
        )
    ).all()
    here = {(kind, pk) for kind, pk in found}
    problems = []
    for r in rows:
        if r.location_id is not None and ("L", r.location_id) not in here:
            problems.append(
                ItemProblem(r.index, ErrorCode.NOT_FOUND, "locationId is not a location here.")
            )
        elif r.department_id is not None and ("D", r.department_id) not in here:
            problems.append(
                ItemProblem(r.index, ErrorCode.NOT_FOUND, "departmentId is not a department here.")
            )
    return problems


async def _check_emails(ctx: Context, org: int, rows: list[_Row]) -> list[ItemProblem]:
    """No email repeated in the batch, nor held by anyone already (one statement)."""
    problems = []
    seen: set[str] = set()
    for r in rows:
        if r.email is None:
            continue
        if r.email in seen:
            problems.append(
                ItemProblem(r.index, ErrorCode.ALREADY_EXISTS, "Email repeated in the batch.")
            )
        seen.add(r.email)
    if seen:
        taken = set(
            (
                await ctx.db.execute(
                    union(
                        select(User.email).where(User.email.in_(seen)),
                        select(Learner.email).where(
                            Learner.organisation_id == org, Learner.email.in_(seen)
                        ),
                    )
                )
            ).scalars()
        )
        problems += [
            ItemProblem(r.index, ErrorCode.ALREADY_EXISTS, EMAIL_IN_USE)
            for r in rows
            if r.email in taken
        ]
    return problems


async def _sign_ins(ctx: Context, org: int, rows: list[_Row]) -> dict[str, int] | BulkRejected:
    """A LEARNER sign-in for each email (users, memberships, roles: three statements)."""
    if not rows:
        return {}
    made: Sequence[Any] = (
        await ctx.db.execute(
            insert_skipping_conflicts(ctx.db.dialect, User, index_elements=["email"]).returning(
                User.id, User.email
            ),
            [
                {"email": r.email, "name": r.name, "kind": UserKind.STAFF, "created_at": ctx.now}
                for r in rows
            ],
        )
    ).all()
    users = {email: pk for pk, email in made}
    if len(users) < len(rows):  # taken by someone else since the check
        return BulkRejected(
            items=[
                ItemProblem(r.index, ErrorCode.ALREADY_EXISTS, EMAIL_IN_USE)
                for r in rows
                if r.email not in users
            ]
        )
    memberships: Sequence[Any] = (
        await ctx.db.execute(
            insert(Membership).returning(Membership.id),
            [
                {"user_id": pk, "organisation_id": org, "created_at": ctx.now}
                for pk in users.values()
            ],
        )
    ).all()
    await ctx.db.execute(
        insert(MembershipRole),
        [{"membership_id": m[0], "role": Role.LEARNER.value} for m in memberships],
    )
    return users


async def update_learner(
    ctx: Context,
    *,
    learner_id: str,
    name: str | Unchanged | None = UNCHANGED,
    email: str | Unchanged | None = UNCHANGED,
    location_id: str | Unchanged | None = UNCHANGED,
    department_id: str | Unchanged | None = UNCHANGED,
    avatar_url: str | Unchanged | None = UNCHANGED,
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
    picture = None if isinstance(avatar_url, Unchanged) else clean_avatar_url(avatar_url)
    if isinstance(picture, Invalid):
        return picture
    units_given = location_id is not UNCHANGED or department_id is not UNCHANGED
    if new_name is None and new_email is None and not units_given and avatar_url is UNCHANGED:
        return Invalid(
            "Give something to change: name, email, locationId, departmentId or avatarUrl."
        )
    org = learner.organisation_id
    values: dict[str, Any] = {}
    changed: dict[str, str | None] = {}
    if avatar_url is not UNCHANGED and picture != learner.avatar_url:
        values["avatar_url"] = picture
        changed["avatarUrl"] = None
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
    if not values:  # every value given was already so
        return LearnerUpdated(learner, unchanged=True)
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
            **{k: v for k, v in changed.items() if k not in ("name", "email", "avatarUrl")},
        },
    )
    return LearnerUpdated(learner)

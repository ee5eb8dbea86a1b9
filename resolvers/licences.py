"""Course licences: the catalogue, pools of seats, allocating, launching, completing and
recalling licences.

Seats are decided under a lock on the pool row (SELECT … FOR UPDATE on PostgreSQL; on SQLite
the mutation's write transaction, taken at BEGIN). The pool's `seats_used` counter changes only
while that lock is held, so two callers can never both take the last seat. A partial unique
index allows one ACTIVE licence per learner and course.

A licence whose `expires_at` has passed reads as EXPIRED while its row still says ACTIVE: its
status is computed at read time, against the request's time, in SQL and in Python alike. Only
allocating a new licence for the same learner and course writes EXPIRED into such a row (under
the pool's lock), to free the partial index for the new one. Completed and expired licences
keep their seats; only recalling returns one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, literal, or_, select, text, update
from sqlalchemy.orm.attributes import set_committed_value

from db.models import (
    AuditAction,
    Course,
    Learner,
    Licence,
    LicencePool,
    LicenceSource,
    LicenceStatus,
    User,
)
from db.queries import insert_skipping_conflicts
from policies.vocabulary import Action, Resource, refusal
from resolvers.audit import audit
from resolvers.codes import ErrorCode
from resolvers.common import LEARNER_SORTS, clean_name, filter_id, mutation_target, parse_id
from resolvers.context import Context, Limits, LoaderGroup
from resolvers.errors import Forbidden, InvalidInput
from resolvers.ids import GlobalId, MalformedId, decode_id, encode_id, gid_of
from resolvers.loaders import Children, scoped
from resolvers.organisations import target_organisation
from resolvers.outcomes import (
    AlreadyExists,
    BulkRejected,
    Invalid,
    ItemProblem,
    LicenceNotActive,
    NotFound,
    PoolExhausted,
    doc,
)
from resolvers.pagination import (
    FilterValues,
    ListSource,
    Sort,
    matches,
    search_of,
    search_pattern,
)
from resolvers.relations import Ref, Single

# The partial unique index's predicate, written as the index has it (a literal, not a bound
# parameter), so that PostgreSQL can prove a query uses the index and ON CONFLICT infers it.
ACTIVE_LICENCE: Any = text("status = 'ACTIVE'")
MAX_SEATS = 10_000_000


def is_active() -> ColumnElement[bool]:
    """The row says ACTIVE (it may have expired since): the partial unique index's rows."""
    return text("licences.status = 'ACTIVE'")  # type: ignore[return-value]


def is_current(now: Any) -> ColumnElement[bool]:
    """The licence is ACTIVE now: its row says so and its expiry, if any, is still ahead."""
    return and_(is_active(), or_(Licence.expires_at.is_(None), Licence.expires_at > now))


def has_expired(now: Any) -> ColumnElement[bool]:
    """The row says ACTIVE but its expiry has passed: it reads as EXPIRED."""
    return and_(is_active(), Licence.expires_at.is_not(None), Licence.expires_at <= now)


def status_at(status: LicenceStatus, expires_at: datetime | None, now: datetime) -> LicenceStatus:
    """Where a licence stands at `now` (the request's time): an ACTIVE one past its expiry is
    EXPIRED."""
    if status == LicenceStatus.ACTIVE and expires_at is not None and expires_at <= now:
        return LicenceStatus.EXPIRED
    return status


def status_column(ctx: Context, columns: Any) -> ColumnElement[Any]:
    """`status_at` in SQL, over a licences table's (or alias's) columns: the compiled path's
    form of `Licence.status`."""
    return case(
        (
            and_(
                columns["status"] == LicenceStatus.ACTIVE.value,
                columns["expires_at"].is_not(None),
                columns["expires_at"] <= ctx.now,
            ),
            literal(LicenceStatus.EXPIRED.value),
        ),
        else_=columns["status"],
    )


def in_status(now: Any, status: LicenceStatus) -> ColumnElement[bool]:
    """Licences that read as `status` at `now` (filters and counts)."""
    if status == LicenceStatus.ACTIVE:
        return is_current(now)
    if status == LicenceStatus.EXPIRED:
        return or_(Licence.status == LicenceStatus.EXPIRED, has_expired(now))
    return Licence.status == status


COURSE_OF = Ref(Course, "course_id")  # a visible licence or rule shows its course
LEARNER_OF_LICENCE = Ref(Learner, "learner_id", Resource.LEARNER)
ALLOCATED_BY = Ref(User, "allocated_by_id")


class LicenceLoaders(LoaderGroup):
    course = scoped(Course, Resource.COURSE)
    licence = scoped(Licence, Resource.LICENCE)
    pool = scoped(LicencePool, Resource.LICENCE_POOL)


@dataclass(frozen=True)
class LicenceFilter:
    """Narrow the licence list."""

    course_id: GlobalId | None = field(default=None, metadata=doc("For this course."))
    learner_id: GlobalId | None = field(default=None, metadata=doc("Held by this learner."))
    status: LicenceStatus | None = field(default=None, metadata=doc("In this status."))


def _prepare(
    limits: Limits, f: LicenceFilter | None, _arguments: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The filter's checked values; a malformed id is INVALID."""
    if f is None:
        return {}
    values: dict[str, Any] = {}
    for name, value, type_name, field_name in (
        ("course", f.course_id, "Course", "courseId"),
        ("learner", f.learner_id, "Learner", "learnerId"),
    ):
        pk = filter_id(value, type_name, field_name)
        if pk is not None:
            values[name] = pk
    if f.status is not None:
        values[_status_flag(f.status)] = True
    return values


def _status_flag(status: LicenceStatus) -> str:
    """A status asked for, as a flag: each reads differently at the request's time, so the
    status shapes the statement."""
    return f"status_{LicenceStatus(status).value}"


def _conditions(ctx: Context, v: FilterValues) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if "course" in v:
        # a course the caller cannot see matches nothing, exactly like a made-up id
        visible_course = (
            select(Course.id).where(Course.id == v["course"], ctx.rules.where(Resource.COURSE))
        ).correlate(None)
        found.append(Licence.course_id.in_(visible_course))
    if "learner" in v:
        # a licence is visible exactly when its learner is: no learner is revealed
        found.append(Licence.learner_id == v["learner"])
    for status in LicenceStatus:
        if v.get(_status_flag(status)):
            found.append(in_status(ctx.now, status))
    return found


LICENCES: ListSource[Licence, LicenceFilter] = ListSource(
    "licences",
    Licence,
    Resource.LICENCE,
    (Sort("ALLOCATED", (), "In the order they were allocated."),),
    prepare=_prepare,
    conditions=_conditions,
)


def _narrowing(limits: Limits, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Learner.licences(filter:, status:): the filter's values; `status` is the former place
    of filter.status (both: INVALID)."""
    f: LicenceFilter | None = arguments.get("filter")
    status = arguments.get("status")
    if status is not None and f is not None and f.status is not None:
        raise InvalidInput(
            "Give filter.status only: the status argument is its former place.", field="status"
        )
    values = _prepare(limits, f)
    if status is not None:
        values[_status_flag(status)] = True
    return values


# A learner's licences: another learner's id in the filter gives none.
LICENCES_OF_LEARNER = Children(
    Licence,
    Licence.learner_id,
    Resource.LICENCE,
    (Licence.id,),
    prepare=_narrowing,
    conditions=_conditions,
)


@dataclass(frozen=True)
class EligibleLearnerFilter:
    """Narrow the learners a licence can go to."""

    search: str | None = field(default=None, metadata=doc("Part of a name or email."))


@dataclass(frozen=True)
class CourseCreated:
    course: Course


@dataclass(frozen=True)
class LicencePoolSet:
    pool: LicencePool
    unchanged: bool = False


@dataclass(frozen=True)
class LicencesAllocated:
    licences: list[Licence]
    pool: LicencePool
    unchanged: int = 0  # learners who held an active licence for the course already


@dataclass(frozen=True)
class LicencesRecalled:
    licences: list[Licence]
    pool: LicencePool | None  # when every recalled licence came from one pool
    unchanged: int = 0  # licences recalled already


@dataclass(frozen=True)
class LicenceLaunched:
    licence: Licence
    unchanged: bool = False


@dataclass(frozen=True)
class LicenceCompleted:
    licence: Licence
    unchanged: bool  # it was completed already: nothing written, no audit event


# Reading ------------------------------------------------------------------------------------


# The course catalogue, by title.
COURSES: ListSource[Course, None] = ListSource(
    "courses", Course, Resource.COURSE, (Sort("TITLE", (Course.title,), "By title."),)
)


# A course's pool in the caller's organisation, where the caller may read pools (none for a
# caller without an organisation: no pool's organisation is NULL).
POOL_OF_COURSE = Single(
    Children(
        LicencePool,
        LicencePool.course_id,
        Resource.LICENCE_POOL,
        order=(LicencePool.id,),
        only=lambda ctx: [LicencePool.organisation_id == ctx.me.organisation_id],
    )
)


def seats_available(seats_total: int, seats_used: int) -> int:
    return max(seats_total - seats_used, 0)


def holds_active(ctx: Context, course_id: Any) -> ColumnElement[bool]:
    """The learner (correlated) holds an ACTIVE, unexpired licence for the course: a probe of
    the partial unique index on (learner_id, course_id)."""
    return exists(
        select(Licence.id).where(
            Licence.learner_id == Learner.id, Licence.course_id == course_id, is_current(ctx.now)
        )
    )


def _eligible_prepare(
    limits: Limits, f: EligibleLearnerFilter | None, arguments: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The course (a malformed id: INVALID) and the search asked for (`search` is the former
    place of `filter.search`)."""
    given = arguments or {}
    values: dict[str, Any] = {
        "course": filter_id(given.get("course_id"), "Course", "courseId"),
    }
    search = search_of(None if f is None else f.search, given.get("search"))
    pattern = search_pattern(limits, search)
    if pattern is not None:
        values["search"] = pattern
    return values


def _eligible_conditions(ctx: Context, v: FilterValues) -> list[ColumnElement[bool]]:
    course = v["course"]
    visible_course = exists(
        select(Course.id).where(Course.id == course, ctx.rules.where(Resource.COURSE))
    )
    licensed = exists(
        select(Licence.id).where(
            Licence.learner_id == Learner.id,
            Licence.course_id == course,
            is_current(ctx.now),
            ctx.rules.where(Resource.LICENCE),
        )
    )
    found = [visible_course, ~licensed]
    if "search" in v:
        found.append(matches(Learner.name, v["search"]) | matches(Learner.email, v["search"]))
    return found


# Visible learners without an ACTIVE (unexpired) licence for a visible course, by name: the
# list a licence is allocated from.
ELIGIBLE_LEARNERS: ListSource[Learner, EligibleLearnerFilter] = ListSource(
    "licenceEligibleLearners",
    Learner,
    Resource.LEARNER,
    LEARNER_SORTS,
    prepare=_eligible_prepare,
    conditions=_eligible_conditions,
)


# The catalogue and pools (support) ------------------------------------------------------------


async def visible_course(ctx: Context, value: str, field: str) -> Course | Invalid | NotFound:
    pk = parse_id(value, "Course", field)
    if isinstance(pk, Invalid | NotFound):
        return pk
    row = await ctx.db.scalar(
        select(Course).where(Course.id == pk, ctx.rules.where(Resource.COURSE))
    )
    return NotFound(id=value) if row is None else row


async def create_course(
    ctx: Context, *, title: str, code: str
) -> CourseCreated | Invalid | AlreadyExists:
    if not ctx.rules.holds(Resource.COURSE, Action.CREATE):
        raise Forbidden(refusal(Resource.COURSE, Action.CREATE))
    clean = clean_name(title, "title")
    if isinstance(clean, Invalid):
        return clean
    clean_code = clean_name(code, "code", limit=64)
    if isinstance(clean_code, Invalid):
        return clean_code
    course = Course(title=clean, code=clean_code, created_at=ctx.now)
    if not await ctx.db.try_add(course):
        return AlreadyExists(f"A course with code {clean_code!r} exists.", field="code")
    await audit(ctx, AuditAction.COURSE_CREATED, course, organisation_id=None)
    return CourseCreated(course)


async def lock_pool(ctx: Context, organisation_id: int, course_id: int) -> LicencePool | None:
    """The pool, locked until the transaction ends (SQLite: already held by BEGIN IMMEDIATE)."""
    return await ctx.db.scalar(
        select(LicencePool)
        .where(LicencePool.organisation_id == organisation_id, LicencePool.course_id == course_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def set_licence_pool(
    ctx: Context, *, organisation_id: str, course_id: str, seats_total: int
) -> LicencePoolSet | Invalid | NotFound:
    org = await target_organisation(ctx, Resource.LICENCE_POOL, organisation_id)
    if isinstance(org, Invalid | NotFound):
        return org
    course = await visible_course(ctx, course_id, "courseId")
    if isinstance(course, Invalid | NotFound):
        return course
    if not 0 <= seats_total <= MAX_SEATS:
        return Invalid(f"seatsTotal must be between 0 and {MAX_SEATS}.", field="seatsTotal")
    pool = await lock_pool(ctx, org, course.id)
    previous = None if pool is None else pool.seats_total
    if pool is None:
        await ctx.db.execute(
            insert_skipping_conflicts(
                ctx.db.dialect, LicencePool, index_elements=["organisation_id", "course_id"]
            ).values(
                organisation_id=org,
                course_id=course.id,
                seats_total=seats_total,
                seats_used=0,
                updated_at=ctx.now,
            )
        )
        pool = await lock_pool(ctx, org, course.id)
        assert pool is not None
    elif previous == seats_total:
        return LicencePoolSet(pool, unchanged=True)
    if seats_total < pool.seats_used:
        return Invalid(
            f"{pool.seats_used} seats are in use: seatsTotal cannot be lower.", field="seatsTotal"
        )
    await ctx.db.execute(
        update(LicencePool)
        .where(LicencePool.id == pool.id)
        .values(seats_total=seats_total, updated_at=ctx.now)
    )
    set_committed_value(pool, "seats_total", seats_total)
    await audit(
        ctx,
        AuditAction.LICENCE_POOL_SET,
        pool,
        organisation_id=org,
        details={
            "courseId": gid_of(course),
            "seatsTotal": seats_total,
            "previousSeatsTotal": previous,
        },
    )
    return LicencePoolSet(pool)


# Issuing and recalling ------------------------------------------------------------------------


async def issue(ctx: Context, rows: Sequence[dict[str, Any]]) -> list[Licence]:
    """Insert ACTIVE licences in one statement; pairs that already hold one are skipped."""
    if not rows:
        return []
    stmt = insert_skipping_conflicts(
        ctx.db.dialect,
        Licence,
        index_elements=["learner_id", "course_id"],
        index_where=ACTIVE_LICENCE,
    ).returning(Licence)
    result = await ctx.db.execute(stmt, list(rows))
    return list(result.scalars().all())


async def settle_expired(
    ctx: Context, pool: LicencePool, learner_ids: Sequence[int] | None = None
) -> None:
    """Write EXPIRED into the pool's ACTIVE rows whose expiry has passed (for these learners,
    or all), so that new licences can take the partial index's place. Reads already show them
    as EXPIRED; seats do not change. Runs under the pool's lock."""
    stmt = update(Licence).where(
        Licence.pool_id == pool.id,
        Licence.course_id == pool.course_id,
        has_expired(ctx.now),
    )
    if learner_ids is not None:
        stmt = stmt.where(Licence.learner_id.in_(list(learner_ids)))
    await ctx.db.execute(
        stmt.values(status=LicenceStatus.EXPIRED).execution_options(synchronize_session=False)
    )


def licence_row(
    ctx: Context,
    pool: LicencePool,
    learner_id: int,
    *,
    rule_id: int | None = None,
    expires_at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "organisation_id": pool.organisation_id,
        "pool_id": pool.id,
        "learner_id": learner_id,
        "course_id": pool.course_id,
        "status": LicenceStatus.ACTIVE,
        "source": LicenceSource.MANUAL if rule_id is None else LicenceSource.RULE,
        "rule_id": rule_id,
        "allocated_at": ctx.now,
        "allocated_by_id": ctx.me.user_id,
        "expires_at": expires_at,
    }


async def change_seats(ctx: Context, pools: Sequence[LicencePool], delta: Counter[int]) -> None:
    """Add `delta[pool id]` to each locked pool's seats in use, in one statement."""
    changed = [p for p in pools if delta.get(p.id)]
    if not changed:
        return
    await ctx.db.execute(
        update(LicencePool)
        .where(LicencePool.id.in_([p.id for p in changed]))
        .values(
            seats_used=LicencePool.seats_used
            + case({p.id: delta[p.id] for p in changed}, value=LicencePool.id),
            updated_at=ctx.now,
        )
        .execution_options(synchronize_session=False)
    )
    for p in changed:
        set_committed_value(p, "seats_used", p.seats_used + delta[p.id])


def _parse_ids(
    values: Sequence[str], type_name: str, noun: str
) -> tuple[dict[int, str], list[ItemProblem]]:
    wanted: dict[int, str] = {}
    problems: list[ItemProblem] = []
    for value in dict.fromkeys(values):
        try:
            found, pk = decode_id(value)
        except MalformedId:
            problems.append(ItemProblem(value, ErrorCode.INVALID, "Not a valid id."))
            continue
        if found != type_name:
            problems.append(ItemProblem(value, ErrorCode.NOT_FOUND, f"No such {noun}."))
            continue
        wanted[pk] = value
    return wanted, problems


def _bulk_size(ctx: Context, values: Sequence[str], field: str) -> Invalid | None:
    if not values:
        return Invalid("Give at least one id.", field=field)
    if len(values) > ctx.limits.max_bulk_items:
        return Invalid(f"At most {ctx.limits.max_bulk_items} ids in one call.", field=field)
    return None


async def allocate_licences(
    ctx: Context,
    *,
    course_id: str,
    learner_ids: Sequence[str],
    expires_at: datetime | None = None,
) -> LicencesAllocated | Invalid | NotFound | BulkRejected | PoolExhausted:
    """Licences for a course to learners the caller may allocate to: all or none. A learner
    who holds an active licence for the course already keeps it and counts as unchanged; one
    whose licence completed or expired may be given a new one."""
    too_many = _bulk_size(ctx, learner_ids, "learnerIds")
    if too_many is not None:
        return too_many
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= ctx.now:
            return Invalid("expiresAt must be in the future.", field="expiresAt")
    course = await visible_course(ctx, course_id, "courseId")
    if isinstance(course, Invalid | NotFound):
        return course
    org = ctx.me.organisation_id
    if org is None:
        raise Forbidden(refusal(Resource.LEARNER, Action.ALLOCATE_LICENCES))
    wanted, problems = _parse_ids(learner_ids, "Learner", "learner")
    permitted = case((ctx.rules.where(Resource.LEARNER, Action.ALLOCATE_LICENCES), 1), else_=0)
    licensed = case((holds_active(ctx, course.id), 1), else_=0)
    rows: Sequence[Any] = (
        await ctx.db.execute(
            select(Learner.id, Learner.organisation_id, permitted, licensed).where(
                Learner.id.in_(list(wanted)), ctx.rules.where(Resource.LEARNER)
            )
        )
    ).all()
    found = {row[0]: row for row in rows}
    for pk, value in wanted.items():
        if pk not in found:
            problems.append(ItemProblem(value, ErrorCode.NOT_FOUND, "No such learner."))
        elif not found[pk][2] or found[pk][1] != org:
            problems.append(
                ItemProblem(
                    value, ErrorCode.FORBIDDEN, "You may not allocate licences to this learner."
                )
            )
    if problems:
        return BulkRejected(items=problems)

    new = [pk for pk in wanted if not found[pk][3]]
    pool = await lock_pool(ctx, org, course.id)
    available = 0 if pool is None else pool.seats_total - pool.seats_used
    if pool is None or len(new) > available:
        return PoolExhausted(requested=len(new), seats_available=max(available, 0))
    await settle_expired(ctx, pool, new)
    # A learner licensed by someone else since the check above is skipped by the unique index:
    # unchanged too, and uses no seat of this call.
    created = await issue(ctx, [licence_row(ctx, pool, pk, expires_at=expires_at) for pk in new])
    unchanged = len(wanted) - len(created)
    if not created:
        return LicencesAllocated(licences=[], pool=pool, unchanged=unchanged)
    await change_seats(ctx, [pool], Counter({pool.id: len(created)}))
    created.sort(key=lambda licence: licence.id)
    issued = {licence.learner_id for licence in created}
    await audit(
        ctx,
        AuditAction.LICENCES_ALLOCATED,
        Licence,
        organisation_id=org,
        details={
            "courseId": gid_of(course),
            "learnerIds": [value for pk, value in wanted.items() if pk in issued],
            "licenceIds": [gid_of(licence) for licence in created],
            **({} if expires_at is None else {"expiresAt": expires_at.isoformat()}),
        },
        touched=[pool],  # its seats
    )
    return LicencesAllocated(licences=created, pool=pool, unchanged=unchanged)


async def recall_licences(
    ctx: Context, *, licence_ids: Sequence[str]
) -> LicencesRecalled | Invalid | BulkRejected:
    """Recall licences never launched; their seats return to the pool. All or none. A licence
    recalled already stays so and counts as unchanged."""
    too_many = _bulk_size(ctx, licence_ids, "licenceIds")
    if too_many is not None:
        return too_many
    wanted, problems = _parse_ids(licence_ids, "Licence", "licence")
    allocatable = (
        select(Learner.id)
        .where(ctx.rules.where(Resource.LEARNER, Action.ALLOCATE_LICENCES))
        .correlate(None)
    )
    permitted = case((Licence.learner_id.in_(allocatable), 1), else_=0)
    rows: Sequence[Any] = (
        await ctx.db.execute(
            select(Licence, permitted).where(
                Licence.id.in_(list(wanted)), ctx.rules.where(Resource.LICENCE)
            )
        )
    ).all()
    found = {row[0].id: row for row in rows}
    for pk, value in wanted.items():
        if pk not in found:
            problems.append(ItemProblem(value, ErrorCode.NOT_FOUND, "No such licence."))
            continue
        licence, may = found[pk]
        if not may:
            problems.append(
                ItemProblem(value, ErrorCode.FORBIDDEN, "You may not recall this licence.")
            )
        elif licence.launched_at is not None:
            problems.append(
                ItemProblem(
                    value, ErrorCode.LICENCE_IN_USE, "The course was launched: not recallable."
                )
            )
        elif status_at(licence.status, licence.expires_at, ctx.now) not in (
            LicenceStatus.ACTIVE,
            LicenceStatus.RECALLED,  # recalled already: unchanged
        ):
            problems.append(
                ItemProblem(value, ErrorCode.INVALID, "Only an active licence is recalled.")
            )
    if problems:
        return BulkRejected(items=problems)

    pool_ids = sorted({found[pk][0].pool_id for pk in wanted})
    pools = list(
        await ctx.db.scalars(
            select(LicencePool)
            .where(LicencePool.id.in_(pool_ids))
            .order_by(LicencePool.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    recalled = list(
        (
            await ctx.db.execute(
                update(Licence)
                .where(
                    Licence.id.in_(list(wanted)),
                    is_current(ctx.now),
                    Licence.launched_at.is_(None),
                )
                .values(
                    status=LicenceStatus.RECALLED,
                    recalled_at=ctx.now,
                    recalled_by_id=ctx.me.user_id,
                )
                .returning(Licence)
                .execution_options(synchronize_session=False, populate_existing=True)
            )
        )
        .scalars()
        .all()
    )
    done = {licence.id for licence in recalled}
    rest = [pk for pk in wanted if pk not in done]
    if rest:  # recalled before (unchanged), or launched or ended by someone else meanwhile
        already = set(
            await ctx.db.scalars(
                select(Licence.id).where(
                    Licence.id.in_(rest), Licence.status == LicenceStatus.RECALLED
                )
            )
        )
        changed = [
            ItemProblem(wanted[pk], ErrorCode.LICENCE_IN_USE, "The licence changed meanwhile.")
            for pk in rest
            if pk not in already
        ]
        if changed:
            return BulkRejected(items=changed)
    unchanged = len(rest)
    pool = pools[0] if len(pools) == 1 else None
    if not recalled:
        return LicencesRecalled(licences=[], pool=pool, unchanged=unchanged)
    returned = Counter(licence.pool_id for licence in recalled)
    await change_seats(ctx, pools, Counter({k: -v for k, v in returned.items()}))
    recalled.sort(key=lambda licence: licence.id)
    for organisation_id in sorted({licence.organisation_id for licence in recalled}):
        await audit(
            ctx,
            AuditAction.LICENCES_RECALLED,
            Licence,
            organisation_id=organisation_id,
            details={
                "licenceIds": [gid_of(x) for x in recalled if x.organisation_id == organisation_id],
            },
            touched=[p for p in pools if p.id in returned and p.organisation_id == organisation_id],
        )
    return LicencesRecalled(licences=recalled, pool=pool, unchanged=unchanged)


async def mark_licence_launched(
    ctx: Context, *, licence_id: str
) -> LicenceLaunched | Invalid | NotFound:
    licence = await mutation_target(ctx, licence_id, Licence, "licenceId", Action.LAUNCH)
    if isinstance(licence, Invalid | NotFound):
        return licence
    launched = None
    if licence.launched_at is None:
        launched = (
            await ctx.db.execute(
                update(Licence)
                .where(
                    Licence.id == licence.id,
                    is_current(ctx.now),
                    Licence.launched_at.is_(None),
                )
                .values(launched_at=ctx.now)
                .returning(Licence)
                .execution_options(synchronize_session=False, populate_existing=True)
            )
        ).scalar_one_or_none()
        if launched is None:  # not active, or launched by someone else meanwhile
            current = await ctx.db.scalar(
                select(Licence)
                .where(Licence.id == licence.id)
                .execution_options(populate_existing=True)
            )
            assert current is not None
            licence = current
        else:
            licence = launched
    if status_at(licence.status, licence.expires_at, ctx.now) != LicenceStatus.ACTIVE:
        return Invalid("Only an active licence can be launched.", field="licenceId")
    if launched is None:
        return LicenceLaunched(licence, unchanged=True)
    await audit(
        ctx,
        AuditAction.LICENCE_LAUNCHED,
        licence,
        organisation_id=licence.organisation_id,
        details={"learnerId": encode_id("Learner", licence.learner_id)},
    )
    return LicenceLaunched(licence)


async def mark_licence_completed(
    ctx: Context, *, licence_id: str
) -> LicenceCompleted | Invalid | NotFound | LicenceNotActive:
    """The learner completed the course. The licence keeps its seat and stops being active, so
    the learner may be given another for the course. Repeating it changes nothing."""
    licence = await mutation_target(ctx, licence_id, Licence, "licenceId", Action.COMPLETE)
    if isinstance(licence, Invalid | NotFound):
        return licence
    if licence.status == LicenceStatus.COMPLETED:
        return LicenceCompleted(licence, unchanged=True)
    completed = (
        await ctx.db.execute(
            update(Licence)
            .where(Licence.id == licence.id, is_current(ctx.now))
            .values(status=LicenceStatus.COMPLETED, completed_at=ctx.now)
            .returning(Licence)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    ).scalar_one_or_none()
    if completed is None:  # recalled or expired, now or meanwhile (or completed meanwhile)
        current = await ctx.db.scalar(
            select(Licence)
            .where(Licence.id == licence.id)
            .execution_options(populate_existing=True)
        )
        assert current is not None
        if current.status == LicenceStatus.COMPLETED:
            return LicenceCompleted(current, unchanged=True)
        return LicenceNotActive(
            id=gid_of(licence), status=status_at(current.status, current.expires_at, ctx.now)
        )
    await audit(
        ctx,
        AuditAction.LICENCE_COMPLETED,
        completed,
        organisation_id=completed.organisation_id,
        details={"learnerId": encode_id("Learner", completed.learner_id)},
    )
    return LicenceCompleted(completed, unchanged=False)

"""Auto-allocation rules: a licence for each matching learner created after the rule exists.

Reaching the people already there is an explicit choice (`applyToExisting`), after a preview
that runs the very same query. Firing costs a fixed number of statements, however many rules
match and however many learners are created at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, or_, select, update

from db.base import UtcDateTime
from db.models import (
    AuditAction,
    AutoAllocationRule,
    Course,
    Department,
    Learner,
    Licence,
    LicencePool,
    LicenceSource,
    LicenceStatus,
    Location,
    RuleScope,
    User,
)
from db.queries import insert_skipping_conflicts
from policies.vocabulary import Action, Resource, refusal
from resolvers.audit import Entry, audit_all
from resolvers.common import LEARNER_SORTS, filter_id, mutation_target
from resolvers.context import Context, Limits, LoaderGroup
from resolvers.errors import Forbidden
from resolvers.ids import GlobalId, encode_id, gid_of
from resolvers.licences import (
    ACTIVE_LICENCE,
    change_seats,
    holds_active,
    issue,
    licence_row,
    lock_pool,
    settle_expired,
    visible_course,
)
from resolvers.loaders import scoped
from resolvers.organisations import unit_in
from resolvers.outcomes import AlreadyExists, Invalid, NotFound, PoolExhausted
from resolvers.pagination import FilterValues, ListSource, Sort
from resolvers.relations import Ref

# Which units each scope takes: (location, department).
UNITS: dict[RuleScope, tuple[bool, bool]] = {
    RuleScope.LOCATION: (True, False),
    RuleScope.DEPARTMENT: (False, True),
    RuleScope.ENTIRE_COMPANY: (False, False),
    RuleScope.ADVANCED: (True, True),
}

NO_POOL = "The organisation has no licence pool for this course."
NO_SEAT = "The licence pool for this course has no seat left."


# Rules are admins' alone: a licence anyone else can see shows no rule (DESIGN.md shows people,
# units, organisations and courses on a visible object, not rules).
RULE_OF_LICENCE = Ref(AutoAllocationRule, "rule_id", Resource.AUTO_ALLOCATION_RULE)
LOCATION_OF_RULE = Ref(Location, "location_id")
DEPARTMENT_OF_RULE = Ref(Department, "department_id")
CREATED_BY = Ref(User, "created_by_id")


class RuleLoaders(LoaderGroup):
    rule = scoped(AutoAllocationRule, Resource.AUTO_ALLOCATION_RULE)


@dataclass(frozen=True)
class AutoAllocationRuleCreated:
    rule: AutoAllocationRule
    licences_issued: int


@dataclass(frozen=True)
class AutoAllocationRuleDeleted:
    id: GlobalId
    unchanged: bool = False


@dataclass(frozen=True)
class RulePreview:
    count: int
    seats_available: int
    reached: Select[Learner]  # who would get a licence now, to page through


@dataclass(frozen=True)
class Withheld:
    """A licence a rule would have issued, but the pool had no seat for."""

    learner: Learner
    course: Course
    rule: AutoAllocationRule
    reason: str


@dataclass(frozen=True)
class Fired:
    licences: list[Licence]
    withheld: list[Withheld]


@dataclass(frozen=True)
class Draft:
    """A rule as asked for, checked: what it would match."""

    organisation_id: int
    course: Course
    scope: RuleScope
    location_id: int | None
    department_id: int | None

    def matching(self) -> list[ColumnElement[bool]]:
        """The learners (of any age) the rule matches."""
        clauses = [Learner.organisation_id == self.organisation_id]
        if self.location_id is not None:
            clauses.append(Learner.location_id == self.location_id)
        if self.department_id is not None:
            clauses.append(Learner.department_id == self.department_id)
        return clauses


def rule_matches(rule: AutoAllocationRule, learner: Learner) -> bool:
    return (
        rule.organisation_id == learner.organisation_id
        and (rule.location_id is None or rule.location_id == learner.location_id)
        and (rule.department_id is None or rule.department_id == learner.department_id)
    )


# Reading ------------------------------------------------------------------------------------


def _rules_prepare(
    _limits: Limits, _filter: None, arguments: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The course asked for (a malformed id: INVALID; another type's matches none)."""
    course = filter_id((arguments or {}).get("course_id"), "Course", "courseId")
    return {} if course is None else {"course": course}


def _rules_conditions(_ctx: Context, v: FilterValues) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = [AutoAllocationRule.deleted_at.is_(None)]
    if "course" in v:
        found.append(AutoAllocationRule.course_id == v["course"])
    return found


# The organisation's auto-allocation rules in force, oldest first.
RULES: ListSource[AutoAllocationRule, None] = ListSource(
    "autoAllocationRules",
    AutoAllocationRule,
    Resource.AUTO_ALLOCATION_RULE,
    (Sort("CREATED", (), "In the order they were made."),),
    prepare=_rules_prepare,
    conditions=_rules_conditions,
)


# A preview's learners (`RulePreview.learners`): the statement is the draft rule's reach.
PREVIEW_LEARNERS: ListSource[Learner, None] = ListSource(
    "rulePreviewLearners", Learner, Resource.LEARNER, LEARNER_SORTS
)


# Creating, previewing, deleting ------------------------------------------------------------


async def _draft(
    ctx: Context,
    course_id: str,
    scope: RuleScope,
    location_id: str | None,
    department_id: str | None,
) -> Draft | Invalid | NotFound:
    me = ctx.me
    org = me.organisation_id
    if org is None or not ctx.rules.may_act_in(Resource.AUTO_ALLOCATION_RULE, Action.CREATE, org):
        raise Forbidden(refusal(Resource.AUTO_ALLOCATION_RULE, Action.CREATE))
    course = await visible_course(ctx, course_id, "courseId")
    if isinstance(course, Invalid | NotFound):
        return course
    units: list[int | None] = []
    for kind, value, field, needed in (
        (Location, location_id, "locationId", UNITS[scope][0]),
        (Department, department_id, "departmentId", UNITS[scope][1]),
    ):
        if needed and value is None:
            return Invalid(f"{scope.value} rules need {field}.", field=field)
        if not needed and value is not None:
            return Invalid(f"{scope.value} rules take no {field}.", field=field)
        unit = await unit_in(ctx, kind, value, org, field)
        if isinstance(unit, NotFound):
            return Invalid(f"{field} is not a {kind.__name__.lower()} here.", field=field)
        if isinstance(unit, Invalid):
            return unit
        units.append(unit)
    return Draft(org, course, scope, units[0], units[1])


def _reached(ctx: Context, draft: Draft) -> Select[Learner]:
    """Learners the rule matches now who hold no active licence for its course."""
    return select(Learner).where(
        ctx.rules.where(Resource.LEARNER, Action.ALLOCATE_LICENCES),
        *draft.matching(),
        ~holds_active(ctx, draft.course.id),
    )


async def _count(ctx: Context, stmt: Select[Any]) -> int:
    total = select(func.count()).select_from(stmt.order_by(None).subquery())
    return int((await ctx.db.execute(total)).scalar_one())


async def preview_auto_allocation_rule(
    ctx: Context,
    *,
    course_id: str,
    scope: RuleScope,
    location_id: str | None,
    department_id: str | None,
    apply_to_existing: bool,
) -> RulePreview | Invalid | NotFound:
    """Who would get a licence now if the rule were created with applyToExisting; writes
    nothing."""
    draft = await _draft(ctx, course_id, scope, location_id, department_id)
    if isinstance(draft, Invalid | NotFound):
        return draft
    reached = _reached(ctx, draft)
    pool = await ctx.db.scalar(
        select(LicencePool).where(
            LicencePool.organisation_id == draft.organisation_id,
            LicencePool.course_id == draft.course.id,
        )
    )
    available = 0 if pool is None else max(pool.seats_total - pool.seats_used, 0)
    return RulePreview(count=await _count(ctx, reached), seats_available=available, reached=reached)


async def create_auto_allocation_rule(
    ctx: Context,
    *,
    course_id: str,
    scope: RuleScope,
    location_id: str | None,
    department_id: str | None,
    apply_to_existing: bool,
) -> AutoAllocationRuleCreated | Invalid | NotFound | PoolExhausted | AlreadyExists:
    """A rule like one in force (same course, scope and units) is AlreadyExists: the unique
    index on rules in force decides, so two admins at once make one rule."""
    draft = await _draft(ctx, course_id, scope, location_id, department_id)
    if isinstance(draft, Invalid | NotFound):
        return draft
    rule = AutoAllocationRule(
        organisation_id=draft.organisation_id,
        course_id=draft.course.id,
        scope=draft.scope,
        location_id=draft.location_id,
        department_id=draft.department_id,
        created_at=ctx.now,
        created_by_id=ctx.me.user_id,
    )
    if not await ctx.db.try_add(rule):
        return AlreadyExists(
            "A rule for this course with the same scope and units is in force.", field="courseId"
        )
    licences: list[int] = []
    pools: tuple[tuple[str, int], ...] = ()
    if apply_to_existing:
        reached = await _apply_to_existing(ctx, draft, rule)
        if isinstance(reached, PoolExhausted):
            return reached  # the savepoint drops the rule too
        licences, pool_id = reached
        pools = (("LicencePool", pool_id),) if pool_id is not None else ()
    issued = len(licences)
    events = [
        Entry(
            AuditAction.AUTO_ALLOCATION_RULE_CREATED,
            rule,
            draft.organisation_id,
            {
                "courseId": gid_of(draft.course),
                "scope": draft.scope.value,
                "locationId": _gid("Location", draft.location_id),
                "departmentId": _gid("Department", draft.department_id),
                "applyToExisting": apply_to_existing,
                "licencesIssued": issued,
            },
        )
    ]
    if issued:
        events.append(
            Entry(
                AuditAction.LICENCES_ALLOCATED,
                rule,
                draft.organisation_id,
                {
                    "ruleId": gid_of(rule),
                    "courseId": gid_of(draft.course),
                    "licences": issued,
                    "licenceIds": [encode_id("Licence", pk) for pk in sorted(licences)],
                },
                pools,
            )
        )
    await audit_all(ctx, events)
    return AutoAllocationRuleCreated(rule=rule, licences_issued=issued)


def _gid(type_name: str, pk: int | None) -> str | None:
    return None if pk is None else encode_id(type_name, pk)


async def _apply_to_existing(
    ctx: Context, draft: Draft, rule: AutoAllocationRule
) -> tuple[list[int], int | None] | PoolExhausted:
    """Licences for every learner the rule reaches now, in one statement, or none at all: their
    ids and their pool's."""
    pool = await lock_pool(ctx, draft.organisation_id, draft.course.id)
    available = 0 if pool is None else pool.seats_total - pool.seats_used
    wanted = await _count(ctx, _reached(ctx, draft))
    if wanted == 0:
        return [], None
    if pool is None or wanted > available:
        return PoolExhausted(requested=wanted, seats_available=max(available, 0))
    await settle_expired(ctx, pool)
    rows = _reached(ctx, draft).with_only_columns(
        Learner.organisation_id,
        literal(pool.id),
        Learner.id,
        literal(draft.course.id),
        literal(LicenceStatus.ACTIVE.value),
        literal(LicenceSource.RULE.value),
        literal(rule.id),
        literal(ctx.now, UtcDateTime()),
        literal(ctx.me.user_id),
    )
    stmt = (
        insert_skipping_conflicts(
            ctx.db.dialect,
            Licence,
            index_elements=["learner_id", "course_id"],
            index_where=ACTIVE_LICENCE,
        )
        .from_select(
            [
                "organisation_id",
                "pool_id",
                "learner_id",
                "course_id",
                "status",
                "source",
                "rule_id",
                "allocated_at",
                "allocated_by_id",
            ],
            rows,
        )
        .returning(Licence.id)
    )
    ids = list((await ctx.db.execute(stmt)).scalars())
    issued = len(ids)
    if issued > available:  # learners who arrived between the count and the insert
        return PoolExhausted(requested=issued, seats_available=max(available, 0))
    await change_seats(ctx, [pool], Counter({pool.id: issued}))
    return ids, pool.id


async def delete_auto_allocation_rule(
    ctx: Context, *, rule_id: str
) -> AutoAllocationRuleDeleted | Invalid | NotFound:
    """The rule stops firing; the licences it issued keep naming it. A deleted rule is kept as
    history: deleting it again changes nothing. An id never issued, or one the caller cannot
    see, is NotFound."""
    rule = await mutation_target(ctx, rule_id, AutoAllocationRule, "ruleId", Action.DELETE)
    if isinstance(rule, Invalid | NotFound):
        return rule
    deleted = await ctx.db.execute(
        update(AutoAllocationRule)
        .where(AutoAllocationRule.id == rule.id, AutoAllocationRule.deleted_at.is_(None))
        .values(deleted_at=ctx.now, deleted_by_id=ctx.me.user_id)
        .execution_options(synchronize_session=False)
    )
    if deleted.rowcount != 1:  # type: ignore[attr-defined]
        return AutoAllocationRuleDeleted(id=gid_of(rule), unchanged=True)
    await audit_all(
        ctx,
        [
            Entry(
                AuditAction.AUTO_ALLOCATION_RULE_DELETED,
                rule,
                rule.organisation_id,
                {"courseId": encode_id("Course", rule.course_id)},
            )
        ],
    )
    return AutoAllocationRuleDeleted(id=gid_of(rule))


# Firing when learners are created -----------------------------------------------------------


async def fire_rules(ctx: Context, learners: Sequence[Learner]) -> Fired:
    """Apply every matching rule to new learners of one organisation: one licence per course
    (from its oldest matching rule), while the pool has seats; the rest are withheld and the
    learners are still created. Acts for the caller; audited as each rule acting for them."""
    if not learners:
        return Fired([], [])
    org = learners[0].organisation_id
    locations = {x.location_id for x in learners if x.location_id is not None}
    departments = {x.department_id for x in learners if x.department_id is not None}
    found: Sequence[Any] = (
        await ctx.db.execute(
            select(AutoAllocationRule, Course)
            .join(Course, Course.id == AutoAllocationRule.course_id)
            .where(
                AutoAllocationRule.organisation_id == org,
                AutoAllocationRule.deleted_at.is_(None),
                or_(
                    AutoAllocationRule.location_id.is_(None),
                    AutoAllocationRule.location_id.in_(locations),
                ),
                or_(
                    AutoAllocationRule.department_id.is_(None),
                    AutoAllocationRule.department_id.in_(departments),
                ),
            )
            .order_by(AutoAllocationRule.id)
        )
    ).all()
    courses = {course.id: course for _, course in found}
    wanted: dict[int, list[tuple[Learner, AutoAllocationRule]]] = {}
    for learner in learners:
        licensed: set[int] = set()
        for rule, _ in found:
            if rule.course_id not in licensed and rule_matches(rule, learner):
                licensed.add(rule.course_id)
                wanted.setdefault(rule.course_id, []).append((learner, rule))
    if not wanted:
        return Fired([], [])

    pools = list(
        await ctx.db.scalars(
            select(LicencePool)
            .where(LicencePool.organisation_id == org, LicencePool.course_id.in_(list(wanted)))
            .order_by(LicencePool.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    pool_of = {p.course_id: p for p in pools}
    rows: list[dict[str, Any]] = []
    withheld: list[Withheld] = []
    for course_id, pairs in wanted.items():
        pool = pool_of.get(course_id)
        free = 0 if pool is None else pool.seats_total - pool.seats_used
        for n, (learner, rule) in enumerate(pairs):
            if pool is not None and n < free:
                rows.append(licence_row(ctx, pool, learner.id, rule_id=rule.id))
            else:
                reason = NO_POOL if pool is None else NO_SEAT
                withheld.append(Withheld(learner, courses[course_id], rule, reason))
    issued = await issue(ctx, rows)
    await change_seats(ctx, pools, Counter(x.pool_id for x in issued))
    issued.sort(key=lambda x: x.id)
    await audit_all(ctx, _fired_events(org, [r for r, _ in found], issued, withheld))
    return Fired(issued, withheld)


def _fired_events(
    org: int, rules: list[AutoAllocationRule], issued: list[Licence], withheld: list[Withheld]
) -> list[Entry]:
    """Per rule: the licences it issued and those it had to withhold, as the rule acting."""
    events = []
    for rule in rules:
        mine = [x for x in issued if x.rule_id == rule.id]
        if mine:
            events.append(
                Entry(
                    AuditAction.LICENCES_ALLOCATED,
                    rule,
                    org,
                    {
                        "ruleId": gid_of(rule),
                        "courseId": encode_id("Course", rule.course_id),
                        "learnerIds": [encode_id("Learner", x.learner_id) for x in mine],
                        "licenceIds": [gid_of(x) for x in mine],
                    },
                    tuple(("LicencePool", pk) for pk in sorted({x.pool_id for x in mine})),
                )
            )
        held = [w for w in withheld if w.rule.id == rule.id]
        if held:
            events.append(
                Entry(
                    AuditAction.LICENCES_WITHHELD,
                    rule,
                    org,
                    {
                        "ruleId": gid_of(rule),
                        "courseId": encode_id("Course", rule.course_id),
                        "learnerIds": [gid_of(w.learner) for w in held],
                        "reason": held[0].reason,
                    },
                )
            )
    return events

"""Course licences: the catalogue and pools, the eligible-learner search, allocation (never an
oversold seat), launch and recall, reading licences."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import (
    AutoAllocationRule,
    Course,
    Learner,
    Licence,
    LicencePool,
    LicenceStatus,
    Organisation,
    User,
    UserKind,
)
from resolvers.ids import decode_id
from tests.conftest import AppFactory, Backend
from tests.factories import World
from tests.helpers import (
    Api,
    assert_denied,
    assert_error,
    assert_granted,
    audit_actions,
    gid,
    row_counts,
)

CREATE_COURSE = """mutation($input: CreateCourseInput!) {
  createCourse(input: $input) {
    __typename
    ... on CourseCreated { course { id title code } }
    ... on Error { code message }
  }
}"""

SET_POOL = """mutation($input: SetLicencePoolInput!) {
  setLicencePool(input: $input) {
    __typename
    ... on LicencePoolSet { pool { seatsTotal seatsUsed seatsAvailable } }
    ... on ValidationError { code field }
    ... on Error { code message }
  }
}"""

COURSES = """{ courses(first: 50) { totalCount edges { node {
  id title code pool { seatsTotal seatsUsed seatsAvailable } } } } }"""

ALLOCATE = """mutation($input: AllocateLicencesInput!) {
  allocateLicences(input: $input) {
    __typename
    ... on LicencesAllocated {
      licences { id status source learner { id } course { id } allocatedBy { id } rule { id } }
      pool { seatsTotal seatsUsed seatsAvailable }
    }
    ... on PoolExhaustedError { code requested seatsAvailable }
    ... on BulkRejectedError { code items { id code } }
    ... on Error { code message }
  }
}"""

RECALL = """mutation($input: RecallLicencesInput!) {
  recallLicences(input: $input) {
    __typename
    ... on LicencesRecalled { licences { id status } pool { seatsUsed seatsAvailable } }
    ... on BulkRejectedError { code items { id code } }
    ... on Error { code message }
  }
}"""

LAUNCH = """mutation($input: MarkLicenceLaunchedInput!) {
  markLicenceLaunched(input: $input) {
    __typename
    ... on LicenceLaunched { licence { id launchedAt } }
    ... on Error { code message }
  }
}"""

ELIGIBLE = """query($course: ID!, $first: Int, $after: String, $search: String) {
  licenceEligibleLearners(courseId: $course, first: $first, after: $after, search: $search) {
    totalCount edges { node { id name } } pageInfo { hasNextPage endCursor }
  }
}"""

LICENCES = """query($filter: LicenceFilter) {
  licences(first: 500, filter: $filter) {
    totalCount edges { node { id status source learner { id } course { id } rule { id } } }
  }
}"""

LEARNER_LICENCES = """query($id: ID!, $status: LicenceStatus) {
  learner(id: $id) { licences(status: $status) { id status course { id } } }
}"""


def lid(row: Learner | Licence | Course) -> str:
    return gid(type(row).__name__, row.id)


async def state(engine: AsyncEngine) -> dict[str, Any]:
    """Rows per table, and every pool's seats, licence's status and rule's deletion."""
    found: dict[str, Any] = {"rows": await row_counts(engine)}
    async with engine.connect() as conn:
        found["pools"] = (
            await conn.execute(
                select(LicencePool.id, LicencePool.seats_total, LicencePool.seats_used).order_by(
                    LicencePool.id
                )
            )
        ).all()
        found["licences"] = (
            await conn.execute(
                select(Licence.id, Licence.status, Licence.launched_at).order_by(Licence.id)
            )
        ).all()
        found["rules"] = (
            await conn.execute(
                select(AutoAllocationRule.id, AutoAllocationRule.deleted_at).order_by(
                    AutoAllocationRule.id
                )
            )
        ).all()
    return found


async def seats_used(engine: AsyncEngine, pool: LicencePool) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(select(LicencePool.seats_used).where(LicencePool.id == pool.id))
            ).scalar_one()
        )


class Setup:
    """An organisation with two sites, an admin, a Leeds manager, learners, a course and pool."""

    org: Organisation
    other: Organisation
    admin: User
    manager: User
    course: Course
    pool: LicencePool
    team: list[Learner]
    elsewhere: list[Learner]
    foreign: Learner


async def setup(world: World, seats: int = 10) -> Setup:
    s = Setup()
    s.org, s.other = await world.organisation(), await world.organisation()
    leeds, york = await world.location(s.org), await world.location(s.org)
    s.admin = await world.staff(s.org, "ADMIN")
    s.manager = await world.staff(s.org, "MANAGER", location=leeds)
    s.team = [await world.learner(s.org, location=leeds, name=f"Team {n}") for n in range(3)]
    s.elsewhere = [await world.learner(s.org, location=york, name=f"York {n}") for n in range(2)]
    s.foreign = await world.learner(s.other, name="Foreign")
    s.course = await world.course()
    s.pool = await world.pool(s.org, s.course, seats)
    return s


# The catalogue and pools ---------------------------------------------------------------------


async def test_support_builds_the_catalogue_and_sets_pools(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    support = await world.support()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    external = await world.external_assessor()
    call = api.as_(support)

    created = assert_granted(
        await call(CREATE_COURSE, input={"title": "Fire safety", "code": "FIRE-1"}),
        "CourseCreated",
    )
    course_id = created["course"]["id"]
    assert_error(
        await call(CREATE_COURSE, input={"title": "Again", "code": "FIRE-1"}),
        "AlreadyExistsError",
        "ALREADY_EXISTS",
    )
    pool = assert_granted(
        await call(
            SET_POOL,
            input={
                "organisationId": gid("Organisation", org.id),
                "courseId": course_id,
                "seatsTotal": 3,
            },
        ),
        "LicencePoolSet",
    )
    assert pool["pool"] == {"seatsTotal": 3, "seatsUsed": 0, "seatsAvailable": 3}

    # the admin sees the catalogue with the organisation's pool; an assessor the catalogue only
    seen = (await api.as_(admin, org)(COURSES)).ok()["courses"]
    assert [e["node"]["pool"] for e in seen["edges"]] == [
        {"seatsTotal": 3, "seatsUsed": 0, "seatsAvailable": 3}
    ]
    plain = (await api.as_(assessor, org)(COURSES)).ok()["courses"]
    assert plain["totalCount"] == 1 and plain["edges"][0]["node"]["pool"] is None
    assert (await api.as_(support)(COURSES)).ok()["courses"]["totalCount"] == 1
    assert (await api.as_(external)(COURSES)).ok()["courses"] == {"totalCount": 0, "edges": []}
    assert ("COURSE_CREATED", "Course", support.id) in await audit_actions(backend.engine)
    assert ("LICENCE_POOL_SET", "LicencePool", support.id) in await audit_actions(backend.engine)


@pytest.mark.parametrize("role", ["SUPER_ADMIN", "ADMIN", "MANAGER", "LEARNER"])
async def test_only_support_creates_courses_and_sets_pools(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    org = await world.organisation()
    person = await world.staff(org, role)
    course = await world.course()
    before = await state(backend.engine)
    call = api.as_(person, org)
    assert_denied(await call(CREATE_COURSE, input={"title": "X", "code": "X-1"}))
    assert_denied(
        await call(
            SET_POOL,
            input={
                "organisationId": gid("Organisation", org.id),
                "courseId": lid(course),
                "seatsTotal": 9,
            },
        )
    )
    assert await state(backend.engine) == before


async def test_seats_total_never_below_seats_used(api: Api, world: World, backend: Backend) -> None:
    s = await setup(world, seats=5)
    for learner in s.team:
        await world.licence(s.pool, learner)
    support = await world.support()
    before = await state(backend.engine)
    given = {"organisationId": gid("Organisation", s.org.id), "courseId": lid(s.course)}
    result = assert_error(
        await api.as_(support)(SET_POOL, input={**given, "seatsTotal": 2}),
        "ValidationError",
        "INVALID",
    )
    assert result["field"] == "seatsTotal"
    assert await state(backend.engine) == before
    granted = assert_granted(
        await api.as_(support)(SET_POOL, input={**given, "seatsTotal": 3}), "LicencePoolSet"
    )
    assert granted["pool"] == {"seatsTotal": 3, "seatsUsed": 3, "seatsAvailable": 0}


# Allocation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["SUPER_ADMIN", "ADMIN", "MANAGER"])
async def test_allocate_then_the_learners_leave_the_eligible_list(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    s = await setup(world)
    person = s.manager if role == "MANAGER" else await world.staff(s.org, role)
    call = api.as_(person, s.org)
    eligible = (await call(ELIGIBLE, course=lid(s.course))).ok()["licenceEligibleLearners"]
    expected_before = 3 if role == "MANAGER" else 5
    assert eligible["totalCount"] == expected_before

    payload = assert_granted(
        await call(
            ALLOCATE,
            input={"courseId": lid(s.course), "learnerIds": [lid(x) for x in s.team[:2]]},
        ),
        "LicencesAllocated",
    )
    assert sorted(x["learner"]["id"] for x in payload["licences"]) == sorted(
        lid(x) for x in s.team[:2]
    )
    assert {(x["status"], x["source"], x["rule"]) for x in payload["licences"]} == {
        ("ACTIVE", "MANUAL", None)
    }
    assert {x["allocatedBy"]["id"] for x in payload["licences"]} == {gid("User", person.id)}
    assert payload["pool"] == {"seatsTotal": 10, "seatsUsed": 2, "seatsAvailable": 8}
    after = (await call(ELIGIBLE, course=lid(s.course))).ok()["licenceEligibleLearners"]
    assert after["totalCount"] == expected_before - 2
    assert not {lid(x) for x in s.team[:2]} & {e["node"]["id"] for e in after["edges"]}
    assert await seats_used(backend.engine, s.pool) == 2
    assert ("LICENCES_ALLOCATED", "Licence", person.id) in await audit_actions(backend.engine)


@pytest.mark.parametrize(
    "role",
    ["SENIOR_ASSESSOR", "ASSESSOR", "TRAINING_COORDINATOR", "LEARNER", "SUPPORT", "EXTERNAL"],
)
async def test_other_roles_may_not_allocate_or_recall(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    s = await setup(world)
    licence = await world.licence(s.pool, s.elsewhere[0])
    if role == "SUPPORT":
        call = api.as_(await world.support())
    elif role == "EXTERNAL":
        external = await world.external_assessor()
        await world.allocate(s.team[0], external)
        call = api.as_(external)
    else:
        call = api.as_(await world.staff(s.org, role), s.org)
    before = await state(backend.engine)
    assert_denied(
        await call(ALLOCATE, input={"courseId": lid(s.course), "learnerIds": [lid(s.team[0])]})
    )
    assert_denied(await call(RECALL, input={"licenceIds": [lid(licence)]}))
    assert await state(backend.engine) == before


async def test_allocation_rejects_every_offender_and_changes_nothing(
    api: Api, world: World, backend: Backend
) -> None:
    s = await setup(world)
    other_admin = await world.staff(s.other, "ADMIN")
    await world.licence(s.pool, s.team[1])
    before = await state(backend.engine)

    # a manager outside their team, an unknown id, a malformed id (someone already licensed is
    # no offender: unchanged)
    given = [lid(s.team[0]), lid(s.elsewhere[0]), gid("Learner", 10**9), "%%", lid(s.team[1])]
    payload = assert_error(
        await api.as_(s.manager, s.org)(
            ALLOCATE, input={"courseId": lid(s.course), "learnerIds": given}
        ),
        "BulkRejectedError",
        "BULK_REJECTED",
    )
    assert {(i["id"], i["code"]) for i in payload["items"]} == {
        (lid(s.elsewhere[0]), "NOT_FOUND"),
        (gid("Learner", 10**9), "NOT_FOUND"),
        ("%%", "INVALID"),
    }
    # another organisation's admin cannot reach these learners at all
    foreign = assert_error(
        await api.as_(other_admin, s.other)(
            ALLOCATE, input={"courseId": lid(s.course), "learnerIds": [lid(s.team[0])]}
        ),
        "BulkRejectedError",
        "BULK_REJECTED",
    )
    assert foreign["items"] == [{"id": lid(s.team[0]), "code": "NOT_FOUND"}]
    # an unknown course, an empty list, too many ids
    call = api.as_(s.admin, s.org)
    assert_error(
        await call(
            ALLOCATE, input={"courseId": gid("Course", 10**9), "learnerIds": [lid(s.team[0])]}
        ),
        "NotFoundError",
        "NOT_FOUND",
    )
    assert_error(
        await call(ALLOCATE, input={"courseId": lid(s.course), "learnerIds": []}),
        "ValidationError",
        "INVALID",
    )
    many = [gid("Learner", n) for n in range(1, 1002)]
    assert_error(
        await call(ALLOCATE, input={"courseId": lid(s.course), "learnerIds": many}),
        "ValidationError",
        "INVALID",
    )
    assert await state(backend.engine) == before


async def test_more_learners_than_seats_allocates_nobody(
    api: Api, world: World, backend: Backend
) -> None:
    s = await setup(world, seats=2)
    unpooled = await world.course()
    call = api.as_(s.admin, s.org)
    before = await state(backend.engine)
    payload = assert_error(
        await call(
            ALLOCATE, input={"courseId": lid(s.course), "learnerIds": [lid(x) for x in s.team]}
        ),
        "PoolExhaustedError",
        "POOL_EXHAUSTED",
    )
    assert (payload["requested"], payload["seatsAvailable"]) == (3, 2)
    # a course the organisation has no pool for has no seat at all
    none = assert_error(
        await call(ALLOCATE, input={"courseId": lid(unpooled), "learnerIds": [lid(s.team[0])]}),
        "PoolExhaustedError",
        "POOL_EXHAUSTED",
    )
    assert none["seatsAvailable"] == 0
    assert await state(backend.engine) == before


async def test_twenty_concurrent_allocations_never_oversell_a_pool_of_five(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admins = [await world.staff(org, "ADMIN") for _ in range(4)]
    learners = [await world.learner(org) for _ in range(20)]
    course = await world.course()
    pool = await world.pool(org, course, 5)

    async def one(n: int) -> dict[str, Any]:
        call = api.as_(admins[n % 4], org)
        result = await call(
            ALLOCATE, input={"courseId": lid(course), "learnerIds": [lid(learners[n])]}
        )
        assert result.status == 200 and not result.errors, result.body
        return result.data["allocateLicences"]  # type: ignore[no-any-return]

    answers = await asyncio.gather(*(one(n) for n in range(20)))
    kinds = sorted(a["__typename"] for a in answers)
    assert kinds == ["LicencesAllocated"] * 5 + ["PoolExhaustedError"] * 15, answers
    assert all(a["seatsAvailable"] == 0 for a in answers if a["__typename"] == "PoolExhaustedError")
    assert await seats_used(backend.engine, pool) == 5
    async with backend.engine.connect() as conn:
        active = (
            await conn.execute(select(Licence.id).where(Licence.status == LicenceStatus.ACTIVE))
        ).all()
    assert len(active) == 5
    courses = (await api.as_(admins[0], org)(COURSES)).ok()["courses"]["edges"]
    assert courses[0]["node"]["pool"] == {"seatsTotal": 5, "seatsUsed": 5, "seatsAvailable": 0}


# Launch and recall ----------------------------------------------------------------------------


async def test_recall_returns_the_seat_and_the_learner_is_eligible_again(
    api: Api, world: World, backend: Backend
) -> None:
    s = await setup(world, seats=3)
    mine = await world.licence(s.pool, s.team[0])
    call = api.as_(s.manager, s.org)
    payload = assert_granted(
        await call(RECALL, input={"licenceIds": [lid(mine)]}), "LicencesRecalled"
    )
    assert payload["licences"] == [{"id": lid(mine), "status": "RECALLED"}]
    assert payload["pool"] == {"seatsUsed": 0, "seatsAvailable": 3}
    eligible = (await call(ELIGIBLE, course=lid(s.course))).ok()["licenceEligibleLearners"]
    assert lid(s.team[0]) in {e["node"]["id"] for e in eligible["edges"]}
    # recalled twice: recalled already, unchanged
    again = assert_granted(
        await call(RECALL, input={"licenceIds": [lid(mine)]}), "LicencesRecalled"
    )
    assert again["licences"] == [] and again["pool"] == {"seatsUsed": 0, "seatsAvailable": 3}
    assert [a for a, *_ in await audit_actions(backend.engine)].count("LICENCES_RECALLED") == 1
    # and a new licence can be allocated
    assert_granted(
        await call(ALLOCATE, input={"courseId": lid(s.course), "learnerIds": [lid(s.team[0])]}),
        "LicencesAllocated",
    )
    assert ("LICENCES_RECALLED", "Licence", s.manager.id) in await audit_actions(backend.engine)


async def test_recall_refuses_launched_and_unreachable_licences_and_changes_nothing(
    api: Api, world: World, backend: Backend
) -> None:
    s = await setup(world)
    launched = await world.licence(s.pool, s.team[0], launched=True)
    fresh = await world.licence(s.pool, s.team[1])
    outside = await world.licence(s.pool, s.elsewhere[0])
    other_pool = await world.pool(s.other, s.course, 5)
    foreign = await world.licence(other_pool, s.foreign)
    before = await state(backend.engine)
    payload = assert_error(
        await api.as_(s.manager, s.org)(
            RECALL,
            input={"licenceIds": [lid(fresh), lid(launched), lid(outside), lid(foreign), "%%"]},
        ),
        "BulkRejectedError",
        "BULK_REJECTED",
    )
    assert {(i["id"], i["code"]) for i in payload["items"]} == {
        (lid(launched), "LICENCE_IN_USE"),
        (lid(outside), "NOT_FOUND"),
        (lid(foreign), "NOT_FOUND"),
        ("%%", "INVALID"),
    }
    assert await state(backend.engine) == before


async def test_the_learner_or_an_admin_marks_a_licence_launched(
    api: Api, world: World, backend: Backend
) -> None:
    s = await setup(world)
    person = await world.user(UserKind.STAFF)
    await world.staff(s.org, "LEARNER", user=person)
    me = await world.learner(s.org, user=person)
    mine = await world.licence(s.pool, me)
    theirs = await world.licence(s.pool, s.team[0])
    learner_call = api.as_(person, s.org)

    launched = assert_granted(
        await learner_call(LAUNCH, input={"licenceId": lid(mine)}), "LicenceLaunched"
    )
    assert launched["licence"]["launchedAt"] is not None
    # another learner's licence does not exist for them
    assert_error(
        await learner_call(LAUNCH, input={"licenceId": lid(theirs)}), "NotFoundError", "NOT_FOUND"
    )
    # the admin may; a manager, an assessor, another organisation's admin may not
    assert_granted(
        await api.as_(s.admin, s.org)(LAUNCH, input={"licenceId": lid(theirs)}), "LicenceLaunched"
    )
    assessor = await world.staff(s.org, "ASSESSOR")
    other_admin = await world.staff(s.other, "ADMIN")
    before = await state(backend.engine)
    assert_denied(await api.as_(s.manager, s.org)(LAUNCH, input={"licenceId": lid(theirs)}))
    assert_denied(await api.as_(assessor, s.org)(LAUNCH, input={"licenceId": lid(theirs)}))
    assert_error(
        await api.as_(other_admin, s.other)(LAUNCH, input={"licenceId": lid(theirs)}),
        "NotFoundError",
        "NOT_FOUND",
    )
    assert await state(backend.engine) == before
    # a launched licence cannot be recalled
    payload = assert_error(
        await api.as_(s.admin, s.org)(RECALL, input={"licenceIds": [lid(theirs)]}),
        "BulkRejectedError",
        "BULK_REJECTED",
    )
    assert payload["items"] == [{"id": lid(theirs), "code": "LICENCE_IN_USE"}]


# Reading ------------------------------------------------------------------------------------


async def test_eligible_search_pages_by_name_with_a_right_total(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    course, other_course = await world.course(), await world.course()
    pool = await world.pool(org, course, 100)
    other_pool = await world.pool(org, other_course, 100)
    learners = [await world.learner(org, name=f"Person {n:02d}") for n in range(12)]
    await world.licence(pool, learners[0])
    await world.licence(pool, learners[1], status=LicenceStatus.RECALLED)
    await world.licence(pool, learners[2], status=LicenceStatus.COMPLETED)
    await world.licence(other_pool, learners[3])
    call = api.as_(admin, org)

    ids: list[str] = []
    after = None
    for _ in range(5):
        page = (await call(ELIGIBLE, course=lid(course), first=5, after=after)).ok()[
            "licenceEligibleLearners"
        ]
        assert page["totalCount"] == 11
        ids += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert ids == [lid(x) for x in learners if x is not learners[0]]
    found = (await call(ELIGIBLE, course=lid(course), search="person 0")).ok()
    assert found["licenceEligibleLearners"]["totalCount"] == 9
    nothing = (await call(ELIGIBLE, course=gid("Course", 10**9))).ok()
    assert nothing["licenceEligibleLearners"]["totalCount"] == 0
    bad = await call(ELIGIBLE, course="%%")
    assert bad.codes == ["INVALID"]


async def test_a_licence_is_visible_exactly_when_its_learner_is(api: Api, world: World) -> None:
    s = await setup(world)
    assessor = await world.staff(s.org, "ASSESSOR")
    await world.assign(await world.record(s.elsewhere[1]), assessor)
    other_admin = await world.staff(s.other, "ADMIN")
    rule = await world.rule(s.org, s.course)
    licences = {x.id: await world.licence(s.pool, x) for x in s.team + s.elsewhere}
    newcomer = await world.learner(s.org)
    ruled = await world.licence(s.pool, newcomer, rule=rule)

    async def seen(user: User, org: Organisation, **filter: Any) -> set[str]:
        data = (await api.as_(user, org)(LICENCES, filter=filter or None)).ok()["licences"]
        assert data["totalCount"] == len(data["edges"])
        return {e["node"]["id"] for e in data["edges"]}

    everyone = {lid(x) for x in licences.values()} | {lid(ruled)}
    assert await seen(s.admin, s.org) == everyone
    assert await seen(s.manager, s.org) == {lid(licences[x.id]) for x in s.team}
    assert await seen(assessor, s.org) == {lid(licences[s.elsewhere[1].id])}
    assert await seen(other_admin, s.other) == set()
    assert await seen(s.admin, s.org, learnerId=lid(s.team[0])) == {lid(licences[s.team[0].id])}
    assert await seen(s.manager, s.org, learnerId=lid(s.elsewhere[0])) == set()
    assert await seen(s.admin, s.org, courseId=lid(s.course), status="RECALLED") == set()
    one = (await api.as_(s.admin, s.org)(LICENCES, filter={"learnerId": lid(newcomer)})).ok()
    (node,) = [e["node"] for e in one["licences"]["edges"]]
    assert node["source"] == "RULE" and node["rule"] == {"id": gid("AutoAllocationRule", rule.id)}

    nested = (
        await api.as_(s.manager, s.org)(LEARNER_LICENCES, id=lid(s.team[0]), status="ACTIVE")
    ).ok()
    assert nested["learner"]["licences"] == [
        {"id": lid(licences[s.team[0].id]), "status": "ACTIVE", "course": {"id": lid(s.course)}}
    ]
    hidden = (await api.as_(s.manager, s.org)(LEARNER_LICENCES, id=lid(s.elsewhere[0]))).ok()
    assert hidden == {"learner": None}


# Expiry and completion ----------------------------------------------------------------------

COMPLETE = """mutation($input: MarkLicenceCompletedInput!) {
  markLicenceCompleted(input: $input) {
    __typename
    ... on LicenceCompleted { unchanged licence { id status completedAt launchedAt } }
    ... on LicenceNotActiveError { code id status }
    ... on Error { code message }
  }
}"""

ALLOCATE_UNTIL = """mutation($input: AllocateLicencesInput!) {
  allocateLicences(input: $input) {
    __typename
    ... on LicencesAllocated { licences { id status expiresAt } pool { seatsUsed } }
    ... on ValidationError { code field }
    ... on BulkRejectedError { code items { id code } }
    ... on Error { code message }
  }
}"""

# Both read paths: the learners list is compiled; `licences` and `node` go the standard way.
EXPIRY_READS = """query {
  learners(first: 50) { totalCount edges { node { id
    licences { id status source expiresAt completedAt }
    expired: licences(status: EXPIRED) { id status }
    active: licences(status: ACTIVE) { id status }
    completed: licences(status: COMPLETED) { id } } } }
}"""

LIST_READS = """query($expired: LicenceFilter, $active: LicenceFilter, $completed: LicenceFilter) {
  expired: licences(first: 50, filter: $expired) { totalCount edges { node { id status } } }
  active: licences(first: 50, filter: $active) { totalCount edges { node { id status } } }
  completed: licences(first: 50, filter: $completed) { totalCount edges { node { id } } }
}"""


def ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


async def expire(engine: AsyncEngine, licence_id: str) -> None:
    """Time passes: the licence's expiry is now behind it (its row still says ACTIVE)."""
    pk = decode_id(licence_id)[1]
    async with engine.begin() as conn:
        await conn.execute(update(Licence).where(Licence.id == pk).values(expires_at=ago(1)))


async def test_an_expiry_in_the_past_or_now_is_invalid_and_changes_nothing(
    api: Api, world: World, backend: Backend
) -> None:
    s = await setup(world)
    call = api.as_(s.admin, s.org)
    before = await state(backend.engine)
    for when in (ago(1), ago(0), "2000-01-01T00:00:00"):
        given = when if isinstance(when, str) else when.isoformat()
        payload = assert_error(
            await call(
                ALLOCATE_UNTIL,
                input={
                    "courseId": lid(s.course),
                    "learnerIds": [lid(s.team[0])],
                    "expiresAt": given,
                },
            ),
            "ValidationError",
            "INVALID",
        )
        assert payload["field"] == "expiresAt"
    assert await state(backend.engine) == before


async def test_a_licence_past_its_expiry_reads_expired_on_both_read_paths(
    api_with: AppFactory, world: World, backend: Backend
) -> None:
    s = await setup(world)
    lapsed = await world.licence(s.pool, s.team[0], expires_at=ago(2))
    later = await world.licence(s.pool, s.team[1], expires_at=ago(-30))
    done = await world.licence(s.pool, s.team[2], status=LicenceStatus.COMPLETED)
    plain = await world.licence(s.pool, s.elsewhere[0])
    answers = {}
    for compiled in (True, False):
        app = await api_with(compiled_reads=compiled)
        call = app.as_(s.admin, s.org)
        reads = app.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
        before = reads.answered if compiled else 0
        result = await call(EXPIRY_READS)
        result.ok()
        answers[compiled] = result.body
        if compiled:
            assert reads.answered - before == 1  # the compiled path answered it
        lists = (
            await call(
                LIST_READS,
                expired={"status": "EXPIRED"},
                active={"status": "ACTIVE"},
                completed={"status": "COMPLETED"},
            )
        ).ok()
        assert {e["node"]["id"] for e in lists["expired"]["edges"]} == {lid(lapsed)}
        assert lists["expired"]["totalCount"] == 1
        assert lists["expired"]["edges"][0]["node"]["status"] == "EXPIRED"
        assert {e["node"]["id"] for e in lists["active"]["edges"]} == {lid(later), lid(plain)}
        assert lists["active"]["totalCount"] == 2
        assert {e["node"]["id"] for e in lists["completed"]["edges"]} == {lid(done)}
    assert answers[True] == answers[False]
    shown = {e["node"]["id"]: e["node"] for e in answers[True]["data"]["learners"]["edges"]}
    first = shown[lid(s.team[0])]
    assert first["licences"][0]["status"] == "EXPIRED"
    assert first["licences"][0]["expiresAt"] is not None
    assert first["expired"] == [{"id": lid(lapsed), "status": "EXPIRED"}]
    assert first["active"] == []
    assert shown[lid(s.team[1])]["active"] == [{"id": lid(later), "status": "ACTIVE"}]
    assert shown[lid(s.team[1])]["expired"] == []
    third = shown[lid(s.team[2])]
    assert third["licences"][0]["status"] == "COMPLETED"
    assert third["licences"][0]["completedAt"] is not None
    assert third["completed"] == [{"id": lid(done)}]
    assert third["active"] == []


async def test_an_expired_licence_keeps_its_seat_and_its_learner_may_have_a_new_one(
    api: Api, world: World, backend: Backend
) -> None:
    s = await setup(world, seats=3)
    call = api.as_(s.manager, s.org)
    until = ago(-7)
    first = assert_granted(
        await call(
            ALLOCATE_UNTIL,
            input={
                "courseId": lid(s.course),
                "learnerIds": [lid(s.team[0])],
                "expiresAt": until.isoformat(),
            },
        ),
        "LicencesAllocated",
    )
    (old,) = first["licences"]
    assert old["status"] == "ACTIVE"
    assert datetime.fromisoformat(old["expiresAt"]) == until
    eligible = (await call(ELIGIBLE, course=lid(s.course))).ok()["licenceEligibleLearners"]
    assert lid(s.team[0]) not in {e["node"]["id"] for e in eligible["edges"]}

    await expire(backend.engine, old["id"])
    eligible = (await call(ELIGIBLE, course=lid(s.course))).ok()["licenceEligibleLearners"]
    assert lid(s.team[0]) in {e["node"]["id"] for e in eligible["edges"]}
    # not recallable: it is not active, and it keeps its seat
    before = await state(backend.engine)
    refused = assert_error(
        await call(RECALL, input={"licenceIds": [old["id"]]}), "BulkRejectedError", "BULK_REJECTED"
    )
    assert refused["items"] == [{"id": old["id"], "code": "INVALID"}]
    assert await state(backend.engine) == before

    second = assert_granted(
        await call(
            ALLOCATE_UNTIL, input={"courseId": lid(s.course), "learnerIds": [lid(s.team[0])]}
        ),
        "LicencesAllocated",
    )
    assert second["pool"] == {"seatsUsed": 2}
    assert second["licences"][0]["status"] == "ACTIVE"
    assert second["licences"][0]["expiresAt"] is None
    held = (await call(LEARNER_LICENCES, id=lid(s.team[0]))).ok()["learner"]["licences"]
    assert [(x["id"], x["status"]) for x in held] == [
        (old["id"], "EXPIRED"),
        (second["licences"][0]["id"], "ACTIVE"),
    ]
    async with backend.engine.connect() as conn:
        stored = (
            (
                await conn.execute(
                    select(Licence.status)
                    .where(Licence.learner_id == s.team[0].id)
                    .order_by(Licence.id)
                )
            )
            .scalars()
            .all()
        )
    assert stored == [LicenceStatus.EXPIRED, LicenceStatus.ACTIVE]
    # and with an active licence again, allocating to the learner changes nothing
    again = assert_granted(
        await call(
            ALLOCATE_UNTIL, input={"courseId": lid(s.course), "learnerIds": [lid(s.team[0])]}
        ),
        "LicencesAllocated",
    )
    assert again == {"__typename": "LicencesAllocated", "licences": [], "pool": {"seatsUsed": 2}}


async def test_concurrent_allocations_after_expiry_never_oversell_nor_double_license(
    api: Api, world: World, backend: Backend
) -> None:
    s = await setup(world, seats=5)
    admins = [await world.staff(s.org, "ADMIN") for _ in range(3)]
    lapsed = [await world.licence(s.pool, x, expires_at=ago(1)) for x in s.team]
    assert s.pool.seats_used == 3  # expired licences keep their seats: 2 left

    async def one(n: int) -> dict[str, Any]:
        learner = s.team[n % 3]
        result = await api.as_(admins[n % 3], s.org)(
            ALLOCATE, input={"courseId": lid(s.course), "learnerIds": [lid(learner)]}
        )
        assert result.status == 200 and not result.errors, result.body
        return result.data["allocateLicences"]  # type: ignore[no-any-return]

    answers = await asyncio.gather(*(one(n) for n in range(12)))
    kinds = [a["__typename"] for a in answers]
    # two licences issued; a learner licensed meanwhile by another request counts as unchanged
    issued = [a for a in answers if a["__typename"] == "LicencesAllocated" and a["licences"]]
    assert len(issued) == 2 and all(len(a["licences"]) == 1 for a in issued), answers
    assert set(kinds) <= {"LicencesAllocated", "PoolExhaustedError", "BulkRejectedError"}
    assert await seats_used(backend.engine, s.pool) == 5
    async with backend.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(Licence.learner_id, Licence.status, Licence.expires_at).where(
                    Licence.pool_id == s.pool.id
                )
            )
        ).all()
    # the new licences have no expiry; a lapsed one nobody replaced still says ACTIVE
    active = [x for x, status, until in rows if status == LicenceStatus.ACTIVE and until is None]
    assert len(active) == 2 and len(set(active)) == 2
    assert len(rows) == len(lapsed) + 2


async def test_the_learner_or_an_admin_marks_a_licence_completed(
    api: Api, world: World, backend: Backend
) -> None:
    s = await setup(world, seats=4)
    person = await world.user(UserKind.STAFF)
    await world.staff(s.org, "LEARNER", user=person)
    me = await world.learner(s.org, user=person)
    mine = await world.licence(s.pool, me, launched=True)
    theirs = await world.licence(s.pool, s.team[0])
    assessor = await world.staff(s.org, "ASSESSOR")
    await world.assign(await world.record(s.team[0]), assessor)
    other_admin = await world.staff(s.other, "ADMIN")
    learner_call = api.as_(person, s.org)

    done = assert_granted(
        await learner_call(COMPLETE, input={"licenceId": lid(mine)}), "LicenceCompleted"
    )
    assert done["unchanged"] is False
    assert done["licence"]["status"] == "COMPLETED"
    assert done["licence"]["completedAt"] is not None
    assert ("LICENCE_COMPLETED", "Licence", person.id) in await audit_actions(backend.engine)
    # again: a quiet success that writes nothing, no audit event either
    before = await state(backend.engine)
    events = await audit_actions(backend.engine)
    again = assert_granted(
        await learner_call(COMPLETE, input={"licenceId": lid(mine)}), "LicenceCompleted"
    )
    assert again["unchanged"] is True
    assert again["licence"] == done["licence"]
    assert await state(backend.engine) == before
    assert await audit_actions(backend.engine) == events
    # another learner's licence, or a made-up one, does not exist for them
    for missing in (lid(theirs), gid("Licence", 10**9)):
        assert_error(
            await learner_call(COMPLETE, input={"licenceId": missing}), "NotFoundError", "NOT_FOUND"
        )
    # a manager, an assessor may not; another organisation's admin does not see it
    assert_denied(await api.as_(s.manager, s.org)(COMPLETE, input={"licenceId": lid(theirs)}))
    assert_denied(await api.as_(assessor, s.org)(COMPLETE, input={"licenceId": lid(theirs)}))
    assert_error(
        await api.as_(other_admin, s.other)(COMPLETE, input={"licenceId": lid(theirs)}),
        "NotFoundError",
        "NOT_FOUND",
    )
    assert await state(backend.engine) == before
    # the admin may; the licence keeps its seat and the learner may be given a new one
    assert_granted(
        await api.as_(s.admin, s.org)(COMPLETE, input={"licenceId": lid(theirs)}),
        "LicenceCompleted",
    )
    assert await seats_used(backend.engine, s.pool) == 2
    eligible = (await api.as_(s.admin, s.org)(ELIGIBLE, course=lid(s.course))).ok()[
        "licenceEligibleLearners"
    ]
    assert {lid(me), lid(s.team[0])} <= {e["node"]["id"] for e in eligible["edges"]}
    renewed = assert_granted(
        await api.as_(s.admin, s.org)(
            ALLOCATE, input={"courseId": lid(s.course), "learnerIds": [lid(me), lid(s.team[0])]}
        ),
        "LicencesAllocated",
    )
    assert renewed["pool"]["seatsUsed"] == 4
    # a completed licence is not recallable
    refused = assert_error(
        await api.as_(s.admin, s.org)(RECALL, input={"licenceIds": [lid(theirs)]}),
        "BulkRejectedError",
        "BULK_REJECTED",
    )
    assert refused["items"] == [{"id": lid(theirs), "code": "INVALID"}]


async def test_a_recalled_or_expired_licence_cannot_be_completed(
    api: Api, world: World, backend: Backend
) -> None:
    s = await setup(world)
    recalled = await world.licence(s.pool, s.team[0], status=LicenceStatus.RECALLED)
    lapsed = await world.licence(s.pool, s.team[1], expires_at=ago(1))
    stored = await world.licence(s.pool, s.team[2], status=LicenceStatus.EXPIRED, expires_at=ago(3))
    call = api.as_(s.admin, s.org)
    before = await state(backend.engine)
    events = await audit_actions(backend.engine)
    for licence, status in ((recalled, "RECALLED"), (lapsed, "EXPIRED"), (stored, "EXPIRED")):
        payload = assert_error(
            await call(COMPLETE, input={"licenceId": lid(licence)}),
            "LicenceNotActiveError",
            "LICENCE_NOT_ACTIVE",
        )
        assert (payload["id"], payload["status"]) == (lid(licence), status)
    # nor launched, past its expiry
    assert_error(await call(LAUNCH, input={"licenceId": lid(lapsed)}), "ValidationError", "INVALID")
    assert await state(backend.engine) == before
    assert await audit_actions(backend.engine) == events

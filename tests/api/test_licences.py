"""Course licences: the catalogue and pools, the eligible-learner search, allocation (never an
oversold seat), launch and recall, reading licences."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select
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
from tests.conftest import Backend
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

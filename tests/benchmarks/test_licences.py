"""Benchmark: course licences at scale, in process.

Run with `make bench` (BENCH_PRESET=small|bench, default small; the figures in the notes are
PostgreSQL with BENCH_PRESET=bench: 100,000 learners, 50 courses, ~300,000 licences). Prints:
- the eligible-learner search, first page of 50 (with totalCount, and without): p50 and p95;
- allocating 1,000 licences in one call (and recalling them);
- createLearner with 50 matching rules;
- a rule applied to 5,000 existing learners (preview, then create with applyToExisting);
and the SQL statements each request ran.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from sqlalchemy import insert, select, update

from db.models import Learner, Location, Organisation, User
from db.seed import SUPPORT_EMAIL, seed_preset
from server.services import Services
from tests.api.test_licences import ALLOCATE, RECALL
from tests.api.test_rules import CREATE_LEARNER, CREATE_RULE, PREVIEW
from tests.benchmarks.test_learner_page import PRESET, _someone
from tests.conftest import Backend
from tests.helpers import Api, Caller, counting, gid

ROUNDS = int(os.environ.get("BENCH_ROUNDS_LICENCES", "20"))

ELIGIBLE = """query($course: ID!) {
  licenceEligibleLearners(courseId: $course, first: 50) {
    totalCount edges { node { id name } } pageInfo { hasNextPage endCursor }
  }
}"""
ELIGIBLE_PAGE_ONLY = """query($course: ID!) {
  licenceEligibleLearners(courseId: $course, first: 50) {
    edges { node { id name } } pageInfo { hasNextPage endCursor }
  }
}"""
NEW_COURSE = """mutation($input: CreateCourseInput!) {
  createCourse(input: $input) { ... on CourseCreated { course { id } } }
}"""
# What a client allocating in bulk reads back: the ids and the pool (the full Licence
# projection of 1,000 rows is measured too).
ALLOCATE_LEAN = """mutation($input: AllocateLicencesInput!) {
  allocateLicences(input: $input) {
    __typename
    ... on LicencesAllocated { licences { id } pool { seatsUsed seatsAvailable } }
  }
}"""
RECALL_LEAN = """mutation($input: RecallLicencesInput!) {
  recallLicences(input: $input) {
    __typename ... on LicencesRecalled { licences { id } pool { seatsUsed } }
  }
}"""
SET_POOL = """mutation($input: SetLicencePoolInput!) {
  setLicencePool(input: $input) { __typename }
}"""


def p50_p95(timings: list[float]) -> str:
    timings = sorted(timings)
    p95 = timings[max(int(len(timings) * 0.95) - 1, 0)]
    return f"p50={statistics.median(timings):.1f}ms p95={p95:.1f}ms"


async def timed(engine: Any, call: Caller, query: str, **variables: Any) -> tuple[Any, float, int]:
    with counting(engine) as statements:
        t0 = time.perf_counter()
        data = (await call(query, **variables)).ok()
        ms = (time.perf_counter() - t0) * 1000
    return data, ms, len(statements)


async def new_pooled_course(support: Caller, org_id: int, code: str, seats: int) -> str:
    made = (await support(NEW_COURSE, input={"title": f"Benchmark {code}", "code": code})).ok()
    course_id: str = made["createCourse"]["course"]["id"]
    result = await support(
        SET_POOL,
        input={
            "organisationId": gid("Organisation", org_id),
            "courseId": course_id,
            "seatsTotal": seats,
        },
    )
    assert result.ok()["setLicencePool"]["__typename"] == "LicencePoolSet"
    return course_id


async def test_licences_at_scale(api: Api, backend: Backend, services: Services) -> None:
    started = time.perf_counter()
    await seed_preset(backend.engine, PRESET)
    print(f"\n[{backend.name}] seeded preset {PRESET} in {time.perf_counter() - started:.1f}s")
    admin, org = await _someone(backend, "SUPER_ADMIN")
    async with backend.engine.connect() as conn:
        org_id = (
            await conn.execute(select(Organisation.id).where(Organisation.slug == org.slug))
        ).scalar_one()
        learner_ids = list(
            (
                await conn.execute(
                    select(Learner.id)
                    .where(Learner.organisation_id == org_id)
                    .order_by(Learner.id)
                    .limit(5_000)
                )
            ).scalars()
        )
    call = api.as_(admin, org)
    support = api.as_(User(email=SUPPORT_EMAIL))
    engine = services.engine

    # 1. The eligible-learner search, first page, on a seeded course.
    courses = (await call("{ courses(first: 500) { edges { node { id code } } } }")).ok()
    course_ids = [e["node"]["id"] for e in courses["courses"]["edges"]]
    for query, label in ((ELIGIBLE, "with totalCount"), (ELIGIBLE_PAGE_ONLY, "page only")):
        for _ in range(3):
            await timed(engine, call, query, course=course_ids[0])
        timings = []
        for _ in range(ROUNDS):
            data, ms, statements = await timed(engine, call, query, course=course_ids[0])
            timings.append(ms)
        total = data["licenceEligibleLearners"].get("totalCount", "-")
        print(
            f"[{backend.name}] eligible search first page ({label}): {p50_p95(timings)} "
            f"total={total} statements/request={statements}"
        )

    # 2. Allocating 1,000 licences in one call, then recalling them (twice: lean answer, full).
    course = await new_pooled_course(support, org_id, f"BENCH-ALLOC-{time.time_ns()}", 2_000)
    ids = [gid("Learner", pk) for pk in learner_ids[:1000]]
    for allocate, recall, label in (
        (ALLOCATE_LEAN, RECALL_LEAN, "ids and pool"),
        (ALLOCATE, RECALL, "full licences"),
    ):
        data, ms, statements = await timed(
            engine, call, allocate, input={"courseId": course, "learnerIds": ids}
        )
        licences = data["allocateLicences"]["licences"]
        assert len(licences) == 1000, data["allocateLicences"].get("__typename")
        print(
            f"[{backend.name}] allocate 1,000 licences ({label}): {ms:.0f}ms "
            f"({statements} statements)"
        )
        data, ms, statements = await timed(
            engine, call, recall, input={"licenceIds": [x["id"] for x in licences]}
        )
        assert len(data["recallLicences"]["licences"]) == 1000
        print(
            f"[{backend.name}] recall 1,000 licences ({label}): {ms:.0f}ms "
            f"({statements} statements)"
        )

    # 3. createLearner with 50 matching rules (one per seeded course, whole company).
    for course_id in course_ids[:50]:
        made = await call(CREATE_RULE, input={"courseId": course_id, "scope": "ENTIRE_COMPANY"})
        assert made.ok()["createAutoAllocationRule"]["__typename"] == "AutoAllocationRuleCreated"
    timings = []
    for n in range(max(ROUNDS // 2, 3)):
        data, ms, statements = await timed(
            engine,
            call,
            CREATE_LEARNER,
            input={
                "name": f"Bench Newcomer {n}",
                "email": f"newcomer{n}.{time.time_ns()}@b.example",
            },
        )
        timings.append(ms)
        assert len(data["createLearner"]["licences"]) == min(50, len(course_ids))
    print(
        f"[{backend.name}] createLearner with {min(50, len(course_ids))} matching rules: "
        f"{p50_p95(timings)} ({statements} statements)"
    )

    # 4. A rule applied to 5,000 existing learners: they are moved to a new site first.
    async with backend.engine.begin() as conn:
        site = (
            await conn.execute(
                insert(Location)
                .values(organisation_id=org_id, name=f"Bench site {time.time_ns()}")
                .returning(Location.id)
            )
        ).scalar_one()
        await conn.execute(
            update(Learner).where(Learner.id.in_(learner_ids)).values(location_id=site)
        )
    course = await new_pooled_course(support, org_id, f"BENCH-RULE-{time.time_ns()}", 10_000)
    given = {
        "courseId": course,
        "scope": "LOCATION",
        "locationId": gid("Location", site),
        "applyToExisting": True,
    }
    data, ms, statements = await timed(engine, call, PREVIEW, input=given, first=50)
    preview = data["autoAllocationRulePreview"]
    print(
        f"[{backend.name}] preview a rule reaching {preview['learners']['totalCount']} learners: "
        f"{ms:.0f}ms "
        f"({statements} statements)"
    )
    data, ms, statements = await timed(engine, call, CREATE_RULE, input=given)
    issued = data["createAutoAllocationRule"]["licencesIssued"]
    assert issued == preview["count"] == len(learner_ids)
    print(
        f"[{backend.name}] rule applied to {issued:,} existing learners: {ms:.0f}ms "
        f"({statements} statements)"
    )

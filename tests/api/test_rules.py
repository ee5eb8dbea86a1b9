"""Auto-allocation rules: who may make them, what they match, firing on createLearner and
importLearners (withheld when the pool is empty), existing people only on request, after a
preview that equals what is then issued; statements do not grow with learners or rules."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from db.models import (
    AuditAction,
    AuditEvent,
    Department,
    Learner,
    Licence,
    LicenceStatus,
    Location,
    Organisation,
    RuleScope,
    User,
)
from server.services import Services
from tests.api.test_licences import ALLOCATE, lid, seats_used, state
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import Api, assert_denied, assert_error, assert_granted, counting, gid

CREATE_RULE = """mutation($input: CreateAutoAllocationRuleInput!) {
  createAutoAllocationRule(input: $input) {
    __typename
    ... on AutoAllocationRuleCreated {
      licencesIssued
      rule { id scope course { id } location { id } department { id } createdBy { id } }
    }
    ... on PoolExhaustedError { code requested seatsAvailable }
    ... on ValidationError { code field message }
    ... on Error { code message }
  }
}"""

PREVIEW = """query($input: CreateAutoAllocationRuleInput!, $first: Int, $after: String) {
  autoAllocationRulePreview(input: $input) {
    __typename
    ... on RulePreview {
      count seatsAvailable
      learners(first: $first, after: $after) {
        totalCount edges { node { id } } pageInfo { hasNextPage endCursor }
      }
    }
    ... on Error { code message }
  }
}"""
# The former, deprecated place of the preview: a mutation, answering the same.
PREVIEW_MUTATION = PREVIEW.replace("query", "mutation", 1).replace(
    "autoAllocationRulePreview", "previewAutoAllocationRule"
)

DELETE_RULE = """mutation($input: DeleteAutoAllocationRuleInput!) {
  deleteAutoAllocationRule(input: $input) {
    __typename
    ... on AutoAllocationRuleDeleted { id }
    ... on Error { code message }
  }
}"""

RULES = """query($course: ID) { autoAllocationRules(courseId: $course) { id scope } }"""

CREATE_LEARNER = """mutation($input: CreateLearnerInput!) {
  createLearner(input: $input) {
    __typename
    ... on LearnerCreated {
      learner { id }
      licences { id source status course { id } rule { id } allocatedBy { id } }
      withheld { course { id } learner { id } rule { id } reason }
    }
    ... on Error { code message }
  }
}"""

IMPORT = """mutation($input: ImportLearnersInput!) {
  importLearners(input: $input) {
    __typename
    ... on LearnersImported {
      licencesIssued learners { id name email location { id } department { id } }
      withheld { course { id } learner { id } reason }
    }
    ... on BulkRejectedError { code items { id code message } }
    ... on Error { code message }
  }
}"""


class Org:
    org: Organisation
    admin: User
    leeds: Location
    york: Location
    care: Department
    kitchen: Department


async def org_with_units(world: World) -> Org:
    o = Org()
    o.org = await world.organisation()
    o.admin = await world.staff(o.org, "ADMIN")
    o.leeds, o.york = await world.location(o.org), await world.location(o.org)
    o.care, o.kitchen = await world.department(o.org), await world.department(o.org)
    return o


def rule_input(course_id: str, scope: str, **extra: Any) -> dict[str, Any]:
    return {"courseId": course_id, "scope": scope, **extra}


# Who may make rules, and what a rule must name --------------------------------------------------


@pytest.mark.parametrize("role", ["SUPER_ADMIN", "ADMIN"])
async def test_admins_make_list_and_delete_rules(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    o = await org_with_units(world)
    person = await world.staff(o.org, role)
    course = await world.course()
    call = api.as_(person, o.org)
    made = assert_granted(
        await call(
            CREATE_RULE,
            input=rule_input(
                lid(course),
                "ADVANCED",
                locationId=gid("Location", o.leeds.id),
                departmentId=gid("Department", o.care.id),
            ),
        ),
        "AutoAllocationRuleCreated",
    )
    rule = made["rule"]
    assert (made["licencesIssued"], rule["scope"]) == (0, "ADVANCED")
    assert rule["location"] == {"id": gid("Location", o.leeds.id)}
    assert rule["department"] == {"id": gid("Department", o.care.id)}
    assert rule["createdBy"] == {"id": gid("User", person.id)}
    listed = (await call(RULES, course=lid(course))).ok()["autoAllocationRules"]
    assert listed == [{"id": rule["id"], "scope": "ADVANCED"}]
    assert_granted(
        await call(DELETE_RULE, input={"ruleId": rule["id"]}), "AutoAllocationRuleDeleted"
    )
    assert (await call(RULES)).ok()["autoAllocationRules"] == []
    again = assert_granted(  # deleted already: kept as history, unchanged
        await call(DELETE_RULE, input={"ruleId": rule["id"]}), "AutoAllocationRuleDeleted"
    )
    assert again["id"] == rule["id"]
    assert_error(
        await call(DELETE_RULE, input={"ruleId": gid("AutoAllocationRule", 10**9)}),
        "NotFoundError",
        "NOT_FOUND",
    )
    async with backend.engine.connect() as conn:
        actions = set((await conn.execute(select(AuditEvent.action))).scalars())
    assert {
        AuditAction.AUTO_ALLOCATION_RULE_CREATED,
        AuditAction.AUTO_ALLOCATION_RULE_DELETED,
    } <= actions


@pytest.mark.parametrize(
    "role", ["MANAGER", "SENIOR_ASSESSOR", "ASSESSOR", "LEARNER", "SUPPORT", "EXTERNAL"]
)
async def test_other_roles_may_not_make_preview_or_delete_rules(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    o = await org_with_units(world)
    course = await world.course()
    rule = await world.rule(o.org, course)
    if role == "SUPPORT":
        call = api.as_(await world.support())
    elif role == "EXTERNAL":
        call = api.as_(await world.external_assessor())
    else:
        call = api.as_(await world.staff(o.org, role, location=o.leeds), o.org)
    before = await state(backend.engine)
    given = rule_input(lid(course), "ENTIRE_COMPANY")
    assert_denied(await call(CREATE_RULE, input=given))
    assert_denied(await call(PREVIEW, input=given))
    assert_denied(await call(PREVIEW_MUTATION, input=given))
    assert_denied(await call(DELETE_RULE, input={"ruleId": gid("AutoAllocationRule", rule.id)}))
    assert (await call(RULES)).ok()["autoAllocationRules"] == []
    assert await state(backend.engine) == before


async def test_another_organisations_rules_do_not_exist_for_an_admin(
    api: Api, world: World, backend: Backend
) -> None:
    o, theirs = await org_with_units(world), await org_with_units(world)
    course = await world.course()
    rule = await world.rule(theirs.org, course)
    call = api.as_(o.admin, o.org)
    before = await state(backend.engine)
    assert (await call(RULES)).ok()["autoAllocationRules"] == []
    assert_error(
        await call(DELETE_RULE, input={"ruleId": gid("AutoAllocationRule", rule.id)}),
        "NotFoundError",
        "NOT_FOUND",
    )
    assert await state(backend.engine) == before


async def test_a_rule_names_exactly_the_units_its_scope_needs(
    api: Api, world: World, backend: Backend
) -> None:
    o, theirs = await org_with_units(world), await org_with_units(world)
    course = await world.course()
    call = api.as_(o.admin, o.org)
    leeds, care = gid("Location", o.leeds.id), gid("Department", o.care.id)
    foreign_site = gid("Location", theirs.leeds.id)
    foreign_department = gid("Department", theirs.care.id)
    before = await state(backend.engine)
    bad = [
        ("LOCATION", {}, "locationId"),
        ("LOCATION", {"locationId": leeds, "departmentId": care}, "departmentId"),
        ("DEPARTMENT", {"locationId": leeds}, "locationId"),
        ("DEPARTMENT", {}, "departmentId"),
        ("ADVANCED", {"locationId": leeds}, "departmentId"),
        ("ENTIRE_COMPANY", {"departmentId": care}, "departmentId"),
        ("LOCATION", {"locationId": foreign_site}, "locationId"),
        ("DEPARTMENT", {"departmentId": foreign_department}, "departmentId"),
        ("LOCATION", {"locationId": care}, "locationId"),
        ("LOCATION", {"locationId": "%%"}, "locationId"),
    ]
    for scope, units, field in bad:
        for document in (CREATE_RULE, PREVIEW, PREVIEW_MUTATION):
            result = (await call(document, input=rule_input(lid(course), scope, **units))).ok()
            (payload,) = result.values()
            assert payload["__typename"] == "ValidationError", (scope, units, payload)
            if document is CREATE_RULE:
                assert payload["field"] == field, (scope, units, payload)
    assert_error(
        await call(CREATE_RULE, input=rule_input(gid("Course", 10**9), "ENTIRE_COMPANY")),
        "NotFoundError",
        "NOT_FOUND",
    )
    assert await state(backend.engine) == before


# Firing ---------------------------------------------------------------------------------------


async def test_rules_reach_only_learners_created_after_them(
    api: Api, world: World, backend: Backend
) -> None:
    o = await org_with_units(world)
    fire, food = await world.course(), await world.course()
    await world.pool(o.org, fire, 10)
    food_pool = await world.pool(o.org, food, 10)
    earlier = await world.learner(o.org, location=o.leeds, department=o.care)
    call = api.as_(o.admin, o.org)
    by_site = assert_granted(
        await call(
            CREATE_RULE,
            input=rule_input(lid(fire), "LOCATION", locationId=gid("Location", o.leeds.id)),
        ),
        "AutoAllocationRuleCreated",
    )["rule"]["id"]
    everyone = assert_granted(
        await call(CREATE_RULE, input=rule_input(lid(fire), "ENTIRE_COMPANY")),
        "AutoAllocationRuleCreated",
    )["rule"]["id"]
    kitchen = assert_granted(
        await call(
            CREATE_RULE,
            input=rule_input(
                lid(food),
                "ADVANCED",
                locationId=gid("Location", o.york.id),
                departmentId=gid("Department", o.kitchen.id),
            ),
        ),
        "AutoAllocationRuleCreated",
    )["rule"]["id"]

    async def create(**given: Any) -> dict[str, Any]:
        return assert_granted(
            await call(CREATE_LEARNER, input={"name": "New Person", **given}), "LearnerCreated"
        )

    leeds_cook = await create(
        locationId=gid("Location", o.leeds.id), departmentId=gid("Department", o.kitchen.id)
    )
    # one licence per course: the oldest matching rule issues it
    assert [(x["course"]["id"], x["rule"]["id"], x["source"]) for x in leeds_cook["licences"]] == [
        (lid(fire), by_site, "RULE")
    ]
    assert leeds_cook["licences"][0]["allocatedBy"] == {"id": gid("User", o.admin.id)}
    york_cook = await create(
        locationId=gid("Location", o.york.id), departmentId=gid("Department", o.kitchen.id)
    )
    assert sorted((x["course"]["id"], x["rule"]["id"]) for x in york_cook["licences"]) == sorted(
        [(lid(fire), everyone), (lid(food), kitchen)]
    )
    nowhere = await create()
    assert [x["rule"]["id"] for x in nowhere["licences"]] == [everyone]
    assert await seats_used(backend.engine, food_pool) == 1
    # the learner who was there before the rules got nothing
    async with backend.engine.connect() as conn:
        theirs = (
            await conn.execute(select(Licence.id).where(Licence.learner_id == earlier.id))
        ).all()
        events = (
            await conn.execute(
                select(AuditEvent.actor_id, AuditEvent.details, AuditEvent.subject_type).where(
                    AuditEvent.action == AuditAction.LICENCES_ALLOCATED
                )
            )
        ).all()
    assert theirs == []
    # each issue is recorded as the rule acting for the person who created the learner
    assert {e[0] for e in events} == {o.admin.id}
    assert {e[2] for e in events} == {"AutoAllocationRule"}
    assert {e[1]["ruleId"] for e in events} == {by_site, everyone, kitchen}
    # a deleted rule fires no more
    assert_granted(await call(DELETE_RULE, input={"ruleId": everyone}), "AutoAllocationRuleDeleted")
    assert (await create())["licences"] == []


async def test_an_empty_pool_withholds_the_licence_but_never_loses_the_person(
    api: Api, world: World, backend: Backend
) -> None:
    o = await org_with_units(world)
    full, unpooled = await world.course(), await world.course()
    pool = await world.pool(o.org, full, 1)
    await world.licence(pool, await world.learner(o.org))
    rule = await world.rule(o.org, full)
    other_rule = await world.rule(o.org, unpooled)
    call = api.as_(o.admin, o.org)
    created = assert_granted(
        await call(CREATE_LEARNER, input={"name": "Still Here"}), "LearnerCreated"
    )
    assert created["licences"] == []
    assert sorted(
        (w["course"]["id"], w["rule"]["id"], w["learner"]["id"]) for w in created["withheld"]
    ) == sorted(
        [
            (lid(full), gid("AutoAllocationRule", rule.id), created["learner"]["id"]),
            (lid(unpooled), gid("AutoAllocationRule", other_rule.id), created["learner"]["id"]),
        ]
    )
    assert all(w["reason"] for w in created["withheld"])
    assert await seats_used(backend.engine, pool) == 1
    async with backend.engine.connect() as conn:
        withheld = (
            await conn.execute(
                select(AuditEvent.actor_id, AuditEvent.details).where(
                    AuditEvent.action == AuditAction.LICENCES_WITHHELD
                )
            )
        ).all()
        learners = (await conn.execute(select(Learner.id))).all()
    assert len(learners) == 2
    assert {w[1]["ruleId"] for w in withheld} == {
        gid("AutoAllocationRule", rule.id),
        gid("AutoAllocationRule", other_rule.id),
    }
    assert {w[0] for w in withheld} == {o.admin.id}


# Existing people, on request --------------------------------------------------------------------


async def test_the_preview_is_exactly_what_apply_to_existing_then_issues(
    api: Api, world: World, backend: Backend
) -> None:
    o = await org_with_units(world)
    course = await world.course()
    pool = await world.pool(o.org, course, 20)
    at_leeds = [await world.learner(o.org, location=o.leeds, name=f"L {n}") for n in range(7)]
    await world.learner(o.org, location=o.york)
    await world.licence(pool, at_leeds[0])
    await world.licence(pool, at_leeds[1], status=LicenceStatus.RECALLED)
    call = api.as_(o.admin, o.org)
    given = rule_input(
        lid(course), "LOCATION", locationId=gid("Location", o.leeds.id), applyToExisting=True
    )
    before = await state(backend.engine)
    preview = assert_granted(await call(PREVIEW, input=given, first=4), "RulePreview")
    assert await state(backend.engine) == before  # a dry run writes nothing
    assert (preview["count"], preview["seatsAvailable"]) == (6, 19)
    mutated = await call(PREVIEW_MUTATION, input=given, first=4)
    assert mutated.ok()["previewAutoAllocationRule"] == preview
    previewed = [e["node"]["id"] for e in preview["learners"]["edges"]]
    second = assert_granted(
        await call(
            PREVIEW, input=given, first=4, after=preview["learners"]["pageInfo"]["endCursor"]
        ),
        "RulePreview",
    )
    previewed += [e["node"]["id"] for e in second["learners"]["edges"]]
    assert preview["learners"]["totalCount"] == 6 and len(previewed) == 6

    made = assert_granted(await call(CREATE_RULE, input=given), "AutoAllocationRuleCreated")
    assert made["licencesIssued"] == 6
    async with backend.engine.connect() as conn:
        issued = (
            (await conn.execute(select(Licence.learner_id).where(Licence.rule_id.is_not(None))))
            .scalars()
            .all()
        )
    assert sorted(lid(Learner(id=pk)) for pk in issued) == sorted(previewed)
    assert await seats_used(backend.engine, pool) == 7
    assert (await call(PREVIEW, input=given)).ok()["autoAllocationRulePreview"]["count"] == 0


async def test_apply_to_existing_beyond_the_pool_creates_neither_rule_nor_licences(
    api: Api, world: World, backend: Backend
) -> None:
    o = await org_with_units(world)
    course, unpooled = await world.course(), await world.course()
    await world.pool(o.org, course, 2)
    for _ in range(3):
        await world.learner(o.org)
    call = api.as_(o.admin, o.org)
    before = await state(backend.engine)
    for target, seats in ((course, 2), (unpooled, 0)):
        payload = assert_error(
            await call(
                CREATE_RULE, input=rule_input(lid(target), "ENTIRE_COMPANY", applyToExisting=True)
            ),
            "PoolExhaustedError",
            "POOL_EXHAUSTED",
        )
        assert (payload["requested"], payload["seatsAvailable"]) == (3, seats)
    assert await state(backend.engine) == before


# Bulk import ------------------------------------------------------------------------------------


async def test_import_creates_everyone_and_fires_rules(
    api: Api, world: World, backend: Backend
) -> None:
    o = await org_with_units(world)
    course = await world.course()
    pool = await world.pool(o.org, course, 2)
    await world.rule(o.org, course, RuleScope.LOCATION, location=o.leeds)
    rows = [
        {
            "name": "Ann Leeds",
            "email": "ann@example.org",
            "locationId": gid("Location", o.leeds.id),
        },
        {
            "name": "Bob Leeds",
            "locationId": gid("Location", o.leeds.id),
            "departmentId": gid("Department", o.care.id),
        },
        {"name": "Cat Leeds", "locationId": gid("Location", o.leeds.id)},
        {"name": "Dan York", "locationId": gid("Location", o.york.id)},
    ]
    payload = assert_granted(
        await api.as_(o.admin, o.org)(IMPORT, input={"learners": rows}), "LearnersImported"
    )
    assert [x["name"] for x in payload["learners"]] == [r["name"] for r in rows]
    assert payload["learners"][0]["email"] == "ann@example.org"
    assert payload["licencesIssued"] == 2
    assert [w["learner"]["id"] for w in payload["withheld"]] == [payload["learners"][2]["id"]]
    assert await seats_used(backend.engine, pool) == 2
    # the learner with an email can sign in as a learner
    user = User(email="ann@example.org")
    me = (await api.as_(user, o.org)("{ viewer { roles } }")).ok()
    assert me["viewer"]["roles"] == ["LEARNER"]


async def test_import_names_every_bad_row_and_creates_nobody(
    api: Api, world: World, backend: Backend
) -> None:
    o, theirs = await org_with_units(world), await org_with_units(world)
    taken = await world.staff(o.org, "ASSESSOR")
    await world.rule(o.org, await world.course())
    rows = [
        {"name": "Fine"},
        {"name": "   "},
        {"name": "Foreign site", "locationId": gid("Location", theirs.leeds.id)},
        {"name": "Unknown department", "departmentId": gid("Department", 10**9)},
        {"name": "Taken", "email": taken.email},
        {"name": "Twice", "email": "twice@example.org"},
        {"name": "Twice again", "email": "TWICE@example.org"},
        {"name": "Bad email", "email": "nope"},
        {"name": "Fine too", "email": "fine@example.org"},
    ]
    before = await state(backend.engine)
    payload = assert_error(
        await api.as_(o.admin, o.org)(IMPORT, input={"learners": rows}),
        "BulkRejectedError",
        "BULK_REJECTED",
    )
    assert [(i["id"], i["code"]) for i in payload["items"]] == [
        ("1", "INVALID"),
        ("2", "NOT_FOUND"),
        ("3", "NOT_FOUND"),
        ("4", "ALREADY_EXISTS"),
        ("6", "ALREADY_EXISTS"),
        ("7", "INVALID"),
    ]
    too_many = [{"name": f"P {n}"} for n in range(1001)]
    assert_error(
        await api.as_(o.admin, o.org)(IMPORT, input={"learners": too_many}),
        "ValidationError",
        "INVALID",
    )
    assert await state(backend.engine) == before


@pytest.mark.parametrize("role", ["MANAGER", "SENIOR_ASSESSOR", "ASSESSOR", "LEARNER"])
async def test_only_admins_import(api: Api, world: World, backend: Backend, role: str) -> None:
    o = await org_with_units(world)
    person = await world.staff(o.org, role, location=o.leeds)
    support = await world.support()
    before = await state(backend.engine)
    assert_denied(await api.as_(person, o.org)(IMPORT, input={"learners": [{"name": "X"}]}))
    assert_denied(await api.as_(support)(IMPORT, input={"learners": [{"name": "X"}]}))
    assert await state(backend.engine) == before


# Statements do not grow ---------------------------------------------------------------------


async def test_statements_do_not_grow_with_rules_or_learners(
    api: Api, world: World, services: Services
) -> None:
    o = await org_with_units(world)
    courses = [await world.course() for _ in range(12)]
    for course in courses:
        await world.pool(o.org, course, 1000)
    call = api.as_(o.admin, o.org)

    async def statements(document: str, **variables: Any) -> int:
        with counting(services.engine) as seen:
            result = (await call(document, **variables)).ok()
        (payload,) = result.values()
        assert payload["__typename"] in ("LearnerCreated", "LearnersImported"), payload
        return len(seen)

    async def rules(n: int) -> None:
        for course in courses[:n]:
            await world.rule(o.org, course, RuleScope.LOCATION, location=o.leeds)

    here = {"locationId": gid("Location", o.leeds.id)}
    await rules(1)
    one_rule = await statements(CREATE_LEARNER, input={"name": "A", "email": "a@x.org", **here})
    few = await statements(
        IMPORT,
        input={"learners": [{"name": f"B{n}", "email": f"b{n}@x.org", **here} for n in range(2)]},
    )
    for course in courses[1:]:  # now twelve rules match, one per course
        await world.rule(o.org, course, RuleScope.LOCATION, location=o.leeds)
    many_rules = await statements(CREATE_LEARNER, input={"name": "C", "email": "c@x.org", **here})
    many = await statements(
        IMPORT,
        input={"learners": [{"name": f"D{n}", "email": f"d{n}@x.org", **here} for n in range(40)]},
    )
    assert one_rule == many_rules, (one_rule, many_rules)
    assert few == many, (few, many)
    # and allocating 2 or 40 learners by hand costs the same
    learners = [await world.learner(o.org) for _ in range(42)]
    with counting(services.engine) as two:
        (
            await call(
                ALLOCATE,
                input={"courseId": lid(courses[0]), "learnerIds": [lid(x) for x in learners[:2]]},
            )
        ).ok()
    with counting(services.engine) as forty:
        (
            await call(
                ALLOCATE,
                input={"courseId": lid(courses[0]), "learnerIds": [lid(x) for x in learners[2:]]},
            )
        ).ok()
    assert len(two) == len(forty)
    print(f"createLearner: {one_rule} statements; importLearners: {few}; allocate: {len(two)}")

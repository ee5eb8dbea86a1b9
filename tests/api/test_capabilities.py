"""Capabilities: which organisations the signed-in person belongs to, and what they may do."""

from __future__ import annotations

from typing import Any

import pytest

from db.models import ApprenticeRecord, RecordStatus, User
from server.services import Services
from tests.factories import World
from tests.helpers import Api, counting, gid

# Statements for a page of learners with viewerCan, whatever its size (see the test).
CAPABILITY_PAGE_BUDGET = 2

MEMBERSHIPS = """{ viewer { memberships {
  organisation { id name slug } roles location { name } department { name }
} } }"""


async def test_a_person_in_two_organisations_sees_both_with_either_token(
    api: Api, world: World
) -> None:
    north = await world.organisation(slug="north", name="North Care")
    south = await world.organisation(slug="south", name="South Training")
    site = await world.location(north, "Leeds")
    team = await world.department(south, "Nursing")
    person = await world.staff(north, "MANAGER", "ASSESSOR", location=site)
    await world.staff(south, "ADMIN", department=team, user=person)
    third = await world.organisation(slug="west")
    await world.staff(third, "ADMIN", user=person)
    await world.deactivate(person, third)  # a deactivated membership is left out

    expected = [
        {
            "organisation": {
                "id": gid("Organisation", north.id),
                "name": "North Care",
                "slug": "north",
            },
            "roles": ["MANAGER", "ASSESSOR"],
            "location": {"name": "Leeds"},
            "department": None,
        },
        {
            "organisation": {
                "id": gid("Organisation", south.id),
                "name": "South Training",
                "slug": "south",
            },
            "roles": ["ADMIN"],
            "location": None,
            "department": {"name": "Nursing"},
        },
    ]
    for org in (north, south):
        found = (await api.as_(person, org)(MEMBERSHIPS)).ok()["viewer"]["memberships"]
        assert found == expected


async def test_support_external_assessors_and_api_keys_belong_to_no_organisation(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    _, key = await world.usable_api_key(org, "ADMIN")
    for call in (
        api.as_(await world.support()),
        api.as_(await world.external_assessor()),
        api.with_key(key),
    ):
        assert (await call(MEMBERSHIPS)).ok()["viewer"]["memberships"] == []


LEARNER_CAN = """query($first: Int) { learners(first: $first) { edges { node {
  name viewerCan { update allocateAssessor allocateLicence }
} } } }"""

RECORD_CAN = """query($id: ID!) { node(id: $id) { ... on ApprenticeRecord {
  viewerCan { assign submitEvidence archive restore }
} } }"""

VIEWER_CAN = """{ viewer { can {
  createOrganisation createLearner importLearners createStaffMember createApiKey
  createAutoAllocationRule createCourse
} } }"""


async def test_a_manager_may_allocate_in_their_team_and_an_admin_may_do_everything(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    site = await world.location(org)
    await world.learner(org, name="In Team", location=site)
    await world.learner(org, name="Elsewhere")
    manager = await world.staff(org, "MANAGER", location=site)
    admin = await world.staff(org, "ADMIN")
    senior = await world.staff(org, "SENIOR_ASSESSOR")

    def flags(data: dict[str, Any]) -> dict[str, dict[str, bool]]:
        return {e["node"]["name"]: e["node"]["viewerCan"] for e in data["learners"]["edges"]}

    everything = {"update": True, "allocateAssessor": True, "allocateLicence": True}
    nothing = dict.fromkeys(everything, False)
    assert flags((await api.as_(manager, org)(LEARNER_CAN)).ok()) == {
        "In Team": {"update": False, "allocateAssessor": True, "allocateLicence": True}
    }
    assert flags((await api.as_(admin, org)(LEARNER_CAN)).ok()) == {
        "In Team": everything,
        "Elsewhere": everything,
    }
    assert flags((await api.as_(senior, org)(LEARNER_CAN)).ok()) == {
        "In Team": nothing,
        "Elsewhere": nothing,
    }


async def test_an_archived_record_takes_no_assignments_or_evidence(api: Api, world: World) -> None:
    org = await world.organisation()
    learner = await world.learner(org)
    live = await world.record(learner)
    archived = await world.record(learner, status=RecordStatus.ARCHIVED)
    admin = await world.staff(org, "ADMIN")
    senior = await world.staff(org, "SENIOR_ASSESSOR")

    async def can(who: User, record: ApprenticeRecord) -> dict[str, bool]:
        data = (await api.as_(who, org)(RECORD_CAN, id=gid("ApprenticeRecord", record.id))).ok()
        found: dict[str, bool] = data["node"]["viewerCan"]
        return found

    assert await can(admin, live) == dict.fromkeys(
        ("assign", "submitEvidence", "archive", "restore"), True
    )
    # Archiving an archived record answers "unchanged", not an error.
    assert await can(admin, archived) == {
        "assign": False,
        "submitEvidence": False,
        "archive": True,
        "restore": True,
    }
    assert await can(senior, live) == {
        "assign": True,
        "submitEvidence": False,
        "archive": False,
        "restore": False,
    }


async def test_viewer_can_names_the_actions_without_a_target(api: Api, world: World) -> None:
    org = await world.organisation()
    super_admin = await world.staff(org, "SUPER_ADMIN")
    manager = await world.staff(org, "MANAGER")

    async def can(caller: Any) -> set[str]:
        found = (await caller(VIEWER_CAN)).ok()["viewer"]["can"]
        return {name for name, allowed in found.items() if allowed}

    admin_actions = {
        "createLearner",
        "importLearners",
        "createStaffMember",
        "createAutoAllocationRule",
    }
    assert await can(api.as_(super_admin, org)) == admin_actions | {"createApiKey"}
    assert await can(api.as_(manager, org)) == set()
    assert await can(api.as_(await world.support())) == {
        "createOrganisation",
        "createStaffMember",
        "createCourse",
    }


@pytest.mark.parametrize("size", [5, 50])
async def test_a_page_of_learners_with_capabilities_costs_the_same_for_5_as_for_50(
    api: Api, world: World, services: Services, size: int
) -> None:
    org = await world.organisation()
    site = await world.location(org)
    for k in range(size):
        await world.learner(org, name=f"Learner {k:03}", location=site)
    manager = await world.staff(org, "MANAGER", location=site)
    call = api.as_(manager, org)
    await call(LEARNER_CAN, first=size)  # warm: sign-in caches, plans
    with counting(services.engine) as statements:
        data = (await call(LEARNER_CAN, first=size)).ok()
    assert len(data["learners"]["edges"]) == size
    # authentication, and the page: its own statement computes every flag of every learner
    assert len(statements) <= CAPABILITY_PAGE_BUDGET, "\n".join(statements)


USER_CAN = (
    """query($id: ID!) { node(id: $id) { ... on User { viewerCan { update deactivate } } } }"""
)


async def test_only_a_super_admin_deactivates_a_super_admin_and_never_the_last(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    boss = await world.staff(org, "SUPER_ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    gone = await world.staff(org, "ASSESSOR")
    await world.deactivate(gone, org)

    async def can(who: User, user: User) -> dict[str, bool]:
        found: dict[str, bool] = (await api.as_(who, org)(USER_CAN, id=gid("User", user.id))).ok()[
            "node"
        ]["viewerCan"]
        return found

    assert await can(admin, assessor) == {"update": True, "deactivate": True}
    assert await can(admin, boss) == {"update": True, "deactivate": False}
    assert await can(boss, boss) == {"update": True, "deactivate": False}  # the last one
    # a member deactivated here: no change of details, deactivating again is "unchanged"
    assert await can(admin, gone) == {"update": False, "deactivate": True}
    assert await can(assessor, assessor) == {"update": False, "deactivate": False}
    second = await world.staff(org, "SUPER_ADMIN")
    assert await can(boss, boss) == {"update": True, "deactivate": True}
    assert await can(second, boss) == {"update": True, "deactivate": True}
    assert await can(admin, second) == {"update": True, "deactivate": False}


NESTED_CAN = """query($id: ID!) { node(id: $id) { ... on Learner {
  allocations(includeEnded: true) { id viewerCan { deallocate } }
  records { assignments(includeEnded: true) { id viewerCan { unassign } } }
} } }"""


async def test_allocations_and_assignments_say_whether_they_can_be_ended(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    site = await world.location(org)
    learner = await world.learner(org, location=site)
    record = await world.record(learner)
    external = await world.external_assessor()
    open_one = await world.allocate(learner, external)
    ended = await world.allocate(learner, await world.external_assessor(), ended=True)
    assessor = await world.staff(org, "ASSESSOR")
    assignment = await world.assign(record, assessor)
    admin = await world.staff(org, "ADMIN")
    manager = await world.staff(org, "MANAGER", location=site)
    senior = await world.staff(org, "SENIOR_ASSESSOR")

    async def can(who: User) -> dict[str, bool]:
        node = (await api.as_(who, org)(NESTED_CAN, id=gid("Learner", learner.id))).ok()["node"]
        found = {a["id"]: a["viewerCan"]["deallocate"] for a in node["allocations"]}
        for r in node["records"]:
            found |= {a["id"]: a["viewerCan"]["unassign"] for a in r["assignments"]}
        return found

    allocations = [gid("Allocation", open_one.id), gid("Allocation", ended.id)]
    mine = gid("Assignment", assignment.id)
    # granted: an admin ends both (one ended already is answered unchanged); a manager
    # deallocates in their team; a senior assessor unassigns
    assert await can(admin) == {allocations[0]: True, allocations[1]: True, mine: True}
    assert await can(manager) == {allocations[0]: True, allocations[1]: True, mine: False}
    # denied: a senior assessor may not deallocate
    assert await can(senior) == {allocations[0]: False, allocations[1]: False, mine: True}
    # an archived record takes no change of assignments (RECORD_ARCHIVED)
    archived = await world.record(learner, status=RecordStatus.ARCHIVED)
    kept = await world.assign(archived, assessor)
    query = "query($id: ID!) { node(id: $id) { ... on Assignment { viewerCan { unassign } } } }"
    answer = (await api.as_(admin, org)(query, id=gid("Assignment", kept.id))).ok()
    assert answer["node"] == {"viewerCan": {"unassign": False}}


RECORDS_CAN = """query($first: Int) {
  apprenticeRecords(first: $first) { edges { node { ...Shown } } }
}
fragment Shown on ApprenticeRecord { id viewerCan { assign archive } }"""


async def test_a_page_computes_its_flags_in_its_own_statement_as_asked_by_id(
    api: Api, world: World, services: Services
) -> None:
    org = await world.organisation()
    learner = await world.learner(org)
    await world.record(learner)
    await world.record(learner)
    senior = await world.staff(org, "SENIOR_ASSESSOR")
    call = api.as_(senior, org)
    await call(RECORDS_CAN, first=10)  # warm
    with counting(services.engine) as statements:
        page = (await call(RECORDS_CAN, first=10)).ok()["apprenticeRecords"]["edges"]
    # compiled: the sign-in and the page with its flags in one statement; standard: the
    # sign-in, then the page with its flags (through a fragment)
    expected = 1 if services.settings.compiled_reads else 2
    assert len(statements) == expected, "\n".join(statements)
    assert [e["node"]["viewerCan"] for e in page] == [{"assign": True, "archive": False}] * 2
    for edge in page:
        by_id = (await call(RECORD_CAN, id=edge["node"]["id"])).ok()["node"]["viewerCan"]
        assert {k: by_id[k] for k in ("assign", "archive")} == edge["node"]["viewerCan"]

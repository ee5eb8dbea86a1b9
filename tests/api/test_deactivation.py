"""deactivateStaffMember: the sign-in stops, assignments end, history stays."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from db.models import AssignmentRole, Membership, RecordAssignment, RecordStatus
from tests.cast import ADMINS, OTHERS, cast
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import (
    Api,
    assert_denied,
    assert_error,
    assert_granted,
    audit_actions,
    database_state,
    gid,
)

DEACTIVATE = """mutation($input: DeactivateStaffMemberInput!) {
  deactivateStaffMember(input: $input) {
    __typename
    ... on StaffMemberDeactivated { endedAssignments user { id name deactivatedAt } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""
ASSIGN = """mutation($input: AssignRecordsInput!) {
  assignRecords(input: $input) { __typename ... on Error { code message } }
}"""
STAFF = """query($filter: StaffFilter) {
  staff(first: 100, filter: $filter) { totalCount edges { node { id deactivatedAt } } }
}"""
HISTORY = """query($id: ID!) {
  node(id: $id) { ... on ApprenticeRecord {
    status
    assignments { id }
    history: assignments(includeEnded: true) { user { id name } endedAt endedBy { id } }
  } }
}"""
ACCESS = """query($id: ID!) { learner(id: $id) { access { user { id } } } }"""
VIEWER = "{ viewer { roles } }"


@pytest.mark.parametrize("role", ADMINS)
async def test_admins_deactivate_and_the_sign_in_stops_at_the_next_request(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    # given an assessor of two organisations, assigned to a live and an archived record here,
    # with an assignment that ended before
    c = await cast(world)
    assessor = c.people["ASSESSOR"]
    await world.staff(c.other, "ASSESSOR", user=assessor)
    archived = await world.record(c.learner, "Old programme", status=RecordStatus.ARCHIVED)
    await world.assign(archived, assessor)
    await world.assign(await world.record(c.learner), assessor, ended=True)
    as_assessor = c.as_(api, "ASSESSOR")
    assert (await as_assessor(VIEWER)).ok()
    admin = c.as_(api, role)

    # when an admin deactivates them
    payload = assert_granted(
        await admin(DEACTIVATE, input={"userId": gid("User", assessor.id)}),
        "StaffMemberDeactivated",
    )

    # then both active assignments ended, by the admin, and the history keeps them
    assert payload["endedAssignments"] == 2
    assert payload["user"]["deactivatedAt"] is not None
    for record in (c.record, archived):
        shown = (await admin(HISTORY, id=gid("ApprenticeRecord", record.id))).ok()["node"]
        mine = [a for a in shown["history"] if a["user"]["id"] == gid("User", assessor.id)]
        assert mine and all(a["endedBy"] == {"id": gid("User", c.people[role].id)} for a in mine)
        assert gid("User", assessor.id) not in {a["id"] for a in shown["assignments"]}
    # and their token for this organisation is refused; the other organisation's still works
    refused = await as_assessor(VIEWER)
    assert_denied(refused, "UNAUTHENTICATED")
    assert refused.errors[0]["message"] == "This user has been deactivated in this organisation."
    assert (await api.as_(assessor, c.other)(VIEWER)).ok() == {"viewer": {"roles": ["ASSESSOR"]}}
    # and the staff list shows active staff unless asked for the deactivated
    active = (await admin(STAFF)).ok()["staff"]["edges"]
    assert gid("User", assessor.id) not in {e["node"]["id"] for e in active}
    gone = (await admin(STAFF, filter={"deactivated": True})).ok()["staff"]
    assert [e["node"]["id"] for e in gone["edges"]] == [gid("User", assessor.id)]
    assert gone["totalCount"] == 1
    # and nobody sees the learner through them any more
    access = (await admin(ACCESS, id=gid("Learner", c.learner.id))).ok()["learner"]["access"]
    assert gid("User", assessor.id) not in {a["user"]["id"] for a in access}
    # and assigning them again is refused
    refused_assignment = assert_error(
        await admin(
            ASSIGN,
            input={
                "assigneeId": gid("User", assessor.id),
                "recordIds": [gid("ApprenticeRecord", c.record.id)],
            },
        ),
        "IneligibleAssigneeError",
        "INELIGIBLE_ASSIGNEE",
    )
    assert "deactivated" in refused_assignment["message"]
    assert (await audit_actions(backend.engine))[-1] == (
        "STAFF_MEMBER_DEACTIVATED",
        "User",
        c.people[role].id,
    )


@pytest.mark.parametrize("who", OTHERS)
async def test_nobody_else_deactivates(api: Api, world: World, backend: Backend, who: str) -> None:
    c = await cast(world)
    before = await database_state(backend.engine)
    target = c.people["TRAINING_COORDINATOR"] if who == "ASSESSOR" else c.people["ASSESSOR"]
    result = await c.as_(api, who)(DEACTIVATE, input={"userId": gid("User", target.id)})
    if who == "OTHER_ADMIN":
        assert_error(result, "NotFoundError", "NOT_FOUND")
    else:
        assert_denied(result)
        assert result.errors[0]["message"] == "Your roles do not allow deactivating staff members."
    assert await database_state(backend.engine) == before


async def test_super_admins_and_the_last_one(api: Api, world: World, backend: Backend) -> None:
    c = await cast(world)
    super_admin = c.people["SUPER_ADMIN"]
    before = await database_state(backend.engine)
    by_admin = await c.as_(api, "ADMIN")(DEACTIVATE, input={"userId": gid("User", super_admin.id)})
    assert_denied(by_admin)
    assert by_admin.errors[0]["message"] == "Only a super admin can deactivate a super admin."
    last = assert_error(
        await c.as_(api, "SUPER_ADMIN")(DEACTIVATE, input={"userId": gid("User", super_admin.id)}),
        "ValidationError",
        "INVALID",
    )
    assert last["field"] == "userId"
    assert await database_state(backend.engine) == before
    # a person who is already deactivated stays so, unchanged
    assessor = c.people["ASSESSOR"]
    first = assert_granted(
        await c.as_(api, "ADMIN")(DEACTIVATE, input={"userId": gid("User", assessor.id)}),
        "StaffMemberDeactivated",
    )
    again = assert_granted(
        await c.as_(api, "ADMIN")(DEACTIVATE, input={"userId": gid("User", assessor.id)}),
        "StaffMemberDeactivated",
    )
    assert again["endedAssignments"] == 0
    assert again["user"]["deactivatedAt"] == first["user"]["deactivatedAt"]


async def test_two_super_admins_deactivating_each_other_at_once_leave_one(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    first, second = await world.staff(org, "SUPER_ADMIN"), await world.staff(org, "SUPER_ADMIN")
    results = await asyncio.gather(
        api.as_(first, org)(DEACTIVATE, input={"userId": gid("User", second.id)}),
        api.as_(second, org)(DEACTIVATE, input={"userId": gid("User", first.id)}),
    )
    answers = []
    for result in results:
        if result.errors:  # the loser may already have been deactivated when it signed in
            assert_denied(result, "UNAUTHENTICATED")
            answers.append("UNAUTHENTICATED")
        else:
            answers.append(result.ok()["deactivateStaffMember"]["__typename"])
    assert answers.count("StaffMemberDeactivated") == 1, answers
    async with world.maker() as session:
        active = (
            (
                await session.execute(
                    select(Membership.user_id).where(Membership.deactivated_at.is_(None))
                )
            )
            .scalars()
            .all()
        )
    assert len(active) == 1


async def test_deactivated_people_stay_in_history(api: Api, world: World) -> None:
    # given a coordinator who assigned records and then was deactivated by direct write
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    coordinator = await world.staff(org, "TRAINING_COORDINATOR", name="Cora Ward")
    record = await world.record(await world.learner(org))
    await world.assign(record, coordinator, AssignmentRole.TRAINING_COORDINATOR)
    call = api.as_(admin, org)
    assert_granted(
        await call(DEACTIVATE, input={"userId": gid("User", coordinator.id)}),
        "StaffMemberDeactivated",
    )
    # then their user is still found by id and on the record's history, with its status
    node = (
        await call(
            "query($id: ID!) { node(id: $id) { ... on User { name deactivatedAt roles } } }",
            id=gid("User", coordinator.id),
        )
    ).ok()["node"]
    assert node["name"] == "Cora Ward" and node["deactivatedAt"] is not None
    assert node["roles"] == ["TRAINING_COORDINATOR"]
    history = (await call(HISTORY, id=gid("ApprenticeRecord", record.id))).ok()["node"]["history"]
    assert [a["user"]["name"] for a in history] == ["Cora Ward"]
    async with world.maker() as session:
        ended = (await session.execute(select(RecordAssignment.ended_by_id))).scalars().all()
    assert ended == [admin.id]


async def test_a_token_without_org_is_for_the_one_active_membership(api: Api, world: World) -> None:
    first, second = await world.organisation(), await world.organisation()
    person = await world.staff(first, "ADMIN")
    await world.staff(second, "ASSESSOR", user=person)
    assert_denied(await api.as_(person)(VIEWER), "UNAUTHENTICATED")  # two: say which
    await world.deactivate(person, first)
    assert (await api.as_(person)(VIEWER)).ok() == {"viewer": {"roles": ["ASSESSOR"]}}
    await world.deactivate(person, second)
    refused = await api.as_(person)(VIEWER)
    assert_denied(refused, "UNAUTHENTICATED")
    assert refused.errors[0]["message"] == "This user has been deactivated."

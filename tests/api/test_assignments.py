"""Record assignment: bulk assign and remove, coordinators, the records view."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import func, select

from db.models import ApprenticeRecord, AssignmentRole, Organisation, RecordAssignment, User
from server.services import Services
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import (
    Api,
    assert_denied,
    assert_error,
    assert_granted,
    counting,
    gid,
    row_counts,
)

ASSIGN = """mutation($input: AssignRecordsInput!) {
  assignRecords(input: $input) {
    __typename
    ... on RecordsAssigned {
      unchanged assignments { id role record { id } user { id } assignedBy { id } }
    }
    ... on BulkRejectedError { code message items { id code message } }
    ... on Error { code message }
  }
}"""

UNASSIGN = """mutation($input: UnassignRecordsInput!) {
  unassignRecords(input: $input) {
    __typename
    ... on RecordsUnassigned { ended { id endedAt role record { id } user { id } } }
    ... on BulkRejectedError { code items { id code } }
    ... on Error { code message }
  }
}"""

COORDINATE = """mutation($input: AssignTrainingCoordinatorInput!) {
  assignTrainingCoordinator(input: $input) {
    __typename
    ... on TrainingCoordinatorAssigned {
      assignment { id user { id } } replaced { id endedAt user { id } }
    }
    ... on Error { code message }
  }
}"""

SEES = "{ learners { totalCount } apprenticeRecords { totalCount } }"


async def _records(world: World, org: Organisation, n: int) -> list[ApprenticeRecord]:
    return [await world.record(await world.learner(org)) for _ in range(n)]


def rid(record: ApprenticeRecord) -> str:
    return gid("ApprenticeRecord", record.id)


@pytest.mark.parametrize("role", ["SUPER_ADMIN", "ADMIN", "SENIOR_ASSESSOR"])
async def test_assign_then_the_assessor_sees_them_on_the_next_request(
    api: Api, world: World, role: str
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, role)
    assessor = await world.staff(org, "ASSESSOR")
    records = await _records(world, org, 4)
    assert (await api.as_(assessor, org)(SEES)).ok() == {
        "learners": {"totalCount": 0},
        "apprenticeRecords": {"totalCount": 0},
    }
    payload = assert_granted(
        await api.as_(admin, org)(
            ASSIGN,
            input={
                "assigneeId": gid("User", assessor.id),
                "recordIds": [rid(r) for r in records[:3]],
            },
        ),
        "RecordsAssigned",
    )
    assert payload["unchanged"] == 0
    assert sorted(a["record"]["id"] for a in payload["assignments"]) == sorted(
        rid(r) for r in records[:3]
    )
    assert {a["assignedBy"]["id"] for a in payload["assignments"]} == {gid("User", admin.id)}
    assert (await api.as_(assessor, org)(SEES)).ok() == {
        "learners": {"totalCount": 3},
        "apprenticeRecords": {"totalCount": 3},
    }


@pytest.mark.parametrize("role", ["MANAGER", "ASSESSOR", "TRAINING_COORDINATOR", "LEARNER"])
async def test_other_roles_may_not_assign(api: Api, world: World, role: str) -> None:
    org = await world.organisation()
    person = await world.staff(org, role)
    assessor = await world.staff(org, "ASSESSOR")
    (record,) = await _records(world, org, 1)
    given = {"assigneeId": gid("User", assessor.id), "recordIds": [rid(record)]}
    assert_denied(await api.as_(person, org)(ASSIGN, input=given))
    assert_denied(await api.as_(person, org)(UNASSIGN, input={"recordIds": [rid(record)]}))
    assert_denied(
        await api.as_(person, org)(
            COORDINATE, input={"recordId": rid(record), "coordinatorId": gid("User", assessor.id)}
        )
    )


async def test_support_and_external_assessors_may_not_assign(api: Api, world: World) -> None:
    org = await world.organisation()
    assessor = await world.staff(org, "ASSESSOR")
    (record,) = await _records(world, org, 1)
    external = await world.external_assessor()
    given = {"assigneeId": gid("User", assessor.id), "recordIds": [rid(record)]}
    for caller in (api.as_(await world.support()), api.as_(external)):
        assert_denied(await caller(ASSIGN, input=given))


async def test_already_assigned_pairs_are_unchanged_and_several_assessors_may_share(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    first, second = await world.staff(org, "ASSESSOR"), await world.staff(org, "SENIOR_ASSESSOR")
    records = await _records(world, org, 3)
    call = api.as_(admin, org)
    await call(ASSIGN, input={"assigneeId": gid("User", first.id), "recordIds": [rid(records[0])]})
    again = assert_granted(
        await call(
            ASSIGN,
            input={
                "assigneeId": gid("User", first.id),
                "recordIds": [rid(r) for r in records] + [rid(records[1])],
            },
        ),
        "RecordsAssigned",
    )
    assert again["unchanged"] == 1 and len(again["assignments"]) == 2
    shared = assert_granted(
        await call(
            ASSIGN, input={"assigneeId": gid("User", second.id), "recordIds": [rid(records[0])]}
        ),
        "RecordsAssigned",
    )
    assert len(shared["assignments"]) == 1
    async with backend.engine.connect() as conn:
        active = (
            await conn.execute(
                select(func.count())
                .select_from(RecordAssignment)
                .where(RecordAssignment.ended_at.is_(None))
            )
        ).scalar_one()
    assert active == 4


async def test_bulk_rejection_names_every_offender_and_changes_nothing(
    api: Api, world: World, backend: Backend
) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    good = await _records(world, org, 2)
    (foreign,) = await _records(world, other, 1)
    learner = await world.learner(org)
    before = await row_counts(backend.engine)
    bad = ["%%", gid("Learner", learner.id), rid(foreign), gid("ApprenticeRecord", 10**9)]
    payload = assert_error(
        await api.as_(admin, org)(
            ASSIGN,
            input={
                "assigneeId": gid("User", assessor.id),
                "recordIds": [rid(good[0]), *bad, rid(good[1])],
            },
        ),
        "BulkRejectedError",
        "BULK_REJECTED",
    )
    assert {(i["id"], i["code"]) for i in payload["items"]} == {
        ("%%", "INVALID"),
        (gid("Learner", learner.id), "NOT_FOUND"),
        (rid(foreign), "NOT_FOUND"),
        (gid("ApprenticeRecord", 10**9), "NOT_FOUND"),
    }
    unassign = assert_error(
        await api.as_(admin, org)(UNASSIGN, input={"recordIds": [rid(good[0]), rid(foreign)]}),
        "BulkRejectedError",
        "BULK_REJECTED",
    )
    assert unassign["items"] == [{"id": rid(foreign), "code": "NOT_FOUND"}]
    assert await row_counts(backend.engine) == before


async def test_assignee_must_fit_the_role(api: Api, world: World, backend: Backend) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    manager = await world.staff(org, "MANAGER")
    coordinator = await world.staff(org, "TRAINING_COORDINATOR")
    senior = await world.staff(org, "SENIOR_ASSESSOR")
    elsewhere = await world.staff(other, "ASSESSOR")
    external = await world.external_assessor()
    (record,) = await _records(world, org, 1)
    call = api.as_(admin, org)
    before = await row_counts(backend.engine)

    async def kind(user: User, role: str = "ASSESSOR") -> str:
        result = await call(
            ASSIGN,
            input={"assigneeId": gid("User", user.id), "recordIds": [rid(record)], "role": role},
        )
        return str(result.ok()["assignRecords"]["__typename"])

    assert await kind(manager) == "IneligibleAssigneeError"
    assert await kind(coordinator) == "IneligibleAssigneeError"
    assert await kind(senior, "TRAINING_COORDINATOR") == "IneligibleAssigneeError"
    assert await kind(external) == "IneligibleAssigneeError"
    assert await kind(elsewhere) == "NotFoundError"  # staff of another organisation: invisible
    assert await row_counts(backend.engine) == before
    assert await kind(senior) == "RecordsAssigned"
    assert await kind(coordinator, "TRAINING_COORDINATOR") == "RecordsAssigned"


async def test_input_limits(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    call = api.as_(admin, org)
    empty = await call(ASSIGN, input={"assigneeId": gid("User", assessor.id), "recordIds": []})
    assert_error(empty, "ValidationError", "INVALID")
    too_many = [gid("ApprenticeRecord", n) for n in range(1, 1002)]
    result = await call(
        ASSIGN, input={"assigneeId": gid("User", assessor.id), "recordIds": too_many}
    )
    assert_error(result, "ValidationError", "INVALID")
    (record,) = await _records(world, org, 1)
    assert_error(
        await call(ASSIGN, input={"assigneeId": "bad", "recordIds": [rid(record)]}),
        "ValidationError",
        "INVALID",
    )


async def test_unassign_keeps_history_and_visibility_follows(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    first, second = await world.staff(org, "ASSESSOR"), await world.staff(org, "ASSESSOR")
    coordinator = await world.staff(org, "TRAINING_COORDINATOR")
    records = await _records(world, org, 3)
    for record in records:
        await world.assign(record, first)
        await world.assign(record, coordinator, AssignmentRole.TRAINING_COORDINATOR)
    await world.assign(records[0], second)
    call = api.as_(admin, org)

    only_first = assert_granted(
        await call(
            UNASSIGN, input={"recordIds": [rid(records[0])], "assigneeId": gid("User", first.id)}
        ),
        "RecordsUnassigned",
    )
    assert [a["user"]["id"] for a in only_first["ended"]] == [gid("User", first.id)]
    assert (await api.as_(first, org)(SEES)).ok()["apprenticeRecords"]["totalCount"] == 2
    assert (await api.as_(second, org)(SEES)).ok()["apprenticeRecords"]["totalCount"] == 1

    assessors_only = assert_granted(
        await call(UNASSIGN, input={"recordIds": [rid(r) for r in records], "role": "ASSESSOR"}),
        "RecordsUnassigned",
    )
    assert len(assessors_only["ended"]) == 3  # first on records 1-2, second on record 0
    assert (await api.as_(coordinator, org)(SEES)).ok()["apprenticeRecords"]["totalCount"] == 3

    everyone = assert_granted(
        await call(UNASSIGN, input={"recordIds": [rid(records[0])]}), "RecordsUnassigned"
    )
    assert [a["role"] for a in everyone["ended"]] == ["TRAINING_COORDINATOR"]
    assert all(a["endedAt"] for a in everyone["ended"])
    async with backend.engine.connect() as conn:
        rows = (
            await conn.execute(select(RecordAssignment.ended_at, RecordAssignment.ended_by_id))
        ).all()
    assert len(rows) == 7  # nothing deleted
    assert sum(1 for ended_at, by in rows if ended_at is not None and by == admin.id) == 5


async def test_assign_training_coordinator_replaces_the_current_one(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    old, new = (
        await world.staff(org, "TRAINING_COORDINATOR"),
        await world.staff(org, "TRAINING_COORDINATOR"),
    )
    assessor = await world.staff(org, "ASSESSOR")
    (record,) = await _records(world, org, 1)
    previous = await world.assign(record, old, AssignmentRole.TRAINING_COORDINATOR)
    await world.assign(record, assessor)
    call = api.as_(admin, org)
    payload = assert_granted(
        await call(
            COORDINATE, input={"recordId": rid(record), "coordinatorId": gid("User", new.id)}
        ),
        "TrainingCoordinatorAssigned",
    )
    assert payload["assignment"]["user"]["id"] == gid("User", new.id)
    assert payload["replaced"]["id"] == gid("Assignment", previous.id)
    assert payload["replaced"]["endedAt"] is not None
    same = assert_granted(
        await call(
            COORDINATE, input={"recordId": rid(record), "coordinatorId": gid("User", new.id)}
        ),
        "TrainingCoordinatorAssigned",
    )
    assert same["replaced"] is None and same["assignment"]["id"] == payload["assignment"]["id"]
    view = (
        await call("{ apprenticeRecords { edges { node { assignments { role user { id } } } } } }")
    ).ok()
    roles = {
        (a["role"], a["user"]["id"])
        for a in view["apprenticeRecords"]["edges"][0]["node"]["assignments"]
    }
    assert roles == {
        ("ASSESSOR", gid("User", assessor.id)),
        ("TRAINING_COORDINATOR", gid("User", new.id)),
    }
    before = await row_counts(backend.engine)
    assert_error(
        await call(
            COORDINATE, input={"recordId": rid(record), "coordinatorId": gid("User", assessor.id)}
        ),
        "IneligibleAssigneeError",
        "INELIGIBLE_ASSIGNEE",
    )
    assert_error(
        await call(
            COORDINATE,
            input={
                "recordId": gid("ApprenticeRecord", 10**9),
                "coordinatorId": gid("User", new.id),
            },
        ),
        "NotFoundError",
        "NOT_FOUND",
    )
    assert await row_counts(backend.engine) == before


async def test_concurrent_assign_and_remove_never_duplicate_an_active_pair(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admins = [await world.staff(org, "ADMIN"), await world.staff(org, "SUPER_ADMIN")]
    assessor = await world.staff(org, "ASSESSOR")
    records = await _records(world, org, 20)
    ids = [rid(r) for r in records]
    assign = {"assigneeId": gid("User", assessor.id), "recordIds": ids}
    calls = []
    for n in range(6):
        caller = api.as_(admins[n % 2], org)
        calls.append(caller(ASSIGN, input=assign))
        if n % 3 == 2:
            calls.append(caller(UNASSIGN, input={"recordIds": ids[:10]}))
    results = await asyncio.gather(*calls)
    for result in results:
        assert result.ok()
    async with backend.engine.connect() as conn:
        duplicates = (
            await conn.execute(
                select(RecordAssignment.record_id, func.count())
                .where(RecordAssignment.ended_at.is_(None))
                .group_by(
                    RecordAssignment.record_id, RecordAssignment.user_id, RecordAssignment.role
                )
                .having(func.count() > 1)
            )
        ).all()
    assert duplicates == []


async def test_database_refuses_a_second_active_pair(world: World, backend: Backend) -> None:
    """The partial unique index itself, not only the code path, forbids duplicates."""
    from sqlalchemy.exc import IntegrityError

    org = await world.organisation()
    assessor = await world.staff(org, "ASSESSOR")
    (record,) = await _records(world, org, 1)
    await world.assign(record, assessor)
    with pytest.raises(IntegrityError):
        await world.assign(record, assessor)
    await world.assign(
        record, assessor, AssignmentRole.TRAINING_COORDINATOR
    )  # another role is fine


async def test_statements_do_not_grow_with_the_number_of_records(
    api: Api, world: World, services: Services
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    records = await _records(world, org, 210)
    call = api.as_(admin, org)
    counts = {}
    for size, chunk in ((5, records[:5]), (200, records[5:205])):
        ids = [rid(r) for r in chunk]
        with counting(services.engine) as assigned:
            assert_granted(
                await call(
                    ASSIGN, input={"assigneeId": gid("User", assessor.id), "recordIds": ids}
                ),
                "RecordsAssigned",
            )
        with counting(services.engine) as removed:
            assert_granted(await call(UNASSIGN, input={"recordIds": ids}), "RecordsUnassigned")
        counts[size] = (len(assigned), len(removed))
    assert counts[5] == counts[200], counts


async def test_records_view_matches_a_reference_computation(api: Api, world: World) -> None:
    rng = random.Random(4)
    org = await world.organisation()
    admin = await world.staff(org, "SENIOR_ASSESSOR")
    people = [await world.staff(org, "ASSESSOR") for _ in range(4)]
    coordinators = [await world.staff(org, "TRAINING_COORDINATOR") for _ in range(2)]
    expected: dict[str, set[tuple[str, str]]] = {}
    for _ in range(40):
        record = await world.record(await world.learner(org))
        active: set[tuple[str, str]] = set()
        for person in rng.sample(people, rng.randrange(3)):
            ended = rng.random() < 0.25
            await world.assign(record, person, ended=ended)
            if not ended:
                active.add(("ASSESSOR", gid("User", person.id)))
        if rng.random() < 0.5:
            coordinator = rng.choice(coordinators)
            await world.assign(record, coordinator, AssignmentRole.TRAINING_COORDINATOR)
            active.add(("TRAINING_COORDINATOR", gid("User", coordinator.id)))
        expected[rid(record)] = active
    query = """query($f: RecordFilter) { apprenticeRecords(first: 500, filter: $f) {
      totalCount edges { node { id assignments { role user { id initials } } } } } }"""
    call = api.as_(admin, org)
    data = (await call(query)).ok()["apprenticeRecords"]
    got = {
        e["node"]["id"]: {(a["role"], a["user"]["id"]) for a in e["node"]["assignments"]}
        for e in data["edges"]
    }
    assert got == expected
    unassigned = (await call(query, f={"unassigned": True})).ok()["apprenticeRecords"]
    nobody = {r for r, a in expected.items() if not any(role == "ASSESSOR" for role, _ in a)}
    assert unassigned["totalCount"] == len(nobody)
    assert {e["node"]["id"] for e in unassigned["edges"]} == nobody
    for person in people:
        mine = (await call(query, f={"assigneeId": gid("User", person.id)})).ok()[
            "apprenticeRecords"
        ]
        assert {e["node"]["id"] for e in mine["edges"]} == {
            r for r, a in expected.items() if ("ASSESSOR", gid("User", person.id)) in a
        }
    staff = (
        await call("{ staff(filter: {roles: [ASSESSOR]}) { edges { node { id caseloadCount } } } }")
    ).ok()
    counts = {e["node"]["id"]: e["node"]["caseloadCount"] for e in staff["staff"]["edges"]}
    assert counts == {
        gid("User", p.id): sum(("ASSESSOR", gid("User", p.id)) in a for a in expected.values())
        for p in people
    }


async def test_every_assignment_mutation_audits_the_records_it_touched(
    api: Api, world: World, backend: Backend
) -> None:
    from db.models import AuditEvent

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    coordinator = await world.staff(org, "TRAINING_COORDINATOR")
    records = await _records(world, org, 3)
    ids = [rid(r) for r in records]
    call = api.as_(admin, org)
    await call(ASSIGN, input={"assigneeId": gid("User", assessor.id), "recordIds": ids})
    await call(UNASSIGN, input={"recordIds": ids[:2]})
    await call(COORDINATE, input={"recordId": ids[2], "coordinatorId": gid("User", coordinator.id)})
    async with backend.engine.connect() as conn:
        events = (
            await conn.execute(
                select(AuditEvent.action, AuditEvent.actor_id, AuditEvent.details).order_by(
                    AuditEvent.id
                )
            )
        ).all()
    assert [(a, actor) for a, actor, _ in events] == [
        ("RECORDS_ASSIGNED", admin.id),
        ("RECORDS_UNASSIGNED", admin.id),
        ("TRAINING_COORDINATOR_ASSIGNED", admin.id),
    ]
    assert events[0][2]["recordIds"] == [rid(r) for r in records]
    assert len(events[0][2]["assignmentIds"]) == len(records)
    assert events[1][2]["recordIds"] == [rid(r) for r in records[:2]]
    assert len(events[1][2]["endedAssignmentIds"]) == 2


# One training coordinator per record ---------------------------------------------------

ASSIGN_COORDINATORS = """mutation($input: AssignRecordsInput!) {
  assignRecords(input: $input) {
    __typename
    ... on RecordsAssigned {
      unchanged assignments { record { id } user { id } }
      replaced { record { id } user { id } endedAt }
    }
    ... on Error { code message }
  }
}"""
COORDINATORS = """query($id: ID!) {
  node(id: $id) { ... on ApprenticeRecord { assignments { role user { id } } } }
}"""


async def test_bulk_coordinator_assignment_replaces_and_reports_what_it_replaced(
    api: Api, world: World
) -> None:
    # given two records coordinated by one person and one record by nobody
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    old, new = [await world.staff(org, "TRAINING_COORDINATOR") for _ in range(2)]
    records = await _records(world, org, 3)
    for record in records[:2]:
        await world.assign(record, old, AssignmentRole.TRAINING_COORDINATOR)
    call = api.as_(admin, org)

    # when another coordinator is assigned to all three in bulk
    payload = assert_granted(
        await call(
            ASSIGN_COORDINATORS,
            input={
                "assigneeId": gid("User", new.id),
                "recordIds": [rid(r) for r in records],
                "role": "TRAINING_COORDINATOR",
            },
        ),
        "RecordsAssigned",
    )

    # then each record has exactly the new coordinator, and the answer says whom it replaced
    assert sorted(a["record"]["id"] for a in payload["replaced"]) == sorted(
        rid(r) for r in records[:2]
    )
    assert {a["user"]["id"] for a in payload["replaced"]} == {gid("User", old.id)}
    assert all(a["endedAt"] for a in payload["replaced"])
    for record in records:
        shown = (await call(COORDINATORS, id=rid(record))).ok()["node"]["assignments"]
        assert shown == [{"role": "TRAINING_COORDINATOR", "user": {"id": gid("User", new.id)}}]
    # and a single coordinator swap reports the one it replaced
    swapped = assert_granted(
        await call(
            COORDINATE, input={"recordId": rid(records[0]), "coordinatorId": gid("User", old.id)}
        ),
        "TrainingCoordinatorAssigned",
    )
    assert swapped["replaced"]["user"]["id"] == gid("User", new.id)


async def test_database_refuses_a_second_active_coordinator(world: World, backend: Backend) -> None:
    from sqlalchemy.exc import IntegrityError

    org = await world.organisation()
    first, second = [await world.staff(org, "TRAINING_COORDINATOR") for _ in range(2)]
    (record,) = await _records(world, org, 1)
    await world.assign(record, first, AssignmentRole.TRAINING_COORDINATOR)
    with pytest.raises(IntegrityError):
        await world.assign(record, second, AssignmentRole.TRAINING_COORDINATOR)
    await world.assign(record, second, AssignmentRole.TRAINING_COORDINATOR, ended=True)


async def test_concurrent_coordinator_assignments_leave_one_coordinator(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    coordinators = [await world.staff(org, "TRAINING_COORDINATOR") for _ in range(4)]
    records = await _records(world, org, 10)
    ids = [rid(r) for r in records]
    calls = [
        api.as_(admin, org)(
            ASSIGN_COORDINATORS,
            input={
                "assigneeId": gid("User", c.id),
                "recordIds": ids,
                "role": "TRAINING_COORDINATOR",
            },
        )
        for c in coordinators
    ]
    for result in await asyncio.gather(*calls):
        assert_granted(result, "RecordsAssigned")
    async with backend.engine.connect() as conn:
        active = (
            await conn.execute(
                select(RecordAssignment.record_id, func.count())
                .where(
                    RecordAssignment.ended_at.is_(None),
                    RecordAssignment.role == AssignmentRole.TRAINING_COORDINATOR,
                )
                .group_by(RecordAssignment.record_id)
            )
        ).all()
    assert sorted(count for _, count in active) == [1] * 10

"""History (ended assignments and allocations), the assessor's work queue, organisations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from db.models import AssignmentRole, Evidence, EvidenceStatus, RecordStatus
from server.services import Services
from tests.cast import cast
from tests.factories import World
from tests.helpers import Api, Caller, assert_granted, counting, gid

HISTORY = """query($id: ID!) {
  node(id: $id) { ... on ApprenticeRecord {
    assignments { id }
    history: assignments(includeEnded: true) {
      id role endedAt user { id } assignedBy { id } endedBy { id }
    }
  } }
}"""
ALLOCATIONS = """query($id: ID!) {
  learner(id: $id) {
    allocations { id }
    history: allocations(includeEnded: true) { id endedAt endedBy { id } assessor { id } }
  }
}"""
UNASSIGN = """mutation($input: UnassignRecordsInput!) {
  unassignRecords(input: $input) { __typename }
}"""
COORDINATE = """mutation($input: AssignTrainingCoordinatorInput!) {
  assignTrainingCoordinator(input: $input) { __typename }
}"""
DEALLOCATE = """mutation($input: DeallocateAssessorInput!) {
  deallocateAssessor(input: $input) { __typename }
}"""


async def test_assignment_history_newest_first_with_who_ended_each(api: Api, world: World) -> None:
    # given a record whose assessor was removed and whose coordinator was replaced
    c = await cast(world)
    admin = c.as_(api, "ADMIN")
    record = gid("ApprenticeRecord", c.record.id)
    successor = await world.staff(c.org, "TRAINING_COORDINATOR")
    await admin(UNASSIGN, input={"recordIds": [record], "role": "ASSESSOR"})
    await admin(COORDINATE, input={"recordId": record, "coordinatorId": gid("User", successor.id)})

    # when the admin, and the new coordinator, read its history
    for who in ("ADMIN", None):
        caller = admin if who else api.as_(successor, c.org)
        shown = (await caller(HISTORY, id=record)).ok()["node"]

        # then the active list holds the new coordinator only; the history every assignment,
        # newest first, with who ended the others
        history = shown["history"]
        assert [a["id"] for a in shown["assignments"]] == [history[0]["id"]]
        assert [(a["role"], a["user"]["id"]) for a in history] == [
            ("TRAINING_COORDINATOR", gid("User", successor.id)),
            ("TRAINING_COORDINATOR", gid("User", c.people["TRAINING_COORDINATOR"].id)),
            ("ASSESSOR", gid("User", c.people["ASSESSOR"].id)),
        ]
        assert history[0]["endedAt"] is None and history[0]["endedBy"] is None
        admin_id = {"id": gid("User", c.people["ADMIN"].id)}
        assert [a["endedBy"] for a in history[1:]] == [admin_id, admin_id]
        assert all(a["endedAt"] for a in history[1:])

    # and someone who cannot see the record cannot see its history either
    hidden = await c.as_(api, "MANAGER_OUTSIDE_TEAM")(HISTORY, id=record)
    assert hidden.ok() == {"node": None}


async def test_allocation_history_through_the_same_scopes(api: Api, world: World) -> None:
    # given a learner with a current, an ended and an expired allocation
    c = await cast(world)
    ended_one = await world.external_assessor()
    expired_one = await world.external_assessor()
    await world.allocate(c.learner, ended_one)
    await world.allocate(c.learner, expired_one, expires_at=datetime.now(UTC) - timedelta(days=1))
    admin = c.as_(api, "ADMIN")
    await admin(
        DEALLOCATE,
        input={"learnerId": gid("Learner", c.learner.id), "assessorId": gid("User", ended_one.id)},
    )
    learner = gid("Learner", c.learner.id)

    # then the admin sees the current one, or all three newest first with who ended one
    shown = (await admin(ALLOCATIONS, id=learner)).ok()["learner"]
    assert len(shown["allocations"]) == 1
    assert [a["assessor"]["id"] for a in shown["history"]] == [
        gid("User", expired_one.id),
        gid("User", ended_one.id),
        gid("User", c.people["EXTERNAL_ASSESSOR"].id),
    ]
    assert shown["history"][1]["endedBy"] == {"id": gid("User", c.people["ADMIN"].id)}
    assert shown["history"][0]["endedBy"] is None  # expired, not ended
    # and the external assessor sees only their own current allocation, history or not
    own = (await c.as_(api, "EXTERNAL_ASSESSOR")(ALLOCATIONS, id=learner)).ok()["learner"]
    assert own["allocations"] == [{"id": own["history"][0]["id"]}]
    assert len(own["history"]) == 1


# The assessor's work queue ---------------------------------------------------------------

ASSIGNED_ONLY = ("ASSESSOR", "TRAINING_COORDINATOR")

QUEUE = """query($first: Int, $after: String, $filter: EvidenceFilter) {
  evidence(first: $first, after: $after, filter: $filter) {
    totalCount
    edges { cursor node { id status record { id } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def _queue(caller: Caller, first: int = 500, **filter: object) -> list[str]:
    """Every id of the caller's queue, paged through `first` at a time."""
    ids: list[str] = []
    after = None
    while True:
        page = (await caller(QUEUE, first=first, after=after, filter=filter)).ok()["evidence"]
        ids += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            assert page["totalCount"] == len(ids)
            return ids
        after = page["pageInfo"]["endCursor"]


async def test_the_work_queue_is_oldest_first_as_far_as_each_caller_sees(
    api: Api, world: World
) -> None:
    # given evidence on the cast's learner, another learner of the organisation, an archived
    # record and another organisation, submitted in an order that is not the id order
    c = await cast(world)
    other_learner = await world.learner(c.org, location=c.there)
    other_record = await world.record(other_learner)
    archived = await world.record(c.learner, status=RecordStatus.ARCHIVED)
    elsewhere = await world.record(await world.learner(c.other))
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    rows = []
    for n, (record, status) in enumerate(
        [
            (c.record, EvidenceStatus.SUBMITTED),
            (other_record, EvidenceStatus.SUBMITTED),
            (c.record, EvidenceStatus.SIGNED_OFF),
            (archived, EvidenceStatus.SUBMITTED),
            (elsewhere, EvidenceStatus.SUBMITTED),
            (c.record, EvidenceStatus.SUBMITTED),
            (other_record, EvidenceStatus.REFERRED),
        ]
    ):
        row = await world.evidence(record, title=f"Piece {n}")
        # later ids get earlier times for half of them: the order is by submission time
        at = start + timedelta(hours=(7 - n) if n % 2 else n, microseconds=n)
        async with world.maker() as session, session.begin():
            await session.execute(
                update(Evidence).where(Evidence.id == row.id).values(submitted_at=at, status=status)
            )
        rows.append((at, row.id, record.id, status))
    rows.sort()

    def expected(records: set[int], status: EvidenceStatus | None = None) -> list[str]:
        return [
            gid("Evidence", pk)
            for _, pk, record_id, s in rows
            if record_id in records and record_id != archived.id and status in (None, s)
        ]

    mine = {c.record.id}
    organisation = {c.record.id, other_record.id}
    expectations = {
        "SUPER_ADMIN": organisation,
        "ADMIN": organisation,
        "SENIOR_ASSESSOR": organisation,
        "MANAGER_IN_TEAM": mine,
        "MANAGER_OUTSIDE_TEAM": {other_record.id},
        "ASSESSOR": mine,
        "TRAINING_COORDINATOR": mine,
        "LEARNER": mine,
        "EXTERNAL_ASSESSOR": mine,
        "OTHER_ADMIN": {elsewhere.id},
        "SUPPORT": set(),
    }
    every = [gid("Evidence", pk) for _, pk, _, _ in rows]
    for who, records in expectations.items():
        caller = c.as_(api, who)
        # then each sees exactly their evidence on live records, oldest first, in any page size
        assert await _queue(caller) == expected(records), who
        # and by id exactly the evidence of the records they see, archived ones included (the
        # archived record is the cast learner's, unassigned)
        sees_archived = c.record.id in records and who not in ASSIGNED_ONLY
        seen = records | ({archived.id} if sees_archived else set())
        by_id = [
            pk
            for pk in every
            if (await caller("query($id: ID!) { node(id: $id) { id } }", id=pk)).ok()["node"]
        ]
        assert by_id == [gid("Evidence", pk) for _, pk, record_id, _ in rows if record_id in seen]
        assert await _queue(caller, first=2) == expected(records), who
        assert await _queue(caller, status="SUBMITTED") == expected(
            records, EvidenceStatus.SUBMITTED
        ), who
    admin = c.as_(api, "ADMIN")
    assert await _queue(admin, learnerId=gid("Learner", other_learner.id)) == expected(
        {other_record.id}
    )
    assert await _queue(admin, recordId=gid("ApprenticeRecord", c.record.id)) == expected(mine)
    # a learner or record the caller cannot see filters like one that does not exist
    assessor = c.as_(api, "ASSESSOR")
    for filter in (
        {"learnerId": gid("Learner", other_learner.id)},
        {"recordId": gid("ApprenticeRecord", other_record.id)},
        {"learnerId": gid("Learner", 10**9)},
    ):
        assert (await assessor(QUEUE, filter=filter)).ok()["evidence"] == {
            "totalCount": 0,
            "edges": [],
            "pageInfo": {"hasNextPage": False, "endCursor": None},
        }


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"after": "WyJub3QgYSBkYXRlIiwgMV0"}, "after"),  # ["not a date", 1]
        ({"after": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwgMV0"}, "after"),  # a naive time
        ({"after": "WzEsIDJd"}, "after"),  # [1, 2]
        ({"first": 501}, "first"),
        ({"filter": {"learnerId": "%%"}}, "learnerId"),
    ],
)
async def test_bad_queue_arguments(
    api: Api, world: World, arguments: dict[str, object], field: str
) -> None:
    c = await cast(world)
    result = await c.as_(api, "ADMIN")(QUEUE, **arguments)
    assert result.data is None
    assert result.errors[0]["extensions"] == {"code": "INVALID", "field": field}


async def test_queue_statements_do_not_grow_with_the_page(
    api: Api, world: World, services: Services
) -> None:
    org = await world.organisation()
    assessor = await world.staff(org, "ASSESSOR")
    for _ in range(30):
        record = await world.record(await world.learner(org))
        await world.assign(record, assessor)
        await world.evidence(record)
    call = api.as_(assessor, org)
    query = """query($first: Int!) { evidence(first: $first, filter: {status: SUBMITTED}) {
      totalCount edges { node { title record { programme learner { name organisation { name } } }
      } } } }"""
    counts = {}
    (await call(query, first=1)).ok()  # the caller seen once: sign-in joins the read
    for size in (3, 30):
        with counting(services.engine) as statements:
            assert len((await call(query, first=size)).ok()["evidence"]["edges"]) == size
        counts[size] = len(statements)
    assert counts[3] == counts[30], counts
    print(f"statements for a 30-item work queue page with records and learners: {counts[30]}")


# Organisations, and a learner's organisation ---------------------------------------------

ORGANISATIONS = """query($first: Int, $after: String) {
  organisations(first: $first, after: $after) {
    totalCount edges { node { id name } } pageInfo { hasNextPage endCursor }
  }
}"""


async def test_organisations_support_all_others_their_own(api: Api, world: World) -> None:
    c = await cast(world)
    third = await world.organisation(name="Aardvark Care")
    everyone = sorted([(o.name, o.id) for o in (c.org, c.other, third)], key=lambda pair: pair)
    support = c.as_(api, "SUPPORT")
    seen, after = [], None
    while True:
        page = (await support(ORGANISATIONS, first=2, after=after)).ok()["organisations"]
        assert page["totalCount"] == 3
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [gid("Organisation", pk) for _, pk in everyone]
    own = {"totalCount": 1, "ids": [gid("Organisation", c.org.id)]}
    for who in ("ADMIN", "MANAGER_OUTSIDE_TEAM", "ASSESSOR", "LEARNER"):
        page = (await c.as_(api, who)(ORGANISATIONS)).ok()["organisations"]
        assert {
            "totalCount": page["totalCount"],
            "ids": [e["node"]["id"] for e in page["edges"]],
        } == own
    nothing = (await c.as_(api, "EXTERNAL_ASSESSOR")(ORGANISATIONS)).ok()["organisations"]
    assert nothing["totalCount"] == 0 and nothing["edges"] == []


async def test_an_external_assessor_tells_their_learners_organisations_apart(
    api: Api, world: World
) -> None:
    c = await cast(world)
    elsewhere = await world.learner(c.other, name="Other Learner")
    await world.allocate(elsewhere, c.people["EXTERNAL_ASSESSOR"])
    query = "{ learners { edges { node { name organisation { id name } } } } }"
    edges = (await c.as_(api, "EXTERNAL_ASSESSOR")(query)).ok()["learners"]["edges"]
    assert {(e["node"]["name"], e["node"]["organisation"]["id"]) for e in edges} == {
        ("Lee Learner", gid("Organisation", c.org.id)),
        ("Other Learner", gid("Organisation", c.other.id)),
    }
    # while looking organisations up directly still goes through their own scope
    by_id = await c.as_(api, "EXTERNAL_ASSESSOR")(
        "query($id: ID!) { node(id: $id) { id } }", id=gid("Organisation", c.org.id)
    )
    assert by_id.ok() == {"node": None}


async def test_coordinator_history_after_a_bulk_replacement(api: Api, world: World) -> None:
    """Bulk coordinator assignment ends the previous coordinator with who replaced them."""
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    old, new = [await world.staff(org, "TRAINING_COORDINATOR") for _ in range(2)]
    record = await world.record(await world.learner(org))
    await world.assign(record, old, AssignmentRole.TRAINING_COORDINATOR)
    call = api.as_(admin, org)
    assert_granted(
        await call(
            "mutation($input: AssignRecordsInput!) { assignRecords(input: $input) { __typename } }",
            input={
                "assigneeId": gid("User", new.id),
                "recordIds": [gid("ApprenticeRecord", record.id)],
                "role": "TRAINING_COORDINATOR",
            },
        ),
        "RecordsAssigned",
    )
    history = (await call(HISTORY, id=gid("ApprenticeRecord", record.id))).ok()["node"]["history"]
    assert [(a["user"]["id"], a["endedBy"]) for a in history] == [
        (gid("User", new.id), None),
        (gid("User", old.id), {"id": gid("User", admin.id)}),
    ]

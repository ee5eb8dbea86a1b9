"""External assessor allocation: who may allocate, to whom, and what it grants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

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

ALLOCATE = """mutation($input: AllocateAssessorInput!) {
  allocateAssessor(input: $input) {
    __typename
    ... on AssessorAllocated { allocation { id expiresAt endedAt learner { id } assessor { id }
                                            allocatedBy { id } } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""

DEALLOCATE = """mutation($input: DeallocateAssessorInput!) {
  deallocateAssessor(input: $input) {
    __typename
    ... on AssessorDeallocated { allocation { id endedAt } }
    ... on Error { code message }
  }
}"""

SEES = "{ learners { totalCount edges { node { id records { id } } } } }"


def ids(learner: Any, assessor: Any, **extra: object) -> dict[str, object]:
    return {
        "learnerId": gid("Learner", learner.id),
        "assessorId": gid("User", assessor.id),
        **extra,
    }


def seen(result: object) -> set[str]:
    return {e["node"]["id"] for e in result.ok()["learners"]["edges"]}  # type: ignore[attr-defined]


@pytest.mark.parametrize("role", ["SUPER_ADMIN", "ADMIN"])
async def test_admins_allocate_and_the_assessor_then_sees_the_learner(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, role)
    learner = await world.learner(org)
    record = await world.record(learner)
    await world.learner(org)  # someone the assessor must not see
    external = await world.external_assessor()
    assert seen(await api.as_(external)(SEES)) == set()

    payload = assert_granted(
        await api.as_(admin, org)(ALLOCATE, input=ids(learner, external)), "AssessorAllocated"
    )
    assert payload["allocation"]["allocatedBy"] == {"id": gid("User", admin.id)}
    data = (await api.as_(external)(SEES)).ok()["learners"]
    assert data["totalCount"] == 1
    assert data["edges"][0]["node"] == {
        "id": gid("Learner", learner.id),
        "records": [{"id": gid("ApprenticeRecord", record.id)}],
    }
    assert (await audit_actions(backend.engine))[-1] == (
        "ASSESSOR_ALLOCATED",
        "Allocation",
        admin.id,
    )


async def test_manager_allocates_only_within_their_team(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    leeds, york = await world.location(org), await world.location(org)
    manager = await world.staff(org, "MANAGER", location=leeds)
    in_team = await world.learner(org, location=leeds)
    outside = await world.learner(org, location=york)
    external = await world.external_assessor()
    assert_granted(
        await api.as_(manager, org)(ALLOCATE, input=ids(in_team, external)),
        "AssessorAllocated",
    )
    before = await row_counts(backend.engine)
    # A learner outside the team is invisible to the manager: not found, like a missing one.
    assert_error(
        await api.as_(manager, org)(ALLOCATE, input=ids(outside, external)),
        "NotFoundError",
        "NOT_FOUND",
    )
    assert await row_counts(backend.engine) == before


async def test_senior_assessor_sees_the_learner_but_may_not_allocate(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    senior = await world.staff(org, "SENIOR_ASSESSOR")
    learner = await world.learner(org)
    external = await world.external_assessor()
    assert_denied(await api.as_(senior, org)(ALLOCATE, input=ids(learner, external)))


@pytest.mark.parametrize("role", ["ASSESSOR", "TRAINING_COORDINATOR", "LEARNER"])
async def test_other_roles_may_not_allocate(api: Api, world: World, role: str) -> None:
    org = await world.organisation()
    person = await world.staff(org, role)
    learner = await world.learner(org)
    external = await world.external_assessor()
    assert_denied(await api.as_(person, org)(ALLOCATE, input=ids(learner, external)))


async def test_support_and_external_assessors_may_not_allocate(api: Api, world: World) -> None:
    org = await world.organisation()
    learner = await world.learner(org)
    external, other = await world.external_assessor(), await world.external_assessor()
    for caller in (api.as_(await world.support()), api.as_(other)):
        assert_denied(await caller(ALLOCATE, input=ids(learner, external)))


async def test_internal_staff_cannot_be_allocated(api: Api, world: World, backend: Backend) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    colleague = await world.staff(org, "MANAGER")
    learner = await world.learner(org)
    before = await row_counts(backend.engine)
    payload = assert_error(
        await api.as_(admin, org)(ALLOCATE, input=ids(learner, colleague)),
        "NotExternalAssessorError",
        "NOT_EXTERNAL_ASSESSOR",
    )
    assert payload["message"]
    assert await row_counts(backend.engine) == before


async def test_allocation_input_errors(api: Api, world: World, backend: Backend) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    foreign = await world.learner(other)
    stranger = await world.staff(other, "ADMIN")
    external = await world.external_assessor()
    await world.allocate(learner, external)
    unallocated = await world.external_assessor()
    call = api.as_(admin, org)
    before = await row_counts(backend.engine)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    cases = [
        ({**ids(learner, external), "expiresAt": later}, "AlreadyExistsError"),  # another expiry
        ({**ids(learner, external), "learnerId": "nope"}, "ValidationError"),
        (
            {**ids(learner, external), "assessorId": gid("Learner", learner.id)},
            "NotFoundError",
        ),
        (ids(foreign, external), "NotFoundError"),
        (ids(learner, stranger), "NotFoundError"),  # staff of another organisation: invisible
        (
            {**ids(learner, unallocated), "expiresAt": past},
            "ValidationError",
        ),
    ]
    for given, typename in cases:
        payload = (await call(ALLOCATE, input=given)).ok()["allocateAssessor"]
        assert payload["__typename"] == typename, (given, payload)
    assert await row_counts(backend.engine) == before


async def test_deallocation_takes_effect_on_the_next_request_and_keeps_history(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    external = await world.external_assessor()
    await world.allocate(learner, external)
    assert seen(await api.as_(external)(SEES)) == {gid("Learner", learner.id)}

    payload = assert_granted(
        await api.as_(admin, org)(DEALLOCATE, input=ids(learner, external)),
        "AssessorDeallocated",
    )
    assert payload["allocation"]["endedAt"] is not None
    assert seen(await api.as_(external)(SEES)) == set()
    assert (await row_counts(backend.engine))["allocations"] == 1  # kept, ended
    again = assert_granted(
        await api.as_(admin, org)(DEALLOCATE, input=ids(learner, external)),
        "AssessorDeallocated",
    )
    assert again["allocation"] == payload["allocation"]  # ended already: unchanged
    assert [a for a, *_ in await audit_actions(backend.engine)].count("ASSESSOR_DEALLOCATED") == 1
    # and it can be allocated again
    assert_granted(
        await api.as_(admin, org)(ALLOCATE, input=ids(learner, external)), "AssessorAllocated"
    )


async def test_expiry_needs_no_job(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    current, lapsed = await world.learner(org), await world.learner(org)
    external = await world.external_assessor()
    await world.allocate(current, external, expires_at=datetime.now(UTC) + timedelta(days=1))
    await world.allocate(lapsed, external, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert seen(await api.as_(external)(SEES)) == {gid("Learner", current.id)}
    lapsed_id = gid("Learner", lapsed.id)
    probe = await api.as_(external)(
        "query($id: ID!) { learner(id: $id) { id } node(id: $id) { id } }", id=lapsed_id
    )
    assert probe.data == {"learner": None, "node": None}
    # An expired allocation can be renewed.
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    payload = assert_granted(
        await api.as_(admin, org)(ALLOCATE, input=ids(lapsed, external, expiresAt=future)),
        "AssessorAllocated",
    )
    assert payload["allocation"]["expiresAt"] is not None
    assert seen(await api.as_(external)(SEES)) == {gid("Learner", current.id), lapsed_id}


async def test_allocation_that_expires_while_the_token_lives(
    api: Api, world: World, backend: Backend
) -> None:
    """Expiry is judged per request against the clock, not when the token was issued."""
    from sqlalchemy import update

    from db.models import Allocation

    org = await world.organisation()
    learner = await world.learner(org)
    external = await world.external_assessor()
    allocation = await world.allocate(
        learner, external, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    caller = api.as_(external)
    assert seen(await caller(SEES)) == {gid("Learner", learner.id)}
    async with backend.engine.begin() as conn:
        await conn.execute(
            update(Allocation)
            .where(Allocation.id == allocation.id)
            .values(expires_at=datetime.now(UTC) - timedelta(milliseconds=1))
        )
    assert seen(await caller(SEES)) == set()


async def test_external_assessor_in_two_organisations(api: Api, world: World) -> None:
    first, second = await world.organisation(), await world.organisation()
    a, b = await world.learner(first), await world.learner(second)
    await world.learner(first)
    await world.staff(first, "ADMIN")
    await world.staff(second, "ASSESSOR")
    external = await world.external_assessor()
    await world.allocate(a, external)
    await world.allocate(b, external)
    caller = api.as_(external)
    assert seen(await caller(SEES)) == {gid("Learner", a.id), gid("Learner", b.id)}
    staff = await caller("{ staff { totalCount edges { node { id } } } }")
    assert staff.ok()["staff"] == {"totalCount": 0, "edges": []}
    directory = await caller("{ externalAssessors { totalCount } }")
    assert directory.ok()["externalAssessors"]["totalCount"] == 0


async def test_learner_assessors_and_allocations(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR", name="Alex Stone")
    learner = await world.learner(org)
    record = await world.record(learner)
    await world.assign(record, assessor)
    external = await world.external_assessor(name="Jo Marsh")
    lapsed = await world.external_assessor(name="Old Hand")
    await world.allocate(learner, external)
    await world.allocate(learner, lapsed, expires_at=datetime.now(UTC) - timedelta(days=1))
    result = await api.as_(admin, org)(
        """query($id: ID!) {
          learner(id: $id) { assessors { name } allocations { assessor { name } } }
        }""",
        id=gid("Learner", learner.id),
    )
    data = result.ok()["learner"]
    assert sorted(a["name"] for a in data["assessors"]) == ["Alex Stone", "Jo Marsh"]
    assert data["allocations"] == [{"assessor": {"name": "Jo Marsh"}}]

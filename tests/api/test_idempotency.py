"""Idempotency-Key: a mutation request is performed at most once per principal and key."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from db.base import utcnow
from db.models import (
    AuditEvent,
    IdempotencyKey,
    Learner,
    Membership,
    MembershipRole,
    RecordAssignment,
    User,
)
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import Api, gid, row_counts

ASSIGN = """mutation($input: AssignRecordsInput!) {
  assignRecords(input: $input) {
    __typename
    ... on RecordsAssigned { unchanged assignments { id } }
    ... on Error { code message }
  }
}"""
CREATE_LEARNER = """mutation($name: String!) {
  createLearner(input: {name: $name}) {
    __typename
    ... on LearnerCreated { learner { id name } }
    ... on Error { code message }
  }
}"""


async def send(
    api: Api, headers: dict[str, str], query: str, key: str | None, **variables: Any
) -> tuple[int, bytes]:
    """POST as given; the status and the body's exact bytes."""
    sent = {**headers, **({"Idempotency-Key": key} if key is not None else {})}
    response = await api.client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=sent
    )
    return response.status_code, response.content


def bearer(api: Api, user: User, org: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token(user, org)}"}


async def count(backend: Backend, model: Any, *where: Any) -> int:
    async with backend.engine.connect() as conn:
        stmt = select(func.count()).select_from(model).where(*where)
        return int((await conn.execute(stmt)).scalar_one())


async def test_a_retry_answers_the_first_response_byte_for_byte_without_a_second_effect(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    record = await world.record(await world.learner(org))
    given = {
        "assigneeId": gid("User", assessor.id),
        "recordIds": [gid("ApprenticeRecord", record.id)],
    }
    headers = bearer(api, admin, org)

    first = await send(api, headers, ASSIGN, "assign-1", input=given)
    before = await row_counts(backend.engine)
    again = await send(api, headers, ASSIGN, "assign-1", input=given)

    assert first == again  # status and every byte
    body = json.loads(first[1])
    assert body["data"]["assignRecords"]["unchanged"] == 0  # the first answer, not "1 unchanged"
    assert await row_counts(backend.engine) == before
    assert await count(backend, RecordAssignment) == 1
    assert await count(backend, AuditEvent) == 1
    # without the key the same request runs again, and says so
    plain = json.loads((await send(api, headers, ASSIGN, None, input=given))[1])
    assert plain["data"]["assignRecords"]["unchanged"] == 1


async def test_an_error_type_answer_is_kept_and_replayed_too(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    colleague = await world.staff(org, "MANAGER")  # not an assessor: ineligible
    record = await world.record(await world.learner(org))
    given = {
        "assigneeId": gid("User", colleague.id),
        "recordIds": [gid("ApprenticeRecord", record.id)],
    }
    headers = bearer(api, admin, org)
    first = await send(api, headers, ASSIGN, "k-error", input=given)
    assert json.loads(first[1])["data"]["assignRecords"]["code"] == "INELIGIBLE_ASSIGNEE"

    # the colleague becomes an assessor; the retry still answers the first answer
    async with backend.engine.begin() as conn:
        membership = (
            await conn.execute(select(Membership.id).where(Membership.user_id == colleague.id))
        ).scalar_one()
        await conn.execute(insert(MembershipRole).values(membership_id=membership, role="ASSESSOR"))
    assert await send(api, headers, ASSIGN, "k-error", input=given) == first
    assert await count(backend, RecordAssignment) == 0
    # a new key is a new request
    fresh = json.loads((await send(api, headers, ASSIGN, "k-error-2", input=given))[1])
    assert fresh["data"]["assignRecords"]["__typename"] == "RecordsAssigned"


async def test_the_same_key_with_another_body_is_refused(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    headers = bearer(api, admin, org)
    await send(api, headers, CREATE_LEARNER, "k-reuse", name="Ada")
    before = await row_counts(backend.engine)
    status, raw = await send(api, headers, CREATE_LEARNER, "k-reuse", name="Grace")
    body = json.loads(raw)
    assert status == 200 and body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["IDEMPOTENCY_KEY_REUSED"]
    assert await row_counts(backend.engine) == before


async def test_requests_racing_with_one_key_are_performed_once(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    headers = bearer(api, admin, org)
    answers = await asyncio.gather(
        *(send(api, headers, CREATE_LEARNER, "k-race", name="Ada") for _ in range(5))
    )
    assert len(set(answers)) == 1, answers  # five identical answers
    assert json.loads(answers[0][1])["data"]["createLearner"]["__typename"] == "LearnerCreated"
    assert await count(backend, Learner) == 1
    assert await count(backend, AuditEvent) == 1
    assert await count(backend, IdempotencyKey) == 1


async def test_keys_belong_to_their_principal(api: Api, world: World, backend: Backend) -> None:
    org, other = await world.organisation(), await world.organisation()
    first, second = await world.staff(org, "ADMIN"), await world.staff(other, "ADMIN")
    _, key = await world.usable_api_key(org, "ADMIN")
    for headers in (
        bearer(api, first, org),
        bearer(api, second, other),
        {"Authorization": f"ApiKey {key}"},
    ):
        body = json.loads((await send(api, headers, CREATE_LEARNER, "shared", name="Ada"))[1])
        assert body["data"]["createLearner"]["__typename"] == "LearnerCreated"
    assert await count(backend, Learner) == 3
    # a person in two organisations: one principal per organisation
    await world.staff(other, "ADMIN", user=first)
    body = json.loads(
        (await send(api, bearer(api, first, other), CREATE_LEARNER, "shared", name="Ada"))[1]
    )
    assert body["data"]["createLearner"]["__typename"] == "LearnerCreated"


async def test_an_operation_refused_as_a_whole_keeps_nothing_and_may_be_retried(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    manager = await world.staff(org, "MANAGER")
    headers = bearer(api, manager, org)
    refused = json.loads((await send(api, headers, CREATE_LEARNER, "k-refused", name="Ada"))[1])
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await count(backend, IdempotencyKey) == 0
    async with backend.engine.begin() as conn:
        membership = (
            await conn.execute(select(Membership.id).where(Membership.user_id == manager.id))
        ).scalar_one()
        await conn.execute(insert(MembershipRole).values(membership_id=membership, role="ADMIN"))
    retried = json.loads((await send(api, headers, CREATE_LEARNER, "k-refused", name="Ada"))[1])
    assert retried["data"]["createLearner"]["__typename"] == "LearnerCreated"


async def test_queries_ignore_the_key_and_a_malformed_key_is_refused_first(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    headers = bearer(api, admin, org)
    status, raw = await send(api, headers, "{ viewer { roles } }", "k-query")
    assert status == 200 and json.loads(raw)["data"] == {"viewer": {"roles": ["ADMIN"]}}
    assert await count(backend, IdempotencyKey) == 0
    for bad in ("has space", "x" * 201, ""):
        status, raw = await send(api, headers, CREATE_LEARNER, bad, name="Ada")
        assert status == 400, bad
        assert json.loads(raw)["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}
    assert await count(backend, Learner) == 0


async def test_expired_keys_are_forgotten_and_purged(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    headers = bearer(api, admin, org)
    await send(api, headers, CREATE_LEARNER, "k-old", name="Ada")
    await send(api, headers, CREATE_LEARNER, "k-other", name="Bea")
    async with backend.engine.begin() as conn:
        await conn.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    # after 24 h the key is new again: the request is performed
    again = json.loads((await send(api, headers, CREATE_LEARNER, "k-old", name="Ada"))[1])
    assert again["data"]["createLearner"]["__typename"] == "LearnerCreated"
    assert await count(backend, Learner) == 3
    async with backend.engine.connect() as conn:
        keys = (await conn.execute(select(IdempotencyKey.key))).scalars().all()
    assert keys == ["k-old"]  # the other expired key was purged on the way

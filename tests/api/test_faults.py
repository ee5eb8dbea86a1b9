"""Faults in the middle of a mutation: nothing half-written, no audit event, a coded answer
(never the driver's words), and the next request is answered normally.

Faults are real database errors, raised by triggers created in the test's own database: a
statement refused after the mutation's first rows are written, the app's own connection
terminated (`pg_terminate_backend(pg_backend_pid())`, nobody else's), a commit refused.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import Backend
from tests.factories import World
from tests.helpers import Api, assert_granted, gid, row_counts

ASSIGN = """mutation($input: AssignRecordsInput!) {
  assignRecords(input: $input) {
    __typename
    ... on RecordsAssigned { assignments { id } }
    ... on Error { code message }
  }
}"""

FAULTS = {
    "refused": "RAISE EXCEPTION 'injected fault: refused';",
    "terminated": "PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW;",
}


@asynccontextmanager
async def fault(backend: Backend, kind: str, *, at_commit: bool = False) -> AsyncIterator[None]:
    """While the block runs, writing an audit event fails as `kind` says (at the statement, or
    at the commit of its transaction)."""
    async with backend.engine.begin() as conn:
        if backend.name == "sqlite":
            assert kind == "refused" and not at_commit
            await conn.execute(
                text(
                    "CREATE TRIGGER inject_fault BEFORE INSERT ON audit_events "
                    "BEGIN SELECT RAISE(ABORT, 'injected fault: refused'); END"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN {FAULTS[kind]} RETURN NEW; END $$"
                )
            )
            timing = (
                "CONSTRAINT TRIGGER inject_fault AFTER INSERT ON audit_events "
                "DEFERRABLE INITIALLY DEFERRED"
                if at_commit
                else "TRIGGER inject_fault BEFORE INSERT ON audit_events"
            )
            await conn.execute(
                text(f"CREATE {timing} FOR EACH ROW EXECUTE FUNCTION inject_fault()")
            )
    try:
        yield
    finally:
        async with backend.engine.begin() as conn:
            if backend.name == "sqlite":
                await conn.execute(text("DROP TRIGGER inject_fault"))
            else:
                await conn.execute(text("DROP TRIGGER inject_fault ON audit_events"))
                await conn.execute(text("DROP FUNCTION inject_fault()"))


async def _given(world: World) -> tuple[Any, Any, dict[str, Any]]:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    records = [await world.record(await world.learner(org)) for _ in range(3)]
    given = {
        "assigneeId": gid("User", assessor.id),
        "recordIds": [gid("ApprenticeRecord", r.id) for r in records],
    }
    return org, admin, given


async def _post(api: Api, headers: dict[str, str], **variables: Any) -> tuple[int, dict[str, Any]]:
    response = await api.client.post(
        "/graphql", json={"query": ASSIGN, "variables": variables}, headers=headers
    )
    return response.status_code, response.json()


def _is_coded_and_masked(body: dict[str, Any], code: str) -> None:
    assert body["data"] is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == [code], body
    words = json.dumps(body).lower()
    for driver in ("injected", "asyncpg", "sqlite", "terminat", "sqlstate", "psycopg"):
        assert driver not in words, body


async def test_a_statement_refused_mid_mutation_leaves_nothing_half_written(
    api: Api, world: World, backend: Backend
) -> None:
    org, admin, given = await _given(world)
    headers = {
        "Authorization": f"Bearer {api.token(admin, org)}",
        "Idempotency-Key": "fault-1",
    }
    before = await row_counts(backend.engine)
    async with fault(backend, "refused"):  # after three assignment rows, the audit insert fails
        status, body = await _post(api, headers, input=given)
    assert status == 200
    _is_coded_and_masked(body, "INTERNAL_SERVER_ERROR")
    assert await row_counts(backend.engine) == before  # no assignment, no event, no key kept
    # the next request (the retry, with the same key) is answered normally
    status, body = await _post(api, headers, input=given)
    assert status == 200 and len(body["data"]["assignRecords"]["assignments"]) == 3


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_the_apps_connection_killed_mid_mutation(
    api: Api, world: World, backend: Backend
) -> None:
    org, admin, given = await _given(world)
    headers = {"Authorization": f"Bearer {api.token(admin, org)}"}
    before = await row_counts(backend.engine)
    async with fault(backend, "terminated"):
        status, body = await _post(api, headers, input=given)
    assert status == 200
    _is_coded_and_masked(body, "UNAVAILABLE")
    assert await row_counts(backend.engine) == before
    # the pool recovers: the next requests are answered normally
    call = api.as_(admin, org)
    assert (await call("{ viewer { roles } }")).ok() == {"viewer": {"roles": ["ADMIN"]}}
    assert_granted(await call(ASSIGN, input=given), "RecordsAssigned")


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
@pytest.mark.parametrize("kind", ["refused", "terminated"])
async def test_a_commit_that_fails_changes_nothing(
    api: Api, world: World, backend: Backend, kind: str
) -> None:
    org, admin, given = await _given(world)
    headers = {
        "Authorization": f"Bearer {api.token(admin, org)}",
        "Idempotency-Key": f"commit-{kind}",
    }
    before = await row_counts(backend.engine)
    async with fault(backend, kind, at_commit=True):
        status, body = await _post(api, headers, input=given)
    assert status == 200
    _is_coded_and_masked(body, "COMMIT_FAILED")
    assert await row_counts(backend.engine) == before
    status, body = await _post(api, headers, input=given)  # the retry performs it
    assert status == 200 and len(body["data"]["assignRecords"]["assignments"]) == 3

"""Every statement runs under CASELOAD_STATEMENT_TIMEOUT_MS: past it the whole operation answers
one top-level TIMEOUT (HTTP 504, no data), nothing is run again on the other path, nothing
written is kept; a client that leaves cancels the statement still running for it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import func, select, text

from db.models import AuditEvent, Learner
from server.app import create_app
from server.services import Services
from tests.conftest import AppFactory, Backend
from tests.factories import World
from tests.helpers import Api, row_counts

SEARCH = 'learners(first: 1, filter: {search: "no such name"}) { totalCount }'
COMPILED = f"{{ {SEARCH} }}"
STANDARD = f"{{ viewer {{ roles }} {SEARCH} }}"
CREATE = 'mutation { createLearner(input: {name: "Slow"}) { __typename } }'
TIMEOUT_MS = 200


def services_of(api: Api) -> Services:
    return api.client._transport.app.state.services  # type: ignore[attr-defined,no-any-return]


@asynccontextmanager
async def learners_locked(backend: Backend) -> AsyncIterator[None]:
    """PostgreSQL: another transaction holds the learners table, so that every statement of
    the app reading or writing it waits until it is stopped."""
    async with backend.engine.connect() as conn:
        await conn.execute(text("BEGIN"))
        await conn.execute(text("LOCK TABLE learners IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            await conn.execute(text("ROLLBACK"))


async def many_learners(backend: Backend, org_id: int, count: int) -> None:
    """SQLite: enough learners that searching them all takes far longer than the timeout."""
    async with backend.engine.begin() as conn:
        await conn.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
                "INSERT INTO learners (organisation_id, name, email, created_at) "
                "SELECT :org, 'Learner ' || i, 'learner' || i || '@example.test', "
                "'2026-01-01 00:00:00.000000' FROM n"
            ),
            {"count": count, "org": org_id},
        )


def assert_timed_out(status: int, body: dict[str, Any]) -> None:
    assert status == 504, body
    assert body["data"] is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["TIMEOUT"], body
    assert all("path" not in e for e in body["errors"]), body


@pytest.mark.alone
async def test_a_read_past_the_timeout_answers_timeout_and_runs_once(
    api_with: AppFactory, world: World, backend: Backend
) -> None:
    api = await api_with(statement_timeout_ms=TIMEOUT_MS)
    compiled = api.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    for query in (COMPILED, STANDARD):
        (await call(query)).ok()  # known to the compiled path, and the caller with it
    if backend.name == "sqlite":
        # Searching a million learners takes SQLite several times the timeout.
        await many_learners(backend, org.id, 1_000_000)

    # 504 in either media type (the newer one keeps `data`: the operation ran).
    newer = api.with_headers({**call.headers, "Accept": "application/graphql-response+json"})
    for query, caller in ((COMPILED, call), (STANDARD, call), (COMPILED, newer), (STANDARD, newer)):
        started = time.monotonic()
        if backend.name == "postgresql":
            async with learners_locked(backend):
                answer = await caller(query)
        else:
            answer = await caller(query)
        elapsed = time.monotonic() - started

        assert_timed_out(answer.status, answer.body)
        assert elapsed < 3, f"{elapsed:.1f} s: the statement ran on"
        assert compiled.failed == 0  # a statement past its time is not handed to the other path
        assert (await call("{ viewer { roles } }")).ok()  # the connection is fine afterwards


async def test_a_mutation_past_the_timeout_keeps_nothing(
    api_with: AppFactory, world: World, backend: Backend
) -> None:
    api = await api_with(statement_timeout_ms=TIMEOUT_MS)
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    if backend.name == "postgresql":
        before = await row_counts(backend.engine)
        async with learners_locked(backend):
            answer = await call(CREATE)
    else:
        # A trigger that keeps SQLite's virtual machine busy past the timeout.
        async with backend.engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE TRIGGER slow_learner BEFORE INSERT ON learners BEGIN SELECT count(*) "
                    "FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                    "WHERE i < 50000000) SELECT i FROM n); END"
                )
            )
        before = await row_counts(backend.engine)
        try:
            answer = await call(CREATE)
        finally:
            async with backend.engine.begin() as conn:
                await conn.execute(text("DROP TRIGGER slow_learner"))

    assert_timed_out(answer.status, answer.body)
    assert await row_counts(backend.engine) == before
    async with backend.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(AuditEvent))).scalar() == 0
        assert (await conn.execute(select(func.count()).select_from(Learner))).scalar() == 0
    assert (await call(CREATE)).ok()["createLearner"]["__typename"] == "LearnerCreated"


@pytest.mark.alone
@pytest.mark.parametrize("query", [COMPILED, STANDARD], ids=["compiled", "standard"])
async def test_a_client_that_leaves_cancels_its_statement(
    api_with: AppFactory,
    world: World,
    backend: Backend,
    query: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if backend.name != "postgresql":
        pytest.skip("SQLite's statement runs in its own thread until its timeout stops it")
    api = await api_with(statement_timeout_ms=60_000)
    services = services_of(api)
    app = create_app(services=services)
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    (await api.as_(admin, org)(query)).ok()
    body = json.dumps({"query": query}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {api.token(admin, org)}".encode()),
    ]
    leave = asyncio.Event()
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not sent:
            sent.append({})
            return {"type": "http.request", "body": body, "more_body": False}
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("caseload.test", 80),
    }
    caplog.set_level(logging.INFO, logger="caseload.access")
    async with learners_locked(backend):
        request = asyncio.create_task(app(scope, receive, send))
        await asyncio.sleep(0.3)
        assert await waiting_statements(backend) == 1  # blocked on the lock
        leave.set()
        async with asyncio.timeout(5):
            await request
        for _ in range(50):  # PostgreSQL ends the cancelled statement
            if await waiting_statements(backend) == 0:
                break
            await asyncio.sleep(0.05)
        assert await waiting_statements(backend) == 0
    assert len(sent) == 1  # nothing was sent to the client that left
    (line,) = [r for r in caplog.records if r.name == "caseload.access"]
    assert line.access["outcome"] == "client_disconnected"  # type: ignore[attr-defined]
    assert (await api.as_(admin, org)(query)).ok()  # and the pool is fine


async def waiting_statements(backend: Backend) -> int:
    """Statements of this database's other sessions waiting for a lock."""
    async with backend.engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
        )
        return int(found.scalar_one())

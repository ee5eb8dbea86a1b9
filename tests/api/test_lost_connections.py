"""Connections lost under the pool: no ping per checkout, and a dead connection is replaced.

Every backend of the test's own database is terminated from a separate connection
(`pg_terminate_backend`), so that the app's pool holds only dead connections. A dead one met
by the first statement of an operation's transaction is replaced and the statement run once
more; met later, the operation answers UNAVAILABLE as a whole and keeps nothing. The pool
never hands a dead connection out again.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from db.models import AuditEvent, Learner
from server.app import create_app
from server.compiled import CompiledReads
from server.services import Services
from tests.conftest import Backend, make_settings
from tests.factories import World
from tests.helpers import Api, Caller, assert_granted, gid, row_counts

on_postgresql = pytest.mark.parametrize("database", ["postgresql"], indirect=True)
# Whether the app's event loop sees the connections close before it next sends, and what
# asyncpg then says of the dead connection.
noticed_or_not = pytest.mark.parametrize("noticed", [True, False], ids=["noticed", "unnoticed"])
DRIVER_SAYS = {True: "connection is closed", False: "connection was closed in the middle"}

TERMINATE = (
    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
# Compiles: answered in one statement by the compiled path.
LEARNERS = "{ learners(first: 5) { totalCount edges { node { name } } } }"
# Does not compile (`roles` is computed by code): answered by the standard executor.
VIEWER = "{ viewer { roles user { name } } }"
# Root fields resolved side by side after signing in, each with a statement of its own; the
# first may be null.
# Two roots the standard executor answers with a statement each (`roles` is computed in Python:
# the document does not compile).
# `viewer` runs on the standard executor only (tests/field_modes.txt): one statement per root.
LEARNER_AND_STAFF = (
    "query($id: ID!) { learner(id: $id) { name } staff(first: 5) { totalCount edges { node "
    "{ roles } } } viewer { roles } }"
)
CREATE_LEARNER = """mutation($input: CreateLearnerInput!) {
  createLearner(input: $input) {
    __typename
    ... on LearnerCreated { learner { id name } }
    ... on Error { code message }
  }
}"""


@dataclass
class App:
    api: Api
    services: Services
    compiled: CompiledReads
    disconnects: list[BaseException]  # every disconnect SQLAlchemy met on the app's engine


@pytest.fixture
async def app(backend: Backend) -> AsyncIterator[App]:
    services = Services.build(make_settings(backend.url))
    disconnects: list[BaseException] = []

    @event.listens_for(services.engine.sync_engine, "handle_error")
    def _seen(context: ExceptionContext) -> None:
        if context.is_disconnect:
            disconnects.append(context.original_exception)

    built = create_app(services=services)
    transport = httpx.ASGITransport(app=built)
    async with httpx.AsyncClient(transport=transport, base_url="http://caseload.test") as client:
        yield App(Api(client, services.settings), services, built.state.compiled_reads, disconnects)
    await services.aclose()


@asynccontextmanager
async def dead_pool(app: App, backend: Backend, *, noticed: bool) -> AsyncIterator[None]:
    """Within the block, every connection the app has pooled is dead.

    `noticed`: terminated now, and the app's event loop sees the connections close while it
    waits. Otherwise terminated when the app next takes a connection from its pool, from
    another process while the app waits for it: the app learns of it only when it sends.
    """
    ended: list[int] = []
    if noticed:
        ended.append(await terminate_every_backend(backend))
    else:

        def _at_checkout(*_: object) -> None:
            ended.append(_terminate_from_another_process(backend))

        event.listen(app.services.engine.sync_engine, "checkout", _at_checkout, once=True)
    yield
    assert ended and ended[0] >= 1
    await backend.engine.dispose()  # the fixtures' own pool lost its connections too


async def terminate_every_backend(backend: Backend) -> int:
    """End every other connection to the test's database; how many there were."""
    killer = create_async_engine(backend.url, poolclass=NullPool)
    try:
        async with killer.connect() as conn:
            return len((await conn.execute(text(TERMINATE))).all())
    finally:
        await killer.dispose()


def _terminate_from_another_process(backend: Backend) -> int:
    """`terminate_every_backend`, blocking: this process's event loop waits for it."""
    dsn = make_url(backend.url).set(drivername="postgresql").render_as_string(False)
    script = (
        "import asyncio, sys, asyncpg\n"
        "async def main():\n"
        "    conn = await asyncpg.connect(sys.argv[1])\n"
        "    print(len(await conn.fetch(sys.argv[2])))\n"
        "    await conn.close()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, dsn, TERMINATE], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def lose_connection_after_signing_in(
    app: App, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the next operation, every backend ends right after its first statement (signing in)."""
    authenticator = app.services.authenticator
    used = authenticator.used
    armed = True

    async def then_terminated(*args: Any, **kwargs: Any) -> None:
        nonlocal armed
        await used(*args, **kwargs)
        if armed:
            armed = False
            assert await terminate_every_backend(backend) >= 1
            await backend.engine.dispose()

    monkeypatch.setattr(authenticator, "used", then_terminated)


async def given(world: World, app: App) -> tuple[Caller, str]:
    """An admin to call as, and the id of their organisation's one learner; connections left
    in the app's pool by both read paths, to be found dead later."""
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org, name="Ada Lovelace")
    call = app.api.as_(admin, org)
    for answer in await asyncio.gather(*(call(q) for q in (VIEWER, LEARNERS) * 3)):
        answer.ok()
    assert app.services.engine.pool.checkedin() >= 2  # type: ignore[attr-defined]
    return call, gid("Learner", learner.id)


async def learners_named(backend: Backend, name: str) -> int:
    async with backend.engine.connect() as conn:
        found = await conn.execute(
            select(func.count()).select_from(Learner).where(Learner.name == name)
        )
        return int(found.scalar_one())


async def audit_events(backend: Backend) -> int:
    async with backend.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(AuditEvent))).scalar_one())


def assert_unavailable(body: dict[str, Any]) -> None:
    """One top-level UNAVAILABLE for the whole operation, in no driver's words."""
    assert body["data"] is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAVAILABLE"], body
    assert all("path" not in e for e in body["errors"]), body
    words = json.dumps(body).lower()
    for driver in ("asyncpg", "sqlalchemy", "connection is closed", "terminat", "interfaceerror"):
        assert driver not in words, body


@on_postgresql
@noticed_or_not
async def test_a_query_on_a_dead_pool_is_answered_by_the_standard_executor(
    app: App, world: World, backend: Backend, noticed: bool
) -> None:
    call, _ = await given(world, app)
    answered = app.compiled.answered

    async with dead_pool(app, backend, noticed=noticed):
        result = await call(VIEWER)

    assert result.ok()["viewer"]["roles"] == ["ADMIN"]
    assert app.compiled.answered == answered  # the standard executor answered
    assert len(app.disconnects) == 1  # it met a dead connection, and replaced it
    assert DRIVER_SAYS[noticed] in str(app.disconnects[0])
    (await call(VIEWER)).ok()
    assert len(app.disconnects) == 1  # and never met one again


@on_postgresql
@noticed_or_not
async def test_a_query_on_a_dead_pool_is_answered_by_the_compiled_path(
    app: App, world: World, backend: Backend, noticed: bool
) -> None:
    call, _ = await given(world, app)
    answered = app.compiled.answered

    async with dead_pool(app, backend, noticed=noticed):
        result = await call(LEARNERS)

    assert result.ok() == {
        "learners": {"totalCount": 1, "edges": [{"node": {"name": "Ada Lovelace"}}]}
    }
    assert app.compiled.answered == answered + 1  # the compiled path answered
    assert app.compiled.replaced == 1  # on a new connection, the dead one replaced
    assert (await call(LEARNERS)).ok() == result.data
    assert app.compiled.answered == answered + 2 and app.compiled.replaced == 1


@on_postgresql
@noticed_or_not
async def test_a_mutation_on_a_dead_pool_is_performed_once(
    app: App, world: World, backend: Backend, noticed: bool
) -> None:
    call, _ = await given(world, app)
    events = await audit_events(backend)

    async with dead_pool(app, backend, noticed=noticed):
        result = await call(CREATE_LEARNER, input={"name": "Grace Hopper"})

    assert_granted(result, "LearnerCreated")
    assert len(app.disconnects) == 1  # the dead connection was met, and replaced
    assert DRIVER_SAYS[noticed] in str(app.disconnects[0])
    assert await learners_named(backend, "Grace Hopper") == 1
    assert await audit_events(backend) == events + 1


@on_postgresql
async def test_a_connection_lost_mid_mutation_keeps_nothing_and_is_not_kept(
    app: App, world: World, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    call, _ = await given(world, app)
    lose_connection_after_signing_in(app, backend, monkeypatch)
    before = await row_counts(backend.engine)

    result = await call(CREATE_LEARNER, input={"name": "Grace Hopper"})

    assert result.status == 200
    assert_unavailable(result.body)
    assert len(app.disconnects) == 1  # met after signing in: not run again
    assert await row_counts(backend.engine) == before
    # the next request is answered, on a connection that is not the dead one
    assert_granted(await call(CREATE_LEARNER, input={"name": "Grace Hopper"}), "LearnerCreated")
    assert len(app.disconnects) == 1
    assert await learners_named(backend, "Grace Hopper") == 1


@on_postgresql
async def test_a_connection_lost_mid_query_answers_one_error_for_the_whole(
    app: App, world: World, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    call, ada = await given(world, app)
    lose_connection_after_signing_in(app, backend, monkeypatch)

    result = await call(LEARNER_AND_STAFF, id=ada)

    assert result.status == 200
    assert_unavailable(result.body)
    assert len(app.disconnects) == 1
    assert (await call(LEARNER_AND_STAFF, id=ada)).ok() == {
        "learner": {"name": "Ada Lovelace"},
        "staff": {"totalCount": 1, "edges": [{"node": {"roles": ["ADMIN"]}}]},
        "viewer": {"roles": ["ADMIN"]},
    }
    assert len(app.disconnects) == 1


@on_postgresql
async def test_a_connection_lost_between_the_compiled_paths_statements_is_replaced(
    app: App, world: World, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    call, _ = await given(world, app)
    answered = app.compiled.answered
    app.compiled.callers.clear()  # a caller not seen before: signing in is a statement of its own
    lose_connection_after_signing_in(app, backend, monkeypatch)

    result = await call(LEARNERS)

    assert result.ok() == {
        "learners": {"totalCount": 1, "edges": [{"node": {"name": "Ada Lovelace"}}]}
    }
    assert app.compiled.answered == answered + 1 and app.compiled.replaced == 1


@on_postgresql
async def test_a_checkout_runs_no_ping(
    app: App, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    call, _ = await given(world, app)
    dialect = app.services.engine.dialect
    ping = dialect.do_ping
    pings: list[object] = []

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    answered = app.compiled.answered

    (await call(VIEWER)).ok()
    (await call(LEARNERS)).ok()
    assert_granted(await call(CREATE_LEARNER, input={"name": "Grace Hopper"}), "LearnerCreated")

    assert app.compiled.answered == answered + 1  # both read paths ran, and a mutation
    assert pings == []


async def test_a_database_out_of_reach_answers_unavailable() -> None:
    unreachable = Services.build(make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"))
    transport = httpx.ASGITransport(app=create_app(services=unreachable))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://caseload.test") as c:
            api = Api(c, unreachable.settings)
            call = api.with_headers(
                {"Authorization": f"Bearer {api.token_for_email('someone@example.org')}"}
            )
            for query in (
                LEARNERS,
                VIEWER,
                'mutation { createLearner(input: {name: "X"}) { __typename } }',
            ):
                result = await call(query)
                assert result.status == 200
                assert_unavailable(result.body)
    finally:
        await unreachable.aclose()


@on_postgresql
@noticed_or_not
async def test_readiness_on_a_dead_pool_is_ready_at_once(
    app: App, backend: Backend, noticed: bool
) -> None:
    client = app.api.client
    assert (await client.get("/readyz")).status_code == 200  # a connection left in the pool

    async with dead_pool(app, backend, noticed=noticed):
        response = await client.get("/readyz")

    # the database restarted and is up: ready, not one 503 for the connection it dropped
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"
    assert len(app.disconnects) == 1

"""The change feed under a storm (issue 22): real server processes, 50 concurrent mutations of
mixed kinds whose transactions start and commit out of order (some held back by a lock the test
holds), and a poller following `changes` throughout, through every process. It ends with
exactly the committed changes, each once, in commit order."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from db.models import ApprenticeRecord, AuditEvent, Change, Learner
from server.tokens import mint_token
from tests.conftest import TEST_SECRET, Backend, make_settings
from tests.factories import World
from tests.helpers import gid
from tests.servers import Server, serve

FEED = """query($after: String) {
  changes(after: $after, first: 7) {
    edges { cursor node { action subject { id } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
CREATE = """mutation($name: String!) {
  createLearner(input: {name: $name}) { __typename }
}"""
IMPORT = """mutation($a: String!, $b: String!) {
  importLearners(input: {learners: [{name: $a}, {name: $b}]}) { __typename }
}"""
RECORD = """mutation($learnerId: ID!, $programme: String!) {
  createApprenticeRecord(input: {learnerId: $learnerId, programme: $programme}) { __typename }
}"""
# One transaction that writes a change early, then waits on a held learner's row: it takes its
# ids (and its transaction id) before the others, and commits after them.
HELD_BACK = """mutation($early: String!, $learnerId: ID!, $name: String!) {
  early: createLearner(input: {name: $early}) { __typename }
  late: updateLearner(input: {learnerId: $learnerId, name: $name}) { __typename }
}"""
HELD = 1.5  # seconds the test keeps the held-back transactions waiting


@pytest.mark.parametrize("database", ["postgresql", "sqlite"], indirect=True)
async def test_a_poller_ends_with_every_committed_change_once_in_commit_order(
    backend: Backend, world: World, tmp_path: Path
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    held = [await world.learner(org, name=f"Held {n}") for n in range(10)]
    free = [await world.learner(org, name=f"Free {n}") for n in range(15)]
    token = mint_token(make_settings(backend.url), email=admin.email, org=org.slug)
    env = {
        "CASELOAD_JWT_SECRET": TEST_SECRET,
        "CASELOAD_DATABASE_URL": backend.url,
        "CASELOAD_DB_POOL_SIZE": "30",
        # the held-back writers wait on the test's lock for as long as the storm lasts
        "CASELOAD_STATEMENT_TIMEOUT_MS": "60000",
        "CASELOAD_MAX_CONCURRENT_PER_CREDENTIAL": "100",  # one token makes the whole storm
    }
    postgres = backend.name == "postgresql"
    names = ("a", "b") if postgres else ("a",)
    with ExitStack() as stack:
        servers: list[Server] = [
            stack.enter_context(serve(tmp_path / name, env=env)) for name in names
        ]
        async with httpx.AsyncClient(timeout=30) as client:

            async def post(n: int, query: str, **variables: Any) -> dict[str, Any]:
                response = await client.post(
                    f"{servers[n % len(servers)].url}/graphql",
                    json={"query": query, "variables": variables},
                    headers={"Authorization": f"Bearer {token}"},
                )
                body: dict[str, Any] = response.json()
                assert response.status_code == 200 and "errors" not in body, body
                return body

            # The poller: follows the feed through every process in turn, storing the cursor.
            seen: list[tuple[str, str, str]] = []
            cursor: list[str | None] = [None]
            storm_over = asyncio.Event()

            async def poll_once(n: int) -> bool:
                page = (await post(n, FEED, after=cursor[0]))["data"]["changes"]
                for edge in page["edges"]:
                    seen.append(
                        (edge["cursor"], edge["node"]["action"], edge["node"]["subject"]["id"])
                    )
                cursor[0] = page["pageInfo"]["endCursor"]
                return bool(page["edges"]) or page["pageInfo"]["hasNextPage"]

            async def poller() -> None:
                n = 0
                while not storm_over.is_set():
                    await poll_once(n)
                    n += 1
                    await asyncio.sleep(0.01)
                while await poll_once(n):  # drain what committed last
                    n += 1

            # Finished: (what, when its answer came back), to check commit order against.
            answered: list[tuple[str, float, float]] = []

            async def timed(label: str, n: int, query: str, **variables: Any) -> None:
                sent = time.monotonic()
                await post(n, query, **variables)
                answered.append((label, sent, time.monotonic()))

            polling = asyncio.create_task(poller())
            # Held back: transactions that create a learner, then rename one whose row the test
            # has locked (PostgreSQL); on SQLite every writer waits behind the test's write lock.
            lock = await _hold(backend, [x.id for x in held])
            slow = [
                asyncio.create_task(
                    timed(
                        f"rename-held-{i}",
                        i,
                        HELD_BACK,
                        early=f"Early {i}",
                        learnerId=gid("Learner", held[i].id),
                        name=f"Held R{i}",
                    )
                )
                for i in range(10)
            ]
            await asyncio.sleep(0.3)
            fast = [
                *(timed(f"create-{i}", i, CREATE, name=f"New {i}") for i in range(15)),
                *(
                    timed(
                        f"record-{i}",
                        i,
                        RECORD,
                        learnerId=gid("Learner", free[i].id),
                        programme=f"P{i}",
                    )
                    for i in range(15)
                ),
                *(timed(f"import-{i}", i, IMPORT, a=f"Imp {i}a", b=f"Imp {i}b") for i in range(10)),
            ]
            if postgres:
                await asyncio.gather(*fast)  # they commit while the held ones wait
                await asyncio.sleep(HELD)
                await _release(lock)
            else:
                fast_tasks = [asyncio.create_task(f) for f in fast]
                await asyncio.sleep(HELD)
                await _release(lock)
                await asyncio.gather(*fast_tasks)
            await asyncio.gather(*slow)
            storm_over.set()
            await asyncio.wait_for(polling, 60)

    assert len(answered) == 50
    async with backend.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    Change.position,
                    Change.id,
                    Change.action,
                    Change.subject_type,
                    Change.subject_id,
                ).order_by(Change.position, Change.id)
            )
        ).all()
    # every committed change: 10 held back (a creation and a rename each), 15 creations,
    # 15 records, 10 imports of two
    assert len(rows) == 20 + 15 + 15 + 20
    # the poller ends with exactly these, each once, in the order of their positions
    assert [(a, s) for _, a, s in seen] == [
        (r.action.value, gid(r.subject_type, r.subject_id)) for r in rows
    ]
    assert len({c for c, _, _ in seen}) == len(seen)
    # and each is one object of a committed audit event of its action, every event the trail
    # lists standing for at least one (an import's one event, a change per learner)
    async with backend.engine.connect() as conn:
        linked = (
            await conn.execute(
                select(Change.id, AuditEvent.id, Change.action == AuditEvent.action).outerjoin(
                    AuditEvent, Change.audit_event_id == AuditEvent.id
                )
            )
        ).all()
        events = await conn.scalar(select(func.count()).select_from(AuditEvent))
    assert all(event is not None and same for _, event, same in linked)
    assert len({event for _, event, _ in linked}) == events
    # commit order: a mutation answered before another was sent has the lower position
    positions = await _positions(backend, rows)
    for label, _, done in answered:
        for other, sent, _ in answered:
            if done < sent:
                assert max(positions[label]) < min(positions[other]), (label, other)
    if postgres:  # the held-back transactions wrote first yet committed, and are listed, last
        late = [
            p for label, found in positions.items() if label.startswith("rename") for p in found
        ]
        assert sorted(late) == sorted(r.position for r in rows[-20:])


async def _positions(backend: Backend, rows: Any) -> dict[str, list[int]]:
    """Each mutation's positions, found by what it changed."""
    async with backend.engine.connect() as conn:
        names = dict((await conn.execute(select(Learner.id, Learner.name))).all())
        learner_of = dict(
            (await conn.execute(select(ApprenticeRecord.id, ApprenticeRecord.learner_id))).all()
        )
    found: dict[str, list[int]] = {}
    for r in rows:
        action = r.action.value
        if action == "LEARNER_UPDATED":
            label = f"rename-held-{int(names[r.subject_id].removeprefix('Held R'))}"
        elif action == "LEARNER_CREATED" and names[r.subject_id].startswith("Early "):
            label = f"rename-held-{int(names[r.subject_id].removeprefix('Early '))}"
        elif action == "LEARNER_CREATED":
            label = f"create-{int(names[r.subject_id].removeprefix('New '))}"
        elif action == "LEARNERS_IMPORTED":
            label = f"import-{int(names[r.subject_id].removeprefix('Imp ')[:-1])}"
        else:
            label = f"record-{int(names[learner_of[r.subject_id]].removeprefix('Free '))}"
        found.setdefault(label, []).append(r.position)
    return found


async def _hold(backend: Backend, learner_ids: list[int]) -> Any:
    """A transaction the test controls: it locks the held learners' rows (PostgreSQL) or takes
    the write lock (SQLite) until `_release`."""
    if backend.name == "postgresql":
        conn = await backend.engine.connect()
        await conn.begin()
        await conn.execute(
            text("SELECT id FROM learners WHERE id = ANY(:ids) FOR UPDATE"), {"ids": learner_ids}
        )
        return conn
    path = backend.url.split("///", 1)[1]
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    return raw


async def _release(lock: Any) -> None:
    if isinstance(lock, sqlite3.Connection):
        lock.execute("COMMIT")
        lock.close()
        return
    await lock.commit()
    await lock.close()

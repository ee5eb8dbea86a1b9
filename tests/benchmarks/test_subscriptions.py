"""Benchmark: subscriptions under a steady stream of changes, two processes on PostgreSQL.

Run with `make bench` (or this file alone). 100 subscribers over 10 principals (an admin, two
team managers, three assessors, two external assessors, a learner and another organisation's
admin) listen on one server process; another process commits `BENCH_RATE` changes a second
(default 10) for `BENCH_SECONDS` (default 60): learners created in either location, evidence
submitted on assigned, allocated and the learner's own records. Checks and prints:

- every change each subscriber may see arrives, and none it may not: each subscriber's events
  are exactly its principal's feed (`changes`) read afterwards;
- delivery after commit (from the mutation's answer, sent after its commit, to the event's
  arrival): p50, p99 (target p99 ≤ 500 ms) and the maximum;
- the listening process's resident memory per 100 subscribers, and its CPU time per change.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import httpx
import pytest
import websockets

from db.models import Organisation, User
from server.tokens import mint_token
from tests.conftest import TEST_SECRET, Backend, make_settings
from tests.factories import World
from tests.helpers import gid
from tests.servers import serve

SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
RATE = float(os.environ.get("BENCH_RATE", "10"))
PER_PRINCIPAL = int(os.environ.get("BENCH_PER_PRINCIPAL", "10"))
P99_TARGET_MS = 500.0
SUBSCRIPTION = """subscription {
  changes { cursor action subject { id } }
}"""
FEED = """query($after: String) {
  changes(after: $after, first: 500) {
    edges { cursor node { subject { id } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
CREATE = """mutation($name: String!, $at: ID!) {
  createLearner(input: {name: $name, locationId: $at}) {
    ... on LearnerCreated { learner { id } }
  }
}"""
SUBMIT = """mutation($record: ID!, $title: String!) {
  submitEvidence(input: {recordId: $record, title: $title}) {
    ... on EvidenceSubmitted { evidence { id } }
  }
}"""


def _bearer(backend: Backend, user: User, org: Organisation | None) -> str:
    settings = make_settings(backend.url)
    return f"Bearer {mint_token(settings, email=user.email, org=org.slug if org else None)}"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_subscriptions_under_a_steady_stream(
    backend: Backend, world: World, tmp_path: Path
) -> None:
    org, other = await world.organisation(), await world.organisation()
    here, there = await world.location(org), await world.location(org)
    admin = await world.staff(org, "ADMIN")
    learner_user = await world.staff(org, "LEARNER")
    assessors = [await world.staff(org, "ASSESSOR") for _ in range(3)]
    externals = [await world.external_assessor() for _ in range(2)]
    people: dict[str, str] = {
        "admin": _bearer(backend, admin, org),
        "manager-here": _bearer(backend, await world.staff(org, "MANAGER", location=here), org),
        "manager-there": _bearer(backend, await world.staff(org, "MANAGER", location=there), org),
        "learner": _bearer(backend, learner_user, org),
        "stranger": _bearer(backend, await world.staff(other, "ADMIN"), other),
    }
    records = []
    for n, assessor in enumerate(assessors):
        learner = await world.learner(org, location=here if n % 2 else there)
        record = await world.record(learner)
        await world.assign(record, assessor)
        await world.allocate(learner, externals[n % 2])
        records.append(record)
        people[f"assessor-{n}"] = _bearer(backend, assessor, org)
    for n, external in enumerate(externals):
        people[f"external-{n}"] = _bearer(backend, external, None)
    own = await world.record(await world.learner(org, location=there, user=learner_user))
    records.append(own)
    records.append(await world.record(await world.learner(org, location=here)))  # nobody's
    assert len(people) == 10
    env = {
        "CASELOAD_JWT_SECRET": TEST_SECRET,
        "CASELOAD_DATABASE_URL": backend.url,
        "CASELOAD_LOG_LEVEL": "WARNING",
        "CASELOAD_MAX_CONCURRENT_PER_CREDENTIAL": "50",
    }
    answered: dict[str, float] = {}  # subject id → when its mutation's answer came
    received: dict[tuple[str, int], list[tuple[str, float]]] = {}
    with ExitStack() as servers:
        writing = servers.enter_context(serve(tmp_path / "writing", env=env))
        listening = servers.enter_context(serve(tmp_path / "listening", env=env))
        url = listening.url.replace("http://", "ws://") + "/graphql"
        rss_before = _rss_kib(listening.pid)
        async with AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as client:

            async def subscriber(name: str, n: int, ready: asyncio.Event) -> None:
                socket = await stack.enter_async_context(
                    websockets.connect(url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
                )
                init = {"type": "connection_init", "payload": {"Authorization": people[name]}}
                await socket.send(json.dumps(init))
                assert json.loads(await socket.recv())["type"] == "connection_ack"
                payload = {"query": SUBSCRIPTION}
                await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                await socket.send(json.dumps({"type": "ping"}))
                got = received.setdefault((name, n), [])
                async for text in socket:
                    message = json.loads(text)
                    if message["type"] == "pong":
                        ready.set()
                    elif message["type"] == "next":
                        event = message["payload"]["data"]["changes"]
                        got.append((event["subject"]["id"], time.monotonic()))
                        arrived.set()
                    elif message["type"] != "ping":
                        raise AssertionError(message)

            arrived = asyncio.Event()
            readiness = []
            tasks = []
            for name in people:
                for n in range(PER_PRINCIPAL):
                    ready = asyncio.Event()
                    readiness.append(ready)
                    tasks.append(asyncio.create_task(subscriber(name, n, ready)))
            async with asyncio.timeout(60):
                for ready in readiness:
                    await ready.wait()
            await asyncio.sleep(1.0)  # every subscription registered
            rss_with = _rss_kib(listening.pid)
            cpu_before = _cpu_seconds(listening.pid)

            async def mutate(n: int) -> None:
                if n % 5 in (0, 1):
                    at = gid("Location", (here if n % 5 == 0 else there).id)
                    variables = {"name": f"Bench {n}", "at": at}
                    query, path = CREATE, ("createLearner", "learner")
                else:
                    record = records[n % len(records)]
                    variables = {"record": gid("ApprenticeRecord", record.id), "title": f"E{n}"}
                    query, path = SUBMIT, ("submitEvidence", "evidence")
                response = await client.post(
                    f"{writing.url}/graphql",
                    json={"query": query, "variables": variables},
                    headers={"Authorization": people["admin"]},
                )
                answered[response.json()["data"][path[0]][path[1]]["id"]] = time.monotonic()

            total = int(SECONDS * RATE)
            started = time.monotonic()
            writes = []
            for n in range(total):
                delay = started + n / RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                writes.append(asyncio.create_task(mutate(n)))
            await asyncio.gather(*writes)
            written = time.monotonic()

            # What each principal's feed holds, read once it is all committed.
            expected: dict[str, list[str]] = {}
            for name, authorization in people.items():
                after: str | None = None
                seen: list[str] = []
                while True:
                    page = (
                        await client.post(
                            f"{writing.url}/graphql",
                            json={"query": FEED, "variables": {"after": after}},
                            headers={"Authorization": authorization},
                        )
                    ).json()["data"]["changes"]
                    seen += [e["node"]["subject"]["id"] for e in page["edges"]]
                    after = page["pageInfo"]["endCursor"]
                    if not page["pageInfo"]["hasNextPage"]:
                        break
                expected[name] = seen
            # The last deliveries (a subscriber still behind is late, not short: it is
            # waited for, and its late events count in the percentiles).
            async with asyncio.timeout(120):
                while any(len(got) < len(expected[name]) for (name, _), got in received.items()):
                    arrived.clear()
                    await arrived.wait()
            drained = time.monotonic() - written
            await asyncio.sleep(1.0)  # and nothing more comes
            cpu_used = _cpu_seconds(listening.pid) - cpu_before
            rss_after = _rss_kib(listening.pid)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    assert len(answered) == total
    latencies = []
    for (name, _), events in received.items():
        assert [subject for subject, _ in events] == expected[name], name
        latencies += [(at - answered[subject]) * 1000 for subject, at in events]
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    delivered = len(latencies)
    print(
        f"\n[subscriptions, postgresql, 2 processes] {total} changes in {SECONDS:.0f} s, "
        f"{len(received)} subscribers over {len(people)} principals, {delivered} events "
        f"delivered (each subscriber exactly its feed; the other organisation's admin none)"
        f"; the last delivered {drained:.1f} s after the last commit"
        f"\n  delivery after commit: p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms (target p99 <= {P99_TARGET_MS:.0f} ms)"
        f"\n  listening process: RSS {rss_before / 1024:.1f} MiB idle, "
        f"{rss_with / 1024:.1f} MiB with the subscribers: "
        f"{(rss_with - rss_before) / 1024 / (len(received) / 100):.1f} MiB per 100 subscribers; "
        f"{rss_after / 1024:.1f} MiB after the run"
        f"\n  listening process CPU: {cpu_used:.2f} s, "
        f"{cpu_used / total * 1000:.2f} ms per change, "
        f"{cpu_used / max(delivered, 1) * 1000:.3f} ms per event delivered"
    )
    assert expected["stranger"] == []
    assert p99 <= P99_TARGET_MS

"""Benchmark: the server's CPU per request of q1 sent by id against q1 sent as text, same run.

Run with `make bench` (BENCH_PRESET=small|bench, default small), or alone:
`.venv/bin/pytest tests/benchmarks/test_trusted_documents.py -p no:cacheprovider -o addopts="" -s`.

q1 is the peers' first question as Caseload answers it (/work/shared/peers, `CL_Q1N`): an
assessor's first 50 learners with their units and assessors. Two `caseload serve` processes on
the same database: one with default settings, sent the document as text and as its SHA-256
(automatic persisted queries, after one registration); one with CASELOAD_TRUSTED_DOCUMENTS, sent
its `documentId`. The requests go one at a time, over one kept-alive connection, in alternating
blocks; CPU is the server process's own (the sum of its threads' run time from
/proc/<pid>/task/*/schedstat), so the client's work is not counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from db.models import Membership, MembershipRole, Organisation, RecordAssignment, User
from db.seed import seed_preset
from server.app import create_app
from server.services import Services
from server.tokens import mint_token
from tests.conftest import TEST_SECRET, Backend, make_settings
from tests.servers import serve

PRESET = os.environ.get("BENCH_PRESET", "small")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "100"))  # per block
Q1 = (
    "query Q1N { learners(first: 50) { edges { node { "
    "id name location { name } department { name } assessors { name } } } } }"
)
Q1_ID = hashlib.sha256(Q1.encode()).hexdigest()


def cpu_ns(pid: int) -> int:
    """The CPU time the process's threads have run, in nanoseconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


async def busiest_assessor(backend: Backend) -> tuple[str, str]:
    """The email and organisation of the assessor with the most records assigned."""
    async with backend.engine.connect() as conn:
        row = (
            await conn.execute(
                select(User.email, Organisation.slug)
                .join(Membership, Membership.user_id == User.id)
                .join(Organisation, Organisation.id == Membership.organisation_id)
                .join(MembershipRole, MembershipRole.membership_id == Membership.id)
                .join(
                    RecordAssignment,
                    (RecordAssignment.user_id == User.id)
                    & (RecordAssignment.organisation_id == Membership.organisation_id),
                )
                .where(MembershipRole.role == "ASSESSOR", RecordAssignment.ended_at.is_(None))
                .group_by(User.email, Organisation.slug)
                .order_by(func.count().desc())
                .limit(1)
            )
        ).one()
    return str(row[0]), str(row[1])


def block(
    server: tuple[httpx.Client, int], send: Callable[[httpx.Client], httpx.Response]
) -> tuple[float, list[float]]:
    """CPU of the server per request (ms) and the requests' wall times (ms)."""
    client, pid = server
    walls = []
    started = cpu_ns(pid)
    for _ in range(REQUESTS):
        t0 = time.perf_counter()
        response = send(client)
        walls.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text
    return (cpu_ns(pid) - started) / REQUESTS / 1e6, walls


async def test_q1_by_id_against_by_text(backend: Backend, tmp_path: Path) -> None:
    await seed_preset(backend.engine, PRESET)
    email, org = await busiest_assessor(backend)
    token = mint_token(make_settings(backend.url), email=email, org=org)
    await first_sight(backend)
    measure(backend, token, tmp_path)


async def first_sight(backend: Backend) -> None:
    """What a document never seen before costs on top of a kept one: parsing, validation and
    the compiled path's plan, which trusted documents are given at start (in process)."""
    services = Services.build(make_settings(backend.url))
    try:
        compiled = create_app(services=services).state.compiled_reads
        documents = services.schema.documents
        spent = []
        for _ in range(20):
            started = time.thread_time()
            prepared = documents.prepare(Q1)  # not kept: parsed and validated anew
            assert compiled.operation(prepared, "Q1N") is not None
            spent.append((time.thread_time() - started) * 1000)
    finally:
        await services.aclose()
    print(
        f"\n[{backend.name}] q1 seen for the first time: parse, validate and plan "
        f"{statistics.median(spent):.2f} ms CPU (median of 20)"
    )


def measure(backend: Backend, token: str, tmp_path: Path) -> None:
    documents = tmp_path / "persisted-documents.json"
    documents.write_text(json.dumps({Q1_ID: Q1}))
    env = {"CASELOAD_DATABASE_URL": backend.url, "CASELOAD_JWT_SECRET": TEST_SECRET}
    headers = {"Authorization": f"Bearer {token}"}
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": Q1_ID}}
    modes: dict[str, Callable[[httpx.Client], httpx.Response]] = {
        "text": lambda c: c.post("/graphql", json={"query": Q1}),
        "apq hash": lambda c: c.post("/graphql", json={"extensions": persisted}),
        "documentId": lambda c: c.post("/graphql", json={"documentId": Q1_ID}),
    }
    with (
        serve(tmp_path / "plain", env=env) as plain,
        serve(
            tmp_path / "trusted", env={**env, "CASELOAD_TRUSTED_DOCUMENTS": str(documents)}
        ) as trusted,
        httpx.Client(base_url=plain.url, headers=headers) as to_plain,
        httpx.Client(base_url=trusted.url, headers=headers) as to_trusted,
    ):
        servers = {
            "text": (to_plain, plain.pid),
            "apq hash": (to_plain, plain.pid),
            "documentId": (to_trusted, trusted.pid),
        }
        first = to_plain.post("/graphql", json={"query": Q1, "extensions": persisted}).json()
        assert len(first["data"]["learners"]["edges"]) > 1, first
        for mode, send in modes.items():  # warm: every answer is the same
            for _ in range(20):
                assert send(servers[mode][0]).json() == first, mode
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        walls: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(ROUNDS):
            for mode, send in modes.items():
                spent, took = block(servers[mode], send)
                cpu[mode].append(spent)
                walls[mode].extend(took)
    edges = len(first["data"]["learners"]["edges"])
    print(f"\n[{backend.name}] q1 ({edges} learners), {ROUNDS} rounds x {REQUESTS} requests a mode")
    for mode in modes:
        spent = statistics.median(cpu[mode])
        # Each round's blocks ran back to back: compared within the round, then the median.
        ratio = statistics.median(a / b for a, b in zip(cpu[mode], cpu["text"], strict=True))
        print(
            f"[{backend.name}] {mode:<10} server CPU/request median {spent:.3f} ms "
            f"(rounds {min(cpu[mode]):.3f}-{max(cpu[mode]):.3f}), "
            f"{ratio * 100:.0f}% of text's in the same round (median); "
            f"wall p50 {statistics.median(walls[mode]):.2f} ms"
        )
    body: dict[str, Any] = {"query": Q1}
    print(
        f"[{backend.name}] request bodies: text {len(json.dumps(body))} B, "
        f"apq hash {len(json.dumps({'extensions': persisted}))} B, "
        f"documentId {len(json.dumps({'documentId': Q1_ID}))} B"
    )

"""Two server processes (uvicorn, real sockets on 127.0.0.1) on one PostgreSQL: idempotency
keys and the races that the database decides hold across them, as within one."""

from __future__ import annotations

import asyncio
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from db.models import (
    AssignmentRole,
    AuditEvent,
    Evidence,
    EvidenceStatus,
    IdempotencyKey,
    Learner,
    RecordAssignment,
)
from server.tokens import mint_token
from tests.conftest import TEST_SECRET, Backend, make_settings
from tests.factories import World
from tests.helpers import gid
from tests.servers import Server, serve

CREATE_LEARNER = """mutation($name: String!) {
  createLearner(input: {name: $name}) {
    __typename ... on LearnerCreated { learner { id } } ... on Error { code }
  }
}"""
ASSIGN = """mutation($input: AssignRecordsInput!) {
  assignRecords(input: $input) {
    __typename ... on RecordsAssigned { unchanged assignments { id } } ... on Error { code }
  }
}"""
COORDINATE = """mutation($input: AssignTrainingCoordinatorInput!) {
  assignTrainingCoordinator(input: $input) {
    __typename ... on TrainingCoordinatorAssigned { assignment { id } } ... on Error { code }
  }
}"""
DECIDE = """mutation($input: SignOffEvidenceInput!) {
  signOffEvidence(input: $input) {
    __typename ... on Error { code } ... on EvidenceDecided { unchanged }
  }
}"""


async def _count(backend: Backend, model: Any, *where: Any) -> int:
    async with backend.engine.connect() as conn:
        stmt = select(func.count()).select_from(model).where(*where)
        return int((await conn.execute(stmt)).scalar_one())


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_two_processes_share_idempotency_keys_and_decide_races_in_the_database(
    backend: Backend, world: World, tmp_path: Path
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    coordinators = [await world.staff(org, "TRAINING_COORDINATOR") for _ in range(2)]
    record = await world.record(await world.learner(org))
    evidence = await world.evidence(record)
    token = mint_token(make_settings(backend.url), email=admin.email, org=org.slug)
    env = {
        "CASELOAD_JWT_SECRET": TEST_SECRET,
        "CASELOAD_DATABASE_URL": backend.url,
        "CASELOAD_DB_POOL_SIZE": "3",
    }
    with ExitStack() as stack:
        servers: list[Server] = [
            stack.enter_context(serve(tmp_path / name, env=env)) for name in ("a", "b")
        ]
        async with httpx.AsyncClient(timeout=30) as client:

            async def post(
                server: Server, query: str, key: str | None = None, **variables: Any
            ) -> tuple[int, bytes]:
                headers = {"Authorization": f"Bearer {token}"}
                if key is not None:
                    headers["Idempotency-Key"] = key
                response = await client.post(
                    f"{server.url}/graphql",
                    json={"query": query, "variables": variables},
                    headers=headers,
                )
                return response.status_code, response.content

            async def both(query: str, key: str | None = None, **variables: Any) -> list[Any]:
                return list(
                    await asyncio.gather(*(post(s, query, key, **variables) for s in servers))
                )

            # The same key sent to both processes at once: performed once, answered alike.
            for n in range(5):
                first, second = await both(CREATE_LEARNER, f"race-{n}", name=f"Learner {n}")
                assert first == second and first[0] == 200
                assert b'"LearnerCreated"' in first[1]
            # A key claimed through one process is replayed by the other.
            once = await post(servers[0], CREATE_LEARNER, "later", name="Later")
            assert await post(servers[1], CREATE_LEARNER, "later", name="Later") == once
            reused = await post(servers[1], CREATE_LEARNER, "later", name="Other")
            assert b"IDEMPOTENCY_KEY_REUSED" in reused[1]

            # Races without keys, decided by the database across the processes.
            assigned = await both(
                ASSIGN,
                input={
                    "assigneeId": gid("User", assessor.id),
                    "recordIds": [gid("ApprenticeRecord", record.id)],
                },
            )
            assert sorted(b'"unchanged":1' in body for _, body in assigned) == [False, True]
            coordinated = await asyncio.gather(
                *(
                    post(
                        server,
                        COORDINATE,
                        input={
                            "recordId": gid("ApprenticeRecord", record.id),
                            "coordinatorId": gid("User", coordinator.id),
                        },
                    )
                    for server, coordinator in zip(servers, coordinators, strict=True)
                )
            )
            assert all(b'"TrainingCoordinatorAssigned"' in body for _, body in coordinated)
            decided = await both(
                DECIDE, input={"evidenceId": gid("Evidence", evidence.id), "decision": "SIGN_OFF"}
            )
            # the same person twice at once: one decides, the other finds it decided so
            assert all(b'"EvidenceDecided"' in body for _, body in decided)
            assert sorted(b'"unchanged":true' in body for _, body in decided) == [False, True]
        logs = [server.log_text() for server in servers]

    assert await _count(backend, Learner) == 1 + 5 + 1  # the record's learner, then one per key
    assert await _count(backend, IdempotencyKey) == 6
    assert await _count(backend, AuditEvent, AuditEvent.action == "LEARNER_CREATED") == 6
    active = RecordAssignment.ended_at.is_(None)
    assert await _count(backend, RecordAssignment, active, RecordAssignment.role == "ASSESSOR") == 1
    coordinator = RecordAssignment.role == AssignmentRole.TRAINING_COORDINATOR
    assert await _count(backend, RecordAssignment, active, coordinator) == 1
    assert await _count(backend, Evidence, Evidence.status == EvidenceStatus.SIGNED_OFF) == 1
    assert await _count(backend, AuditEvent, AuditEvent.action == "EVIDENCE_DECIDED") == 1
    # each process answered some of it, and neither logged an error
    lines = [[json.loads(line) for line in text.splitlines() if line[:1] == "{"] for text in logs]
    for entries in lines:
        assert any(entry.get("path") == "/graphql" for entry in entries)
        assert all(entry["level"] != "ERROR" for entry in entries)
    # one answer per key was replayed: five races and the later retry
    assert sum(entry.get("outcome") == "replayed" for entries in lines for entry in entries) == 6

"""Benchmark: each read screen of tests/screens.graphql as its role, in process.

Run with `make bench` (BENCH_PRESET=small|bench, default small; SCREENS_ONLY=A,B for some).
For each screen: SQL statements per request for a caller seen before (sign-in included),
whether the compiled path answered, and CPU per request (the thread's time around the whole
in-process request: the server's work plus the test client's, so an upper bound of the
server's).
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    ApprenticeRecord,
    Course,
    Learner,
    Membership,
    MembershipRole,
    Organisation,
    User,
)
from db.seed import seed_preset
from server.services import Services
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import Api, counting, gid

PRESET = os.environ.get("BENCH_PRESET", "small")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "50"))
SCREENS = Path(__file__).parents[1] / "screens.graphql"

# Who opens each screen.
ROLES = {
    "ManagerLearners": "MANAGER",
    "LearnerProfile": "ADMIN",
    "PickExternal": "MANAGER",
    "Access": "ADMIN",
    "ExternalAssessorHome": "EXTERNAL_ASSESSOR",
    "RecordAssignment": "ADMIN",
    "Assignees": "ADMIN",
    "RecordHistory": "ADMIN",
    "CourseManagement": "ADMIN",
    "Eligible": "ADMIN",
    "RecallList": "ADMIN",
    "Audit": "ADMIN",
}


def screens() -> dict[str, str]:
    """Each operation of the screens file, by name, as its own document."""
    text = "\n".join(line for line in SCREENS.read_text().splitlines() if not line.startswith("#"))
    starts = [m.start() for m in re.finditer(r"^query ", text, flags=re.MULTILINE)]
    found = {}
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        document = text[start:end].strip()
        name = re.match(r"query (\w+)", document)
        assert name is not None
        found[name.group(1)] = document
    only = os.environ.get("SCREENS_ONLY")
    return {k: v for k, v in found.items() if not only or k in only.split(",")}


async def _scalar(backend: Backend, stmt: Any) -> Any:
    async with backend.engine.connect() as conn:
        return (await conn.execute(stmt.limit(1))).first()


async def callers(backend: Backend) -> dict[str, tuple[User, Organisation | None]]:
    found: dict[str, tuple[User, Organisation | None]] = {}
    for role in ("ADMIN", "MANAGER"):
        stmt = (
            select(User.email, Organisation.slug)
            .join(Membership, Membership.user_id == User.id)
            .join(Organisation, Organisation.id == Membership.organisation_id)
            .join(MembershipRole, MembershipRole.membership_id == Membership.id)
            .where(MembershipRole.role == ("SUPER_ADMIN" if role == "ADMIN" else role))
            .order_by(Organisation.id, User.id)
        )
        if role == "MANAGER":  # a manager with a team
            stmt = stmt.where(Membership.location_id.is_not(None))
        row = await _scalar(backend, stmt)
        found[role] = (User(email=row[0]), Organisation(slug=row[1]))
    found["EXTERNAL_ASSESSOR"] = (await external_assessor_at_work(backend), None)
    return found


async def external_assessor_at_work(backend: Backend) -> User:
    """The presets have no external assessors: one allocated to 20 learners of the first
    organisation, with evidence submitted on their records."""
    world = World(backend.engine)
    assessor = await world.external_assessor(name="Screens Assessor")
    async with AsyncSession(backend.engine) as session:
        learners = list(
            await session.scalars(
                select(Learner).order_by(Learner.organisation_id, Learner.id).limit(20)
            )
        )
        records = list(
            await session.scalars(
                select(ApprenticeRecord).where(
                    ApprenticeRecord.learner_id.in_([learner.id for learner in learners])
                )
            )
        )
    for learner in learners:
        await world.allocate(learner, assessor)
    for record in records:
        await world.evidence(record)
    return assessor


async def variables(backend: Backend, org_slug: str) -> dict[str, dict[str, Any]]:
    org = await _scalar(backend, select(Organisation.id).where(Organisation.slug == org_slug))
    learner = await _scalar(
        backend, select(Learner.id).where(Learner.organisation_id == org[0]).order_by(Learner.id)
    )
    record = await _scalar(
        backend,
        select(ApprenticeRecord.id)
        .where(ApprenticeRecord.organisation_id == org[0])
        .order_by(ApprenticeRecord.id),
    )
    course = await _scalar(backend, select(Course.id).order_by(Course.id))
    return {
        "LearnerProfile": {"id": gid("Learner", learner[0])},
        "Access": {"id": gid("Learner", learner[0])},
        "RecordHistory": {"id": gid("ApprenticeRecord", record[0])},
        "Eligible": {"courseId": gid("Course", course[0])},
        "RecallList": {"courseId": gid("Course", course[0])},
    }


async def test_screens(api: Api, backend: Backend, services: Services) -> None:
    await seed_preset(backend.engine, PRESET)
    people = await callers(backend)
    org = people["ADMIN"][1]
    assert org is not None
    given = await variables(backend, org.slug)
    reads = api.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
    print(f"\n[{backend.name}] preset {PRESET}, {ROUNDS} rounds per screen")
    for name, document in screens().items():
        user, organisation = people[ROLES[name]]
        call = api.as_(user, organisation)
        values = given.get(name, {})
        for _ in range(3):
            (await call(document, **values)).ok()
        answered = reads.answered
        timings = []
        cpu = time.thread_time()
        with counting(services.engine) as statements:
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                (await call(document, **values)).ok()
                timings.append((time.perf_counter() - t0) * 1000)
        cpu_ms = (time.thread_time() - cpu) * 1000 / ROUNDS
        compiled = (reads.answered - answered) == ROUNDS
        if not compiled and os.environ.get("SCREENS_WHY"):
            print(name, "over budget:", reads.over_budget, "failed:", reads.failed)
        print(
            f"[{backend.name}] {name:<22} {ROLES[name]:<17} "
            f"statements={len(statements) / ROUNDS:>4.1f} compiled={compiled!s:<5} "
            f"cpu={cpu_ms:>5.2f}ms p50={statistics.median(timings):>5.1f}ms"
        )

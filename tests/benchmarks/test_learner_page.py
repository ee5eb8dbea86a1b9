"""Benchmark: the 50-learner page with nested records and assignments, in process.

Run with `make bench` (BENCH_PRESET=small|bench, default small). Prints p50/p95 latency and
the statement count per request for an admin (organisation scope), a manager (team scope)
and an assessor (assigned scope), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import statistics
import time

from sqlalchemy import select

from db.models import Membership, MembershipRole, Organisation, User
from db.seed import seed_preset
from server.services import Services
from tests.api.test_statement_budgets import PAGE
from tests.conftest import Backend
from tests.helpers import Api, counting

PRESET = os.environ.get("BENCH_PRESET", "small")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "100"))


async def _someone(backend: Backend, role: str) -> tuple[User, Organisation]:
    async with backend.engine.connect() as conn:
        row = (
            await conn.execute(
                select(User.email, Organisation.slug)
                .join(Membership, Membership.user_id == User.id)
                .join(Organisation, Organisation.id == Membership.organisation_id)
                .join(MembershipRole, MembershipRole.membership_id == Membership.id)
                .where(MembershipRole.role == role)
                .order_by(User.id)
                .limit(1)
            )
        ).one()
    return User(email=row[0]), Organisation(slug=row[1])


async def test_learner_page_latency(api: Api, backend: Backend, services: Services) -> None:
    started = time.perf_counter()
    await seed_preset(backend.engine, PRESET)
    print(f"\n[{backend.name}] seeded preset {PRESET} in {time.perf_counter() - started:.1f}s")
    for role in ("SUPER_ADMIN", "MANAGER", "ASSESSOR"):
        user, org = await _someone(backend, role)
        call = api.as_(user, org)
        for _ in range(5):
            (await call(PAGE, first=50)).ok()
        timings = []
        with counting(services.engine) as statements:
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                data = (await call(PAGE, first=50)).ok()
                timings.append((time.perf_counter() - t0) * 1000)
        timings.sort()
        p50 = statistics.median(timings)
        p95 = timings[int(len(timings) * 0.95) - 1]
        print(
            f"[{backend.name}] {role:<12} total={data['learners']['totalCount']:>6} "
            f"page={len(data['learners']['edges'])} p50={p50:.1f}ms p95={p95:.1f}ms "
            f"statements/request={len(statements) / ROUNDS:.0f}"
        )

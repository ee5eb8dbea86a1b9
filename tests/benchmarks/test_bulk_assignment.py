"""Benchmark: assign 1,000 records in one call and remove them again (small preset).

Run with `make bench`. Prints wall time per call and statements per call, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import os
import statistics
import time

from sqlalchemy import select

from db.models import ApprenticeRecord
from db.seed import seed_preset
from server.services import Services
from tests.api.test_assignments import ASSIGN, UNASSIGN
from tests.benchmarks.test_learner_page import PRESET, _someone
from tests.conftest import Backend
from tests.helpers import Api, counting, gid

ROUNDS = int(os.environ.get("BENCH_ROUNDS_BULK", "5"))


async def test_assign_and_remove_1000_records(
    api: Api, backend: Backend, services: Services
) -> None:
    await seed_preset(backend.engine, PRESET)
    admin, org = await _someone(backend, "SUPER_ADMIN")
    assessor, _ = await _someone(backend, "ASSESSOR")
    async with backend.engine.connect() as conn:
        record_ids = list(
            (
                await conn.execute(
                    select(ApprenticeRecord.id)
                    .where(
                        ApprenticeRecord.organisation_id
                        == select(ApprenticeRecord.organisation_id).limit(1).scalar_subquery()
                    )
                    .order_by(ApprenticeRecord.id)
                    .limit(1000)
                )
            ).scalars()
        )
    assert len(record_ids) == 1000
    ids = [gid("ApprenticeRecord", pk) for pk in record_ids]
    async with backend.engine.connect() as conn:
        from db.models import User

        assessor_id = (
            await conn.execute(select(User.id).where(User.email == assessor.email))
        ).scalar_one()
    call = api.as_(admin, org)
    assign_ms, remove_ms = [], []
    for _ in range(ROUNDS):
        with counting(services.engine) as assigned:
            t0 = time.perf_counter()
            result = (
                await call(ASSIGN, input={"assigneeId": gid("User", assessor_id), "recordIds": ids})
            ).ok()
            assign_ms.append((time.perf_counter() - t0) * 1000)
        assert result["assignRecords"]["__typename"] == "RecordsAssigned"
        with counting(services.engine) as removed:
            t0 = time.perf_counter()
            result = (await call(UNASSIGN, input={"recordIds": ids})).ok()
            remove_ms.append((time.perf_counter() - t0) * 1000)
        assert result["unassignRecords"]["__typename"] == "RecordsUnassigned"
        assert len(result["unassignRecords"]["ended"]) >= 1000
    print(
        f"\n[{backend.name}] assign 1,000: median {statistics.median(assign_ms):.0f} ms "
        f"({len(assigned)} statements); remove: median {statistics.median(remove_ms):.0f} ms "
        f"({len(removed)} statements)"
    )

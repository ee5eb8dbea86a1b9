"""The N+1 guard: a page of learners with nested data costs a fixed number of statements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import AssignmentRole
from server.services import Services
from tests.factories import World
from tests.helpers import Api

PAGE = """query($first: Int!) {
  learners(first: $first) {
    totalCount
    edges { cursor node {
      id name initials location { name } department { name }
      records { id programme status
        assignments { role assignedAt user { name initials avatarUrl } assignedBy { name } }
        evidence { title status }
      }
      allocations { assessor { name } }
    } }
    pageInfo { hasNextPage endCursor }
  }
}"""

# Authentication (user, membership, roles) + learners page + count + records + assignments
# + users + locations + departments + evidence + allocations + their assessors.
BUDGET = 11


@contextmanager
def counting(engine: AsyncEngine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_learner_page_statement_count_does_not_grow(
    api: Api, world: World, services: Services
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessors = [await world.staff(org, "ASSESSOR") for _ in range(3)]
    locations = [await world.location(org) for _ in range(2)]
    for n in range(60):
        learner = await world.learner(org, location=locations[n % 2])
        for r in range(2):
            record = await world.record(learner)
            await world.assign(record, assessors[(n + r) % 3])
            await world.assign(
                record, assessors[(n + r + 1) % 3], AssignmentRole.TRAINING_COORDINATOR
            )
            await world.evidence(record)
    call = api.as_(admin, org)

    counts = {}
    for size in (5, 50):
        with counting(services.engine) as statements:
            data = (await call(PAGE, first=size)).ok()
        assert len(data["learners"]["edges"]) == size
        assert all(len(e["node"]["records"]) == 2 for e in data["learners"]["edges"])
        counts[size] = len(statements)
    assert counts[5] == counts[50], counts
    assert counts[50] <= BUDGET, (counts, [s.split("\n")[0][:90] for s in statements])
    print(f"statements for a 50-learner page: {counts[50]}")

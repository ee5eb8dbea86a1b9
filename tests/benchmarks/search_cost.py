"""What searches and counts cost on a seeded database, through the app and in the planner.

    createdb -h 127.0.0.1 -U postgres caseload_bench
    export CASELOAD_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/caseload_bench
    export CASELOAD_JWT_SECRET=<any long string>
    .venv/bin/caseload db seed --preset bench
    .venv/bin/python -m tests.benchmarks.search_cost [--rounds 3] [--warm 1]

For each document, as the super admin of the largest organisation: the answer's `extensions`
(cost, or the refusal's code), the median time of the whole request in process, and, for each
SQL statement it ran, the database's own execution time (`EXPLAIN ANALYZE` of the statement
with its parameters, on the app's engine, so with Caseload's session settings) and the indexes
the plan reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event, func, select

from db.models import Learner, Membership, MembershipRole, Organisation, User
from resolvers.ids import encode_id
from server import compiled
from server.app import create_app
from server.services import Services
from server.settings import Settings
from server.tokens import mint_token

LEARNERS = "{ learners(first: 50, filter: {search: %s}) { totalCount edges { node { id } } } }"
DOCUMENTS = {
    "broad search": LEARNERS % '"a"',
    "3-character term": LEARNERS % '"ell"',
    "3-character term, no match": LEARNERS % '"zqN"',
    "100-character term": LEARNERS % json.dumps("a" * 100),
    "1,000-character term": LEARNERS % json.dumps("a" * 1000),
    "records search count": (
        '{ apprenticeRecords(first: 0, filter: {search: "zqN"}) { totalCount } }'
    ),
    "broad count": "{ apprenticeRecords(first: 0, filter: {unassigned: true}) { totalCount } }",
    "staff search": '{ staff(first: 50, filter: {search: "ell"}) { totalCount } }',
    "licence eligible search": (
        "query($c: ID!) { licenceEligibleLearners(courseId: $c, first: 0, filter: {search: "
        '"ell"}) { totalCount } }'
    ),
}


@contextmanager
def capture(services: Services) -> Iterator[list[tuple[str, Any]]]:
    """The SELECT statements run meanwhile, with their parameters, by either executor (the
    compiled path runs its statements on the driver itself)."""
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.split()[0].upper() == "SELECT":
            statements.append((statement, parameters))

    fetch = compiled.Driver.fetch

    async def fetching(driver: Any, statement: str, args: list[Any]) -> Any:
        statements.append((statement, args))
        return await fetch(driver, statement, args)

    event.listen(services.engine.sync_engine, "before_cursor_execute", record)
    compiled.Driver.fetch = fetching  # type: ignore[method-assign,assignment]
    try:
        yield statements
    finally:
        compiled.Driver.fetch = fetch  # type: ignore[method-assign]
        event.remove(services.engine.sync_engine, "before_cursor_execute", record)


def _indexes(plan: dict[str, Any]) -> Iterator[str]:
    if "Index Name" in plan:
        yield f"{plan['Node Type']} {plan['Index Name']}"
    for child in plan.get("Plans", ()):
        yield from _indexes(child)


async def explain(services: Services, statement: str, parameters: Any) -> tuple[float, Any]:
    async with services.engine.connect() as conn:
        raw = (
            await conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, tuple(parameters or ())
            )
        ).scalar_one()
    found = raw if isinstance(raw, list) else json.loads(raw)
    return float(found[0]["Execution Time"]), found[0]["Plan"]


async def _caller(services: Services) -> tuple[str, str, str]:
    """The super admin of the organisation with the most learners: (email, slug, revision)."""
    async with services.engine.connect() as conn:
        org_id, slug = (
            await conn.execute(
                select(Organisation.id, Organisation.slug)
                .join(Learner, Learner.organisation_id == Organisation.id)
                .group_by(Organisation.id)
                .order_by(func.count().desc())
                .limit(1)
            )
        ).one()
        email = (
            await conn.execute(
                select(User.email)
                .join(Membership, Membership.user_id == User.id)
                .join(MembershipRole, MembershipRole.membership_id == Membership.id)
                .where(Membership.organisation_id == org_id, MembershipRole.role == "SUPER_ADMIN")
                .limit(1)
            )
        ).scalar_one()
        revision = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar()
    return email, slug, str(revision)


async def measure(
    settings: Settings, label: str, body: dict[str, Any], rounds: int, warm: int
) -> str:
    """One document on an app of its own: a new pool, so that no statement of another document
    is prepared on its connections (PostgreSQL plans a prepared statement's first five
    executions for their own parameters, then may keep one generic plan)."""
    services = Services.build(settings)
    email, slug, _revision = await _caller(services)
    headers = {"Authorization": f"Bearer {mint_token(settings, email=email, org=slug)}"}
    transport = httpx.ASGITransport(app=create_app(services=services))
    async with httpx.AsyncClient(transport=transport, base_url="http://caseload.test") as client:
        timings = []
        for n in range(warm + rounds):
            started = time.perf_counter()
            answer = (await client.post("/graphql", json=body, headers=headers)).json()
            if n >= warm:
                timings.append((time.perf_counter() - started) * 1000)
        with capture(services) as statements:
            await client.post("/graphql", json=body, headers=headers)
        executed = []
        for statement, parameters in statements:
            ms, plan = await explain(services, statement, parameters)
            executed.append((ms, sorted(set(_indexes(plan)))))
    await services.aclose()
    codes = [e.get("extensions", {}).get("code") for e in answer.get("errors", ())]
    return (
        f"{label}: {answer.get('extensions')} {codes or ''} "
        f"request p50 {statistics.median(timings):.1f} ms; statements: "
        + "; ".join(f"{ms:.1f} ms {', '.join(used)}" for ms, used in executed)
    )


async def main(rounds: int, warm: int) -> None:
    settings = Settings()
    services = Services.build(settings)
    email, slug, revision = await _caller(services)
    print(f"{services.engine.dialect.name}, revision {revision}, {email} of {slug}")
    await services.aclose()
    variables = {"c": encode_id("Course", 1)}
    for label, query in DOCUMENTS.items():
        body = {"query": query, "variables": variables}
        print(await measure(settings, label, body, rounds, warm))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="requests timed")
    parser.add_argument(
        "--warm", type=int, default=1, help="requests before (from 6 on, plans may be generic)"
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.warm))

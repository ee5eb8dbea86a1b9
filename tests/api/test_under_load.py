"""Under load: a request holds at most one database connection, and what a caller who never
signed in sends leaves nothing behind in the process."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import ApiKey
from server.logs import current_record
from server.services import Services
from tests.conftest import AppFactory, Backend
from tests.factories import World
from tests.helpers import Api

COMPILED = "{ learners(first: 5) { totalCount edges { node { id name } } } }"
STANDARD = "{ viewer { roles } }"


class Checkouts:
    """Pooled connections per request: checked out in all, and held at once at most."""

    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.held: Counter[str] = Counter()
        self.owner: dict[int, str] = {}

    def checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        current = current_record()
        request = current.request_id if current is not None else "(no request)"
        self.owner[id(record)] = request
        self.total[request] += 1
        self.held[request] += 1
        self.most[request] = max(self.most[request], self.held[request])

    def checkin(self, _dbapi: Any, record: Any) -> None:
        request = self.owner.pop(id(record), None)
        if request is not None:
            self.held[request] -= 1


@contextmanager
def checkouts(engine: AsyncEngine) -> Iterator[Checkouts]:
    seen = Checkouts()
    target = engine.sync_engine
    event.listen(target, "checkout", seen.checkout)
    event.listen(target, "checkin", seen.checkin)
    try:
        yield seen
    finally:
        event.remove(target, "checkout", seen.checkout)
        event.remove(target, "checkin", seen.checkin)


@pytest.mark.alone
async def test_forty_requests_with_an_idle_key_hold_one_connection_each(
    api: Api, world: World, services: Services, backend: Backend
) -> None:
    """An idle key's last use must be recorded without a second connection: with the pool's
    ten connections held by requests each waiting for an eleventh, the process would stall
    for the pool's timeout, JWT callers included."""
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    await world.learner(org, name="Ada")
    _, key = await world.usable_api_key(org, "ADMIN")
    partner = {"Authorization": f"ApiKey {key}"}
    person = {"Authorization": f"Bearer {api.token(admin, org)}"}
    mutation = 'mutation { createLearner(input: {name: "Fed %d"}) { __typename } }'
    sent = [
        *((f"compiled-{i}", COMPILED, partner) for i in range(20)),
        *((f"standard-{i}", STANDARD, partner) for i in range(15)),
        *((f"mutation-{i}", mutation % i, partner) for i in range(5)),
        *((f"person-{i}", COMPILED if i % 2 else STANDARD, person) for i in range(4)),
    ]

    async def one(request_id: str, query: str, headers: dict[str, str]) -> httpx.Response:
        return await api.client.post(
            "/graphql", json={"query": query}, headers={**headers, "X-Request-Id": request_id}
        )

    started = time.monotonic()
    with checkouts(services.engine) as seen:
        async with asyncio.timeout(20):
            answers = await asyncio.gather(*(one(*request) for request in sent))
    elapsed = time.monotonic() - started

    assert [a.status_code for a in answers] == [200] * len(sent)
    assert [a.json().get("errors") for a in answers] == [None] * len(sent)
    assert elapsed < 10, f"{len(sent)} requests took {elapsed:.1f} s"
    requests = [request_id for request_id, _, _ in sent]
    assert {r: seen.most[r] for r in requests} == dict.fromkeys(requests, 1)
    assert {r: seen.total[r] for r in requests} == dict.fromkeys(requests, 1)

    # The key's use is written afterwards, once, by the one task that writes such notes.
    await services.authenticator.usage.flush()
    async with backend.engine.connect() as conn:
        assert (await conn.execute(select(ApiKey.last_used_at))).scalar_one() is not None


@pytest.mark.alone
async def test_no_free_connection_answers_unavailable_on_both_paths(
    api_with: AppFactory, world: World
) -> None:
    """A pool that stays empty past its timeout is the database being unavailable: a coded
    answer, never HTTP 500, and the compiled path does not hand it on to wait twice."""
    api = await api_with(db_pool_size=1, db_pool_timeout=0.3)
    services: Services = api.client._transport.app.state.services  # type: ignore[attr-defined]
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    (await call(COMPILED)).ok()
    async with services.engine.connect() as held:
        await held.exec_driver_sql("SELECT 1")
        for query in (COMPILED, STANDARD):
            started = time.monotonic()
            answer = await call(query)
            assert answer.status == 200, answer.body
            assert answer.codes == ["UNAVAILABLE"], answer.body
            assert answer.data is None
            assert time.monotonic() - started < 2
    (await call(COMPILED)).ok()


def _rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096


def _megabyte_document(i: int) -> str:
    return "{ learners(first: 1) { totalCount } } #" + f"{i:06d}" + "x" * (1_000_000 - 50)


async def test_two_hundred_anonymous_megabyte_documents_leave_nothing_behind(
    api: Api, services: Services
) -> None:
    documents = services.schema.documents
    for i in range(3):  # warm: the first requests build what every request uses
        assert (await api.post(_megabyte_document(i))).codes == ["UNAUTHENTICATED"]
    before, parsed = _rss(), documents.parsed
    for i in range(3, 203):
        answer = await api.post(_megabyte_document(i))
        assert answer.status == 401 and answer.codes == ["UNAUTHENTICATED"], answer.body
    grown = _rss() - before
    assert grown < 50 * 1024 * 1024, f"RSS grew {grown / 2**20:.0f} MiB"
    assert documents.parsed == parsed  # refused before its document was read
    assert len(documents.kept) == 0


async def test_documents_of_requests_that_fail_sign_in_or_validation_are_not_kept(
    api_with: AppFactory, world: World, backend: Backend
) -> None:
    """With anonymous introspection on, anonymous documents are parsed (introspection may run)
    but not kept; nor are those of a token naming nobody, or of a document that is invalid."""
    api = await api_with(anonymous_introspection=True)
    services: Services = api.client._transport.app.state.services  # type: ignore[attr-defined]
    documents = services.schema.documents
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    nobody = {"Authorization": f"Bearer {api.token_for_email('nobody@example.test')}"}
    forged = {"Authorization": "Bearer not.a.token"}

    for i in range(5):
        query = f"{{ learners(first: {i + 1}) {{ totalCount }} }}"
        assert (await api.post(query)).codes == ["UNAUTHENTICATED"]
        assert (await api.post(query, headers=nobody)).codes == ["UNAUTHENTICATED"]
        assert (await api.post(query, headers=forged)).codes == ["UNAUTHENTICATED"]
        invalid = f"{{ learners(first: {i + 1}) {{ totalCount nope }} }}"
        refused = await api.as_(admin, org)(invalid)
        assert refused.codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert len(documents.kept) == 0

    (await api.as_(admin, org)(COMPILED)).ok()
    (await api.as_(admin, org)(STANDARD)).ok()
    assert set(documents.kept._entries) == {COMPILED, STANDARD}  # signed in: kept


async def test_kept_documents_are_bounded_in_bytes(api_with: AppFactory, world: World) -> None:
    api = await api_with(document_cache_bytes=100_000)
    services: Services = api.client._transport.app.state.services  # type: ignore[attr-defined]
    documents = services.schema.documents
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    for i in range(40):
        (await api.as_(admin, org)(f"{{ learners(first: {i}) {{ totalCount }} }}")).ok()
        assert documents.kept.size <= 100_000
    assert 10 < len(documents.kept) < 40  # the least recently used left


NESTED = (
    "learners(first: 2) { edges { node { id name initials location { name } "
    "records { id programme status assignments { role user { id name initials } } "
    "evidence { title status } } allocations { assessor { name } } "
    "licences { course { title } } } } }"
)
TWENTY_ALIASES = "{ " + " ".join(f"a{i}: {NESTED}" for i in range(20)) + " }"


async def test_planning_past_its_budget_leaves_the_document_to_the_executor(
    api_with: AppFactory, world: World
) -> None:
    """A never-seen 20-alias document takes far more than a few milliseconds to plan: past the
    budget it is answered by the standard executor, and remembered so (planned once)."""
    bounded = await api_with(plan_budget_ms=10)
    unbounded = await api_with(plan_budget_ms=0)
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org, name="Ada")
    await world.record(learner)

    def compiled_of(api: Api) -> Any:
        return api.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]

    paths = compiled_of(bounded)
    first = await bounded.as_(admin, org)(TWENTY_ALIASES)
    assert (paths.over_budget, paths.answered) == (1, 0)
    again = await bounded.as_(admin, org)(TWENTY_ALIASES)
    assert (paths.over_budget, paths.answered) == (1, 0)  # remembered: not planned again
    planned = await unbounded.as_(admin, org)(TWENTY_ALIASES)
    assert compiled_of(unbounded).answered == 1
    assert first.ok() == again.ok() == planned.ok()
    assert first.ok()["a19"]["edges"][0]["node"]["name"] == "Ada"
    # An everyday page plans well within the budget.
    (await bounded.as_(admin, org)(COMPILED)).ok()
    assert paths.answered == 1

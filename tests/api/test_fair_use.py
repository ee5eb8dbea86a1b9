"""Fair use through the API: every answer carries the caller's budget in RateLimit headers, a
request is charged its cost and planning time before it runs, and one over budget answers 429
RATE_LIMITED having run nothing."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text

from db.engine import WRITE_INTENT
from server.fairuse import Lanes
from server.services import Services
from tests.api.test_under_load import TWENTY_ALIASES
from tests.conftest import AppFactory, Backend
from tests.factories import World
from tests.helpers import Api, gid, row_counts

COMPILED = "{ learners(first: 5) { totalCount edges { node { id name } } } }"
STANDARD = "{ viewer { roles } }"
CREATE = 'mutation { createLearner(input: {name: "Budgeted"}) { __typename } }'
REDIS_URL = os.environ.get("CASELOAD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def budget(response: httpx.Response) -> tuple[int, int, int]:
    h = response.headers
    return int(h["RateLimit-Limit"]), int(h["RateLimit-Remaining"]), int(h["RateLimit-Reset"])


async def post(api: Api, query: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return await api.client.post("/graphql", json={"query": query}, headers=headers or {})


async def test_every_answer_carries_the_callers_budget(api_with: AppFactory, world: World) -> None:
    api = await api_with(rate_points_per_minute=1_000_000)
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    person = {"Authorization": f"Bearer {api.token(admin, org)}"}
    spent = []
    for query, headers in (
        (COMPILED, person),
        (STANDARD, person),
        (CREATE, person),
        ("{ nope }", person),
    ):
        answer = await post(api, query, headers)
        limit, remaining, reset = budget(answer)
        assert limit == 1_000_000 and 0 < reset <= 120  # a sliding window: two at most
        spent.append(remaining)
    assert spent == sorted(spent, reverse=True) and len(set(spent)) == 4
    # The cost of the compiled page (and its planning) was spent: its estimate is 11.
    first = await post(api, COMPILED, person)
    second = await post(api, COMPILED, person)
    assert budget(first)[1] - budget(second)[1] >= first.json()["extensions"]["cost"]

    # Refused bodies, anonymous callers and GET queries carry theirs too (by address).
    for answer in (
        await api.client.post(
            "/graphql", content=b"{", headers={"Content-Type": "application/json"}
        ),
        await post(api, STANDARD),
        await api.client.get("/graphql", params={"query": STANDARD}, headers=person),
    ):
        assert budget(answer)[0] == 1_000_000, answer.text
    assert (await api.client.get("/graphql", params={"query": STANDARD}, headers=person)).json()[
        "data"
    ]["viewer"]["roles"] == ["ADMIN"]


@pytest.mark.alone  # the budget refills as the seconds pass: the requests must outrun it
@pytest.mark.parametrize(
    ("query", "points"),
    [(COMPILED, 40_000), (STANDARD, 400), (CREATE, 400)],
    ids=["compiled", "standard", "mutation"],
)
async def test_over_budget_answers_429_and_runs_nothing(
    api_with: AppFactory, world: World, backend: Backend, query: str, points: int
) -> None:
    api = await api_with(rate_points_per_minute=points)
    org = await world.organisation()
    admin, other = await world.staff(org, "ADMIN"), await world.staff(org, "ADMIN")
    # The other credential's document is parsed and validated now, by a third credential (its
    # answer may be anything), so that the check below spends its cost and no first-time CPU
    # (a pause of 40 ms is 400 points).
    warming = await world.staff(org, "ADMIN")
    await post(api, STANDARD, {"Authorization": f"Bearer {api.token(warming, org)}"})
    person = {"Authorization": f"Bearer {api.token(admin, org)}"}
    answers = [await post(api, query, person) for _ in range(400)]
    refused = [a for a in answers if a.status_code == 429]
    assert refused, f"a budget of {points} points a minute was never spent"
    allowed = answers[: answers.index(refused[0])]
    assert all(a.status_code == 200 for a in allowed)
    before = await row_counts(backend.engine)
    answer = await post(api, query, person)
    assert answer.status_code == 429
    body = answer.json()
    assert body == {
        "errors": [
            {"message": body["errors"][0]["message"], "extensions": {"code": "RATE_LIMITED"}}
        ]
    }
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert budget(answer)[1] < points
    assert await row_counts(backend.engine) == before  # nothing ran
    # Another credential has a budget of its own.
    assert (await api.as_(other, org)(STANDARD)).ok()


async def test_planning_time_is_charged(api_with: AppFactory, world: World) -> None:
    """A never-seen 20-alias document spends its cost and 10 points per planning millisecond."""
    api = await api_with(rate_points_per_minute=10_000_000)
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    person = {"Authorization": f"Bearer {api.token(admin, org)}"}
    before = budget(await post(api, STANDARD, person))[1]
    answer = await post(api, TWENTY_ALIASES, person)
    cost = answer.json()["extensions"]["cost"]
    spent = before - budget(answer)[1]
    assert spent > cost + 10  # more than a millisecond of planning, on any machine


async def test_an_api_key_of_its_own_budget(
    api_with: AppFactory, world: World, backend: Backend
) -> None:
    api = await api_with(rate_points_per_minute=1_000_000)
    org = await world.organisation()
    boss = await world.staff(org, "SUPER_ADMIN")
    created = (
        await api.as_(boss, org)(
            "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) "
            "{ ... on ApiKeyCreated { key apiKey { id ratePointsPerMinute } } } }",
            input={"name": "Feed", "roles": ["ADMIN"], "ratePointsPerMinute": 60},
        )
    ).ok()["createApiKey"]
    assert created["apiKey"]["ratePointsPerMinute"] == 60
    key = {"Authorization": f"ApiKey {created['key']}"}
    answers = [await post(api, STANDARD, key) for _ in range(100)]
    assert answers[0].status_code == 200
    assert budget(answers[1])[0] == 60  # the key's own, once it has signed in
    assert answers[-1].status_code == 429
    assert answers[-1].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    # A stranger who knows the key's prefix (logs show it) does not spend its budget.
    prefix = created["key"].split("_")[1]
    forged = {"Authorization": f"ApiKey ck_{prefix}_{'x' * 40}"}
    assert (await post(api, STANDARD, forged)).json()["errors"][0]["extensions"]["code"] == (
        "UNAUTHENTICATED"
    )
    assert gid("ApiKey", 1)


async def test_processes_on_one_redis_share_a_budget(
    backend: Backend, world: World, api_with: AppFactory
) -> None:
    prefix = f"caseload-test-{uuid.uuid4().hex[:8]}"
    settings: dict[str, Any] = {
        "rate_points_per_minute": 1_000_000,
        "redis_url": REDIS_URL,
        "redis_key_prefix": prefix,
    }
    one, two = await api_with(**settings), await api_with(**settings)
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    person = {"Authorization": f"Bearer {one.token(admin, org)}"}
    after_one = budget(await post(one, STANDARD, person))[1]
    after_two = budget(await post(two, STANDARD, person))[1]
    assert after_two < after_one  # the second process saw what the first spent
    services: Services = one.client._transport.app.state.services  # type: ignore[attr-defined]
    assert services.fair_use.shared


async def test_lanes_run_a_few_at_once_and_queue_the_rest_in_order() -> None:
    lanes = Lanes(width=2, queue=2)
    assert await lanes.enter("k") and await lanes.enter("k")
    order: list[int] = []

    async def waiter(n: int) -> None:
        assert await lanes.enter("k")
        order.append(n)

    first, second = asyncio.create_task(waiter(1)), asyncio.create_task(waiter(2))
    await asyncio.sleep(0)
    assert lanes.busy("k") == 4
    assert not await lanes.enter("k")  # two running, two waiting: refused at once
    assert await lanes.enter("other")  # another credential has lanes of its own
    lanes.leave("k")
    await first
    lanes.leave("k")
    await second
    assert order == [1, 2]
    cancelled = asyncio.create_task(lanes.enter("k"))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert lanes.busy("k") == 2
    for _ in range(2):
        lanes.leave("k")
    assert lanes.busy("k") == 0


@pytest.mark.alone
async def test_a_credential_with_its_lanes_full_is_refused_and_others_are_not(
    api_with: AppFactory, world: World, backend: Backend
) -> None:
    api = await api_with(max_concurrent_per_credential=1, max_queued_per_credential=0)
    services: Services = api.client._transport.app.state.services  # type: ignore[attr-defined]
    org = await world.organisation()
    admin, other = await world.staff(org, "ADMIN"), await world.staff(org, "ADMIN")
    person = {"Authorization": f"Bearer {api.token(admin, org)}"}
    async with backend.engine.connect() as conn:
        # Another transaction holds the learners, so that the first request waits inside.
        if backend.name == "postgresql":
            await conn.execute(text("LOCK TABLE learners IN ACCESS EXCLUSIVE MODE"))
        else:  # SQLite's write lock, taken at BEGIN
            await conn.execution_options(**{WRITE_INTENT: True})
            await conn.execute(text("SELECT 1"))
        held = asyncio.create_task(post(api, CREATE, person))
        for _ in range(100):
            if services.lanes.busy(f"person:{admin.email}@{org.slug}"):
                break
            await asyncio.sleep(0.01)
        refused = await post(api, STANDARD, person)
        assert refused.status_code == 429, refused.text
        assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert refused.headers["Retry-After"] == "1"
        assert (await api.as_(other, org)(STANDARD)).ok()  # other callers get in
        await conn.rollback()
    assert (await held).status_code == 200
    assert (await post(api, STANDARD, person)).status_code == 200


async def test_a_credentials_never_seen_queries_run_one_at_a_time(
    api_with: AppFactory, world: World
) -> None:
    """Planning a query not seen before (and often running it in the standard executor) is
    the costliest work: one credential's such queries take turns; seen ones do not wait."""
    api = await api_with()
    services: Services = api.client._transport.app.state.services  # type: ignore[attr-defined]
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    person = {"Authorization": f"Bearer {api.token(admin, org)}"}
    held = 0
    most = 0

    def checkout(*_: object) -> None:
        nonlocal held, most
        held += 1
        most = max(most, held)

    def checkin(*_: object) -> None:
        nonlocal held
        held -= 1

    engine = services.engine.sync_engine
    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        unseen = [
            f"{{ learners(first: {i + 1}) {{ edges {{ node {{ id }} }} }} }}" for i in range(8)
        ]
        answers = await asyncio.gather(*(post(api, q, person) for q in unseen))
        assert [a.status_code for a in answers] == [200] * 8
        assert most == 1  # one at a time
        most = 0
        seen = await asyncio.gather(*(post(api, q, person) for q in unseen))  # now kept
        assert [a.status_code for a in seen] == [200] * 8
        assert most > 1  # the lanes of seen documents run several at once
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)

"""Fair use budgets: what a charge decides, what it tells the client, where budgets live."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from server import fairuse
from server.auth import AuthFailure, Key, Person
from server.fairuse import FairUse, Verdict, budget_key, headers, judge, points, refusal
from server.settings import Settings

REDIS_URL = os.environ.get("CASELOAD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _settings(tmp_path: Path, **values: object) -> Settings:
    given: dict[str, Any] = {"data_dir": tmp_path / "data", "jwt_secret": "s" * 40, **values}
    return Settings(_env_file=None, **given)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    client = Redis.from_url(REDIS_URL)
    try:
        await cast(Awaitable[bool], client.ping())
    except Exception as exc:
        await client.aclose()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis is required under CI and is unreachable: {exc}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {exc}")
    prefix = f"caseload-test-{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


Build = Callable[..., FairUse]


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Build]:
    """FairUse instances from settings, closed at the end of the test."""
    made: list[FairUse] = []

    def make(*, window_seconds: int = 60, **values: object) -> FairUse:
        made.append(FairUse(_settings(tmp_path, **values), window_seconds=window_seconds))
        return made[-1]

    yield make
    for instance in made:
        await instance.aclose()


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> dict[str, object]:
    """Settings for budgets kept in the process, or in Redis under a prefix of the test's own."""
    if request.param == "memory":
        return {}
    prefix = request.getfixturevalue("redis_prefix")
    return {"redis_url": REDIS_URL, "redis_key_prefix": prefix}


# -- charges --------------------------------------------------------------------------------


async def test_a_budget_is_spent_then_refused_and_a_refusal_spends_nothing(
    build: Build, storage: dict[str, object]
) -> None:
    budget = build(rate_points_per_minute=1_000, **storage)
    first = await budget.charge("person:ann@oak.example@oak", 400)
    assert (first.allowed, first.limit, first.remaining, first.points) == (True, 1_000, 600, 400)
    assert first.retry_after is None and 60 <= first.reset <= 120

    second = await budget.charge("person:ann@oak.example@oak", 400)
    assert (second.allowed, second.remaining) == (True, 200)

    refused = await budget.charge("person:ann@oak.example@oak", 400)
    assert (refused.allowed, refused.remaining, refused.points) == (False, 200, 400)
    assert refused.retry_after is not None and 1 <= refused.retry_after <= refused.reset <= 120

    # the refusal took nothing: what is left still fits
    last = await budget.charge("person:ann@oak.example@oak", 200)
    assert (last.allowed, last.remaining) == (True, 0)


async def test_credentials_have_budgets_of_their_own(
    build: Build, storage: dict[str, object]
) -> None:
    budget = build(rate_points_per_minute=100, **storage)
    assert (await budget.charge("anon:192.0.2.1", 100)).allowed
    assert not (await budget.charge("anon:192.0.2.1", 1)).allowed
    other = await budget.charge("anon:192.0.2.2", 100)
    assert (other.allowed, other.remaining) == (True, 0)


async def test_a_key_of_its_own_budget_overrides_the_setting(
    build: Build, storage: dict[str, object]
) -> None:
    budget = build(rate_points_per_minute=1_000_000, **storage)
    own = await budget.charge("apikey:a1b2c3:0011", 40, limit=50)
    assert (own.allowed, own.limit, own.remaining) == (True, 50, 10)
    refused = await budget.charge("apikey:a1b2c3:0011", 40, limit=50)
    assert (refused.allowed, refused.limit) == (False, 50)
    # a larger budget of its own lets it spend more than the setting would
    generous = build(rate_points_per_minute=10, **storage)
    assert (await generous.charge("apikey:d4e5f6:0022", 5_000, limit=10_000)).allowed
    assert not (await generous.charge("person:x@y.example@-", 11)).allowed


async def test_a_budget_of_its_own_is_remembered_from_sign_in(build: Build) -> None:
    budget = build(rate_points_per_minute=1_000_000)
    budget.remember("apikey:a1b2c3:0011", 50)
    assert (await budget.charge("apikey:a1b2c3:0011", 30)).limit == 50
    assert not (await budget.charge("apikey:a1b2c3:0011", 30)).allowed
    assert (await budget.charge("apikey:a1b2c3:0011", 30, limit=100)).limit == 100  # given wins
    budget.remember("apikey:a1b2c3:0011", None)
    assert (await budget.charge("apikey:a1b2c3:0011", 30)).limit == 1_000_000
    for n in range(fairuse.MAX_REMEMBERED_LIMITS + 1):
        budget.remember(f"apikey:{n}:00", 7)
    assert (await budget.charge("apikey:0:00", 1)).limit == 1_000_000  # the oldest forgotten
    assert (await budget.charge(f"apikey:{fairuse.MAX_REMEMBERED_LIMITS}:00", 1)).limit == 7


async def test_a_request_costing_more_than_the_whole_budget_never_fits(
    build: Build, storage: dict[str, object]
) -> None:
    budget = build(rate_points_per_minute=100, **storage)
    refused = await budget.charge("anon:192.0.2.9", 101)
    assert (refused.allowed, refused.remaining, refused.retry_after) == (False, 100, 60)
    body = orjson.loads(bytes(refusal(refused).body))
    assert (
        "more than this credential's budget of 100 points a minute"
        in (body["errors"][0]["message"])
    )
    assert (await budget.charge("anon:192.0.2.9", 100)).allowed  # it spent nothing


async def test_every_request_spends_at_least_one_point(build: Build) -> None:
    budget = build(rate_points_per_minute=2)
    assert (await budget.charge("anon:192.0.2.3", 0)).remaining == 1
    assert (await budget.charge("anon:192.0.2.3", -5)).remaining == 0
    assert not (await budget.charge("anon:192.0.2.3", 0)).allowed


async def test_the_window_refills(build: Build, storage: dict[str, object]) -> None:
    budget = build(rate_points_per_minute=100, window_seconds=1, **storage)
    assert (await budget.charge("anon:192.0.2.4", 100)).allowed
    refused = await budget.charge("anon:192.0.2.4", 50)
    assert not refused.allowed and refused.retry_after is not None
    # a one-second window: the points fade over the next second, all gone a second later
    assert 1 <= refused.retry_after <= 2 and refused.reset <= 2
    await asyncio.sleep(refused.retry_after + 0.05)
    assert (await budget.charge("anon:192.0.2.4", 50)).allowed


# -- where budgets live ---------------------------------------------------------------------


async def test_processes_on_one_redis_share_budgets(build: Build, redis_prefix: str) -> None:
    one = build(rate_points_per_minute=1_000, redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
    two = build(rate_points_per_minute=1_000, redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
    assert one.shared and two.shared
    assert (await one.charge("person:ann@oak.example@oak", 700)).allowed
    seen = await two.charge("person:ann@oak.example@oak", 200)
    assert (seen.allowed, seen.remaining) == (True, 100)
    assert not (await two.charge("person:ann@oak.example@oak", 200)).allowed
    assert not (await one.charge("person:ann@oak.example@oak", 200)).allowed


async def test_processes_without_redis_keep_budgets_of_their_own(build: Build) -> None:
    one = build(rate_points_per_minute=1_000)
    two = build(rate_points_per_minute=1_000)
    assert not one.shared
    assert (await one.charge("person:ann@oak.example@oak", 1_000)).allowed
    other = await two.charge("person:ann@oak.example@oak", 1_000)
    assert (other.allowed, other.remaining) == (True, 0)  # N processes: up to N times the points


async def test_an_unreachable_redis_counts_in_the_process_and_says_so_once(
    build: Build, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fairuse, "REDIS_RETRY_SECONDS", 0.0)  # ask Redis on every charge
    budget = build(rate_points_per_minute=1_000, redis_url="redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="caseload.fairuse"):
        first = await budget.charge("anon:192.0.2.5", 600)
        second = await budget.charge("anon:192.0.2.5", 600)
    assert (first.allowed, first.remaining) == (True, 400)
    assert not second.allowed  # still a budget: this process's own
    warnings = [r for r in caplog.records if r.name == "caseload.fairuse"]
    assert len(warnings) == 1
    assert "cannot reach Redis (ConnectionError)" in warnings[0].getMessage()
    assert "127.0.0.1:1" not in warnings[0].getMessage()  # no URL, which may hold a password


@pytest.mark.alone
async def test_a_redis_that_never_answers_costs_a_request_half_a_second_then_none(
    build: Build,
) -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()  # reads nothing, answers nothing
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        budget = build(redis_url=f"redis://127.0.0.1:{port}/0")
        started = time.monotonic()
        assert (await asyncio.wait_for(budget.charge("anon:192.0.2.6", 10), 5)).allowed
        assert time.monotonic() - started < 2 * fairuse.REDIS_TIMEOUT_SECONDS + 0.5
        assert not budget.shared  # the next few seconds do not wait for it
        started = time.monotonic()
        assert (await budget.charge("anon:192.0.2.6", 10)).allowed
        assert time.monotonic() - started < 0.1
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_redis_answering_again_shares_budgets_again(
    build: Build, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fairuse, "REDIS_RETRY_SECONDS", 0.0)
    budget = build(rate_points_per_minute=1_000, redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
    budget._shared_down_until = time.monotonic() + 60  # as after a failure
    assert not budget.shared
    assert (await budget.charge("anon:192.0.2.7", 300)).remaining == 700  # in the process
    budget._shared_down_until = 0.0
    other = build(rate_points_per_minute=1_000, redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
    assert (await budget.charge("anon:192.0.2.7", 300)).remaining == 700  # in Redis
    assert (await other.charge("anon:192.0.2.7", 300)).remaining == 400


# -- the arithmetic -------------------------------------------------------------------------


def test_remaining_and_reset_from_the_sliding_window() -> None:
    # 800 points this window, which ends in 21 s; nothing from the last one
    verdict = judge(True, 1_000, 400, (0, 0.0, 800, 81.0), 60)
    assert (verdict.remaining, verdict.reset, verdict.retry_after) == (200, 81, None)
    # the last window's 600 points weigh 30/60 (300), and 100 are spent in this one
    verdict = judge(True, 1_000, 100, (600, 30.0, 100, 90.0), 60)
    assert (verdict.remaining, verdict.reset) == (600, 90)
    # nothing spent at all: the whole budget, nothing to wait for
    verdict = judge(True, 1_000, 1, (0, 0.0, 0, 0.0), 60)
    assert (verdict.remaining, verdict.reset) == (1_000, 0)


def test_retry_after_is_when_the_request_fits() -> None:
    # 800 used this window (ends in 21 s), 400 asked of 1,000: 600 must remain in use, which
    # happens when this window's points weigh 600/800 of a window: 15 s into the next one
    refused = judge(False, 1_000, 400, (0, 0.0, 800, 81.0), 60)
    assert (refused.retry_after, refused.reset) == (36, 81)
    # the last window's 1,000 points weigh 54/60 (900); this window has 50; 200 asked:
    # the last window's part must fall to 750, i.e. weigh 45/60: in 9 s
    refused = judge(False, 1_000, 200, (1_000, 54.0, 50, 114.0), 60)
    assert (refused.remaining, refused.retry_after) == (50, 9)


def test_points_are_cost_and_planning_milliseconds_times_ten() -> None:
    assert points(2_000, 1.25) == 2_013
    assert points(0, 0.0) == 1
    assert points(10_000, 0.01) == 10_001


# -- what the client is told ----------------------------------------------------------------


def test_headers_of_an_allowed_and_a_refused_request() -> None:
    allowed = Verdict(True, 1_000, 600, 81, None, 400)
    assert headers(allowed) == {
        "RateLimit-Limit": "1000",
        "RateLimit-Remaining": "600",
        "RateLimit-Reset": "81",
    }
    refused = Verdict(False, 1_000, 200, 81, 36, 400)
    assert headers(refused) == {
        "RateLimit-Limit": "1000",
        "RateLimit-Remaining": "200",
        "RateLimit-Reset": "81",
        "Retry-After": "36",
    }


def test_a_refusal_is_429_in_the_graphql_error_shape() -> None:
    response = refusal(Verdict(False, 1_000, 200, 81, 36, 400))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "36"
    assert response.headers["ratelimit-remaining"] == "200"
    body = orjson.loads(bytes(response.body))
    assert list(body) == ["errors"]
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "RATE_LIMITED"}
    assert "fits in 36 seconds" in error["message"]


# -- whose budget ---------------------------------------------------------------------------


def test_budget_keys_come_from_what_the_credentials_say() -> None:
    assert budget_key(Person("ann@oak.example", "oak"), "192.0.2.1") == (
        "person:ann@oak.example@oak"
    )
    assert budget_key(Person("ann@oak.example", None), "192.0.2.1") == "person:ann@oak.example@-"
    key = Key("a1b2c3d4e5f6", "ab" * 32)
    assert budget_key(key, "192.0.2.1") == f"apikey:a1b2c3d4e5f6:{'ab' * 8}"
    # someone who knows only the prefix does not spend the key's budget
    assert budget_key(Key("a1b2c3d4e5f6", "cd" * 32), "192.0.2.1") != budget_key(key, None)
    assert budget_key(None, "192.0.2.1") == "anon:192.0.2.1"
    assert budget_key(AuthFailure("The token has expired."), "192.0.2.1") == "anon:192.0.2.1"
    assert budget_key(None, None) == "anon:unknown"
    assert budget_key(None, "testclient") == "anon:testclient"


def test_anonymous_ipv6_callers_share_a_budget_per_64() -> None:
    assert budget_key(None, "2001:db8:1:2:3:4:5:6") == "anon:2001:db8:1:2::/64"
    assert budget_key(None, "2001:db8:1:2:ffff::1") == "anon:2001:db8:1:2::/64"
    assert budget_key(None, "::ffff:192.0.2.8") == "anon:192.0.2.8"


# -- settings -------------------------------------------------------------------------------


def test_fair_use_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = _settings(tmp_path)
    assert defaults.rate_points_per_minute == 1_000_000_000
    # the default lets one credential send 1,000 requests a second of cost 10,000
    assert defaults.rate_points_per_minute >= 1_000 * 10_000 * 60
    assert defaults.redis_url is None and _settings(tmp_path, redis_url=" ").redis_url is None
    monkeypatch.setenv("CASELOAD_RATE_POINTS_PER_MINUTE", "5000")
    monkeypatch.setenv("CASELOAD_REDIS_URL", "redis://:pw@cache.internal:6379/2")
    configured = Settings(_env_file=None)
    assert configured.rate_points_per_minute == 5_000
    assert configured.redis_url is not None
    assert "pw" not in repr(configured)
    with pytest.raises(ValidationError, match="redis://"):
        _settings(tmp_path, redis_url="http://cache.internal")
    with pytest.raises(ValidationError, match="greater than 0"):
        _settings(tmp_path, rate_points_per_minute=0)

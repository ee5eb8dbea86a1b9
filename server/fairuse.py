"""Fair use: each credential has a budget of cost points per minute.

A request spends its cost estimate plus 10 points per millisecond of planning, charged before
it runs. Budgets are sliding window counters of the `limits` library: two counters per
credential (this window's points and the last window's, weighted by how much of it still
overlaps the last minute), so a charge is O(1) whatever the points. A moving window would
keep one entry per point: millions per credential and minute.

Budgets live in the process, or in Redis (`CASELOAD_REDIS_URL`) where every process and
machine shares them. When Redis fails, the process counts in its own budgets for a few
seconds and then asks Redis again: an outage of the limiter slows nothing and refuses
nothing that the process alone would not.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, cast

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError
from starlette.responses import JSONResponse

from resolvers.codes import ErrorCode
from server.auth import AuthFailure, Credentials, Key, Person
from server.http import error_response
from server.settings import Settings

log = logging.getLogger("caseload.fairuse")

WINDOW_SECONDS = 60
# A Redis that does not answer within this long counts as down for this request.
REDIS_TIMEOUT_SECONDS = 0.5
# After Redis failed, budgets are kept in the process this long before Redis is asked again.
REDIS_RETRY_SECONDS = 5.0
# While Redis stays down, its failure is logged at most this often.
REDIS_WARN_EVERY_SECONDS = 60.0
RATE_LIMITED = ErrorCode.RATE_LIMITED
# Budgets of their own remembered per process (API keys that have one), oldest forgotten first.
MAX_REMEMBERED_LIMITS = 10_000

_REDIS_FAILURES: tuple[type[Exception], ...] = (
    RedisError,
    StorageError,
    OSError,
    asyncio.TimeoutError,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a charge decided, and what the budget holds after it."""

    allowed: bool
    limit: int  # points per minute of this credential's budget
    remaining: int  # points left now (after this charge, when allowed)
    reset: int  # seconds until the whole budget is free again, if nothing more is spent
    retry_after: int | None  # refused: seconds until this request's points fit
    points: int  # what the request spent, or would have


def points(cost: int, planning_ms: float) -> int:
    """What a request spends: its cost estimate plus 10 per planning millisecond, at least 1."""
    return max(1, cost + math.ceil(planning_ms * 10))


def budget_key(credentials: Credentials | AuthFailure | None, client: str | None) -> str:
    """Whose budget a request spends, from what its credentials say (no database involved).

    A person in an organisation (the token's email and organisation slug, `-` without one);
    an API key by its prefix and a fragment of its hash, so that someone who knows only a
    key's prefix (it is in logs and the audit trail) cannot spend that key's budget; anyone
    else — no credentials, or ones that fail their check — by client address (IPv6 by /64,
    which one subscriber usually holds whole).
    """
    if isinstance(credentials, Person):
        return f"person:{credentials.email}@{credentials.slug or '-'}"
    if isinstance(credentials, Key):
        return f"apikey:{credentials.prefix}:{credentials.digest[:16]}"
    return f"anon:{_address(client)}"


def _address(client: str | None) -> str:
    if not client:
        return "unknown"
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FairUse:
    """Budgets of cost points per credential: in the process, or shared through Redis."""

    def __init__(self, settings: Settings, *, window_seconds: int = WINDOW_SECONDS) -> None:
        self.points_per_window = settings.rate_points_per_minute
        self.window = window_seconds
        self._local = MemoryStorage()
        self._local_limiter = SlidingWindowCounterRateLimiter(self._local)
        self._pool: ConnectionPool | None = None
        self._shared: RedisStorage | None = None
        self._shared_limiter: SlidingWindowCounterRateLimiter | None = None
        self._shared_down_until = 0.0
        self._warned_at = -math.inf
        self._limits: dict[str, int] = {}
        url = settings.redis_url.get_secret_value() if settings.redis_url else None
        if url:
            self._pool = ConnectionPool.from_url(
                url,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self._shared = RedisStorage(
                "async+" + url,
                implementation="redispy",
                key_prefix=f"{settings.redis_key_prefix}:fair-use",
                # limits passes this to redis-py's client; its options are typed as scalars
                connection_pool=cast(Any, self._pool),
            )
            self._shared_limiter = SlidingWindowCounterRateLimiter(self._shared)

    @property
    def shared(self) -> bool:
        """Whether budgets are kept in Redis (and Redis is believed to answer)."""
        return self._shared is not None and time.monotonic() >= self._shared_down_until

    def remember(self, credential: str, limit: int | None) -> None:
        """A credential's budget of its own (an API key's), learnt when it signed in.

        A request is charged before the database says who is asking: its key's own budget
        applies from the key's next request in this process on.
        """
        if limit is None:
            self._limits.pop(credential, None)
            return
        if credential not in self._limits and len(self._limits) >= MAX_REMEMBERED_LIMITS:
            del self._limits[next(iter(self._limits))]
        self._limits[credential] = limit

    async def charge(self, credential: str, points: int, limit: int | None = None) -> Verdict:
        """Spend `points` of `credential`'s budget if they fit.

        The budget is `limit`, else the one remembered for the credential, else the setting.
        A refused request spends nothing: a caller who waits `retry_after` seconds gets in.
        """
        budget = limit or self._limits.get(credential) or self.points_per_window
        spend = max(1, points)
        item = RateLimitItemPerSecond(budget, self.window, namespace="points")
        if self._shared_limiter is not None and self._shared is not None and self.shared:
            try:
                allowed = await self._shared_limiter.hit(item, credential, cost=spend)
                window = await self._shared.get_sliding_window(
                    item.key_for(credential), item.get_expiry()
                )
            except _REDIS_FAILURES as exc:
                self._redis_failed(exc)
            else:
                self._redis_answered()
                return judge(allowed, budget, spend, window, item.get_expiry())
        allowed = await self._local_limiter.hit(item, credential, cost=spend)
        window = await self._local.get_sliding_window(item.key_for(credential), item.get_expiry())
        return judge(allowed, budget, spend, window, item.get_expiry())

    def _redis_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self._shared_down_until = now + REDIS_RETRY_SECONDS
        if now - self._warned_at >= REDIS_WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "fair use budgets cannot reach Redis (%s): counting in this process alone, "
                "asking Redis again every %.0f seconds",
                type(exc).__name__,
                REDIS_RETRY_SECONDS,
            )

    def _redis_answered(self) -> None:
        if self._warned_at > -math.inf:
            self._warned_at = -math.inf
            log.info("fair use budgets reach Redis again: budgets are shared once more")

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


def judge(
    allowed: bool,
    limit: int,
    spend: int,
    window: tuple[int, float, int, float],
    expiry: float,
) -> Verdict:
    """The verdict from a sliding window counter's state after the charge.

    `window` is (previous count, seconds until it stops weighing, current count, seconds
    until the current counter expires: its window's end plus one window): the budget in use
    is previous * (its seconds left / window) + current.
    """
    previous, previous_ttl, current, _current_ttl = window
    used = previous * previous_ttl / expiry + current
    remaining = max(0, limit - math.floor(used))
    reset = math.ceil(seconds_until(window, expiry, 0))
    if allowed:
        return Verdict(True, limit, remaining, reset, None, spend)
    if spend > limit:
        retry_after = max(1, reset, int(expiry))  # it never fits; the message says so
    else:
        retry_after = max(1, math.ceil(seconds_until(window, expiry, limit - spend)))
    return Verdict(False, limit, remaining, max(reset, retry_after), retry_after, spend)


def seconds_until(window: tuple[int, float, int, float], expiry: float, at_most: float) -> float:
    """Seconds until the points in use fall to `at_most`, if nothing more is spent.

    The last window's points weigh less each second until this window ends; then this
    window's points become the last window's and fade the same way, to nothing one window
    later (when the current counter expires).
    """
    previous, previous_ttl, current, current_ttl = window
    if current > at_most:
        return max(0.0, current_ttl - at_most * expiry / current)
    if previous == 0 or previous * previous_ttl / expiry + current <= at_most:
        return 0.0
    return max(0.0, previous_ttl - (at_most - current) * expiry / previous)


class Lanes:
    """At most `width` requests of one credential run at once in a process, and at most `queue`
    more wait their turn, first come first served; beyond that a request is refused at once.

    A burst of forty requests from one partner then takes `width` database connections and
    as many turns of the event loop, not forty: the other callers' requests keep theirs.
    """

    def __init__(self, width: int, queue: int) -> None:
        self.width = width
        self.queue = queue
        self._running: dict[str, int] = {}
        self._waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}

    def busy(self, credential: str) -> int:
        """Requests of `credential` running or waiting (tests read it)."""
        return self._running.get(credential, 0) + len(self._waiting.get(credential, ()))

    async def enter(self, credential: str) -> bool:
        """Take a lane (waiting for one if need be); False when too many already wait."""
        running = self._running.get(credential, 0)
        if running < self.width:
            self._running[credential] = running + 1
            return True
        waiting = self._waiting.setdefault(credential, collections.deque())
        if len(waiting) >= self.queue:
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting.append(turn)
        try:
            await turn  # the lane is handed over by `leave`, already counted
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave(credential)  # handed over just as it was cancelled
            else:
                waiting.remove(turn)
                if not waiting:
                    del self._waiting[credential]
            raise
        return True

    def leave(self, credential: str) -> None:
        waiting = self._waiting.get(credential)
        while waiting:
            turn = waiting.popleft()
            if not waiting:
                del self._waiting[credential]
            if not turn.done():
                turn.set_result(None)  # the lane passes on; `running` stays
                return
        running = self._running[credential] - 1
        if running:
            self._running[credential] = running
        else:
            del self._running[credential]


def crowded(lanes: Lanes) -> JSONResponse:
    """HTTP 429 RATE_LIMITED: the credential already has as many requests running and waiting
    as it may."""
    return error_response(
        429,
        RATE_LIMITED,
        f"Too many requests of this credential at once ({lanes.width} running and "
        f"{lanes.queue} waiting): wait for answers before sending more.",
        {"Retry-After": "1"},
    )


def headers(verdict: Verdict) -> dict[str, str]:
    """RateLimit-Limit, -Remaining and -Reset for every answer; Retry-After when refused."""
    found = {
        "RateLimit-Limit": str(verdict.limit),
        "RateLimit-Remaining": str(verdict.remaining),
        "RateLimit-Reset": str(verdict.reset),
    }
    if verdict.retry_after is not None:
        found["Retry-After"] = str(verdict.retry_after)
    return found


def refusal(verdict: Verdict) -> JSONResponse:
    """HTTP 429 in the GraphQL error shape, top-level code RATE_LIMITED, with the headers."""
    if verdict.points > verdict.limit:
        message = (
            f"This request costs {verdict.points} points, more than this credential's "
            f"budget of {verdict.limit} points a minute: ask for less (a smaller `first`, "
            "fewer nested lists)."
        )
    else:
        message = (
            f"This credential has spent its budget of {verdict.limit} cost points a minute: "
            f"this request ({verdict.points} points) fits in {verdict.retry_after} seconds."
        )
    return error_response(429, RATE_LIMITED, message, headers(verdict))

"""The documents, the well-behaved caller and its four neighbours, and what each was answered."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

PAGE = (
    "{ learners(first: 50) { totalCount edges { node { id name initials"
    " records { programme assignments { role user { initials } } } } } } }"
)
ALIASES = 30
UNSEEN_ALIASES = 20
BODY_BYTES = 1_000_000

THINK_SECONDS = 0.05  # the victim's pause between two requests
VICTIM_TIMEOUT_SECONDS = 60.0
ADMIN_STREAMS = 3
BURST = 40
BURST_PAUSE_SECONDS = 1.0
UNSEEN_STREAMS = 2
ANONYMOUS_STREAMS = 2

# Answers that say the document was refused before any of it ran.
REFUSALS = frozenset(
    {
        "UNAUTHENTICATED",
        "BAD_REQUEST",
        "BODY_TOO_LARGE",
        "GRAPHQL_VALIDATION_FAILED",
        "INVALID",
        "MAX_ALIASES_EXCEEDED",
        "MAX_COST_EXCEEDED",
        "MAX_DEPTH_EXCEEDED",
        "MAX_TOKENS_EXCEEDED",
        "RATE_LIMITED",
    }
)


def _aliased(field: Callable[[int], str]) -> str:
    return "{ " + " ".join(f"a{i}: {field(i)}" for i in range(ALIASES)) + " }"


def admin_documents(course_id: str) -> dict[str, str]:
    """Counts an admin may ask for, thirty at a time; none of them matches few rows."""
    long = "a" * 1000
    return {
        "30 record searches": _aliased(
            lambda i: f'apprenticeRecords(first: 0, filter: {{search: "zq{i}"}}) {{ totalCount }}'
        ),
        "30 searches of 1,000 a": _aliased(
            lambda _: f'learners(first: 1, filter: {{search: "{long}"}}) {{ totalCount }}'
        ),
        "30 unassigned counts": _aliased(
            lambda i: (
                ("learners" if i % 2 == 0 else "apprenticeRecords")
                + "(first: 0, filter: {unassigned: true}) { totalCount }"
            )
        ),
        "30 licence-eligible counts": _aliased(
            lambda _: (
                f'licenceEligibleLearners(courseId: "{course_id}", first: 0, '
                'filter: {search: "a"}) { totalCount }'
            )
        ),
    }


def unseen_document(n: int) -> str:
    """Twenty nested pages under aliases, operation and alias names no other request used."""
    nested = (
        "edges { node { id name records { programme assignments { role user { initials } } } } }"
    )
    pages = " ".join(f"u{n}_{i}: learners(first: 10) {{ {nested} }}" for i in range(UNSEEN_ALIASES))
    return f"query Unseen{n} {{ {pages} }}"


_PADDING = b"#" * BODY_BYTES


def anonymous_body(n: int) -> bytes:
    """About a megabyte of JSON: a query no other request sent, then a comment to fill it."""
    head = f'{{"query": "query Anonymous{n} {{ learners(first: 1) {{ totalCount }} }} #'.encode()
    tail = b'"}'
    return head + _PADDING[: BODY_BYTES - len(head) - len(tail)] + tail


def body(document: str) -> bytes:
    return json.dumps({"query": document}).encode()


def headers(authorization: str | None) -> dict[str, str]:
    sent = {"Content-Type": "application/json"}
    if authorization is not None:
        sent["Authorization"] = authorization
    return sent


@dataclass
class Answer:
    status: int | None  # None: no answer
    codes: list[str]
    has_data: bool
    latency_ms: float

    @property
    def refused(self) -> bool:
        """Refused before it ran: no data, and only codes that are said before running."""
        return (
            self.status is not None
            and not self.has_data
            and bool(self.codes)
            and set(self.codes) <= REFUSALS
        )


def percentile(values: list[float], share: float) -> float | None:
    """Nearest rank: the smallest value that at least `share` of the values do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass
class Tally:
    """What one caller sent and was answered.

    Latencies are those of requests that ended, answered or not (a client timeout counts
    what it waited); a request still unanswered when its phase ended is counted apart.
    """

    sent: int = 0
    ok: int = 0  # 200 with data and no errors
    statuses: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    internal_errors: int = 0
    unanswered: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, answer: Answer) -> None:
        self.latencies_ms.append(answer.latency_ms)
        self.codes.update(answer.codes)
        self.internal_errors += answer.codes.count("INTERNAL_SERVER_ERROR")
        if answer.status is not None:
            self.statuses[str(answer.status)] += 1
        if answer.status == 200 and answer.has_data and not answer.codes:
            self.ok += 1

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("5"))

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "unanswered": self.unanswered,
            "statuses": dict(sorted(self.statuses.items())),
            "codes": dict(self.codes.most_common()),
            "internal_errors": self.internal_errors,
            "p50_ms": percentile(self.latencies_ms, 0.50),
            "p99_ms": percentile(self.latencies_ms, 0.99),
            "max_ms": max(self.latencies_ms, default=None),
        }


def _codes(response: httpx.Response) -> tuple[list[str], bool]:
    try:
        answer = response.json()
    except ValueError:
        return ["(not JSON)"], False
    if not isinstance(answer, dict):
        return ["(not an object)"], False
    errors = answer.get("errors") or []
    codes = [
        str((error.get("extensions") or {}).get("code", "(no code)"))
        for error in errors
        if isinstance(error, dict)
    ]
    return codes, answer.get("data") is not None


async def send(
    client: httpx.AsyncClient, tally: Tally, content: bytes, authorization: str | None
) -> Answer:
    """POST one body and tally its answer (or that none came)."""
    tally.sent += 1
    started = time.perf_counter()
    try:
        response = await client.post("/graphql", content=content, headers=headers(authorization))
    except httpx.HTTPError as exc:
        answer = Answer(None, [], False, (time.perf_counter() - started) * 1000)
        tally.statuses[f"no answer ({type(exc).__name__})"] += 1
    except asyncio.CancelledError:
        tally.unanswered += 1
        raise
    else:
        codes, has_data = _codes(response)
        answer = Answer(
            response.status_code, codes, has_data, (time.perf_counter() - started) * 1000
        )
    tally.add(answer)
    return answer


def victim(url: str, authorization: str, seconds: float) -> Tally:
    """The well-behaved caller, in a process of its own so that the neighbours' client-side
    work (megabyte bodies, bursts of forty) never delays its clock."""
    return asyncio.run(_victim(url, authorization, seconds))


async def _victim(url: str, authorization: str, seconds: float) -> Tally:
    page = body(PAGE)
    tally = Tally()
    async with httpx.AsyncClient(base_url=url, timeout=VICTIM_TIMEOUT_SECONDS) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await send(client, tally, page, authorization)
            await asyncio.sleep(THINK_SECONDS)
    return tally


@dataclass(frozen=True)
class Credentials:
    """Authorization header values."""

    victim: str
    admin: str
    api_key: str
    unseen: str


def _client(url: str, connections: int) -> httpx.AsyncClient:
    # No client timeout: a neighbour waits as long as the phase lasts, then is cancelled.
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, timeout=None, limits=limits)


async def _streams(count: int, deadline: float, request: Callable[[], Awaitable[Any]]) -> None:
    """`count` callers, each sending its next request as soon as the last is answered."""

    async def stream() -> None:
        while time.monotonic() < deadline:
            await request()

    await asyncio.gather(*(stream() for _ in range(count)))


async def admin_searches(
    url: str, authorization: str, documents: list[str], deadline: float, tally: Tally
) -> None:
    """Neighbour 1: an admin's thirty-alias counts, a few at a time, round and round."""
    bodies: Iterator[bytes] = itertools.cycle([body(d) for d in documents])
    async with _client(url, ADMIN_STREAMS) as client:
        await _streams(
            ADMIN_STREAMS, deadline, lambda: send(client, tally, next(bodies), authorization)
        )


async def key_bursts(url: str, authorization: str, deadline: float, tally: Tally) -> None:
    """Neighbour 2: an API key sending forty pages at once, then pausing for a second."""
    page = body(PAGE)
    async with _client(url, BURST) as client:
        while time.monotonic() < deadline:
            await asyncio.gather(*(send(client, tally, page, authorization) for _ in range(BURST)))
            await asyncio.sleep(BURST_PAUSE_SECONDS)


async def unseen_documents(
    url: str, authorization: str, numbers: Iterator[int], deadline: float, tally: Tally
) -> None:
    """Neighbour 3: every request a document the server has never seen."""
    async with _client(url, UNSEEN_STREAMS) as client:
        await _streams(
            UNSEEN_STREAMS,
            deadline,
            lambda: send(client, tally, body(unseen_document(next(numbers))), authorization),
        )


async def anonymous_bodies(url: str, numbers: Iterator[int], deadline: float, tally: Tally) -> None:
    """Neighbour 4: megabyte bodies with no credentials, each with a query never sent before."""
    async with _client(url, ANONYMOUS_STREAMS) as client:
        await _streams(
            ANONYMOUS_STREAMS,
            deadline,
            lambda: send(client, tally, anonymous_body(next(numbers)), None),
        )

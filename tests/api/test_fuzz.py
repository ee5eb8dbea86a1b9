"""Fuzzing: operations generated from the schema (hypothesis-graphql), sent by several
principals through the real app.

Every generated query and mutation, whatever its arguments (ids of real objects, made-up
and malformed ids, any integer, any string including U+0000, dates at the ends of the
calendar), must be answered without a 5xx, without INTERNAL_SERVER_ERROR, without a
database driver's text, and within the limits: no list longer than 500 items (`first` may
not exceed 500), and a document over a limit (depth 12, 30 aliases, 4,000 tokens) refused.
FUZZ_OPERATIONS operations per CI run, over both databases.
"""

from __future__ import annotations

import json
import os
import re
from base64 import urlsafe_b64encode
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema, nodes

from server.app import create_app
from server.services import Services
from tests.api.test_permissions import permissions_world
from tests.authz import TALLY
from tests.authz.checks import caller_for
from tests.authz.world import Facts, Who, build
from tests.conftest import Backend, make_settings
from tests.helpers import Api

FUZZ_OPERATIONS = {"sqlite": 700, "postgresql": 300}
LIMITS = {"depth": 12, "aliases": 30, "tokens": 4000, "first": 500}
DRIVER_TEXT = re.compile(
    r"asyncpg|aiosqlite|sqlite3|sqlalchemy|psycopg|IntegrityError|OperationalError|"
    r"DataError|ProgrammingError|Traceback|syntax error at or near|CONSTRAINT|violates",
    re.IGNORECASE,
)
MAX_BODY = 2_000_000


@dataclass
class Target:
    api: Api
    facts: Facts
    schema: str

    def __repr__(self) -> str:  # Hypothesis prints the fixtures of a failing example
        return f"Target({len(self.facts.principals())} principals)"


async def target_on(backend: Backend) -> AsyncIterator[Target]:
    await backend.clear()
    facts = await build(backend.engine, permissions_world())
    services = Services.build(make_settings(backend.url))
    try:
        transport = httpx.ASGITransport(app=create_app(services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://caseload.test") as c:
            yield Target(Api(c, services.settings), facts, services.schema.as_str())
    finally:
        await services.aclose()


@pytest.fixture
async def sqlite_target(sqlite_backend: Backend) -> AsyncIterator[Target]:
    async for target in target_on(sqlite_backend):
        yield target


@pytest.fixture
async def postgresql_target(postgresql_backend: Backend) -> AsyncIterator[Target]:
    async for target in target_on(postgresql_backend):
        yield target


def real_ids(facts: Facts) -> list[str]:
    from tests.authz.world import all_ids
    from tests.helpers import gid

    return [gid(t, pk) for t, pks in all_ids(facts).items() for pk in pks]


_STRATEGIES: dict[tuple[str, str], st.SearchStrategy[str]] = {}


def operations(target: Target, field: str) -> st.SearchStrategy[str]:
    """Operations on one root field (or, for "*", all of them at once); ids of real
    objects, made up or malformed; integers mostly around the page limit."""
    key = (target.schema, field)
    if key not in _STRATEGIES:
        text = st.text(max_size=12)
        real = st.sampled_from(real_ids(target.facts))
        digits = st.one_of(
            st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=3),
            st.sampled_from(["²", "1³", "¼", "٣"]),  # digits that are not ASCII
        )
        odd_ids = st.builds(
            lambda t, pk: urlsafe_b64encode(f"{t}:{pk}".encode()).decode().rstrip("="),
            st.sampled_from(["Learner", "User", "ApprenticeRecord", "Evidence", "Nope"]),
            st.one_of(digits, st.integers().map(str)),
        )
        ids = st.one_of(real, real, text, odd_ids).map(nodes.String)
        cursors = st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=2).map(
            lambda v: urlsafe_b64encode(json.dumps(v).encode()).decode().rstrip("=")
        )
        strings = st.one_of(text, text.map(lambda t: f"{t}\x00{t}"), cursors, digits)
        extreme = st.sampled_from(
            ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2024-02-30T00:00:00"]
        )
        datetimes = st.one_of(st.datetimes().map(lambda d: d.isoformat() + "Z"), extreme)
        dates = st.one_of(st.dates().map(lambda d: d.isoformat()), st.just("0000-00-00"))
        integers = st.one_of(st.integers(-1, 501), st.integers(-(2**63), 2**63))
        _STRATEGIES[key] = from_schema(
            target.schema,
            fields=None if field == "*" else [field],
            custom_scalars={
                "ID": ids,
                "String": strings.map(nodes.String),
                "Int": integers.map(nodes.Int),
                "DateTime": datetimes.map(nodes.String),
                "Date": dates.map(nodes.String),
            },
        )
    return _STRATEGIES[key]


# Once per schema: building it from the SDL took most of each operation's time.
@cache
def root_fields(schema: str) -> tuple[str, ...]:
    parsed = graphql.build_schema(schema)
    found = ["*"]
    for root in (parsed.query_type, parsed.mutation_type):
        if root is not None:
            found += sorted(root.fields)
    return tuple(found)


def depth_and_aliases(document: str) -> tuple[int, int, int]:
    """(depth, aliases, tokens) of a document, as the limits count them (roughly)."""
    parsed = graphql.parse(document)
    aliases = 0

    def depth(node: Any) -> int:
        nonlocal aliases
        selections = getattr(getattr(node, "selection_set", None), "selections", None) or []
        deepest = 0
        for child in selections:
            if isinstance(child, graphql.FieldNode) and child.alias is not None:
                aliases += 1
            extra = 1 if isinstance(child, graphql.FieldNode) else 0
            deepest = max(deepest, extra + depth(child))
        return deepest

    found = max(depth(d) for d in parsed.definitions)
    tokens = len(
        re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\"[^\"]*\"|[{}():,\[\]!$@=]|\.\.\.", document)
    )
    return found, aliases, tokens


def longest_list(value: Any) -> int:
    if isinstance(value, list):
        return max([len(value), *(longest_list(v) for v in value)])
    if isinstance(value, dict):
        return max([0, *(longest_list(v) for v in value.values())])
    return 0


async def send(target: Target, who: Who, document: str) -> list[str]:
    """Problems with the answer to one operation."""
    caller = caller_for(target.api, target.facts, who)
    response = await caller.api.client.post(
        "/graphql", json={"query": document, "variables": {}}, headers=caller.headers
    )
    problems = []
    if response.status_code >= 500:
        problems.append(f"HTTP {response.status_code}")
    body = response.text
    if len(response.content) > MAX_BODY:
        problems.append(f"{len(response.content)} bytes")
    if DRIVER_TEXT.search(body):
        problems.append(f"driver text: {DRIVER_TEXT.search(body)}")
    try:
        answer = json.loads(body)
    except ValueError:
        return [*problems, f"not JSON: {body[:200]!r}"]
    codes = [(e.get("extensions") or {}).get("code") for e in answer.get("errors") or []]
    if "INTERNAL_SERVER_ERROR" in codes:
        problems.append("INTERNAL_SERVER_ERROR")
    if longest_list(answer.get("data")) > LIMITS["first"]:
        problems.append(f"a list of {longest_list(answer.get('data'))} items")
    depth, aliases, tokens = depth_and_aliases(document)
    over = depth > LIMITS["depth"] or aliases > LIMITS["aliases"] or tokens > LIMITS["tokens"]
    if over and answer.get("data"):
        problems.append(f"over a limit (depth {depth}, aliases {aliases}) but answered")
    return [f"{p}: {body[:300]}" for p in problems]


def principals(facts: Facts) -> list[Who]:
    """One of every kind: each membership role of the first organisation, the external
    assessor, support, and the API key."""
    org = facts.organisations[0].id
    seen: dict[frozenset[str], Who] = {}
    for who in facts.principals():
        if who.organisation_id in (org, None):
            seen.setdefault(who.roles | {who.kind}, who)
    return list(seen.values())


async def fuzz(target: Target, data: st.DataObject, database: str) -> None:
    who = data.draw(st.sampled_from(principals(target.facts)), label="principal")
    field = data.draw(st.sampled_from(root_fields(target.schema)), label="root field")
    document = data.draw(operations(target, field), label="operation")
    problems = await send(target, who, document)
    TALLY[f"fuzz: operations on {database}"] += 1
    assert not problems, (who.label(target.facts), document, problems)


_SLOW = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(
    max_examples=int(os.environ.get("CASELOAD_FUZZ", FUZZ_OPERATIONS["sqlite"])),
    suppress_health_check=_SLOW,
)
@given(data=st.data())
async def test_generated_operations_on_sqlite(sqlite_target: Target, data: st.DataObject) -> None:
    await fuzz(sqlite_target, data, "sqlite")


@settings(
    max_examples=int(os.environ.get("CASELOAD_FUZZ", FUZZ_OPERATIONS["postgresql"])),
    suppress_health_check=_SLOW,
)
@given(data=st.data())
async def test_generated_operations_on_postgresql(
    postgresql_target: Target, data: st.DataObject
) -> None:
    await fuzz(postgresql_target, data, "postgresql")

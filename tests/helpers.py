"""Talking to the app as a given person, and asserting outcomes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.base import Base
from db.models import AuditEvent, Organisation, User
from resolvers.codes import ErrorCode
from resolvers.ids import encode_id
from server.logs import statement_observers
from server.settings import Settings
from server.tokens import mint_token


def gid(type_name: str, pk: int) -> str:
    return encode_id(type_name, pk)


@dataclass
class Result:
    status: int
    body: dict[str, Any]

    @property
    def data(self) -> Any:
        return self.body.get("data")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.body.get("errors") or []

    @property
    def codes(self) -> list[str]:
        return [e.get("extensions", {}).get("code") for e in self.errors]

    def ok(self) -> Any:
        assert self.status == 200, self.body
        assert not self.errors, self.errors
        return self.data


class Caller:
    def __init__(self, api: Api, headers: dict[str, str]) -> None:
        self.api = api
        self.headers = headers

    async def __call__(self, query: str, **variables: Any) -> Result:
        return await self.api.post(query, variables, self.headers)


class Api:
    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        # Mints a token an OpenID Connect provider signs, for (email, organisation slug), where
        # the app trusts one (tests/provider.py); None: HS256 tokens only.
        self.signer: Callable[[str, str | None], str] | None = None

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Result:
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers or {}
        )
        return Result(response.status_code, response.json())

    def token(
        self, user: User, org: Organisation | None = None, ttl: timedelta | None = None
    ) -> str:
        return mint_token(self.settings, email=user.email, org=org.slug if org else None, ttl=ttl)

    def token_for_email(self, email: str, org_slug: str | None = None) -> str:
        return mint_token(self.settings, email=email, org=org_slug)

    def as_(self, user: User, org: Organisation | None = None) -> Caller:
        return Caller(self, {"Authorization": f"Bearer {self.token(user, org)}"})

    def with_headers(self, headers: dict[str, str]) -> Caller:
        return Caller(self, headers)

    def with_key(self, key: str) -> Caller:
        """A partner system calling with an API key."""
        return Caller(self, {"Authorization": f"ApiKey {key}"})


def assert_granted(result: Result, typename: str) -> dict[str, Any]:
    """A mutation answered with its success type; returns that payload."""
    data = result.ok()
    (payload,) = data.values()
    assert payload["__typename"] == typename, payload
    return payload  # type: ignore[no-any-return]


def assert_denied(result: Result, code: str = "FORBIDDEN") -> None:
    """The operation was refused as a whole with top-level errors, every one of `code`
    (HTTP 401 for UNAUTHENTICATED, 200 otherwise)."""
    assert result.status == (401 if code == "UNAUTHENTICATED" else 200), result.body
    assert result.codes and set(result.codes) == {code}, result.body
    assert not any(v for v in (result.data or {}).values()), result.body


async def assert_denied_unchanged(
    engine: AsyncEngine, request: Awaitable[Result], code: str = "FORBIDDEN"
) -> Result:
    """`request` (not yet awaited) is refused with `code`, and no table changed."""
    before = await row_counts(engine)
    result = await request
    assert_denied(result, code)
    assert await row_counts(engine) == before, "a refused operation changed the database"
    return result


def assert_error(result: Result, typename: str, code: str) -> dict[str, Any]:
    """A mutation answered with one of its error types."""
    data = result.ok()
    (payload,) = data.values()
    assert payload["__typename"] == typename, payload
    assert payload["code"] == code, payload
    return payload  # type: ignore[no-any-return]


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    """Rows per table: compare before and after to prove nothing was written."""
    counts = {}
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            counts[table.name] = (
                await conn.execute(select(func.count()).select_from(table))
            ).scalar_one()
    return counts


async def database_state(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: compare before and after to prove nothing was written or
    changed (row counts miss an UPDATE)."""
    state = {}
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            state[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return state


async def audit_actions(engine: AsyncEngine) -> list[tuple[str, str, int | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(AuditEvent.action, AuditEvent.subject_type, AuditEvent.actor_id).order_by(
                AuditEvent.id
            )
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


@contextmanager
def counting(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements the app runs on `engine` meanwhile, on either read path (transaction
    control left out), as the access log counts them; other apps' statements (a background
    flush of another test's app) are not this one's."""
    statements: list[str] = []

    def record(statement: str, source: object) -> None:
        if source is engine.sync_engine and statement.split()[0].upper() not in (
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
        ):
            statements.append(statement)

    statement_observers.append(record)
    try:
        yield statements
    finally:
        statement_observers.remove(record)


def answered_codes(body: object) -> set[str]:
    """The codes an answer carries: its errors' `extensions.code`, and the `code` of every
    error type and bulk item in its data (an object with a `code` and a `message`)."""
    found: set[str] = set()
    if isinstance(body, dict):
        for error in body.get("errors") or []:
            if isinstance(error, dict) and isinstance(error.get("extensions"), dict):
                code = error["extensions"].get("code")
                if code is not None:
                    found.add(str(code))
    stack: list[object] = [body.get("data") if isinstance(body, dict) else None]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("code"), str) and isinstance(item.get("message"), str):
                found.add(item["code"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


_JSON_TYPES = ("application/json", "application/graphql-response+json")


async def codes_are_listed(response: httpx.Response) -> None:
    """A response hook for the test clients: every code answered is in enum ErrorCode."""
    if not response.headers.get("content-type", "").startswith(_JSON_TYPES):
        return
    await response.aread()
    try:
        body = response.json()
    except ValueError:
        return
    unlisted = answered_codes(body) - {code.value for code in ErrorCode}
    assert not unlisted, f"answered codes not listed in ErrorCode: {sorted(unlisted)}"

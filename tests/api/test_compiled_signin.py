"""The compiled path signs in and reads in one statement for a caller it has seen before, and
answers only for the caller the credentials name now.

The statement is built for the caller the same credentials named last time; its own sign-in
rows decide whether the answer is used. Every change that makes them name another caller (a
role, a unit, a deactivation, a revoked key) must be answered for the caller as they are now.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from db.models import Organisation, User
from server.app import create_app
from server.compiled import CompiledReads, Driver
from server.services import Services
from tests.conftest import Backend, make_settings
from tests.factories import World
from tests.helpers import Api, assert_granted, gid

LEARNERS = "{ learners(first: 10) { totalCount edges { node { name } } } }"
UPDATE_STAFF = """mutation($input: UpdateStaffMemberInput!) {
  updateStaffMember(input: $input) { __typename }
}"""
REVOKE = """mutation($id: ID!) {
  revokeApiKey(input: {apiKeyId: $id}) { __typename }
}"""


@dataclass
class App:
    api: Api
    compiled: CompiledReads
    round_trips: list[str]  # what the compiled path sent the database, in order


@pytest.fixture
async def app(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    services = Services.build(make_settings(backend.url))
    asgi = create_app(services=services)
    round_trips: list[str] = []
    fetch, command = Driver.fetch, Driver.command

    async def fetched(driver: Driver, statement: str, args: list[Any]) -> Any:
        round_trips.append("UNION ALL" if "UNION ALL" in statement else "SELECT")
        return await fetch(driver, statement, args)

    async def commanded(driver: Driver, text: str) -> None:
        round_trips.append(text.split()[0])
        await command(driver, text)

    monkeypatch.setattr(Driver, "fetch", fetched)
    monkeypatch.setattr(Driver, "command", commanded)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://t")
    yield App(Api(client, services.settings), asgi.state.compiled_reads, round_trips)
    await client.aclose()
    await services.aclose()


def names(answer: Any) -> list[str]:
    return [e["node"]["name"] for e in answer["learners"]["edges"]]


async def given(world: World, role: str = "ADMIN") -> tuple[Organisation, User]:
    """An organisation with one learner, Ada Lovelace, and a staff member holding `role`."""
    org = await world.organisation()
    person = await world.staff(org, role)
    await world.learner(org, name="Ada Lovelace")
    return org, person


async def test_a_caller_seen_before_signs_in_and_reads_in_one_statement(
    app: App, world: World
) -> None:
    org, admin = await given(world)
    call = app.api.as_(admin, org)

    first = (await call(LEARNERS)).ok()
    assert app.round_trips == ["BEGIN", "SELECT", "SELECT", "COMMIT"]
    app.round_trips.clear()
    second = (await call(LEARNERS)).ok()

    assert app.round_trips == ["UNION ALL"]
    assert first == second and names(second) == ["Ada Lovelace"]
    assert app.compiled.answered == 2


async def test_a_caller_given_other_roles_is_answered_for_the_roles_they_have_now(
    app: App, world: World
) -> None:
    org, admin = await given(world)
    colleague = await world.staff(org, "ADMIN")
    as_colleague = app.api.as_(colleague, org)
    for _ in range(2):
        assert names((await as_colleague(LEARNERS)).ok()) == ["Ada Lovelace"]

    # when an admin makes them an assessor of nobody
    assert_granted(
        await app.api.as_(admin, org)(
            UPDATE_STAFF, input={"userId": gid("User", colleague.id), "roles": ["ASSESSOR"]}
        ),
        "StaffMemberUpdated",
    )
    app.round_trips.clear()

    # then the statement built for an admin is not the answer: they see nobody
    assert (await as_colleague(LEARNERS)).ok() == {"learners": {"totalCount": 0, "edges": []}}
    assert app.round_trips == ["UNION ALL", "BEGIN", "SELECT", "SELECT", "COMMIT"]
    app.round_trips.clear()
    assert (await as_colleague(LEARNERS)).ok()["learners"]["totalCount"] == 0
    assert app.round_trips == ["UNION ALL"]


async def test_a_manager_moved_to_another_location_sees_the_team_there(
    app: App, world: World
) -> None:
    org = await world.organisation()
    here, there = await world.location(org), await world.location(org)
    admin = await world.staff(org, "ADMIN")
    manager = await world.staff(org, "MANAGER", location=here)
    await world.learner(org, name="Ada Lovelace", location=here)
    await world.learner(org, name="Grace Hopper", location=there)
    as_manager = app.api.as_(manager, org)
    for _ in range(2):
        assert names((await as_manager(LEARNERS)).ok()) == ["Ada Lovelace"]

    assert_granted(
        await app.api.as_(admin, org)(
            UPDATE_STAFF,
            input={"userId": gid("User", manager.id), "locationId": gid("Location", there.id)},
        ),
        "StaffMemberUpdated",
    )

    # the same roles and the same kind of unit: only the unit's value tells them apart
    assert names((await as_manager(LEARNERS)).ok()) == ["Grace Hopper"]


async def test_a_deactivated_caller_is_refused_at_their_next_read(app: App, world: World) -> None:
    org, admin = await given(world)
    call = app.api.as_(admin, org)
    for _ in range(2):
        (await call(LEARNERS)).ok()

    await world.deactivate(admin, org)
    refused = await call(LEARNERS)

    assert refused.codes == ["UNAUTHENTICATED"] and refused.data is None
    assert refused.status == 401  # the guess for them was checked, and the refusal says so
    assert app.compiled.answered == 2
    assert app.compiled.callers == {}  # and nothing is guessed for them any more


async def test_a_revoked_key_is_refused_at_its_next_read(app: App, world: World) -> None:
    org, admin = await given(world, "SUPER_ADMIN")
    key_row, key = await world.usable_api_key(org, "ADMIN")
    partner = app.api.with_key(key)
    for _ in range(2):
        assert names((await partner(LEARNERS)).ok()) == ["Ada Lovelace"]
    assert app.round_trips[-1] == "UNION ALL"

    assert_granted(
        await app.api.as_(admin, org)(REVOKE, id=gid("ApiKey", key_row.id)), "ApiKeyRevoked"
    )
    refused = await partner(LEARNERS)

    assert refused.codes == ["UNAUTHENTICATED"] and refused.data is None
    assert refused.status == 401  # the guess for them was checked, and the refusal says so


async def test_a_caller_is_never_answered_with_what_another_was_guessed(
    app: App, world: World
) -> None:
    org, admin = await given(world)
    assessor = await world.staff(org, "ASSESSOR")
    (await app.api.as_(admin, org)(LEARNERS)).ok()

    # the same person's other token for another organisation is another credential
    other = await world.organisation()
    await world.staff(other, "ADMIN", user=admin)
    in_other = app.api.as_(admin, other)
    assert (await in_other(LEARNERS)).ok()["learners"]["totalCount"] == 0
    assert (await in_other(LEARNERS)).ok()["learners"]["totalCount"] == 0
    assert (await app.api.as_(assessor, org)(LEARNERS)).ok()["learners"]["totalCount"] == 0


async def test_a_statement_the_database_refuses_is_answered_by_the_standard_executor(
    app: App, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, admin = await given(world)
    call = app.api.as_(admin, org)
    expected = (await call(LEARNERS)).ok()
    fetch = Driver.fetch

    async def refused(driver: Driver, statement: str, args: list[Any]) -> Any:
        # what the driver says of a statement it cannot run (asyncpg's or sqlite3's own error)
        return await fetch(driver, statement + " ORDER BY no_such_column", args)

    monkeypatch.setattr(Driver, "fetch", refused)
    answer = await call(LEARNERS)

    assert answer.ok() == expected
    assert app.compiled.failed == 1 and app.compiled.answered == 1

"""API keys from the API: created, listed and revoked by the organisation's super admins."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from db.base import utcnow
from db.models import ApiKey, AuditEvent, Membership, MembershipRole
from server.services import Services
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import (
    Api,
    Caller,
    assert_denied,
    assert_error,
    assert_granted,
    counting,
    gid,
    row_counts,
)

CREATE = """mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) {
    __typename
    ... on ApiKeyCreated { key apiKey { id name prefix roles createdAt createdBy { id }
                                        lastUsedAt revokedAt } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""
REVOKE = """mutation($id: ID!) {
  revokeApiKey(input: {apiKeyId: $id}) {
    __typename
    ... on ApiKeyRevoked { apiKey { id revokedAt } }
    ... on Error { code message }
    ... on NotFoundError { id }
  }
}"""
KEYS = "{ apiKeys { id name prefix roles createdBy { id } lastUsedAt revokedAt } }"
EVENTS = """{ auditEvents { edges { node { action subjectType subjectId details client
  actor { id } apiKey { id prefix } } } } }"""


async def test_super_admin_creates_uses_lists_and_revokes_a_key(
    api: Api, world: World, backend: Backend, services: Services
) -> None:
    org = await world.organisation()
    boss = await world.staff(org, "SUPER_ADMIN")
    call = api.as_(boss, org)

    created = assert_granted(
        await call(CREATE, input={"name": " MIS  feed ", "roles": ["ADMIN", "MANAGER"]}),
        "ApiKeyCreated",
    )
    key, record = created["key"], created["apiKey"]
    assert key.startswith(f"ck_{record['prefix']}_")
    assert record["name"] == "MIS feed" and record["roles"] == ["ADMIN", "MANAGER"]
    assert record["createdBy"] == {"id": gid("User", boss.id)}
    assert record["lastUsedAt"] is None and record["revokedAt"] is None
    async with backend.engine.connect() as conn:  # only the hash is kept
        stored = (await conn.execute(select(ApiKey.key_hash))).scalar_one()
    assert key not in stored

    partner = api.with_key(key)
    assert (await partner("{ viewer { roles } }")).ok()["viewer"]["roles"] == ["ADMIN", "MANAGER"]
    await services.authenticator.usage.flush()  # the background task would, within seconds
    listed = (await call(KEYS)).ok()["apiKeys"]
    assert [(k["id"], k["roles"]) for k in listed] == [(record["id"], ["ADMIN", "MANAGER"])]
    assert listed[0]["lastUsedAt"] is not None

    revoked = assert_granted(await call(REVOKE, id=record["id"]), "ApiKeyRevoked")
    assert revoked["apiKey"]["revokedAt"] is not None
    assert (await partner("{ viewer { roles } }")).codes == ["UNAUTHENTICATED"]
    again = assert_granted(await call(REVOKE, id=record["id"]), "ApiKeyRevoked")
    assert again["apiKey"]["revokedAt"] == revoked["apiKey"]["revokedAt"]

    events = [e["node"] for e in (await call(EVENTS)).ok()["auditEvents"]["edges"]]
    assert [(e["action"], e["subjectId"]) for e in events] == [
        ("API_KEY_REVOKED", record["id"]),  # once: revoking again changed nothing
        ("API_KEY_CREATED", record["id"]),
    ]
    assert events[1]["details"] == {"name": "MIS feed", "roles": ["ADMIN", "MANAGER"]}
    assert events[1]["actor"] == {"id": gid("User", boss.id)} and events[1]["apiKey"] is None
    assert key not in str(events)


@pytest.mark.parametrize(
    ("roles", "name"),
    [(["SUPER_ADMIN"], "x"), (["ADMIN", "LEARNER"], "x"), ([], "x"), (["ADMIN"], "  ")],
)
async def test_a_key_never_holds_super_admin_or_learner(
    api: Api, world: World, backend: Backend, roles: list[str], name: str
) -> None:
    org = await world.organisation()
    boss = await world.staff(org, "SUPER_ADMIN")
    before = await row_counts(backend.engine)
    payload = assert_error(
        await api.as_(boss, org)(CREATE, input={"name": name, "roles": roles}),
        "ValidationError",
        "INVALID",
    )
    assert payload["field"] == ("name" if name.strip() == "" else "roles")
    assert await row_counts(backend.engine) == before


@pytest.mark.parametrize(
    "role",
    ["ADMIN", "SENIOR_ASSESSOR", "MANAGER", "ASSESSOR", "TRAINING_COORDINATOR", "LEARNER"],
)
async def test_other_roles_may_not_manage_keys(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    org = await world.organisation()
    person = await world.staff(org, role)
    existing = await world.api_key(org, "ADMIN")
    await _denied_everything(api.as_(person, org), backend, gid("ApiKey", existing.id))


async def test_support_external_assessors_and_keys_may_not_manage_keys(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    existing = await world.api_key(org, "ADMIN")
    _, key = await world.usable_api_key(org, "ADMIN", "SENIOR_ASSESSOR", "MANAGER")
    for caller in (
        api.as_(await world.support()),
        api.as_(await world.external_assessor()),
        api.with_key(key),
    ):
        await _denied_everything(caller, backend, gid("ApiKey", existing.id))


async def _denied_everything(caller: Caller, backend: Backend, existing: str) -> None:
    before = await row_counts(backend.engine)
    assert_denied(await caller(CREATE, input={"name": "x", "roles": ["ADMIN"]}))
    assert_denied(await caller(REVOKE, id=existing))
    assert (await caller(KEYS)).ok() == {"apiKeys": []}
    assert (await caller("query($id: ID!) { node(id: $id) { id } }", id=existing)).ok() == {
        "node": None
    }
    assert await row_counts(backend.engine) == before


async def test_another_organisations_keys_do_not_exist_for_a_super_admin(
    api: Api, world: World, backend: Backend
) -> None:
    org, other = await world.organisation(), await world.organisation()
    boss = await world.staff(org, "SUPER_ADMIN")
    theirs = await world.api_key(other, "ADMIN")
    call = api.as_(boss, org)
    assert (await call(KEYS)).ok() == {"apiKeys": []}
    made_up = gid("ApiKey", 10**9)
    payload = assert_error(
        await call(REVOKE, id=gid("ApiKey", theirs.id)), "NotFoundError", "NOT_FOUND"
    )
    unknown = assert_error(await call(REVOKE, id=made_up), "NotFoundError", "NOT_FOUND")
    assert {k: v for k, v in payload.items() if k != "id"} == {
        k: v for k, v in unknown.items() if k != "id"
    }
    async with backend.engine.connect() as conn:
        assert (await conn.execute(select(ApiKey.revoked_at))).scalar_one() is None


async def test_keys_belong_to_the_organisation_and_outlive_their_creator(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    first, second = await world.staff(org, "SUPER_ADMIN"), await world.staff(org, "SUPER_ADMIN")
    created = assert_granted(
        await api.as_(first, org)(CREATE, input={"name": "HR feed", "roles": ["ADMIN"]}),
        "ApiKeyCreated",
    )
    # the creator is no longer a super admin (nor anything) here
    async with backend.engine.begin() as conn:
        membership = (
            await conn.execute(select(Membership.id).where(Membership.user_id == first.id))
        ).scalar_one()
        await conn.execute(delete(MembershipRole).where(MembershipRole.membership_id == membership))
    partner = api.with_key(created["key"])
    assert (await partner("{ viewer { roles } }")).ok()["viewer"]["roles"] == ["ADMIN"]
    listed = (await api.as_(second, org)(KEYS)).ok()["apiKeys"]
    assert listed[0]["createdBy"] == {"id": gid("User", first.id)}
    assert_granted(await api.as_(second, org)(REVOKE, id=created["apiKey"]["id"]), "ApiKeyRevoked")


async def test_last_use_is_written_at_most_once_a_minute(
    api: Api, world: World, backend: Backend, services: Services
) -> None:
    org = await world.organisation()
    _, key = await world.usable_api_key(org, "ADMIN")
    partner = api.with_key(key)

    async def last_used() -> object:
        async with backend.engine.connect() as conn:
            return (await conn.execute(select(ApiKey.last_used_at))).scalar_one()

    usage = services.authenticator.usage
    (await partner("{ viewer { roles } }")).ok()
    assert await last_used() is None  # noted; the request wrote nothing
    await usage.flush()
    first = await last_used()
    assert first is not None
    with counting(services.engine) as statements:
        (await partner("{ viewer { roles } }")).ok()
        await usage.flush()
    assert await last_used() == first
    assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    async with backend.engine.begin() as conn:
        await conn.execute(update(ApiKey).values(last_used_at=utcnow() - timedelta(minutes=2)))
    (await partner("{ viewer { roles } }")).ok()
    await usage.flush()
    assert await last_used() > first  # type: ignore[operator]


async def test_a_mutation_by_a_key_records_its_use_in_its_own_transaction(
    api: Api, world: World, backend: Backend
) -> None:
    """On SQLite a mutation holds the write lock from its start: the key's last use is
    written in the mutation's transaction, not in one of its own that would wait for it."""
    org = await world.organisation()
    _, key = await world.usable_api_key(org, "ADMIN")
    answer = await api.with_key(key)(
        'mutation { createLearner(input: {name: "Fed"}) { __typename } }'
    )
    assert answer.ok() == {"createLearner": {"__typename": "LearnerCreated"}}
    async with backend.engine.connect() as conn:
        assert (await conn.execute(select(ApiKey.last_used_at))).scalar_one() is not None


async def test_what_a_key_does_is_audited_as_the_key(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    boss = await world.staff(org, "SUPER_ADMIN")
    row, key = await world.usable_api_key(org, "ADMIN")
    created = (
        await api.with_key(key)('mutation { createLearner(input: {name: "Ada"}) { __typename } }')
    ).ok()
    assert created == {"createLearner": {"__typename": "LearnerCreated"}}
    (event,) = [e["node"] for e in (await api.as_(boss, org)(EVENTS)).ok()["auditEvents"]["edges"]]
    assert event["action"] == "LEARNER_CREATED"
    assert event["actor"] is None  # a key is not a person
    assert event["apiKey"] == {"id": gid("ApiKey", row.id), "prefix": row.prefix}
    assert event["client"] == f"api-key:{row.prefix}"
    async with backend.engine.connect() as conn:
        stored = (await conn.execute(select(AuditEvent.api_key_id))).scalar_one()
    assert stored == row.id


async def test_learner_access_names_the_api_keys_that_can_see_the_learner(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    super_admin = await world.staff(org, "SUPER_ADMIN")  # API keys are super admins' to read
    learner = await world.learner(org)
    key = await world.api_key(org, "ADMIN", name="MIS feed")
    await world.api_key(org, "ADMIN", name="Old feed", revoked=True)
    access = (
        await api.as_(super_admin, org)(
            """query($id: ID!) { learner(id: $id) { access { user { id name } role
                apiKey { id name prefix } } } }""",
            id=gid("Learner", learner.id),
        )
    ).ok()["learner"]["access"]
    by_key = [a for a in access if a["apiKey"] is not None]
    assert by_key == [
        {
            "user": {"id": gid("User", key.user_id), "name": "MIS feed"},
            "role": "ADMIN",
            "apiKey": {"id": gid("ApiKey", key.id), "name": "MIS feed", "prefix": key.prefix},
        }
    ]
    assert {a["user"]["id"] for a in access if a["apiKey"] is None} == {gid("User", super_admin.id)}


BUDGET = """mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) {
    __typename
    ... on ApiKeyCreated { apiKey { id ratePointsPerMinute } }
    ... on ValidationError { code field message }
  }
}"""


async def test_a_key_may_carry_a_fair_use_budget_of_its_own(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    call = api.as_(await world.staff(org, "SUPER_ADMIN"))
    own = assert_granted(
        await call(
            BUDGET,
            input={"name": "Nightly sync", "roles": ["ADMIN"], "ratePointsPerMinute": 20_000},
        ),
        "ApiKeyCreated",
    )
    plain = assert_granted(
        await call(BUDGET, input={"name": "MIS feed", "roles": ["ADMIN"]}), "ApiKeyCreated"
    )
    assert own["apiKey"]["ratePointsPerMinute"] == 20_000
    assert plain["apiKey"]["ratePointsPerMinute"] is None  # the server's budget
    listed = (await call("{ apiKeys { id ratePointsPerMinute } }")).ok()["apiKeys"]
    assert listed == [own["apiKey"], plain["apiKey"]]
    async with backend.engine.connect() as conn:
        stored = await conn.execute(select(ApiKey.rate_points_per_minute).order_by(ApiKey.id))
        assert stored.scalars().all() == [20_000, None]
    events = [e["node"] for e in (await call(EVENTS)).ok()["auditEvents"]["edges"]]
    assert [e["details"] for e in events] == [
        {"name": "MIS feed", "roles": ["ADMIN"]},
        {"name": "Nightly sync", "roles": ["ADMIN"], "ratePointsPerMinute": 20_000},
    ]


@pytest.mark.parametrize("budget", [0, -1, -(2**31)])
async def test_a_key_budget_below_one_point_is_invalid_and_changes_nothing(
    api: Api, world: World, backend: Backend, budget: int
) -> None:
    org = await world.organisation()
    boss = await world.staff(org, "SUPER_ADMIN")
    before = await row_counts(backend.engine)
    payload = assert_error(
        await api.as_(boss, org)(
            BUDGET, input={"name": "Feed", "roles": ["ADMIN"], "ratePointsPerMinute": budget}
        ),
        "ValidationError",
        "INVALID",
    )
    assert payload["field"] == "ratePointsPerMinute"
    assert "from 1 to 2147483647" in payload["message"]
    assert await row_counts(backend.engine) == before


@pytest.mark.parametrize("role", ["ADMIN", "SENIOR_ASSESSOR", "MANAGER", "LEARNER"])
async def test_only_super_admins_give_a_key_a_budget(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    org = await world.organisation()
    person = await world.staff(org, role)
    before = await row_counts(backend.engine)
    assert_denied(
        await api.as_(person, org)(
            BUDGET, input={"name": "Feed", "roles": ["ADMIN"], "ratePointsPerMinute": 5}
        )
    )
    assert await row_counts(backend.engine) == before

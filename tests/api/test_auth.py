"""Authentication: bearer JWTs and API keys; anything wrong is UNAUTHENTICATED."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy.ext.asyncio import async_sessionmaker

from db.models import ApiKey, User, UserKind
from server.tokens import new_api_key
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import Api, assert_denied

VIEWER = "{ viewer { user { email } roles organisation { slug } } }"


async def test_no_credentials_is_unauthenticated(api: Api) -> None:
    assert_denied(await api.post(VIEWER), "UNAUTHENTICATED")


async def test_introspection_needs_credentials_outside_debug(api: Api) -> None:
    # tests/api/test_introspection.py covers CASELOAD_ANONYMOUS_INTROSPECTION.
    assert_denied(await api.post("{ __schema { queryType { name } } }"), "UNAUTHENTICATED")


async def test_expired_token_is_unauthenticated(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    token = api.token(admin, org, ttl=timedelta(seconds=-5))
    result = await api.post(VIEWER, headers={"Authorization": f"Bearer {token}"})
    assert_denied(result, "UNAUTHENTICATED")
    assert "expired" in result.errors[0]["message"]


async def test_forged_token_is_unauthenticated(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    claims = {
        "sub": admin.email,
        "org": org.slug,
        "iss": "caseload",
        "aud": "caseload-api",
        "exp": datetime.now(UTC) + timedelta(hours=1),
    }
    forged = jwt.encode(claims, "not-the-secret-" * 4, algorithm="HS256")
    unsigned = jwt.encode(claims, "", algorithm="none")
    for token in (forged, unsigned, "garbage", admin.email):
        result = await api.post(VIEWER, headers={"Authorization": f"Bearer {token}"})
        assert_denied(result, "UNAUTHENTICATED")


async def test_unknown_scheme_and_unknown_user(api: Api, world: World) -> None:
    org = await world.organisation()
    ghost = User(email="ghost@example.org", name="Ghost", kind=UserKind.STAFF)
    for headers in (
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {api.token(ghost, org)}"},
    ):
        assert_denied(await api.post(VIEWER, headers=headers), "UNAUTHENTICATED")


async def test_token_for_an_organisation_the_user_is_not_in(api: Api, world: World) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assert_denied(await api.as_(admin, other)(VIEWER), "UNAUTHENTICATED")


async def test_one_token_per_organisation(api: Api, world: World) -> None:
    first, second = await world.organisation(), await world.organisation()
    person = await world.staff(first, "ADMIN")
    await world.staff(second, "ASSESSOR", user=person)

    as_admin = (await api.as_(person, first)(VIEWER)).ok()["viewer"]
    as_assessor = (await api.as_(person, second)(VIEWER)).ok()["viewer"]
    assert (as_admin["roles"], as_admin["organisation"]["slug"]) == (["ADMIN"], first.slug)
    assert (as_assessor["roles"], as_assessor["organisation"]["slug"]) == (
        ["ASSESSOR"],
        second.slug,
    )
    # Without `org` a person in two organisations is ambiguous.
    assert_denied(await api.as_(person)(VIEWER), "UNAUTHENTICATED")


async def test_single_membership_needs_no_org_claim(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assert (await api.as_(admin)(VIEWER)).ok()["viewer"]["organisation"]["slug"] == org.slug


async def test_support_and_external_assessor_act_in_no_organisation(api: Api, world: World) -> None:
    support, external = await world.support(), await world.external_assessor()
    assert (await api.as_(support)(VIEWER)).ok()["viewer"]["roles"] == ["SUPPORT"]
    viewer = (await api.as_(external)(VIEWER)).ok()["viewer"]
    assert viewer == {
        "user": {"email": external.email},
        "roles": ["EXTERNAL_ASSESSOR"],
        "organisation": None,
    }


async def _api_key(backend: Backend, world: World, org_roles: str, revoked: bool = False) -> str:
    org = await world.organisation(slug="partner-org")
    service = await world.user(UserKind.SERVICE, name="MIS feed")
    key, prefix, digest = new_api_key()
    maker = async_sessionmaker(backend.engine)
    async with maker() as session, session.begin():
        session.add(
            ApiKey(
                organisation_id=org.id,
                user_id=service.id,
                name="MIS feed",
                prefix=prefix,
                key_hash=digest,
                roles=org_roles,
                created_at=datetime.now(UTC),
                revoked_at=datetime.now(UTC) if revoked else None,
            )
        )
    return key


async def test_api_key_acts_with_its_roles_in_its_organisation(
    api: Api, world: World, backend: Backend
) -> None:
    key = await _api_key(backend, world, "ADMIN")
    result = await api.post(VIEWER, headers={"Authorization": f"ApiKey {key}"})
    viewer = result.ok()["viewer"]
    assert viewer["roles"] == ["ADMIN"] and viewer["organisation"]["slug"] == "partner-org"

    created = await api.post(
        'mutation { createLearner(input: {name: "Fed Learner"}) { __typename } }',
        headers={"Authorization": f"ApiKey {key}"},
    )
    assert created.ok()["createLearner"]["__typename"] == "LearnerCreated"


async def test_wrong_or_revoked_api_key_is_unauthenticated(
    api: Api, world: World, backend: Backend
) -> None:
    key = await _api_key(backend, world, "ADMIN", revoked=True)
    for header in (f"ApiKey {key}", f"ApiKey {key[:-2]}xx", "ApiKey ck_nope_nope", "ApiKey x"):
        assert_denied(await api.post(VIEWER, headers={"Authorization": header}), "UNAUTHENTICATED")

"""Organisation identity providers: support binds an issuer to one organisation, whose tokens
then sign in that organisation's members and nobody else (a local provider, tests/provider.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from db.models import Organisation
from tests.api.test_oidc import ALGORITHMS, PAGE, Clock, call, refused, services_of
from tests.conftest import AppFactory, Backend
from tests.factories import World
from tests.helpers import Api, assert_denied, assert_error, audit_actions, gid
from tests.provider import Provider, SigningKey

SET = """mutation($o: ID!, $i: String!, $a: String!, $c: String) {
  setOrganisationIdentityProvider(input: {organisationId: $o, issuer: $i, audience: $a,
    emailClaim: $c}) {
    __typename
    ... on OrganisationIdentityProviderSet { organisation { slug } issuer audience emailClaim
      unchanged }
    ... on Error { code message }
  }
}"""
REMOVE = """mutation($o: ID!) {
  removeOrganisationIdentityProvider(input: {organisationId: $o}) {
    __typename
    ... on OrganisationIdentityProviderRemoved { organisation { slug } unchanged }
    ... on Error { code message }
  }
}"""
AUDIENCE = "caseload-org-client"


@pytest.fixture(scope="session")
def organisation_keys() -> dict[str, SigningKey]:
    return {algorithm: SigningKey.make(algorithm) for algorithm in ALGORITHMS}


@pytest.fixture
def provider(organisation_keys: dict[str, SigningKey]) -> Iterator[Provider]:
    """The organisation's own provider."""
    running = Provider(list(organisation_keys.values())).start()
    yield running
    running.stop()


async def bind(
    api: Api, world: World, org: Organisation, issuer: str, **more: Any
) -> dict[str, Any]:
    support = await world.support()
    given = {"o": gid("Organisation", org.id), "i": issuer, "a": AUDIENCE} | more
    payload: dict[str, Any] = (await api.as_(support)(SET, **given)).ok()[
        "setOrganisationIdentityProvider"
    ]
    return payload


def token(provider: Provider, email: str | None, **claims: Any) -> str:
    return provider.token(email, **({"aud": AUDIENCE} | claims))


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "standard"])
async def test_a_bound_issuer_signs_in_its_organisations_members(
    api_with: AppFactory, world: World, backend: Backend, provider: Provider, compiled: bool
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    await world.learner(org, name="Ann Able")
    api = await api_with(oidc_allow_http=True, compiled_reads=compiled)
    bound = await bind(api, world, org, provider.issuer)
    assert bound == {
        "__typename": "OrganisationIdentityProviderSet",
        "organisation": {"slug": org.slug},
        "issuer": provider.issuer,
        "audience": AUDIENCE,
        "emailClaim": "email",
        "unchanged": False,
    }
    for algorithm in ALGORITHMS:
        signed = token(provider, admin.email, key=provider.key(algorithm))
        viewer = (await call(api, signed)).ok()["viewer"]
        assert (viewer["roles"], viewer["organisation"]["slug"]) == (["ADMIN"], org.slug)
        for _ in range(2):
            page = (await call(api, signed, PAGE)).ok()["learners"]["edges"]
            assert [e["node"]["name"] for e in page] == ["Ann Able"]
    reads = api.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
    assert (reads.answered if reads else 0) == (6 if compiled else 0)
    assert provider.hits["/.well-known/openid-configuration"] == 1
    assert provider.key_fetches == 1
    (action,) = [a for a, kind, _ in await audit_actions(backend.engine) if kind == "Organisation"]
    assert action == "IDENTITY_PROVIDER_SET"


async def test_refused_a_bound_issuers_token_naming_a_person_of_another_organisation(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org, other = await world.organisation(), await world.organisation()
    await world.staff(org, "ADMIN")
    stranger = await world.staff(other, "SUPER_ADMIN")
    both = await world.staff(org, "ASSESSOR")
    await world.staff(other, "ADMIN", user=both)
    api = await api_with(oidc_allow_http=True)
    await bind(api, world, org, provider.issuer)
    # Someone of another organisation only: refused, with or without naming it.
    refused(await call(api, token(provider, stranger.email)))
    refused(await call(api, token(provider, stranger.email, org=other.slug)))
    refused(
        await call(api, token(provider, stranger.email), **{"X-Caseload-Organisation": other.slug})
    )
    # A member of both: only the bound organisation, which needs no naming.
    viewer = (await call(api, token(provider, both.email))).ok()["viewer"]
    assert (viewer["roles"], viewer["organisation"]["slug"]) == (["ASSESSOR"], org.slug)
    refused(await call(api, token(provider, both.email, org=other.slug)))


async def test_refused_a_bound_issuers_token_for_support_or_an_external_assessor(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    support, external = await world.support(), await world.external_assessor()
    api = await api_with(oidc_allow_http=True)
    await bind(api, world, org, provider.issuer)
    for person in (support, external):
        refused(await call(api, token(provider, person.email)))
        refused(await call(api, token(provider, person.email, org=org.slug)))


async def test_refused_another_audience_or_another_issuers_key(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    api = await api_with(oidc_allow_http=True)
    await bind(api, world, org, provider.issuer)
    refused(await call(api, provider.token(admin.email)))  # the default audience
    refused(await call(api, token(provider, admin.email, aud=["x", 3, {"a": 1}])))
    stranger = SigningKey.make("RS256")
    refused(await call(api, token(provider, admin.email, key=stranger)))
    refused(await call(api, token(provider, admin.email, email_verified=False)))
    assert (await call(api, token(provider, admin.email))).status == 200


async def test_removing_or_rebinding_refuses_the_next_request(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    support = await world.support()
    api = await api_with(oidc_allow_http=True)
    await bind(api, world, org, provider.issuer)
    signed = token(provider, admin.email)
    assert (await call(api, signed)).status == 200
    removed = (await api.as_(support)(REMOVE, o=gid("Organisation", org.id))).ok()
    assert removed["removeOrganisationIdentityProvider"] == {
        "__typename": "OrganisationIdentityProviderRemoved",
        "organisation": {"slug": org.slug},
        "unchanged": False,
    }
    refused(await call(api, signed))  # the same token, its claims kept: the binding is gone
    again = (await api.as_(support)(REMOVE, o=gid("Organisation", org.id))).ok()
    assert again["removeOrganisationIdentityProvider"]["unchanged"] is True
    # Bound again with another audience: the old audience's tokens stop.
    await bind(api, world, org, provider.issuer, a="another-client")
    refused(await call(api, signed))
    services_of(api).authenticator.bindings.loaded_at = None  # as a second later
    fresh = provider.token(admin.email, aud="another-client")
    assert (await call(api, fresh)).status == 200


async def test_a_bound_issuers_own_email_claim(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    api = await api_with(oidc_allow_http=True)
    bound = await bind(api, world, org, provider.issuer, c="upn")
    assert bound["emailClaim"] == "upn"
    signed = token(provider, None, upn=admin.email)
    assert (await call(api, signed)).ok()["viewer"]["roles"] == ["ADMIN"]
    refused(await call(api, token(provider, admin.email)))


async def test_the_platform_issuer_and_a_bound_issuer_side_by_side(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    support = await world.support()
    platform = Provider([SigningKey.make("ES256")]).start()
    try:
        api = await api_with(oidc_issuer=platform.issuer, oidc_allow_http=True)
        await bind(api, world, org, provider.issuer)
        assert (await call(api, platform.token(support.email))).ok()["viewer"]["roles"] == [
            "SUPPORT"
        ]
        assert (await call(api, token(provider, admin.email))).status == 200
        assert (await call(api, platform.token(admin.email))).status == 200
        # Each issuer's keys are its own.
        refused(await call(api, platform.token(admin.email, key=provider.keys[0])))
        refused(await call(api, token(provider, admin.email, key=platform.keys[0])))
    finally:
        platform.stop()


async def test_an_unknown_issuer_reads_the_bindings_at_most_once_a_second(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    api = await api_with(oidc_allow_http=True)
    bindings = services_of(api).authenticator.bindings
    clock = Clock()
    bindings.clock = clock
    for n in range(20):
        forged = provider.token(admin.email, iss=f"https://made-up-{n}.example.org")
        refused(await call(api, forged))
    assert bindings.loads == 1
    clock.now += 1
    refused(await call(api, provider.token(admin.email, iss="https://again.example.org")))
    assert bindings.loads == 2
    assert provider.key_fetches == 0  # no issuer that is not bound is ever asked for keys


async def test_binding_is_validated(api_with: AppFactory, world: World) -> None:
    org = await world.organisation()
    other = await world.organisation()
    api = await api_with()
    support = await world.support()
    call_as = api.as_(support)
    for issuer in (
        "http://login.example.org",
        "login.example.org",
        "https://login.example.org/?tenant=1",
        "https://",
        "https://" + "a" * 500 + ".org",
    ):
        result = await call_as(SET, o=gid("Organisation", org.id), i=issuer, a=AUDIENCE)
        assert assert_error(result, "ValidationError", "INVALID")["message"]
    result = await call_as(SET, o=gid("Organisation", org.id), i="https://x.example", a=" ")
    assert_error(result, "ValidationError", "INVALID")
    missing = gid("Organisation", 999_999)
    result = await call_as(SET, o=missing, i="https://login.example.org", a=AUDIENCE)
    assert assert_error(result, "NotFoundError", "NOT_FOUND")
    assert_error(await call_as(REMOVE, o=missing), "NotFoundError", "NOT_FOUND")
    # One organisation per issuer and audience.
    await bind(api, world, org, "https://login.example.org")
    result = await call_as(
        SET, o=gid("Organisation", other.id), i="https://login.example.org", a=AUDIENCE
    )
    assert_error(result, "AlreadyExistsError", "ALREADY_EXISTS")
    again = await bind(api, world, org, "https://login.example.org")
    assert again["unchanged"] is True


async def test_only_support_binds(api_with: AppFactory, world: World) -> None:
    org = await world.organisation()
    api = await api_with()
    for role in ("SUPER_ADMIN", "ADMIN"):
        person = await world.staff(org, role)
        o = gid("Organisation", org.id)
        assert_denied(await api.as_(person, org)(SET, o=o, i="https://x.example", a="a"))
        assert_denied(await api.as_(person, org)(REMOVE, o=o))

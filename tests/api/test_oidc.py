"""Sign-in through an OpenID Connect provider: a real one on 127.0.0.1 (tests/provider.py),
on both databases and both read paths. Every refusal is HTTP 401 UNAUTHENTICATED."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from server.services import Services
from server.settings import Settings
from tests.conftest import AppFactory
from tests.factories import World
from tests.helpers import Api, Result, assert_denied
from tests.provider import AUDIENCE, Provider, SigningKey, hs256_with

VIEWER = "{ viewer { user { email } roles organisation { slug } } }"
PAGE = "{ learners(first: 5) { edges { node { name } } } }"
ALGORITHMS = ("RS256", "ES256", "EdDSA")


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    """The provider's keys, made once per run."""
    return {algorithm: SigningKey.make(algorithm) for algorithm in ALGORITHMS}


@pytest.fixture
def provider(signing_keys: dict[str, SigningKey]) -> Iterator[Provider]:
    running = Provider(list(signing_keys.values())).start()
    yield running
    running.stop()


class Clock:
    """The key cache's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def services_of(api: Api) -> Services:
    found: Services = api.client._transport.app.state.services  # type: ignore[attr-defined]
    return found


async def oidc_app(
    api_with: AppFactory, provider: Provider, clock: Clock | None = None, **overrides: Any
) -> Api:
    values: dict[str, Any] = {"oidc_issuer": provider.issuer, "oidc_allow_http": True}
    api = await api_with(**(values | overrides))
    platform = services_of(api).authenticator.platform
    if clock is not None and platform is not None:
        platform.clock = clock
    return api


async def call(api: Api, token: str, query: str = VIEWER, **headers: str) -> Result:
    return await api.post(query, headers={"Authorization": f"Bearer {token}", **headers})


def refused(result: Result) -> None:
    assert_denied(result, "UNAUTHENTICATED")
    assert result.errors[0]["message"]


# Signing in -------------------------------------------------------------------------------


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "standard"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_each_algorithm_signs_in_on_both_read_paths(
    api_with: AppFactory, world: World, provider: Provider, algorithm: str, compiled: bool
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    await world.learner(org, name="Ann Able")
    api = await oidc_app(api_with, provider, compiled_reads=compiled)
    token = provider.token(admin.email.upper(), key=provider.key(algorithm))

    viewer = (await call(api, token)).ok()["viewer"]
    assert viewer == {
        "user": {"email": admin.email},
        "roles": ["ADMIN"],
        "organisation": {"slug": org.slug},
    }
    for _ in range(2):  # the second read: the caller the credentials named last time
        page = (await call(api, token, PAGE)).ok()["learners"]["edges"]
        assert [edge["node"]["name"] for edge in page] == ["Ann Able"]
    reads = api.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
    assert (reads.answered if reads else 0) == (2 if compiled else 0)
    assert provider.hits["/.well-known/openid-configuration"] == 1
    assert provider.key_fetches == 1  # fetched once, then kept


async def test_the_organisation_is_the_claim_else_the_header_else_the_only_membership(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    first, second = await world.organisation(), await world.organisation()
    person = await world.staff(first, "ADMIN")
    await world.staff(second, "ASSESSOR", user=person)
    single = await world.staff(first, "MANAGER")
    api = await oidc_app(api_with, provider)

    def slug_of(result: Result) -> tuple[str, list[str]]:
        viewer = result.ok()["viewer"]
        return viewer["organisation"]["slug"], viewer["roles"]

    by_claim = provider.token(person.email, org=second.slug)
    assert slug_of(await call(api, by_claim)) == (second.slug, ["ASSESSOR"])
    # The claim wins over the header.
    header = {"X-Caseload-Organisation": first.slug}
    assert slug_of(await call(api, by_claim, **header)) == (second.slug, ["ASSESSOR"])
    plain = provider.token(person.email)
    assert slug_of(await call(api, plain, **header)) == (first.slug, ["ADMIN"])
    assert slug_of(await call(api, plain, **{"X-Caseload-Organisation": second.slug})) == (
        second.slug,
        ["ASSESSOR"],
    )
    refused(await call(api, plain))  # two memberships and no organisation named
    assert slug_of(await call(api, provider.token(single.email))) == (first.slug, ["MANAGER"])


async def test_the_compiled_path_tells_organisations_named_by_the_header_apart(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    first, second = await world.organisation(), await world.organisation()
    person = await world.staff(first, "ADMIN")
    await world.staff(second, "ADMIN", user=person)
    await world.learner(first, name="First Learner")
    await world.learner(second, name="Second Learner")
    api = await oidc_app(api_with, provider, compiled_reads=True)
    token = provider.token(person.email)
    for _ in range(2):
        for org, name in ((first, "First Learner"), (second, "Second Learner")):
            page = await call(api, token, PAGE, **{"X-Caseload-Organisation": org.slug})
            assert [e["node"]["name"] for e in page.ok()["learners"]["edges"]] == [name]


async def test_support_and_external_assessors_sign_in_through_the_platform_issuer(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    support, external = await world.support(), await world.external_assessor()
    api = await oidc_app(api_with, provider)
    assert (await call(api, provider.token(support.email))).ok()["viewer"]["roles"] == ["SUPPORT"]
    viewer = (await call(api, provider.token(external.email))).ok()["viewer"]
    assert viewer["roles"] == ["EXTERNAL_ASSESSOR"]


async def test_keys_from_the_jwks_url_alone(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    api = await api_with(jwks_url=provider.jwks_url, oidc_allow_http=True)
    assert (await call(api, provider.token(admin.email))).ok()["viewer"]["roles"] == ["ADMIN"]
    assert provider.hits["/.well-known/openid-configuration"] == 0


async def test_a_custom_email_claim(api_with: AppFactory, world: World, provider: Provider) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    api = await oidc_app(api_with, provider, oidc_email_claim="upn", oidc_org_claim="tenant")
    token = provider.token(None, upn=admin.email, tenant=org.slug)
    assert (await call(api, token)).ok()["viewer"]["organisation"]["slug"] == org.slug
    refused(await call(api, provider.token(admin.email)))  # no `upn`


async def test_sign_in_creates_nothing(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    await world.organisation()
    api = await oidc_app(api_with, provider)
    refused(await call(api, provider.token("newcomer@example.org")))
    refused(await call(api, provider.token("newcomer@example.org")))


async def test_keys_rotate_while_the_server_runs(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    clock = Clock()
    api = await oidc_app(api_with, provider, clock)
    old = provider.keys[0]
    assert (await call(api, provider.token(admin.email, key=old))).status == 200
    # The provider publishes a new key and signs with it; the old one is withdrawn.
    new = SigningKey.make("RS256")
    provider.keys = [new, *provider.keys[1:]]
    clock.now += 61
    assert (await call(api, provider.token(admin.email, key=new))).ok()["viewer"]["roles"] == [
        "ADMIN"
    ]
    assert provider.key_fetches == 2
    # A new token signed with the withdrawn key: the keys fetched no longer hold it.
    refused(await call(api, provider.token(admin.email, key=old)))


async def test_the_kept_keys_serve_while_the_provider_is_down(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    clock = Clock()
    api = await oidc_app(api_with, provider, clock)
    assert (await call(api, provider.token(admin.email))).status == 200
    provider.stop()
    # New tokens (none of them seen before) signed with kept keys of each algorithm.
    for algorithm in ALGORITHMS:
        token = provider.token(admin.email, key=provider.key(algorithm))
        assert (await call(api, token)).ok()["viewer"]["roles"] == ["ADMIN"]
    # Past the keys' age, and asked for a key it never published: still the kept keys, and a
    # made-up key is refused (401, not an error of the server).
    clock.now += 7200
    assert (await call(api, provider.token(admin.email))).status == 200
    stranger = SigningKey.make("RS256")
    refused(await call(api, provider.token(admin.email, key=stranger)))


async def test_hs256_needs_an_explicit_secret_once_an_issuer_is_set(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    with_secret = await oidc_app(api_with, provider)
    assert (await with_secret.as_(admin, org)(VIEWER)).status == 200  # CLI and demo tokens
    token = with_secret.token(admin, org)
    without = await oidc_app(api_with, provider, jwt_secret=None, debug=True)
    assert services_of(without).authenticator.secret is None
    refused(await call(without, token))
    assert (await call(without, provider.token(admin.email))).status == 200


# Refusals ---------------------------------------------------------------------------------


@pytest.fixture
async def signed_in(
    api_with: AppFactory, world: World, provider: Provider
) -> tuple[Api, str, Provider]:
    """An app trusting `provider`, and the email of an admin who signs in through it."""
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    api = await oidc_app(api_with, provider)
    assert (await call(api, provider.token(admin.email))).status == 200
    return api, admin.email, provider


async def test_refused_wrong_issuer(signed_in: tuple[Api, str, Provider]) -> None:
    api, email, provider = signed_in
    refused(await call(api, provider.token(email, iss="https://login.example.org")))


async def test_refused_wrong_audience(signed_in: tuple[Api, str, Provider]) -> None:
    api, email, provider = signed_in
    refused(await call(api, provider.token(email, aud="another-api")))
    refused(await call(api, provider.token(email, aud=None)))


async def test_refused_expired(signed_in: tuple[Api, str, Provider]) -> None:
    api, email, provider = signed_in
    result = await call(api, provider.token(email, exp=datetime.now(UTC) - timedelta(minutes=5)))
    refused(result)
    assert "expired" in result.errors[0]["message"]


async def test_refused_not_yet_valid(signed_in: tuple[Api, str, Provider]) -> None:
    api, email, provider = signed_in
    refused(await call(api, provider.token(email, nbf=datetime.now(UTC) + timedelta(hours=1))))


async def test_refused_alg_none(signed_in: tuple[Api, str, Provider]) -> None:
    api, email, provider = signed_in
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "email": email, "exp": 4_000_000_000}
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": provider.keys[0].kid})
    refused(await call(api, unsigned))


async def test_refused_hs256_signed_with_the_providers_public_key(
    signed_in: tuple[Api, str, Provider],
) -> None:
    api, email, provider = signed_in
    claims: dict[str, Any] = {"iss": provider.issuer, "aud": AUDIENCE, "email": email, "sub": email}
    claims |= {"exp": 4_000_000_000}
    key = provider.key("RS256")
    for secret in (key.public_pem(), key.public_pem().strip()):
        refused(await call(api, hs256_with(secret, claims)))


async def test_refused_key_from_another_issuer(
    signed_in: tuple[Api, str, Provider], signing_keys: dict[str, SigningKey]
) -> None:
    api, email, provider = signed_in
    other = Provider([SigningKey.make("RS256")]).start()
    try:
        # The other provider's key, claiming to be the trusted issuer; and its own tokens.
        refused(await call(api, provider.token(email, key=other.keys[0])))
        refused(await call(api, other.token(email)))
        # The same key id, another provider's key: the signature does not hold.
        impostor = SigningKey(provider.keys[0].kid, "RS256", other.keys[0].private)
        refused(await call(api, provider.token(email, key=impostor)))
    finally:
        other.stop()
    assert other.key_fetches == 0  # never asked: only the trusted issuer's keys are fetched


async def test_refused_token_over_8_kb(signed_in: tuple[Api, str, Provider]) -> None:
    api, email, provider = signed_in
    token = provider.token(email, padding="x" * 8 * 1024)
    assert len(token) > 8 * 1024
    result = await call(api, token)
    refused(result)
    assert "too long" in result.errors[0]["message"]


async def test_refused_unknown_kid_flood_asks_the_provider_once_a_minute(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    clock = Clock()
    api = await oidc_app(api_with, provider, clock)
    assert (await call(api, provider.token(admin.email))).status == 200
    assert provider.key_fetches == 1
    made_up = SigningKey.make("ES256")

    async def flood(seconds: int) -> None:
        for n in range(seconds):  # a made-up key id every second
            clock.now += 1
            forged = SigningKey(f"made-up-{clock.now}-{n}", "ES256", made_up.private)
            refused(await call(api, provider.token(admin.email, key=forged)))

    await flood(40)
    assert provider.key_fetches == 1  # within the minute of the first fetch: not asked
    await flood(40)
    assert provider.key_fetches == 2  # asked once, a minute after the first fetch
    await flood(30)
    assert provider.key_fetches == 2  # the next minute has not passed
    # Signing in goes on meanwhile, from the kept keys.
    assert (await call(api, provider.token(admin.email))).status == 200


async def test_refused_email_not_verified(signed_in: tuple[Api, str, Provider]) -> None:
    api, email, provider = signed_in
    for flag in (False, "false"):
        result = await call(api, provider.token(email, email_verified=flag))
        refused(result)
        assert "not verified" in result.errors[0]["message"]
    assert (await call(api, provider.token(email, email_verified=True))).status == 200


async def test_refused_without_membership_or_deactivated(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    gone = await world.staff(org, "ASSESSOR")
    await world.deactivate(gone, org)
    api = await oidc_app(api_with, provider)
    refused(await call(api, provider.token(admin.email, org=other.slug)))
    refused(await call(api, provider.token(admin.email), **{"X-Caseload-Organisation": "nowhere"}))
    refused(await call(api, provider.token(gone.email)))
    refused(await call(api, provider.token(gone.email, org=org.slug)))


async def test_refused_malformed_claims(signed_in: tuple[Api, str, Provider]) -> None:
    api, email, provider = signed_in
    for token in (
        provider.token(None),  # no email
        provider.token(None, email=7),
        provider.token(email, org=["a", "b"]),
        provider.token(email, exp=None),
    ):
        refused(await call(api, token))


async def test_refused_while_the_provider_was_never_reached(
    api_with: AppFactory, world: World, provider: Provider
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    api = await oidc_app(api_with, provider, oidc_fetch_timeout_seconds=1)
    provider.stop()
    refused(await call(api, provider.token(admin.email)))  # 401, not an error of the server


def test_an_http_issuer_needs_the_setting() -> None:
    with pytest.raises(ValueError, match="https"):
        Settings(_env_file=None, oidc_issuer="http://login.example.org")
    with pytest.raises(ValueError, match="https"):
        Settings(_env_file=None, oidc_issuer="login.example.org")
    allowed = Settings(_env_file=None, oidc_issuer="http://127.0.0.1:1", oidc_allow_http=True)
    assert allowed.oidc_enabled

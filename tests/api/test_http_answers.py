"""What an answer says in HTTP: 401 with a challenge for UNAUTHENTICATED, and the
application/graphql-response+json media type (GraphQL over HTTP) for clients that ask for it,
on the compiled read path and the standard executor alike, over POST and GET."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from server.http import negotiate
from tests.conftest import AppFactory
from tests.factories import World
from tests.helpers import Api

# Compiles (the compiled read path answers it when enabled); VIEWER never does.
LEARNERS = "{ learners(first: 2) { edges { node { name } } } }"
VIEWER = "{ viewer { roles } }"
GRAPHQL_RESPONSE = "application/graphql-response+json"
GRAPHQL_RESPONSE_TYPE = "application/graphql-response+json; charset=utf-8"
ANSWERED_BY = pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "standard"])
METHODS = pytest.mark.parametrize("method", ["POST", "GET"])


async def ask(
    api: Api,
    method: str,
    query: str,
    headers: dict[str, str] | None = None,
    **more: Any,
) -> httpx.Response:
    body = {"query": query, **more}
    if method == "GET":
        params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        return await api.client.get("/graphql", params=params, headers=headers or {})
    return await api.client.post("/graphql", json=body, headers=headers or {})


def compiled_answers(api: Api) -> int:
    reads = api.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
    return 0 if reads is None else int(reads.answered)


async def _admin(api: Api, world: World) -> dict[str, str]:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    await world.learner(org, name="Ada Learner")
    return {"Authorization": f"Bearer {api.token(admin, org)}"}


# --- UNAUTHENTICATED is HTTP 401 ------------------------------------------------------------


async def _credentials(api: Api, world: World) -> dict[str, tuple[str | None, str]]:
    """Each way of failing to authenticate: the header sent, and the challenge expected."""
    org = await world.organisation(slug="elsewhere")
    admin = await world.staff(org, "ADMIN")
    _, revoked = await world.usable_api_key(org, "ADMIN", revoked=True)
    claims = {
        "sub": admin.email,
        "org": org.slug,
        "iss": "caseload",
        "aud": "caseload-api",
        "exp": datetime.now(UTC) + timedelta(hours=1),
    }
    refused_token = 'Bearer error="invalid_token", ApiKey'
    return {
        "missing": (None, "Bearer, ApiKey"),
        "expired": (f"Bearer {api.token(admin, org, ttl=timedelta(seconds=-5))}", refused_token),
        "forged": (f"Bearer {jwt.encode(claims, 'not-the-secret-' * 4)}", refused_token),
        # Well formed and signed: refused by the sign-in's own statement, inside the operation.
        "nobody": (f"Bearer {api.token_for_email('nobody@example.test', org.slug)}", refused_token),
        "revoked key": (f"ApiKey {revoked}", "Bearer, ApiKey"),
        "unknown scheme": ("Basic YTpi", "Bearer, ApiKey"),
    }


@ANSWERED_BY
@METHODS
@pytest.mark.parametrize("accept", [None, GRAPHQL_RESPONSE])
async def test_unauthenticated_is_401_with_a_challenge(
    api_with: AppFactory, world: World, compiled: bool, method: str, accept: str | None
) -> None:
    api = await api_with(compiled_reads=compiled)
    for name, (header, wanted) in (await _credentials(api, world)).items():
        headers = {"Authorization": header} if header else {}
        if accept:
            headers["Accept"] = accept
        for query in (LEARNERS, VIEWER):
            response = await ask(api, method, query, headers)
            assert response.status_code == 401, (name, response.text)
            assert response.headers["WWW-Authenticate"] == wanted, name
            body = response.json()
            assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
            if accept:
                # Refused before anything ran: a request error, without `data`.
                assert response.headers["content-type"] == GRAPHQL_RESPONSE_TYPE
                assert "data" not in body, body
            else:
                assert response.headers["content-type"] == "application/json"
                assert body["data"] is None


@pytest.mark.parametrize("introspection", [True, False])
async def test_anonymous_introspection_is_no_authentication_failure_where_enabled(
    api_with: AppFactory, introspection: bool
) -> None:
    api = await api_with(anonymous_introspection=introspection)
    schema = await api.client.post(
        "/graphql", json={"query": "{ __schema { queryType { name } } }"}
    )
    if introspection:
        assert schema.status_code == 200, schema.text
        assert schema.json()["data"] == {"__schema": {"queryType": {"name": "Query"}}}
        assert "www-authenticate" not in schema.headers
    else:
        assert schema.status_code == 401 and schema.headers["WWW-Authenticate"] == "Bearer, ApiKey"
    # Anything else still needs credentials, whether the document was read or not.
    data = await api.client.post("/graphql", json={"query": VIEWER})
    assert data.status_code == 401 and data.headers["WWW-Authenticate"] == "Bearer, ApiKey"
    assert data.json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}


async def test_signed_in_answers_carry_no_challenge(api: Api, world: World) -> None:
    headers = await _admin(api, world)
    for query in (LEARNERS, VIEWER, "{ nope }", "{ learners(first: 501) { totalCount } }"):
        response = await api.client.post("/graphql", json={"query": query}, headers=headers)
        assert response.status_code == 200, response.text
        assert "www-authenticate" not in response.headers


async def test_cors_exposes_the_challenge(api_with: AppFactory) -> None:
    api = await api_with(allowed_origins="https://app.example")
    response = await api.client.post(
        "/graphql", json={"query": VIEWER}, headers={"Origin": "https://app.example"}
    )
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert "www-authenticate" in exposed


async def test_rate_limited_stays_429_in_either_media_type(
    api_with: AppFactory, world: World
) -> None:
    api = await api_with(rate_points_per_minute=3)
    headers = await _admin(api, world)
    for accept, content_type in (
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE_TYPE),
    ):
        response = await api.client.post(
            "/graphql", json={"query": LEARNERS}, headers={**headers, "Accept": accept}
        )
        assert response.status_code == 429, response.text
        assert response.headers["content-type"] == content_type
        assert response.json()["errors"][0]["extensions"] == {"code": "RATE_LIMITED"}


# --- application/graphql-response+json ------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("text/html", "application/json"),  # neither: answered as before the newer type
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}; charset=utf-8", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, application/json;q=0.9", GRAPHQL_RESPONSE),
        (f"application/json;q=0.9, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE}", "application/json"),  # equal: first listed
        (f"{GRAPHQL_RESPONSE}, application/json", GRAPHQL_RESPONSE),
        (f"*/*, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),  # named beats a wildcard
        (f"application/*;q=0.5, {GRAPHQL_RESPONSE};q=0.4", "application/json"),
        (f"{GRAPHQL_RESPONSE};q=0, */*", "application/json"),
        ("APPLICATION/GRAPHQL-RESPONSE+JSON;Q=1", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE};q=nonsense, application/json", "application/json"),
        (f"{GRAPHQL_RESPONSE};q=nan, application/json;q=0.1", "application/json"),
        (f"{GRAPHQL_RESPONSE};q=2, application/json;q=0.1", "application/json"),
    ],
)
def test_the_media_type_is_negotiated(accept: str | None, wanted: str) -> None:
    assert negotiate(accept) == wanted


@ANSWERED_BY
@METHODS
async def test_answers_in_the_media_type_asked_for(
    api_with: AppFactory, world: World, compiled: bool, method: str
) -> None:
    api = await api_with(compiled_reads=compiled)
    headers = await _admin(api, world)
    before = compiled_answers(api)
    plain = await ask(api, method, LEARNERS, headers)
    asked = await ask(api, method, LEARNERS, {**headers, "Accept": GRAPHQL_RESPONSE})
    assert compiled_answers(api) - before == (2 if compiled else 0)
    assert plain.headers["content-type"] == "application/json"
    assert asked.headers["content-type"] == GRAPHQL_RESPONSE_TYPE
    assert plain.status_code == asked.status_code == 200
    assert plain.content == asked.content
    assert asked.json()["data"] == {"learners": {"edges": [{"node": {"name": "Ada Learner"}}]}}
    # The answer depends on Accept: caches must keep one per media type.
    assert "accept" in {v.strip().lower() for v in asked.headers["vary"].split(",")}


REQUEST_ERRORS: dict[str, tuple[dict[str, Any], str]] = {
    "syntax": ({"query": "{ viewer { "}, "GRAPHQL_VALIDATION_FAILED"),
    "validation": ({"query": "{ nope }"}, "GRAPHQL_VALIDATION_FAILED"),
    "variable": (
        {
            "query": "query ($n: Int) { learners(first: $n) { totalCount } }",
            "variables": {"n": "many"},
        },
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "missing variable": (
        {"query": "query ($n: Int!) { learners(first: $n) { totalCount } }"},
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "depth": (
        {"query": "{ learners { edges { node { " + "records { learner { " * 6 + "name" + " }" * 16},
        "MAX_DEPTH_EXCEEDED",
    ),
    "aliases": (
        {"query": "{ " + " ".join(f"a{i}: viewer {{ roles }}" for i in range(31)) + " }"},
        "MAX_ALIASES_EXCEEDED",
    ),
    "tokens": (
        {"query": "{ viewer { roles } " + "__typename " * 4000 + "}"},
        "MAX_TOKENS_EXCEEDED",
    ),
    "cost": (
        {"query": "{ learners(first: 500) { edges { node { records { evidence { id } } } } } }"},
        "MAX_COST_EXCEEDED",
    ),
}


@ANSWERED_BY
@METHODS
@pytest.mark.parametrize("error", REQUEST_ERRORS)
async def test_request_errors_are_400_in_the_newer_media_type_only(
    api_with: AppFactory, world: World, compiled: bool, method: str, error: str
) -> None:
    api = await api_with(compiled_reads=compiled)
    headers = await _admin(api, world)
    body, code = REQUEST_ERRORS[error]
    query, more = body["query"], {k: v for k, v in body.items() if k != "query"}

    asked = await ask(api, method, query, {**headers, "Accept": GRAPHQL_RESPONSE}, **more)
    assert asked.status_code == 400, asked.text
    assert asked.headers["content-type"] == GRAPHQL_RESPONSE_TYPE
    answer = asked.json()
    assert "data" not in answer, answer  # nothing ran
    assert {e["extensions"]["code"] for e in answer["errors"]} == {code}

    plain = await ask(api, method, query, headers, **more)  # application/json, as before
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/json"
    assert plain.json()["data"] is None
    assert {e["extensions"]["code"] for e in plain.json()["errors"]} == {code}


@ANSWERED_BY
async def test_field_errors_stay_200_with_their_data(
    api_with: AppFactory, world: World, compiled: bool
) -> None:
    api = await api_with(compiled_reads=compiled)
    headers = {**await _admin(api, world), "Accept": GRAPHQL_RESPONSE}
    response = await api.client.post(
        "/graphql",
        json={"query": "{ viewer { roles } learners(first: 501) { totalCount } }"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["data"] is None and answer["errors"][0]["extensions"]["code"] == "INVALID"
    assert answer["errors"][0]["path"] == ["learners"]


@ANSWERED_BY
@METHODS
@pytest.mark.parametrize("accept", [None, GRAPHQL_RESPONSE])
async def test_several_operations_without_a_name_are_a_request_error(
    api_with: AppFactory, world: World, compiled: bool, method: str, accept: str | None
) -> None:
    api = await api_with(compiled_reads=compiled)
    headers = await _admin(api, world)
    if accept:
        headers["Accept"] = accept
    document = f"query Mine {VIEWER} query Learners {LEARNERS}"
    refused = await ask(api, method, document, headers)
    assert refused.status_code == 400, refused.text
    (error,) = refused.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert "operationName" in error["message"]
    assert "data" not in refused.json()

    unknown = await ask(api, method, document, headers, operationName="Theirs")
    assert unknown.status_code == 400
    assert 'named "Theirs"' in unknown.json()["errors"][0]["message"]

    for name, data in (
        ("Mine", {"viewer": {"roles": ["ADMIN"]}}),
        ("Learners", {"learners": {"edges": [{"node": {"name": "Ada Learner"}}]}}),
    ):
        named = await ask(api, method, document, headers, operationName=name)
        assert named.status_code == 200 and named.json()["data"] == data, named.text


async def test_mutations_over_get_are_405_in_the_newer_media_type(api: Api, world: World) -> None:
    headers = await _admin(api, world)
    mutation = 'mutation { createLearner(input: {name: "Via Get"}) { __typename } }'
    response = await api.client.get(
        "/graphql", params={"query": mutation}, headers={**headers, "Accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_TYPE
    assert response.json()["errors"][0]["extensions"] == {"code": "METHOD_NOT_ALLOWED"}
    # application/json: as before (tests/api/test_http.py).
    response = await api.client.get("/graphql", params={"query": mutation}, headers=headers)
    assert response.status_code == 400


async def test_refused_bodies_answer_in_the_media_type_asked_for(api: Api) -> None:
    response = await api.client.post(
        "/graphql",
        content=b"{not json",
        headers={"Content-Type": "application/json", "Accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_TYPE
    assert response.json()["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}

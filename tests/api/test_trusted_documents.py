"""Documents named instead of sent (server/persisted.py): automatic persisted queries, trusted
documents, and GET answers revalidated by their ETag; on both databases and both read paths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.app import create_app
from server.cli import main
from server.services import Services
from server.settings import ConfigurationError
from tests.conftest import AppFactory, Backend, make_settings
from tests.factories import World
from tests.helpers import Api, row_counts

PAGE = "query Page { learners(first: 5) { edges { node { id name } } } }"
OTHER = "query Other { learners(first: 3) { edges { node { name } } } }"
CREATE = 'mutation Create { createLearner(input: {name: "Via Get"}) { __typename } }'
GRAPHQL_RESPONSE = "application/graphql-response+json"
PATHS = pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "standard"])


def sha256(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def persisted(query: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256(query)}}


async def admin_headers(api: Api, world: World) -> dict[str, str]:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    await world.learner(org, name="Ann Able")
    return {"Authorization": f"Bearer {api.token(admin, org)}"}


async def send(
    api: Api, method: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    if method == "GET":
        params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        return await api.client.get("/graphql", params=params, headers=headers or {})
    return await api.client.post("/graphql", json=body, headers=headers or {})


def code_of(response: httpx.Response) -> str:
    (error,) = response.json()["errors"]
    return str(error["extensions"]["code"])


def answered_by_compiled(api: Api) -> int:
    reads = api.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
    return int(reads.answered) if reads is not None else 0


# Automatic persisted queries.


@PATHS
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_hash_is_unknown_until_sent_with_its_document_then_it_is_enough(
    api_with: AppFactory, world: World, compiled: bool, method: str
) -> None:
    api = await api_with(compiled_reads=compiled)
    headers = await admin_headers(api, world)
    alone = {"extensions": persisted(PAGE)}

    missed = await send(api, method, alone, headers)
    assert (missed.status_code, code_of(missed)) == (200, "PERSISTED_QUERY_NOT_FOUND")
    assert missed.json()["errors"][0]["message"] == "PersistedQueryNotFound"  # Apollo's words

    registered = await send(api, method, {"query": PAGE, **alone}, headers)
    assert registered.status_code == 200, registered.text
    answer = registered.json()
    assert answer["data"]["learners"]["edges"][0]["node"]["name"] == "Ann Able"

    before = answered_by_compiled(api)
    hit = await send(api, method, alone, headers)
    assert hit.status_code == 200 and hit.json() == answer
    assert answered_by_compiled(api) - before == (1 if compiled else 0)


@PATHS
async def test_anonymous_or_failing_requests_register_nothing(
    api_with: AppFactory, world: World, compiled: bool
) -> None:
    api = await api_with(compiled_reads=compiled)
    headers = await admin_headers(api, world)
    alone = {"extensions": persisted(PAGE)}

    anonymous = await send(api, "POST", {"query": PAGE, **alone})
    assert (anonymous.status_code, code_of(anonymous)) == (401, "UNAUTHENTICATED")
    forged = await send(api, "POST", {"query": PAGE, **alone}, {"Authorization": "Bearer nope"})
    assert forged.status_code == 401
    assert code_of(await send(api, "POST", alone, headers)) == "PERSISTED_QUERY_NOT_FOUND"

    invalid = "{ learners(first: 5) { edges { node { nosuchfield } } } }"
    refused = await send(api, "POST", {"query": invalid, "extensions": persisted(invalid)}, headers)
    assert code_of(refused) == "GRAPHQL_VALIDATION_FAILED"
    missed = await send(api, "POST", {"extensions": persisted(invalid)}, headers)
    assert code_of(missed) == "PERSISTED_QUERY_NOT_FOUND"


@PATHS
async def test_a_hash_that_is_not_the_documents_is_refused_and_registers_nothing(
    api_with: AppFactory, world: World, compiled: bool, backend: Backend
) -> None:
    api = await api_with(compiled_reads=compiled)
    headers = await admin_headers(api, world)
    before = await row_counts(backend.engine)
    for method in ("POST", "GET"):
        wrong = await send(api, method, {"query": PAGE, "extensions": persisted(OTHER)}, headers)
        assert (wrong.status_code, code_of(wrong)) == (400, "PERSISTED_QUERY_HASH_MISMATCH")
        assert "not the SHA-256" in wrong.json()["errors"][0]["message"]
    for query in (PAGE, OTHER):
        missed = await send(api, "POST", {"extensions": persisted(query)}, headers)
        assert code_of(missed) == "PERSISTED_QUERY_NOT_FOUND"
    assert await row_counts(backend.engine) == before


@PATHS
async def test_registrations_are_bounded_in_bytes(
    api_with: AppFactory, world: World, compiled: bool
) -> None:
    # Room for one of the two documents: registering the second evicts the first.
    api = await api_with(compiled_reads=compiled, persisted_query_cache_bytes=len(PAGE) + 400)
    headers = await admin_headers(api, world)
    for query in (PAGE, OTHER):
        registered = await send(
            api, "POST", {"query": query, "extensions": persisted(query)}, headers
        )
        assert registered.status_code == 200 and "errors" not in registered.json()
    evicted = await send(api, "POST", {"extensions": persisted(PAGE)}, headers)
    assert code_of(evicted) == "PERSISTED_QUERY_NOT_FOUND"
    kept = await send(api, "POST", {"extensions": persisted(OTHER)}, headers)
    assert kept.status_code == 200 and kept.json()["data"]["learners"]["edges"]

    # Nothing is registered at all under a budget smaller than any entry.
    none = await api_with(compiled_reads=compiled, persisted_query_cache_bytes=0)
    await send(none, "POST", {"query": PAGE, "extensions": persisted(PAGE)}, headers)
    missed = await send(none, "POST", {"extensions": persisted(PAGE)}, headers)
    assert code_of(missed) == "PERSISTED_QUERY_NOT_FOUND"


# Trusted documents.


def trusted_file(tmp_path: Path, documents: dict[str, str]) -> Path:
    path = tmp_path / "persisted-documents.json"
    path.write_text(json.dumps(documents))
    return path


@PATHS
async def test_trusted_documents_only_run_by_id(
    api_with: AppFactory, world: World, compiled: bool, tmp_path: Path
) -> None:
    # Ids as GraphQL codegen's client preset writes them (its default hash is SHA-1).
    page_id = hashlib.sha1(PAGE.encode()).hexdigest()
    path = trusted_file(tmp_path, {page_id: PAGE, "create": CREATE})
    api = await api_with(compiled_reads=compiled, trusted_documents=str(path))
    documents = api.client._transport.app.state.services.schema.documents  # type: ignore[attr-defined]
    parsed = documents.parsed
    if compiled:  # planned at start, before any request
        assert documents.pinned[PAGE].plans["Page"] is not None
    headers = await admin_headers(api, world)

    by_id = await send(api, "POST", {"documentId": page_id}, headers)
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["data"]["learners"]["edges"][0]["node"]["name"] == "Ann Able"
    before = answered_by_compiled(api)
    for body in (
        {"documentId": f"sha256:{sha256(PAGE)}"},  # GraphQL over HTTP's prefixed identifier
        {"extensions": persisted(PAGE)},  # Apollo's persisted query link
        {"query": PAGE, "extensions": persisted(PAGE)},
    ):
        for method in ("POST", "GET"):
            response = await send(api, method, body, headers)
            assert response.status_code == 200 and response.json() == by_id.json(), body
    assert answered_by_compiled(api) - before == (6 if compiled else 0)
    assert documents.parsed == parsed  # parsed once, at start

    created = await send(api, "POST", {"documentId": "create"}, headers)
    assert created.json()["data"]["createLearner"]["__typename"] == "LearnerCreated"

    for body, code in (
        ({"query": PAGE}, "PERSISTED_QUERY_ONLY"),
        ({"query": OTHER}, "PERSISTED_QUERY_ONLY"),
        ({"documentId": "unknown"}, "TRUSTED_DOCUMENT_NOT_FOUND"),
        ({"extensions": persisted(OTHER)}, "TRUSTED_DOCUMENT_NOT_FOUND"),
        ({"query": OTHER, "extensions": persisted(OTHER)}, "TRUSTED_DOCUMENT_NOT_FOUND"),
        ({"query": OTHER, "extensions": persisted(PAGE)}, "PERSISTED_QUERY_HASH_MISMATCH"),
        ({"documentId": page_id, "extensions": persisted(OTHER)}, "PERSISTED_QUERY_HASH_MISMATCH"),
        ({"documentId": page_id, "query": PAGE}, "BAD_REQUEST"),
    ):
        for method in ("POST", "GET"):
            refused = await send(api, method, body, headers)
            assert (refused.status_code, code_of(refused)) == (400, code), (method, body)
    assert code_of(await send(api, "POST", {"query": PAGE})) == "PERSISTED_QUERY_ONLY"


async def test_without_trusted_documents_an_id_names_nothing(
    api_with: AppFactory, world: World
) -> None:
    api = await api_with()
    headers = await admin_headers(api, world)
    refused = await send(api, "POST", {"documentId": sha256(PAGE)}, headers)
    assert (refused.status_code, code_of(refused)) == (400, "TRUSTED_DOCUMENT_NOT_FOUND")
    assert "CASELOAD_TRUSTED_DOCUMENTS" in refused.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot be read"),
        ("{not json", "is not JSON"),
        ("[]", "must be a JSON object"),
        ("{}", "must be a JSON object"),
        ('{"a": 5}', "'a' is not a string"),
        ('{"a": "query { nosuchfield }"}', "'a' does not validate"),
        ('{"a": "query {"}', "'a' does not validate"),
    ],
)
async def test_a_trusted_documents_file_that_cannot_be_used_stops_the_start(
    backend: Backend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    says: str,
) -> None:
    path = tmp_path / "documents.json"
    if content is not None:
        path.write_text(content)
    built = Services.build(make_settings(backend.url, trusted_documents=str(path)))
    try:
        with pytest.raises(ConfigurationError, match=says):
            create_app(services=built)
    finally:
        await built.aclose()
    # `caseload serve` refuses too, before it migrates or listens.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CASELOAD_JWT_SECRET", "secret-" * 8)
    monkeypatch.setenv("CASELOAD_DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite3'}")
    monkeypatch.setenv("CASELOAD_TRUSTED_DOCUMENTS", str(path))
    assert main(["serve", "--port", "1"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("caseload: CASELOAD_TRUSTED_DOCUMENTS (") and says in error
    assert not (tmp_path / "x.sqlite3").exists()


# GET: revalidated by ETag.


@PATHS
async def test_get_answers_carry_a_strong_etag_and_revalidate_with_304(
    api_with: AppFactory, world: World, compiled: bool
) -> None:
    api = await api_with(compiled_reads=compiled)
    headers = await admin_headers(api, world)
    first = await send(api, "GET", {"query": PAGE}, headers)
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('"') and tag.endswith('"') and not tag.startswith("W/")
    assert first.headers["cache-control"] == "private, no-cache"
    assert (await send(api, "GET", {"query": PAGE}, headers)).headers["etag"] == tag

    for held in (tag, f"W/{tag}", f'"other", {tag}', "*"):
        unchanged = await send(api, "GET", {"query": PAGE}, {**headers, "If-None-Match": held})
        assert unchanged.status_code == 304, held
        assert unchanged.content == b""
        assert unchanged.headers["etag"] == tag
        assert unchanged.headers["cache-control"] == "private, no-cache"
        assert "content-type" not in unchanged.headers

    stale = await send(api, "GET", {"query": PAGE}, {**headers, "If-None-Match": '"other"'})
    assert stale.status_code == 200 and stale.json() == first.json()
    # The data changes: so does the tag, and the client's copy is answered anew.
    await api.client.post(
        "/graphql", json={"query": CREATE.replace("Via Get", "Aaron First")}, headers=headers
    )
    changed = await send(api, "GET", {"query": PAGE}, {**headers, "If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert changed.json()["data"]["learners"]["edges"][0]["node"]["name"] == "Aaron First"

    # POST answers and refusals carry none.
    posted = await send(api, "POST", {"query": PAGE}, headers)
    assert "etag" not in posted.headers
    assert "etag" not in (await send(api, "GET", {"query": PAGE})).headers  # 401


@PATHS
async def test_mutations_over_get_are_refused_by_text_id_or_hash(
    api_with: AppFactory, world: World, compiled: bool, backend: Backend, tmp_path: Path
) -> None:
    path = trusted_file(tmp_path, {"create": CREATE})
    trusted = await api_with(compiled_reads=compiled, trusted_documents=str(path))
    api = await api_with(compiled_reads=compiled)
    headers = await admin_headers(api, world)
    before = await row_counts(backend.engine)
    for server, body in (
        (api, {"query": CREATE}),
        (api, {"query": CREATE, "extensions": persisted(CREATE)}),
        (trusted, {"documentId": "create"}),
        (trusted, {"extensions": persisted(CREATE)}),
    ):
        refused = await send(server, "GET", body, headers)
        assert refused.status_code == 400, refused.text
        assert "mutations are not allowed" in refused.json()["errors"][0]["message"]
        newer = await send(server, "GET", body, {**headers, "Accept": GRAPHQL_RESPONSE})
        assert (newer.status_code, code_of(newer)) == (405, "METHOD_NOT_ALLOWED")
        assert newer.headers["allow"] == "POST"
    assert await row_counts(backend.engine) == before


async def test_graphiql_is_still_served_to_browsers(
    api_with: AppFactory, world: World, tmp_path: Path
) -> None:
    api = await api_with(graphiql=True)
    page = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "<title>Caseload GraphiQL" in page.text
    assert "etag" not in page.headers
    # A GET naming its document by hash is run, whatever it accepts.
    headers = await admin_headers(api, world)
    body = {"query": PAGE, "extensions": persisted(PAGE)}
    await send(api, "POST", body, headers)
    hit = await send(api, "GET", {"extensions": persisted(PAGE)}, {**headers, "Accept": "*/*"})
    assert hit.status_code == 200 and hit.json()["data"]["learners"]["edges"]


# Hostile input: typed refusals, never a 5xx.

HOSTILE: list[Any] = [
    {"extensions": {"persistedQuery": "x"}},
    {"extensions": {"persistedQuery": []}},
    {"extensions": {"persistedQuery": {"version": 2, "sha256Hash": sha256(PAGE)}}},
    {"extensions": {"persistedQuery": {"version": "1", "sha256Hash": sha256(PAGE)}}},
    {"extensions": {"persistedQuery": {"version": True, "sha256Hash": sha256(PAGE)}}},
    {"extensions": {"persistedQuery": {"version": 1.0, "sha256Hash": sha256(PAGE)}}},
    {"extensions": {"persistedQuery": {"version": 1}}},
    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": 5}}},
    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": None}}},
    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": [sha256(PAGE)]}}},
    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": {"a": 1}}}},
    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "zz" * 32}}},
    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "a" * 65}}},
    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "a" * 500_000}}},
    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "é" * 64}}},
    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "٣" * 64}}},
    {"extensions": ["persistedQuery"]},
    {"extensions": "persistedQuery"},
    {"documentId": 5},
    {"documentId": None},
    {"documentId": ""},
    {"documentId": []},
    {"documentId": {"id": "x"}},
    {"documentId": "x" * 201},
    {"documentId": "x" * 500_000},
    {"documentId": "a\x00b"},
    {"query": 5, "extensions": persisted(PAGE)},
    {"query": "", "extensions": persisted(PAGE)},
    {"query": None, "documentId": None},
    {
        "extensions": {
            "persistedQuery": {"version": 1, "sha256Hash": sha256(PAGE)},
            "x": "y" * 900_000,
        }
    },
]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "standard"])
async def test_hostile_persisted_queries_are_refused_with_a_code(
    api_with: AppFactory, world: World, compiled: bool, tmp_path: Path
) -> None:
    plain = await api_with(compiled_reads=compiled)
    path = trusted_file(tmp_path, {"page": PAGE})
    trusted = await api_with(compiled_reads=compiled, trusted_documents=str(path))
    headers = await admin_headers(plain, world)
    nested: dict[str, Any] = {}
    deep = nested
    for _ in range(80):
        deep["persistedQuery"] = {}
        deep = deep["persistedQuery"]
    raw = [
        b'{"documentId": "\\ud800"}',
        b'{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "\\ud800"}}}',
        json.dumps({"extensions": nested}).encode(),
    ]
    for api in (plain, trusted):
        for body in HOSTILE:
            for method in ("POST", "GET"):
                if method == "GET" and len(json.dumps(body)) > 10_000:
                    continue  # past what a URL holds
                response = await send(api, method, body, headers)
                assert response.status_code < 500, (method, body, response.text)
                assert response.status_code in (200, 400), (method, body, response.text)
                codes = {e["extensions"]["code"] for e in response.json().get("errors", [])}
                if response.status_code == 400:
                    assert codes and codes <= {
                        "BAD_REQUEST",
                        "PERSISTED_QUERY_HASH_MISMATCH",
                        "PERSISTED_QUERY_ONLY",
                        "TRUSTED_DOCUMENT_NOT_FOUND",
                    }, (method, body, response.text)
        for content in raw:
            response = await api.client.post(
                "/graphql",
                content=content,
                headers={**headers, "Content-Type": "application/json"},
            )
            assert response.status_code == 400, response.text
            assert code_of(response) == "BAD_REQUEST"
        bad_json = await api.client.get(
            "/graphql", params={"extensions": "{persistedQuery"}, headers=headers
        )
        assert (bad_json.status_code, code_of(bad_json)) == (400, "BAD_REQUEST")


async def test_browsers_may_revalidate_across_origins(api_with: AppFactory) -> None:
    api = await api_with(allowed_origins="https://app.example")
    preflight = await api.client.options(
        "/graphql",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization, If-None-Match",
        },
    )
    assert preflight.status_code == 200, preflight.text
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "if-none-match" in allowed

"""The HTTP envelope: bodies refused before authentication, GET, CORS, health, request ids."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest

from db.migrate import head_revision
from server.app import create_app
from server.services import Services
from tests.conftest import AppFactory, Backend, make_settings
from tests.factories import World
from tests.helpers import Api, row_counts

VIEWER = "{ viewer { roles } }"


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.access for r in caplog.records if r.name == "caseload.access"]  # type: ignore[attr-defined]


def _refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": code}, error
    assert isinstance(error["message"], str)
    return str(error["message"])


async def _admin_headers(api: Api, world: World) -> dict[str, str]:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    return {"Authorization": f"Bearer {api.token(admin, org)}"}


def _nested(depth: int) -> bytes:
    """A body whose objects and arrays nest `depth` levels (the outer object is level 1)."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return f'{{"query": "{{ viewer {{ roles }} }}", "variables": {{"x": {inner}}}}}'.encode()


@pytest.mark.parametrize(
    ("body", "wanted"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b'{"query": NaN}', "not valid JSON"),
        (b"42", "one JSON object"),
        (b'"query"', "one JSON object"),
        (b"[]", "one JSON object"),
        (b'[{"query": "{ viewer { roles } }"}]', "batches are not accepted"),
        (b'{"query": 5}', "`query`"),
        (b'{"variables": {}}', "`query`"),
        (b'{"query": "{ viewer { roles } }", "variables": [1]}', "`variables`"),
        (b'{"query": "{ viewer { roles } }", "operationName": 1}', "`operationName`"),
        (b'{"query": "{ viewer { roles } }", "extensions": "x"}', "`extensions`"),
        (_nested(65), "nested deeper than 64"),
        (_nested(1_000), "nested deeper than 64"),
        (b"[" * 200_000 + b"]" * 200_000, "nested deeper than 64"),
    ],
)
async def test_bad_bodies_are_400_before_authentication(
    api: Api, world: World, caplog: pytest.LogCaptureFixture, body: bytes, wanted: str
) -> None:
    headers = await _admin_headers(api, world)
    caplog.set_level(logging.INFO, logger="caseload.access")
    response = await api.client.post(
        "/graphql", content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert wanted in _refused(response, 400, "BAD_REQUEST")
    (line,) = _access_lines(caplog)
    # Authentication would have run statements and named the principal.
    assert line["principal"] is None and line["sql_statements"] == 0, line
    assert line["outcome"] == "http_error" and line["codes"] == ["BAD_REQUEST"]


async def test_nesting_up_to_the_limit_reaches_graphql(api: Api, world: World) -> None:
    headers = await _admin_headers(api, world)
    response = await api.client.post(
        "/graphql", content=_nested(64), headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"viewer": {"roles": ["ADMIN"]}}, "extensions": {"cost": 1}}


async def test_body_over_the_limit_is_413_by_content_length(
    api_with: AppFactory, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    api = await api_with(max_body_bytes=1000)
    headers = await _admin_headers(api, world)
    caplog.set_level(logging.INFO, logger="caseload.access")
    query = "{ viewer { roles } }" + " " * 2000
    response = await api.client.post("/graphql", json={"query": query}, headers=headers)
    assert "larger than 1000 bytes" in _refused(response, 413, "BODY_TOO_LARGE")
    (line,) = _access_lines(caplog)
    assert line["principal"] is None and line["sql_statements"] == 0
    # Just under the limit is fine.
    response = await api.client.post("/graphql", json={"query": query[:900]}, headers=headers)
    assert response.json() == {"data": {"viewer": {"roles": ["ADMIN"]}}, "extensions": {"cost": 1}}


async def test_default_limit_is_one_mebibyte_and_chunked_bodies_are_cut_while_read(
    api: Api, world: World
) -> None:
    headers = await _admin_headers(api, world)
    chunk, sent = b" " * 65_536, []

    async def fifty_megabytes() -> AsyncIterator[bytes]:
        yield b'{"query": "{ viewer { roles } }'
        for _ in range(800):
            sent.append(1)
            yield chunk

    response = await api.client.post(
        "/graphql",
        content=fifty_megabytes(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert "larger than 1048576 bytes" in _refused(response, 413, "BODY_TOO_LARGE")
    assert len(sent) <= 17  # stopped reading just past 1 MiB, not after 50 MB


async def test_only_json_is_accepted(api: Api) -> None:
    response = await api.client.post(
        "/graphql", content=b"query=%7Bviewer%7D", headers={"Content-Type": "text/plain"}
    )
    _refused(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_queries_over_get_and_never_mutations(
    api: Api, world: World, backend: Backend
) -> None:
    headers = await _admin_headers(api, world)
    response = await api.client.get("/graphql", params={"query": VIEWER}, headers=headers)
    assert response.json() == {"data": {"viewer": {"roles": ["ADMIN"]}}, "extensions": {"cost": 1}}

    before = await row_counts(backend.engine)
    mutation = 'mutation { createLearner(input: {name: "Via Get"}) { __typename } }'
    response = await api.client.get("/graphql", params={"query": mutation}, headers=headers)
    assert "mutations are not allowed" in _refused(response, 400, "BAD_REQUEST")
    assert await row_counts(backend.engine) == before


async def test_other_methods_and_paths_answer_json(api: Api) -> None:
    _refused(await api.client.put("/graphql", json={"query": VIEWER}), 405, "METHOD_NOT_ALLOWED")
    _refused(await api.client.get("/nowhere"), 404, "NOT_FOUND")


async def test_a_client_gone_before_its_body_is_answered_by_nobody(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(services=services)
    messages: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": b'{"query": "{ vie', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"500")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    caplog.set_level(logging.INFO)
    await app(scope, receive, send)  # no exception escapes
    assert sent == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    (line,) = _access_lines(caplog)
    assert line["outcome"] == "client_disconnected" and line["status"] is None


async def test_request_id_is_accepted_when_sane_and_always_returned(api: Api) -> None:
    response = await api.client.get("/healthz", headers={"X-Request-Id": "req-42/abc"})
    assert response.headers["X-Request-Id"] == "req-42/abc"
    for value in (b"a" * 129, b"has space", "naïve".encode(), b"tab\there", b""):
        response = await api.client.get("/healthz", headers=[(b"X-Request-Id", value)])
        generated = response.headers["X-Request-Id"]
        assert generated.encode() != value and uuid.UUID(generated)
    response = await api.client.post("/graphql", content=b"[]", headers={"Content-Type": "x"})
    assert uuid.UUID(response.headers["X-Request-Id"])


async def test_health_needs_no_database_and_readiness_does(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    response = await api.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "revision": head_revision()}

    unreachable = Services.build(make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"))
    transport = httpx.ASGITransport(app=create_app(services=unreachable))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json() == {"status": "unavailable", "reason": "database unreachable"}
    finally:
        await unreachable.aclose()


async def test_an_unmigrated_database_is_not_ready(empty_database: str) -> None:
    services = Services.build(make_settings(empty_database))
    transport = httpx.ASGITransport(app=create_app(services=services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/readyz")
    finally:
        await services.aclose()
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "reason": f"database at revision (empty), migrations at {head_revision()}: "
        "run `caseload db upgrade`",
    }


PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, x-request-id",
}


def _header_list(response: httpx.Response, name: str) -> set[str]:
    return {h.strip().lower() for h in response.headers[name].split(",")}


async def test_cors_allows_nothing_by_default(api: Api) -> None:
    response = await api.client.options(
        "/graphql", headers={"Origin": "https://app.example", **PREFLIGHT}
    )
    _refused(response, 400, "CORS_REFUSED")
    assert "access-control-allow-origin" not in response.headers
    response = await api.client.post(
        "/graphql", json={"query": VIEWER}, headers={"Origin": "https://app.example"}
    )
    assert "access-control-allow-origin" not in response.headers


async def test_cors_answers_allowed_origins_only(api_with: AppFactory, world: World) -> None:
    api = await api_with(allowed_origins="https://app.example, https://admin.example")
    response = await api.client.options(
        "/graphql", headers={"Origin": "https://admin.example", **PREFLIGHT}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://admin.example"
    allowed = _header_list(response, "access-control-allow-headers")
    assert {"authorization", "content-type", "idempotency-key", "x-request-id"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]

    refused = await api.client.options(
        "/graphql", headers={"Origin": "https://evil.example", **PREFLIGHT}
    )
    _refused(refused, 400, "CORS_REFUSED")
    assert "access-control-allow-origin" not in refused.headers

    headers = await _admin_headers(api, world)
    response = await api.client.post(
        "/graphql", json={"query": VIEWER}, headers={**headers, "Origin": "https://app.example"}
    )
    assert response.json() == {"data": {"viewer": {"roles": ["ADMIN"]}}, "extensions": {"cost": 1}}
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert _header_list(response, "access-control-expose-headers") == {
        "x-request-id",
        "etag",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
        "www-authenticate",
    }


async def test_browsers_may_send_the_client_and_organisation_headers(
    api_with: AppFactory,
) -> None:
    api = await api_with(allowed_origins="https://app.example")
    response = await api.client.options(
        "/graphql",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, X-Caseload-Client, "
            "X-Caseload-Organisation",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert {"x-caseload-client", "x-caseload-organisation", "authorization"} <= _header_list(
        response, "access-control-allow-headers"
    )


@pytest.mark.parametrize(
    ("origin", "method", "asked", "wanted"),
    [
        ("https://evil.example", "POST", "content-type", "origin"),
        ("https://app.example", "POST", "content-type, x-forwarded-for", "header"),
        ("https://app.example", "PUT", "content-type", "method"),
        ("https://evil.example", "POST", "x-forwarded-for", "origin"),
    ],
)
async def test_refused_preflights_have_the_graphql_error_shape(
    api_with: AppFactory,
    caplog: pytest.LogCaptureFixture,
    origin: str,
    method: str,
    asked: str,
    wanted: str,
) -> None:
    api = await api_with(allowed_origins="https://app.example")
    caplog.set_level(logging.INFO, logger="caseload.access")
    response = await api.client.options(
        "/graphql",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": asked,
        },
    )
    assert wanted in _refused(response, 400, "CORS_REFUSED")
    if origin != "https://app.example":
        assert "access-control-allow-origin" not in response.headers
    (line,) = _access_lines(caplog)
    assert (line["method"], line["status"], line["outcome"], line["codes"]) == (
        "OPTIONS",
        400,
        "http_error",
        ["CORS_REFUSED"],
    )


def test_origins_must_be_origins() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        make_settings("sqlite://", allowed_origins="https://app.example/path")
    assert make_settings("sqlite://", allowed_origins=" https://a.example ,").origins == [
        "https://a.example"
    ]


async def test_graphiql_only_where_enabled(api_with: AppFactory) -> None:
    page = {"Accept": "text/html"}
    production = await api_with()
    _refused(await production.client.get("/graphql", headers=page), 404, "NOT_FOUND")
    _refused(await production.client.get("/graphiql/static/graphiql.min.js"), 404, "NOT_FOUND")
    for enabled in (await api_with(graphiql=True), await api_with(debug=True)):
        response = await enabled.client.get("/graphql", headers=page)
        assert response.status_code == 200 and "<title>Caseload GraphiQL" in response.text
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert (await api_with(debug=True, graphiql=False)).settings.graphiql_enabled is False


async def test_the_page_loads_only_files_this_server_serves(api_with: AppFactory) -> None:
    api = await api_with(graphiql=True)
    html = (await api.client.get("/graphql", headers={"Accept": "text/html"})).text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(urls) == 7, urls  # the icon (data:), two style sheets, four scripts
    for url in urls:
        if url.startswith("data:"):
            continue
        assert url.startswith("/graphiql/static/"), url
        response = await api.client.get(url)
        assert response.status_code == 200 and len(response.content) > 100, url
    assert "https://" not in html and "http://" not in html
    config = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    assert config["demoUsers"] is None  # not in demo mode


async def test_demo_tokens_only_in_demo_mode(api_with: AppFactory, backend: Backend) -> None:
    from db.seed import seed_demo

    await seed_demo(backend.engine)
    production = await api_with(graphiql=True)
    response = await production.client.post("/graphiql/demo-token", json={"user": "assessor"})
    _refused(response, 404, "NOT_FOUND")

    demo = await api_with(demo=True)
    html = (await demo.client.get("/graphql", headers={"Accept": "text/html"})).text
    config = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    assert [u["label"] for u in config["demoUsers"]] == [
        "support",
        "super admin",
        "admin",
        "senior assessor",
        "manager",
        "assessor",
        "training coordinator",
        "learner",
        "external assessor",
    ]
    for user in config["demoUsers"]:
        response = await demo.client.post("/graphiql/demo-token", json={"user": user["key"]})
        assert response.headers["cache-control"] == "no-store"
        header = response.json()["authorization"]
        answer = await demo.post("{ viewer { user { email } } }", headers={"Authorization": header})
        assert answer.ok()["viewer"]["user"]["email"] == user["email"]
    response = await demo.client.post("/graphiql/demo-token", json={"user": "wizard"})
    assert "Pick one of" in _refused(response, 400, "BAD_REQUEST")

"""The command line, against real databases."""

from __future__ import annotations

import httpx
import jwt
import pytest

from schema import schema
from server.app import create_app
from server.cli import main
from server.services import Services
from tests.conftest import TEST_SECRET, Backend, make_settings


@pytest.fixture
def env(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Backend:
    monkeypatch.setenv("CASELOAD_DATABASE_URL", backend.url)
    monkeypatch.setenv("CASELOAD_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("CASELOAD_DEBUG", "false")
    return backend


async def _post(backend: Backend, header: str, query: str) -> dict[str, object]:
    services = Services.build(make_settings(backend.url))
    transport = httpx.ASGITransport(app=create_app(services=services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post(
                "/graphql", json={"query": query}, headers={"Authorization": header}
            )
            return response.json()  # type: ignore[no-any-return]
    finally:
        await services.aclose()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out.strip()


async def test_seed_demo_then_mint_tokens_and_keys(
    env: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    # The CLI runs its own event loop; run it in a worker thread from this async test.
    import asyncio

    await asyncio.to_thread(main, ["db", "seed", "--preset", "demo"])
    await asyncio.to_thread(main, ["db", "seed", "--preset", "demo"])  # idempotent
    capsys.readouterr()

    token = _run(
        capsys,
        "tokens",
        "mint",
        "--email",
        "super.admin@oakwood.example",
        "--org",
        "oakwood",
        "--ttl",
        "5m",
    )
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"], audience="caseload-api")
    assert claims["sub"] == "super.admin@oakwood.example" and claims["org"] == "oakwood"
    assert claims["exp"] - claims["iat"] == 300
    body = await _post(env, f"Bearer {token}", "{ viewer { roles } learners { totalCount } }")
    assert body == {"data": {"viewer": {"roles": ["SUPER_ADMIN"]}, "learners": {"totalCount": 25}}}

    key = await asyncio.to_thread(
        lambda: main(["apikeys", "create", "--org", "oakwood", "--role", "ADMIN", "--name", "MIS"])
    )
    assert key == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("ck_")
    body = await _post(env, f"ApiKey {printed}", "{ viewer { roles user { name } } }")
    assert body == {"data": {"viewer": {"roles": ["ADMIN"], "user": {"name": "MIS"}}}}
    assert await asyncio.to_thread(main, ["apikeys", "revoke", "--key", printed]) == 0
    body = await _post(env, f"ApiKey {printed}", "{ viewer { roles } }")
    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}  # type: ignore[index]
    assert await asyncio.to_thread(main, ["apikeys", "revoke", "--key", printed]) == 1
    assert "no active API key" in capsys.readouterr().err

    external = _run(capsys, "tokens", "mint", "--email", "jo.external@college.example")
    body = await _post(
        env, f"Bearer {external}", "{ learners { totalCount } staff { totalCount } }"
    )
    assert body == {"data": {"learners": {"totalCount": 3}, "staff": {"totalCount": 0}}}


async def test_create_support_user(env: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    assert (
        await asyncio.to_thread(
            main, ["users", "create-support", "--email", "Desk@Vendor.example", "--name", "Desk"]
        )
        == 0
    )
    capsys.readouterr()
    token = _run(capsys, "tokens", "mint", "--email", "desk@vendor.example")
    body = await _post(env, f"Bearer {token}", "{ viewer { roles user { name } } }")
    assert body == {"data": {"viewer": {"roles": ["SUPPORT"], "user": {"name": "Desk"}}}}


async def test_api_key_for_unknown_organisation_or_role(
    env: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    assert (
        await asyncio.to_thread(
            main, ["apikeys", "create", "--org", "nope", "--role", "ADMIN", "--name", "x"]
        )
        == 1
    )
    assert (
        await asyncio.to_thread(
            main, ["apikeys", "create", "--org", "nope", "--role", "WIZARD", "--name", "x"]
        )
        == 1
    )
    assert "unknown role" in capsys.readouterr().err


def test_schema_export(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "schema", "export") == schema.as_str().strip()

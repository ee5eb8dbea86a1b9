"""The command line, against real databases: what it says, what it makes, how it fails."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import jwt
import pytest

from db.migrate import head_revision
from schema import schema
from server.app import create_app
from server.cli import main
from server.services import Services
from server.settings import PROJECT_ROOT, Settings, jwt_secret
from tests.conftest import PG_ADMIN_URL, TEST_SECRET, Backend, make_settings


@pytest.fixture
def env(backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Backend:
    monkeypatch.setenv("CASELOAD_DATABASE_URL", backend.url)
    monkeypatch.setenv("CASELOAD_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("CASELOAD_DEBUG", "false")
    monkeypatch.setenv("CASELOAD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CASELOAD_JWT_TTL_SECONDS", raising=False)
    return backend


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.err = ""  # what the last command wrote on stderr

    async def __call__(self, *argv: str, status: int = 0) -> str:
        """Run `caseload ARGV` (in a thread: it runs its own event loop); its stdout."""
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, list(argv))
        out, err = self.capsys.readouterr()
        self.err = err
        if status == 0:
            assert code == 0, err
            return out.strip()
        assert code == status, (out, err)
        assert err.startswith("caseload: ") and err.count("\n") == 1, err  # one line
        assert "Traceback" not in err
        return err.strip()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


async def _post(url: str, header: str, query: str, **settings: object) -> dict[str, object]:
    services = Services.build(make_settings(url, **settings))
    transport = httpx.ASGITransport(app=create_app(services=services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post(
                "/graphql", json={"query": query}, headers={"Authorization": header}
            )
            return response.json()  # type: ignore[no-any-return]
    finally:
        await services.aclose()


def _claims(token: str, secret: str = TEST_SECRET) -> dict[str, object]:
    return jwt.decode(token, secret, algorithms=["HS256"], audience="caseload-api")


async def test_seed_demo_then_mint_tokens_and_keys(env: Backend, cli: Cli) -> None:
    out = await cli("db", "seed", "--preset", "demo")
    assert out.startswith("demo: created ") and "2 organisations, 10 users," in out, out
    assert "4 courses" in out and "4 licence pools" in out and "1 auto allocation rules" in out
    assert "35 learners" in out and "42 apprentice records" in out
    assert await cli("db", "seed", "--preset", "demo") == (
        "demo: nothing to create, the demo data is already there"
    )

    token = await cli(
        "tokens",
        "mint",
        "--email",
        "super.admin@oakwood.example",
        "--org",
        "oakwood",
        "--ttl",
        "5m",
    )
    claims = _claims(token)
    assert claims["sub"] == "super.admin@oakwood.example" and claims["org"] == "oakwood"
    assert claims["exp"] - claims["iat"] == 300  # type: ignore[operator]
    body = await _post(env.url, f"Bearer {token}", "{ viewer { roles } learners { totalCount } }")
    assert body["data"] == {"viewer": {"roles": ["SUPER_ADMIN"]}, "learners": {"totalCount": 25}}

    key = await cli("apikeys", "create", "--org", "oakwood", "--role", "ADMIN", "--name", "MIS")
    assert key.startswith("ck_")
    body = await _post(env.url, f"ApiKey {key}", "{ viewer { roles user { name } } }")
    assert body["data"] == {"viewer": {"roles": ["ADMIN"], "user": {"name": "MIS"}}}
    await cli("apikeys", "revoke", "--key", key)
    body = await _post(env.url, f"ApiKey {key}", "{ viewer { roles } }")
    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}  # type: ignore[index]
    assert "no active API key" in await cli("apikeys", "revoke", "--key", key, status=1)

    external = await cli("tokens", "mint", "--email", "jo.external@college.example")
    body = await _post(
        env.url, f"Bearer {external}", "{ learners { totalCount } staff { totalCount } }"
    )
    assert body["data"] == {"learners": {"totalCount": 3}, "staff": {"totalCount": 0}}


async def test_mint_refuses_people_and_organisations_that_do_not_fit(
    env: Backend, cli: Cli
) -> None:
    await cli("db", "seed", "--preset", "demo")
    assert "no user with email nobody@oakwood.example" in await cli(
        "tokens", "mint", "--email", "nobody@oakwood.example", status=1
    )
    assert "no organisation with slug 'nowhere'" in await cli(
        "tokens", "mint", "--email", "admin@oakwood.example", "--org", "nowhere", status=1
    )
    assert "is not a member of 'riverside'; their organisations: oakwood" in await cli(
        "tokens", "mint", "--email", "admin@oakwood.example", "--org", "riverside", status=1
    )
    assert "acts in no organisation. Leave out --org" in await cli(
        "tokens", "mint", "--email", "support@caseload.example", "--org", "oakwood", status=2
    )
    # One membership: no --org needed, and the server accepts the token without `org`.
    token = await cli("tokens", "mint", "--email", "Admin@Oakwood.example")
    assert "org" not in _claims(token)
    body = await _post(env.url, f"Bearer {token}", "{ viewer { roles } }")
    assert body["data"] == {"viewer": {"roles": ["ADMIN"]}}


async def test_mint_asks_for_org_when_the_person_has_several(env: Backend, cli: Cli) -> None:
    from tests.factories import World

    world = World(env.engine)
    first, second = await world.organisation(slug="first"), await world.organisation(slug="second")
    person = await world.staff(first, "ADMIN")
    await world.staff(second, "ASSESSOR", user=person)
    assert "several organisations (first, second). Pass --org" in await cli(
        "tokens", "mint", "--email", person.email, status=2
    )
    assert (
        _claims(await cli("tokens", "mint", "--email", person.email, "--org", "second"))["org"]
        == "second"
    )


@pytest.mark.parametrize(
    ("ttl", "seconds"), [("3600", 3600), ("1h30m", 5400), ("90m", 5400), ("7d", 604800)]
)
async def test_ttl_forms(env: Backend, cli: Cli, ttl: str, seconds: int) -> None:
    await cli("db", "seed", "--preset", "demo")
    token = await cli("tokens", "mint", "--email", "admin@oakwood.example", "--ttl", ttl)
    claims = _claims(token)
    assert claims["exp"] - claims["iat"] == seconds  # type: ignore[operator]


async def test_bad_ttls_are_one_line(env: Backend, cli: Cli) -> None:
    for ttl in ("1x", "h", "-5", "0", "1.5h", "400d", "٣"):
        message = await cli("tokens", "mint", "--email", "a@b.example", "--ttl", ttl, status=2)
        assert message.startswith("caseload: --ttl: TTL"), message


async def test_the_ttl_setting_is_the_default(
    env: Backend, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    await cli("db", "seed", "--preset", "demo")
    monkeypatch.setenv("CASELOAD_JWT_TTL_SECONDS", "120")
    claims = _claims(await cli("tokens", "mint", "--email", "admin@oakwood.example"))
    assert claims["exp"] - claims["iat"] == 120  # type: ignore[operator]


async def test_mint_uses_the_demo_secret_without_debug(
    env: Backend, cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    await cli("db", "seed", "--preset", "demo")
    monkeypatch.delenv("CASELOAD_JWT_SECRET")
    assert "CASELOAD_JWT_SECRET is not set" in await cli(
        "tokens", "mint", "--email", "admin@oakwood.example", status=2
    )
    # The demo server (debug) made its secret in the data directory...
    demo_secret = jwt_secret(Settings(_env_file=None, debug=True))
    assert (tmp_path / "data" / "jwt-secret").read_text().strip() == demo_secret
    # ...and `tokens mint`, without debug and from any directory, signs with it.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    token = await cli("tokens", "mint", "--email", "admin@oakwood.example")
    body = await _post(
        env.url,
        f"Bearer {token}",
        "{ viewer { roles } }",
        jwt_secret=None,
        debug=True,
        data_dir=tmp_path / "data",
    )
    assert body["data"] == {"viewer": {"roles": ["ADMIN"]}}


def test_one_data_directory_wherever_the_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CASELOAD_DATA_DIR", raising=False)
    monkeypatch.delenv("CASELOAD_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None)
    assert settings.data_dir == PROJECT_ROOT / "var"
    assert (
        settings.database_url == f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'caseload.sqlite3'}"
    )
    assert settings.secret_path == PROJECT_ROOT / "var" / "jwt-secret"
    monkeypatch.setenv("CASELOAD_DATA_DIR", "relative")
    assert Settings(_env_file=None).data_dir == tmp_path / "relative"
    # Installed outside a checkout: the user's data directory.
    monkeypatch.delenv("CASELOAD_DATA_DIR")
    monkeypatch.setattr("server.settings.PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Settings(_env_file=None).data_dir == tmp_path / "xdg" / "caseload"


async def test_upgrade_says_what_it_applied(
    empty_database: str, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASELOAD_DATABASE_URL", empty_database)
    assert await cli("db", "upgrade") == f"migrated from (empty) to {head_revision()}"
    assert await cli("db", "upgrade") == (
        f"database already at {head_revision()} (the latest migration); nothing to apply"
    )


async def test_unreachable_databases_are_one_line_with_a_hint(
    env: Backend, cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CASELOAD_DATABASE_URL", "postgresql://postgres:pw@127.0.0.1:1/caseload")
    message = await cli("db", "upgrade", status=1)
    assert message == (
        "caseload: cannot use the database at postgresql+asyncpg://postgres:***@127.0.0.1:1/"
        "caseload: the connection was refused. Is the database server running there? "
        "Check CASELOAD_DATABASE_URL"
    )
    assert "pw" not in message
    missing = tmp_path / "data" / "caseload.sqlite3"
    monkeypatch.setenv("CASELOAD_DATABASE_URL", f"sqlite:///{missing}")
    assert "there is no database file yet. Run `caseload db upgrade`" in await cli(
        "tokens", "mint", "--email", "a@b.example", status=1
    )
    assert not missing.exists()


async def test_a_missing_postgresql_database_is_named(
    postgresql_backend: Backend, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/caseload_no_such_database"
    monkeypatch.setenv("CASELOAD_DATABASE_URL", url)
    monkeypatch.setenv("CASELOAD_JWT_SECRET", TEST_SECRET)
    for argv in (["db", "upgrade"], ["db", "seed", "--preset", "demo"], ["serve", "--port", "1"]):
        message = await cli(*argv, status=1)
        assert re.search(
            r"database 'caseload_no_such_database' does not exist\. Create it \(e\.g\. "
            r"`createdb -h \S+ -U \S+ caseload_no_such_database`\)",
            message,
        ), message


async def test_bad_settings_and_arguments_are_one_line(
    env: Backend, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASELOAD_MAX_PAGE_SIZE", "lots")
    assert "CASELOAD_MAX_PAGE_SIZE: Input should be a valid integer" in await cli(
        "db", "upgrade", status=2
    )
    monkeypatch.delenv("CASELOAD_MAX_PAGE_SIZE")
    assert "--workers must be at least 1" in await cli("serve", "--workers", "0", status=2)


async def test_create_support_user(env: Backend, cli: Cli) -> None:
    assert await cli(
        "users", "create-support", "--email", "Desk@Vendor.example", "--name", "Desk"
    ) == ("support user Desk@Vendor.example is ready")
    token = await cli("tokens", "mint", "--email", "desk@vendor.example")
    body = await _post(env.url, f"Bearer {token}", "{ viewer { roles user { name } } }")
    assert body["data"] == {"viewer": {"roles": ["SUPPORT"], "user": {"name": "Desk"}}}


async def test_api_key_with_a_budget_of_its_own(env: Backend, cli: Cli) -> None:
    from sqlalchemy import select

    from db.models import ApiKey, AuditEvent
    from tests.factories import World

    await World(env.engine).organisation(slug="acme")
    for bad in ("0", "-5", str(2**31)):
        message = await cli(
            "apikeys",
            "create",
            "--org",
            "acme",
            "--role",
            "ADMIN",
            "--name",
            "x",
            "--rate-points-per-minute",
            bad,
            status=2,
        )
        assert message.startswith("caseload: --rate-points-per-minute: ")
        assert "cost points a minute from 1 to 2147483647" in message
    async with env.engine.connect() as conn:
        assert (await conn.execute(select(ApiKey.id))).all() == []
    key = await cli(
        "apikeys",
        "create",
        "--org",
        "acme",
        "--role",
        "ADMIN",
        "--name",
        "Feed",
        "--rate-points-per-minute",
        "5000",
    )
    _, row = (await cli("apikeys", "list", "--org", "acme")).splitlines()
    assert row.split()[:4] == [key.split("_")[1], "Feed", "ADMIN", "5000"]
    async with env.engine.connect() as conn:
        assert (await conn.execute(select(ApiKey.rate_points_per_minute))).scalar_one() == 5000
        details = (await conn.execute(select(AuditEvent.details))).scalar_one()
    assert details == {"name": "Feed", "roles": ["ADMIN"], "ratePointsPerMinute": 5000}


async def test_api_key_for_unknown_organisation_or_role(env: Backend, cli: Cli) -> None:
    assert "no organisation with slug 'nope'" in await cli(
        "apikeys", "create", "--org", "nope", "--role", "ADMIN", "--name", "x", status=1
    )
    assert "unknown role" in await cli(
        "apikeys", "create", "--org", "nope", "--role", "WIZARD", "--name", "x", status=2
    )


async def test_api_keys_listed_created_and_revoked_by_key_or_prefix(env: Backend, cli: Cli) -> None:
    from sqlalchemy import select

    from db.models import AuditEvent
    from tests.factories import World

    world = World(env.engine)
    await world.organisation(slug="acme")
    assert await cli("apikeys", "list", "--org", "acme") == (
        "acme has no API keys (create one with `caseload apikeys create`)"
    )
    keys = []
    for name in ("MIS feed", "HR feed", "LMS"):
        key = await cli(
            "apikeys",
            "create",
            "--org",
            "acme",
            "--role",
            "admin",
            "--role",
            "MANAGER",
            "--name",
            name,
        )
        prefix = key.split("_")[1]
        assert f"API key {prefix} created" in cli.err and "shown only now" in cli.err
        keys.append((key, prefix))
    header, *rows = (await cli("apikeys", "list", "--org", "acme")).splitlines()
    assert header.split() == [
        "PREFIX",
        "NAME",
        "ROLES",
        "POINTS/MIN",
        "CREATED",
        "LAST",
        "USED",
        "REVOKED",
    ]
    assert [r.split()[0] for r in rows] == [p for _, p in keys]
    assert all("ADMIN,MANAGER  -  " in r and r.endswith("-") for r in rows)
    assert all(k not in "\n".join(rows) for k, _ in keys)  # never the keys themselves

    (whole, first), (_, second), (_, third) = keys
    assert await cli("apikeys", "revoke", "--key", whole) == f"API key {first} revoked"
    assert await cli("apikeys", "revoke", "--key", f"ck_{second}") == f"API key {second} revoked"
    assert await cli("apikeys", "revoke", "--key", third) == f"API key {third} revoked"
    assert "no active API key" in await cli("apikeys", "revoke", "--key", third, status=1)
    rows = (await cli("apikeys", "list", "--org", "acme")).splitlines()[1:]
    assert not any(r.endswith("-") for r in rows)  # every one revoked, with its time
    async with env.engine.connect() as conn:
        trail = (
            await conn.execute(
                select(AuditEvent.action, AuditEvent.client, AuditEvent.actor_id).order_by(
                    AuditEvent.id
                )
            )
        ).all()
    assert [(a.value, c, who) for a, c, who in trail] == (
        [("API_KEY_CREATED", "cli", None)] * 3 + [("API_KEY_REVOKED", "cli", None)] * 3
    )


@pytest.mark.parametrize("role", ["SUPER_ADMIN", "LEARNER"])
async def test_a_key_never_holds_super_admin_or_learner(env: Backend, cli: Cli, role: str) -> None:
    assert "other than SUPER_ADMIN and LEARNER" in await cli(
        "apikeys", "create", "--org", "acme", "--role", role, "--name", "x", status=2
    )
    assert "no organisation with slug 'nope'" in await cli(
        "apikeys", "list", "--org", "nope", status=1
    )


async def test_schema_export(cli: Cli) -> None:
    assert await cli("schema", "export") == schema.as_str().strip()


async def test_mint_refuses_a_deactivated_membership(env: Backend, cli: Cli) -> None:
    from tests.factories import World

    world = World(env.engine)
    first, second = await world.organisation(slug="first"), await world.organisation(slug="second")
    person = await world.staff(first, "ADMIN")
    await world.staff(second, "ASSESSOR", user=person)
    await world.deactivate(person, first)
    assert "has been deactivated in 'first'" in await cli(
        "tokens", "mint", "--email", person.email, "--org", "first", status=1
    )
    # the one active membership is the one a token without --org is for
    token = await cli("tokens", "mint", "--email", person.email)
    assert "org" not in _claims(token)
    await world.deactivate(person, second)
    assert "deactivated in every organisation" in await cli(
        "tokens", "mint", "--email", person.email, status=1
    )


async def test_a_key_from_the_cli_is_checked_as_create_api_key_checks_it(
    env: Backend, cli: Cli
) -> None:
    """The command line calls createApiKey's use case: what the API refuses, it refuses."""
    from sqlalchemy import select

    from db.models import ApiKey
    from tests.factories import World

    await World(env.engine).organisation(slug="acme")
    assert "--name: name must be at most 200 characters" in await cli(
        "apikeys", "create", "--org", "acme", "--role", "ADMIN", "--name", "x" * 201, status=2
    )
    assert "--name: name must not be empty" in await cli(
        "apikeys", "create", "--org", "acme", "--role", "ADMIN", "--name", "  ", status=2
    )
    async with env.engine.connect() as conn:
        assert (await conn.execute(select(ApiKey.id))).all() == []
    await cli("apikeys", "create", "--org", "acme", "--role", "ADMIN", "--name", " MIS   feed ")
    async with env.engine.connect() as conn:
        row = (await conn.execute(select(ApiKey.name, ApiKey.created_by_id))).one()
    assert tuple(row) == ("MIS feed", None)  # the operator is nobody's user


async def test_the_cli_mints_exactly_the_tokens_that_sign_in(env: Backend, cli: Cli) -> None:
    """`tokens mint` decides as sign-in decides (policies/identity.py): for every kind of
    person and every --org, it mints a token iff that token would sign in."""
    from sqlalchemy import select

    from db.models import User, UserKind
    from server.tokens import mint_token
    from tests.factories import World

    world = World(env.engine)
    first, second = await world.organisation(slug="first"), await world.organisation(slug="second")
    one = await world.staff(first, "ADMIN")
    both = await world.staff(first, "ADMIN")
    await world.staff(second, "ASSESSOR", user=both)
    moved = await world.staff(first, "MANAGER")
    await world.staff(second, "MANAGER", user=moved)
    await world.deactivate(moved, first)
    gone = await world.staff(first, "ASSESSOR")
    await world.deactivate(gone, first)
    roleless = await world.staff(second)
    signing = await world.user(UserKind.STAFF)
    await world.staff(first, "LEARNER", user=signing)
    await world.learner(first, user=signing)
    nowhere = await world.user(UserKind.STAFF)
    key = await world.api_key(first, "ADMIN")
    async with env.engine.connect() as conn:
        service = (await conn.execute(select(User.email).where(User.id == key.user_id))).scalar()
    assert service is not None
    people = [
        one.email,
        both.email,
        moved.email,
        gone.email,
        roleless.email,
        signing.email,
        nowhere.email,
        (await world.support()).email,
        (await world.external_assessor()).email,
        service,
        "nobody@example.org",
    ]

    settings = make_settings(env.url)
    services = Services.build(settings)
    transport = httpx.ASGITransport(app=create_app(services=services))
    minted, signed_in = [], []
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for email in people:
                for org in (None, "first", "second", "elsewhere"):
                    argv = ["tokens", "mint", "--email", email] + (["--org", org] if org else [])
                    code = await asyncio.to_thread(main, argv)
                    minted.append((email, org, code == 0))
                    token = mint_token(settings, email=email, org=org)
                    response = await client.post(
                        "/graphql",
                        json={"query": "{ viewer { roles } }"},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    signed_in.append((email, org, response.status_code == 200))
    finally:
        await services.aclose()
    # Support and external assessors act in no organisation: the CLI asks to leave out --org,
    # though a token that carries one still signs in.
    nobodys = {people[-4], people[-3]}
    assert [m for m in minted if m[0] not in nobodys or m[1] is None] == [
        s for s in signed_in if s[0] not in nobodys or s[1] is None
    ]
    assert sum(ok for _, _, ok in minted) == 12  # not a vacuous agreement

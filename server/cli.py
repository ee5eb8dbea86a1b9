"""`caseload` — the command line (also `python -m server`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db import seed
from db.base import utcnow
from db.engine import create_engine
from db.migrate import upgrade
from db.models import ApiKey, Organisation, User, UserKind
from policies.vocabulary import MEMBERSHIP_ROLES, Role
from server.settings import ConfigurationError, Settings
from server.tokens import api_key_prefix, mint_token, new_api_key, parse_ttl


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caseload", description="Caseload GraphQL API")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="migrate, optionally seed the demo, and serve /graphql"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--demo", action="store_true", help="seed the demo organisation and print tokens"
    )

    db = commands.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply migrations")
    seed_cmd = db.add_parser("seed", help="load seed data")
    seed_cmd.add_argument("--preset", choices=["demo", "small", "bench"], required=True)
    seed_cmd.add_argument("--seed", type=int, default=1)

    users = commands.add_parser("users", help="users").add_subparsers(
        dest="users_command", required=True
    )
    support = users.add_parser("create-support", help="create a support user")
    support.add_argument("--email", required=True)
    support.add_argument("--name", required=True)

    tokens = commands.add_parser("tokens", help="tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    mint = tokens.add_parser("mint", help="print a JWT signed with the configured secret")
    mint.add_argument("--email", required=True)
    mint.add_argument("--org")
    mint.add_argument("--ttl", default="1h")

    keys = commands.add_parser("apikeys", help="API keys").add_subparsers(
        dest="apikeys_command", required=True
    )
    create = keys.add_parser("create", help="create an API key; printed once, stored hashed")
    create.add_argument("--org", required=True)
    create.add_argument("--role", required=True, action="append", help="repeat for several roles")
    create.add_argument("--name", required=True)
    revoke = keys.add_parser("revoke", help="revoke an API key from now on")
    revoke.add_argument("--key", required=True, help="the key, or its prefix (ck_<prefix>_...)")

    schema = commands.add_parser("schema", help="schema").add_subparsers(
        dest="schema_command", required=True
    )
    schema.add_parser("export", help="print the SDL")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    try:
        return _run(args, settings)
    except ConfigurationError as exc:
        print(f"caseload: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"caseload: {exc}", file=sys.stderr)
        return 1


class CommandError(Exception):
    pass


def _run(args: argparse.Namespace, settings: Settings) -> int:
    match args.command:
        case "serve":
            return _serve(settings, host=args.host, port=args.port, demo=args.demo)
        case "db" if args.db_command == "upgrade":
            asyncio.run(_with_engine(settings, lambda engine: upgrade(engine)))
            print("database is up to date")
        case "db":
            asyncio.run(_seed(settings, args.preset, args.seed))
        case "users":
            asyncio.run(_create_support(settings, args.email, args.name))
        case "tokens":
            print(mint_token(settings, email=args.email, org=args.org, ttl=parse_ttl(args.ttl)))
        case "apikeys" if args.apikeys_command == "revoke":
            asyncio.run(_revoke_api_key(settings, args.key))
        case "apikeys":
            print(asyncio.run(_create_api_key(settings, args.org, args.role, args.name)))
        case "schema":
            from schema import schema

            print(schema.as_str())
    return 0


async def _with_engine(settings: Settings, work) -> object:  # type: ignore[no-untyped-def]
    engine = create_engine(settings.database_url)
    try:
        return await work(engine)
    finally:
        await engine.dispose()


async def _seed(settings: Settings, preset: str, number: int) -> None:
    async def work(engine) -> None:  # type: ignore[no-untyped-def]
        await upgrade(engine)
        if preset == "demo":
            await seed.seed_demo(engine)
        else:
            print(await seed.seed_preset(engine, preset, number))

    await _with_engine(settings, work)


async def _create_support(settings: Settings, email: str, name: str) -> None:
    async def work(engine) -> None:  # type: ignore[no-untyped-def]
        await upgrade(engine)
        async with engine.begin() as conn:
            existing = (
                await conn.execute(select(User.kind).where(User.email == email.lower()))
            ).scalar()
            if existing is not None and existing != UserKind.SUPPORT:
                raise CommandError(f"{email} belongs to a user who is not support")
            await seed.ensure_support(conn, email.strip().lower(), name)
        print(f"support user {email} is ready")

    await _with_engine(settings, work)


async def _create_api_key(settings: Settings, slug: str, roles: list[str], name: str) -> str:
    try:
        wanted = sorted({Role(r.upper()) for r in roles})
    except ValueError as exc:
        raise CommandError(f"unknown role: {exc}") from exc
    if not set(wanted) <= MEMBERSHIP_ROLES:
        raise CommandError("an API key holds organisation roles only")

    async def work(engine) -> str:  # type: ignore[no-untyped-def]
        from db.base import utcnow
        from db.session import session_maker

        async with session_maker(engine)() as session, session.begin():
            org = (
                await session.execute(select(Organisation).where(Organisation.slug == slug))
            ).scalar()
            if org is None:
                raise CommandError(f"no organisation with slug {slug!r}")
            key, prefix, digest = new_api_key()
            user = User(
                email=f"apikey-{prefix}@{slug}.keys.invalid",
                name=name,
                kind=UserKind.SERVICE,
                created_at=utcnow(),
            )
            session.add(user)
            await session.flush()
            session.add(
                ApiKey(
                    organisation_id=org.id,
                    user_id=user.id,
                    name=name,
                    prefix=prefix,
                    key_hash=digest,
                    roles=",".join(r.value for r in wanted),
                    created_at=utcnow(),
                )
            )
        return key

    result = await _with_engine(settings, work)
    assert isinstance(result, str)
    return result


async def _revoke_api_key(settings: Settings, key: str) -> None:
    prefix = api_key_prefix(key) or key.strip()

    async def work(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            revoked = await conn.execute(
                update(ApiKey)
                .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        if revoked.rowcount != 1:
            raise CommandError(f"no active API key with prefix {prefix!r}")
        print(f"API key {prefix} revoked")

    await _with_engine(settings, work)


def _serve(settings: Settings, *, host: str, port: int, demo: bool) -> int:
    import uvicorn

    from server.app import create_app

    app = create_app(settings)
    if demo:
        asyncio.run(_prepare_demo(settings, host, port))
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0


async def _prepare_demo(settings: Settings, host: str, port: int) -> None:
    async def work(engine: AsyncEngine) -> seed.DemoPeople:
        await upgrade(engine)
        return await seed.seed_demo(engine)

    people = await _with_engine(settings, work)
    assert isinstance(people, seed.DemoPeople)
    url = f"http://{host}:{port}/graphql"
    print(f"\nCaseload demo: open {url} and paste one of these as the request header:\n")
    for role, (email, org) in people.by_role.items():
        token = mint_token(settings, email=email, org=org, ttl=parse_ttl("12h"))
        print(f"  {role} ({email}):")
        print(f'    {{"Authorization": "Bearer {token}"}}\n')

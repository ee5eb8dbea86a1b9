"""`caseload` — the command line (also `python -m server`).

Every failure is one line on stderr, `caseload: <what went wrong>. <what to do>`, and a
non-zero exit: 2 for usage and configuration, 1 for everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from db import seed
from db.base import Base, utcnow
from db.engine import create_engine, normalise_url
from db.migrate import Migration, upgrade
from db.models import ApiKey, Organisation, User, UserKind
from db.session import Database, session_maker
from policies.enforcer import PolicyStore
from policies.identity import Reason
from policies.principal import Principal, system_principal
from policies.vocabulary import Role
from resolvers import api_keys
from resolvers.context import Context
from resolvers.ids import encode_id, type_name_of
from resolvers.outcomes import Invalid
from server.auth import person_from_rows, person_statement
from server.settings import ConfigurationError, Settings, hs256_secret
from server.tokens import mint_token, parse_ttl

T = TypeVar("T")


class CommandError(Exception):
    """A failure the user can act on; printed as one line, exit 1."""


class UsageError(CommandError):
    """Bad arguments; exit 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caseload", description="Caseload GraphQL API")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="migrate, optionally seed the demo, and serve /graphql"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="seed the demo, print tokens, and offer the demo users in GraphiQL",
    )

    commands.add_parser(
        "worker",
        help="send webhooks only, until stopped (servers send them too, unless "
        "CASELOAD_WEBHOOK_SENDER=false)",
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
    mint.add_argument("--org", help="organisation slug (staff in several organisations)")
    mint.add_argument(
        "--ttl", help="3600, 90m, 1h30m, 7d (default: CASELOAD_JWT_TTL_SECONDS, 3600)"
    )

    keys = commands.add_parser("apikeys", help="API keys").add_subparsers(
        dest="apikeys_command", required=True
    )
    create = keys.add_parser(
        "create", help="create an API key; the key is printed once (stdout), stored hashed"
    )
    create.add_argument("--org", required=True)
    create.add_argument("--role", required=True, action="append", help="repeat for several roles")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--rate-points-per-minute",
        type=int,
        metavar="N",
        help="the key's own fair use budget, cost points a minute "
        "(default: CASELOAD_RATE_POINTS_PER_MINUTE)",
    )
    listing = keys.add_parser(
        "list",
        help="an organisation's API keys (never the keys themselves); POINTS/MIN - is "
        "CASELOAD_RATE_POINTS_PER_MINUTE",
    )
    listing.add_argument("--org", required=True)
    revoke = keys.add_parser("revoke", help="revoke an API key from now on")
    revoke.add_argument("--key", required=True, help="the key, ck_<prefix>, or the bare prefix")

    schema = commands.add_parser("schema", help="schema").add_subparsers(
        dest="schema_command", required=True
    )
    schema.add_parser("export", help="print the SDL")
    repeats = schema.add_parser(
        "repeats", help="print the README's table of every mutation's repeat answer"
    )
    repeats.add_argument("--readme", type=Path, help="write the table into this README instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "CASELOAD_" + "_".join(str(p) for p in error["loc"]).upper()
        return _fail(f"{name}: {error['msg']}. Fix the environment variable or .env", 2)
    try:
        return _run(args, settings)
    except ConfigurationError as exc:
        return _fail(str(exc), 2)
    except UsageError as exc:
        return _fail(str(exc), 2)
    except CommandError as exc:
        return _fail(str(exc), 1)
    except (SQLAlchemyError, OSError) as exc:
        return _fail(database_problem(settings, exc), 1)
    except Exception as exc:
        if settings.debug:
            raise
        return _fail(
            f"unexpected error: {type(exc).__name__}: {_first_line(exc)}. "
            "Run again with CASELOAD_DEBUG=true to see the traceback",
            1,
        )


def _fail(message: str, status: int) -> int:
    print(f"caseload: {message}", file=sys.stderr)
    return status


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def database_problem(settings: Settings, exc: BaseException) -> str:
    """One line saying why the database cannot be used, and what to do."""
    url = make_url(normalise_url(settings.database_url))
    shown = url.render_as_string(hide_password=True)
    cause: BaseException = exc
    while True:  # the driver's own exception says most
        inner = getattr(cause, "orig", None) or cause.__cause__
        if inner is None or inner is cause:
            break
        cause = inner
    text = _first_line(cause)
    hint = "Check CASELOAD_DATABASE_URL"
    sqlite = settings.sqlite_path()
    if sqlite is not None and not sqlite.exists():
        what = "there is no database file yet"
        hint = "Run `caseload db upgrade` (or `make serve` for the demo), or set CASELOAD_DATA_DIR"
    elif isinstance(cause, ConnectionRefusedError) or "refused" in text.lower():
        what = "the connection was refused"
        hint = "Is the database server running there? Check CASELOAD_DATABASE_URL"
    elif isinstance(cause, socket.gaierror):
        what = f"cannot resolve host {url.host!r}"
    elif type(cause).__name__ == "InvalidCatalogNameError" or (
        "does not exist" in text and "database" in text
    ):
        what = f"database {url.database!r} does not exist"
        server = f"-h {url.host or 'localhost'} -U {url.username or 'postgres'}"
        hint = (
            f"Create it (e.g. `createdb {server} {url.database}`) "
            "or point CASELOAD_DATABASE_URL at another"
        )
    elif isinstance(exc, DBAPIError) and not exc.connection_invalidated and "no such table" in text:
        what = "the database is not migrated"
        hint = "Run `caseload db upgrade`"
    else:
        what = text
    return f"cannot use the database at {shown}: {what}. {hint}"


def _run(args: argparse.Namespace, settings: Settings) -> int:
    match args.command:
        case "serve":
            return _serve(settings, args.host, args.port, args.workers, args.demo)
        case "worker":
            _require_database(settings)
            return _worker(settings)
        case "db" if args.db_command == "upgrade":
            print(describe_migration(_async(settings, upgrade)))
        case "db":
            print(_async(settings, lambda engine: _seed(engine, args.preset, args.seed)))
        case "users":
            print(_async(settings, lambda engine: _create_support(engine, args.email, args.name)))
        case "tokens":
            ttl = _ttl(args.ttl, settings)
            _require_database(settings)
            org = _async(settings, lambda engine: _token_subject(engine, args.email, args.org))
            print(mint_token(settings, email=args.email, org=org, ttl=ttl))
        case "apikeys" if args.apikeys_command == "revoke":
            _require_database(settings)
            print(_async(settings, lambda engine: _revoke_api_key(engine, args.key)))
        case "apikeys" if args.apikeys_command == "list":
            _require_database(settings)
            print(_async(settings, lambda engine: _list_api_keys(engine, args.org)))
        case "apikeys":
            _require_database(settings)
            key, prefix = _async(
                settings,
                lambda e: _create_api_key(
                    e, args.org, args.role, args.name, args.rate_points_per_minute
                ),
            )
            print(key)
            print(
                f"API key {prefix} created; the key above is shown only now "
                f"(revoke with `caseload apikeys revoke --key {prefix}`)",
                file=sys.stderr,
            )
        case "schema":
            from schema import schema
            from schema.results import repeat_table, with_repeat_table

            if args.schema_command == "repeats":
                table = repeat_table(list(schema._schema.mutation_type.fields))
                if args.readme is None:
                    print(table, end="")
                else:
                    args.readme.write_text(with_repeat_table(args.readme.read_text(), table))
            else:
                print(schema.as_str())
    return 0


def _async(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(settings.database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _require_database(settings: Settings) -> None:
    """Commands that only read or add rows never create an empty SQLite file by accident."""
    sqlite = settings.sqlite_path()
    if sqlite is not None and not sqlite.exists():
        raise CommandError(database_problem(settings, FileNotFoundError(sqlite)))


def _ttl(text: str | None, settings: Settings) -> timedelta:
    if text is None:
        return timedelta(seconds=settings.jwt_ttl_seconds)
    try:
        return parse_ttl(text)
    except ValueError as exc:
        raise UsageError(f"--ttl: {exc}") from None


def describe_migration(migration: Migration) -> str:
    before, after = migration
    if before == after:
        return f"database already at {after} (the latest migration); nothing to apply"
    return f"migrated from {before or '(empty)'} to {after}"


async def _row_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table.name: (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            for table in Base.metadata.sorted_tables
        }


async def _seed(engine: AsyncEngine, preset: str, number: int) -> str:
    migration = await upgrade(engine)
    before = await _row_counts(engine)
    if preset == "demo":
        await seed.seed_demo(engine)
    else:
        await seed.seed_preset(engine, preset, number)
    after = await _row_counts(engine)
    created = [
        f"{after[name] - before[name]} {name.replace('_', ' ')}"
        for name in after
        if after[name] != before[name]
    ]
    lines = [describe_migration(migration)] if migration.before != migration.after else []
    lines.append(
        f"{preset}: created " + ", ".join(created)
        if created
        else f"{preset}: nothing to create, the {preset} data is already there"
    )
    return "\n".join(lines)


async def _create_support(engine: AsyncEngine, email: str, name: str) -> str:
    await upgrade(engine)
    async with engine.begin() as conn:
        existing = (
            await conn.execute(select(User.kind).where(User.email == email.lower()))
        ).scalar()
        if existing is not None and existing != UserKind.SUPPORT:
            raise CommandError(
                f"{email} belongs to a user who is not support. Use another email address"
            )
        await seed.ensure_support(conn, email.strip().lower(), name)
    return f"support user {email} is ready"


async def _token_subject(engine: AsyncEngine, email: str, org: str | None) -> str | None:
    """The `org` claim for a token of this person; CommandError when none would work.

    The token is refused or accepted as sign-in would: the same statement and the same
    decision (policies/identity.py), worded here for the command line.
    """
    async with engine.connect() as conn:
        rows = (await conn.execute(person_statement(), {"email": email.strip().lower()})).all()
        found = person_from_rows(rows, org)
        if isinstance(found, Principal):
            if found.organisation_id is None and org is not None:
                kind = found.kind.value.lower().replace("_", " ")
                raise UsageError(f"{email} is {kind} and acts in no organisation. Leave out --org")
            return org
        theirs = ", ".join(found.organisations)
        match found.reason:
            case Reason.UNKNOWN:
                raise CommandError(
                    f"no user with email {email}. Check the address, or create the person "
                    "first (the demo's users are listed by `make serve`)"
                )
            case Reason.SERVICE:
                raise CommandError(f"{email} is an API key's identity. Use the API key itself")
            case Reason.DEACTIVATED if org is not None:
                raise CommandError(f"{email} has been deactivated in {org!r}")
            case Reason.DEACTIVATED:
                raise CommandError(f"{email} has been deactivated in every organisation")
            case Reason.SEVERAL:
                raise UsageError(
                    f"{email} belongs to several organisations ({theirs}). "
                    "Pass --org with one of them"
                )
            case _ if org is None:
                raise CommandError(f"{email} belongs to no organisation. Add them to one first")
        exists = (
            await conn.execute(select(Organisation.id).where(Organisation.slug == org))
        ).scalar()
        if exists is None:
            raise CommandError(f"no organisation with slug {org!r}. Check --org")
        raise CommandError(
            f"{email} is not a member of {org!r}"
            + (f"; their organisations: {theirs}" if theirs else "")
            + ". Check --org"
        )


async def _create_api_key(
    engine: AsyncEngine, slug: str, roles: list[str], name: str, budget: int | None = None
) -> tuple[str, str]:
    """(the key, its prefix), made by createApiKey's use case."""
    try:
        wanted = [Role(r.strip().upper()) for r in roles]
    except ValueError as exc:
        raise UsageError(f"unknown role: {exc}. Use organisation roles such as ADMIN") from exc
    # The use case checks these too, after the organisation; checked first here so that bad
    # arguments are a usage error whatever --org says.
    asked = api_keys.new_key(name=name, roles=wanted, rate_points_per_minute=budget)
    if isinstance(asked, Invalid):
        raise _usage(asked)
    async with _operation(engine, write=True) as db:
        ctx = _operator(db, await _organisation(db, slug))
        made = await api_keys.create_api_key(
            ctx, name=name, roles=wanted, rate_points_per_minute=budget
        )
        if isinstance(made, Invalid):
            raise _usage(made)
    return made.key, made.api_key.prefix


# The command line's option for each input field the API keys' use cases may refuse.
_OPTIONS = {"name": "--name", "roles": "--role", "ratePointsPerMinute": "--rate-points-per-minute"}


def _usage(invalid: Invalid) -> UsageError:
    option = _OPTIONS.get(invalid.field or "", invalid.field or "")
    return UsageError(f"{option}: {invalid.message.rstrip('.')}")


@asynccontextmanager
async def _operation(engine: AsyncEngine, *, write: bool) -> AsyncIterator[Database]:
    """One transaction, as the API runs an operation: committed unless the block raises."""
    db = Database(session_maker(engine))
    db.write_intent = write
    try:
        yield db
        await db.commit()
    finally:
        await db.rollback()
        await db.close()


def _operator(db: Database, organisation_id: int) -> Context:
    """The use cases' context for the operator at the command line: the system principal in
    one organisation, client `cli` (its audit events name no actor)."""
    now = utcnow()
    principal = system_principal(organisation_id)
    return Context(
        db=db,
        now=now,
        principal=principal,
        policy=PolicyStore().for_principal(principal, now),
        client=principal.client,
    )


async def _organisation(db: Database, slug: str) -> int:
    found = await db.scalar(select(Organisation.id).where(Organisation.slug == slug))
    if found is None:
        raise CommandError(f"no organisation with slug {slug!r}. Check --org")
    return found


async def _list_api_keys(engine: AsyncEngine, slug: str) -> str:
    async with _operation(engine, write=False) as db:
        keys = await api_keys.api_keys(_operator(db, await _organisation(db, slug)))
    if not keys:
        return f"{slug} has no API keys (create one with `caseload apikeys create`)"

    def when(value: datetime | None) -> str:
        return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")

    rows = [("PREFIX", "NAME", "ROLES", "POINTS/MIN", "CREATED", "LAST USED", "REVOKED")]
    rows += [
        (
            key.prefix,
            key.name,
            ",".join(r.value for r in api_keys.roles_of(key)),
            "-" if key.rate_points_per_minute is None else str(key.rate_points_per_minute),
            when(key.created_at),
            when(key.last_used_at),
            when(key.revoked_at),
        )
        for key in keys
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


async def _revoke_api_key(engine: AsyncEngine, given: str) -> str:
    """Revoke by revokeApiKey's use case, acting in the key's own organisation."""
    prefix = api_keys.prefix_named(given)
    refused = CommandError(f"no active API key with prefix {prefix!r}. Check --key")
    async with _operation(engine, write=True) as db:
        found = (
            await db.execute(
                select(ApiKey.id, ApiKey.organisation_id).where(ApiKey.prefix == prefix)
            )
        ).first()
        if found is None:
            raise refused
        revoked = await api_keys.revoke_api_key(
            _operator(db, found.organisation_id),
            api_key_id=encode_id(type_name_of(ApiKey), found.id),
        )
        if not isinstance(revoked, api_keys.ApiKeyRevoked) or revoked.unchanged:
            raise refused
    return f"API key {prefix} revoked"


def _serve(settings: Settings, host: str, port: int, workers: int, demo: bool) -> int:
    import uvicorn

    from server.logs import log_config

    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if demo:
        # The workers build their settings from the environment.
        os.environ["CASELOAD_DEMO"] = "true"
        settings = settings.model_copy(update={"demo": True})
    # Refuse to start without one (unless a platform issuer signs people in); in debug or
    # demo, make it now, once.
    hs256_secret(settings)
    if settings.trusted_documents is not None:
        # Refuse to start on a file the server cannot use, before anything else is done.
        from schema import build_schema
        from server.persisted import load_trusted
        from server.services import limits_of

        built: Any = build_schema(limits_of(settings))
        load_trusted(settings.trusted_documents, built.documents)
    migration = _async(settings, lambda engine: _prepare(engine, demo))
    if migration.before != migration.after:
        print(describe_migration(migration))
    os.environ["CASELOAD_MIGRATE_ON_START"] = "false"  # done once here, not by every worker
    if demo:
        _print_demo(settings, host, port)
    uvicorn.run(
        "server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # A worker that has not answered the supervisor's ping within this is killed and
        # replaced: uvicorn's 5 s is shorter than importing the app on a busy machine, which
        # then restarts its workers in a loop.
        timeout_worker_healthcheck=30,
        log_config=log_config(settings.log_level, settings.log_format),
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0


def _worker(settings: Settings) -> int:
    """Run a webhook sender alone until SIGINT or SIGTERM; then stop it cleanly."""
    import logging.config
    import signal

    from server.logs import log_config
    from server.webhooks import Sender

    logging.config.dictConfig(log_config(settings.log_level, settings.log_format))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sender = Sender(settings)
        sender.start()
        print("caseload worker: sending webhooks (stop with Ctrl-C)", file=sys.stderr, flush=True)
        try:
            await stop.wait()
        finally:
            await sender.aclose()

    asyncio.run(run())
    return 0


async def _prepare(engine: AsyncEngine, demo: bool) -> Migration:
    migration = await upgrade(engine)
    if demo:
        await seed.seed_demo(engine)
    return migration


def _print_demo(settings: Settings, host: str, port: int) -> None:
    shown = f"[{host}]" if _is_ipv6(host) else host
    url = f"http://{shown}:{port}/graphql"
    print(
        f"\nCaseload demo: open {url} and pick a demo user at the top of GraphiQL,\n"
        "or send one of these as the Authorization header:\n"
    )
    for role, email, org in seed.DEMO_USERS:
        token = mint_token(settings, email=email, org=org)
        print(f"  {role} ({email}):")
        print(f'    {{"Authorization": "Bearer {token}"}}\n')
    command = sys.argv[0] if Path(sys.argv[0]).name == "caseload" else "python -m server"
    print(f"Mint more with: {command} tokens mint --email assessor@oakwood.example\n", flush=True)


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False

"""Real databases, through the real app.

Every test that takes `api` or `world` runs twice: on SQLite (a temporary file) and on
PostgreSQL (a database created for this run at 127.0.0.1:5432 and dropped after). Under
CI=true an unreachable PostgreSQL fails the run instead of skipping. A run spread over
processes (pytest-xdist, `-n 2`) gives each worker its own SQLite file, PostgreSQL database
and test ports (tests/servers.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.base import Base
from db.engine import create_engine
from db.migrate import upgrade
from server.app import create_app
from server.services import Services
from server.settings import Settings
from tests.authz import NOTES, TALLY
from tests.factories import World
from tests.helpers import Api, codes_are_listed

PG_ADMIN_URL = os.environ.get(
    "CASELOAD_TEST_PG_ADMIN_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TEST_SECRET = "test-secret-" + "x" * 40

# Hypothesis: deterministic and database-less by default (CI); CASELOAD_HYPOTHESIS_SEED (or
# the `explore` profile) draws other examples, keeps failures in .hypothesis/ and shrinks them.
_SLOW = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: an example costs a whole world
    suppress_health_check=_SLOW,
    print_blob=True,
)
settings.register_profile(
    "explore",
    derandomize=False,
    deadline=None,
    suppress_health_check=_SLOW,
    print_blob=True,
)
HYPOTHESIS_SEED = os.environ.get("CASELOAD_HYPOTHESIS_SEED")
settings.load_profile(
    os.environ.get("CASELOAD_HYPOTHESIS_PROFILE", "explore" if HYPOTHESIS_SEED else "ci")
)


def pytest_configure(config: pytest.Config) -> None:
    # The policy mutants rotate by the date (tests/api/test_policy_mutants.py): the workers
    # of a run spread over processes take the day the run started, never two days.
    if not hasattr(config, "workerinput"):
        os.environ.setdefault("CASELOAD_MUTANT_SEED", str(datetime.now(UTC).date().toordinal()))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--dist loadgroup` keeps the tests of an xdist_group in one process by adding the
    group's name to their ids in each worker; pytest-xdist 3.8 writes that id where pytest 9.2
    no longer reads it (pytest-xdist#1386), and then every test is a group of its own: the
    policy mutants' baseline is built in both processes, and a proof's tally may be checked
    in the process that did not run it. Until pytest-xdist does, the id is written here."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix):
            from _pytest.nodeid import NodeId  # pytest 9.2's ids (earlier, xdist's suffix holds)

            item._id = NodeId.parse(item.nodeid + suffix)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist (`-n N`), a worker hands what it checked to the controlling process."""
    workeroutput: dict[str, object] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["authorisation_tally"] = dict(TALLY)
        workeroutput["authorisation_notes"] = list(NOTES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """The controlling process sums its workers' tallies (a note said by several, once)."""
    output: dict[str, Any] = getattr(node, "workeroutput", None) or {}
    TALLY.update(output.get("authorisation_tally", {}))
    NOTES.extend(n for n in output.get("authorisation_notes", []) if n not in NOTES)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the authorisation proof covered in this run (worlds, principals, cases), summed
    over the workers when the run is spread over several processes."""
    if TALLY or NOTES:
        terminalreporter.write_sep("-", "authorisation proof")
        for name, count in sorted(TALLY.items()):
            terminalreporter.write_line(f"{name}: {count}")
        for line in NOTES:
            terminalreporter.write_line(line)


async def _pg_reachable() -> str | None:
    engine = create_async_engine(PG_ADMIN_URL)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("caseload")


class Backend:
    def __init__(self, name: str, url: str, engine: AsyncEngine) -> None:
        self.name = name
        self.url = url
        self.engine = engine

    async def clear(self, *, truncate: bool = False) -> None:
        """No rows left. On PostgreSQL, `truncate` also leaves the tables' files as new, for
        a test whose plans must be those of empty tables (deleted rows stay in the files,
        and in the planner's estimates, until a vacuum)."""
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if self.name == "postgresql":
            async with self.engine.begin() as conn:
                await conn.execute(text(_postgresql_clear(tables, truncate)))
            return
        # SQLite empties a table at once only where no foreign key is checked: otherwise a
        # test's million learners (tests/api/test_timeouts.py) take the next test's setup
        # half a minute. Every table is emptied, so there is nothing to check.
        async with self.engine.connect() as conn:
            sqlite = (await conn.get_raw_connection()).driver_connection
            assert sqlite is not None
            await sqlite.execute("PRAGMA foreign_keys=OFF")  # outside a transaction, or ignored
            try:
                await sqlite.execute("BEGIN")
                try:
                    for table in tables:
                        await sqlite.execute(f"DELETE FROM {table}")
                except BaseException:
                    await sqlite.execute("ROLLBACK")
                    raise
                await sqlite.execute("COMMIT")
            finally:
                await sqlite.execute("PRAGMA foreign_keys=ON")


def _postgresql_clear(tables: list[str], truncate: bool) -> str:
    """One round trip leaving the rows and sequences that `TRUNCATE … RESTART IDENTITY`
    leaves: none, and the tables' own sequences at their start. A test's few rows are
    deleted (children first), at a fraction of the cost of TRUNCATE's new files for every
    table and index (a tenth of a second and more, every test); a bulk load (the benchmarks'
    seeds) is truncated."""
    names = ", ".join(f"'{table}'" for table in tables)
    bulk = "(SELECT count(*) FROM (SELECT FROM learners LIMIT 10000) AS n) >= 10000"
    return f"""DO $$BEGIN
IF {"true" if truncate else bulk} THEN
  TRUNCATE {", ".join(tables)} RESTART IDENTITY CASCADE;
ELSE
  {" ".join(f"DELETE FROM {table};" for table in tables)}
  PERFORM setval(s.seqrelid, s.seqstart, false)
  FROM pg_sequence AS s
  JOIN pg_depend AS d ON d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
    AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
  JOIN pg_class AS owner ON owner.oid = d.refobjid
  WHERE owner.relname IN ({names}) AND owner.relnamespace = current_schema()::regnamespace;
END IF;
END$$"""


@pytest.fixture(scope="session")
async def sqlite_backend(tmp_root: Path) -> AsyncIterator[Backend]:
    url = f"sqlite+aiosqlite:///{tmp_root / 'test.sqlite3'}"
    engine = create_engine(url)
    await upgrade(engine)
    yield Backend("sqlite", url, engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def postgresql_backend() -> AsyncIterator[Backend]:
    problem = await _pg_reachable()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required under CI and is unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    name = f"caseload_test_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
        # A commit does not wait for its WAL to reach the disk: the tests commit thousands of
        # times, and lose nothing unless the server crashes (what a commit decides and what
        # others see is unchanged).
        await conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    await upgrade(engine)
    try:
        yield Backend("postgresql", url, engine)
    finally:
        await engine.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.getfixturevalue(f"{request.param}_backend")
    return chosen


@pytest.fixture
async def backend(database: Backend) -> Backend:
    """The test's database, emptied."""
    await database.clear()
    return database


# Every answer a test receives names only codes the schema lists (tests/test_error_codes.py).
LISTED_CODES = {"response": [codes_are_listed]}


# Tests assert which read path answers, so they plan without a budget (0: no limit). The budget
# is thread CPU time, and a garbage collection of a long-running test worker's heap can land in a
# first plan: CI saw a learner page pass 50 ms, and once a one-root search page pass 250 ms. The
# budget itself is tested with its own values (tests/api/test_under_load.py).
PLAN_BUDGET_MS_IN_TESTS = 0


def make_settings(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": url,
        "jwt_secret": TEST_SECRET,
        "debug": False,
        "migrate_on_start": False,
        "plan_budget_ms": PLAN_BUDGET_MS_IN_TESTS,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
async def services(backend: Backend) -> AsyncIterator[Services]:
    built = Services.build(make_settings(backend.url))
    yield built
    await built.aclose()


@pytest.fixture
async def api(services: Services) -> AsyncIterator[Api]:
    app = create_app(services=services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://caseload.test", event_hooks=LISTED_CODES
    ) as client:
        yield Api(client, services.settings)


@pytest.fixture
async def empty_database(database: Backend, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a database with no tables yet, of the test's kind."""
    if database.name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    name = f"caseload_empty_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


AppFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
async def api_with(backend: Backend) -> AsyncIterator[AppFactory]:
    """Build the app with settings overridden, e.g. `await api_with(graphiql=True)`."""
    opened: list[tuple[Services, httpx.AsyncClient]] = []

    async def build(**overrides: object) -> Api:
        built = Services.build(make_settings(backend.url, **overrides))
        transport = httpx.ASGITransport(app=create_app(services=built))
        client = httpx.AsyncClient(
            transport=transport, base_url="http://caseload.test", event_hooks=LISTED_CODES
        )
        opened.append((built, client))
        return Api(client, built.settings)

    yield build
    for built, client in opened:
        await client.aclose()
        await built.aclose()


@pytest.fixture
async def world(backend: Backend) -> World:
    return World(backend.engine)

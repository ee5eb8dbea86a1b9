"""Who sees what, end to end: every principal of generated worlds against the reference model.

DESIGN.md promises "a test [that] proves, for every role and every resource, that what the
API returns equals what a small independent reference model of the two tables above says —
on generated data". This is that test.

Hypothesis draws the worlds (tests/authz/world.py): 2 to 6 organisations, people in several
organisations with different roles, learners with sign-ins, learners with several records
assigned to different people, coordinators, ended assignments, allocations active, expiring,
expired and ended, evidence, API keys and audit events. One example builds one world and
checks every principal in it (every membership signed in for its organisation, every
external assessor, support user and API key): one (world, principal) pair each.

For each principal, tests/authz/checks.py compares with tests/authz/model.py (written from
DESIGN.md's tables, never from policy.csv or the code): lists with `totalCount`, every filter
(ids the caller cannot see answer byte for byte like made-up ones), `node(id:)` for every
id of every type with every nested path, `Learner.access`, the Actions table, `viewerCan`
(asked by id and inside lists) and the change feed (every object of the world carries a
change; DESIGN.md's Reads row "changes" says whose each principal reads, in commit order).

Worlds alternate between the standard executor and the compiled read path (the apps differ
only in `compiled_reads`), so the whole proof holds for both; the run reports how many
answers the compiled path gave.

SQLite's proof, the longest, is two tests that draw the same worlds and check about half of
them each (`Schedule`), so that `make pytest` runs it on two processes: one part beside
PostgreSQL's proof, the other beside the policy mutants (tests/authz/__init__.py, PROCESS).
Together they check the worlds that one test would.

CI is deterministic (the `ci` Hypothesis profile); CASELOAD_HYPOTHESIS_SEED=N draws other
worlds, and CASELOAD_PAIRS=N checks more pairs (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import given, seed, settings

from db.models import LicenceStatus
from server.app import create_app
from server.services import Services
from tests.authz import NOTES, PROCESS, TALLY
from tests.authz.checks import (
    PROOF_LIMITS,
    Check,
    Problems,
    caller_for,
    check_principal,
    small_pages_for,
    through_provider,
)
from tests.authz.live import following_from_the_start
from tests.authz.model import Model
from tests.authz.world import (
    ASSESSOR,
    COORDINATOR,
    LEARNER,
    AllocationState,
    Facts,
    WorldSpec,
    build,
    worlds,
)
from tests.conftest import HYPOTHESIS_SEED, Backend, make_settings
from tests.helpers import Api
from tests.provider import Provider, SigningKey

ALGORITHMS = ("RS256", "ES256", "EdDSA")

# Examples are built until the run has checked this many (world, principal) pairs; the
# examples after that are drawn but not built (Hypothesis's order is fixed under `ci`).
# test_the_run_covered_enough_pairs checks the count. CASELOAD_PAIRS=N asks for more.
PAIRS = {
    "sqlite": int(os.environ.get("CASELOAD_PAIRS", 200)),
    "postgresql": max(50, int(os.environ.get("CASELOAD_PAIRS", 200)) // 4),
}
MAX_WORLDS = {"sqlite": 40, "postgresql": 15}
PRINCIPALS_PER_WORLD = 10
# The SQLite parts draw the same examples: CASELOAD_HYPOTHESIS_SEED's, or under `ci` those
# the single SQLite test drew before it was split in two (Hypothesis derandomized it from its
# source, which no longer exists): the same worlds as then.
SQLITE_SEED = (
    int(HYPOTHESIS_SEED)
    if HYPOTHESIS_SEED
    else int(
        "2cad48382ac3532f3f382a418a4fcb49e347653d28c045c9"
        "f5232d7d11012e6ef874571d32e46e55af7fe578839c7b2d",
        16,
    )
)


@dataclass(frozen=True)
class Part:
    """One test of a database's proof: all of it, or one part of its worlds."""

    database: str
    number: int = 1
    of: int = 1

    def __str__(self) -> str:
        if self.of == 1:
            return self.database
        return f"{self.database} (part {self.number} of {self.of})"


SQLITE_1, SQLITE_2 = Part("sqlite", 1, 2), Part("sqlite", 2, 2)
# The share of a database's work each part takes: SQLite's first part runs beside
# PostgreSQL's proof, its second beside the policy mutants, which take about 90 s longer
# (tests/authz/__init__.py, PROCESS).
SHARE = {1: (1.0,), 2: (0.65, 0.35)}
POSTGRESQL = Part("postgresql")
PARTS = (SQLITE_1, SQLITE_2, POSTGRESQL)


@dataclass
class Schedule:
    """Which examples a database's proof builds, and which part checks each.

    Every part's test draws the same examples in the same order, and each works out the same
    schedule from them: the examples are taken, in order, until their pairs reach PAIRS (as
    one test would), each going to the part with the least work so far (principals times
    rows, roughly what a world's checks cost). A part builds and checks its own worlds only.
    """

    part: Part
    pairs: int = 0  # of every world taken so far
    worlds: int = 0  # taken so far
    work: dict[int, int] = field(default_factory=dict)  # part number → estimated work
    given: int = 0  # pairs of the worlds this part checks

    def takes(self, spec: WorldSpec) -> bool:
        if self.pairs >= PAIRS[self.part.database]:
            return False
        self.pairs += spec.principal_count()
        self.worlds += 1
        lightest = min(
            range(1, self.part.of + 1),
            key=lambda n: (self.work.get(n, 0) / SHARE[self.part.of][n - 1], n),
        )
        self.work[lightest] = self.work.get(lightest, 0) + spec.principal_count() * rows(spec)
        if lightest != self.part.number:
            return False
        self.given += spec.principal_count()
        return True


SCHEDULES: dict[Part, Schedule] = {}


def rows(spec: WorldSpec) -> int:
    return sum(len(getattr(spec, f.name)) for f in dataclasses.fields(spec))


F = TypeVar("F", bound=Callable[..., Any])


def examples(part: Part) -> Callable[[F], F]:
    """Hypothesis settings for one part's test; a seed when one is asked for, and for the
    parts of one database the same one."""
    count = int(os.environ.get("CASELOAD_WORLDS", MAX_WORLDS[part.database]))

    def decorate(test: F) -> F:
        test = settings(max_examples=count)(test)
        if part.of > 1:
            test = seed(SQLITE_SEED)(test)
        elif HYPOTHESIS_SEED:
            test = seed(int(HYPOTHESIS_SEED))(test)
        return test

    return decorate


@dataclass
class Paths:
    """The same database behind two apps: the standard executor and the compiled read path."""

    apis: dict[bool, Api]  # compiled_reads → its client
    apps: dict[bool, Any]  # compiled_reads → its app (for websockets)
    compiled: Any  # the compiled path's counter (`answered`)


@asynccontextmanager
async def apps_on(backend: Backend) -> AsyncIterator[Paths]:
    async with AsyncExitStack() as stack:
        apis: dict[bool, Api] = {}
        apps: dict[bool, Any] = {}
        counter = None
        # Half the people sign in through a local OpenID Connect provider (checks.py).
        provider = Provider([SigningKey.make(algorithm) for algorithm in ALGORITHMS]).start()
        stack.callback(provider.stop)

        def signer(email: str, slug: str | None) -> str:
            key = provider.keys[sum(email.encode()) % len(provider.keys)]
            return provider.token(email, key=key, org=slug)

        oidc = {"oidc_issuer": provider.issuer, "oidc_allow_http": True}
        for compiled in (False, True):
            services = Services.build(
                make_settings(backend.url, compiled_reads=compiled, **PROOF_LIMITS, **oidc)
            )
            stack.push_async_callback(services.aclose)
            app = apps[compiled] = create_app(services=services)
            stack.push_async_callback(app.state.hub.aclose)
            transport = httpx.ASGITransport(app=app)
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://caseload.test")
            )
            apis[compiled] = Api(client, services.settings)
            apis[compiled].signer = signer
            if compiled:
                counter = app.state.compiled_reads
        yield Paths(apis, apps, counter)


@pytest.fixture
async def sqlite_api(sqlite_backend: Backend) -> AsyncIterator[Paths]:
    async with apps_on(sqlite_backend) as paths:
        yield paths


@pytest.fixture
async def postgresql_api(postgresql_backend: Backend) -> AsyncIterator[Paths]:
    async with apps_on(postgresql_backend) as paths:
        yield paths


async def access_selection(api: Api, facts: Facts) -> str:
    """`Learner.access` entries; with `apiKey { id }` once the schema names keys there."""
    (who, *_) = facts.principals()
    result = await caller_for(api, facts, who)(
        '{ __type(name: "LearnerAccess") { fields { name } } }'
    )
    fields = {f["name"] for f in ((result.data or {}).get("__type") or {}).get("fields") or []}
    return "user { id } role reason expiresAt" + (" apiKey { id }" if "apiKey" in fields else "")


def pairs_key(part: Part) -> str:
    return f"visibility: (world, principal) pairs checked on {part}"


def path_name(compiled: bool) -> str:
    return "compiled read path" if compiled else "standard executor"


async def check_world(
    paths: Paths, backend: Backend, spec: WorldSpec, database: str, part: Part | None = None
) -> None:
    part = part or Part(database)
    if not SCHEDULES.setdefault(part, Schedule(part)).takes(spec):
        return  # the run has checked enough pairs, or another part checks this world
    # given a generated world, the path that answers this one (alternately; a database's
    # second part starts with the other), and the model's answers
    compiled = (TALLY[f"visibility: worlds checked on {part}"] + part.number - 1) % 2 == 1
    api = paths.apis[compiled]
    answered_before = paths.compiled.answered
    await backend.clear()
    facts = await build(backend.engine, spec)
    model = Model(facts)
    principals = facts.principals()
    assert_world_covers_the_brief(facts, model, spec)
    selection = await access_selection(api, facts)
    small = small_pages_for(principals)

    # when every principal follows the change feed at once, then each receives the model's
    problems = Problems()
    following = await following_from_the_start(
        api, paths.apps[compiled], facts, model, principals, problems
    )
    try:
        # when every principal asks everything, then every answer is the model's
        for who in principals:
            check = Check(api, facts, model, who, problems, selection)
            await check_principal(check, small_pages=small(who))
        # and a change made now reaches exactly the subscribers who see its object
        TALLY[f"visibility: subscription events checked on {part}"] += await following.live()
    finally:
        await following.close()
    if problems.found:
        TALLY[f"visibility: failed world runs on {part}"] += 1
    assert not problems.found, problems.report()
    TALLY[f"visibility: worlds checked on {part}"] += 1
    TALLY[pairs_key(part)] += len(principals)
    TALLY[f"{pairs_key(part)} through the {path_name(compiled)}"] += len(principals)
    TALLY[f"visibility: principals signed in through OpenID Connect on {part}"] += sum(
        through_provider(who) is not None for who in principals
    )
    if compiled:
        TALLY[f"visibility: answers from the compiled read path on {part}"] += (
            paths.compiled.answered - answered_before
        )
    else:
        assert paths.compiled.answered == answered_before


def in_process(part: Part) -> pytest.MarkDecorator:
    """Spread over processes (`make pytest`: -n 2 --dist loadgroup), a part's proof and the
    check of its tally run in one process, one after the other (tests/authz/__init__.py)."""
    return pytest.mark.xdist_group(PROCESS[f"visibility-{part.database}-{part.number}"])


@in_process(SQLITE_1)
@examples(SQLITE_1)
@given(spec=worlds(max_organisations=6))
async def test_every_principal_sees_what_the_model_says_on_sqlite_part_1(
    sqlite_api: Paths, sqlite_backend: Backend, spec: WorldSpec
) -> None:
    await check_world(sqlite_api, sqlite_backend, spec, "sqlite", SQLITE_1)


@in_process(SQLITE_2)
@examples(SQLITE_2)
@given(spec=worlds(max_organisations=6))
async def test_every_principal_sees_what_the_model_says_on_sqlite_part_2(
    sqlite_api: Paths, sqlite_backend: Backend, spec: WorldSpec
) -> None:
    await check_world(sqlite_api, sqlite_backend, spec, "sqlite", SQLITE_2)


@in_process(POSTGRESQL)
@examples(POSTGRESQL)
@given(spec=worlds(max_organisations=4))
async def test_every_principal_sees_what_the_model_says_on_postgresql(
    postgresql_api: Paths, postgresql_backend: Backend, spec: WorldSpec
) -> None:
    await check_world(postgresql_api, postgresql_backend, spec, "postgresql")


@pytest.mark.parametrize(
    "part", [pytest.param(p, marks=in_process(p), id=f"{p.database}-{p.number}") for p in PARTS]
)
def test_the_run_covered_enough_pairs(part: Part) -> None:
    """Runs after the tests above (file order): the worlds taken reached the database's
    pairs, and this part checked every world its schedule gave it, on both paths."""
    if TALLY[f"visibility: failed world runs on {part}"]:
        pytest.skip(f"the visibility test failed on {part}; it reports why")
    if not TALLY[f"visibility: worlds checked on {part}"]:
        pytest.skip(f"the visibility test did not run on {part}")
    schedule = SCHEDULES[part]
    # The same line from every part of the database (once), unless their schedules differ.
    note = f"visibility: {schedule.worlds} worlds, {schedule.pairs} pairs taken on {part.database}"
    NOTES.extend([note] if note not in NOTES else [])
    assert schedule.pairs >= PAIRS[part.database], (schedule, TALLY)
    assert TALLY[pairs_key(part)] == schedule.given, (schedule, TALLY)
    # Both paths; a part given one world only, the path it starts with (the other part's
    # first world takes the other path).
    first = part.number % 2 == 0
    for compiled in (False, True):
        if TALLY[f"visibility: worlds checked on {part}"] > 1 or compiled == first:
            assert TALLY[f"{pairs_key(part)} through the {path_name(compiled)}"], TALLY
    if TALLY[f"{pairs_key(part)} through the {path_name(True)}"]:
        assert TALLY[f"visibility: answers from the compiled read path on {part}"], TALLY


def assert_world_covers_the_brief(facts: Facts, model: Model, spec: WorldSpec) -> None:
    """Every generated world holds the cases the proof is meant to cover."""
    assert spec.principal_count() >= PRINCIPALS_PER_WORLD, spec.principal_count()
    assert len(facts.principals()) == spec.principal_count()
    assert 2 <= len(facts.organisations) <= 6
    organisations_of: dict[int, set[int]] = {}
    roles_of: dict[int, set[frozenset[str]]] = {}
    for m in facts.memberships:
        organisations_of.setdefault(m.user_id, set()).add(m.organisation_id)
        roles_of.setdefault(m.user_id, set()).add(m.roles)
    assert any(len(o) > 1 and len(roles_of[u]) > 1 for u, o in organisations_of.items())
    signed_in = [lf for lf in facts.learners if lf.user_id is not None]
    assert signed_in and any(
        LEARNER in m.roles
        for m in facts.memberships
        for lf in signed_in
        if (m.user_id, m.organisation_id) == (lf.user_id, lf.organisation_id)
    )
    assignees: dict[int, set[int]] = {}
    for a in facts.assignments:
        if not a.ended:
            assignees.setdefault(model.record[a.record_id].learner_id, set()).add(a.user_id)
    assert any(
        len(model.records_of[pk]) > 1 and len(users) > 1 for pk, users in assignees.items()
    ), "a learner with several records assigned to different people"
    assert {a.role.value for a in facts.assignments if not a.ended} == {ASSESSOR, COORDINATOR}
    assert any(a.ended for a in facts.assignments)
    states = {
        AllocationState.ENDED
        if a.ended
        else AllocationState.ACTIVE
        if a.expires_at is None
        else AllocationState.EXPIRING
        if a.expires_at > facts.now
        else AllocationState.EXPIRED
        for a in facts.allocations
    }
    assert states == set(AllocationState)
    assert {x.status for x in facts.licences} >= {
        LicenceStatus.ACTIVE,
        LicenceStatus.COMPLETED,
        LicenceStatus.EXPIRED,
    }
    assert facts.evidence and facts.audit
    assert any(k.revoked for k in facts.api_keys) and any(not k.revoked for k in facts.api_keys)

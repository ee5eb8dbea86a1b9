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
id of every type with every nested path, `Learner.access`, and the Actions table.

Worlds alternate between the standard executor and the compiled read path (the apps differ
only in `compiled_reads`), so the whole proof holds for both; the run reports how many
answers the compiled path gave.

CI is deterministic (the `ci` Hypothesis profile); CASELOAD_HYPOTHESIS_SEED=N draws other
worlds, and CASELOAD_PAIRS=N checks more pairs (tests/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import given, seed, settings

from db.models import LicenceStatus
from server.app import create_app
from server.services import Services
from tests.authz import TALLY
from tests.authz.checks import (
    PROOF_LIMITS,
    Check,
    Problems,
    caller_for,
    check_principal,
    small_pages_for,
)
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

# Examples are built until the run has checked this many (world, principal) pairs; the
# examples after that are drawn but not built (Hypothesis's order is fixed under `ci`).
# test_the_run_covered_enough_pairs checks the count. CASELOAD_PAIRS=N asks for more.
PAIRS = {
    "sqlite": int(os.environ.get("CASELOAD_PAIRS", 200)),
    "postgresql": max(50, int(os.environ.get("CASELOAD_PAIRS", 200)) // 4),
}
MAX_WORLDS = {"sqlite": 40, "postgresql": 15}
PRINCIPALS_PER_WORLD = 10

F = TypeVar("F", bound=Callable[..., Any])


def examples(database: str) -> Callable[[F], F]:
    """Hypothesis settings for one database's test; a seed when one is asked for."""
    count = int(os.environ.get("CASELOAD_WORLDS", MAX_WORLDS[database]))

    def decorate(test: F) -> F:
        test = settings(max_examples=count)(test)
        if HYPOTHESIS_SEED:
            test = seed(int(HYPOTHESIS_SEED))(test)
        return test

    return decorate


@dataclass
class Paths:
    """The same database behind two apps: the standard executor and the compiled read path."""

    apis: dict[bool, Api]  # compiled_reads → its app
    compiled: Any  # the compiled path's counter (`answered`)


@asynccontextmanager
async def apps_on(backend: Backend) -> AsyncIterator[Paths]:
    async with AsyncExitStack() as stack:
        apis: dict[bool, Api] = {}
        counter = None
        for compiled in (False, True):
            services = Services.build(
                make_settings(backend.url, compiled_reads=compiled, **PROOF_LIMITS)
            )
            stack.push_async_callback(services.aclose)
            app = create_app(services=services)
            transport = httpx.ASGITransport(app=app)
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://caseload.test")
            )
            apis[compiled] = Api(client, services.settings)
            if compiled:
                counter = app.state.compiled_reads
        yield Paths(apis, counter)


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


def pairs_key(database: str) -> str:
    return f"visibility: (world, principal) pairs checked on {database}"


def path_name(compiled: bool) -> str:
    return "compiled read path" if compiled else "standard executor"


async def check_world(paths: Paths, backend: Backend, spec: WorldSpec, database: str) -> None:
    if TALLY[pairs_key(database)] >= PAIRS[database]:
        return  # this run has checked enough pairs
    # given a generated world, the path that answers this one, and the model's answers
    compiled = TALLY[f"visibility: worlds checked on {database}"] % 2 == 1
    api = paths.apis[compiled]
    answered_before = paths.compiled.answered
    await backend.clear()
    facts = await build(backend.engine, spec)
    model = Model(facts)
    principals = facts.principals()
    assert_world_covers_the_brief(facts, model, spec)
    selection = await access_selection(api, facts)
    small = small_pages_for(principals)

    # when every principal asks everything, then every answer is the model's
    problems = Problems()
    for who in principals:
        check = Check(api, facts, model, who, problems, selection)
        await check_principal(check, small_pages=small(who))
    if problems.found:
        TALLY[f"visibility: failed world runs on {database}"] += 1
    assert not problems.found, problems.report()
    TALLY[f"visibility: worlds checked on {database}"] += 1
    TALLY[pairs_key(database)] += len(principals)
    TALLY[f"{pairs_key(database)} through the {path_name(compiled)}"] += len(principals)
    if compiled:
        TALLY[f"visibility: answers from the compiled read path on {database}"] += (
            paths.compiled.answered - answered_before
        )
    else:
        assert paths.compiled.answered == answered_before


def on_one_worker(database: str) -> pytest.MarkDecorator:
    """Spread over processes (`make pytest`: -n 2 --dist loadgroup), one database's proof and
    the check of its tally run in one process, one after the other; the other database's
    proof runs beside them."""
    return pytest.mark.xdist_group(f"visibility-{database}")


@on_one_worker("sqlite")
@examples("sqlite")
@given(spec=worlds(max_organisations=6))
async def test_every_principal_sees_what_the_model_says_on_sqlite(
    sqlite_api: Paths, sqlite_backend: Backend, spec: WorldSpec
) -> None:
    await check_world(sqlite_api, sqlite_backend, spec, "sqlite")


@on_one_worker("postgresql")
@examples("postgresql")
@given(spec=worlds(max_organisations=4))
async def test_every_principal_sees_what_the_model_says_on_postgresql(
    postgresql_api: Paths, postgresql_backend: Backend, spec: WorldSpec
) -> None:
    await check_world(postgresql_api, postgresql_backend, spec, "postgresql")


@pytest.mark.parametrize(
    "database", [pytest.param(d, marks=on_one_worker(d)) for d in ("sqlite", "postgresql")]
)
def test_the_run_covered_enough_pairs(database: str) -> None:
    """Runs after the two tests above (file order): they checked enough pairs between them."""
    if TALLY[f"visibility: failed world runs on {database}"]:
        pytest.skip(f"the visibility test failed on {database}; it reports why")
    if not TALLY[f"visibility: worlds checked on {database}"]:
        pytest.skip(f"the visibility test did not run on {database}")
    assert TALLY[pairs_key(database)] >= PAIRS[database], TALLY
    for compiled in (False, True):
        assert TALLY[f"{pairs_key(database)} through the {path_name(compiled)}"], TALLY
    assert TALLY[f"visibility: answers from the compiled read path on {database}"], TALLY


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

"""Mutation testing of the policy: a widened row, or a predicate turned into `true()`, must
make the behavioural checks fail.

Each mutant is one edit:
- widen: one row of policies/policy.csv is widened to a broader scope that has a predicate
  for its resource (self < assigned, allocated, allocated_here < team < organisation < all);
  the row keeps its own scope too, so the mutant only ever grants more (scopes are not
  nested for every principal: an external assessor's `organisation` is nobody);
- grant: a row a role must never hold is added (GRANTS: a reader of learners given the
  organisation's auto-allocation rules, an admin given its API keys);
- true: one (resource, scope) predicate of policies/scopes.py answers `true()`.

The app is built with the mutant (`Services.build(settings, policies=...)`; predicates are
swapped for the test's duration) and the reference-model checks of tests/authz/checks.py
run on a fixed world made to expose every row: reads, filters, nested paths,
`Learner.access`, and the Actions table through non-destructive probes (the granted and
denied outcomes). The checks run first with the real policy, which must agree with the model
everywhere on that world (test_the_real_policy_agrees_with_the_model_on_the_fixed_world names
every disagreeing cell): a policy that disagrees is wrong, not "today's defects", and a mutant
is judged only against a clean run. A mutant is caught when the checks find any disagreement.
The truth table (test_design_table.py) is not used: it catches every edit by construction.

A CI run takes MUTANTS_PER_RUN mutants, rotated by the date (the offset is printed) so that
every mutant is run within a few days; CASELOAD_MUTANT_SEED=N picks another window, and
`make mutants` (CASELOAD_MUTANTS=all) runs every one, and checks that each mutant listed in
EQUIVALENT still survives (or it is not equivalent, and must come off the list).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import ColumnElement, true

from db.models import AssignmentRole, EvidenceStatus, LicenceStatus
from policies.enforcer import POLICY_PATH, PolicyStore, load_enforcer
from policies.principal import Principal
from policies.scopes import PREDICATES
from policies.vocabulary import Resource, Scope
from server.app import create_app
from server.services import Services
from tests.authz import NOTES, PROCESS, TALLY
from tests.authz.checks import (
    PROOF_LIMITS,
    Check,
    NewProblem,
    Problems,
    check_changes,
    check_principal,
)
from tests.authz.live import check_subscriptions
from tests.authz.model import Model
from tests.authz.world import (
    ADMIN,
    ASSESSOR,
    COORDINATOR,
    LEARNER,
    MANAGER,
    SENIOR,
    SUPER_ADMIN,
    AllocationSpec,
    AllocationState,
    ApiKeySpec,
    AssignmentSpec,
    AuditSpec,
    EvidenceSpec,
    Facts,
    LearnerSpec,
    LicenceSpec,
    MembershipSpec,
    RecordSpec,
    RuleSpec,
    WorldSpec,
    build,
)
from tests.conftest import Backend, make_settings
from tests.helpers import Api, row_counts

# Spread over processes (`make pytest`: -n 2 --dist loadgroup), the mutants run in one, so
# that the fixed world and its baseline are built once (tests/authz/__init__.py).
pytestmark = pytest.mark.xdist_group(PROCESS["policy-mutants"])
MUTANTS_PER_RUN = 16
RANK = {
    Scope.SELF: 0,
    Scope.ASSIGNED: 1,
    Scope.ALLOCATED: 1,
    Scope.ALLOCATED_HERE: 1,
    Scope.BY_SUPPORT: 1,
    Scope.TEAM: 2,
    Scope.ORGANISATION: 3,
    Scope.ALL: 4,
}
CREATE_SCOPES = (Scope.ORGANISATION, Scope.ALL)

# Mutants no request can observe, and why. `make mutants` checks that each still survives.
_ALREADY_TRUE = "the predicate is already true()"
_OWN_ORGANISATION_ONLY = (
    "{action}'s target must be in an organisation ADMIN can read, and ADMIN reads only its own"
)
EQUIVALENT: dict[str, str] = {
    "true: organisation/all": _ALREADY_TRUE,
    "true: location/all": _ALREADY_TRUE,
    "true: department/all": _ALREADY_TRUE,
    "true: course/all": _ALREADY_TRUE,
    "true: licence_pool/all": _ALREADY_TRUE,
    "widen: SUPER_ADMIN, api_key, create: organisation -> all": (
        "createApiKey always creates in the caller's own organisation"
    ),
    "widen: SUPER_ADMIN, webhook_endpoint, create: organisation -> all": (
        "createWebhookEndpoint always creates in the caller's own organisation"
    ),
    "widen: ADMIN, auto_allocation_rule, create: organisation -> all": (
        "createAutoAllocationRule always creates in the caller's own organisation (a unit of "
        "another organisation is a ValidationError whatever the scope)"
    ),
    "widen: ADMIN, staff, update: organisation -> all": _OWN_ORGANISATION_ONLY.format(
        action="updateStaffMember"
    ),
    "widen: ADMIN, staff, deactivate: organisation -> all": _OWN_ORGANISATION_ONLY.format(
        action="deactivateStaffMember"
    ),
    "widen: ADMIN, staff, create: organisation -> all": _OWN_ORGANISATION_ONLY.format(
        action="createStaffMember"
    ),
    "widen: ADMIN, location, create: organisation -> all": _OWN_ORGANISATION_ONLY.format(
        action="createLocation"
    ),
    "widen: ADMIN, department, create: organisation -> all": _OWN_ORGANISATION_ONLY.format(
        action="createDepartment"
    ),
    "widen: ADMIN, learner, create: organisation -> all": (
        "createLearner always creates in the caller's own organisation"
    ),
    "widen: ADMIN, record, create: organisation -> all": _OWN_ORGANISATION_ONLY.format(
        action="createApprenticeRecord (its learner)"
    ),
}


def equivalent_by_rule(role: str, resource: str, action: str, old: Scope, new: Scope) -> str | None:
    """Why widening (role, resource, action) from `old` to `new` adds nothing anyone can see."""
    if role == "EXTERNAL_ASSESSOR" and new in (Scope.TEAM, Scope.ORGANISATION):
        return (
            "an external assessor acts in no organisation and has no units: `team` and "
            "`organisation` select nothing for them"
        )
    if role == "SUPPORT" and new in (Scope.TEAM, Scope.ORGANISATION, Scope.ASSIGNED, Scope.SELF):
        return (
            "support acts in no organisation, has no units, no assignments and no learner "
            "record: `team`, `organisation`, `assigned` and `self` select nothing for them"
        )
    if role != "EXTERNAL_ASSESSOR" and new is Scope.ALLOCATED:
        return (
            "`allocated` selects allocations to the principal; only external assessors are "
            "ever allocated (allocateAssessor refuses anyone else), and they hold no "
            "membership role"
        )
    if (
        role == "LEARNER"
        and resource != "learner"
        and action == "read"
        and (old, new) == (Scope.SELF, Scope.ASSIGNED)
    ):
        return (
            "a person assigned to records holds the role the assignment needs (ASSESSOR or "
            "TRAINING_COORDINATOR, whose rows already read `assigned`, or SENIOR_ASSESSOR, "
            "who reads the organisation); for learners it shows, as one more reason in "
            "Learner.access"
        )
    return None


# Rows no role but the named one may hold, each added as a mutant of its own. Rules are read
# by admins alone and API keys by super admins alone (DESIGN.md's Reads table), whatever
# object names them (`Licence.rule`, `AuditEvent.apiKey`, `LearnerAccess.apiKey`).
GRANTS = (
    "p, SENIOR_ASSESSOR, auto_allocation_rule, read, organisation",
    "p, MANAGER, auto_allocation_rule, read, organisation",
    "p, ASSESSOR, auto_allocation_rule, read, organisation",
    "p, TRAINING_COORDINATOR, auto_allocation_rule, read, organisation",
    "p, LEARNER, auto_allocation_rule, read, organisation",
    "p, ADMIN, api_key, read, organisation",
    # No probe of the Actions table asks a manager to archive (the model says they never
    # may): only viewerCan tells, on their team's records.
    "p, MANAGER, record, archive, team",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str  # widen | grant | true
    row: str = ""  # the policy.csv line widened
    widened: str = ""  # the line added after it (grant: the line added at the end)
    predicate: tuple[Resource, Scope] | None = None
    roles: frozenset[str] = frozenset()  # who holds the edited row: their checks run first

    def __str__(self) -> str:
        return self.name


def policy_rows() -> list[tuple[str, str, str, str, str]]:
    """(line, role, resource, action, scope) of every `p` row of policy.csv."""
    rows = []
    for line in POLICY_PATH.read_text().splitlines():
        match = re.fullmatch(r"p,\s*(\w+),\s*(\w+),\s*(\w+),\s*(\w+)\s*", line)
        if match:
            role, resource, action, scope = match.groups()
            rows.append((line, role, resource, action, scope))
    return rows


def all_mutants() -> list[Mutant]:
    found: list[Mutant] = []
    used: set[tuple[Resource, Scope]] = set()
    for line, role, resource, action, scope in policy_rows():
        res, old = Resource(resource), Scope(scope)
        if action == "create":
            broader = [s for s in CREATE_SCOPES if RANK[s] > RANK[old]]
        else:
            used.add((res, old))
            broader = [s for s in Scope if RANK[s] > RANK[old] and (res, s) in PREDICATES]
        for new in sorted(broader, key=lambda s: (RANK[s], s.value)):
            widened = f"p, {role}, {resource}, {action}, {new.value}"
            name = f"widen: {role}, {resource}, {action}: {scope} -> {new.value}"
            holders = {role} | ({"SUPER_ADMIN"} if role == "ADMIN" else set())
            found.append(Mutant(name, "widen", line, widened, roles=frozenset(holders)))
            reason = equivalent_by_rule(role, resource, action, old, new)
            if reason is not None:
                EQUIVALENT.setdefault(name, reason)
    for added in GRANTS:
        role, resource, action, scope = (part.strip() for part in added.split(",")[1:])
        assert (Resource(resource), Scope(scope)) in PREDICATES, added
        assert not any(r[1:4] == (role, resource, action) for r in policy_rows()), added
        holders = {role} | ({"SUPER_ADMIN"} if role == "ADMIN" else set())
        name = f"grant: {role}, {resource}, {action}, {scope}"
        found.append(Mutant(name, "grant", widened=added, roles=frozenset(holders)))
    grants = PolicyStore().grants
    for res, scope in sorted(PREDICATES, key=lambda k: (k[0].value, k[1].value)):
        name = f"true: {res.value}/{scope.value}"
        holders = {r.value for (r, x, _), held in grants.items() if x is res and scope in held}
        found.append(Mutant(name, "true", predicate=(res, scope), roles=frozenset(holders)))
        if (res, scope) not in used:
            EQUIVALENT.setdefault(name, "no row of policy.csv holds this scope for the resource")
    return found


def chosen_mutants() -> tuple[list[Mutant], str]:
    """This run's mutants, and a line saying which window of the rotation they are."""
    candidates = [m for m in all_mutants() if m.name not in EQUIVALENT]
    if os.environ.get("CASELOAD_MUTANTS") == "all":
        return all_mutants(), f"all {len(all_mutants())} mutants"
    offset_seed = int(os.environ.get("CASELOAD_MUTANT_SEED", datetime.now(UTC).date().toordinal()))
    start = (offset_seed * MUTANTS_PER_RUN) % len(candidates)
    window = (candidates + candidates)[start : start + MUTANTS_PER_RUN]
    return window, (
        f"mutants {start}..{start + len(window) - 1} of {len(candidates)} "
        f"(CASELOAD_MUTANT_SEED={offset_seed}; `make mutants` runs all {len(all_mutants())})"
    )


MUTANTS, ROTATION = chosen_mutants()


def always(p: Principal, now: datetime) -> ColumnElement[bool]:
    return true()


@contextmanager
def applied(mutant: Mutant, tmp: Path) -> Iterator[PolicyStore]:
    """The policy store of the mutant; a `true` mutant swaps its predicate meanwhile."""
    if mutant.kind in ("widen", "grant"):
        text = POLICY_PATH.read_text()
        path = tmp / "policy.csv"
        if mutant.kind == "grant":
            path.write_text(f"{text.rstrip()}\n{mutant.widened}\n")
        else:
            assert text.count(mutant.row + "\n") == 1, mutant.row
            path.write_text(text.replace(mutant.row + "\n", f"{mutant.row}\n{mutant.widened}\n"))
        yield PolicyStore(load_enforcer(policy=path))
        return
    assert mutant.predicate is not None
    original = PREDICATES[mutant.predicate]
    PREDICATES[mutant.predicate] = always
    try:
        yield PolicyStore()
    finally:
        PREDICATES[mutant.predicate] = original


# --- The fixed world ---------------------------------------------------------------------


RULE_OF_COURSE_0 = {0: 0, 1: 2, 2: 3}  # organisation → its rule for course 0


def mutation_world() -> WorldSpec:
    """Three organisations holding, for every row of the policy, a principal whose answers
    change when that row widens: several roles at once, LEARNER members with units, managers
    of every kind of team, external assessors allocated in two organisations or nowhere."""
    members = [
        # person, organisation, roles, location, department
        (0, 0, {ASSESSOR}, None, None),
        (1, 0, {ASSESSOR}, 0, None),
        (2, 0, {COORDINATOR}, None, None),
        (3, 0, {LEARNER}, 0, 0),
        (4, 0, {ADMIN}, None, None),
        (5, 0, {SUPER_ADMIN}, None, None),
        (6, 0, {SENIOR}, None, None),
        (7, 0, {MANAGER}, 0, None),
        (8, 0, {MANAGER}, None, 1),
        (9, 0, {MANAGER}, 1, 0),
        (10, 0, {MANAGER}, None, None),
        (11, 0, {MANAGER, ASSESSOR}, 1, None),
        (12, 0, {SENIOR, MANAGER}, 0, None),
        (13, 0, {MANAGER, LEARNER}, None, 0),
        (14, 0, {ASSESSOR, LEARNER}, None, None),
        (15, 0, {ADMIN, LEARNER}, None, None),
        (16, 0, {COORDINATOR, LEARNER}, 1, 1),
        (0, 1, {SENIOR}, None, None),
        (17, 1, {ADMIN}, None, None),
        (18, 1, {MANAGER}, 0, None),
        (19, 1, {ASSESSOR}, None, None),
        (20, 1, {LEARNER}, 0, None),
        (21, 1, {COORDINATOR}, None, None),
        (22, 2, {ADMIN}, None, None),
        (23, 2, {ASSESSOR}, None, None),
        (24, 0, {ASSESSOR}, None, None),  # deactivated below
        (25, 1, {SUPER_ADMIN}, None, None),
    ]
    memberships = tuple(
        MembershipSpec(p, o, frozenset(r), loc, dep, deactivated=p == 24)
        for p, o, r, loc, dep in members
    )
    signed_in: list[tuple[int, int, int | None, int | None]] = [
        (0, 3, 0, 0),
        (0, 13, 1, 0),
        (0, 14, None, 1),
        (0, 15, 0, 1),
        (0, 16, 1, 1),
    ]
    signed_in += [(1, 20, 0, None)]
    learners = [LearnerSpec(o, p, f"Signed In {p}", loc, dep) for o, p, loc, dep in signed_in]
    units = [(0, 0), (0, 1), (1, 0), (1, 1), (None, 0), (0, None), (None, None), (1, None)]
    learners += [
        LearnerSpec(0, None, f"Learner {n}", loc, dep) for n, (loc, dep) in enumerate(units)
    ]
    learners += [LearnerSpec(1, None, f"Learner {n}", n % 2, None) for n in range(8, 12)]
    learners += [LearnerSpec(2, None, f"Learner {n}", 0, 0) for n in range(12, 14)]
    records = (
        *(
            RecordSpec(index, "Adult Care Level 2" if index % 2 else "Team Leading Level 3")
            for index in range(len(learners))
            for _ in range(1 + index % 2)
        ),
        RecordSpec(6, "Lead Practitioner Level 5", archived=True),
    )
    learner_of = [r.learner for r in records]
    org_of = [learners[r.learner].org for r in records]

    def first_record(learner: int, nth: int = 0) -> int:
        return [i for i, x in enumerate(learner_of) if x == learner][nth]

    a_role, tc_role = AssignmentRole.ASSESSOR, AssignmentRole.TRAINING_COORDINATOR
    assignments = [
        AssignmentSpec(first_record(6), 0, a_role, False),
        AssignmentSpec(first_record(7), 1, a_role, False),
        AssignmentSpec(first_record(7, 1), 11, a_role, False),
        AssignmentSpec(first_record(8), 14, a_role, False),
        AssignmentSpec(first_record(9, 1), 1, a_role, False),  # in person 16's team, not theirs
        AssignmentSpec(first_record(13), 16, tc_role, False),
        AssignmentSpec(first_record(10), 2, tc_role, False),
        AssignmentSpec(first_record(11, 1), 16, tc_role, False),
        AssignmentSpec(first_record(12), 6, a_role, False),
        AssignmentSpec(first_record(13, 1), 0, a_role, True),
        AssignmentSpec(first_record(1), 1, a_role, False),
        AssignmentSpec(first_record(0), 14, a_role, False),
        AssignmentSpec(first_record(14), 19, a_role, False),
        AssignmentSpec(first_record(15, 1), 21, tc_role, False),
        AssignmentSpec(first_record(16), 0, a_role, False),  # person 0, in organisation 1
        AssignmentSpec(first_record(18), 23, a_role, False),
        AssignmentSpec(len(records) - 1, 0, a_role, False),  # on the archived record
        AssignmentSpec(first_record(6), 24, a_role, True),  # ended when 24 was deactivated
    ]
    assert all(org_of[a.record] in (0, 1, 2) for a in assignments)
    allocations = (
        AllocationSpec(6, 0, AllocationState.ACTIVE),
        AllocationSpec(9, 0, AllocationState.EXPIRING),
        AllocationSpec(15, 0, AllocationState.ACTIVE),
        AllocationSpec(10, 1, AllocationState.EXPIRED),
        AllocationSpec(11, 1, AllocationState.ENDED),
        AllocationSpec(2, 0, AllocationState.ACTIVE),
    )
    evidence = tuple(
        EvidenceSpec(index, EvidenceStatus.SUBMITTED, None) for index in range(len(records))
    )
    api_keys = (
        ApiKeySpec(0, frozenset({ADMIN}), False),
        ApiKeySpec(1, frozenset({SENIOR}), False),
        ApiKeySpec(0, frozenset({MANAGER, ASSESSOR}), False),
        ApiKeySpec(2, frozenset({ADMIN}), True),
    )
    audit = (
        AuditSpec(0, ("person", 4)),
        AuditSpec(1, ("person", 17)),
        AuditSpec(0, ("key", 0)),
        AuditSpec(0, ("external", 0)),
        AuditSpec(None, ("support", 0)),
        AuditSpec(2, ("support", 0)),
    )
    # Licences: every learner holds an active one for course 0 where there is a pool; some a
    # recalled or launched one for course 1; rules in every organisation, one deleted.
    pools = ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0))
    rules = (
        RuleSpec(0, 0, False),
        RuleSpec(0, 1, True),
        RuleSpec(1, 0, False),
        RuleSpec(2, 0, False),
    )
    licences = [
        LicenceSpec(
            index,
            0,
            LicenceStatus.ACTIVE,
            index % 3 == 0,
            RULE_OF_COURSE_0[learners[index].org] if index % 2 else None,
        )
        for index in range(len(learners))
        if learners[index].org in (0, 1, 2)
    ]
    licences += [
        LicenceSpec(index, 1, LicenceStatus.RECALLED, False, None)
        for index in range(len(learners))
        # index 8: in person 13's team (department 0), not their own learner
        if learners[index].org in (0, 1) and (index % 4 == 1 or index == 8)
    ]
    return WorldSpec(
        units=((2, 2), (2, 1), (1, 1)),
        persons=tuple(f"Person {n}" for n in range(26)),
        memberships=memberships,
        learners=tuple(learners),
        records=records,
        assignments=tuple(assignments),
        externals=("Allocated Twice", "Lapsed Assessor", "Unallocated Assessor"),
        allocations=allocations,
        evidence=evidence,
        supports=("Support Person",),
        api_keys=api_keys,
        audit=audit,
        pools=pools,
        rules=tuple(RuleSpec(r.org, r.course, r.deleted) for r in rules),
        licences=tuple(licences),
    )


@dataclass
class Baseline:
    backend: Backend
    facts: Facts
    model: Model
    problems: Problems  # the real policy's disagreements with the model: there must be none
    counts: dict[str, int]


@asynccontextmanager
async def app_with(backend: Backend, store: PolicyStore | None) -> AsyncIterator[Api]:
    services = Services.build(make_settings(backend.url, **PROOF_LIMITS), policies=store)
    app = create_app(services=services)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://caseload.test") as c:
            yield Api(c, services.settings)
    finally:
        await app.state.hub.aclose()  # subscriptions' (check_subscriptions)
        await services.aclose()


async def run_checks(
    api: Api, facts: Facts, model: Model, problems: Problems, first: frozenset[str] = frozenset()
) -> None:
    """Every principal's checks; those holding one of the `first` roles go first."""
    principals = sorted(facts.principals(), key=lambda who: not (who.roles & first))
    for who in principals:
        await check_principal(Check(api, facts, model, who, problems))


@pytest.fixture(scope="module")
async def baseline(sqlite_backend: Backend) -> Baseline:
    """The fixed world, and what the checks find with the real policy (nothing, or it is
    wrong)."""
    await sqlite_backend.clear()
    facts = await build(sqlite_backend.engine, mutation_world())
    model = Model(facts)
    problems = Problems()
    async with app_with(sqlite_backend, None) as api:
        app = api.client._transport.app  # type: ignore[attr-defined]
        await check_subscriptions(api, app, facts, model, facts.principals(), problems)
        await run_checks(api, facts, model, problems)
    NOTES.append(f"policy mutants: {ROTATION}")
    NOTES.append(
        f"policy mutants: the real policy disagrees with the model {len(problems.found)} "
        "times on the fixed world (it must not)"
    )
    counts = await row_counts(sqlite_backend.engine)
    return Baseline(sqlite_backend, facts, model, problems, counts)


def test_the_real_policy_agrees_with_the_model_on_the_fixed_world(baseline: Baseline) -> None:
    """Every cell of the fixed world — principal (roles, organisation, units), what was asked
    (list, filter, `node(id:)` field, `Learner.access`, action) and the rows — is the
    model's, with policy.csv as it is: a disagreement is a defect of the policy or the code."""
    assert not baseline.problems.found, (
        "policies/policy.csv (and the code) disagree with the reference model on the fixed "
        "world; each line names the principal and its roles, what was asked, and the rows:\n"
        + baseline.problems.report(limit=200)
    )


# A mutant can make a visible object's non-null parent invisible: the app then fails the
# request outright and leaves its session to the garbage collector (caught all the same).
@pytest.mark.filterwarnings("ignore:The garbage collector is trying to clean up")
@pytest.mark.parametrize("mutant", MUTANTS, ids=str)
async def test_the_checks_catch_the_mutant(
    mutant: Mutant, baseline: Baseline, tmp_path: Path
) -> None:
    # given the fixed world, unchanged since the baseline run, on which the real policy agrees
    # with the model (else any mutant would look caught)
    if baseline.problems.found:
        pytest.fail(
            f"the real policy disagrees with the model {len(baseline.problems.found)} times on "
            "the fixed world, so no mutant can be judged: "
            "test_the_real_policy_agrees_with_the_model_on_the_fixed_world names them"
        )
    assert await row_counts(baseline.backend.engine) == baseline.counts, "the world changed"
    caught: str | None = None
    with applied(mutant, tmp_path) as store:
        async with app_with(baseline.backend, store) as api:
            # when the checks run against the mutant
            try:
                await run_checks(
                    api,
                    baseline.facts,
                    baseline.model,
                    Problems(frozenset()),  # any disagreement catches the mutant
                    mutant.roles,
                )
            except NewProblem as found:
                caught = str(found)
            except (Exception, asyncio.CancelledError) as failed:  # the app failed outright
                caught = f"the request raised {type(failed).__name__}: {failed}"
    assert await row_counts(baseline.backend.engine) == baseline.counts, "a probe wrote"
    # then they find a disagreement with the model (unless no request can)
    if mutant.name in EQUIVALENT:
        TALLY["policy mutants: equivalent, survived as listed"] += caught is None
        assert caught is None, f"listed as equivalent ({EQUIVALENT[mutant.name]}) but {caught}"
        return
    TALLY["policy mutants: caught"] += caught is not None
    TALLY["policy mutants: survived"] += caught is None
    assert caught is not None, f"{mutant} survived: no check noticed it"
    print(f"{mutant}: {caught[:300]}")


def test_every_row_and_predicate_has_mutants() -> None:
    mutants = all_mutants()
    widened = {m.row for m in mutants if m.kind == "widen"}
    narrowest_everywhere = {
        line
        for line, _, resource, action, scope in policy_rows()
        if not any(
            RANK[s] > RANK[Scope(scope)]
            and ((Resource(resource), s) in PREDICATES or action == "create")
            for s in Scope
        )
    }
    assert widened | narrowest_everywhere == {line for line, *_ in policy_rows()}
    assert {m.predicate for m in mutants if m.kind == "true"} == set(PREDICATES)
    assert set(EQUIVALENT) <= {m.name for m in mutants}, set(EQUIVALENT) - {m.name for m in mutants}
    assert len(MUTANTS) >= min(MUTANTS_PER_RUN, len(mutants))


# The change feed shows a change when its subject is visible: a widened read of any kind of
# subject must show in the feed alone (its check, not only the lists and `node(id:)`).
FEED_RESOURCES = (
    "organisation",
    "location",
    "department",
    "staff",
    "learner",
    "record",
    "assignment",
    "allocation",
    "evidence",
    "licence",
    "licence_pool",
    "auto_allocation_rule",
    "api_key",
)


def feed_mutants() -> list[Mutant]:
    """For each kind of subject, the first widened read row that is not equivalent."""
    chosen: dict[str, Mutant] = {}
    for m in all_mutants():
        if m.kind != "widen" or m.name in EQUIVALENT:
            continue
        _, resource, action, _ = (part.strip() for part in m.row.split(",")[1:])
        if action == "read" and resource in FEED_RESOURCES:
            chosen.setdefault(resource, m)
    return list(chosen.values())


@pytest.mark.filterwarnings("ignore:The garbage collector is trying to clean up")
@pytest.mark.parametrize("mutant", feed_mutants(), ids=str)
async def test_the_feed_check_alone_catches_a_widened_read(
    mutant: Mutant, baseline: Baseline, tmp_path: Path
) -> None:
    # given the fixed world, on which the real policy's feed agrees with the model
    if baseline.problems.found:
        pytest.fail("the real policy disagrees with the model on the fixed world")
    # when only the change feed is checked, for every principal, against the mutant
    problems = Problems()
    with applied(mutant, tmp_path) as store:
        async with app_with(baseline.backend, store) as api:
            principals = sorted(
                baseline.facts.principals(), key=lambda who: not (who.roles & mutant.roles)
            )
            for who in principals:
                if who.signs_in:
                    check = Check(api, baseline.facts, baseline.model, who, problems)
                    await check_changes(check)
    # then the feed lists a change the model says the principal must not see
    assert problems.found, f"{mutant}: the change feed did not notice it"
    assert all(" — changes(" in p for p in problems.found), problems.found
    print(f"{mutant}: {problems.found[0][:300]}")


@pytest.mark.filterwarnings("ignore:The garbage collector is trying to clean up")
@pytest.mark.parametrize("mutant", feed_mutants(), ids=str)
async def test_the_subscription_check_alone_catches_a_widened_read(
    mutant: Mutant, baseline: Baseline, tmp_path: Path
) -> None:
    # given the fixed world, on which the real policy's feed agrees with the model
    if baseline.problems.found:
        pytest.fail("the real policy disagrees with the model on the fixed world")
    # when the principals holding the widened role follow the change feed over websockets
    problems = Problems()
    with applied(mutant, tmp_path) as store:
        async with app_with(baseline.backend, store) as api:
            app = api.client._transport.app  # type: ignore[attr-defined]
            principals = [who for who in baseline.facts.principals() if who.roles & mutant.roles]
            await check_subscriptions(
                api, app, baseline.facts, baseline.model, principals, problems
            )
    # then a subscriber receives a change the model says it must not see
    assert problems.found, f"{mutant}: the subscription check did not notice it"
    assert all(" — subscription" in p for p in problems.found), problems.found
    print(f"{mutant}: {problems.found[0][:300]}")

"""Statement budgets on realistic data: a page, a batch of ids or a mutation costs the same
number of SQL statements for 5 items as for 50 (no query per row, no N+1).

The world (`scaled_world(n)`) has departments and locations, allocations active and ended,
evidence, several assignees per record and a history of coordinators; `n` scales every part
of it. Reads are measured on one world for 5 and 50 items; each mutation on a world of
n = 5 and one of n = 50, with a selection that reaches into nested objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from db.models import AssignmentRole, EvidenceStatus, LicenceStatus
from schema import schema
from server.app import create_app
from server.services import Services
from tests.authz.checks import NODE_FRAGMENT, caller_for
from tests.authz.world import (
    ADMIN,
    ASSESSOR,
    COORDINATOR,
    LEARNER,
    MANAGER,
    SENIOR,
    SUPER_ADMIN,
    SUPPORT,
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
    WebhookFact,
    Who,
    WorldSpec,
    build,
)
from tests.conftest import Backend, make_settings
from tests.factories import World
from tests.helpers import Api, Result, counting, gid

SIZES = (5, 50)
# With every nested path below; what each statement is for is in the failure message.
READ_BUDGET = 16


def scaled_world(n: int) -> WorldSpec:
    """One organisation of `n` learners, `n` staff, `n` units, `n` organisations beside it.

    Learner 0 (the target of single mutations) has `n` records (and an archived one); its
    first record has `n` pieces of evidence and `n` ended coordinator assignments; it has `n`
    ended allocations and one active one, and `n` recalled licences. The other learners hold
    an active licence for the second course; the organisation has `n` rules (two in force) and
    `n` API keys.
    """
    a, tc = AssignmentRole.ASSESSOR, AssignmentRole.TRAINING_COORDINATOR
    people = [(0, {ADMIN}, None), (1, {SENIOR}, None), (2, {MANAGER}, 0), (3, {COORDINATOR}, None)]
    people += [(4, {COORDINATOR}, None)]
    people += [(5 + k, {ASSESSOR}, k % n) for k in range(n)]
    signed_in = [5 + n + k for k in range(3)]
    people += [(p, {LEARNER}, 0) for p in signed_in]
    people += [(5 + n + 3, {SUPER_ADMIN}, None)]
    learners = [LearnerSpec(0, None, f"Target Learner {n}", 0, 0)]
    learners += [LearnerSpec(0, p, f"Signed In {p}", 0, 1 % n) for p in signed_in]
    learners += [LearnerSpec(0, None, f"Learner {k:03}", k % n, (k * 7) % n) for k in range(n + 2)]
    learners += [LearnerSpec(1, None, "Elsewhere", 0, 0)]
    records = [RecordSpec(0, f"Programme {k}") for k in range(n)]
    records += [RecordSpec(i, "Adult Care Level 2") for i in range(1, len(learners))]
    records += [RecordSpec(0, "Archived Programme", archived=True)]
    assignments = [AssignmentSpec(r, 5 + r % n, a, False) for r in range(len(records))]
    assignments += [AssignmentSpec(r, 5 + (r + 1) % n, a, False) for r in range(0, len(records), 3)]
    assignments += [AssignmentSpec(r, 3, tc, False) for r in range(len(records))]
    assignments += [AssignmentSpec(0, 3 + k % 2, tc, True) for k in range(n)]
    assignments += [AssignmentSpec(r, 5 + (r + 2) % n, a, True) for r in range(0, len(records), 4)]
    allocations = [AllocationSpec(0, k, AllocationState.ENDED) for k in range(n)]
    allocations += [AllocationSpec(0, 0, AllocationState.ACTIVE)]
    allocations += [
        AllocationSpec(i, i % n, AllocationState.ACTIVE if i % 3 else AllocationState.EXPIRING)
        for i in range(1, len(learners) - 1, 2)
    ]
    evidence = [EvidenceSpec(0, EvidenceStatus.SUBMITTED, None) for _ in range(n)]
    evidence += [
        EvidenceSpec(r, EvidenceStatus.SIGNED_OFF if r % 2 else EvidenceStatus.SUBMITTED, 5)
        for r in range(1, len(records))
    ]
    return WorldSpec(
        units=((n, n), *((1, 1) for _ in range(n))),
        persons=tuple(f"Person {p:03}" for p in range(5 + n + 4)),
        memberships=tuple(
            MembershipSpec(p, 0, frozenset(r), loc, None if loc is None else 0)
            for p, r, loc in people
        ),
        learners=tuple(learners),
        records=tuple(records),
        assignments=tuple(assignments),
        externals=tuple(f"External {k:03}" for k in range(n + 1)),
        allocations=tuple(allocations),
        evidence=tuple(evidence),
        supports=("Support Person",),
        api_keys=tuple(ApiKeySpec(0, frozenset({ADMIN}), k % 2 == 1) for k in range(n)),
        audit=tuple(AuditSpec(0, ("person", 0)) for _ in range(n)),
        pools=((0, 0), (0, 1), (0, 2)),
        # rules in force for the first two courses only: the third's may be made again
        rules=tuple(RuleSpec(0, k % 3, k >= 2) for k in range(n)),
        licences=(
            *(LicenceSpec(0, 1, LicenceStatus.RECALLED, False, None) for _ in range(n)),
            *(
                LicenceSpec(i, 1, LicenceStatus.ACTIVE, False, None)
                for i in range(1, len(learners) - 1)
            ),
        ),
    )


def admin(facts: Facts) -> Who:
    org = facts.organisations[0].id
    return next(w for w in facts.principals() if w.roles == {ADMIN} and w.organisation_id == org)


def principal(facts: Facts, role: str) -> Who:
    org = facts.organisations[0].id
    return next(
        w
        for w in facts.principals()
        if role in w.roles and (w.organisation_id == org or role == SUPPORT)
    )


@asynccontextmanager
async def app_on(
    backend: Backend, *, compiled_reads: bool = True
) -> AsyncIterator[tuple[Api, Services]]:
    """The app with room for node(id:) of 50 ids in one operation (the fragment has aliases)."""
    services = Services.build(
        make_settings(
            backend.url,
            max_aliases=1_000,
            max_tokens=20_000,
            max_cost=10_000_000,
            compiled_reads=compiled_reads,
        )
    )
    try:
        transport = httpx.ASGITransport(app=create_app(services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://caseload.test") as c:
            yield Api(c, services.settings), services
    finally:
        await services.aclose()


async def measure(services: Services, request: Awaitable[Result]) -> tuple[int, list[str], Result]:
    """Statements run while `request` (not yet awaited) is answered."""
    with counting(services.engine) as statements:
        result = await request
    return len(statements), [s.split("\n")[0][:100] for s in statements], result


# --- Reads ---------------------------------------------------------------------------------

LEARNERS = """query($first: Int!) { learners(first: $first) { totalCount
  edges { cursor node { id name initials email location { name } department { name }
    records { id programme status
      assignments { role assignedAt user { name initials avatarUrl caseloadCount roles }
                    assignedBy { name } }
      evidence { title status decidedBy { name } } }
    allocations { expiresAt assessor { name } allocatedBy { name } }
    assessors { name initials }
    evidence { title } } }
  pageInfo { hasNextPage endCursor } } }"""

RECORDS = """query($first: Int!) { apprenticeRecords(first: $first) { totalCount
  edges { node { id programme status
    learner { name location { name } department { name } }
    assignments { role user { name caseloadCount roles } }
    evidence { title status decidedBy { name } } } }
  pageInfo { hasNextPage endCursor } } }"""

STAFF = """query($first: Int!) { staff(first: $first) { totalCount
  edges { node { id name initials avatarUrl caseloadCount roles } }
  pageInfo { hasNextPage endCursor } } }"""

ACCESS = """query($first: Int!) { learners(first: $first) {
  edges { node { id access { user { name } role reason expiresAt } } } } }"""

READS = {"learners": LEARNERS, "apprenticeRecords": RECORDS, "staff": STAFF}


@pytest.mark.parametrize("field", list(READS))
async def test_a_page_costs_the_same_for_5_and_50_items(backend: Backend, field: str) -> None:
    await backend.clear()
    facts = await build(backend.engine, scaled_world(60))
    async with app_on(backend) as (api, services):
        call = caller_for(api, facts, admin(facts))
        # A caller seen before on both sizes: the compiled path signs a new one in by a
        # statement of its own, then within its read's statement.
        (await call(READS[field], first=SIZES[0])).ok()
        counts: dict[int, int] = {}
        shown: dict[int, list[str]] = {}
        for size in SIZES:
            counts[size], shown[size], result = await measure(
                services, call(READS[field], first=size)
            )
            assert len(result.ok()[field]["edges"]) == size
    assert counts[5] == counts[50], (counts, shown[50])
    assert counts[50] <= READ_BUDGET, (counts, shown[50])


async def test_learner_access_costs_the_same_for_5_and_50_learners(backend: Backend) -> None:
    """Issue 7, defect 4: `Learner.access` must be batched, a constant cost per page."""
    await backend.clear()
    facts = await build(backend.engine, scaled_world(60))
    async with app_on(backend) as (api, services):
        call = caller_for(api, facts, admin(facts))
        counts = {}
        for size in SIZES:
            counts[size], _, result = await measure(services, call(ACCESS, first=size))
            assert len(result.ok()["learners"]["edges"]) == size
    assert counts[5] == counts[50], counts


async def test_node_costs_the_same_for_5_and_50_ids(backend: Backend) -> None:
    await backend.clear()
    facts = await build(backend.engine, scaled_world(60))

    def group(learner: int) -> list[str]:
        """A learner, one of its records, that record's assignment and evidence, and the
        learner's allocation: five ids of five types, hanging together."""
        record = next(r.id for r in facts.records if r.learner_id == learner)
        assignment = next(a.id for a in facts.assignments if a.record_id == record)
        evidence = next(e.id for e in facts.evidence if e.record_id == record)
        allocation = next(a.id for a in facts.allocations if a.learner_id == learner)
        return [
            gid("Learner", learner),
            gid("ApprenticeRecord", record),
            gid("Assignment", assignment),
            gid("Allocation", allocation),
            gid("Evidence", evidence),
        ]

    allocated = {a.learner_id for a in facts.allocations}
    learners = [lf.id for lf in facts.learners[1:] if lf.id in allocated]
    # The standard executor's batching (the compiled path answers `node` in one statement, as
    # far as its planning budget goes: 5 ids of the fragment, not 50).
    async with app_on(backend, compiled_reads=False) as (api, services):
        call = caller_for(api, facts, admin(facts))
        counts: dict[int, int] = {}
        shown: dict[int, list[str]] = {}
        for size in SIZES:
            # `size` ids in groups of five, so that 5 and 50 ids have the same shape
            chosen = [i for learner in learners[: size // 5] for i in group(learner)]
            fields = " ".join(f"a{k}: node(id: $i{k}) {{ ...N }}" for k in range(size))
            definitions = ", ".join(f"$i{k}: ID!" for k in range(size))
            query = f"query({definitions}) {{ {fields} }}{NODE_FRAGMENT}"
            variables = {f"i{k}": v for k, v in enumerate(chosen)}
            counts[size], shown[size], result = await measure(services, call(query, **variables))
            assert all(v is not None for v in result.ok().values())
    assert counts[5] == counts[50], (counts, shown[5], shown[50])


# --- Mutations -------------------------------------------------------------------------------

Scenario = Callable[[Facts], tuple[str, str, dict[str, Any]]]  # (role, mutation, variables)


def target_learner(facts: Facts) -> int:
    return facts.learners[0].id


def target_record(facts: Facts) -> int:
    return next(r.id for r in facts.records if r.learner_id == target_learner(facts))


def n_of(facts: Facts) -> int:
    return len(facts.organisations) - 1


MUTATIONS: dict[str, Scenario] = {
    "assignRecords (n records)": lambda f: (
        ADMIN,
        """mutation($u: ID!, $r: [ID!]!) { assignRecords(input: {assigneeId: $u, recordIds: $r})
          { __typename ... on RecordsAssigned { unchanged assignments { id role
            user { name caseloadCount } record { programme learner { name location { name } } }
                } } } }""",
        {
            "u": gid("User", max(m.user_id for m in f.memberships if ASSESSOR in m.roles)),
            "r": [gid("ApprenticeRecord", r.id) for r in f.records[: n_of(f)]],
        },
    ),
    "unassignRecords (n records)": lambda f: (
        SENIOR,
        """mutation($r: [ID!]!) { unassignRecords(input: {recordIds: $r, role: ASSESSOR})
          { __typename ... on RecordsUnassigned { ended { id endedAt user { name }
            record { learner { name } } } } } }""",
        {"r": [gid("ApprenticeRecord", r.id) for r in f.records[: n_of(f)]]},
    ),
    "assignTrainingCoordinator (n past coordinators)": lambda f: (
        ADMIN,
        """mutation($r: ID!, $u: ID!) { assignTrainingCoordinator(input: {recordId: $r,
            coordinatorId: $u})
          { __typename ... on TrainingCoordinatorAssigned { assignment { user { name } }
            replaced { user { name } } } } }""",
        {
            "r": gid("ApprenticeRecord", target_record(f)),
            "u": gid("User", max(m.user_id for m in f.memberships if COORDINATOR in m.roles)),
        },
    ),
    "allocateAssessor (n past allocations)": lambda f: (
        MANAGER,
        """mutation($l: ID!, $a: ID!) { allocateAssessor(input: {learnerId: $l, assessorId: $a})
          { __typename ... on AssessorAllocated { allocation { learner { name allocations { id } }
            assessor { name } allocatedBy { name } } } } }""",
        {
            "l": gid("Learner", target_learner(f)),
            "a": gid("User", max(u.id for u in f.users.values() if u.kind == "EXTERNAL_ASSESSOR")),
        },
    ),
    "deallocateAssessor (n past allocations)": lambda f: (
        ADMIN,
        """mutation($l: ID!, $a: ID!) { deallocateAssessor(input: {learnerId: $l, assessorId: $a})
          { __typename ... on AssessorDeallocated { allocation { endedAt learner { name } } } }
              }""",
        {
            "l": gid("Learner", target_learner(f)),
            "a": gid("User", min(u.id for u in f.users.values() if u.kind == "EXTERNAL_ASSESSOR")),
        },
    ),
    "submitEvidence (n pieces on the record)": lambda f: (
        ADMIN,
        """mutation($r: ID!) { submitEvidence(input: {recordId: $r, title: "Observation"})
          { __typename ... on EvidenceSubmitted { evidence { title record { evidence { id }
            learner { name } } } } } }""",
        {"r": gid("ApprenticeRecord", target_record(f))},
    ),
    "signOffEvidence (n pieces on the record)": lambda f: (
        SENIOR,
        """mutation($e: ID!) { signOffEvidence(input: {evidenceId: $e, decision: SIGN_OFF})
          { __typename ... on EvidenceDecided { evidence { status decidedBy { name }
            record { evidence { id } } } } } }""",
        {"e": gid("Evidence", next(e.id for e in f.evidence if e.record_id == target_record(f)))},
    ),
    "createLearner (n learners, n units)": lambda f: (
        ADMIN,
        """mutation($l: ID) { createLearner(input: {name: "New Person", email:
            "new@example.org", locationId: $l})
          { __typename ... on LearnerCreated { learner { name location { name } records { id }
              } } } }""",
        {"l": gid("Location", f.organisations[0].locations[-1])},
    ),
    "createApprenticeRecord (n records of the learner)": lambda f: (
        ADMIN,
        """mutation($l: ID!) { createApprenticeRecord(input: {learnerId: $l, programme: "New"})
          { __typename ... on ApprenticeRecordCreated { record { learner { records { id } } } }
              } }""",
        {"l": gid("Learner", target_learner(f))},
    ),
    "createStaffMember (n staff, n units)": lambda f: (
        ADMIN,
        """mutation($d: ID) { createStaffMember(input: {name: "New Staff", email:
            "staff@example.org",
            roles: [ASSESSOR, MANAGER], departmentId: $d})
          { __typename ... on StaffMemberCreated { user { name roles caseloadCount } } } }""",
        {"d": gid("Department", f.organisations[0].departments[-1])},
    ),
    "createLocation (n locations)": lambda f: (
        ADMIN,
        """mutation { createLocation(input: {name: "New Site"})
          { __typename ... on LocationCreated { location { name } } } }""",
        {},
    ),
    "createDepartment (n departments)": lambda f: (
        SUPPORT,
        """mutation($o: ID) { createDepartment(input: {organisationId: $o, name: "New Team"})
          { __typename ... on DepartmentCreated { department { name } } } }""",
        {"o": gid("Organisation", f.organisations[0].id)},
    ),
    "createOrganisation (n organisations)": lambda f: (
        SUPPORT,
        """mutation { createOrganisation(input: {name: "New", slug: "new-org"})
          { __typename ... on OrganisationCreated { organisation { name locations { id } } } } }""",
        {},
    ),
    "updateExternalAssessor (n external assessors)": lambda f: (
        SUPPORT,
        """mutation($a: ID!) { updateExternalAssessor(input: {userId: $a, name: "Renamed",
            email: "renamed@example.org", avatarUrl: "https://pictures.example/r.jpg"})
          { __typename ... on ExternalAssessorUpdated { assessor { name email avatarUrl } } } }""",
        {"a": gid("User", min(u.id for u in f.users.values() if u.kind == "EXTERNAL_ASSESSOR"))},
    ),
    "createExternalAssessor (n external assessors)": lambda f: (
        SUPPORT,
        """mutation { createExternalAssessor(input: {name: "New", email: "ext@example.org"})
          { __typename ... on ExternalAssessorCreated { assessor { name roles } } } }""",
        {},
    ),
}


def licences_of_course(facts: Facts, course: int, status: str) -> list[str]:
    return [
        gid("Licence", x.id)
        for x in facts.licences
        if x.course_id == facts.courses[course] and x.status.value == status
    ]


def live_rule(facts: Facts) -> str:
    return gid("AutoAllocationRule", next(r.id for r in facts.rules if not r.deleted))


MUTATIONS |= {
    "updateLearner (n learners, n units)": lambda f: (
        ADMIN,
        """mutation($l: ID!, $at: ID) { updateLearner(input: {learnerId: $l, name: "Renamed",
            locationId: $at})
          { __typename ... on LearnerUpdated { learner { name location { name } records { id }
            licences { course { title } } } } } }""",
        {
            "l": gid("Learner", target_learner(f)),
            "at": gid("Location", f.organisations[0].locations[-1]),
        },
    ),
    "importLearners (n rows)": lambda f: (
        ADMIN,
        """mutation($rows: [CreateLearnerInput!]!) { importLearners(input: {learners: $rows})
          { __typename ... on LearnersImported { licencesIssued learners { name location { name }
            licences { course { title } } } } } }""",
        {
            "rows": [
                {
                    "name": f"Imported {k}",
                    "email": f"imported{k}@example.org",
                    "locationId": gid("Location", f.organisations[0].locations[k % n_of(f)]),
                }
                for k in range(n_of(f))
            ]
        },
    ),
    "updateStaffMember (n staff, n units)": lambda f: (
        ADMIN,
        """mutation($u: ID!, $at: ID) { updateStaffMember(input: {userId: $u, name: "Renamed",
            roles: [ASSESSOR, MANAGER], locationId: $at})
          { __typename ... on StaffMemberUpdated { user { name roles caseloadCount } } } }""",
        {
            "u": gid("User", min(m.user_id for m in f.memberships if ASSESSOR in m.roles)),
            "at": gid("Location", f.organisations[0].locations[-1]),
        },
    ),
    "deactivateStaffMember (n staff)": lambda f: (
        ADMIN,
        """mutation($u: ID!) { deactivateStaffMember(input: {userId: $u})
          { __typename ... on StaffMemberDeactivated { endedAssignments user { name } } } }""",
        {"u": gid("User", min(m.user_id for m in f.memberships if ASSESSOR in m.roles))},
    ),
    "archiveApprenticeRecord (n records of the learner)": lambda f: (
        ADMIN,
        """mutation($r: ID!) { archiveApprenticeRecord(input: {recordId: $r})
          { __typename ... on ApprenticeRecordArchived { record { status
            learner { records { id } } assignments { user { name } } } } } }""",
        {"r": gid("ApprenticeRecord", target_record(f))},
    ),
    "restoreApprenticeRecord (n records of the learner)": lambda f: (
        ADMIN,
        """mutation($r: ID!) { restoreApprenticeRecord(input: {recordId: $r})
          { __typename ... on ApprenticeRecordRestored { record { status
            learner { records { id } } } } } }""",
        {"r": gid("ApprenticeRecord", next(r.id for r in f.records if not r.live))},
    ),
    "allocateLicences (n learners)": lambda f: (
        ADMIN,
        """mutation($c: ID!, $l: [ID!]!) { allocateLicences(input: {courseId: $c, learnerIds: $l})
          { __typename ... on LicencesAllocated { pool { seatsUsed }
            licences { learner { name } course { title } } } } }""",
        {
            "c": gid("Course", f.courses[0]),
            "l": [gid("Learner", lf.id) for lf in f.learners[1 : 1 + n_of(f)]],
        },
    ),
    "recallLicences (n licences)": lambda f: (
        ADMIN,
        """mutation($x: [ID!]!) { recallLicences(input: {licenceIds: $x})
          { __typename ... on LicencesRecalled { pool { seatsUsed }
            licences { status learner { name } course { title } } } } }""",
        {"x": licences_of_course(f, 1, "ACTIVE")[: n_of(f)]},
    ),
    "markLicenceLaunched (n licences of the learner)": lambda f: (
        ADMIN,
        """mutation($x: ID!) { markLicenceLaunched(input: {licenceId: $x})
          { __typename ... on LicenceLaunched { licence { launchedAt course { title }
            learner { licences { id } } } } } }""",
        {"x": licences_of_course(f, 1, "ACTIVE")[0]},
    ),
    "markLicenceCompleted (n licences of the learner)": lambda f: (
        ADMIN,
        """mutation($x: ID!) { markLicenceCompleted(input: {licenceId: $x})
          { __typename ... on LicenceCompleted { unchanged licence { status completedAt
            course { title } learner { licences { id status } } } } } }""",
        {"x": licences_of_course(f, 1, "ACTIVE")[0]},
    ),
    "createAutoAllocationRule (n learners reached, n rules)": lambda f: (
        ADMIN,
        """mutation($c: ID!) { createAutoAllocationRule(input: {courseId: $c,
            scope: ENTIRE_COMPANY, applyToExisting: true})
          { __typename ... on AutoAllocationRuleCreated { licencesIssued
            rule { scope course { title } } } } }""",
        {"c": gid("Course", f.courses[2])},  # its rule was deleted: this one is not a copy
    ),
    "previewAutoAllocationRule (n learners reached)": lambda f: (
        ADMIN,
        """mutation($c: ID!) { previewAutoAllocationRule(input: {courseId: $c,
            scope: ENTIRE_COMPANY, applyToExisting: true})
          { __typename ... on RulePreview { count seatsAvailable
            learners(first: 50) { edges { node { name licences { id } } } } } } }""",
        {"c": gid("Course", f.courses[2])},
    ),
    "deleteAutoAllocationRule (n rules)": lambda f: (
        ADMIN,
        """mutation($g: ID!) { deleteAutoAllocationRule(input: {ruleId: $g})
          { __typename ... on AutoAllocationRuleDeleted { id } } }""",
        {"g": live_rule(f)},
    ),
    "createApiKey (n keys)": lambda f: (
        SUPER_ADMIN,
        """mutation { createApiKey(input: {name: "Feed", roles: [ADMIN, MANAGER]})
          { __typename ... on ApiKeyCreated { apiKey { name roles createdBy { name } } } } }""",
        {},
    ),
    "revokeApiKey (n keys)": lambda f: (
        SUPER_ADMIN,
        """mutation($k: ID!) { revokeApiKey(input: {apiKeyId: $k})
          { __typename ... on ApiKeyRevoked { apiKey { revokedAt createdBy { name } } } } }""",
        {"k": gid("ApiKey", next(k.id for k in f.api_keys if not k.revoked))},
    ),
    "createWebhookEndpoint (an endpoint per organisation)": lambda f: (
        SUPER_ADMIN,
        """mutation { createWebhookEndpoint(input: {url: "https://93.184.216.34/hooks",
            events: [LEARNER_CREATED]})
          { __typename ... on WebhookEndpointCreated {
            endpoint { url events createdBy { name } } } } }""",
        {},
    ),
    "updateWebhookEndpoint (an endpoint per organisation)": lambda f: (
        SUPER_ADMIN,
        """mutation($w: ID!) { updateWebhookEndpoint(input: {webhookEndpointId: $w,
            description: "MIS"})
          { __typename ... on WebhookEndpointUpdated { endpoint { description } } } }""",
        {"w": gid("WebhookEndpoint", own_webhook(f).endpoint_id)},
    ),
    "deleteWebhookEndpoint (its deliveries)": lambda f: (
        SUPER_ADMIN,
        """mutation($w: ID!) { deleteWebhookEndpoint(input: {webhookEndpointId: $w})
          { __typename ... on WebhookEndpointDeleted { webhookEndpointId } } }""",
        {"w": gid("WebhookEndpoint", own_webhook(f).endpoint_id)},
    ),
    "rotateWebhookSecret (an endpoint per organisation)": lambda f: (
        SUPER_ADMIN,
        """mutation($w: ID!) { rotateWebhookSecret(input: {webhookEndpointId: $w})
          { __typename ... on WebhookSecretRotated { secret endpoint { url } } } }""",
        {"w": gid("WebhookEndpoint", own_webhook(f).endpoint_id)},
    ),
    "redeliverWebhook (its endpoint's deliveries)": lambda f: (
        SUPER_ADMIN,
        """mutation($d: ID!) { redeliverWebhook(input: {deliveryId: $d})
          { __typename ... on WebhookRedelivered { delivery { status endpoint { url } } } } }""",
        {"d": gid("WebhookDelivery", own_webhook(f).id)},
    ),
    "createCourse (n courses in use)": lambda f: (
        SUPPORT,
        """mutation { createCourse(input: {title: "New Course", code: "NEW-1"})
          { __typename ... on CourseCreated { course { title pool { seatsTotal } } } } }""",
        {},
    ),
    "setLicencePool (n licences in the pool)": lambda f: (
        SUPPORT,
        """mutation($o: ID!, $c: ID!) { setLicencePool(input: {organisationId: $o, courseId: $c,
            seatsTotal: 900})
          { __typename ... on LicencePoolSet { pool { seatsTotal seatsUsed } } } }""",
        {"o": gid("Organisation", f.organisations[0].id), "c": gid("Course", f.courses[1])},
    ),
    "setOrganisationIdentityProvider (n organisations)": lambda f: (
        SUPPORT,
        """mutation($o: ID!) { setOrganisationIdentityProvider(input: {organisationId: $o,
            issuer: "https://login.example.org/tenant", audience: "caseload"})
          { __typename ... on OrganisationIdentityProviderSet { issuer } } }""",
        {"o": gid("Organisation", f.organisations[0].id)},
    ),
    "removeOrganisationIdentityProvider (n organisations)": lambda f: (
        SUPPORT,
        """mutation($o: ID!) { removeOrganisationIdentityProvider(input: {organisationId: $o})
          { __typename ... on OrganisationIdentityProviderRemoved { organisation { name } } } }""",
        {"o": gid("Organisation", f.organisations[0].id)},
    ),
}


def own_webhook(f: Facts) -> WebhookFact:
    """A delivered delivery of organisation 0's endpoint (its super admin's)."""
    return next(
        d
        for d in f.webhook_deliveries
        if d.organisation_id == f.organisations[0].id and not d.pending
    )


def test_every_mutation_has_a_scenario() -> None:
    named = {name.split(" ")[0] for name in MUTATIONS}
    assert named == set(schema._schema.mutation_type.fields)


@pytest.mark.parametrize("mutation", list(MUTATIONS))
async def test_a_mutation_costs_the_same_for_5_and_50_items(
    backend: Backend, mutation: str
) -> None:
    counts: dict[int, int] = {}
    shown: dict[int, list[str]] = {}
    for n in SIZES:
        await backend.clear()
        facts = await build(backend.engine, scaled_world(n))
        role, query, variables = MUTATIONS[mutation](facts)
        async with app_on(backend) as (api, services):
            call = caller_for(api, facts, principal(facts, role))
            counts[n], shown[n], result = await measure(services, call(query, **variables))
        (payload,) = result.ok().values()
        assert not payload["__typename"].endswith("Error"), (n, payload)
    assert counts[5] == counts[50], (counts, shown[5], shown[50])


# The N+1 guard on the learners page of the README, on whichever read path answers it.
PAGE = """query($first: Int!) {
  learners(first: $first) {
    totalCount
    edges { cursor node {
      id name initials location { name } department { name }
      records { id programme status
        assignments { role assignedAt user { name initials avatarUrl } assignedBy { name } }
        evidence { title status }
      }
      allocations { assessor { name } }
    } }
    pageInfo { hasNextPage endCursor }
  }
}"""

# The standard executor: sign-in (user, membership, roles) + learners page + count + records
# + assignments + users + locations + departments + evidence + allocations + their assessors.
# The compiled path: the sign-in and the answer in one statement for a caller seen before,
# two the first time.
PAGE_BUDGET = {False: 11, True: 1}


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "executor"])
async def test_learner_page_statement_count_does_not_grow(
    backend: Backend, world: World, compiled: bool
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessors = [await world.staff(org, "ASSESSOR") for _ in range(3)]
    locations = [await world.location(org) for _ in range(2)]
    for n in range(60):
        learner = await world.learner(org, location=locations[n % 2])
        for r in range(2):
            record = await world.record(learner)
            await world.assign(record, assessors[(n + r) % 3])
            await world.assign(
                record, assessors[(n + r + 1) % 3], AssignmentRole.TRAINING_COORDINATOR
            )
            await world.evidence(record)
    services = Services.build(make_settings(backend.url, compiled_reads=compiled))
    try:
        transport = httpx.ASGITransport(app=create_app(services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://caseload.test") as c:
            call = Api(c, services.settings).as_(admin, org)
            with counting(services.engine) as first:
                (await call(PAGE, first=1)).ok()
            assert len(first) == 2 if compiled else len(first) <= PAGE_BUDGET[False], first
            counts = {}
            for size in (5, 50):
                with counting(services.engine) as statements:
                    data = (await call(PAGE, first=size)).ok()
                assert len(data["learners"]["edges"]) == size
                assert all(len(e["node"]["records"]) == 2 for e in data["learners"]["edges"])
                counts[size] = len(statements)
    finally:
        await services.aclose()
    assert counts[5] == counts[50], counts
    assert counts[50] <= PAGE_BUDGET[compiled], (
        counts,
        [s.split("\n")[0][:90] for s in statements],
    )


# The client's screens that show one object by id (tests/screens.graphql): the standard
# executor's statements (sign-in, the object, then one batch per nested level), and the
# compiled path's, for a caller seen before (the sign-in and the answer in one statement).
OBJECT_SCREENS = {"LearnerProfile": {False: 10, True: 1}, "RecordHistory": {False: 4, True: 1}}


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "executor"])
@pytest.mark.parametrize("screen", sorted(OBJECT_SCREENS))
async def test_a_screen_of_one_object_costs_one_statement_compiled(
    backend: Backend, world: World, compiled: bool, screen: str
) -> None:
    from tests.api.test_cost import screens

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    location = await world.location(org)
    department = await world.department(org)
    assessors = [await world.staff(org, "ASSESSOR") for _ in range(3)]
    externals = [await world.external_assessor() for _ in range(2)]
    learner = await world.learner(org, location=location, department=department)
    records = [await world.record(learner) for _ in range(3)]
    for n, record in enumerate(records):
        await world.assign(record, assessors[n % 3])
        await world.assign(record, assessors[(n + 1) % 3], ended=True)
        await world.assign(record, assessors[(n + 2) % 3], AssignmentRole.TRAINING_COORDINATOR)
    for external in externals:
        await world.allocate(learner, external)
        await world.allocate(learner, external, ended=True)
    target = gid("Learner", learner.id) if screen == "LearnerProfile" else None
    target = target or gid("ApprenticeRecord", records[0].id)
    services = Services.build(make_settings(backend.url, compiled_reads=compiled))
    try:
        transport = httpx.ASGITransport(app=create_app(services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://caseload.test") as c:
            call = Api(c, services.settings).as_(admin, org)
            reads = c._transport.app.state.compiled_reads  # type: ignore[attr-defined]
            first = (await call(screens()[screen], id=target)).ok()
            answered = reads.answered if reads is not None else 0
            with counting(services.engine) as statements:
                again = (await call(screens()[screen], id=target)).ok()
            compiled_now = reads is not None and reads.answered > answered
    finally:
        await services.aclose()
    (shown,) = again.values()
    assert shown is not None and again == first
    assert compiled_now == compiled
    assert len(statements) <= OBJECT_SCREENS[screen][compiled], [
        s.split("\n")[0][:90] for s in statements
    ]

"""Granted and denied, for every operation and every role (DESIGN.md's Actions table).

One principal per role (SUPER_ADMIN, ADMIN, SENIOR_ASSESSOR, a MANAGER of the target's
team, the target record's ASSESSOR and TRAINING_COORDINATOR, the LEARNER themself, the
EXTERNAL_ASSESSOR allocated to them, SUPPORT, and an API key with role ADMIN) performs every
mutation on a target it can see:
- a role the Actions table names is granted: the success type, and an audit event;
- any other role is refused with a top-level FORBIDDEN, and no table changes;
- a role that holds the action, aimed at a target of another organisation, gets NOT_FOUND
  (typed, or the bulk item's code), and no table changes.
Reads: `node(id:)` of every Node type, for every role, on its own organisation's object and
another organisation's; `Learner.access` for every role; malformed ids answer null.

EXPECTED is written from DESIGN.md's Actions table, not from policy.csv.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from graphql import FieldNode, Visitor, parse, visit
from sqlalchemy import insert

from db.base import utcnow
from db.models import AssignmentRole, EvidenceStatus, IdentityProvider, LicenceStatus
from schema import schema
from schema.results import AUDITS
from server.settings import Settings
from tests.authz.checks import NODE_FRAGMENT, caller_for, outcome_selection
from tests.authz.model import ACTION_ROLES, Model
from tests.authz.world import (
    ADMIN,
    ASSESSOR,
    COORDINATOR,
    EXTERNAL_ASSESSOR,
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
    Who,
    WorldSpec,
    all_ids,
    build,
)
from tests.conftest import Backend
from tests.helpers import Api, Result, assert_denied, audit_actions, gid, row_counts

KEY = "API_KEY"  # an API key holding ADMIN
PRINCIPALS: tuple[str, ...] = (SUPER_ADMIN, ADMIN, SENIOR, MANAGER, ASSESSOR, COORDINATOR)
PRINCIPALS += (LEARNER, EXTERNAL_ASSESSOR, SUPPORT, KEY)

# DESIGN.md, Actions, as the reference model reads it: who may perform each operation on a
# target in their scope; an API key (roles ADMIN) wherever an admin may, SUPER_ADMIN's alone
# excepted.
EXPECTED: dict[str, frozenset[str]] = {
    name: roles | ({KEY} if ADMIN in roles else frozenset())
    for name, roles in ACTION_ROLES.items()
    if name in schema._schema.mutation_type.fields
}
# Audit events of a granted operation, where not one: a preview changes nothing; a new
# learner in organisation 0 also gets a licence from its rule, recorded as the rule acting.
AUDIT_EVENTS = {"previewAutoAllocationRule": 0, "createLearner": 2, "importLearners": 2}
# (the event each writes is the one its field declares: schema.results.AUDITS)
# Reads table, "who can see this learner": admins of the organisation and the learner.
READS_ACCESS = frozenset({SUPER_ADMIN, ADMIN, LEARNER, KEY})


def permissions_world() -> WorldSpec:
    """Organisation 0 holds the targets; organisation 1 holds the same, out of reach."""
    people = [
        (0, 0, {SUPER_ADMIN}, None),
        (1, 0, {ADMIN}, None),
        (2, 0, {SENIOR}, None),
        (3, 0, {MANAGER}, 0),
        (4, 0, {ASSESSOR}, None),
        (5, 0, {COORDINATOR}, None),
        (6, 0, {LEARNER}, None),
        (7, 0, {ASSESSOR}, None),  # a second assessor, to assign
        (8, 0, {COORDINATOR}, None),  # a second coordinator, to assign
        (9, 1, {ADMIN}, None),
        (10, 1, {ASSESSOR}, None),
    ]
    a, tc = AssignmentRole.ASSESSOR, AssignmentRole.TRAINING_COORDINATOR
    return WorldSpec(
        units=((1, 1), (1, 1)),
        persons=tuple(f"Person {n}" for n in range(11)),
        memberships=tuple(MembershipSpec(p, o, frozenset(r), loc, None) for p, o, r, loc in people),
        learners=(
            LearnerSpec(0, 6, "Own Learner", 0, 0),
            LearnerSpec(1, None, "Far Learner", 0, 0),
            LearnerSpec(0, None, "Outside Team", None, 0),
        ),
        records=(
            RecordSpec(0, "Adult Care Level 2"),
            RecordSpec(1, "Adult Care Level 2"),
            RecordSpec(2, "Adult Care Level 2"),
            RecordSpec(0, "Team Leading Level 2", archived=True),
            RecordSpec(1, "Team Leading Level 2", archived=True),
        ),
        assignments=(
            AssignmentSpec(0, 4, a, False),
            AssignmentSpec(0, 5, tc, False),
            AssignmentSpec(1, 10, a, False),
        ),
        externals=("Allocated Assessor", "Free Assessor"),
        allocations=(AllocationSpec(0, 0, AllocationState.ACTIVE),),
        evidence=(
            EvidenceSpec(0, EvidenceStatus.SUBMITTED, None),
            EvidenceSpec(1, EvidenceStatus.SUBMITTED, None),
            EvidenceSpec(2, EvidenceStatus.SUBMITTED, None),
        ),
        supports=("Support Person",),
        api_keys=(
            ApiKeySpec(0, frozenset({ADMIN}), False),
            ApiKeySpec(1, frozenset({ADMIN}), False),
        ),
        audit=(AuditSpec(0, ("person", 1)), AuditSpec(1, ("person", 9))),
        pools=((0, 0), (0, 1), (1, 0), (1, 1)),
        rules=(RuleSpec(0, 0, False), RuleSpec(1, 0, False)),
        licences=(
            LicenceSpec(0, 1, LicenceStatus.ACTIVE, False, None),
            LicenceSpec(1, 1, LicenceStatus.ACTIVE, False, None),
        ),
    )


@dataclass(frozen=True)
class Targets:
    """Ids of one organisation's objects (`near`: organisation 0; `far`: organisation 1)."""

    organisation: str
    learner: str
    record: str
    evidence: str
    assessor: str  # a second assessor of the organisation (assignee)
    coordinator: str
    current_assessor: str
    external: str  # allocated to the learner
    free_external: str
    archived_record: str
    course: str  # with a pool here; the learner holds no licence for it
    ruleless_course: str  # with a pool here and no rule in force (a rule for it is no copy)
    licence: str  # the learner's, active and never launched
    rule: str
    api_key: str
    webhook_endpoint: str
    webhook_delivery: str  # delivered (redelivering it sends it again)


def targets(facts: Facts, org_index: int) -> Targets:
    org = facts.organisations[org_index].id
    learner = next(lf for lf in facts.learners if lf.organisation_id == org)
    record = next(r for r in facts.records if r.learner_id == learner.id)
    evidence = next(e for e in facts.evidence if e.record_id == record.id)
    members = {
        (m.user_id, r) for m in facts.memberships if m.organisation_id == org for r in m.roles
    }
    assessors = sorted(u for u, r in members if r == ASSESSOR)
    coordinators = sorted(u for u, r in members if r == COORDINATOR) or [0]
    externals = sorted(u.id for u in facts.users.values() if u.kind == EXTERNAL_ASSESSOR)
    archived = next(r for r in facts.records if r.learner_id == learner.id and not r.live)
    licence = next(x for x in facts.licences if x.learner_id == learner.id)
    rule = next(r for r in facts.rules if r.organisation_id == org)
    key = next(k for k in facts.api_keys if k.organisation_id == org)
    hook = next(w for w in facts.webhook_endpoints if w.organisation_id == org)
    sent = next(d for d in facts.webhook_deliveries if d.organisation_id == org and not d.pending)
    return Targets(
        organisation=gid("Organisation", org),
        learner=gid("Learner", learner.id),
        record=gid("ApprenticeRecord", record.id),
        evidence=gid("Evidence", evidence.id),
        assessor=gid("User", assessors[-1]),
        coordinator=gid("User", coordinators[-1]),
        current_assessor=gid("User", assessors[0]),
        external=gid("User", externals[0]),
        free_external=gid("User", externals[1]),
        archived_record=gid("ApprenticeRecord", archived.id),
        course=gid("Course", facts.courses[0]),
        ruleless_course=gid("Course", facts.courses[1]),
        licence=gid("Licence", licence.id),
        rule=gid("AutoAllocationRule", rule.id),
        api_key=gid("ApiKey", key.id),
        webhook_endpoint=gid("WebhookEndpoint", hook.id),
        webhook_delivery=gid("WebhookDelivery", sent.id),
    )


# operation → (mutation, success type, variables from the targets, whether it is bulk)
OPERATIONS: dict[str, tuple[str, str, Callable[[Targets], dict[str, Any]], bool]] = {
    "createOrganisation": (
        'mutation { createOrganisation(input: {name: "New", slug: "new-org"}) %s }',
        "OrganisationCreated",
        lambda t: {},
        False,
    ),
    "createExternalAssessor": (
        'mutation { createExternalAssessor(input: {name: "Jo", email: "jo@new.example"}) %s }',
        "ExternalAssessorCreated",
        lambda t: {},
        False,
    ),
    "updateExternalAssessor": (
        'mutation($a: ID!) { updateExternalAssessor(input: {userId: $a, name: "Jo Renamed"}) %s }',
        "ExternalAssessorUpdated",
        lambda t: {"a": t.free_external},
        False,
    ),
    "createStaffMember": (
        'mutation($o: ID) { createStaffMember(input: {organisationId: $o, name: "Al", '
        'email: "al@new.example", roles: [ASSESSOR]}) %s }',
        "StaffMemberCreated",
        lambda t: {"o": t.organisation},
        False,
    ),
    "createLocation": (
        'mutation($o: ID) { createLocation(input: {organisationId: $o, name: "Annex"}) %s }',
        "LocationCreated",
        lambda t: {"o": t.organisation},
        False,
    ),
    "createDepartment": (
        'mutation($o: ID) { createDepartment(input: {organisationId: $o, name: "Annex"}) %s }',
        "DepartmentCreated",
        lambda t: {"o": t.organisation},
        False,
    ),
    "createLearner": (
        'mutation { createLearner(input: {name: "New Learner"}) %s }',
        "LearnerCreated",
        lambda t: {},
        False,
    ),
    "createApprenticeRecord": (
        "mutation($l: ID!) { createApprenticeRecord(input: {learnerId: $l, "
        'programme: "Lead Practitioner Level 5"}) %s }',
        "ApprenticeRecordCreated",
        lambda t: {"l": t.learner},
        False,
    ),
    "assignRecords": (
        "mutation($u: ID!, $r: ID!) { assignRecords(input: {assigneeId: $u, recordIds: [$r]}) %s }",
        "RecordsAssigned",
        lambda t: {"u": t.assessor, "r": t.record},
        True,
    ),
    "unassignRecords": (
        "mutation($u: ID, $r: ID!) { unassignRecords(input: {recordIds: [$r], assigneeId: $u}) "
        "%s }",
        "RecordsUnassigned",
        lambda t: {"u": t.current_assessor, "r": t.record},
        True,
    ),
    "assignTrainingCoordinator": (
        "mutation($u: ID!, $r: ID!) { assignTrainingCoordinator(input: {recordId: $r, "
        "coordinatorId: $u}) %s }",
        "TrainingCoordinatorAssigned",
        lambda t: {"u": t.coordinator, "r": t.record},
        False,
    ),
    "allocateAssessor": (
        "mutation($l: ID!, $a: ID!) { allocateAssessor(input: {learnerId: $l, assessorId: $a}) "
        "%s }",
        "AssessorAllocated",
        lambda t: {"l": t.learner, "a": t.free_external},
        False,
    ),
    "deallocateAssessor": (
        "mutation($l: ID!, $a: ID!) { deallocateAssessor(input: {learnerId: $l, "
        "assessorId: $a}) %s }",
        "AssessorDeallocated",
        lambda t: {"l": t.learner, "a": t.external},
        False,
    ),
    "submitEvidence": (
        'mutation($r: ID!) { submitEvidence(input: {recordId: $r, title: "Essay"}) %s }',
        "EvidenceSubmitted",
        lambda t: {"r": t.record},
        False,
    ),
    "signOffEvidence": (
        "mutation($e: ID!) { signOffEvidence(input: {evidenceId: $e, decision: SIGN_OFF}) %s }",
        "EvidenceDecided",
        lambda t: {"e": t.evidence},
        False,
    ),
    "updateLearner": (
        'mutation($l: ID!) { updateLearner(input: {learnerId: $l, name: "Renamed"}) %s }',
        "LearnerUpdated",
        lambda t: {"l": t.learner},
        False,
    ),
    "importLearners": (
        'mutation { importLearners(input: {learners: [{name: "Imported"}]}) %s }',
        "LearnersImported",
        lambda t: {},
        False,
    ),
    "updateStaffMember": (
        'mutation($u: ID!) { updateStaffMember(input: {userId: $u, name: "Renamed"}) %s }',
        "StaffMemberUpdated",
        lambda t: {"u": t.assessor},
        False,
    ),
    "deactivateStaffMember": (
        "mutation($u: ID!) { deactivateStaffMember(input: {userId: $u}) %s }",
        "StaffMemberDeactivated",
        lambda t: {"u": t.assessor},
        False,
    ),
    "archiveApprenticeRecord": (
        "mutation($r: ID!) { archiveApprenticeRecord(input: {recordId: $r}) %s }",
        "ApprenticeRecordArchived",
        lambda t: {"r": t.record},
        False,
    ),
    "restoreApprenticeRecord": (
        "mutation($r: ID!) { restoreApprenticeRecord(input: {recordId: $r}) %s }",
        "ApprenticeRecordRestored",
        lambda t: {"r": t.archived_record},
        False,
    ),
    "allocateLicences": (
        "mutation($c: ID!, $l: ID!) { allocateLicences(input: {courseId: $c, "
        "learnerIds: [$l]}) %s }",
        "LicencesAllocated",
        lambda t: {"c": t.course, "l": t.learner},
        True,
    ),
    "recallLicences": (
        "mutation($x: ID!) { recallLicences(input: {licenceIds: [$x]}) %s }",
        "LicencesRecalled",
        lambda t: {"x": t.licence},
        True,
    ),
    "markLicenceLaunched": (
        "mutation($x: ID!) { markLicenceLaunched(input: {licenceId: $x}) %s }",
        "LicenceLaunched",
        lambda t: {"x": t.licence},
        False,
    ),
    "markLicenceCompleted": (
        "mutation($x: ID!) { markLicenceCompleted(input: {licenceId: $x}) %s }",
        "LicenceCompleted",
        lambda t: {"x": t.licence},
        False,
    ),
    "createAutoAllocationRule": (
        "mutation($c: ID!) { createAutoAllocationRule(input: {courseId: $c, "
        "scope: ENTIRE_COMPANY}) %s }",
        "AutoAllocationRuleCreated",
        lambda t: {"c": t.ruleless_course},
        False,
    ),
    "previewAutoAllocationRule": (
        "mutation($c: ID!) { previewAutoAllocationRule(input: {courseId: $c, "
        "scope: ENTIRE_COMPANY}) %s }",
        "RulePreview",
        lambda t: {"c": t.course},
        False,
    ),
    "deleteAutoAllocationRule": (
        "mutation($g: ID!) { deleteAutoAllocationRule(input: {ruleId: $g}) %s }",
        "AutoAllocationRuleDeleted",
        lambda t: {"g": t.rule},
        False,
    ),
    "createApiKey": (
        'mutation { createApiKey(input: {name: "Feed", roles: [ASSESSOR]}) %s }',
        "ApiKeyCreated",
        lambda t: {},
        False,
    ),
    "revokeApiKey": (
        "mutation($k: ID!) { revokeApiKey(input: {apiKeyId: $k}) %s }",
        "ApiKeyRevoked",
        lambda t: {"k": t.api_key},
        False,
    ),
    "createWebhookEndpoint": (
        'mutation { createWebhookEndpoint(input: {url: "https://93.184.216.34/hooks", '
        "events: [LEARNER_CREATED]}) %s }",
        "WebhookEndpointCreated",
        lambda t: {},
        False,
    ),
    "updateWebhookEndpoint": (
        "mutation($w: ID!) { updateWebhookEndpoint(input: {webhookEndpointId: $w, "
        'description: "MIS"}) %s }',
        "WebhookEndpointUpdated",
        lambda t: {"w": t.webhook_endpoint},
        False,
    ),
    "deleteWebhookEndpoint": (
        "mutation($w: ID!) { deleteWebhookEndpoint(input: {webhookEndpointId: $w}) %s }",
        "WebhookEndpointDeleted",
        lambda t: {"w": t.webhook_endpoint},
        False,
    ),
    "rotateWebhookSecret": (
        "mutation($w: ID!) { rotateWebhookSecret(input: {webhookEndpointId: $w}) %s }",
        "WebhookSecretRotated",
        lambda t: {"w": t.webhook_endpoint},
        False,
    ),
    "redeliverWebhook": (
        "mutation($d: ID!) { redeliverWebhook(input: {deliveryId: $d}) %s }",
        "WebhookRedelivered",
        lambda t: {"d": t.webhook_delivery},
        False,
    ),
    "createCourse": (
        'mutation { createCourse(input: {title: "Infection Control", code: "IC-1"}) %s }',
        "CourseCreated",
        lambda t: {},
        False,
    ),
    "setLicencePool": (
        "mutation($o: ID!, $c: ID!) { setLicencePool(input: {organisationId: $o, "
        "courseId: $c, seatsTotal: 20}) %s }",
        "LicencePoolSet",
        lambda t: {"o": t.organisation, "c": t.course},
        False,
    ),
    "setOrganisationIdentityProvider": (
        "mutation($o: ID!) { setOrganisationIdentityProvider(input: {organisationId: $o, "
        'issuer: "https://login.example.org/tenant", audience: "caseload"}) %s }',
        "OrganisationIdentityProviderSet",
        lambda t: {"o": t.organisation},
        False,
    ),
    "removeOrganisationIdentityProvider": (
        "mutation($o: ID!) { removeOrganisationIdentityProvider(input: {organisationId: $o}) %s }",
        "OrganisationIdentityProviderRemoved",
        lambda t: {"o": t.organisation},
        False,
    ),
}
# The target whose id answers NOT_FOUND when it is another organisation's.
TARGET_VARIABLE = {
    "createStaffMember": "o",
    "createLocation": "o",
    "createDepartment": "o",
    "createApprenticeRecord": "l",
    "assignRecords": "r",
    "unassignRecords": "r",
    "assignTrainingCoordinator": "r",
    "allocateAssessor": "l",
    "deallocateAssessor": "l",
    "submitEvidence": "r",
    "signOffEvidence": "e",
    "updateLearner": "l",
    "updateStaffMember": "u",
    "deactivateStaffMember": "u",
    "archiveApprenticeRecord": "r",
    "restoreApprenticeRecord": "r",
    "allocateLicences": "l",
    "recallLicences": "x",
    "markLicenceLaunched": "x",
    "markLicenceCompleted": "x",
    "deleteAutoAllocationRule": "g",
    "revokeApiKey": "k",
    "updateWebhookEndpoint": "w",
    "deleteWebhookEndpoint": "w",
    "rotateWebhookSecret": "w",
    "redeliverWebhook": "d",
}


def test_every_mutation_is_in_the_table() -> None:
    """A new mutation needs its row in EXPECTED and OPERATIONS."""
    mutations = set(schema._schema.mutation_type.fields)
    assert set(EXPECTED) == mutations
    assert set(OPERATIONS) == mutations


def _aliases(fragment: str) -> int:
    """How many aliased fields a fragment has."""
    found = 0

    class Count(Visitor):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            nonlocal found
            found += node.alias is not None

    visit(parse(fragment), Count())
    return found


def principal(facts: Facts, role: str) -> Who:
    """The world's principal for `role` (organisation 0's, for membership roles)."""
    org = facts.organisations[0].id
    for who in facts.principals():
        if role == KEY and who.kind == "API_KEY":
            return who
        if who.kind == "STAFF" and who.roles == {role} and who.organisation_id == org:
            return who
        if role in (EXTERNAL_ASSESSOR, SUPPORT) and who.kind == role:
            return who
    raise LookupError(role)


async def fresh(backend: Backend, operation: str | None = None) -> Facts:
    await backend.clear()
    facts = await build(backend.engine, permissions_world())
    if operation == "removeOrganisationIdentityProvider":
        # Something to remove: an issuer bound to each organisation.
        async with backend.engine.begin() as connection:
            await connection.execute(
                insert(IdentityProvider),
                [
                    {
                        "organisation_id": org.id,
                        "issuer": f"https://login.example.org/{org.id}",
                        "audience": "caseload",
                        "email_claim": "email",
                        "updated_at": utcnow(),
                    }
                    for org in facts.organisations
                ],
            )
    return facts


def outcome(result: Result, operation: str) -> dict[str, Any] | None:
    if result.status != 200 or result.data is None:
        return None
    payload: dict[str, Any] | None = result.data.get(operation)
    return payload


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_every_role_is_granted_or_denied_as_design_says(
    api: Api, backend: Backend, operation: str
) -> None:
    text, success, variables, bulk = OPERATIONS[operation]
    query = text % outcome_selection(operation)
    problems: list[str] = []
    facts = await fresh(backend, operation)
    for role in PRINCIPALS:
        who = principal(facts, role)
        call = caller_for(api, facts, who)
        near, far = targets(facts, 0), targets(facts, 1)
        if operation in ("createStaffMember", "createLocation", "createDepartment") and (
            role != SUPPORT
        ):
            given = variables(near) | {"o": None}  # staff act in their own organisation
        else:
            given = variables(near)
        before = await row_counts(backend.engine)
        result = await call(query, **given)
        after = await row_counts(backend.engine)
        payload = outcome(result, operation)
        if role in EXPECTED[operation]:
            # then it is granted, and audited
            if payload is None or payload.get("__typename") != success or result.errors:
                problems.append(f"{role}: expected {success}, got {result.body}")
            elif after["audit_events"] != before["audit_events"] + AUDIT_EVENTS.get(operation, 1):
                problems.append(f"{role}: granted without its audit events: {before} → {after}")
            elif (declared := AUDITS[operation]) is not None:
                actions = await audit_actions(backend.engine)
                written = [action for action, *_ in actions[before["audit_events"] :]]
                if declared.value not in written:  # (rules firing write their own too)
                    problems.append(f"{role}: wrote {written}, declared {declared}")
            facts = await fresh(backend, operation)  # the next role starts from the same world
            near, far = targets(facts, 0), targets(facts, 1)
        else:
            # then it is refused as a whole, and nothing changed
            if result.codes != ["FORBIDDEN"] or payload is not None or before != after:
                problems.append(f"{role}: expected FORBIDDEN and no change, got {result.body}")
            continue
        # and aimed at another organisation's target, it does not exist for them
        if operation not in TARGET_VARIABLE or role == SUPPORT:
            continue  # support acts in every organisation
        who = principal(facts, role)
        call = caller_for(api, facts, who)
        name = TARGET_VARIABLE[operation]
        given = variables(near) | {name: variables(far)[name]}
        before = await row_counts(backend.engine)
        result = await call(query, **given)
        payload = outcome(result, operation)
        expected_payload: dict[str, Any] = (
            {
                "__typename": "BulkRejectedError",
                "code": "BULK_REJECTED",
                "items": [{"id": given[name], "code": "NOT_FOUND"}],
            }
            if bulk
            else {"__typename": "NotFoundError", "code": "NOT_FOUND", "id": given[name]}
        )
        if payload != expected_payload or result.errors:
            problems.append(f"{role} on another organisation's target: got {result.body}")
        if await row_counts(backend.engine) != before:
            problems.append(f"{role} on another organisation's target changed the database")
    assert not problems, f"{operation}:\n" + "\n".join(problems)


async def test_an_admin_cannot_make_a_super_admin(api: Api, backend: Backend) -> None:
    """Actions: only SUPPORT or a SUPER_ADMIN grants SUPER_ADMIN."""
    facts = await fresh(backend)
    query = (
        'mutation { createStaffMember(input: {name: "Al", email: "al@new.example", '
        "roles: [SUPER_ADMIN]}) { __typename } }"
    )
    before = await row_counts(backend.engine)
    for role in (ADMIN, KEY):
        result = await caller_for(api, facts, principal(facts, role))(query)
        assert_denied(result, "FORBIDDEN")
    assert await row_counts(backend.engine) == before
    granted = await caller_for(api, facts, principal(facts, SUPER_ADMIN))(query)
    assert granted.ok() == {"createStaffMember": {"__typename": "StaffMemberCreated"}}


async def test_targets_outside_the_scope_do_not_exist(api: Api, backend: Backend) -> None:
    """A learner outside the manager's team, a record not assigned to the assessor or
    coordinator, not the learner's own, not allocated: NOT_FOUND for each, nothing changed."""
    facts = await fresh(backend)
    (outside,) = [lf for lf in facts.learners if lf.name == "Outside Team"]
    (record,) = [r for r in facts.records if r.learner_id == outside.id]
    (evidence,) = [e for e in facts.evidence if e.record_id == record.id]
    external = gid("User", min(u.id for u in facts.users.values() if u.kind == EXTERNAL_ASSESSOR))
    cases = [
        (MANAGER, "allocateAssessor", {"l": gid("Learner", outside.id), "a": external}),
        (ASSESSOR, "signOffEvidence", {"e": gid("Evidence", evidence.id)}),
        (COORDINATOR, "signOffEvidence", {"e": gid("Evidence", evidence.id)}),
        (EXTERNAL_ASSESSOR, "signOffEvidence", {"e": gid("Evidence", evidence.id)}),
        (LEARNER, "submitEvidence", {"r": gid("ApprenticeRecord", record.id)}),
    ]
    before = await row_counts(backend.engine)
    for role, operation, given in cases:
        text, _, _, _ = OPERATIONS[operation]
        result = await caller_for(api, facts, principal(facts, role))(
            text % outcome_selection(operation), **given
        )
        (target,) = [v for k, v in given.items() if k == TARGET_VARIABLE[operation]]
        assert result.ok() == {
            operation: {"__typename": "NotFoundError", "code": "NOT_FOUND", "id": target}
        }, (role, operation, result.body)
    assert await row_counts(backend.engine) == before


@pytest.mark.parametrize("role", PRINCIPALS)
async def test_node_of_every_type_for_every_role(api: Api, backend: Backend, role: str) -> None:
    """Each role reads its own organisation's objects as the Reads table says, and no other
    organisation's; `Learner.access` only where the Reads table lets it."""
    facts = await fresh(backend)
    model = Model(facts)
    who = principal(facts, role)
    call = caller_for(api, facts, who)
    visible = model.visible(who)
    ids = all_ids(facts)
    lookups = [(t, pk) for t, pks in ids.items() for pk in pks]
    fields = " ".join(f"a{k}: node(id: $i{k}) {{ ...N }}" for k in range(len(lookups)))
    definitions = ", ".join(f"$i{k}: ID!" for k in range(len(lookups)))
    # within the API's alias limit: each lookup is an alias, and so is each of the fragment's
    per_request = Settings().max_aliases // (1 + _aliases(NODE_FRAGMENT))
    for start in range(0, len(lookups), per_request):
        batch = lookups[start : start + per_request]
        fields = " ".join(f"a{k}: node(id: $i{k}) {{ ...N }}" for k in range(len(batch)))
        definitions = ", ".join(f"$i{k}: ID!" for k in range(len(batch)))
        result = await call(
            f"query({definitions}) {{ {fields} }}{NODE_FRAGMENT}",
            **{f"i{k}": gid(t, pk) for k, (t, pk) in enumerate(batch)},
        )
        data = result.ok()
        shown = {(t, pk) for k, (t, pk) in enumerate(batch) if data[f"a{k}"] is not None}
        expected = {(t, pk) for t, pk in batch if pk in visible[t]}
        assert shown == expected, (role, sorted(shown - expected), sorted(expected - shown))

    learner = next(lf for lf in facts.learners if lf.organisation_id == facts.organisations[0].id)
    result = await call(
        "query($id: ID!) { learner(id: $id) { access { role reason } } }",
        id=gid("Learner", learner.id),
    )
    if learner.id not in model.learners(who):
        assert result.ok() == {"learner": None}
    elif role in READS_ACCESS:
        assert result.ok()["learner"]["access"], role
    else:
        assert result.codes == ["FORBIDDEN"], result.body
        assert result.data == {"learner": {"access": None}}, result.body


MALFORMED = ["", " ", "not-an-id", gid("Nope", 1), gid("Learner", 0), "TGVhcm5lcjrCsg"]


@pytest.mark.parametrize("value", MALFORMED)
async def test_a_malformed_id_answers_null(api: Api, backend: Backend, value: str) -> None:
    """API.md: a malformed id in node/learner answers null, like a missing one.
    ("TGVhcm5lcjrCsg" is `Learner:²`: a digit that is not ASCII.)"""
    facts = await fresh(backend)
    call = caller_for(api, facts, principal(facts, ADMIN))
    result = await call(
        "query($id: ID!) { node(id: $id) { id } learner(id: $id) { id } }", id=value
    )
    assert result.status == 200 and result.body.get("data") == {"node": None, "learner": None}, (
        result.body
    )
    assert not result.errors, result.body


PREVIEW = (
    "%s($c: ID!) { %s(input: {courseId: $c, scope: ENTIRE_COMPANY}) { __typename "
    "... on RulePreview { seatsAvailable learners { totalCount edges { node { id } } } } "
    "... on Error { code } } }"
)


async def test_the_rule_preview_query_is_granted_as_its_mutation(
    api: Api, backend: Backend
) -> None:
    """Reads are queries: `autoAllocationRulePreview` is granted to whom the (deprecated)
    mutation `previewAutoAllocationRule` is, with the same answer; everyone else is refused
    FORBIDDEN as a whole. Neither changes anything."""
    facts = await fresh(backend)
    granted = EXPECTED["previewAutoAllocationRule"]
    for role in PRINCIPALS:
        call = caller_for(api, facts, principal(facts, role))
        given = {"c": targets(facts, 0).course}
        before = await row_counts(backend.engine)
        asked = await call(PREVIEW % ("query", "autoAllocationRulePreview"), **given)
        assert await row_counts(backend.engine) == before, role
        if role not in granted:
            assert_denied(asked)
            continue
        preview = asked.ok()["autoAllocationRulePreview"]
        assert preview["__typename"] == "RulePreview", (role, preview)
        assert preview["learners"]["totalCount"] > 0, (role, preview)
        mutated = await call(PREVIEW % ("mutation", "previewAutoAllocationRule"), **given)
        assert mutated.ok()["previewAutoAllocationRule"] == preview, role

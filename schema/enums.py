"""Enumerations shared across the schema's domains."""

from __future__ import annotations

import enum
from enum import Enum

import strawberry

from db import models
from policies import vocabulary


def describe_values(enum: type[Enum], descriptions: dict[str, str]) -> None:
    """Give each value of a registered enum its description (the enums are the lower layers'
    own, which know nothing of GraphQL); every value must have one."""
    values = enum.__strawberry_definition__.values  # type: ignore[attr-defined]
    missing = {v.name for v in values} ^ set(descriptions)
    assert not missing, f"{enum.__name__}: values without a description (or unknown): {missing}"
    for value in values:
        value.description = descriptions[value.name]


def described(cls: type[enum.Enum], *, name: str, description: str, values: dict[str, str]) -> None:
    """Register an enum with a description on the type and on every value."""
    strawberry.enum(cls, name=name, description=description)
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    assert set(values) == {v.name for v in definition.values}, name
    for value in definition.values:
        value.description = values[value.name]


strawberry.enum(vocabulary.Role, name="Role", description="A role held in an organisation.")
strawberry.enum(
    models.AssignmentRole, name="AssignmentRole", description="What an assignee does on a record."
)
strawberry.enum(
    models.EvidenceStatus, name="EvidenceStatus", description="Where a piece of evidence stands."
)
strawberry.enum(
    models.AuditAction,
    name="AuditAction",
    description="What an audit event records: one value per kind of change, object then verb.",
)
described(
    models.LicenceStatus,
    name="LicenceStatus",
    description="Where a course licence stands.",
    values={
        "ACTIVE": "Held: the learner may take the course.",
        "RECALLED": "Taken back before it was launched; its seat returned to the pool.",
        "COMPLETED": "The learner completed the course; it keeps its seat.",
        "EXPIRED": "Its expiry passed before it was completed; it keeps its seat.",
    },
)
described(
    models.LicenceSource,
    name="LicenceSource",
    description="How a licence was issued.",
    values={
        "MANUAL": "Allocated by a person.",
        "RULE": "Issued by an auto-allocation rule.",
    },
)
described(
    models.RecordStatus,
    name="ApprenticeRecordStatus",
    description="Where an apprentice record stands.",
    values={
        "LIVE": "In the live records view: open to assignments and evidence.",
        "ARCHIVED": "Kept for history, read-only: no assignment changes, no evidence submitted "
        "or decided, until restored.",
    },
)
strawberry.enum(
    models.RuleScope,
    name="RuleScope",
    description="Which learners an auto-allocation rule matches: at a location, in a department, "
    "the entire company, or at a location and in a department (ADVANCED).",
)

describe_values(
    vocabulary.Role,
    {
        "SUPER_ADMIN": "Everything an admin holds, and the organisation's API keys and webhooks; "
        "grants SUPER_ADMIN.",
        "ADMIN": "Runs the organisation: its people, learners, records, licences and rules.",
        "SENIOR_ASSESSOR": "Sees every learner and record of the organisation; assigns records; "
        "decides evidence.",
        "MANAGER": "Sees their team (the learners at their location and in their department); "
        "allocates external assessors and licences to them.",
        "ASSESSOR": "Sees the records assigned to them and those records' learners; decides "
        "their evidence.",
        "TRAINING_COORDINATOR": "As an assessor, for the records they coordinate.",
        "LEARNER": "Sees themself: their records, evidence and licences; submits evidence.",
        "EXTERNAL_ASSESSOR": "Outside every organisation: sees the learners allocated to them, "
        "in any organisation, and decides their evidence.",
        "SUPPORT": "The vendor's staff: organisations, courses, pools and staff, no learners.",
    },
)
describe_values(
    models.AssignmentRole,
    {
        "ASSESSOR": "Assesses the record's evidence; counts for `unassigned`.",
        "TRAINING_COORDINATOR": "Coordinates the record's training; one per record.",
    },
)
describe_values(
    models.EvidenceStatus,
    {
        "SUBMITTED": "Waiting for a decision.",
        "SIGNED_OFF": "Accepted by an assessor.",
        "REFERRED": "Sent back to the learner with a comment.",
    },
)
describe_values(
    models.RuleScope,
    {
        "LOCATION": "Learners at the rule's location.",
        "DEPARTMENT": "Learners in the rule's department.",
        "ENTIRE_COMPANY": "Every learner of the organisation.",
        "ADVANCED": "Learners at the rule's location and in its department.",
    },
)
describe_values(
    models.AuditAction,
    {
        "ORGANISATION_CREATED": "`createOrganisation`.",
        "LOCATION_CREATED": "`createLocation`.",
        "DEPARTMENT_CREATED": "`createDepartment`.",
        "STAFF_MEMBER_CREATED": "`createStaffMember`.",
        "STAFF_MEMBER_UPDATED": "`updateStaffMember` that changed something.",
        "STAFF_MEMBER_DEACTIVATED": "`deactivateStaffMember`: their assignments ended too.",
        "EXTERNAL_ASSESSOR_CREATED": "`createExternalAssessor`.",
        "EXTERNAL_ASSESSOR_UPDATED": "`updateExternalAssessor` that changed something.",
        "LEARNER_CREATED": "`createLearner`.",
        "LEARNERS_IMPORTED": "`importLearners`.",
        "LEARNER_UPDATED": "`updateLearner` that changed something.",
        "APPRENTICE_RECORD_CREATED": "`createApprenticeRecord`.",
        "APPRENTICE_RECORD_ARCHIVED": "`archiveApprenticeRecord`.",
        "APPRENTICE_RECORD_RESTORED": "`restoreApprenticeRecord`.",
        "ASSESSOR_ALLOCATED": "`allocateAssessor`.",
        "ASSESSOR_DEALLOCATED": "`deallocateAssessor`.",
        "RECORDS_ASSIGNED": "`assignRecords` that assigned someone.",
        "RECORDS_UNASSIGNED": "`unassignRecords` that ended an assignment.",
        "TRAINING_COORDINATOR_ASSIGNED": "`assignTrainingCoordinator`.",
        "EVIDENCE_SUBMITTED": "`submitEvidence`.",
        "EVIDENCE_DECIDED": "`signOffEvidence`: signed off or referred.",
        "COURSE_CREATED": "`createCourse`.",
        "LICENCE_POOL_SET": "`setLicencePool` that changed the seats.",
        "LICENCES_ALLOCATED": "`allocateLicences`, or a rule issuing licences (the rule acting "
        "for the person who created the learner).",
        "LICENCES_RECALLED": "`recallLicences`.",
        "LICENCES_WITHHELD": "A rule matched a new learner but the pool had no seat.",
        "LICENCE_LAUNCHED": "`markLicenceLaunched`.",
        "LICENCE_COMPLETED": "`markLicenceCompleted`.",
        "AUTO_ALLOCATION_RULE_CREATED": "`createAutoAllocationRule`.",
        "AUTO_ALLOCATION_RULE_DELETED": "`deleteAutoAllocationRule`.",
        "API_KEY_CREATED": "`createApiKey`.",
        "API_KEY_REVOKED": "`revokeApiKey`.",
        "IDENTITY_PROVIDER_SET": "`setOrganisationIdentityProvider` that bound or changed it.",
        "IDENTITY_PROVIDER_REMOVED": "`removeOrganisationIdentityProvider` that removed one.",
        "WEBHOOK_ENDPOINT_CREATED": "`createWebhookEndpoint`.",
        "WEBHOOK_ENDPOINT_UPDATED": "`updateWebhookEndpoint` that changed something.",
        "WEBHOOK_ENDPOINT_DELETED": "`deleteWebhookEndpoint`.",
        "WEBHOOK_SECRET_ROTATED": "`rotateWebhookSecret`.",
        "WEBHOOK_ENDPOINT_DISABLED": "A webhook endpoint was disabled: its receiver failed every "
        "try of a delivery.",
        "WEBHOOK_REDELIVERED": "`redeliverWebhook`.",
    },
)

Role = vocabulary.Role
AssignmentRole = models.AssignmentRole
EvidenceStatus = models.EvidenceStatus
AuditAction = models.AuditAction
LicenceStatus = models.LicenceStatus
LicenceSource = models.LicenceSource
ApprenticeRecordStatus = models.RecordStatus
RuleScope = models.RuleScope

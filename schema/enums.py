"""Enumerations shared across the schema's domains."""

from __future__ import annotations

import enum

import strawberry

from db import models
from policies import vocabulary


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

Role = vocabulary.Role
AssignmentRole = models.AssignmentRole
EvidenceStatus = models.EvidenceStatus
AuditAction = models.AuditAction
LicenceStatus = models.LicenceStatus
LicenceSource = models.LicenceSource
ApprenticeRecordStatus = models.RecordStatus
RuleScope = models.RuleScope

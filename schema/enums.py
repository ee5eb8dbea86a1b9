"""Enumerations shared across the schema's domains."""

from __future__ import annotations

import strawberry

from db import models
from policies import vocabulary

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
strawberry.enum(
    models.LicenceStatus, name="LicenceStatus", description="Where a course licence stands."
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
RuleScope = models.RuleScope

"""Apprentice record assignment: assignments, bulk assign and remove, training coordinators."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import assignments as cases
from resolvers import capabilities
from resolvers.assignments import AssignmentLoaders
from schema.capabilities import VIEWER_CAN, AssignmentCapabilities
from schema.context import Info
from schema.enums import AssignmentRole, AuditAction
from schema.nodes import Node, node
from schema.people import User
from schema.permissions import changes, requires, signed_in
from schema.relations import relation
from schema.results import answers, mutation, unchanged

if TYPE_CHECKING:
    from schema.records import ApprenticeRecord


@node(models.RecordAssignment, AssignmentLoaders.assignment)
@strawberry.type(description="A user assigned to an apprentice record.")
class Assignment(Node):
    role: AssignmentRole = strawberry.field(description="What the assignee does.")
    assigned_at: datetime = strawberry.field(description="When the assignment began.")
    ended_at: datetime | None = strawberry.field(description="When it ended, if it has.")
    row: strawberry.Private[models.RecordAssignment]

    @strawberry.field(description=VIEWER_CAN, extensions=signed_in())
    async def viewer_can(self, info: Info) -> AssignmentCapabilities:
        return AssignmentCapabilities(**await capabilities.of(info.context, self.row))

    record: Annotated[ApprenticeRecord, strawberry.lazy("schema.records")] = relation(
        cases.RECORD_OF_ASSIGNMENT,
        description="The record.",
        extensions=requires(Resource.RECORD),
    )
    user: User = relation(
        cases.ASSIGNEE, description="The assignee.", extensions=requires(Resource.ASSIGNMENT)
    )
    assigned_by: User | None = relation(
        cases.ASSIGNED_BY,
        description="Who made the assignment.",
        extensions=requires(Resource.ASSIGNMENT),
    )
    ended_by: User | None = relation(
        cases.ASSIGNMENT_ENDED_BY,
        description="Who ended it: removed the assignee, replaced them, or deactivated them.",
        extensions=requires(Resource.ASSIGNMENT),
    )


@strawberry.input(description="Assign one user to many records.")
class AssignRecordsInput:
    assignee_id: strawberry.ID = strawberry.field(description="The assessor or coordinator.")
    record_ids: list[strawberry.ID] = strawberry.field(description="Up to 1,000 records.")
    role: AssignmentRole = strawberry.field(
        default=AssignmentRole.ASSESSOR, description="What the assignee does on them."
    )


@strawberry.input(description="End assignments on many records.")
class UnassignRecordsInput:
    record_ids: list[strawberry.ID] = strawberry.field(description="Up to 1,000 records.")
    assignee_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only this user's assignments; none: everyone's."
    )
    role: AssignmentRole | None = strawberry.field(
        default=None, description="Only assignments in this role."
    )


@strawberry.input(description="Give a record its training coordinator.")
class AssignTrainingCoordinatorInput:
    record_id: strawberry.ID = strawberry.field(description="The record.")
    coordinator_id: strawberry.ID = strawberry.field(description="The new coordinator.")


@answers(cases.RecordsAssigned)
@strawberry.type(description="The records were assigned.")
class RecordsAssigned:
    assignments: list[Assignment] = strawberry.field(description="The assignments created.")
    unchanged: int = strawberry.field(description="Records the user already had in this role.")
    replaced: list[Assignment] = strawberry.field(
        description="Training coordinator assignments this ended: a record has one coordinator, "
        "so assigning a coordinator replaces the current one."
    )


@answers(cases.RecordsUnassigned)
@strawberry.type(description="The assignments ended; they are kept as history.")
class RecordsUnassigned:
    ended: list[Assignment] = strawberry.field(description="The assignments that ended.")
    unchanged: int = strawberry.field(
        description="How many records had no such assignment to end already: left as they were."
    )


@answers(cases.TrainingCoordinatorAssigned)
@strawberry.type(description="The record has its training coordinator.")
class TrainingCoordinatorAssigned:
    assignment: Assignment = strawberry.field(description="The coordinator's assignment.")
    replaced: Assignment | None = strawberry.field(
        description="The previous coordinator's assignment, now ended."
    )
    unchanged: bool = strawberry.field(
        description="True when they were the record's only coordinator already: nothing changed, "
        "no audit event was written."
    )


@strawberry.type
class AssignmentMutation:
    assign_records = mutation(
        cases.assign_records,
        audit=AuditAction.RECORDS_ASSIGNED,
        input=AssignRecordsInput,
        repeat=unchanged(
            "pairs assigned already count in `unchanged`; nothing changed: no audit event"
        ),
        description="Assign a user to records, all or nothing (admins and senior assessors); "
        "existing pairs count as unchanged; an archived record is rejected as RECORD_ARCHIVED.",
        extensions=changes(Resource.RECORD, Action.ASSIGN),
    )
    unassign_records = mutation(
        cases.unassign_records,
        audit=AuditAction.RECORDS_UNASSIGNED,
        input=UnassignRecordsInput,
        repeat=unchanged(
            "records with nothing to end count in `unchanged`; nothing ended: no audit event"
        ),
        description="End assignments on records, all or nothing ('remove assessors'; admins and "
        "senior assessors); an archived record is rejected as RECORD_ARCHIVED.",
        extensions=changes(Resource.RECORD, Action.ASSIGN),
    )
    assign_training_coordinator = mutation(
        cases.assign_training_coordinator,
        audit=AuditAction.TRAINING_COORDINATOR_ASSIGNED,
        input=AssignTrainingCoordinatorInput,
        repeat=unchanged(
            "the record's only coordinator already: `unchanged: true`, no audit event"
        ),
        description="Make a user the record's training coordinator, replacing the current one "
        "(admins and senior assessors).",
        extensions=changes(Resource.RECORD, Action.ASSIGN),
    )

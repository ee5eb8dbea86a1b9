"""Apprentice record assignment: bulk assign, bulk remove, training coordinators."""

from __future__ import annotations

from typing import Annotated, Self

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import assignments as cases
from schema.context import Info
from schema.errors import (
    BulkRejectedError,
    IneligibleAssigneeError,
    NotFoundError,
    ValidationError,
    answer,
)
from schema.permissions import changes
from schema.types import Assignment, AssignmentRole


@strawberry.input(description="Assign one user to many records.")
class AssignRecordsInput:
    assignee_id: strawberry.ID = strawberry.field(description="The assessor or coordinator.")
    record_ids: list[strawberry.ID] = strawberry.field(description="Up to 1,000 records.")
    role: AssignmentRole = strawberry.field(  # type: ignore[valid-type]
        default=models.AssignmentRole.ASSESSOR, description="What the assignee does on them."
    )


@strawberry.input(description="End assignments on many records.")
class UnassignRecordsInput:
    record_ids: list[strawberry.ID] = strawberry.field(description="Up to 1,000 records.")
    assignee_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only this user's assignments; none: everyone's."
    )
    role: AssignmentRole | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Only assignments in this role."
    )


@strawberry.input(description="Give a record its training coordinator.")
class AssignTrainingCoordinatorInput:
    record_id: strawberry.ID = strawberry.field(description="The record.")
    coordinator_id: strawberry.ID = strawberry.field(description="The new coordinator.")


@strawberry.type(description="The records were assigned.")
class RecordsAssigned:
    assignments: list[Assignment] = strawberry.field(description="The assignments created.")
    unchanged: int = strawberry.field(description="Records the user already had in this role.")

    @classmethod
    def from_outcome(cls, outcome: cases.RecordsAssigned) -> Self:
        return cls(
            assignments=[Assignment.from_row(a) for a in outcome.assignments],
            unchanged=outcome.unchanged,
        )


@strawberry.type(description="The assignments ended; they are kept as history.")
class RecordsUnassigned:
    ended: list[Assignment] = strawberry.field(description="The assignments that ended.")

    @classmethod
    def from_outcome(cls, outcome: cases.RecordsUnassigned) -> Self:
        return cls(ended=[Assignment.from_row(a) for a in outcome.ended])


@strawberry.type(description="The record has its training coordinator.")
class TrainingCoordinatorAssigned:
    assignment: Assignment = strawberry.field(description="The coordinator's assignment.")
    replaced: Assignment | None = strawberry.field(
        description="The previous coordinator's assignment, now ended."
    )

    @classmethod
    def from_outcome(cls, outcome: cases.TrainingCoordinatorAssigned) -> Self:
        return cls(
            assignment=Assignment.from_row(outcome.assignment),
            replaced=None if outcome.replaced is None else Assignment.from_row(outcome.replaced),
        )


AssignRecordsResult = Annotated[
    RecordsAssigned | ValidationError | NotFoundError | BulkRejectedError | IneligibleAssigneeError,
    strawberry.union("AssignRecordsResult"),
]
UnassignRecordsResult = Annotated[
    RecordsUnassigned | ValidationError | NotFoundError | BulkRejectedError,
    strawberry.union("UnassignRecordsResult"),
]
AssignTrainingCoordinatorResult = Annotated[
    TrainingCoordinatorAssigned | ValidationError | NotFoundError | IneligibleAssigneeError,
    strawberry.union("AssignTrainingCoordinatorResult"),
]


@strawberry.type
class AssignmentMutation:
    @strawberry.mutation(
        description="Assign a user to records, all or nothing; existing pairs count as unchanged.",
        extensions=changes(Resource.RECORD, Action.ASSIGN),
    )
    async def assign_records(self, info: Info, input: AssignRecordsInput) -> AssignRecordsResult:
        outcome = await cases.assign_records(
            info.context,
            assignee_id=input.assignee_id,
            record_ids=input.record_ids,
            role=input.role,
        )
        return answer(outcome, RecordsAssigned.from_outcome)

    @strawberry.mutation(
        description="End assignments on records, all or nothing ('remove assessors').",
        extensions=changes(Resource.RECORD, Action.ASSIGN),
    )
    async def unassign_records(
        self, info: Info, input: UnassignRecordsInput
    ) -> UnassignRecordsResult:
        outcome = await cases.unassign_records(
            info.context,
            record_ids=input.record_ids,
            assignee_id=input.assignee_id,
            role=input.role,
        )
        return answer(outcome, RecordsUnassigned.from_outcome)

    @strawberry.mutation(
        description="Make a user the record's training coordinator, replacing the current one.",
        extensions=changes(Resource.RECORD, Action.ASSIGN),
    )
    async def assign_training_coordinator(
        self, info: Info, input: AssignTrainingCoordinatorInput
    ) -> AssignTrainingCoordinatorResult:
        outcome = await cases.assign_training_coordinator(
            info.context, record_id=input.record_id, coordinator_id=input.coordinator_id
        )
        return answer(outcome, TrainingCoordinatorAssigned.from_outcome)

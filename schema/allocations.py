"""External assessor allocation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

import strawberry

from policies.vocabulary import Action, Resource
from resolvers import allocations
from schema.context import Info
from schema.errors import (
    AlreadyExistsError,
    NotExternalAssessorError,
    NotFoundError,
    ValidationError,
    answer,
)
from schema.permissions import changes
from schema.types import Allocation


@strawberry.input(description="Allocate an external assessor to a learner.")
class AllocateAssessorInput:
    learner_id: strawberry.ID = strawberry.field(description="The learner.")
    assessor_id: strawberry.ID = strawberry.field(description="An external assessor.")
    expires_at: datetime | None = strawberry.field(
        default=None, description="When access ends by itself; must be in the future."
    )


@strawberry.input(description="End an external assessor's allocation to a learner.")
class DeallocateAssessorInput:
    learner_id: strawberry.ID = strawberry.field(description="The learner.")
    assessor_id: strawberry.ID = strawberry.field(description="The allocated assessor.")


@strawberry.type(description="The assessor now sees the learner.")
class AssessorAllocated:
    allocation: Allocation = strawberry.field(description="The new allocation.")

    @classmethod
    def from_outcome(cls, outcome: allocations.AssessorAllocated) -> Self:
        return cls(allocation=Allocation.from_row(outcome.allocation))


@strawberry.type(description="The allocation ended; it is kept as history.")
class AssessorDeallocated:
    allocation: Allocation = strawberry.field(description="The ended allocation.")

    @classmethod
    def from_outcome(cls, outcome: allocations.AssessorDeallocated) -> Self:
        return cls(allocation=Allocation.from_row(outcome.allocation))


AllocateAssessorResult = Annotated[
    AssessorAllocated
    | ValidationError
    | NotFoundError
    | AlreadyExistsError
    | NotExternalAssessorError,
    strawberry.union("AllocateAssessorResult"),
]
DeallocateAssessorResult = Annotated[
    AssessorDeallocated | ValidationError | NotFoundError,
    strawberry.union("DeallocateAssessorResult"),
]


@strawberry.type
class AllocationMutation:
    @strawberry.mutation(
        description="Allocate an external assessor to a learner (admins; managers for their team).",
        extensions=changes(Resource.LEARNER, Action.ALLOCATE),
    )
    async def allocate_assessor(
        self, info: Info, input: AllocateAssessorInput
    ) -> AllocateAssessorResult:
        outcome = await allocations.allocate_assessor(
            info.context,
            learner_id=input.learner_id,
            assessor_id=input.assessor_id,
            expires_at=input.expires_at,
        )
        return answer(outcome, AssessorAllocated.from_outcome)

    @strawberry.mutation(
        description="End an external assessor's allocation to a learner.",
        extensions=changes(Resource.LEARNER, Action.ALLOCATE),
    )
    async def deallocate_assessor(
        self, info: Info, input: DeallocateAssessorInput
    ) -> DeallocateAssessorResult:
        outcome = await allocations.deallocate_assessor(
            info.context, learner_id=input.learner_id, assessor_id=input.assessor_id
        )
        return answer(outcome, AssessorDeallocated.from_outcome)

"""External assessor allocation."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import allocations, capabilities
from resolvers.allocations import AllocationLoaders
from schema.capabilities import VIEWER_CAN, AllocationCapabilities
from schema.context import Info
from schema.enums import AuditAction
from schema.nodes import Node, node
from schema.people import User
from schema.permissions import changes, requires, signed_in
from schema.relations import relation
from schema.results import answers, mutation, unchanged

if TYPE_CHECKING:
    from schema.learners import Learner


@node(models.Allocation, AllocationLoaders.allocation)
@strawberry.type(description="An external assessor allocated to a learner.")
class Allocation(Node):
    allocated_at: datetime = strawberry.field(description="When the allocation began.")
    expires_at: datetime | None = strawberry.field(description="When it stops granting access.")
    ended_at: datetime | None = strawberry.field(description="When it was ended, if it was.")
    row: strawberry.Private[models.Allocation]

    @strawberry.field(description=VIEWER_CAN, extensions=signed_in())
    async def viewer_can(self, info: Info) -> AllocationCapabilities:
        return AllocationCapabilities(**await capabilities.of(info.context, self.row))

    learner: Annotated[Learner, strawberry.lazy("schema.learners")] = relation(
        allocations.LEARNER_OF_ALLOCATION,
        description="The learner.",
        extensions=requires(Resource.LEARNER),
    )
    assessor: User = relation(
        allocations.ASSESSOR_OF_ALLOCATION,
        description="The external assessor.",
        extensions=requires(Resource.ALLOCATION),
    )
    allocated_by: User | None = relation(
        allocations.ALLOCATED_BY,
        description="Who allocated them.",
        extensions=requires(Resource.ALLOCATION),
    )
    ended_by: User | None = relation(
        allocations.ALLOCATION_ENDED_BY,
        description="Who ended it: deallocated the assessor, or allocated them again after it "
        "expired.",
        extensions=requires(Resource.ALLOCATION),
    )


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


@answers(allocations.AssessorAllocated)
@strawberry.type(description="The assessor now sees the learner.")
class AssessorAllocated:
    allocation: Allocation = strawberry.field(
        description="The new allocation, or the one in force when unchanged."
    )
    unchanged: bool = strawberry.field(
        description="True when the assessor was allocated, with this expiry, already: nothing "
        "changed, no audit event was written."
    )


@answers(allocations.AssessorDeallocated)
@strawberry.type(description="The allocation ended; it is kept as history.")
class AssessorDeallocated:
    allocation: Allocation = strawberry.field(description="The ended allocation.")
    unchanged: bool = strawberry.field(
        description="True when it had ended already: nothing changed, no audit event was written."
    )


@strawberry.type
class AllocationMutation:
    allocate_assessor = mutation(
        allocations.allocate_assessor,
        audit=AuditAction.ASSESSOR_ALLOCATED,
        input=AllocateAssessorInput,
        repeat=unchanged(
            "allocated already with the same `expiresAt`: the allocation in force, `unchanged: "
            "true`, no audit event; with another expiry `AlreadyExistsError`"
        ),
        description="Allocate an external assessor to a learner (admins; managers for their team).",
        extensions=changes(Resource.LEARNER, Action.ALLOCATE),
    )
    deallocate_assessor = mutation(
        allocations.deallocate_assessor,
        audit=AuditAction.ASSESSOR_DEALLOCATED,
        input=DeallocateAssessorInput,
        repeat=unchanged(
            "ended already: the latest allocation, `unchanged: true`, no audit event; never "
            "allocated, or a learner or assessor not visible: `NotFoundError`"
        ),
        description="End an external assessor's allocation to a learner (admins; managers for "
        "their team); it is kept as history.",
        extensions=changes(Resource.LEARNER, Action.ALLOCATE),
    )

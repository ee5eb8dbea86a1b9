"""Learners: the list, one learner, creation."""

from __future__ import annotations

from typing import Annotated, Self

import strawberry

from policies.vocabulary import Action, Resource
from resolvers import learners
from schema.connections import Connection
from schema.context import Info
from schema.errors import AlreadyExistsError, NotFoundError, ValidationError, answer
from schema.permissions import changes, requires
from schema.types import Learner


@strawberry.input(description="Narrow the learner list.")
class LearnerFilter:
    search: str | None = strawberry.field(default=None, description="Part of a name or email.")
    location_id: strawberry.ID | None = strawberry.field(
        default=None, description="At this location."
    )
    department_id: strawberry.ID | None = strawberry.field(
        default=None, description="In this department."
    )
    assigned_to: strawberry.ID | None = strawberry.field(
        default=None, description="With a record actively assigned to this user."
    )
    unassigned: bool | None = strawberry.field(
        default=None, description="True: no record has an active assessor; false: some record has."
    )


@strawberry.input(description="A new learner in the caller's organisation.")
class CreateLearnerInput:
    name: str = strawberry.field(description="Full name.")
    email: str | None = strawberry.field(
        default=None, description="With an email the learner gets a sign-in (role LEARNER)."
    )
    location_id: strawberry.ID | None = strawberry.field(
        default=None, description="Their location."
    )
    department_id: strawberry.ID | None = strawberry.field(
        default=None, description="Their department."
    )


@strawberry.type(description="The learner was created.")
class LearnerCreated:
    learner: Learner = strawberry.field(description="The new learner.")

    @classmethod
    def from_outcome(cls, outcome: learners.LearnerCreated) -> Self:
        return cls(learner=Learner.from_row(outcome.learner))


CreateLearnerResult = Annotated[
    LearnerCreated | ValidationError | NotFoundError | AlreadyExistsError,
    strawberry.union("CreateLearnerResult"),
]


@strawberry.type
class LearnerQuery:
    @strawberry.field(
        description="Learners the caller can see, by name.", extensions=requires(Resource.LEARNER)
    )
    async def learners(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: LearnerFilter | None = None,
    ) -> Connection[Learner]:
        f = filter or LearnerFilter()
        page = await learners.learners(
            info.context,
            first=first,
            after=after,
            filter=learners.LearnerFilter(
                search=f.search,
                location_id=f.location_id,
                department_id=f.department_id,
                assigned_to=f.assigned_to,
                unassigned=f.unassigned,
            ),
        )
        return Connection.from_page(page, Learner.from_row)

    @strawberry.field(
        description="One learner; null when it does not exist or the caller cannot see it.",
        extensions=requires(Resource.LEARNER),
    )
    async def learner(self, info: Info, id: strawberry.ID) -> Learner | None:
        row = await learners.learner(info.context, id=id)
        return None if row is None else Learner.from_row(row)


@strawberry.type
class LearnerMutation:
    @strawberry.mutation(
        description="Add a learner to the caller's organisation.",
        extensions=changes(Resource.LEARNER, Action.CREATE),
    )
    async def create_learner(self, info: Info, input: CreateLearnerInput) -> CreateLearnerResult:
        outcome = await learners.create_learner(
            info.context,
            name=input.name,
            email=input.email,
            location_id=input.location_id,
            department_id=input.department_id,
        )
        return answer(outcome, LearnerCreated.from_outcome)

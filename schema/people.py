"""The viewer, staff (the assignee drop-down) and the external assessor directory."""

from __future__ import annotations

from typing import Annotated, Self

import strawberry

from policies.vocabulary import Action, Resource
from resolvers import people
from schema.connections import Connection
from schema.context import Info
from schema.errors import AlreadyExistsError, NotFoundError, ValidationError, answer
from schema.permissions import changes, requires, signed_in
from schema.types import Organisation, Role, User


@strawberry.type(description="Who is asking, and as what.")
class Viewer:
    user: User = strawberry.field(description="The signed-in user.")
    organisation: Organisation | None = strawberry.field(
        description="The organisation the caller acts in (none for support and external assessors)."
    )
    roles: list[Role] = strawberry.field(description="The caller's roles there.")  # type: ignore[valid-type]

    @classmethod
    def from_outcome(cls, outcome: people.Viewer) -> Self:
        return cls(
            user=User.from_row(outcome.user),
            organisation=None
            if outcome.organisation is None
            else Organisation.from_row(outcome.organisation),
            roles=outcome.roles,
        )


@strawberry.input(description="Narrow the staff list.")
class StaffFilter:
    search: str | None = strawberry.field(default=None, description="Part of a name or email.")
    roles: list[Role] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Only people holding any of these roles."
    )


@strawberry.input(
    description="A new member of staff (or an existing one joining this organisation)."
)
class CreateStaffMemberInput:
    organisation_id: strawberry.ID | None = strawberry.field(
        default=None, description="Support only; others act in their own organisation."
    )
    name: str = strawberry.field(description="Full name.")
    email: str = strawberry.field(description="Sign-in email address.")
    roles: list[Role] = strawberry.field(description="Roles in the organisation.")  # type: ignore[valid-type]
    location_id: strawberry.ID | None = strawberry.field(
        default=None, description="Their location."
    )
    department_id: strawberry.ID | None = strawberry.field(
        default=None, description="Their department."
    )


@strawberry.input(description="A new external assessor profile (support only).")
class CreateExternalAssessorInput:
    name: str = strawberry.field(description="Full name.")
    email: str = strawberry.field(description="Sign-in email address.")


@strawberry.type(description="The staff member was created or joined the organisation.")
class StaffMemberCreated:
    user: User = strawberry.field(description="The staff member.")

    @classmethod
    def from_outcome(cls, outcome: people.StaffMemberCreated) -> Self:
        return cls(user=User.from_row(outcome.user))


@strawberry.type(description="The external assessor profile was created.")
class ExternalAssessorCreated:
    assessor: User = strawberry.field(description="The new external assessor.")

    @classmethod
    def from_outcome(cls, outcome: people.ExternalAssessorCreated) -> Self:
        return cls(assessor=User.from_row(outcome.assessor))


CreateStaffMemberResult = Annotated[
    StaffMemberCreated | ValidationError | NotFoundError | AlreadyExistsError,
    strawberry.union("CreateStaffMemberResult"),
]
CreateExternalAssessorResult = Annotated[
    ExternalAssessorCreated | ValidationError | AlreadyExistsError,
    strawberry.union("CreateExternalAssessorResult"),
]


@strawberry.type
class PeopleQuery:
    @strawberry.field(description="Who is asking.", extensions=signed_in())
    async def viewer(self, info: Info) -> Viewer:
        return Viewer.from_outcome(await people.viewer(info.context))

    @strawberry.field(
        description="Staff the caller can see: the assignee drop-down.",
        extensions=requires(Resource.STAFF),
    )
    async def staff(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: StaffFilter | None = None,
    ) -> Connection[User]:
        f = filter or StaffFilter()
        page = await people.staff(
            info.context, first=first, after=after, search=f.search, roles=f.roles
        )
        return Connection.from_page(page, User.from_row)

    @strawberry.field(
        description="The external assessor directory to allocate from.",
        extensions=requires(Resource.EXTERNAL_ASSESSOR),
    )
    async def external_assessors(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        search: str | None = None,
    ) -> Connection[User]:
        page = await people.external_assessors(
            info.context, first=first, after=after, search=search
        )
        return Connection.from_page(page, User.from_row)


@strawberry.type
class PeopleMutation:
    @strawberry.mutation(
        description="Create a staff member. Support in any organisation; admins in their own.",
        extensions=changes(Resource.STAFF, Action.CREATE),
    )
    async def create_staff_member(
        self, info: Info, input: CreateStaffMemberInput
    ) -> CreateStaffMemberResult:
        outcome = await people.create_staff_member(
            info.context,
            organisation_id=input.organisation_id,
            name=input.name,
            email=input.email,
            roles=input.roles,
            location_id=input.location_id,
            department_id=input.department_id,
        )
        return answer(outcome, StaffMemberCreated.from_outcome)

    @strawberry.mutation(
        description="Create an external assessor profile. Support only.",
        extensions=changes(Resource.EXTERNAL_ASSESSOR, Action.CREATE),
    )
    async def create_external_assessor(
        self, info: Info, input: CreateExternalAssessorInput
    ) -> CreateExternalAssessorResult:
        outcome = await people.create_external_assessor(
            info.context, name=input.name, email=input.email
        )
        return answer(outcome, ExternalAssessorCreated.from_outcome)

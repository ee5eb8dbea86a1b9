"""Organisations and units: support creates organisations; admins add units."""

from __future__ import annotations

from typing import Annotated, Self

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import organisations
from schema.context import Info
from schema.errors import AlreadyExistsError, NotFoundError, ValidationError, answer
from schema.permissions import changes
from schema.types import Department, Location, Organisation


@strawberry.input(description="A new organisation (support only).")
class CreateOrganisationInput:
    name: str = strawberry.field(description="Display name.")
    slug: str = strawberry.field(
        description="Short unique name: lower-case letters, digits, hyphens."
    )


@strawberry.input(description="A new location or department.")
class CreateUnitInput:
    organisation_id: strawberry.ID | None = strawberry.field(
        default=None, description="Support only; others act in their own organisation."
    )
    name: str = strawberry.field(description="Display name, unique in the organisation.")


@strawberry.type(description="The organisation was created.")
class OrganisationCreated:
    organisation: Organisation = strawberry.field(description="The new organisation.")

    @classmethod
    def from_outcome(cls, outcome: organisations.OrganisationCreated) -> Self:
        return cls(organisation=Organisation.from_row(outcome.organisation))


@strawberry.type(description="The location was created.")
class LocationCreated:
    location: Location = strawberry.field(description="The new location.")

    @classmethod
    def from_outcome(cls, outcome: organisations.UnitCreated) -> Self:
        assert isinstance(outcome.unit, models.Location)
        return cls(location=Location.from_row(outcome.unit))


@strawberry.type(description="The department was created.")
class DepartmentCreated:
    department: Department = strawberry.field(description="The new department.")

    @classmethod
    def from_outcome(cls, outcome: organisations.UnitCreated) -> Self:
        assert isinstance(outcome.unit, models.Department)
        return cls(department=Department.from_row(outcome.unit))


CreateOrganisationResult = Annotated[
    OrganisationCreated | ValidationError | AlreadyExistsError,
    strawberry.union("CreateOrganisationResult"),
]
CreateLocationResult = Annotated[
    LocationCreated | ValidationError | NotFoundError | AlreadyExistsError,
    strawberry.union("CreateLocationResult"),
]
CreateDepartmentResult = Annotated[
    DepartmentCreated | ValidationError | NotFoundError | AlreadyExistsError,
    strawberry.union("CreateDepartmentResult"),
]


@strawberry.type
class OrganisationMutation:
    @strawberry.mutation(
        description="Create a customer organisation. Support only.",
        extensions=changes(Resource.ORGANISATION, Action.CREATE),
    )
    async def create_organisation(
        self, info: Info, input: CreateOrganisationInput
    ) -> CreateOrganisationResult:
        outcome = await organisations.create_organisation(
            info.context, name=input.name, slug=input.slug
        )
        return answer(outcome, OrganisationCreated.from_outcome)

    @strawberry.mutation(
        description="Add a location to an organisation.",
        extensions=changes(Resource.LOCATION, Action.CREATE),
    )
    async def create_location(self, info: Info, input: CreateUnitInput) -> CreateLocationResult:
        outcome = await organisations.create_unit(
            info.context,
            kind=models.Location,
            organisation_id=input.organisation_id,
            name=input.name,
        )
        return answer(outcome, LocationCreated.from_outcome)

    @strawberry.mutation(
        description="Add a department to an organisation.",
        extensions=changes(Resource.DEPARTMENT, Action.CREATE),
    )
    async def create_department(self, info: Info, input: CreateUnitInput) -> CreateDepartmentResult:
        outcome = await organisations.create_unit(
            info.context,
            kind=models.Department,
            organisation_id=input.organisation_id,
            name=input.name,
        )
        return answer(outcome, DepartmentCreated.from_outcome)

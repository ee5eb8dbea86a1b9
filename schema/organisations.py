"""Organisations and their units: support creates organisations; admins add units."""

from __future__ import annotations

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import identity_providers, organisations
from resolvers.organisations import OrganisationLoaders
from resolvers.outcomes import AlreadyExists
from schema.connections import connection
from schema.enums import AuditAction
from schema.nodes import Node, node
from schema.permissions import changes, requires
from schema.relations import relation
from schema.results import answers, mutation, refused, unchanged


@node(models.Organisation, OrganisationLoaders.organisation)
@strawberry.type(description="A customer account.")
class Organisation(Node):
    name: str = strawberry.field(description="Display name.")
    slug: str = strawberry.field(description="Short unique name, used in tokens.")
    row: strawberry.Private[models.Organisation]
    locations: list[Location] = relation(
        organisations.LOCATIONS_OF_ORGANISATION,
        description="The organisation's locations.",
        extensions=requires(Resource.LOCATION),
    )
    departments: list[Department] = relation(
        organisations.DEPARTMENTS_OF_ORGANISATION,
        description="The organisation's departments.",
        extensions=requires(Resource.DEPARTMENT),
    )


@node(models.Location, OrganisationLoaders.location)
@strawberry.type(description="A site of an organisation.")
class Location(Node):
    name: str = strawberry.field(description="Display name.")
    row: strawberry.Private[models.Location]


@node(models.Department, OrganisationLoaders.department)
@strawberry.type(description="A department of an organisation.")
class Department(Node):
    name: str = strawberry.field(description="Display name.")
    row: strawberry.Private[models.Department]


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


@answers(organisations.OrganisationCreated)
@strawberry.type(description="The organisation was created.")
class OrganisationCreated:
    organisation: Organisation = strawberry.field(description="The new organisation.")


@answers(organisations.LocationCreated)
@strawberry.type(description="The location was created.")
class LocationCreated:
    location: Location = strawberry.field(description="The new location.")


@answers(organisations.DepartmentCreated)
@strawberry.type(description="The department was created.")
class DepartmentCreated:
    department: Department = strawberry.field(description="The new department.")


@strawberry.input(description="The OpenID Connect issuer whose tokens sign in to an organisation.")
class SetOrganisationIdentityProviderInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation.")
    issuer: str = strawberry.field(
        description="The provider's issuer URL, exactly as its tokens' `iss` claim says it "
        "(https); its keys are found through `/.well-known/openid-configuration`."
    )
    audience: str = strawberry.field(
        description="What the tokens' `aud` claim must hold: the client id the organisation "
        "registered at its provider."
    )
    email_claim: str | None = strawberry.field(
        default=None, description="The claim naming the person's email (default `email`)."
    )


@strawberry.input(description="The organisation whose identity provider is removed.")
class RemoveOrganisationIdentityProviderInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation.")


@answers(identity_providers.IdentityProviderSet)
@strawberry.type(description="The organisation's people may sign in through this issuer.")
class OrganisationIdentityProviderSet:
    organisation: Organisation = strawberry.field(description="The organisation.")
    issuer: str = strawberry.field(description="The issuer bound.")
    audience: str = strawberry.field(description="The audience its tokens must name.")
    email_claim: str = strawberry.field(description="The claim naming the person's email.")
    unchanged: bool = strawberry.field(
        description="True when this issuer was bound so already: nothing changed, no audit "
        "event was written."
    )


@answers(identity_providers.IdentityProviderRemoved)
@strawberry.type(description="The organisation's issuer no longer signs anyone in.")
class OrganisationIdentityProviderRemoved:
    organisation: Organisation = strawberry.field(description="The organisation.")
    unchanged: bool = strawberry.field(
        description="True when no issuer was bound: nothing changed, no audit event was written."
    )


@strawberry.type
class OrganisationQuery:
    organisations = connection(
        organisations.ORGANISATIONS,
        Organisation,
        order="Organisation",
        description="Organisations the caller can see, by name: support all; others their own.",
        extensions=requires(Resource.ORGANISATION),
    )


@strawberry.type
class OrganisationMutation:
    create_organisation = mutation(
        organisations.create_organisation,
        audit=AuditAction.ORGANISATION_CREATED,
        input=CreateOrganisationInput,
        repeat=refused(AlreadyExists, "the slug is taken: nothing is created"),
        description="Create a customer organisation. Support only.",
        extensions=changes(Resource.ORGANISATION, Action.CREATE),
    )
    set_organisation_identity_provider = mutation(
        identity_providers.set_organisation_identity_provider,
        audit=AuditAction.IDENTITY_PROVIDER_SET,
        input=SetOrganisationIdentityProviderInput,
        repeat=unchanged("the same issuer, audience and claim: `unchanged: true`, no audit event"),
        description="Bind an OpenID Connect issuer to an organisation (replacing the one bound): "
        "its tokens sign people in to that organisation's memberships only, never as support "
        "or an external assessor. Support only.",
        extensions=changes(Resource.ORGANISATION, Action.BIND),
    )
    remove_organisation_identity_provider = mutation(
        identity_providers.remove_organisation_identity_provider,
        audit=AuditAction.IDENTITY_PROVIDER_REMOVED,
        input=RemoveOrganisationIdentityProviderInput,
        repeat=unchanged("nothing bound: `unchanged: true`, no audit event"),
        description="Remove an organisation's identity provider: its tokens stop signing in at "
        "their next request. Support only.",
        extensions=changes(Resource.ORGANISATION, Action.BIND),
    )
    create_location = mutation(
        organisations.create_location,
        audit=AuditAction.LOCATION_CREATED,
        input=CreateUnitInput,
        repeat=refused(AlreadyExists, "the name is taken in the organisation: nothing is created"),
        description="Add a location to an organisation (support in any; admins in their own).",
        extensions=changes(Resource.LOCATION, Action.CREATE),
    )
    create_department = mutation(
        organisations.create_department,
        audit=AuditAction.DEPARTMENT_CREATED,
        input=CreateUnitInput,
        repeat=refused(AlreadyExists, "the name is taken in the organisation: nothing is created"),
        description="Add a department to an organisation (support in any; admins in their own).",
        extensions=changes(Resource.DEPARTMENT, Action.CREATE),
    )

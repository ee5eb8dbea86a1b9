"""Organisations and their units (locations, departments)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select

from db.models import AuditAction, Department, Location, Organisation
from policies.vocabulary import Action, Resource, refusal
from resolvers.audit import audit
from resolvers.common import clean_name, clean_slug, parse_optional_id
from resolvers.context import Context, LoaderGroup
from resolvers.errors import Forbidden
from resolvers.loaders import Children, ref, scoped
from resolvers.outcomes import AlreadyExists, Invalid, NotFound
from resolvers.pagination import ListSource, Sort

LOCATIONS_OF_ORGANISATION = Children(
    Location, Location.organisation_id, Resource.LOCATION, (Location.name, Location.id)
)
DEPARTMENTS_OF_ORGANISATION = Children(
    Department, Department.organisation_id, Resource.DEPARTMENT, (Department.name, Department.id)
)


class OrganisationLoaders(LoaderGroup):
    organisation_ref = ref(Organisation)
    organisation = scoped(Organisation, Resource.ORGANISATION)
    location = scoped(Location, Resource.LOCATION)
    department = scoped(Department, Resource.DEPARTMENT)


@dataclass(frozen=True)
class OrganisationCreated:
    organisation: Organisation


@dataclass(frozen=True)
class LocationCreated:
    location: Location


@dataclass(frozen=True)
class DepartmentCreated:
    department: Department


# Organisations the caller can see, by name: support all; others their own.
ORGANISATIONS: ListSource[Organisation, None] = ListSource(
    "organisations",
    Organisation,
    Resource.ORGANISATION,
    (Sort("NAME", (Organisation.name,), "By name."),),
)


async def create_organisation(
    ctx: Context, *, name: str, slug: str
) -> OrganisationCreated | Invalid | AlreadyExists:
    if not ctx.rules.holds(Resource.ORGANISATION, Action.CREATE):
        raise Forbidden(refusal(Resource.ORGANISATION, Action.CREATE))
    clean = clean_name(name)
    if isinstance(clean, Invalid):
        return clean
    clean_s = clean_slug(slug)
    if isinstance(clean_s, Invalid):
        return clean_s
    organisation = Organisation(name=clean, slug=clean_s, created_at=ctx.now)
    if not await ctx.db.try_add(organisation):
        return AlreadyExists(f"An organisation with slug {clean_s!r} exists.", field="slug")
    await audit(
        ctx, AuditAction.ORGANISATION_CREATED, organisation, organisation_id=organisation.id
    )
    return OrganisationCreated(organisation)


async def target_organisation(
    ctx: Context, resource: Resource, organisation_id: str | None
) -> int | Invalid | NotFound:
    """The organisation a create acts in: the given one (support) or the caller's own.

    Raises Forbidden when the caller may not create `resource` there.
    """
    if not ctx.rules.holds(resource, Action.CREATE):
        raise Forbidden(refusal(resource, Action.CREATE))
    pk = parse_optional_id(organisation_id, "Organisation", "organisationId")
    if isinstance(pk, Invalid | NotFound):
        return pk
    if pk is None:
        if ctx.me.organisation_id is None:
            return Invalid("organisationId is required.", field="organisationId")
        pk = ctx.me.organisation_id
    visible = await ctx.db.scalar(
        select(Organisation.id).where(Organisation.id == pk, ctx.rules.where(Resource.ORGANISATION))
    )
    if visible is None:
        assert organisation_id is not None  # the caller's own organisation is always visible
        return NotFound(id=organisation_id)
    if not ctx.rules.may_act_in(resource, Action.CREATE, pk):
        raise Forbidden(refusal(resource, Action.CREATE))
    return pk


async def create_location(
    ctx: Context, *, organisation_id: str | None, name: str
) -> LocationCreated | Invalid | NotFound | AlreadyExists:
    unit = await _create_unit(ctx, Location, organisation_id, name)
    return LocationCreated(unit) if isinstance(unit, Location) else unit


async def create_department(
    ctx: Context, *, organisation_id: str | None, name: str
) -> DepartmentCreated | Invalid | NotFound | AlreadyExists:
    unit = await _create_unit(ctx, Department, organisation_id, name)
    return DepartmentCreated(unit) if isinstance(unit, Department) else unit


Unit = TypeVar("Unit", Location, Department)


async def _create_unit(
    ctx: Context, kind: type[Unit], organisation_id: str | None, name: str
) -> Unit | Invalid | NotFound | AlreadyExists:
    resource = Resource.LOCATION if kind is Location else Resource.DEPARTMENT
    org = await target_organisation(ctx, resource, organisation_id)
    if isinstance(org, Invalid | NotFound):
        return org
    clean = clean_name(name)
    if isinstance(clean, Invalid):
        return clean
    unit = kind(organisation_id=org, name=clean)
    if not await ctx.db.try_add(unit):
        return AlreadyExists(f"A {resource.value} named {clean!r} exists.", field="name")
    action = AuditAction.LOCATION_CREATED if kind is Location else AuditAction.DEPARTMENT_CREATED
    await audit(ctx, action, unit, organisation_id=org)
    return unit


async def unit_in(
    ctx: Context,
    kind: type[Location] | type[Department],
    value: str | None,
    organisation_id: int,
    field: str,
) -> int | Invalid | NotFound | None:
    """An optional unit id argument that must name a unit of `organisation_id`."""
    pk = parse_optional_id(value, kind.__name__, field)
    if pk is None or isinstance(pk, Invalid | NotFound):
        return pk
    found = await ctx.db.scalar(
        select(kind.id).where(kind.id == pk, kind.organisation_id == organisation_id)
    )
    if found is None:
        assert value is not None
        return NotFound(id=value)
    return pk

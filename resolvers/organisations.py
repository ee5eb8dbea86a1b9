"""Organisations and their units (locations, departments)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from db.models import Department, Location, Organisation
from policies.vocabulary import Action, Resource
from resolvers.common import audit, clean_name, clean_slug, parse_optional_id
from resolvers.context import Context
from resolvers.errors import Forbidden
from resolvers.outcomes import AlreadyExists, Invalid, NotFound


@dataclass(frozen=True)
class OrganisationCreated:
    organisation: Organisation


@dataclass(frozen=True)
class UnitCreated:
    unit: Location | Department


async def create_organisation(
    ctx: Context, *, name: str, slug: str
) -> OrganisationCreated | Invalid | AlreadyExists:
    if not ctx.rules.holds(Resource.ORGANISATION, Action.CREATE):
        raise Forbidden("Only support can create organisations.")
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
        ctx,
        action="organisation.create",
        subject_type="Organisation",
        subject_id=organisation.id,
        organisation_id=organisation.id,
        details={"name": clean, "slug": clean_s},
    )
    return OrganisationCreated(organisation)


async def target_organisation(
    ctx: Context, resource: Resource, organisation_id: str | None
) -> int | Invalid | NotFound:
    """The organisation a create acts in: the given one (support) or the caller's own.

    Raises Forbidden when the caller may not create `resource` there.
    """
    if not ctx.rules.holds(resource, Action.CREATE):
        raise Forbidden(f"You may not create {resource.value} records.")
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
        raise Forbidden(f"You may not create {resource.value} records in this organisation.")
    return pk


async def create_unit(
    ctx: Context, *, kind: type[Location] | type[Department], organisation_id: str | None, name: str
) -> UnitCreated | Invalid | NotFound | AlreadyExists:
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
    await audit(
        ctx,
        action=f"{resource.value}.create",
        subject_type=kind.__name__,
        subject_id=unit.id,
        organisation_id=org,
        details={"name": clean},
    )
    return UnitCreated(unit)


async def units_of(
    ctx: Context, kind: type[Location] | type[Department], organisation_id: int
) -> Sequence[Location | Department]:
    resource = Resource.LOCATION if kind is Location else Resource.DEPARTMENT
    stmt = (
        select(kind)
        .where(kind.organisation_id == organisation_id, ctx.rules.where(resource))
        .order_by(kind.name, kind.id)
    )
    return await ctx.db.scalars(stmt)  # type: ignore[arg-type]


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

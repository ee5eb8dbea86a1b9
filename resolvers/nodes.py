"""`node(id:)`: any object by global id, through the same scopes as every list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, select

from db.models import (
    Allocation,
    ApprenticeRecord,
    AuditEvent,
    Department,
    Evidence,
    Location,
    Organisation,
    RecordAssignment,
    User,
)
from policies.vocabulary import Resource
from resolvers.context import Context
from resolvers.ids import MalformedId, decode_id
from resolvers.people import visible_user

# GraphQL type name → (table, resource whose read scope guards it)
SCOPED: dict[str, tuple[Any, Resource]] = {
    "Organisation": (Organisation, Resource.ORGANISATION),
    "Location": (Location, Resource.LOCATION),
    "Department": (Department, Resource.DEPARTMENT),
    "ApprenticeRecord": (ApprenticeRecord, Resource.RECORD),
    "Assignment": (RecordAssignment, Resource.ASSIGNMENT),
    "Allocation": (Allocation, Resource.ALLOCATION),
    "Evidence": (Evidence, Resource.EVIDENCE),
    "AuditEvent": (AuditEvent, Resource.AUDIT_EVENT),
}


async def node(ctx: Context, *, id: str) -> tuple[str, Any] | None:
    """(type name, row) when the caller can see it; None when it does not exist for them."""
    try:
        type_name, pk = decode_id(id)
    except MalformedId:
        return None
    if type_name == "Learner":
        row = await ctx.loaders.learner.load(pk)
        return None if row is None else (type_name, row)
    if type_name == "User":
        model: Any = User
        where: ColumnElement[bool] = visible_user(ctx)
    elif type_name in SCOPED:
        model, resource = SCOPED[type_name]
        where = ctx.rules.where(resource)
    else:
        return None
    found = await ctx.db.scalar(select(model).where(model.id == pk, where))
    return None if found is None else (type_name, found)

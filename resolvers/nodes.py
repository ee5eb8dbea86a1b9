"""`node(id:)`: any object by global id, through the same scopes as every list."""

from __future__ import annotations

from functools import partial
from typing import Any

from strawberry.dataloader import DataLoader

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
from resolvers.loaders import by_id
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


def _loader(ctx: Context, type_name: str) -> DataLoader[int, Any] | None:
    """A batching loader per type, so that many ids in one operation cost one statement each."""
    loaders = ctx.loaders
    if type_name == "Learner":
        return loaders.learner
    if type_name not in loaders.nodes:
        if type_name == "User":
            loaders.nodes[type_name] = by_id(ctx, User, lambda: visible_user(ctx))
        elif type_name in SCOPED:
            model, resource = SCOPED[type_name]
            loaders.nodes[type_name] = by_id(ctx, model, partial(ctx.rules.where, resource))
        else:
            return None
    return loaders.nodes[type_name]


async def node(ctx: Context, *, id: str) -> tuple[str, Any] | None:
    """(type name, row) when the caller can see it; None when it does not exist for them."""
    try:
        type_name, pk = decode_id(id)
    except MalformedId:
        return None
    loader = _loader(ctx, type_name)
    if loader is None:
        return None
    found = await loader.load(pk)
    return None if found is None else (type_name, found)

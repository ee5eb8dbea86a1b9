"""`node(id:)`: any object by global id, through the same scopes as every list."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from strawberry.dataloader import DataLoader

from resolvers.context import Context
from resolvers.ids import MalformedId, decode_id

# How each type is looked up by primary key: a request's scoped, batching loader.
Lookup = Callable[[Context], DataLoader[int, Any]]


async def node(ctx: Context, *, id: str, lookups: Mapping[str, Lookup]) -> tuple[str, Any] | None:
    """(type name, row) when the caller can see it; None when it does not exist for them."""
    try:
        type_name, pk = decode_id(id)
    except MalformedId:
        return None
    lookup = lookups.get(type_name)
    if lookup is None:
        return None
    found = await lookup(ctx).load(pk)
    return None if found is None else (type_name, found)

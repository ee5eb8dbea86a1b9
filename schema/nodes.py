"""`node(id:)`: any object by global id."""

from __future__ import annotations

import strawberry

from resolvers import nodes
from schema.context import Info
from schema.permissions import signed_in
from schema.types import Node, node_from_row


@strawberry.type
class NodeQuery:
    @strawberry.field(
        description="Any object by global id; null when missing or not visible to the caller.",
        extensions=signed_in(),
    )
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        found = await nodes.node(info.context, id=id)
        return None if found is None else node_from_row(*found)

"""Fields that show related rows, from a relation declared in resolvers/relations.py."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.extensions import FieldExtension

from resolvers.relations import Relation, related
from schema.context import Info
from schema.nodes import as_graphql


def relation(source: Relation, *, description: str, extensions: list[FieldExtension]) -> Any:
    """A field resolved by walking `source` from the parent's row; its type is the attribute's
    annotation. The compiled executor reads the same declaration from the field's metadata."""

    async def resolve(root: Any, info: Info) -> object:
        return as_graphql(await related(info.context, source, root.row))

    del resolve.__annotations__["return"]  # the type is the class attribute's annotation
    return strawberry.field(
        resolver=resolve,
        description=description,
        extensions=extensions,
        metadata={"relation": source},
    )

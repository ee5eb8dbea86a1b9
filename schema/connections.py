"""Relay connections over keyset pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Generic, TypeVar

import strawberry

from resolvers.pagination import Page
from schema.cost import counted

N = TypeVar("N")

# The arguments every connection takes, described once.
First = Annotated[
    int | None,
    strawberry.argument(
        description="How many items to return, from the start or from `after`: 0 to 500; "
        "50 when not given."
    ),
]
After = Annotated[
    str | None,
    strawberry.argument(
        description="The `endCursor` of the page before (a cursor this list issued); the list's "
        "start when not given."
    ),
]
FILTER = strawberry.argument(
    description="Narrow the list; every condition goes through the caller's scopes, so a filter "
    "never reveals a row the caller could not list. Nothing narrowed when not given."
)


@strawberry.type(description="Where a page stands in its list.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items follow this page.")
    has_previous_page: bool = strawberry.field(description="Items precede this page.")
    start_cursor: str | None = strawberry.field(description="Cursor of the first item.")
    end_cursor: str | None = strawberry.field(
        description="Cursor of the last item; pass as `after`."
    )


@strawberry.type(description="One item of a page, with its cursor.")
class Edge(Generic[N]):
    cursor: str = strawberry.field(description="Opaque position; pass as `after`.")
    node: N = strawberry.field(description="The item.")


@strawberry.type(description="A page of a list, with the list's size.")
class Connection(Generic[N]):
    edges: list[Edge[N]] = strawberry.field(description="The items of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page stands.")
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(
        description="How many items the whole list has, for the caller.", metadata=counted()
    )
    async def total_count(self) -> int:
        return await self.count()

    @classmethod
    def from_page(cls, page: Page[Any], project: Callable[[Any], N]) -> Connection[N]:
        edges = [
            Edge(cursor=cursor, node=project(row))
            for row, cursor in zip(page.rows, page.cursors, strict=True)
        ]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=page.cursors[0] if page.cursors else None,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
            count=page.count,
        )

"""Relay connections over keyset pages."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Generic, TypeVar

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

from resolvers import capabilities
from resolvers.pagination import Direction, ListSource, OrderBy, Page, page_of, rows_of
from schema.context import Info
from schema.cost import counted
from schema.derive import input_of, plain

N = TypeVar("N")

# The arguments every connection takes, described once.
First = Annotated[
    int | None,
    strawberry.argument(
        description="How many items to return, from the start or from `after`: 0 to 500; "
        "when not given (and `last` is not either): 50."
    ),
]
After = Annotated[
    str | None,
    strawberry.argument(
        description="The `endCursor` of the page before (a cursor this list issued in this "
        "order); the list's start when not given."
    ),
]
Last = Annotated[
    int | None,
    strawberry.argument(
        description="How many items to return from the end, or from just before `before`: 0 to "
        "500, not together with `first`; when not given, `first` applies."
    ),
]
Before = Annotated[
    str | None,
    strawberry.argument(
        description="The `startCursor` of the page after (a cursor this list issued in this "
        "order); the list's end when not given."
    ),
]
ORDER_BY = strawberry.argument(
    description="The order: at most one sort (more is INVALID); the list's own order when not "
    "given. Cursors belong to the list and order they were issued in."
)
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


strawberry.enum(
    Direction,
    name="OrderDirection",
    description="Which way a list is sorted.",
)
for _value in Direction.__strawberry_definition__.values:  # type: ignore[attr-defined]
    _value.description = {
        "ASC": "Smallest first (A to Z, oldest first).",
        "DESC": "Largest first (Z to A, newest first).",
    }[_value.name]

# Order input types by name: lists of one node type share them (and their sorts).
_ORDERS: dict[str, tuple[type, tuple[str, ...]]] = {}


def order_input(name: str, source: ListSource[Any, Any]) -> type:
    """`<name>Order { field: <name>OrderField!, direction: OrderDirection! = ASC }`, built once
    per name from the source's sorts."""
    fields = tuple(s.field for s in source.sorts)
    if name in _ORDERS:
        found, known = _ORDERS[name]
        assert known == fields, f"{name}: lists sorted differently share a name"
        return found
    members = enum.Enum(f"{name}OrderField", {f: f for f in fields})  # type: ignore[misc]
    strawberry.enum(
        members,
        name=f"{name}OrderField",
        description=f"What a list of {name} items can be sorted by (ties: by id, same way).",
    )
    descriptions = {s.field: s.description for s in source.sorts}
    for value in members.__strawberry_definition__.values:  # type: ignore[attr-defined]
        value.description = descriptions[value.name]
    namespace: dict[str, Any] = {
        "__annotations__": {"field": members, "direction": Direction},
        "field": strawberry.field(description="The sort."),
        "direction": strawberry.field(
            default=Direction.ASC, description="Which way; ascending when not given."
        ),
    }
    cls = strawberry.input(
        type(f"{name}Order", (), namespace),
        name=f"{name}Order",
        description=f"One order for a list of {name} items.",
    )
    _ORDERS[name] = (cls, fields)
    return cls


def paging(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A connection field's paging arguments (as Python values) for `page_of`/`window`."""
    order_by = kwargs.get("order_by")
    return {
        "first": kwargs.get("first"),
        "after": kwargs.get("after"),
        "last": kwargs.get("last"),
        "before": kwargs.get("before"),
        "order_by": None
        if order_by is None
        else [OrderBy(o.field.value, Direction(o.direction)) for o in order_by],
    }


def _selects(selections: Any, path: tuple[str, ...]) -> bool:
    """Whether the selections reach the field at `path` (through fragments too)."""
    for s in selections:
        if isinstance(s, FragmentSpread | InlineFragment):
            if _selects(s.selections, path):
                return True
        elif (
            isinstance(s, SelectedField)
            and s.name == path[0]
            and (len(path) == 1 or _selects(s.selections, path[1:]))
        ):
            return True
    return False


def shows_capabilities(info: Info) -> bool:
    """Whether a connection's nodes show `viewerCan`."""
    return any(_selects(f.selections, ("edges", "node", "viewerCan")) for f in info.selected_fields)


PAGING = frozenset({"first", "after", "last", "before", "order_by", "filter"})


def connection(
    source: ListSource[Any, Any],
    node: Any,
    *,
    order: str,
    description: str,
    extensions: list[FieldExtension],
    filter: type | None = None,
    arguments: Mapping[str, Any] | None = None,
    project: Callable[[Any], Any] | None = None,
    rows: Callable[[Any], Any] | None = None,
    deprecation_reason: str | None = None,
) -> Any:
    """A Relay connection field over a list source: `first/after`, `last/before`, `orderBy`,
    `filter` (the declaration in resolvers/, when the list has one) and the list's other
    `arguments` (name → annotation), passed to the source's `prepare`. Both executors read
    the same declaration (the compiled one from the field's metadata). `rows`: the parent
    gives the rows (a statement from the parent object), not the source."""
    order_type = order_input(order, source)
    shown = project or node.from_row
    extra = dict(arguments or {})

    async def resolve(root: Any, info: Info, **kwargs: Any) -> Any:
        wanted = plain(kwargs.get("filter"), filter) if filter is not None else None
        others = {k: v for k, v in kwargs.items() if k not in PAGING}
        given = None if rows is None else rows(root)
        # Flags shown on the page are computed by the page's own statement (of the source's
        # own table: a parent's rows may come from another statement).
        flags = capabilities.page_columns(info.context, source.model) if rows is None else []
        if flags and not shows_capabilities(info):
            flags = []
        page = await page_of(
            info.context,
            source,
            wanted,
            arguments=others,
            rows=given,
            with_columns=flags,
            **paging(kwargs),
        )
        if flags:
            capabilities.prime(info.context, source.model, [r.id for r in page.rows], page.extra)
        return Connection.from_page(page, shown)

    parameters = [
        inspect.Parameter("root", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("info", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Info),
    ]
    keyword = inspect.Parameter.KEYWORD_ONLY
    for name, annotation in extra.items():
        parameters.append(inspect.Parameter(name, keyword, annotation=annotation))
    order_by = Annotated[list[order_type] | None, ORDER_BY]  # type: ignore[valid-type]
    # No schema defaults: a page of 50 from the start when none of them is given.
    parameters += [
        inspect.Parameter("first", keyword, annotation=First),
        inspect.Parameter("after", keyword, annotation=After),
        inspect.Parameter("last", keyword, annotation=Last),
        inspect.Parameter("before", keyword, annotation=Before),
        inspect.Parameter("order_by", keyword, annotation=order_by),
    ]
    if filter is not None:
        filter_type = Annotated[input_of(filter) | None, FILTER]  # type: ignore[valid-type]
        parameters.append(inspect.Parameter("filter", keyword, annotation=filter_type))
    resolve.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=Connection[node]
    )
    metadata: dict[str, Any] = {"list": source} if rows is None else {}
    if filter is not None:
        metadata["filter"] = filter
    return strawberry.field(
        resolver=resolve,
        description=description,
        extensions=extensions,
        metadata=metadata,
        deprecation_reason=deprecation_reason,
    )


def items(
    source: ListSource[Any, Any],
    node: Any,
    *,
    description: str,
    extensions: list[FieldExtension],
    arguments: Mapping[str, Any] | None = None,
) -> Any:
    """A plain list field (not paged: lists that stay short, e.g. an organisation's rules)
    over a list source, in its own order, with the list's `arguments` (name → annotation)
    passed to the source's `prepare`. Both executors read the same declaration."""

    async def resolve(root: Any, info: Info, **kwargs: Any) -> Any:
        return [node.from_row(r) for r in await rows_of(info.context, source, arguments=kwargs)]

    parameters = [
        inspect.Parameter("root", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("info", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Info),
    ]
    for name, annotation in (arguments or {}).items():
        parameters.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
        )
    resolve.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=list[node]
    )
    return strawberry.field(
        resolver=resolve, description=description, extensions=extensions, metadata={"items": source}
    )

"""Keyset pagination: a page costs the same however far into the list it is, in either
direction and in every order a list offers."""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import ColumnElement, Select, func, literal, select, tuple_

from policies.vocabulary import Resource
from resolvers.context import Context, Limits
from resolvers.errors import InvalidInput

T = TypeVar("T")
F = TypeVar("F")

# A filter's checked values, by name: absent when not asked for. Booleans change the shape of
# the statement; every other value is a bound parameter.
FilterValues = Mapping[str, Any]


class Direction(enum.StrEnum):
    ASC = "ASC"
    DESC = "DESC"


@dataclass(frozen=True)
class Sort:
    """One order a list can be read in: its leading columns, ties broken by the row's id."""

    field: str  # the value of the list's <Type>OrderField enum
    columns: tuple[Any, ...]
    description: str


@dataclass(frozen=True)
class OrderBy:
    """An order a caller asks for: a sort of the list, and its direction."""

    field: str
    direction: Direction = Direction.ASC


def _no_filter(_limits: Limits, _filter: Any, _arguments: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def _no_conditions(_ctx: Context, _values: FilterValues) -> list[ColumnElement[bool]]:
    return []


@dataclass(frozen=True)
class ListSource(Generic[T, F]):
    """A list the API pages through: its table, the scope guarding it, its filter and orders.

    Declared once, read by both executors: `prepare` checks a filter (and the field's other
    arguments, by name) against the limits and gives its values (raising InvalidInput),
    `conditions` turns values into SQL — the values may be bound parameters, so that a compiled
    plan reuses one statement for every caller of its shape. `sorts` are the orders the list
    offers, the first its default (in `direction`).
    """

    name: str  # the list's name in its cursors, and of its order types in the SDL
    model: type[T]
    resource: Resource
    sorts: tuple[Sort, ...]
    direction: Direction = Direction.ASC  # of the default order
    prepare: Callable[[Limits, F | None, Mapping[str, Any]], dict[str, Any]] = field(
        default=_no_filter
    )
    conditions: Callable[[Context, FilterValues], list[ColumnElement[bool]]] = field(
        default=_no_conditions
    )

    def sort(self, name: str) -> Sort:
        found = next((s for s in self.sorts if s.field == name), None)
        if found is None:
            raise InvalidInput(f"{self.name} cannot be sorted by {name}.", field="orderBy")
        return found

    def keys(self, sort: Sort) -> tuple[Any, ...]:
        """The keyset of an order: its columns, then the id."""
        return (*sort.columns, getattr(self.model, "id"))  # noqa: B009 - a mapped class

    def statement(self, ctx: Context, values: FilterValues) -> Select[T]:
        """The caller's rows of the list, filtered."""
        return select(self.model).where(
            ctx.rules.where(self.resource), *self.conditions(ctx, values)
        )


@dataclass(frozen=True)
class Window:
    """Which page of a list a request asks for: the order, the direction it reads in, how many
    rows and from which cursors. Checked once, for both executors."""

    sort: Sort
    descending: bool
    size: int
    forward: bool  # first/after; False: last/before (the page ends at `before`)
    after: tuple[Any, ...] | None
    before: tuple[Any, ...] | None
    tag: str  # which list and order the cursors belong to
    types: tuple[type, ...]  # of the keys' values

    def shape(self) -> tuple[Any, ...]:
        """What changes the statement (not the values: they are bound)."""
        return (
            self.sort.field,
            self.descending,
            self.forward,
            self.size == 0,
            self.after is not None,
            self.before is not None,
        )

    @property
    def reads_descending(self) -> bool:
        """The order rows are read in: a backward page reads from its end."""
        return self.descending == self.forward

    def has_next(self, more: bool) -> bool:
        return more if self.forward else self.before is not None

    def has_previous(self, more: bool) -> bool:
        return self.after is not None if self.forward else more


def window(
    limits: Limits,
    source: ListSource[Any, Any],
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    order_by: Sequence[OrderBy] | None = None,
) -> Window:
    """The page a list's arguments ask for; INVALID for arguments that name none."""
    if first is not None and last is not None:
        raise InvalidInput("Give first or last, not both.", field="last")
    if order_by is not None and len(order_by) > 1:
        raise InvalidInput(f"{source.name} is sorted by one field at a time.", field="orderBy")
    if order_by:
        sort = source.sort(order_by[0].field)
        descending = order_by[0].direction is Direction.DESC
    else:
        sort, descending = source.sorts[0], source.direction is Direction.DESC
    tag = f"{source.name}.{sort.field}.{'DESC' if descending else 'ASC'}"
    types = tuple(c.type.python_type for c in source.keys(sort))
    forward = last is None
    size = (
        page_size(limits, last, "last") if last is not None else page_size(limits, first, "first")
    )
    return Window(
        sort=sort,
        descending=descending,
        size=size,
        forward=forward,
        after=None if after is None else tuple(decode_cursor(after, tag, types, field="after")),
        before=None if before is None else tuple(decode_cursor(before, tag, types, field="before")),
        tag=tag,
        types=types,
    )


def page_size(limits: Limits, given: int | None, name: str = "first") -> int:
    """How many items a page argument asks for: the default when not given; INVALID outside
    0 to the largest page."""
    if given is None:
        return limits.default_page_size
    if given < 0 or given > limits.max_page_size:
        raise InvalidInput(f"{name} must be between 0 and {limits.max_page_size}.", field=name)
    return given


def windowed(stmt: Select[T], keys: Sequence[Any], w: Window, *bounds: Any) -> Select[T]:
    """`stmt` narrowed to the window's cursors and read in its order (without the limit).
    `bounds` are the after and before key values as SQL (bound parameters or literals)."""
    after, before = bounds if bounds else (None, None)
    row = tuple_(*keys)
    if after is not None:
        stmt = stmt.where(row < tuple_(*after) if w.descending else row > tuple_(*after))
    if before is not None:
        stmt = stmt.where(row > tuple_(*before) if w.descending else row < tuple_(*before))
    return stmt.order_by(*(k.desc() for k in keys) if w.reads_descending else keys)


async def page_of(
    ctx: Context,
    source: ListSource[T, F],
    filter: F | None,
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    order_by: Sequence[OrderBy] | None = None,
    arguments: Mapping[str, Any] | None = None,
    rows: Select[T] | None = None,
    with_columns: Sequence[ColumnElement[Any]] = (),
) -> Page[T]:
    """One page of a list source for the caller (of `rows` instead of the source's statement,
    when a parent gives the rows: a rule preview's learners). `with_columns`: values of each
    row the same statement computes too (`Page.extra`)."""
    w = window(
        ctx.limits, source, first=first, after=after, last=last, before=before, order_by=order_by
    )
    if rows is None:
        rows = source.statement(ctx, source.prepare(ctx.limits, filter, arguments or {}))
    return await read_page(ctx, rows, source.keys(w.sort), w, with_columns)


async def rows_of(
    ctx: Context,
    source: ListSource[T, F],
    filter: F | None = None,
    *,
    arguments: Mapping[str, Any] | None = None,
) -> list[T]:
    """Every row of a list that is not paged (a plain list field), in its own order."""
    rows = source.statement(ctx, source.prepare(ctx.limits, filter, arguments or {}))
    keys = source.keys(source.sorts[0])
    descending = source.direction is Direction.DESC
    return list(
        await ctx.db.scalars(rows.order_by(*(k.desc() for k in keys) if descending else keys))
    )


@dataclass
class Page(Generic[T]):
    rows: list[T]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    count: Callable[[], Awaitable[int]]
    extra: list[tuple[Any, ...]] = field(default_factory=list)  # `with_columns`, per row


async def read_page(
    ctx: Context,
    stmt: Select[T],
    keys: Sequence[Any],
    w: Window,
    with_columns: Sequence[ColumnElement[Any]] = (),
) -> Page[T]:
    """The window's page of `stmt`, whose rows are ordered by `keys` (unique: the last is the
    id), with the values of `with_columns` for each row."""
    # Bound with each column's type, so that times compare as the column stores them.
    bounds = [
        None if values is None else [literal(v, k.type) for v, k in zip(values, keys, strict=True)]
        for values in (w.after, w.before)
    ]

    async def count() -> int:
        total = select(func.count()).select_from(stmt.order_by(None).subquery())
        return int((await ctx.db.execute(total)).scalar_one())

    if w.size == 0:
        return Page([], [], w.has_next(False), w.has_previous(False), count)
    page = windowed(stmt, keys, w, *bounds).limit(w.size + 1)
    extra: list[tuple[Any, ...]] = []
    if with_columns:
        found = (await ctx.db.execute(page.add_columns(*with_columns))).all()
        rows = [r[0] for r in found]
        extra = [tuple(r[1:]) for r in found[: w.size]]
    else:
        rows = list(await ctx.db.scalars(page))
    more = len(rows) > w.size
    rows = rows[: w.size]
    if not w.forward:
        rows.reverse()
        extra.reverse()
    names = [k.key for k in keys]
    return Page(
        rows=rows,
        cursors=[encode_cursor(w.tag, [getattr(r, n) for n in names]) for r in rows],
        has_next_page=w.has_next(more),
        has_previous_page=w.has_previous(more),
        count=count,
        extra=extra,
    )


def encode_cursor(tag: str, values: Sequence[Any]) -> str:
    """A row's position in a list read in one order (`tag`)."""
    plain = [tag, *(v.isoformat() if isinstance(v, datetime) else v for v in values)]
    return base64.urlsafe_b64encode(orjson.dumps(plain)).decode().rstrip("=")


def decode_cursor(cursor: str, tag: str, types: Sequence[type], *, field: str) -> list[Any]:
    """The key values of a cursor this list gave out in this order; INVALID otherwise (another
    list's, another order's, made up or tampered with)."""
    foreign = InvalidInput("The cursor is not one this list gave out in this order.", field=field)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise foreign from exc
    if not isinstance(values, list) or len(values) != len(types) + 1 or values[0] != tag:
        raise foreign
    decoded = [_as_key(v, t) for v, t in zip(values[1:], types, strict=True)]
    if not all(type(v) is t and _in_range(v) for v, t in zip(decoded, types, strict=True)):
        raise foreign
    return decoded


def _as_key(value: Any, kind: type) -> Any:
    """A cursor's JSON value as the key column's type (times travel as ISO 8601 text)."""
    if kind is not datetime:
        return value
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _in_range(value: Any) -> bool:
    """A value a keyset column can hold: a 64-bit integer, or text without NUL."""
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, str):
        return len(value) <= 1000 and "\x00" not in value
    return True


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_pattern(limits: Limits, search: str | None) -> str | None:
    """The LIKE pattern of a search term (None for no term, or only whitespace). The term is
    what is left without the whitespace around it, and may be at most `max_search_length`
    characters: every row a scan reads is matched against the whole pattern, so each character
    more costs every such row more."""
    term = (search or "").strip()
    if not term:
        return None
    if len(term) > limits.max_search_length:
        raise InvalidInput(
            f"search may be at most {limits.max_search_length} characters.", field="search"
        )
    return like_pattern(term)


def search_of(in_filter: str | None, argument: str | None) -> str | None:
    """The search asked for: `filter.search`, or the former top-level `search` argument a list
    still takes; giving both is INVALID."""
    if in_filter is not None and argument is not None:
        raise InvalidInput(
            "Give filter.search only: the search argument is its former place.", field="search"
        )
    return in_filter if in_filter is not None else argument


def like_pattern(search: str) -> str:
    """The LIKE pattern of a search for text containing `search`."""
    return f"%{escape_like(search)}%"


def matches(column: Any, pattern: Any) -> ColumnElement[bool]:
    """The column matches a LIKE pattern from `like_pattern`, ignoring case."""
    return column.ilike(pattern, escape="\\")  # type: ignore[no-any-return]

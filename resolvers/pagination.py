"""Keyset pagination: a page costs the same however far into the list it is."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import ColumnElement, Select, func, literal, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from policies.vocabulary import Resource
from resolvers.context import Context, Limits
from resolvers.errors import InvalidInput

T = TypeVar("T")
F = TypeVar("F")

# A filter's checked values, by name: absent when not asked for. Booleans change the shape of
# the statement; every other value is a bound parameter.
FilterValues = Mapping[str, Any]


def _no_filter(_limits: Limits, _filter: Any) -> dict[str, Any]:
    return {}


def _no_conditions(_ctx: Context, _values: FilterValues) -> list[ColumnElement[bool]]:
    return []


@dataclass(frozen=True)
class ListSource(Generic[T, F]):
    """A list the API pages through: its table, the scope guarding it, its filter and its order.

    Declared once, read by both executors: `prepare` checks a filter against the limits and
    gives its values (raising InvalidInput), `conditions` turns values into SQL — the values
    may be bound parameters, so that a compiled plan reuses one statement for every caller of
    its shape.
    """

    model: type[T]
    resource: Resource
    order: tuple[Any, ...]  # unique, ascending: the keyset
    prepare: Callable[[Limits, F | None], dict[str, Any]] = field(default=_no_filter)
    conditions: Callable[[Context, FilterValues], list[ColumnElement[bool]]] = field(
        default=_no_conditions
    )

    @property
    def key_types(self) -> tuple[type, ...]:
        return tuple(column.type.python_type for column in self.order)

    def statement(self, ctx: Context, values: FilterValues) -> Select[T]:
        """The caller's rows of the list, filtered."""
        return select(self.model).where(
            ctx.rules.where(self.resource), *self.conditions(ctx, values)
        )

    def key(self, row: Any) -> tuple[Any, ...]:
        return tuple(getattr(row, column.key) for column in self.order)


async def page_of(
    ctx: Context,
    source: ListSource[T, F],
    filter: F | None,
    *,
    first: int | None,
    after: str | None,
) -> Page[T]:
    """One page of a list source for the caller."""
    return await paginate(
        ctx,
        source.statement(ctx, source.prepare(ctx.limits, filter)),
        order=source.order,
        key=source.key,
        key_types=source.key_types,
        first=first,
        after=after,
    )


@dataclass
class Page(Generic[T]):
    rows: list[T]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    count: Callable[[], Awaitable[int]]


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(orjson.dumps(plain)).decode().rstrip("=")


def decode_cursor(cursor: str, types: Sequence[type]) -> list[Any]:
    foreign = InvalidInput("The cursor is not one this API gave out.", field="after")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise foreign from exc
    if not isinstance(values, list) or len(values) != len(types):
        raise foreign
    decoded = [_as_key(v, t) for v, t in zip(values, types, strict=True)]
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


def page_size(ctx: Context, first: int | None) -> int:
    return page_size_of(ctx.limits, first)


def page_size_of(limits: Limits, first: int | None) -> int:
    if first is None:
        return limits.default_page_size
    if first < 0 or first > limits.max_page_size:
        raise InvalidInput(f"first must be between 0 and {limits.max_page_size}.", field="first")
    return first


async def paginate(
    ctx: Context,
    stmt: Select[T],
    *,
    order: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]],
    key: Callable[[T], Sequence[Any]],
    key_types: Sequence[type],
    first: int | None,
    after: str | None,
    descending: bool = False,
) -> Page[T]:
    """One page of `stmt` in `order` (unique; ascending, or descending on every column),
    starting after `after`."""
    size = page_size(ctx, first)
    filtered = stmt
    if after is not None:
        values = decode_cursor(after, key_types)
        # Bound with each column's type, so that times compare as the column stores them.
        bound = tuple_(*(literal(v, c.type) for v, c in zip(values, order, strict=True)))
        keys = tuple_(*order)
        filtered = stmt.where(keys < bound if descending else keys > bound)

    async def count() -> int:
        total = select(func.count()).select_from(stmt.order_by(None).subquery())
        return int((await ctx.db.execute(total)).scalar_one())

    if size == 0:
        return Page([], [], False, after is not None, count)
    ordering = [c.desc() for c in order] if descending else order
    rows = list(await ctx.db.scalars(filtered.order_by(*ordering).limit(size + 1)))
    has_next = len(rows) > size
    rows = rows[:size]
    return Page(
        rows=rows,
        cursors=[encode_cursor(key(row)) for row in rows],
        has_next_page=has_next,
        has_previous_page=after is not None,
        count=count,
    )


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

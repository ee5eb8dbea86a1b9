"""Keyset pagination: a page costs the same however far into the list it is."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, literal, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from resolvers.context import Context
from resolvers.errors import InvalidInput

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    rows: list[T]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    count: Callable[[], Awaitable[int]]


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, types: Sequence[type]) -> list[Any]:
    refused = InvalidInput("The cursor is not one this API gave out.", field="after")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise refused from exc
    if not isinstance(values, list) or len(values) != len(types):
        raise refused
    decoded = [_decode(v, t) for v, t in zip(values, types, strict=True)]
    if any(v is None for v in decoded):
        raise refused
    return decoded


def _decode(value: Any, kind: type) -> Any:
    """A cursor value of the expected type and range, or None."""
    if kind is datetime:
        if not isinstance(value, str) or len(value) > 40:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return moment if moment.tzinfo is not None else None
    return value if type(value) is kind and _in_range(value) else None


def _in_range(value: Any) -> bool:
    """A value a keyset column can hold: a 64-bit integer, or text without NUL."""
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, str):
        return len(value) <= 1000 and "\x00" not in value
    return True


def page_size(ctx: Context, first: int | None) -> int:
    if first is None:
        return ctx.limits.default_page_size
    if first < 0 or first > ctx.limits.max_page_size:
        raise InvalidInput(
            f"first must be between 0 and {ctx.limits.max_page_size}.", field="first"
        )
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
) -> Page[T]:
    """One page of `stmt` in `order` (unique, ascending), starting after `after`."""
    size = page_size(ctx, first)
    filtered = stmt
    if after is not None:
        values = decode_cursor(after, key_types)
        # Each value bound with its column's type (UTC datetimes are stored per database).
        bound = [
            literal(v, type_=getattr(c, "type", None)) for v, c in zip(values, order, strict=True)
        ]
        filtered = stmt.where(tuple_(*order) > tuple_(*bound))

    async def count() -> int:
        total = select(func.count()).select_from(stmt.order_by(None).subquery())
        return int((await ctx.db.execute(total)).scalar_one())

    if size == 0:
        return Page([], [], False, after is not None, count)
    rows = list(await ctx.db.scalars(filtered.order_by(*order).limit(size + 1)))
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


def contains(column: Any, search: str) -> ColumnElement[bool]:
    pattern = f"%{escape_like(search.strip())}%"
    return column.ilike(pattern, escape="\\")  # type: ignore[no-any-return]

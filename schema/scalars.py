"""Scalars whose parsing the API decides itself, so that bad input is an INVALID answer."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from strawberry.types.scalar import ScalarDefinition

from resolvers.errors import InvalidInput


def parse_datetime(value: object) -> datetime:
    """An ISO 8601 date and time, as UTC (no offset given: UTC)."""
    if not isinstance(value, str):
        raise InvalidInput("A date and time is an ISO 8601 string, e.g. 2027-01-31T17:00:00Z.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"Not an ISO 8601 date and time: {value[:64]!r}.") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidInput("The date and time is out of range.") from exc


DateTime = strawberry.scalar(
    name="DateTime",
    description="Date with time (isoformat)",
    serialize=datetime.isoformat,
    parse_value=parse_datetime,
)

SCALAR_MAP: dict[object, ScalarDefinition] = {datetime: DateTime}

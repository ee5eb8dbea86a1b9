"""Input cleaning, id parsing and the audit trail, shared by every use case."""

from __future__ import annotations

import enum
import re
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, Select, case, exists, select

from db.models import (
    Allocation,
    ApiKey,
    ApprenticeRecord,
    AssignmentRole,
    AutoAllocationRule,
    Evidence,
    Learner,
    Licence,
    RecordAssignment,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)
from policies.vocabulary import Action, Resource, refusal
from resolvers.context import Context
from resolvers.errors import Forbidden, InvalidInput
from resolvers.ids import MalformedId, decode_id, type_name_of
from resolvers.outcomes import Invalid, NotFound
from resolvers.pagination import Sort

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_NAME = 200


class Unchanged(enum.Enum):
    """An optional input field left out: keep what is there."""

    UNCHANGED = "UNCHANGED"


UNCHANGED: Final = Unchanged.UNCHANGED


def parse_id(value: str, type_name: str, field: str) -> int | Invalid | NotFound:
    """A well-formed id of the expected type, or the typed reason it is not."""
    try:
        found, pk = decode_id(value)
    except MalformedId:
        return Invalid(f"{field} is not a valid id.", field=field)
    if found != type_name:
        return NotFound(id=value)
    return pk


def parse_optional_id(
    value: str | None, type_name: str, field: str
) -> int | Invalid | NotFound | None:
    return None if value is None else parse_id(value, type_name, field)


def filter_id(value: str | None, type_name: str, field: str) -> int | None:
    """Ids in query filters: malformed is an input error; another type matches nothing."""
    parsed = parse_optional_id(value, type_name, field)
    if isinstance(parsed, Invalid):
        raise InvalidInput(parsed.message, field=field)
    if isinstance(parsed, NotFound):
        return -1
    return parsed


def clean_name(value: str, field: str = "name", limit: int = MAX_NAME) -> str | Invalid:
    cleaned = " ".join(value.split())
    if not cleaned:
        return Invalid(f"{field} must not be empty.", field=field)
    if len(cleaned) > limit:
        return Invalid(f"{field} must be at most {limit} characters.", field=field)
    return cleaned


def clean_email(value: str, field: str = "email") -> str | Invalid:
    cleaned = value.strip().lower()
    if len(cleaned) > 320 or not EMAIL.match(cleaned):
        return Invalid(f"{field} is not a valid email address.", field=field)
    return cleaned


MAX_AVATAR_URL = 1000
HOST = re.compile(
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.?|[0-9a-f:.]+"
)


def clean_avatar_url(value: str | None, field: str = "avatarUrl") -> str | Invalid | None:
    """A picture's address: an https URL with a host, at most 1,000 characters. Null or blank
    is None (no picture)."""
    cleaned = (value or "").strip()
    if not cleaned:
        return None
    refused = Invalid(
        f"{field} must be an https URL with a host, at most {MAX_AVATAR_URL} characters.",
        field=field,
    )
    if len(cleaned) > MAX_AVATAR_URL or any(c.isspace() or not c.isprintable() for c in cleaned):
        return refused
    try:
        parts = urlsplit(cleaned)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return refused
    if parts.scheme.lower() != "https" or not host or parts.username or parts.password:
        return refused
    if not HOST.fullmatch(host):  # a name (IDNs in their xn-- form) or an IP address
        return refused
    return cleaned


def clean_slug(value: str, field: str = "slug") -> str | Invalid:
    cleaned = value.strip()
    if not SLUG.match(cleaned):
        return Invalid(
            f"{field} must be 1-64 lower-case letters, digits or inner hyphens.", field=field
        )
    return cleaned


def record_has_assignment(
    ctx: Context, *, role: AssignmentRole | None = None, user: Select[int] | None = None
) -> ColumnElement[bool]:
    """The record (correlated) has an active assignment the caller can see — in `role`, to one
    of `user` — so that a filter never reveals an assignment the caller could not list."""
    clauses = [
        RecordAssignment.record_id == ApprenticeRecord.id,
        RecordAssignment.ended_at.is_(None),
        ctx.rules.where(Resource.ASSIGNMENT),
    ]
    if role is not None:
        clauses.append(RecordAssignment.role == role)
    if user is not None:
        clauses.append(RecordAssignment.user_id.in_(user))
    return exists(select(RecordAssignment.id).where(*clauses))


def learner_has_record(ctx: Context, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """The learner (correlated) has a record the caller can see that meets `conditions`."""
    return exists(
        select(ApprenticeRecord.id).where(
            ApprenticeRecord.learner_id == Learner.id,
            ctx.rules.where(Resource.RECORD),
            *conditions,
        )
    )


# Tables a mutation can act on, and the policy resource guarding each.
TARGETS: dict[type, Resource] = {
    Learner: Resource.LEARNER,
    ApprenticeRecord: Resource.RECORD,
    RecordAssignment: Resource.ASSIGNMENT,
    Allocation: Resource.ALLOCATION,
    Evidence: Resource.EVIDENCE,
    Licence: Resource.LICENCE,
    AutoAllocationRule: Resource.AUTO_ALLOCATION_RULE,
    ApiKey: Resource.API_KEY,
    User: Resource.STAFF,
    WebhookEndpoint: Resource.WEBHOOK_ENDPOINT,
    WebhookDelivery: Resource.WEBHOOK_DELIVERY,
}

M = TypeVar("M")


async def mutation_target(
    ctx: Context,
    value: str,
    model: type[M],
    field: str,
    action: Action,
    resource: Resource | None = None,
) -> M | Invalid | NotFound:
    """The row a mutation acts on: invisible answers NotFound, visible but not permitted raises
    FORBIDDEN. One statement: visibility is the WHERE, permission a computed column. `resource`
    names the scopes where the model's default is not the one (a user as external assessor).
    """
    resource = resource or TARGETS[model]
    pk = parse_id(value, type_name_of(model), field)
    if isinstance(pk, Invalid | NotFound):
        return pk
    table: Any = model
    permitted = case((ctx.rules.where(resource, action), 1), else_=0).label("permitted")
    row: Any = (
        await ctx.db.execute(
            select(table, permitted).where(table.id == pk, ctx.rules.where(resource))
        )
    ).first()
    if row is None:
        return NotFound(id=value)
    if not row[1]:
        raise Forbidden(refusal(resource, action, this=True))
    return row[0]  # type: ignore[no-any-return]


# The orders of every list of learners.
LEARNER_SORTS = (
    Sort("NAME", (Learner.name,), "By name."),
    Sort("CREATED_AT", (Learner.created_at,), "By when they were added."),
)

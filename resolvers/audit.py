"""The audit trail: who did what to which object, when, and from which client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, insert, select

from db.models import ApiKey, AuditAction, AuditEvent, User
from policies.vocabulary import Resource
from resolvers.changes import Event, touched_events, write_changes
from resolvers.context import Context, Limits, LoaderGroup
from resolvers.errors import InvalidInput
from resolvers.ids import GlobalId, MalformedId, decode_id, type_name_of
from resolvers.loaders import scoped
from resolvers.outcomes import doc
from resolvers.pagination import Direction, FilterValues, ListSource, Sort
from resolvers.relations import Ref

ACTOR = Ref(User, "actor_id", unless="api_key_id")  # an API key's events name no person


class AuditLoaders(LoaderGroup):
    event = scoped(AuditEvent, Resource.AUDIT_EVENT)


async def audit(
    ctx: Context,
    action: AuditAction,
    subject: Any,
    *,
    organisation_id: int | None,
    details: dict[str, Any] | None = None,
    touched: Sequence[Any] = (),
) -> None:
    """Record who did what, in the same transaction as the change itself.

    `subject` is the row acted on, or its table when the change spans many rows. `details`
    name other objects by global id only: no raw keys, no emails. `touched`: the other rows
    (or (type name, id) pairs) the action changed, each of which gets its change too.
    """
    await audit_all(ctx, [Entry(action, subject, organisation_id, details, tuple(touched))])


@dataclass(frozen=True)
class Entry:
    """One audit event to write (see `audit`)."""

    action: AuditAction
    subject: Any
    organisation_id: int | None
    details: dict[str, Any] | None = None
    # Other rows, or (type name, id) pairs, the action changed: a change each (see `audit`).
    touched: tuple[Any, ...] = ()


def _named(item: Any) -> tuple[str, int]:
    if isinstance(item, tuple):
        return item[0], item[1]
    return type_name_of(type(item)), item.id


async def audit_all(ctx: Context, entries: Sequence[Entry]) -> None:
    """Record several events in one statement, whatever their number."""
    if not entries:
        return
    me = ctx.me
    subjects = [
        (
            type_name_of(e.subject if isinstance(e.subject, type) else type(e.subject)),
            None if isinstance(e.subject, type) else e.subject.id,
        )
        for e in entries
    ]
    rows = [
        {
            "organisation_id": e.organisation_id,
            "at": ctx.now,
            "actor_id": me.actor_id,
            "api_key_id": me.api_key_id,
            "client": ctx.client,
            "user_agent": ctx.user_agent,
            "action": e.action,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "details": e.details,
        }
        for e, (subject_type, subject_id) in zip(entries, subjects, strict=True)
    ]
    # One statement however many events (insertmanyvalues), their ids back in entry order: each
    # change points at the audit event it comes from. PostgreSQL sorts them by the parameters'
    # order in that one statement; SQLite would insert row by row to do so, but its one writer
    # gives a multi-row INSERT's rows ascending ids in the order of their VALUES.
    if ctx.db.dialect == "postgresql":
        returning = insert(AuditEvent).returning(AuditEvent.id, sort_by_parameter_order=True)
        ids = list((await ctx.db.execute(returning, rows)).scalars())
    else:
        returning = insert(AuditEvent).returning(AuditEvent.id)
        ids = sorted((await ctx.db.execute(returning, rows)).scalars())
    written: list[Event] = []
    for pk, e, (subject_type, subject_id) in zip(ids, entries, subjects, strict=True):
        written.append((pk, e.action, subject_type, subject_id, e.organisation_id, e.details))
        if e.touched:
            touched = [_named(x) for x in e.touched]
            written += touched_events(pk, e.action, e.organisation_id, e.details, touched)
    await write_changes(ctx, ctx.now, written)


@dataclass(frozen=True)
class AuditFilter:
    """Narrow the audit trail."""

    action: AuditAction | None = field(default=None, metadata=doc("Only this kind of change."))
    actor_id: GlobalId | None = field(
        default=None, metadata=doc("Only what this person (a User id) or API key did.")
    )
    subject_id: GlobalId | None = field(default=None, metadata=doc("Only changes to this object."))
    since: datetime | None = field(default=None, metadata=doc("Only changes at or after this."))


def _global_id(value: str, field: str) -> tuple[str, int]:
    try:
        return decode_id(value)
    except MalformedId as exc:
        raise InvalidInput(f"{field} is not a valid id.", field=field) from exc


def _prepare(
    _limits: Limits, f: AuditFilter | None, _arguments: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The filter's checked values; a malformed id is INVALID. An actor is a person (their
    own events, not their keys') or an API key; any other id matches nothing."""
    if f is None:
        return {}
    values: dict[str, Any] = {}
    if f.action is not None:
        values["action"] = f.action
    if f.actor_id is not None:
        type_name, pk = _global_id(f.actor_id, "actorId")
        kind = {"User": "actor_user", "ApiKey": "actor_key"}.get(type_name)
        values.update({kind: pk} if kind is not None else {"actor_none": True})
    if f.subject_id is not None:
        type_name, pk = _global_id(f.subject_id, "subjectId")
        values.update(subject_type=type_name, subject=pk)
    if f.since is not None:
        values["since"] = f.since
    return values


def _conditions(ctx: Context, v: FilterValues) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if "action" in v:
        found.append(AuditEvent.action == v["action"])
    if "actor_user" in v:
        found.append(and_(AuditEvent.actor_id == v["actor_user"], AuditEvent.api_key_id.is_(None)))
    if "actor_key" in v:
        # A key the caller may not read matches nothing, like a made-up one: otherwise an admin
        # could probe key ids through the trail.
        readable = select(ApiKey.id).where(
            ApiKey.id == v["actor_key"], ctx.rules.where(Resource.API_KEY)
        )
        found.append(AuditEvent.api_key_id.in_(readable))
    if "actor_none" in v:
        found.append(false())
    if "subject" in v:
        found += [
            AuditEvent.subject_type == v["subject_type"],
            AuditEvent.subject_id == v["subject"],
        ]
    if "since" in v:
        found.append(AuditEvent.at >= v["since"])
    return found


# Newest first. Filters read only the audit trail, within the caller's scopes.
AUDIT_EVENTS: ListSource[AuditEvent, AuditFilter] = ListSource(
    "auditEvents",
    AuditEvent,
    Resource.AUDIT_EVENT,
    (Sort("AT", (AuditEvent.at,), "By when it happened."),),
    direction=Direction.DESC,
    prepare=_prepare,
    conditions=_conditions,
)

"""The audit trail: who did what to which object, when, and from which client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert

from db.models import AuditAction, AuditEvent, User
from policies.vocabulary import Resource
from resolvers.context import Context, LoaderGroup
from resolvers.ids import type_name_of
from resolvers.loaders import scoped
from resolvers.relations import Ref

ACTOR = Ref(User, "actor_id")


class AuditLoaders(LoaderGroup):
    event = scoped(AuditEvent, Resource.AUDIT_EVENT)


async def audit(
    ctx: Context,
    action: AuditAction,
    subject: Any,
    *,
    organisation_id: int | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record who did what, in the same transaction as the change itself.

    `subject` is the row acted on, or its table when the change spans many rows. `details`
    name other objects by global id only: no raw keys, no emails.
    """
    await audit_all(ctx, [Entry(action, subject, organisation_id, details)])


@dataclass(frozen=True)
class Entry:
    """One audit event to write (see `audit`)."""

    action: AuditAction
    subject: Any
    organisation_id: int | None
    details: dict[str, Any] | None = None


async def audit_all(ctx: Context, entries: Sequence[Entry]) -> None:
    """Record several events in one statement, whatever their number."""
    if not entries:
        return
    me = ctx.me
    rows = [
        {
            "organisation_id": e.organisation_id,
            "at": ctx.now,
            "actor_id": me.user_id,
            "api_key_id": me.api_key_id,
            "client": ctx.client,
            "user_agent": ctx.user_agent,
            "action": e.action,
            "subject_type": type_name_of(
                e.subject if isinstance(e.subject, type) else type(e.subject)
            ),
            "subject_id": None if isinstance(e.subject, type) else e.subject.id,
            "details": e.details,
        }
        for e in entries
    ]
    # Core executemany: one statement however many events (no ids are needed back).
    await ctx.db.execute(insert(AuditEvent), rows)

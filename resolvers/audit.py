"""The audit trail: who did what to which object, when, and from which client."""

from __future__ import annotations

from typing import Any

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
    is_table = isinstance(subject, type)
    me = ctx.me
    await ctx.db.add(
        AuditEvent(
            organisation_id=organisation_id,
            at=ctx.now,
            actor_id=me.user_id,
            api_key_id=me.api_key_id,
            client=ctx.client,
            user_agent=ctx.user_agent,
            action=action,
            subject_type=type_name_of(subject if is_table else type(subject)),
            subject_id=None if is_table else subject.id,
            details=details,
        )
    )

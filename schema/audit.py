"""The audit trail."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from db import models
from policies.vocabulary import Resource
from resolvers import audit
from resolvers.audit import AuditLoaders
from schema.api_keys import ApiKey, api_key_ref
from schema.connections import Connection
from schema.context import Info
from schema.derive import input_of, plain
from schema.enums import AuditAction
from schema.nodes import Node, gid, node
from schema.people import User, user_ref
from schema.permissions import requires


@node(
    models.AuditEvent,
    lambda ctx: ctx.loaders(AuditLoaders).event,
    subject_id=lambda row: (
        None if row.subject_id is None else gid(row.subject_type, row.subject_id)
    ),
    details=lambda row: JSON(row.details),
)
@strawberry.type(description="Who did what to which object, when.")
class AuditEvent(Node):
    at: datetime = strawberry.field(description="When it happened.")
    action: AuditAction = strawberry.field(description="What was done, object then verb.")
    subject_type: str = strawberry.field(description="The kind of object acted on.")
    subject_id: strawberry.ID | None = strawberry.field(description="The object acted on.")
    details: JSON | None = strawberry.field(
        description="What changed; other objects named by global id."
    )
    client: str | None = strawberry.field(
        description="How the actor signed in: `jwt`, `api-key:<prefix>` for a partner system, "
        "or `cli` for the command line."
    )
    user_agent: str | None = strawberry.field(
        description="What the client said it is (X-Caseload-Client or User-Agent); not verified."
    )
    row: strawberry.Private[models.AuditEvent]

    @strawberry.field(
        description="The person who did it; null when an API key (see `apiKey`) or the "
        "command line did.",
        extensions=requires(Resource.AUDIT_EVENT),
    )
    async def actor(self, info: Info) -> User | None:
        if self.row.api_key_id is not None:
            return None
        return await user_ref(info, self.row.actor_id)

    @strawberry.field(
        description="The API key that did it, if one did.",
        extensions=requires(Resource.AUDIT_EVENT),
    )
    async def api_key(self, info: Info) -> ApiKey | None:
        return await api_key_ref(info, self.row.api_key_id)


AuditFilter = input_of(audit.AuditFilter)


@strawberry.type
class AuditQuery:
    @strawberry.field(
        description="The audit trail, newest first: admins see their organisation's; support "
        "sees what support users did.",
        extensions=requires(Resource.AUDIT_EVENT),
    )
    async def audit_events(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: AuditFilter | None = None,  # type: ignore[valid-type]
    ) -> Connection[AuditEvent]:
        wanted = plain(filter, audit.AuditFilter)
        page = await audit.audit_events(info.context, first=first, after=after, filter=wanted)
        return Connection.from_page(page, AuditEvent.from_row)

"""The audit trail."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from db import models
from policies.vocabulary import Resource
from resolvers import audit
from resolvers.audit import AuditLoaders
from schema.enums import AuditAction
from schema.nodes import Node, computed, gid, node
from schema.people import User
from schema.permissions import requires
from schema.relations import relation


@node(
    models.AuditEvent,
    lambda ctx: ctx.loaders(AuditLoaders).event,
    subject_id=computed(
        lambda kind, pk: None if pk is None else gid(kind, pk), "subject_type", "subject_id"
    ),
    details=computed(JSON, "details"),
)
@strawberry.type(description="Who did what to which object, when.")
class AuditEvent(Node):
    at: datetime = strawberry.field(description="When it happened.")
    action: AuditAction = strawberry.field(description="What was done, object then verb.")
    subject_type: str = strawberry.field(description="The kind of object acted on.")
    subject_id: strawberry.ID | None = strawberry.field(description="The object acted on.")
    details: JSON | None = strawberry.field(description="What changed.")
    client: str | None = strawberry.field(
        description="How the actor signed in: `jwt`, or `api-key:<prefix>` for a partner system."
    )
    user_agent: str | None = strawberry.field(
        description="What the client said it is (X-Caseload-Client or User-Agent); not verified."
    )
    row: strawberry.Private[models.AuditEvent]
    actor: User | None = relation(
        audit.ACTOR, description="Who did it.", extensions=requires(Resource.AUDIT_EVENT)
    )

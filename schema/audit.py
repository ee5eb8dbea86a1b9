"""The audit trail."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from db import models
from policies.vocabulary import Resource
from resolvers import api_keys, audit
from resolvers.audit import AuditLoaders
from schema.api_keys import ApiKey
from schema.connections import connection
from schema.derive import input_of
from schema.enums import AuditAction
from schema.nodes import Node, computed, gid, node
from schema.people import User
from schema.permissions import requires
from schema.relations import relation


@node(
    models.AuditEvent,
    AuditLoaders.event,
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

    actor: User | None = relation(
        audit.ACTOR,
        description="The person who did it; null when an API key (see `apiKey`) or the "
        "command line did.",
        extensions=requires(Resource.AUDIT_EVENT),
    )
    api_key: ApiKey | None = relation(
        api_keys.KEY_OF_ACCESS,
        description="The API key that did it, if one did and the caller may read API keys "
        "(super admins); otherwise null (`client` still names the key's prefix).",
        extensions=requires(Resource.AUDIT_EVENT),
    )


AuditFilter = input_of(audit.AuditFilter)


@strawberry.type
class AuditQuery:
    audit_events = connection(
        audit.AUDIT_EVENTS,
        AuditEvent,
        order="AuditEvent",
        filter=audit.AuditFilter,
        description="The audit trail, newest first: admins see their organisation's; support "
        "sees what support users did.",
        extensions=requires(Resource.AUDIT_EVENT),
    )

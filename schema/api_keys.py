"""API keys: partner systems' credentials, managed by the organisation's super admins."""

from __future__ import annotations

from datetime import datetime

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import api_keys, capabilities
from resolvers.api_keys import ApiKeyLoaders
from schema.capabilities import VIEWER_CAN, ApiKeyCapabilities
from schema.connections import items
from schema.context import Info
from schema.enums import AuditAction, Role
from schema.nodes import Node, computed, node
from schema.people import User
from schema.permissions import changes, requires, signed_in
from schema.relations import relation
from schema.results import another, answers, mutation, unchanged


@node(
    models.ApiKey,
    ApiKeyLoaders.api_key,
    roles=computed(api_keys.roles_from, "roles"),
)
@strawberry.type(description="A partner system's credential; the key itself is shown once.")
class ApiKey(Node):
    name: str = strawberry.field(description="What the key is for, e.g. MIS feed.")
    prefix: str = strawberry.field(
        description="The key's public part, `ck_<prefix>_…`: how logs, the audit trail's "
        "`client` and the command line name it."
    )
    roles: list[Role] = strawberry.field(description="The roles the key acts with.")
    created_at: datetime = strawberry.field(description="When it was created.")
    last_used_at: datetime | None = strawberry.field(
        description="When it last authenticated a request (updated at most once a minute)."
    )
    revoked_at: datetime | None = strawberry.field(
        description="When it was revoked; it is refused from then on."
    )
    rate_points_per_minute: int | None = strawberry.field(
        description="Its own fair use budget, cost points a minute; null: the server's "
        "(`CASELOAD_RATE_POINTS_PER_MINUTE`)."
    )
    row: strawberry.Private[models.ApiKey]

    @strawberry.field(description=VIEWER_CAN, extensions=signed_in())
    async def viewer_can(self, info: Info) -> ApiKeyCapabilities:
        return ApiKeyCapabilities(**await capabilities.of(info.context, self.row))

    created_by: User | None = relation(
        api_keys.CREATED_BY,
        description="Who created it (the key outlives them).",
        extensions=requires(Resource.API_KEY),
    )


@strawberry.input(description="A new API key for a partner system, in the caller's organisation.")
class CreateApiKeyInput:
    name: str = strawberry.field(description="What the key is for, e.g. MIS feed.")
    roles: list[Role] = strawberry.field(
        description="The roles it acts with: organisation roles other than SUPER_ADMIN and LEARNER."
    )
    rate_points_per_minute: int | None = strawberry.field(
        default=None,
        description="Its own fair use budget, cost points a minute (at least 1); left out or "
        "null: the server's.",
    )


@strawberry.input(description="The API key to revoke.")
class RevokeApiKeyInput:
    api_key_id: strawberry.ID = strawberry.field(description="The key's id.")


@answers(api_keys.ApiKeyCreated)
@strawberry.type(description="The API key was created. Keep `key` now: it is never shown again.")
class ApiKeyCreated:
    api_key: ApiKey = strawberry.field(description="The new key's record.")
    key: str = strawberry.field(
        description="The key, for `Authorization: ApiKey <key>`; only its hash is stored."
    )


@answers(api_keys.ApiKeyRevoked)
@strawberry.type(description="The API key is revoked: its next request is refused.")
class ApiKeyRevoked:
    api_key: ApiKey = strawberry.field(description="The revoked key.")
    unchanged: bool = strawberry.field(
        description="True when it was revoked already: nothing changed, no audit event was written."
    )


@strawberry.type
class ApiKeyQuery:
    api_keys = items(
        api_keys.API_KEYS,
        ApiKey,
        description="The organisation's API keys, revoked ones included (super admins).",
        extensions=requires(Resource.API_KEY),
    )


@strawberry.type
class ApiKeyMutation:
    create_api_key = mutation(
        api_keys.create_api_key,
        audit=AuditAction.API_KEY_CREATED,
        input=CreateApiKeyInput,
        repeat=another("another key"),
        description="Create an API key for a partner system; the answer shows the key once.",
        extensions=changes(Resource.API_KEY, Action.CREATE),
    )
    revoke_api_key = mutation(
        api_keys.revoke_api_key,
        audit=AuditAction.API_KEY_REVOKED,
        input=RevokeApiKeyInput,
        repeat=unchanged("revoked already: `unchanged: true`, `revokedAt` kept, no audit event"),
        description="Revoke an API key from now on; revoking it again changes nothing.",
        extensions=changes(Resource.API_KEY, Action.REVOKE),
    )

"""Webhooks: endpoints the organisation's changes are sent to, managed by its super admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import webhooks
from resolvers.outcomes import NotFound
from resolvers.webhooks import WebhookLoaders
from schema.connections import connection, items
from schema.enums import AuditAction, described
from schema.nodes import Node, computed, node
from schema.people import User
from schema.permissions import changes, requires
from schema.relations import relation
from schema.results import another, answers, mutation, refused, unchanged

described(
    models.WebhookDeliveryStatus,
    name="WebhookDeliveryStatus",
    description="Where a webhook delivery stands.",
    values={
        "PENDING": "Waiting to be sent, or to be tried again (`nextAttemptAt`).",
        "DELIVERED": "The receiver answered 2xx.",
        "FAILED": "Every try failed; the endpoint was disabled.",
    },
)


@node(
    models.WebhookEndpoint,
    WebhookLoaders.endpoint,
    events=computed(webhooks.events_of, "events"),
    disabled=computed(lambda at: at is not None, "disabled_at"),
)
@strawberry.type(
    description="Where the organisation's changes are sent, signed; the secret is shown once."
)
class WebhookEndpoint(Node):
    url: str = strawberry.field(description="Where deliveries are sent (POST).")
    events: list[AuditAction] = strawberry.field(description="The actions whose changes it gets.")
    description: str | None = strawberry.field(description="What it is for.")
    created_at: datetime = strawberry.field(description="When it was made.")
    updated_at: datetime = strawberry.field(description="When it was last changed.")
    disabled: bool = strawberry.field(
        description="True when nothing is sent to it (see `disabledReason`); "
        "`updateWebhookEndpoint(input: {enabled: true})` sends again, from where it stopped."
    )
    disabled_at: datetime | None = strawberry.field(description="When it was disabled, if it is.")
    disabled_reason: str | None = strawberry.field(
        description="Why it was disabled: every try of a delivery failed, or a super admin "
        "disabled it."
    )
    row: strawberry.Private[models.WebhookEndpoint]

    created_by: User | None = relation(
        webhooks.CREATED_BY,
        description="Who made it (the endpoint outlives them).",
        extensions=requires(Resource.WEBHOOK_ENDPOINT),
    )


@node(
    models.WebhookDelivery,
    WebhookLoaders.delivery,
    webhook_id=computed(webhooks.webhook_id, "change_id"),
    next_attempt_at=computed(
        lambda status, at: at if status is models.WebhookDeliveryStatus.PENDING else None,
        "status",
        "next_attempt_at",
    ),
)
@strawberry.type(description="One change sent, or to be sent, to one webhook endpoint.")
class WebhookDelivery(Node):
    webhook_id: str = strawberry.field(
        description="The `webhook-id` header: the change's id, the same on every try."
    )
    status: models.WebhookDeliveryStatus = strawberry.field(description="Where it stands.")
    attempts: int = strawberry.field(description="How many times it was sent.")
    created_at: datetime = strawberry.field(description="When the change was read for it.")
    next_attempt_at: datetime | None = strawberry.field(
        description="When it is sent next, while PENDING."
    )
    last_attempt_at: datetime | None = strawberry.field(description="When it was last sent.")
    delivered_at: datetime | None = strawberry.field(
        description="When the receiver accepted it (2xx)."
    )
    response_status: int | None = strawberry.field(
        description="The HTTP status of the receiver's last answer."
    )
    response_body: str | None = strawberry.field(
        description="The first kilobyte of the receiver's last answer."
    )
    error: str | None = strawberry.field(
        description="Why the last try got no answer: timed out, refused address, …"
    )
    row: strawberry.Private[models.WebhookDelivery]

    endpoint: WebhookEndpoint | None = relation(
        webhooks.ENDPOINT_OF_DELIVERY,
        description="The endpoint it is sent to.",
        extensions=requires(Resource.WEBHOOK_DELIVERY),
    )


@strawberry.input(description="A new webhook endpoint for the caller's organisation.")
class CreateWebhookEndpointInput:
    url: str = strawberry.field(
        description="Where to send deliveries: an https URL whose host resolves to public "
        "addresses only."
    )
    events: list[AuditAction] = strawberry.field(
        description="The actions whose changes it gets (at least one)."
    )
    description: str | None = strawberry.field(
        default=None, description="What it is for (at most 500 characters)."
    )


@strawberry.input(description="What to change on a webhook endpoint; fields left out stay.")
class UpdateWebhookEndpointInput:
    webhook_endpoint_id: strawberry.ID = strawberry.field(description="The endpoint.")
    url: str | None = strawberry.field(
        default=strawberry.UNSET, description="A new URL (null: unchanged)."
    )
    events: list[AuditAction] | None = strawberry.field(
        default=strawberry.UNSET, description="New actions (null: unchanged)."
    )
    description: str | None = strawberry.field(
        default=strawberry.UNSET, description="A new description; null or empty: none."
    )
    enabled: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="True: send to it again (after it was disabled); false: disable it.",
    )


@strawberry.input(description="The webhook endpoint to act on.")
class WebhookEndpointInput:
    webhook_endpoint_id: strawberry.ID = strawberry.field(description="The endpoint.")


@strawberry.input(description="The webhook delivery to send again.")
class RedeliverWebhookInput:
    delivery_id: strawberry.ID = strawberry.field(description="The delivery.")


@answers(webhooks.WebhookEndpointCreated)
@strawberry.type(description="The endpoint was made. Keep `secret` now: it is never shown again.")
class WebhookEndpointCreated:
    endpoint: WebhookEndpoint = strawberry.field(description="The new endpoint.")
    secret: str = strawberry.field(
        description="The signing secret, `whsec_` and base64: verify `webhook-signature` with it."
    )


@answers(webhooks.WebhookEndpointUpdated)
@strawberry.type(description="The endpoint was changed.")
class WebhookEndpointUpdated:
    endpoint: WebhookEndpoint = strawberry.field(description="The endpoint, as changed.")
    unchanged: bool = strawberry.field(
        description="True when it was so already: nothing changed, no audit event was written."
    )


@answers(webhooks.WebhookEndpointDeleted)
@strawberry.type(description="The endpoint and its deliveries are gone; nothing more is sent.")
class WebhookEndpointDeleted:
    webhook_endpoint_id: strawberry.ID = strawberry.field(description="The deleted endpoint's id.")


@answers(webhooks.WebhookSecretRotated)
@strawberry.type(
    description="The endpoint has a new secret, from now on. Keep `secret` now: it is never "
    "shown again."
)
class WebhookSecretRotated:
    endpoint: WebhookEndpoint = strawberry.field(description="The endpoint.")
    secret: str = strawberry.field(description="The new signing secret, `whsec_` and base64.")


@answers(webhooks.WebhookRedelivered)
@strawberry.type(
    description="The delivery is waiting to be sent again, from its first try, with the same "
    "`webhook-id`."
)
class WebhookRedelivered:
    delivery: WebhookDelivery = strawberry.field(description="The delivery.")
    unchanged: bool = strawberry.field(
        description="True when it was waiting to be sent already: nothing changed, no audit "
        "event was written."
    )


@strawberry.type
class WebhookQuery:
    webhook_endpoints = items(
        webhooks.WEBHOOK_ENDPOINTS,
        WebhookEndpoint,
        description="The organisation's webhook endpoints, oldest first (super admins).",
        extensions=requires(Resource.WEBHOOK_ENDPOINT),
    )
    webhook_deliveries = connection(
        webhooks.WEBHOOK_DELIVERIES,
        WebhookDelivery,
        order="WebhookDeliveryOrder",
        description="The organisation's webhook deliveries, newest first (super admins).",
        extensions=requires(Resource.WEBHOOK_DELIVERY),
        arguments={
            "endpoint_id": Annotated[
                strawberry.ID | None,
                strawberry.argument(description="Only this endpoint's deliveries."),
            ],
            "status": Annotated[
                models.WebhookDeliveryStatus | None,
                strawberry.argument(description="Only deliveries that stand so."),
            ],
        },
    )


@strawberry.type
class WebhookMutation:
    create_webhook_endpoint = mutation(
        webhooks.create_webhook_endpoint,
        audit=AuditAction.WEBHOOK_ENDPOINT_CREATED,
        input=CreateWebhookEndpointInput,
        repeat=another("another endpoint, with its own secret"),
        description="Register a webhook endpoint: it is sent the organisation's changes of the "
        "chosen actions that commit from now on, signed (Standard Webhooks); the answer shows "
        "the secret once.",
        extensions=changes(Resource.WEBHOOK_ENDPOINT, Action.CREATE),
    )
    update_webhook_endpoint = mutation(
        webhooks.update_webhook_endpoint,
        audit=AuditAction.WEBHOOK_ENDPOINT_UPDATED,
        input=UpdateWebhookEndpointInput,
        repeat=unchanged("so already: `unchanged: true`, no audit event"),
        description="Change a webhook endpoint's URL, actions or description, or enable or "
        "disable it.",
        extensions=changes(Resource.WEBHOOK_ENDPOINT, Action.UPDATE),
    )
    delete_webhook_endpoint = mutation(
        webhooks.delete_webhook_endpoint,
        audit=AuditAction.WEBHOOK_ENDPOINT_DELETED,
        input=WebhookEndpointInput,
        repeat=refused(NotFound, "gone already: `NotFoundError`"),
        description="Delete a webhook endpoint and its deliveries.",
        extensions=changes(Resource.WEBHOOK_ENDPOINT, Action.DELETE),
    )
    rotate_webhook_secret = mutation(
        webhooks.rotate_webhook_secret,
        audit=AuditAction.WEBHOOK_SECRET_ROTATED,
        input=WebhookEndpointInput,
        repeat=another("another secret"),
        description="Give a webhook endpoint a new secret, shown once; deliveries are signed "
        "with it from now on.",
        extensions=changes(Resource.WEBHOOK_ENDPOINT, Action.UPDATE),
    )
    redeliver_webhook = mutation(
        webhooks.redeliver_webhook,
        audit=AuditAction.WEBHOOK_REDELIVERED,
        input=RedeliverWebhookInput,
        repeat=unchanged("waiting to be sent already: `unchanged: true`, no audit event"),
        description="Send a webhook delivery again, from its first try, with the same "
        "`webhook-id`.",
        extensions=changes(Resource.WEBHOOK_DELIVERY, Action.REDELIVER),
    )

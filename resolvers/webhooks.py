"""Webhooks: endpoints a super admin registers, to which the organisation's changes are sent.

An endpoint subscribes to actions (AuditAction values); every committed change of its
organisation with one of those actions gets one delivery to it, read from the change outbox
after commit (server/webhooks.py sends them). The endpoint's secret (`whsec_` and base64 of 32
random bytes) signs every delivery; it is shown once, when made or rotated, and kept so that
deliveries can be signed.

Addresses. A URL must be https (unless CASELOAD_WEBHOOK_ALLOW_HTTP) and every address its host
resolves to must be public: loopback, private, link-local (cloud metadata among them),
multicast, reserved and unspecified addresses are refused (unless
CASELOAD_WEBHOOK_ALLOW_PRIVATE), when the endpoint is made or changed and again at each send,
which connects to the address it checked (a name that resolves elsewhere by then changes
nothing).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from sqlalchemy import delete, func, select, update

from db.models import (
    AuditAction,
    Change,
    User,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from policies.vocabulary import Action, Resource, refusal
from resolvers.audit import audit
from resolvers.common import UNCHANGED, Unchanged, filter_id, mutation_target
from resolvers.context import Context, Limits, LoaderGroup
from resolvers.errors import Forbidden
from resolvers.ids import GlobalId, encode_id
from resolvers.loaders import scoped
from resolvers.outcomes import Invalid, NotFound
from resolvers.pagination import Direction, FilterValues, ListSource, Sort
from resolvers.relations import Ref

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_URL = 2000
MAX_DESCRIPTION = 500
RESOLVE_SECONDS = 5.0
ACTION_ORDER = list(AuditAction)
# Addresses no endpoint may reach whatever the checks of `ipaddress` say of them: the cloud
# metadata services (AWS's IPv6 one is a unique local address, the IPv4 one link-local).
METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

CREATED_BY = Ref(User, "created_by_id")
ENDPOINT_OF_DELIVERY = Ref(WebhookEndpoint, "endpoint_id", Resource.WEBHOOK_ENDPOINT)


class WebhookLoaders(LoaderGroup):
    endpoint = scoped(WebhookEndpoint, Resource.WEBHOOK_ENDPOINT)
    delivery = scoped(WebhookDelivery, Resource.WEBHOOK_DELIVERY)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: the bytes after `whsec_`, base64-decoded."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def webhook_id(change_id: int) -> str:
    """A change's `webhook-id`: the same on every try and every endpoint."""
    return encode_id("Change", change_id)


def events_of(text: str) -> list[AuditAction]:
    """An endpoint's actions as stored (comma-separated), in the vocabulary's order."""
    return [AuditAction(v) for v in text.split(",") if v]


def events_text(events: Sequence[AuditAction]) -> str:
    return ",".join(a.value for a in sorted(set(events), key=ACTION_ORDER.index))


# Addresses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a URL points: its parts, and whether plain http and private addresses may be."""

    url: SplitResult
    host: str
    port: int


def parse_url(value: str, limits: Limits, field: str = "url") -> Target | Invalid:
    """The URL's target, or why it is not acceptable (before any address is looked up)."""
    text = value.strip()
    if not text or len(text) > MAX_URL:
        return Invalid(f"Give an absolute URL of at most {MAX_URL} characters.", field=field)
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError:
        return Invalid("The URL is not valid.", field=field)
    schemes = ("https", "http") if limits.webhook_allow_http else ("https",)
    if url.scheme not in schemes:
        return Invalid(
            "The URL must use https"
            + ("" if limits.webhook_allow_http else " (plain http is refused)")
            + ".",
            field=field,
        )
    host = url.hostname
    if not host:
        return Invalid("The URL has no host.", field=field)
    if url.username is not None or url.password is not None:
        return Invalid("The URL must not hold a user name or password.", field=field)
    if url.fragment:
        return Invalid("The URL must not have a fragment (#…).", field=field)
    default = 443 if url.scheme == "https" else 80
    return Target(url, host, port or default)


def refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an endpoint may not reach this address (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA:
        return "a cloud metadata address"
    for kind, held in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if held:
            return f"a {kind} address"
    if not address.is_global:
        return "not a public address"
    return None


async def resolve(
    target: Target, *, allow_private: bool
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address] | str:
    """The addresses the target's host resolves to, all allowed; else why not."""
    try:
        literal = ipaddress.ip_address(target.host)
        found = [literal]
    except ValueError:
        try:
            async with asyncio.timeout(RESOLVE_SECONDS):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    target.host, target.port, type=socket.SOCK_STREAM
                )
        except (OSError, TimeoutError):
            return f"{target.host} does not resolve to an address"
        found = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in found:
                found.append(address)
        if not found:
            return f"{target.host} does not resolve to an address"
    if not allow_private:
        for address in found:
            why = refused_address(address)
            if why is not None:
                return f"{target.host} resolves to {address}, {why}"
    return found


async def checked_url(ctx: Context, value: str, field: str = "url") -> str | Invalid:
    """The URL, if acceptable now (its host resolves, only to addresses it may reach)."""
    target = parse_url(value, ctx.limits, field)
    if isinstance(target, Invalid):
        return target
    addresses = await resolve(target, allow_private=ctx.limits.webhook_allow_private)
    if isinstance(addresses, str):
        return Invalid(f"The URL is refused: {addresses}.", field=field)
    return target.url.geturl()


def clean_events(events: Sequence[AuditAction]) -> str | Invalid:
    if not events:
        return Invalid("Give at least one action to send.", field="events")
    return events_text(events)


def clean_description(value: str | None) -> str | Invalid | None:
    text = (value or "").strip()
    if len(text) > MAX_DESCRIPTION:
        return Invalid(
            f"A description is at most {MAX_DESCRIPTION} characters.", field="description"
        )
    return text or None


# Outcomes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookEndpointCreated:
    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True)
class WebhookEndpointUpdated:
    endpoint: WebhookEndpoint
    unchanged: bool = False


@dataclass(frozen=True)
class WebhookEndpointDeleted:
    webhook_endpoint_id: GlobalId


@dataclass(frozen=True)
class WebhookSecretRotated:
    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True)
class WebhookRedelivered:
    delivery: WebhookDelivery
    unchanged: bool = False


# Lists -----------------------------------------------------------------------------------

WEBHOOK_ENDPOINTS: ListSource[WebhookEndpoint, None] = ListSource(
    "webhookEndpoints",
    WebhookEndpoint,
    Resource.WEBHOOK_ENDPOINT,
    (Sort("CREATED", (), "In the order they were made."),),
)


def _deliveries_prepare(
    _limits: Limits, _filter: None, arguments: Mapping[str, Any]
) -> dict[str, Any]:
    """`endpointId` (malformed: INVALID; of another type: matches nothing) and `status`."""
    values: dict[str, Any] = {}
    endpoint = filter_id(arguments.get("endpoint_id"), "WebhookEndpoint", "endpointId")
    if endpoint is not None:
        values["endpoint"] = endpoint
    status = arguments.get("status")
    if status is not None:
        values["status"] = WebhookDeliveryStatus(status)
    return values


def _deliveries_conditions(_ctx: Context, v: FilterValues) -> list[Any]:
    found: list[Any] = []
    if "endpoint" in v:
        found.append(WebhookDelivery.endpoint_id == v["endpoint"])
    if "status" in v:
        found.append(WebhookDelivery.status == v["status"])
    return found


# Newest first: what was sent last, at the top.
WEBHOOK_DELIVERIES: ListSource[WebhookDelivery, None] = ListSource(
    "webhookDeliveries",
    WebhookDelivery,
    Resource.WEBHOOK_DELIVERY,
    (Sort("CREATED", (), "By when the change was read for the endpoint."),),
    direction=Direction.DESC,
    prepare=_deliveries_prepare,
    conditions=_deliveries_conditions,
)


# Mutations -------------------------------------------------------------------------------


async def create_webhook_endpoint(
    ctx: Context,
    *,
    url: str,
    events: Sequence[AuditAction],
    description: str | Unchanged | None = None,
) -> WebhookEndpointCreated | Invalid:
    """Register an endpoint; it is sent the changes that commit from now on."""
    organisation_id = ctx.me.organisation_id
    if organisation_id is None or not ctx.rules.may_act_in(
        Resource.WEBHOOK_ENDPOINT, Action.CREATE, organisation_id
    ):
        raise Forbidden(refusal(Resource.WEBHOOK_ENDPOINT, Action.CREATE))
    chosen = clean_events(events)
    if isinstance(chosen, Invalid):
        return chosen
    about = clean_description(None if isinstance(description, Unchanged) else description)
    if isinstance(about, Invalid):
        return about
    address = await checked_url(ctx, url)
    if isinstance(address, Invalid):
        return address
    # From the last committed change on: a change committing later has a higher position.
    last = await ctx.db.scalar(select(func.coalesce(func.max(Change.position), 0)))
    secret = new_secret()
    row = WebhookEndpoint(
        organisation_id=organisation_id,
        url=address,
        events=chosen,
        description=about,
        secret=secret,
        created_at=ctx.now,
        updated_at=ctx.now,
        created_by_id=ctx.me.actor_id,
        after_position=last or 0,
    )
    await ctx.db.add(row)
    await audit(
        ctx,
        AuditAction.WEBHOOK_ENDPOINT_CREATED,
        row,
        organisation_id=organisation_id,
        details={"url": address, "events": [e.value for e in events_of(chosen)]},
    )
    return WebhookEndpointCreated(endpoint=row, secret=secret)


async def update_webhook_endpoint(
    ctx: Context,
    *,
    webhook_endpoint_id: str,
    url: str | Unchanged | None = UNCHANGED,
    events: Sequence[AuditAction] | Unchanged | None = UNCHANGED,
    description: str | Unchanged | None = UNCHANGED,
    enabled: bool | Unchanged | None = UNCHANGED,
) -> WebhookEndpointUpdated | Invalid | NotFound:
    """Change an endpoint's URL, actions or description, or enable or disable it."""
    row = await mutation_target(
        ctx, webhook_endpoint_id, WebhookEndpoint, "webhookEndpointId", Action.UPDATE
    )
    if isinstance(row, Invalid | NotFound):
        return row
    values: dict[str, Any] = {}
    if isinstance(url, str):
        address = await checked_url(ctx, url)
        if isinstance(address, Invalid):
            return address
        if address != row.url:
            values["url"] = address
    if events is not None and not isinstance(events, Unchanged):
        chosen = clean_events(events)
        if isinstance(chosen, Invalid):
            return chosen
        if chosen != row.events:
            values["events"] = chosen
    if not isinstance(description, Unchanged):
        about = clean_description(description)
        if isinstance(about, Invalid):
            return about
        if about != row.description:
            values["description"] = about
    if enabled is True and row.disabled_at is not None:
        values.update(disabled_at=None, disabled_reason=None)
    if enabled is False and row.disabled_at is None:
        values.update(disabled_at=ctx.now, disabled_reason="Disabled by a super admin.")
    if not values:
        return WebhookEndpointUpdated(endpoint=row, unchanged=True)
    changed = (
        await ctx.db.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == row.id)
            .values(updated_at=ctx.now, **values)
            .returning(WebhookEndpoint)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    ).scalar_one()
    fields = sorted(
        {"url", "events", "description"} & set(values)
        | ({"enabled"} if "disabled_at" in values else set())
    )
    await audit(
        ctx,
        AuditAction.WEBHOOK_ENDPOINT_UPDATED,
        changed,
        organisation_id=changed.organisation_id,
        details={"fields": fields},
    )
    return WebhookEndpointUpdated(endpoint=changed)


async def delete_webhook_endpoint(
    ctx: Context, *, webhook_endpoint_id: str
) -> WebhookEndpointDeleted | Invalid | NotFound:
    """Delete an endpoint and its deliveries; nothing more is sent to it."""
    row = await mutation_target(
        ctx, webhook_endpoint_id, WebhookEndpoint, "webhookEndpointId", Action.DELETE
    )
    if isinstance(row, Invalid | NotFound):
        return row
    await audit(
        ctx,
        AuditAction.WEBHOOK_ENDPOINT_DELETED,
        row,
        organisation_id=row.organisation_id,
        details={"url": row.url},
    )
    await ctx.db.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == row.id))
    await ctx.db.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == row.id))
    return WebhookEndpointDeleted(webhook_endpoint_id=webhook_endpoint_id)


async def rotate_webhook_secret(
    ctx: Context, *, webhook_endpoint_id: str
) -> WebhookSecretRotated | Invalid | NotFound:
    """Give an endpoint a new secret, shown once; deliveries are signed with it from now on."""
    row = await mutation_target(
        ctx, webhook_endpoint_id, WebhookEndpoint, "webhookEndpointId", Action.UPDATE
    )
    if isinstance(row, Invalid | NotFound):
        return row
    secret = new_secret()
    changed = (
        await ctx.db.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == row.id)
            .values(secret=secret, updated_at=ctx.now)
            .returning(WebhookEndpoint)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    ).scalar_one()
    await audit(
        ctx, AuditAction.WEBHOOK_SECRET_ROTATED, changed, organisation_id=changed.organisation_id
    )
    return WebhookSecretRotated(endpoint=changed, secret=secret)


async def redeliver_webhook(
    ctx: Context, *, delivery_id: str
) -> WebhookRedelivered | Invalid | NotFound:
    """Send a delivery again, from its first try (with the same `webhook-id`)."""
    row = await mutation_target(ctx, delivery_id, WebhookDelivery, "deliveryId", Action.REDELIVER)
    if isinstance(row, Invalid | NotFound):
        return row
    again = (
        await ctx.db.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == row.id,
                WebhookDelivery.status != WebhookDeliveryStatus.PENDING,
            )
            .values(
                status=WebhookDeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=ctx.now,
                error=None,
            )
            .returning(WebhookDelivery)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    ).scalar_one_or_none()
    if again is None:  # waiting to be sent already
        return WebhookRedelivered(delivery=row, unchanged=True)
    await audit(
        ctx,
        AuditAction.WEBHOOK_REDELIVERED,
        again,
        organisation_id=again.organisation_id,
        details={"webhookId": webhook_id(again.change_id)},
    )
    return WebhookRedelivered(delivery=again)

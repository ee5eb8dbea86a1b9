"""API keys: partner systems' credentials, created, listed and revoked by super admins.

A key belongs to its organisation and outlives whoever created it. It acts as its own service
identity (a user of kind SERVICE named after the key) with the roles it was given; those never
include SUPER_ADMIN (a key cannot make keys) or LEARNER (a key is not a person). The key itself
is shown once, when created; only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from db.models import ApiKey, AuditAction, User, UserKind
from policies.identity import stored_roles
from policies.vocabulary import MEMBERSHIP_ROLES, Action, Resource, Role, refusal
from resolvers.audit import audit
from resolvers.common import clean_name, mutation_target
from resolvers.context import Context, LoaderGroup
from resolvers.errors import Forbidden
from resolvers.loaders import scoped
from resolvers.outcomes import Invalid, NotFound
from resolvers.pagination import ListSource, Sort, rows_of
from resolvers.relations import Ref

SCHEME = "ck"
# Roles a key may hold: organisation roles, but never SUPER_ADMIN or LEARNER.
KEY_ROLES = MEMBERSHIP_ROLES - {Role.SUPER_ADMIN, Role.LEARNER}
ROLE_ORDER = list(Role)
# The largest budget a key may be given: GraphQL's Int, and the column's.
MAX_RATE_POINTS = 2**31 - 1


CREATED_BY = Ref(User, "created_by_id")
# The key behind an access grant or an audit event: only for those who may read keys (super
# admins); an admin or a learner sees the grant or the event, and the key's identity as a user.
KEY_OF_ACCESS = Ref(ApiKey, "api_key_id", Resource.API_KEY)


class ApiKeyLoaders(LoaderGroup):
    api_key = scoped(ApiKey, Resource.API_KEY)


def new_api_key() -> tuple[str, str, str]:
    """(key shown once, prefix for look-up, SHA-256 hash to store)."""
    prefix = secrets.token_hex(6)
    key = f"{SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_prefix(key: str) -> str | None:
    """The prefix of a whole key (`ck_<prefix>_<secret>`); None when it is not one."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != SCHEME or not parts[1]:
        return None
    return parts[1]


def prefix_named(text: str) -> str:
    """The prefix a person means by a key, `ck_<prefix>` or the bare prefix."""
    value = text.strip()
    whole = api_key_prefix(value)
    if whole is not None:
        return whole
    scheme, _, rest = value.partition("_")
    return rest if scheme == SCHEME and rest else value


def roles_of(key: ApiKey) -> list[Role]:
    return roles_from(key.roles)


def roles_from(text: str) -> list[Role]:
    """A key's roles as stored (comma-separated), in the vocabulary's order."""
    return sorted(stored_roles(text), key=ROLE_ORDER.index)


def key_roles(roles: Sequence[Role]) -> list[Role] | Invalid:
    """The roles a new key may hold, in order; Invalid for none or a forbidden one."""
    wanted = set(roles)
    if not wanted:
        return Invalid("Give at least one role.", field="roles")
    if not wanted <= KEY_ROLES:
        refused = ", ".join(sorted(r.value for r in wanted - KEY_ROLES))
        return Invalid(
            f"An API key cannot hold {refused}: it holds organisation roles other than "
            "SUPER_ADMIN and LEARNER.",
            field="roles",
        )
    return sorted(wanted, key=ROLE_ORDER.index)


def key_budget(points: int | None) -> int | Invalid | None:
    """A key's own fair use budget (None: the setting's); Invalid unless 1 to 2,147,483,647."""
    if points is not None and not 0 < points <= MAX_RATE_POINTS:
        return Invalid(
            f"A key's budget is a number of cost points a minute from 1 to {MAX_RATE_POINTS}; "
            "leave it out for the server's own.",
            field="ratePointsPerMinute",
        )
    return points


@dataclass(frozen=True)
class NewKey:
    """What a new key is to be: its name, roles and own budget, as checked by `new_key`."""

    name: str
    roles: list[Role]
    rate_points_per_minute: int | None


def new_key(
    *, name: str, roles: Sequence[Role], rate_points_per_minute: int | None
) -> NewKey | Invalid:
    """The key asked for, or why it cannot be: the checks of createApiKey (and the CLI's)."""
    clean = clean_name(name)
    if isinstance(clean, Invalid):
        return clean
    held = key_roles(roles)
    if isinstance(held, Invalid):
        return held
    budget = key_budget(rate_points_per_minute)
    if isinstance(budget, Invalid):
        return budget
    return NewKey(clean, held, budget)


def new_key_rows(
    *,
    organisation_id: int,
    name: str,
    roles: Sequence[Role],
    created_by_id: int | None,
    now: datetime,
    rate_points_per_minute: int | None = None,
) -> tuple[str, User, ApiKey]:
    """A new key (shown once), its service identity, and its row (to add after the identity)."""
    key, prefix, digest = new_api_key()
    identity = User(
        email=f"apikey-{prefix}@keys.invalid", name=name, kind=UserKind.SERVICE, created_at=now
    )
    row = ApiKey(
        organisation_id=organisation_id,
        name=name,
        prefix=prefix,
        key_hash=digest,
        roles=",".join(r.value for r in roles),
        created_at=now,
        created_by_id=created_by_id,
        rate_points_per_minute=rate_points_per_minute,
    )
    return key, identity, row


def created_details(name: str, roles: Sequence[Role], budget: int | None) -> dict[str, object]:
    """What the audit trail keeps of a new key: its name, roles and own budget, if any."""
    details: dict[str, object] = {"name": name, "roles": [r.value for r in roles]}
    if budget is not None:
        details["ratePointsPerMinute"] = budget
    return details


@dataclass(frozen=True)
class ApiKeyCreated:
    api_key: ApiKey
    key: str


@dataclass(frozen=True)
class ApiKeyRevoked:
    api_key: ApiKey
    unchanged: bool = False


# The keys the caller may list (super admins: their organisation's), oldest first.
API_KEYS: ListSource[ApiKey, None] = ListSource(
    "apiKeys", ApiKey, Resource.API_KEY, (Sort("CREATED", (), "In the order they were made."),)
)


async def api_keys(ctx: Context) -> list[ApiKey]:
    """The keys the caller may list (super admins: their organisation's), oldest first."""
    return await rows_of(ctx, API_KEYS)


async def create_api_key(
    ctx: Context, *, name: str, roles: Sequence[Role], rate_points_per_minute: int | None = None
) -> ApiKeyCreated | Invalid:
    organisation_id = ctx.me.organisation_id
    if organisation_id is None or not ctx.rules.may_act_in(
        Resource.API_KEY, Action.CREATE, organisation_id
    ):
        raise Forbidden(refusal(Resource.API_KEY, Action.CREATE))
    asked = new_key(name=name, roles=roles, rate_points_per_minute=rate_points_per_minute)
    if isinstance(asked, Invalid):
        return asked
    key, identity, row = new_key_rows(
        organisation_id=organisation_id,
        name=asked.name,
        roles=asked.roles,
        created_by_id=ctx.me.actor_id,
        now=ctx.now,
        rate_points_per_minute=asked.rate_points_per_minute,
    )
    await ctx.db.add(identity)
    row.user_id = identity.id
    await ctx.db.add(row)
    await audit(
        ctx,
        AuditAction.API_KEY_CREATED,
        row,
        organisation_id=organisation_id,
        details=created_details(asked.name, asked.roles, asked.rate_points_per_minute),
        touched=[identity],  # the key's identity
    )
    return ApiKeyCreated(api_key=row, key=key)


async def revoke_api_key(ctx: Context, *, api_key_id: str) -> ApiKeyRevoked | Invalid | NotFound:
    """Revoke a key from now on; revoking a revoked key changes nothing."""
    row = await mutation_target(ctx, api_key_id, ApiKey, "apiKeyId", Action.REVOKE)
    if isinstance(row, Invalid | NotFound):
        return row
    revoked = (
        await ctx.db.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=ctx.now)
            .returning(ApiKey)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    ).scalar_one_or_none()
    if revoked is None:  # revoked already (the row read above may predate that)
        current = await ctx.db.scalar(
            select(ApiKey).where(ApiKey.id == row.id).execution_options(populate_existing=True)
        )
        return ApiKeyRevoked(api_key=current or row, unchanged=True)
    await audit(ctx, AuditAction.API_KEY_REVOKED, revoked, organisation_id=revoked.organisation_id)
    return ApiKeyRevoked(api_key=revoked)

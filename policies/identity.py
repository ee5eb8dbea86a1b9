"""Who a person or an API key is in an organisation: their rows → a Principal, or a refusal.

Decided here and nowhere else: by sign-in (server/auth.py, for both executors), by "who can
see this learner" (resolvers/access.py, for every candidate) and by the command line before
it mints a token (server/cli.py). Each reads the rows its own way; the answer is this one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from db.models import UserKind
from policies.principal import Principal
from policies.vocabulary import Role

NO_USER = "The token names no user."
BOUND_ISSUER = "This token's issuer signs in only the members of the organisation it is bound to."


class Reason(enum.StrEnum):
    UNKNOWN = "UNKNOWN"  # no such user
    SERVICE = "SERVICE"  # an API key's own identity: it signs in only as the key
    DEACTIVATED = "DEACTIVATED"  # every membership that would do has been deactivated
    NOT_A_MEMBER = "NOT_A_MEMBER"  # no membership in the organisation named, or none at all
    SEVERAL = "SEVERAL"  # members of several organisations name the one they act in
    REVOKED = "REVOKED"  # the API key has been revoked


@dataclass(frozen=True, slots=True)
class Refused:
    """Why there is no principal; `message` is what sign-in answers."""

    reason: Reason
    message: str
    organisations: tuple[str, ...] = ()  # slugs the person may act in instead, in order


@dataclass(frozen=True, slots=True)
class MembershipRow:
    """One membership of a person, as the caller read it: a place in one organisation."""

    organisation_id: int
    slug: str | None
    location_id: int | None
    department_id: int | None
    roles: frozenset[Role]
    deactivated_at: datetime | None


def person_principal(
    user: tuple[int, UserKind] | None,
    memberships: Iterable[MembershipRow],
    *,
    slug: str | None,
    client: str | None = None,
    only: frozenset[int] | None = None,
) -> Principal | Refused:
    """The principal a user is when they act in the organisation `slug` names (None: the only
    one they belong to). Support and external assessors belong to none and act everywhere
    their roles reach; `slug` does not change them.

    `only`: the organisations the credential may sign in to at all (an identity provider
    bound to an organisation vouches for that organisation's members alone): memberships
    elsewhere are not considered, and support and external assessors are refused."""
    if user is None:
        return Refused(Reason.UNKNOWN, NO_USER)
    user_id, kind = user
    if kind == UserKind.SERVICE:
        return Refused(Reason.SERVICE, NO_USER)
    if only is not None:
        if kind in (UserKind.SUPPORT, UserKind.EXTERNAL_ASSESSOR):
            return Refused(Reason.NOT_A_MEMBER, BOUND_ISSUER)
        memberships = [m for m in memberships if m.organisation_id in only]
        if not memberships:
            return Refused(Reason.NOT_A_MEMBER, BOUND_ISSUER)
    if kind == UserKind.SUPPORT:
        return Principal(user_id, kind, frozenset({Role.SUPPORT}), client=client)
    if kind == UserKind.EXTERNAL_ASSESSOR:
        return Principal(user_id, kind, frozenset({Role.EXTERNAL_ASSESSOR}), client=client)
    every = list(memberships)
    active = [m for m in every if m.deactivated_at is None]
    here = [m for m in active if slug is None or m.slug == slug]
    if not here and any(slug is None or m.slug == slug for m in every):
        # A deactivated membership no longer signs in: checked on every request, so a
        # deactivation takes effect at the next one.
        where = " in this organisation" if slug is not None else ""
        return Refused(Reason.DEACTIVATED, f"This user has been deactivated{where}.")
    if len(here) != 1:
        elsewhere = tuple(sorted(m.slug for m in active if m.slug is not None))
        if slug is not None or not here:
            return Refused(
                Reason.NOT_A_MEMBER,
                "The token names no organisation this user belongs to.",
                elsewhere,
            )
        return Refused(
            Reason.SEVERAL,
            "This user belongs to several organisations: the token needs `org`.",
            elsewhere,
        )
    (membership,) = here
    return Principal(
        user_id,
        kind,
        membership.roles,
        organisation_id=membership.organisation_id,
        location_id=membership.location_id,
        department_id=membership.department_id,
        client=client,
    )


def key_principal(
    *,
    key_id: int,
    user_id: int,
    organisation_id: int,
    roles: str,
    revoked_at: datetime | None,
    now: datetime,
    client: str | None = None,
) -> Principal | Refused:
    """The principal an API key acts as (its service identity, with the key's roles in its
    organisation), or REVOKED from the instant it was revoked on."""
    if revoked_at is not None and revoked_at <= now:
        return Refused(Reason.REVOKED, "The API key has been revoked.")
    return Principal(
        user_id,
        UserKind.SERVICE,
        stored_roles(roles),
        organisation_id=organisation_id,
        api_key_id=key_id,
        client=client,
    )


def stored_roles(text: str) -> frozenset[Role]:
    """A key's roles as stored: comma-separated."""
    return frozenset(Role(r) for r in text.split(",") if r)

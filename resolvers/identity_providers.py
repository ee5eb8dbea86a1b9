"""Organisation identity providers: an OpenID Connect issuer support binds to one organisation.

A bound issuer's tokens sign people in to memberships of that organisation only — never as
support or an external assessor, never to another organisation (server/auth.py) — so one
organisation's provider cannot assert another organisation's people. One per organisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update

from db.models import AuditAction, IdentityProvider, Organisation
from policies.vocabulary import Action, Resource, refusal
from resolvers.audit import audit
from resolvers.common import mutation_target
from resolvers.context import Context
from resolvers.errors import Forbidden
from resolvers.outcomes import AlreadyExists, Invalid, NotFound

MAX_ISSUER = 500
MAX_AUDIENCE = 500
MAX_CLAIM = 100
DEFAULT_EMAIL_CLAIM = "email"


@dataclass(frozen=True)
class IdentityProviderSet:
    organisation: Organisation
    issuer: str
    audience: str
    email_claim: str
    unchanged: bool = False


@dataclass(frozen=True)
class IdentityProviderRemoved:
    organisation: Organisation
    unchanged: bool = False


def clean_issuer(value: str, allow_http: bool) -> str | Invalid:
    """An issuer as its tokens' `iss` says it: an https URL without query or fragment."""
    issuer = value.strip()
    try:
        parts = urlsplit(issuer)
    except ValueError:
        parts = None
    schemes = ("https", "http") if allow_http else ("https",)
    if (
        parts is None
        or parts.scheme not in schemes
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or len(issuer) > MAX_ISSUER
        or not issuer.isprintable()
        or " " in issuer
    ):
        return Invalid(
            "issuer must be the provider's https URL, as its tokens' `iss` claim says it, "
            f"at most {MAX_ISSUER} characters.",
            field="issuer",
        )
    return issuer


def _clean_word(value: str, field: str, limit: int) -> str | Invalid:
    word = value.strip()
    if not word or len(word) > limit or not word.isprintable():
        return Invalid(f"{field} must be 1 to {limit} printable characters.", field=field)
    return word


async def _organisation(ctx: Context, organisation_id: str) -> Organisation | Invalid | NotFound:
    if not ctx.rules.holds(Resource.ORGANISATION, Action.BIND):
        raise Forbidden(refusal(Resource.ORGANISATION, Action.BIND))
    return await mutation_target(
        ctx, organisation_id, Organisation, "organisationId", Action.BIND, Resource.ORGANISATION
    )


async def set_organisation_identity_provider(
    ctx: Context,
    *,
    organisation_id: str,
    issuer: str,
    audience: str,
    email_claim: str | None = None,
) -> IdentityProviderSet | Invalid | NotFound | AlreadyExists:
    organisation = await _organisation(ctx, organisation_id)
    if isinstance(organisation, Invalid | NotFound):
        return organisation
    clean = clean_issuer(issuer, ctx.limits.allow_http_issuers)
    if isinstance(clean, Invalid):
        return clean
    aud = _clean_word(audience, "audience", MAX_AUDIENCE)
    if isinstance(aud, Invalid):
        return aud
    claim = _clean_word(email_claim or DEFAULT_EMAIL_CLAIM, "emailClaim", MAX_CLAIM)
    if isinstance(claim, Invalid):
        return claim
    bound = await ctx.db.scalar(
        select(IdentityProvider).where(IdentityProvider.organisation_id == organisation.id)
    )
    if bound is not None and (bound.issuer, bound.audience, bound.email_claim) == (
        clean,
        aud,
        claim,
    ):
        return IdentityProviderSet(organisation, clean, aud, claim, unchanged=True)
    taken = await ctx.db.scalar(
        select(IdentityProvider.id).where(
            IdentityProvider.issuer == clean,
            IdentityProvider.audience == aud,
            IdentityProvider.organisation_id != organisation.id,
        )
    )
    if taken is not None:
        return AlreadyExists(
            "This issuer and audience are bound to another organisation: give each "
            "organisation its own client (audience) at the provider.",
            field="audience",
        )
    values = {"issuer": clean, "audience": aud, "email_claim": claim, "updated_at": ctx.now}
    if bound is None:
        if not await ctx.db.try_add(IdentityProvider(organisation_id=organisation.id, **values)):
            return AlreadyExists("This issuer and audience are bound already.", field="audience")
    else:
        await ctx.db.execute(
            update(IdentityProvider).where(IdentityProvider.id == bound.id).values(**values)
        )
    await audit(
        ctx,
        AuditAction.IDENTITY_PROVIDER_SET,
        organisation,
        organisation_id=organisation.id,
        details={"issuer": clean, "audience": aud, "emailClaim": claim},
    )
    return IdentityProviderSet(organisation, clean, aud, claim)


async def remove_organisation_identity_provider(
    ctx: Context, *, organisation_id: str
) -> IdentityProviderRemoved | Invalid | NotFound:
    organisation = await _organisation(ctx, organisation_id)
    if isinstance(organisation, Invalid | NotFound):
        return organisation
    removed = await ctx.db.scalar(
        select(IdentityProvider.issuer).where(IdentityProvider.organisation_id == organisation.id)
    )
    if removed is None:
        return IdentityProviderRemoved(organisation, unchanged=True)
    await ctx.db.execute(
        delete(IdentityProvider).where(IdentityProvider.organisation_id == organisation.id)
    )
    await audit(
        ctx,
        AuditAction.IDENTITY_PROVIDER_REMOVED,
        organisation,
        organisation_id=organisation.id,
        details={"issuer": removed},
    )
    return IdentityProviderRemoved(organisation)

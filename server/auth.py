"""Authentication: `Authorization: Bearer <JWT>` or `Authorization: ApiKey <key>` → Principal."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import ApiKey, Membership, MembershipRole, Organisation, User, UserKind
from policies.principal import Principal
from policies.vocabulary import Role
from server.settings import Settings
from server.tokens import api_key_prefix, decode_token, hash_api_key


@dataclass(frozen=True)
class AuthFailure:
    message: str


class Authenticator:
    def __init__(
        self, settings: Settings, secret: str, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.settings = settings
        self.secret = secret
        self.maker = maker

    async def authenticate(
        self, header: str | None, now: datetime
    ) -> Principal | AuthFailure | None:
        """None without credentials; AuthFailure for bad ones."""
        if not header or not header.strip():
            return None
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if not credential:
            return AuthFailure("Malformed Authorization header.")
        async with self.maker() as session:
            if scheme.lower() == "bearer":
                return await self._bearer(session, credential)
            if scheme.lower() == "apikey":
                return await self._api_key(session, credential, now)
        return AuthFailure("Use `Authorization: Bearer <token>` or `Authorization: ApiKey <key>`.")

    async def _bearer(self, session: AsyncSession, token: str) -> Principal | AuthFailure:
        try:
            claims = decode_token(self.settings, self.secret, token)
        except jwt.ExpiredSignatureError:
            return AuthFailure("The token has expired.")
        except jwt.InvalidTokenError:
            return AuthFailure("The token is not valid.")
        email, slug = claims.get("sub"), claims.get("org")
        if not isinstance(email, str) or (slug is not None and not isinstance(slug, str)):
            return AuthFailure("The token is not valid.")
        user = (
            await session.execute(select(User).where(User.email == email.lower()))
        ).scalar_one_or_none()
        if user is None or user.kind == UserKind.SERVICE:
            return AuthFailure("The token names no user.")
        if user.kind == UserKind.SUPPORT:
            return Principal(user.id, user.kind, frozenset({Role.SUPPORT}), client="jwt")
        if user.kind == UserKind.EXTERNAL_ASSESSOR:
            return Principal(user.id, user.kind, frozenset({Role.EXTERNAL_ASSESSOR}), client="jwt")
        stmt = (
            select(Membership, Organisation.slug)
            .join(Organisation, Organisation.id == Membership.organisation_id)
            .where(Membership.user_id == user.id)
        )
        if slug is not None:
            stmt = stmt.where(Organisation.slug == slug)
        found = (await session.execute(stmt)).all()
        # A deactivated membership no longer signs in: checked on every request, so a
        # deactivation takes effect at the next one.
        memberships = [row for row in found if row[0].deactivated_at is None]
        if len(memberships) != 1:
            if not memberships and found:
                where = " in this organisation" if slug is not None else ""
                return AuthFailure(f"This user has been deactivated{where}.")
            return AuthFailure(
                "The token names no organisation this user belongs to."
                if slug is not None or not memberships
                else "This user belongs to several organisations: the token needs `org`."
            )
        membership = memberships[0][0]
        roles = (
            await session.execute(
                select(MembershipRole.role).where(MembershipRole.membership_id == membership.id)
            )
        ).scalars()
        return Principal(
            user.id,
            user.kind,
            frozenset(Role(r) for r in roles),
            organisation_id=membership.organisation_id,
            location_id=membership.location_id,
            department_id=membership.department_id,
            client="jwt",
        )

    async def _api_key(
        self, session: AsyncSession, key: str, now: datetime
    ) -> Principal | AuthFailure:
        prefix = api_key_prefix(key)
        if prefix is None:
            return AuthFailure("The API key is not valid.")
        row = (
            await session.execute(select(ApiKey).where(ApiKey.prefix == prefix))
        ).scalar_one_or_none()
        if row is None or not hmac.compare_digest(row.key_hash, hash_api_key(key)):
            return AuthFailure("The API key is not valid.")
        if row.revoked_at is not None and row.revoked_at <= now:
            return AuthFailure("The API key has been revoked.")
        return Principal(
            row.user_id,
            UserKind.SERVICE,
            frozenset(Role(r) for r in row.roles.split(",") if r),
            organisation_id=row.organisation_id,
            api_key_id=row.id,
            client=f"api-key:{row.prefix}",
        )

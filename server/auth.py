"""Authentication: `Authorization: Bearer <JWT>` or `Authorization: ApiKey <key>` → Principal.

A bearer token is either HS256, signed with CASELOAD_JWT_SECRET (the command line and the demo
mint these), or signed by an OpenID Connect provider (RS256, ES256, EdDSA): the platform's
issuer (CASELOAD_OIDC_ISSUER or CASELOAD_JWKS_URL), trusted for everyone, or an issuer support
bound to one organisation (`identity_providers`), trusted only for that organisation's
members. A token's signature is checked once per process and its claims kept until it
expires; a provider's keys are fetched only when missing (server/oidc.py); which issuers are
bound is read from the database every BINDINGS_FRESH_SECONDS, and again (at most once a
second) for a token of an issuer not among them. Finding the principal is ONE statement, run
inside the operation's own transaction — by the standard executor through its session, by the
compiled path on its connection — and it reads the binding again: a removed or changed binding
refuses the next request. Sign-in creates nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import Select, Update, bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.engine import WRITE_INTENT
from db.models import (
    ApiKey,
    IdentityProvider,
    Membership,
    MembershipRole,
    Organisation,
    User,
    UserKind,
)
from db.session import Database
from policies.identity import MembershipRow, Reason, Refused, key_principal, person_principal
from policies.principal import Principal
from policies.vocabulary import Role
from schema.caches import BoundedCache
from server.oidc import ALGORITHMS, KeySet, Timing
from server.settings import Settings
from server.tokens import ALGORITHM as HS256
from server.tokens import api_key_prefix, decode_token, hash_api_key

log = logging.getLogger("caseload.auth")

# Decoded tokens kept per process, so a busy caller's signature is checked once: at most this
# many bytes of tokens (each entry counted as its token's length and a fixed overhead).
TOKEN_CACHE_BYTES = 4 * 1024 * 1024
TOKEN_ENTRY_OVERHEAD = 400
MAX_CACHED_TOKEN = 8 * 1024
# A longer token is refused unread.
MAX_TOKEN = 8 * 1024
# A slug in X-Caseload-Organisation longer than this names no organisation.
MAX_SLUG = 100
# Seconds of difference between the provider's clock and this server's that are forgiven.
LEEWAY_SECONDS = 30
ORGANISATION_HEADER = "X-Caseload-Organisation"
# Bound issuers are read again this often, and for an unknown issuer at most this often.
BINDINGS_FRESH_SECONDS = 30.0
BINDINGS_UNKNOWN_SECONDS = 1.0
# An API key's last use is written at most this often, so that reads stay reads.
LAST_USED_EVERY = timedelta(minutes=1)
# Keys whose use waits to be written (a key is noted once until then).
MAX_PENDING_KEYS = 10_000


@dataclass(frozen=True)
class AuthFailure:
    message: str
    # Who the credentials name is known, and refused: a revoked key, a deactivated or missing
    # membership (a subscription closes with 4403 rather than 4401).
    forbidden: bool = False


# The refusals of a known user or key (AuthFailure.forbidden).
FORBIDDEN = frozenset({Reason.REVOKED, Reason.DEACTIVATED, Reason.NOT_A_MEMBER, Reason.SEVERAL})


@dataclass(frozen=True)
class Person:
    """A verified token: who it names and for which organisation (slug: the token's claim,
    else the request's X-Caseload-Organisation header, else None: their only membership)."""

    email: str
    slug: str | None
    # (issuer, audience) of an issuer bound to an organisation: its members only.
    bound: tuple[str, str] | None = None


@dataclass(frozen=True)
class Signed:
    """What a verified token says, kept per token until it expires."""

    email: str
    slug: str | None
    bound: tuple[str, str] | None = None


@dataclass(frozen=True)
class Binding:
    """An issuer bound to an organisation, as last read (the organisation: in the sign-in)."""

    issuer: str
    audience: str
    email_claim: str


class Bindings:
    """The issuers support bound to organisations, read from the database now and then, with
    each issuer's keys (one KeySet per issuer, shared by the organisations it serves)."""

    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        timing: Timing,
        allow_http: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maker = maker
        self.timing = timing
        self.allow_http = allow_http
        self.clock = clock
        self.by_issuer: dict[str, list[Binding]] = {}
        self.keys: dict[str, KeySet] = {}
        self.loaded_at: float | None = None
        self.loads = 0  # reads of the table (tests read it)
        self._lock = asyncio.Lock()

    async def find(self, issuer: str) -> list[Binding]:
        if self._due(issuer):
            async with self._lock:
                if self._due(issuer):
                    await self._load()
        return self.by_issuer.get(issuer, [])

    def _due(self, issuer: str) -> bool:
        if self.loaded_at is None:
            return True
        age = self.clock() - self.loaded_at
        if issuer in self.by_issuer:
            return age >= BINDINGS_FRESH_SECONDS
        return age >= BINDINGS_UNKNOWN_SECONDS

    async def _load(self) -> None:
        self.loaded_at = self.clock()
        self.loads += 1
        try:
            async with self.maker() as session:
                rows = (
                    await session.execute(
                        select(
                            IdentityProvider.issuer,
                            IdentityProvider.audience,
                            IdentityProvider.email_claim,
                        )
                    )
                ).all()
        except SQLAlchemyError as exc:
            log.warning("could not read the bound identity providers", exc_info=exc)
            return
        found: dict[str, list[Binding]] = {}
        for issuer, audience, claim in rows:
            found.setdefault(issuer, []).append(Binding(issuer, audience, claim))
        self.by_issuer = found
        self.keys = {
            issuer: self.keys.get(issuer)
            or KeySet(
                issuer=issuer,
                jwks_url=None,
                timing=self.timing,
                allow_http=self.allow_http,
                clock=self.clock,
            )
            for issuer in found
        }


@dataclass(frozen=True)
class Key:
    """An API key as presented: its prefix (to find it) and its hash (to check it)."""

    prefix: str
    digest: str


Credentials = Person | Key


def person_statement() -> Select[*tuple[Any, ...]]:
    """The user named by `:email`, one row per (membership, role), with the issuer and
    audience bound to the membership's organisation, if any."""
    return (
        select(
            User.id,
            User.kind,
            Membership.organisation_id,
            Membership.location_id,
            Membership.department_id,
            Organisation.slug,
            MembershipRole.role,
            Membership.deactivated_at,
            IdentityProvider.issuer,
            IdentityProvider.audience,
        )
        .outerjoin(Membership, Membership.user_id == User.id)
        .outerjoin(Organisation, Organisation.id == Membership.organisation_id)
        .outerjoin(MembershipRole, MembershipRole.membership_id == Membership.id)
        .outerjoin(IdentityProvider, IdentityProvider.organisation_id == Membership.organisation_id)
        .where(User.email == _param("email"))
    )


def key_statement() -> Select[*tuple[Any, ...]]:
    """The API key with prefix `:prefix`."""
    return select(
        ApiKey.id,
        ApiKey.user_id,
        ApiKey.organisation_id,
        ApiKey.roles,
        ApiKey.key_hash,
        ApiKey.revoked_at,
        ApiKey.prefix,
        ApiKey.last_used_at,
        ApiKey.rate_points_per_minute,
    ).where(ApiKey.prefix == _param("prefix"))


def _param(name: str) -> Any:
    return bindparam(name)


class Authenticator:
    def __init__(
        self, settings: Settings, secret: str | None, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """`secret`: what HS256 tokens are checked with (None: they are refused)."""
        self.settings = settings
        self.secret = secret
        self.maker = maker
        self._tokens: BoundedCache[str, tuple[Signed, datetime]] = BoundedCache(
            TOKEN_CACHE_BYTES, MAX_CACHED_TOKEN + TOKEN_ENTRY_OVERHEAD
        )
        self.timing = Timing(
            refetch=settings.oidc_refetch_seconds,
            max_age=settings.oidc_keys_max_age_seconds,
            timeout=settings.oidc_fetch_timeout_seconds,
        )
        # The platform's issuer: trusted for everyone.
        self.platform: KeySet | None = None
        if settings.oidc_enabled:
            self.platform = KeySet(
                issuer=settings.oidc_issuer,
                jwks_url=settings.jwks_url,
                timing=self.timing,
                allow_http=settings.oidc_allow_http,
            )
        # Issuers bound to one organisation each.
        self.bindings = Bindings(maker, self.timing, settings.oidc_allow_http)
        self.person = person_statement()
        self.key = key_statement()
        self.usage = KeyUsage(maker)
        # Told of each API key that signs in, with its own fair-use budget (server/services.py).
        self.on_key: Callable[[Key, int | None], None] | None = None

    async def read(
        self, header: str | None, now: datetime, organisation: str | None = None
    ) -> Credentials | AuthFailure | None:
        """What the Authorization header claims, checked without the database (a provider's
        keys may be fetched); None without credentials. `organisation`: the request's
        X-Caseload-Organisation header, the slug a token without an organisation acts in."""
        if not header or not header.strip():
            return None
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if not credential:
            return AuthFailure("Malformed Authorization header.")
        if scheme.lower() == "bearer":
            signed = await self._token(credential, now)
            if isinstance(signed, AuthFailure):
                return signed
            slug = signed.slug
            if slug is None and organisation is not None and organisation.strip():
                slug = organisation.strip()
                if len(slug) > MAX_SLUG:
                    return AuthFailure(f"{ORGANISATION_HEADER} names no organisation.")
            return Person(signed.email, slug, signed.bound)
        if scheme.lower() == "apikey":
            prefix = api_key_prefix(credential)
            if prefix is None:
                return AuthFailure("The API key is not valid.")
            return Key(prefix, hash_api_key(credential))
        return AuthFailure("Use `Authorization: Bearer <token>` or `Authorization: ApiKey <key>`.")

    async def _token(self, token: str, now: datetime) -> Signed | AuthFailure:
        cached = self._tokens.get(token)
        if cached is not None:
            signed, expires = cached
            if now < expires:
                return signed
            self._tokens.pop(token)
        if len(token) > MAX_TOKEN:
            return AuthFailure("The token is too long.")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if algorithm == HS256:
                found = self._hs256(token)
            elif algorithm in ALGORITHMS:
                found = await self._provider(token, algorithm)
            else:
                return AuthFailure("The token is not valid.")
        except jwt.ExpiredSignatureError:
            return AuthFailure("The token has expired.")
        except jwt.InvalidTokenError:
            return AuthFailure("The token is not valid.")
        if isinstance(found, AuthFailure):
            return found
        signed, claims = found
        expires = datetime.fromtimestamp(claims["exp"], UTC)
        self._tokens.put(token, (signed, expires), len(token) + TOKEN_ENTRY_OVERHEAD)
        return signed

    def _hs256(self, token: str) -> tuple[Signed, dict[str, Any]] | AuthFailure:
        """A token of the command line or the demo, signed with the shared secret."""
        if self.secret is None:
            return AuthFailure("The token is not valid.")
        claims = decode_token(self.settings, self.secret, token)
        email, slug = claims.get("sub"), claims.get("org")
        if not isinstance(email, str) or (slug is not None and not isinstance(slug, str)):
            return AuthFailure("The token is not valid.")
        return Signed(email.lower(), slug), claims

    async def _provider(
        self, token: str, algorithm: str
    ) -> tuple[Signed, dict[str, Any]] | AuthFailure:
        """A token an OpenID Connect provider signed: the platform's issuer, or one bound to
        an organisation (told apart by the token's `iss` and `aud`, then checked)."""
        settings = self.settings
        unverified = jwt.decode(token, options={"verify_signature": False})
        issuer, audience = unverified.get("iss"), unverified.get("aud")
        platform = self.platform
        if platform is not None and platform.issuer is not None and issuer == platform.issuer:
            return await self._verify(
                token, algorithm, platform, settings.jwt_audience, settings.oidc_email_claim
            )
        if isinstance(issuer, str) and issuer:
            audiences = [audience] if isinstance(audience, str) else audience
            named = (
                {a for a in audiences if isinstance(a, str)}
                if isinstance(audiences, list)
                else set()
            )
            bound = [b for b in await self.bindings.find(issuer) if b.audience in named]
            if len(bound) > 1:
                return AuthFailure("The token names the audiences of several organisations.")
            if bound:
                (binding,) = bound
                keys = self.bindings.keys.get(issuer)
                if keys is None:
                    return AuthFailure("The token's issuer is not trusted.")
                return await self._verify(
                    token,
                    algorithm,
                    keys,
                    binding.audience,
                    binding.email_claim,
                    (binding.issuer, binding.audience),
                )
        if platform is not None and platform.issuer is None:
            # Keys from CASELOAD_JWKS_URL alone: any issuer those keys sign for.
            return await self._verify(
                token, algorithm, platform, settings.jwt_audience, settings.oidc_email_claim
            )
        return AuthFailure("The token's issuer is not trusted.")

    async def _verify(
        self,
        token: str,
        algorithm: str,
        keys: KeySet,
        audience: str,
        email_claim: str,
        bound: tuple[str, str] | None = None,
    ) -> tuple[Signed, dict[str, Any]] | AuthFailure:
        kid = jwt.get_unverified_header(token).get("kid")
        key = await keys.key(kid if isinstance(kid, str) else None)
        if key is None or key.algorithm_name != algorithm:
            return AuthFailure("The token is signed with a key the issuer does not hold.")
        required = ["exp", "aud"] + (["iss"] if keys.issuer is not None else [])
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=keys.issuer,
            audience=audience,
            leeway=LEEWAY_SECONDS,
            options={"require": required},
        )
        found = _provider_claims(claims, email_claim, self.settings.oidc_org_claim)
        if isinstance(found, AuthFailure) or bound is None:
            return found
        signed, claims = found
        return Signed(signed.email, signed.slug, bound), claims

    def statement(self, credentials: Credentials) -> tuple[Select[Any], dict[str, Any]]:
        """The one statement that finds the principal, with its parameters."""
        if isinstance(credentials, Person):
            return self.person, {"email": credentials.email}
        return self.key, {"prefix": credentials.prefix}

    def principal(
        self, credentials: Credentials, rows: Sequence[Sequence[Any]], now: datetime
    ) -> Principal | AuthFailure:
        """The principal the statement's rows describe, or why there is none."""
        if isinstance(credentials, Key):
            return _api_key_principal(credentials, rows, now)
        found = person_from_rows(rows, credentials.slug, bound=credentials.bound)
        return refused(found) if isinstance(found, Refused) else found

    async def used(
        self,
        principal: Principal,
        rows: Sequence[Sequence[Any]],
        now: datetime,
        operation: Database | None = None,
    ) -> None:
        """Record that an API key was used: at most once a minute; never fails the request, and
        never waits for a connection the request does not already hold.

        A write operation (`operation`, a mutation's transaction) records it itself: on SQLite
        it already holds the write lock. Anything else notes it in memory, and one background
        task writes what was noted (KeyUsage): a read stays a read, on one connection.
        """
        if principal.api_key_id is None:
            return
        if self.on_key is not None:
            # The key's own fair-use budget, for its next requests (charged before sign-in).
            self.on_key(Key(rows[0][6], rows[0][4]), rows[0][8])
        last = _as_datetime(rows[0][7])
        if last is not None and last > now - LAST_USED_EVERY:
            return
        if operation is not None and operation.write_intent:
            await operation.execute(self.usage.statement(principal.api_key_id, now))
            return
        self.usage.note(principal.api_key_id, now)


class KeyUsage:
    """When API keys were last used, noted in memory by requests and written by one task.

    A request that wrote the time itself would need a second pooled connection while holding
    its first: ten such requests at once would empty a pool of ten and wait for each other.
    Instead the first note starts a task that waits `delay` seconds and then writes every key
    noted meanwhile, in one transaction on one connection; the database keeps the
    once-a-minute rule (a row used within the minute is left alone).
    """

    def __init__(self, maker: async_sessionmaker[AsyncSession], delay: float = 5.0) -> None:
        self.maker = maker
        self.delay = delay
        self.pending: dict[int, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def statement(key_id: int, now: datetime) -> Update:
        return (
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - LAST_USED_EVERY),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )

    def note(self, key_id: int, now: datetime) -> None:
        if key_id in self.pending or len(self.pending) >= MAX_PENDING_KEYS:
            return
        self.pending[key_id] = now
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write_later())

    async def _write_later(self) -> None:
        await asyncio.sleep(self.delay)
        await self.flush()

    async def flush(self) -> None:
        """Write every use noted so far (tests call it rather than wait)."""
        pending, self.pending = self.pending, {}
        if not pending:
            return
        try:
            async with self.maker() as session:
                # A write transaction from the start: SQLite would refuse to upgrade a read.
                await session.connection(execution_options={WRITE_INTENT: True})
                for key_id, at in sorted(pending.items()):
                    await session.execute(self.statement(key_id, at))
                await session.commit()
        except SQLAlchemyError as exc:
            log.warning("could not record when API keys were last used", exc_info=exc)

    async def aclose(self) -> None:
        """Stop the task and write what it was waiting to write."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()


def _provider_claims(
    claims: dict[str, Any], email_claim: str, org_claim: str
) -> tuple[Signed, dict[str, Any]] | AuthFailure:
    """Who a provider's verified token names: an email the provider has verified (a token
    saying `email_verified: false` is refused; one that says nothing is the provider's word),
    and the organisation's slug when it names one."""
    email, slug = claims.get(email_claim), claims.get(org_claim)
    if not isinstance(email, str) or not email.strip():
        return AuthFailure(f"The token has no `{email_claim}` claim.")
    if claims.get("email_verified") in (False, "false"):
        return AuthFailure("The token's email address is not verified.")
    if slug is not None and not isinstance(slug, str):
        return AuthFailure(f"The token's `{org_claim}` claim is not an organisation's slug.")
    return Signed(email.strip().lower(), slug), claims


def _as_datetime(value: Any) -> datetime | None:
    """A timestamp as either driver returns it (SQLite: naive text), in UTC."""
    if value is None:
        return None
    found = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found


def person_from_rows(
    rows: Sequence[Sequence[Any]],
    slug: str | None,
    client: str | None = "jwt",
    bound: tuple[str, str] | None = None,
) -> Principal | Refused:
    """Who the rows of `person_statement` say the person is in `slug`'s organisation
    (policies/identity.py decides; this only reads the statement's columns). `bound`: the
    (issuer, audience) of an organisation's identity provider that signed the token: only
    the organisation it is bound to now counts."""
    if not rows:
        return person_principal(None, (), slug=slug, client=client)
    places: dict[int, MembershipRow] = {}
    only: set[int] = set()
    for row in rows:
        organisation_id, location_id, department_id, org_slug, role, ended = row[2:8]
        if organisation_id is None:
            continue  # no membership at all: the outer join's one row
        if bound is not None and (row[8], row[9]) == bound:
            only.add(organisation_id)
        seen = places.get(organisation_id)
        held = frozenset() if role is None else frozenset({Role(role)})
        places[organisation_id] = MembershipRow(
            organisation_id,
            org_slug,
            location_id,
            department_id,
            held if seen is None else seen.roles | held,
            _as_datetime(ended),
        )
    return person_principal(
        (rows[0][0], UserKind(rows[0][1])),
        places.values(),
        slug=slug,
        client=client,
        only=None if bound is None else frozenset(only),
    )


def _api_key_principal(
    key: Key, rows: Sequence[Sequence[Any]], now: datetime
) -> Principal | AuthFailure:
    if not rows or not hmac.compare_digest(rows[0][4], key.digest):
        return AuthFailure("The API key is not valid.")
    key_id, user_id, organisation_id, roles, _digest, revoked_at, prefix, _used, _budget = rows[0]
    found = key_principal(
        key_id=key_id,
        user_id=user_id,
        organisation_id=organisation_id,
        roles=roles,
        revoked_at=_as_datetime(revoked_at),
        now=now,
        client=f"api-key:{prefix}",
    )
    return refused(found) if isinstance(found, Refused) else found


def refused(found: Refused) -> AuthFailure:
    return AuthFailure(found.message, forbidden=found.reason in FORBIDDEN)

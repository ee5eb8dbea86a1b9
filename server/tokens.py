"""JWTs for people and hashed API keys for partner systems."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from resolvers.api_keys import SCHEME as API_KEY_SCHEME
from resolvers.api_keys import api_key_prefix, hash_api_key, new_api_key
from server.settings import Settings, jwt_secret

ALGORITHM = "HS256"

# API keys are made where they are created (resolvers.api_keys); named here for the server.
__all__ = [
    "API_KEY_SCHEME",
    "api_key_prefix",
    "decode_token",
    "hash_api_key",
    "mint_token",
    "new_api_key",
    "parse_ttl",
]


TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = timedelta(days=366)


def parse_ttl(text: str) -> timedelta:
    """`3600` (seconds), `90m`, `1h30m`, `7d`: positive, at most a year."""
    value = text.strip().lower()
    if value.isascii() and value.isdigit():
        seconds = int(value)
    elif re.fullmatch(r"(\d+[smhd])+", value) and value.isascii():
        seconds = sum(
            int(amount) * TTL_UNITS[unit] for amount, unit in re.findall(r"(\d+)([smhd])", value)
        )
    else:
        raise ValueError(
            f"TTL {text!r} is not a duration: write seconds (3600) or amounts with units "
            "s, m, h, d (90m, 1h30m, 7d)"
        )
    if not 0 < seconds <= MAX_TTL.total_seconds():
        raise ValueError(f"TTL {text!r} must be more than 0 seconds and at most 366 days")
    return timedelta(seconds=seconds)


def mint_token(
    settings: Settings, *, email: str, org: str | None = None, ttl: timedelta | None = None
) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": email.strip().lower(),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + (ttl or timedelta(seconds=settings.jwt_ttl_seconds)),
    }
    if org:
        claims["org"] = org
    return jwt.encode(claims, jwt_secret(settings, existing_ok=True), algorithm=ALGORITHM)


def decode_token(settings: Settings, secret: str, token: str) -> dict[str, Any]:
    """Claims of a valid token; jwt.InvalidTokenError otherwise."""
    claims: dict[str, Any] = jwt.decode(
        token,
        secret,
        algorithms=[ALGORITHM],
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        options={"require": ["exp", "sub", "iss", "aud"]},
    )
    return claims

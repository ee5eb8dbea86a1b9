"""JWTs for people and hashed API keys for partner systems."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from server.settings import Settings, jwt_secret

ALGORITHM = "HS256"
API_KEY_SCHEME = "ck"


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


def new_api_key() -> tuple[str, str, str]:
    """(key shown once, prefix for look-up, SHA-256 hash to store)."""
    prefix = secrets.token_hex(6)
    key = f"{API_KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_prefix(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_SCHEME or not parts[1]:
        return None
    return parts[1]

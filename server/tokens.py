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


def parse_ttl(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise ValueError("TTL looks like 30m, 1h or 7d")
    amount, unit = int(match[1]), match[2]
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    return timedelta(**{units[unit]: amount})


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
    return jwt.encode(claims, jwt_secret(settings), algorithm=ALGORITHM)


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

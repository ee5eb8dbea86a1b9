"""An OpenID Connect provider's signing keys, as Caseload trusts them: fetched, kept, refreshed.

A provider is named by its issuer (its keys found through the discovery document at
`{issuer}/.well-known/openid-configuration`) or by its keys' URL. Its keys are fetched once
and kept; a token naming a key not among them makes them be fetched again, at most once per
`refetch` seconds per provider, so that a stream of made-up key ids costs the provider one
request a minute; kept keys older than `max_age` are fetched again the same way. When the
provider cannot be reached, the keys already kept are used. Fetching runs in a thread, under a
timeout: the event loop never waits on the network.

The keys are parsed and the signatures checked by PyJWT (with `cryptography`); nothing here
does any cryptography of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKError, PyJWKSetError

log = logging.getLogger("caseload.oidc")

DISCOVERY_PATH = "/.well-known/openid-configuration"
# The algorithms a provider's tokens may be signed with; never HS256 (a shared secret).
ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
# A discovery document or key set larger than this is not read.
MAX_DOCUMENT_BYTES = 512 * 1024


class FetchError(Exception):
    """A provider's document could not be fetched or read."""


def fetch_json(url: str, timeout: float) -> dict[str, Any]:
    """A JSON object from `url` (blocking: run in a thread)."""
    if not url.startswith(("https://", "http://")):
        raise FetchError(f"{url!r} is not an http(s) URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:  # URLError, HTTPError, timeouts, refused connections
        raise FetchError(f"{url}: {exc}") from exc
    if len(body) > MAX_DOCUMENT_BYTES:
        raise FetchError(f"{url}: larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        found = json.loads(body)
    except ValueError as exc:
        raise FetchError(f"{url}: not JSON") from exc
    if not isinstance(found, dict):
        raise FetchError(f"{url}: not a JSON object")
    return found


Fetch = Callable[[str, float], dict[str, Any]]


@dataclass(frozen=True)
class Timing:
    refetch: float  # seconds between two fetches of one provider's keys, at least
    max_age: float  # kept keys older than this are fetched again (kept if that fails)
    timeout: float  # one fetch, at most


class KeySet:
    """One provider's keys: `issuer` (discovery) or `jwks_url` (the keys' URL itself)."""

    def __init__(
        self,
        *,
        issuer: str | None,
        jwks_url: str | None,
        timing: Timing,
        allow_http: bool = False,
        fetch: Fetch = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert issuer is not None or jwks_url is not None
        self.issuer = issuer
        self.jwks_url = jwks_url  # as configured
        self.discovered: str | None = None  # as the discovery document named it
        self.timing = timing
        self.schemes = ("https://", "http://") if allow_http else ("https://",)
        self.fetch = fetch
        self.clock = clock
        self.keys: dict[str, PyJWK] = {}
        self.fetched_at: float | None = None  # when the keys kept were fetched
        self.tried_at: float | None = None  # when a fetch was last begun
        self.fetches = 0  # fetches begun (tests read it)
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> PyJWK | None:
        """The key `kid` names (a provider with a single key may leave `kid` out), fetching
        the keys first when they are missing, stale, or lack `kid` and may be fetched again."""
        found = self._find(kid)
        if found is not None and not self._stale():
            return found
        async with self._lock:
            found = self._find(kid)  # another request may have fetched them meanwhile
            if (found is None or self._stale()) and self._may_fetch():
                await self._refresh()
                found = self._find(kid)
        return found

    def _find(self, kid: str | None) -> PyJWK | None:
        if kid is None:
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)

    def _stale(self) -> bool:
        return self.fetched_at is None or self.clock() - self.fetched_at > self.timing.max_age

    def _may_fetch(self) -> bool:
        return self.tried_at is None or self.clock() - self.tried_at >= self.timing.refetch

    async def _refresh(self) -> None:
        self.tried_at = self.clock()
        self.fetches += 1
        try:
            keys = await asyncio.wait_for(
                asyncio.to_thread(self._fetch_keys), self.timing.timeout + 1
            )
        except (FetchError, TimeoutError) as exc:
            log.warning(
                "could not fetch the signing keys of %s; the keys kept are used",
                self.issuer or self.jwks_url,
                extra={"error": str(exc)},
            )
            return
        self.keys, self.fetched_at = keys, self.clock()

    def _fetch_keys(self) -> dict[str, PyJWK]:
        """The provider's usable signing keys by id (blocking: run in a thread)."""
        url = self.jwks_url or self.discovered or self._discover()
        try:
            keys = PyJWKSet.from_dict(self.fetch(url, self.timing.timeout))
        except FetchError:
            self.discovered = None  # the provider may have moved its keys: discover again
            raise
        except (PyJWKError, PyJWKSetError) as exc:
            raise FetchError(f"{url}: no usable keys ({exc})") from exc
        found: dict[str, PyJWK] = {}
        for position, key in enumerate(keys.keys):
            if key.algorithm_name not in ALGORITHMS or key.public_key_use not in (None, "sig"):
                continue
            found[key.key_id or f"#{position}"] = key
        return found

    def _discover(self) -> str:
        """The keys' URL, from the issuer's discovery document (blocking)."""
        assert self.issuer is not None
        document = self.fetch(self.issuer.rstrip("/") + DISCOVERY_PATH, self.timing.timeout)
        if document.get("issuer") != self.issuer:
            raise FetchError(f"the discovery document of {self.issuer} names another issuer")
        url = document.get("jwks_uri")
        if not isinstance(url, str) or not url.startswith(self.schemes):
            raise FetchError(f"the discovery document of {self.issuer} names no jwks_uri")
        self.discovered = url
        return url

"""An OpenID Connect provider on 127.0.0.1, for tests: discovery and keys over real HTTP.

Each provider serves `/.well-known/openid-configuration` and `/jwks` from a thread, with
signing keys made for the run (RSA, EC P-256, Ed25519); it counts the requests for its keys,
adds and drops keys while it runs (rotation) and can be stopped (a provider that is down).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.servers import PORTS

AUDIENCE = "caseload-api"  # the tests' CASELOAD_JWT_AUDIENCE (the default)


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any

    @classmethod
    def make(cls, algorithm: str) -> SigningKey:
        private: Any
        if algorithm == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            private = ed25519.Ed25519PrivateKey.generate()
        return cls(f"{algorithm.lower()}-{uuid.uuid4().hex[:8]}", algorithm, private)

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        kind = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}
        found: dict[str, Any] = kind[self.algorithm].to_jwk(public, as_dict=True)  # type: ignore[attr-defined]
        return found | {"kid": self.kid, "use": "sig", "alg": self.algorithm}

    def public_pem(self) -> bytes:
        public = self.private.public_key()
        pem: bytes = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem


@dataclass
class Provider:
    """A running provider; `issuer` is its URL."""

    keys: list[SigningKey]
    port: int = 0  # from the test ports, when it starts
    hits: Counter[str] = field(default_factory=Counter)
    _server: ThreadingHTTPServer | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    def start(self) -> Provider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.hits[self.path] += 1
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {
                        "issuer": provider.issuer,
                        "jwks_uri": provider.jwks_url,
                    }
                elif self.path == "/jwks":
                    body = {"keys": [key.jwk() for key in list(provider.keys)]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # A port of the test ports that nothing listens on (one a provider of an earlier test
        # closed, its connections waiting out TIME_WAIT, will do: the server reuses addresses).
        for port in PORTS:
            try:
                self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            except OSError:
                continue
            self.port = port
            break
        else:
            raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")
        assert self._server is not None
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """The provider goes down: its port refuses connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def key_fetches(self) -> int:
        return self.hits["/jwks"]

    def key(self, algorithm: str = "RS256") -> SigningKey:
        return next(k for k in self.keys if k.algorithm == algorithm)

    def token(
        self,
        email: str | None,
        /,
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token this provider signs for `email` (claims given as None are left out)."""
        signer = key or self.keys[0]
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": uuid.uuid4().hex,
            "email": email,
            "iat": now,
            "exp": now + timedelta(hours=1),
        }
        body.update(claims)
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(
            body,
            signer.private,
            algorithm=signer.algorithm,
            headers={"kid": signer.kid} | (headers or {}),
        )


def hs256_with(secret: bytes, claims: dict[str, Any]) -> str:
    """An HS256 token signed with `secret` whatever it is (PyJWT refuses a public key as an
    HMAC secret: the forger does not)."""

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}"
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"

"""The HTTP envelope of /graphql: bodies read, capped and checked before anything else runs;
the media type of the answer, and its status."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive

from resolvers.codes import ErrorCode
from schema.admission import unstorable_variable

MAX_JSON_DEPTH = 64
HTTP_CODES = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
# JSON is UTF-8 (RFC 8259); the GraphQL-over-HTTP specification asks for the charset anyway.
GRAPHQL_RESPONSE_CONTENT_TYPE = f"{GRAPHQL_RESPONSE}; charset=utf-8"
# Refusals made before an operation runs, answered 400 under application/graphql-response+json:
# the document does not parse, does not validate (the depth and alias limits are validation
# rules), a variable does not coerce, or the request is over the cost limit (nothing ran).
REQUEST_ERRORS = frozenset(
    {
        ErrorCode.GRAPHQL_VALIDATION_FAILED,
        ErrorCode.MAX_DEPTH_EXCEEDED,
        ErrorCode.MAX_ALIASES_EXCEEDED,
        ErrorCode.MAX_TOKENS_EXCEEDED,
        ErrorCode.MAX_COST_EXCEEDED,
    }
)


class ClientGone(Exception):
    """The client disconnected before its body was read: there is nobody to answer."""


@dataclass
class Refused(Exception):
    """A request refused at the HTTP level, answered with a JSON `errors` body."""

    status: int
    code: ErrorCode
    message: str
    headers: dict[str, str] | None = None

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.headers)


def error_response(
    status: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
        headers=headers,
    )


@dataclass(frozen=True)
class GraphQLBody:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None


@dataclass(frozen=True)
class SentBody:
    """A body as sent: its document as text, or named by id (server/persisted.py resolves it)."""

    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None
    document_id: str | None = None  # a trusted document's id (GraphQL-over-HTTP's `documentId`)
    sha256: str | None = None  # `extensions.persistedQuery.sha256Hash`, in lower-case hex

    def with_query(self, query: str) -> GraphQLBody:
        return GraphQLBody(query, self.variables, self.operation_name, self.extensions)


# What `documentId` may be: the ids of a persisted-documents file (a hash, `sha256:<hex>`, a
# name), never a document.
MAX_DOCUMENT_ID = 200
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


async def read_graphql_body(request: Request, limit: int) -> SentBody:
    """Read, cap and parse a POST body; Refused or ClientGone otherwise."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise Refused(
            415,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "Send the request as Content-Type: application/json.",
        )
    raw = await read_capped(request.receive, request.headers.get("content-length"), limit)
    return parse_graphql_body(raw)


async def read_capped(receive: Receive, content_length: str | None, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    too_large = Refused(
        413, ErrorCode.BODY_TOO_LARGE, f"The request body is larger than {limit} bytes."
    )
    if content_length is not None:
        if not content_length.isascii() or not content_length.strip().isdigit():
            raise Refused(400, ErrorCode.BAD_REQUEST, "The Content-Length header is not a number.")
        if int(content_length) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_graphql_body(raw: bytes) -> SentBody:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # What orjson refuses, json may accept: integers past 64 bits, a lone surrogate (which
        # is then refused with its path), objects nested past orjson's own depth.
        try:
            data = json.loads(raw, parse_constant=_no_constants)
        except RecursionError:
            raise too_deep() from None
        except ValueError:
            raise Refused(
                400, ErrorCode.BAD_REQUEST, "The request body is not valid JSON."
            ) from None
    if not isinstance(data, dict):
        raise Refused(
            400,
            ErrorCode.BAD_REQUEST,
            'The request body must be one JSON object, {"query": ...}; batches are not accepted.',
        )
    if nesting_exceeds(data, MAX_JSON_DEPTH):
        raise too_deep()
    return checked_body(data)


def query_string_body(request: Request) -> SentBody:
    """A GET's query string as a body: `query` or `documentId`, and `variables` and
    `extensions` as JSON."""
    params = request.query_params
    data: dict[str, Any] = {"query": params.get("query")}
    for name in ("operationName", "documentId"):
        if name in params:
            data[name] = params[name]
    for name in ("variables", "extensions"):
        text = params.get(name)
        if text:
            try:
                data[name] = json.loads(text, parse_constant=_no_constants)
            except RecursionError:
                raise too_deep() from None
            except ValueError:
                raise Refused(400, ErrorCode.BAD_REQUEST, f"`{name}` is not valid JSON.") from None
            if isinstance(data[name], dict | list) and nesting_exceeds(
                data[name], MAX_JSON_DEPTH - 1
            ):
                raise too_deep()
    return checked_body(data)


def checked_body(data: dict[str, Any]) -> SentBody:
    """The body's members, each of the type the GraphQL-over-HTTP convention gives it: the
    document as `query`, or named by `documentId` or by Apollo's
    `extensions.persistedQuery` (version 1, `sha256Hash`)."""
    query = data.get("query")
    variables = data.get("variables")
    operation_name = data.get("operationName")
    extensions = data.get("extensions")
    document_id = data.get("documentId")
    if variables is not None and not isinstance(variables, dict):
        raise Refused(400, ErrorCode.BAD_REQUEST, "`variables` must be an object or null.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise Refused(400, ErrorCode.BAD_REQUEST, "`operationName` must be a string or null.")
    if extensions is not None and not isinstance(extensions, dict):
        raise Refused(400, ErrorCode.BAD_REQUEST, "`extensions` must be an object or null.")
    for name, value in (("operationName", operation_name), ("extensions", extensions)):
        if value is not None and unstorable_variable(value) is not None:
            raise Refused(
                400,
                ErrorCode.BAD_REQUEST,
                f"`{name}` holds text that is not Unicode (a lone surrogate or U+0000).",
            )
    sha256 = persisted_hash(extensions)
    if document_id is not None:
        if not isinstance(document_id, str) or not 0 < len(document_id) <= MAX_DOCUMENT_ID:
            raise Refused(
                400,
                ErrorCode.BAD_REQUEST,
                f"`documentId` must be a string of 1 to {MAX_DOCUMENT_ID} characters.",
            )
        if unstorable_variable(document_id) is not None:
            raise Refused(
                400, ErrorCode.BAD_REQUEST, "`documentId` holds text that is not Unicode."
            )
        if query is not None:
            raise Refused(
                400,
                ErrorCode.BAD_REQUEST,
                "Send the document as `query` or `documentId`, not both.",
            )
        return SentBody(None, variables, operation_name, extensions, document_id, sha256)
    if query is None and sha256 is not None:
        return SentBody(None, variables, operation_name, extensions, None, sha256)
    if not isinstance(query, str) or not query.strip():
        raise Refused(400, ErrorCode.BAD_REQUEST, "`query` must be a non-empty string.")
    return SentBody(query, variables, operation_name, extensions, None, sha256)


def persisted_hash(extensions: dict[str, Any] | None) -> str | None:
    """`extensions.persistedQuery.sha256Hash` (Apollo's automatic persisted queries), checked:
    an object of version 1 with 64 hexadecimal digits (None: no such extension)."""
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, dict):
        raise Refused(
            400,
            ErrorCode.BAD_REQUEST,
            '`extensions.persistedQuery` must be an object: {"version": 1, "sha256Hash": …}.',
        )
    version = persisted.get("version")
    if type(version) is not int or version != 1:
        raise Refused(400, ErrorCode.BAD_REQUEST, "`extensions.persistedQuery.version` must be 1.")
    sha256 = persisted.get("sha256Hash")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise Refused(
            400,
            ErrorCode.BAD_REQUEST,
            "`extensions.persistedQuery.sha256Hash` must be the SHA-256 of the document, "
            "64 hexadecimal digits.",
        )
    return sha256.lower()


def too_deep() -> Refused:
    return Refused(
        400,
        ErrorCode.BAD_REQUEST,
        f"The request body is nested deeper than {MAX_JSON_DEPTH} levels.",
    )


def nesting_exceeds(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether objects and arrays nest deeper than `limit` (the outermost counts as 1)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                if depth == limit:
                    return True
                stack.append((child, depth + 1))
    return False


def negotiate(accept: str | None) -> str:
    """The media type to answer in: application/graphql-response+json when the client prefers
    it, else application/json (also when it accepts neither, as before the newer type).

    Preference follows RFC 9110 (12.5.1): the highest q-value, where a media range named exactly
    counts before a wildcard, and among equals the one listed first.
    """
    if not accept:
        return JSON
    best: tuple[float, int, int] | None = None
    chosen = JSON
    for position, item in enumerate(accept.split(",")):
        kind, *parameters = (part.strip() for part in item.split(";"))
        kind = kind.lower()
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if not 0.0 < quality <= 1.0:  # q=0 refuses; outside 0..1 (nan too) is no q-value
            continue
        if kind == GRAPHQL_RESPONSE:
            candidate, exact = GRAPHQL_RESPONSE, 2
        elif kind == JSON:
            candidate, exact = JSON, 2
        elif kind == "application/*":
            candidate, exact = JSON, 1
        elif kind == "*/*":
            candidate, exact = JSON, 0
        else:
            continue
        rank = (quality, exact, -position)
        if best is None or rank > best:
            best, chosen = rank, candidate
    return chosen


def graphql_status(answer: Mapping[str, Any], media: str) -> int:
    """The HTTP status of an executor's answer: 401 for UNAUTHENTICATED, 429 for RATE_LIMITED,
    504 for TIMEOUT, and, under application/graphql-response+json, 400 for a request error
    (GraphQL-over-HTTP); 200 otherwise, and whenever there is data."""
    errors = answer.get("errors")
    if not errors or answer.get("data") is not None:
        return 200
    codes = {(error.get("extensions") or {}).get("code") for error in errors}
    if ErrorCode.UNAUTHENTICATED in codes:
        return 401
    if ErrorCode.RATE_LIMITED in codes:
        return 429
    if ErrorCode.TIMEOUT in codes:
        return 504
    if (
        media == GRAPHQL_RESPONSE
        and codes <= REQUEST_ERRORS
        and not any("path" in error for error in errors)
    ):
        return 400
    return 200


def challenge(authorization: str | None) -> str:
    """WWW-Authenticate for a 401: the two schemes `Authorization` takes (RFC 9110 11.6.1), and
    for a bearer token that was refused, RFC 6750's `invalid_token`."""
    scheme = (authorization or "").strip().split(" ", 1)[0].lower()
    bearer = 'Bearer error="invalid_token"' if scheme == "bearer" else "Bearer"
    return f"{bearer}, ApiKey"

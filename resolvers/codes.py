"""Every code an answer can carry, declared once with what it means.

A code is what a client branches on: a mutation's error type (`Error.code`), a bulk item's
(`ItemError.code`), a top-level error's `extensions.code`, and the HTTP envelope's refusals,
which have the same shape. Whatever answers with a code takes it from here, and the schema
lists them all as `enum ErrorCode` (schema/errors.py), so that clients can generate the list
instead of copying it.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """A code an answer can carry; its value is its name."""

    description: str
    deprecated: str | None  # no longer answered, kept for clients that match on it

    def __new__(cls, value: str, description: str, deprecated: str | None = None) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        member.deprecated = deprecated
        return member

    # Mutation error types (resolvers/outcomes.py), several also top-level or per bulk item.
    NOT_FOUND = (
        "NOT_FOUND",
        "The id does not exist, or the caller cannot see it (NotFoundError, or a bulk item); "
        "over HTTP, a path that does not exist (404).",
    )
    INVALID = (
        "INVALID",
        "The input is not acceptable: a mutation's ValidationError, a bulk item, or a top-level "
        "error for a bad query argument or text no database can store (`extensions.field` "
        "names it).",
    )
    ALREADY_EXISTS = (
        "ALREADY_EXISTS",
        "Something with the same identity already exists (AlreadyExistsError, or a bulk item).",
    )
    BULK_REJECTED = (
        "BULK_REJECTED",
        "A bulk mutation was rejected whole and nothing was changed; every offending item "
        "carries its own code (BulkRejectedError).",
    )
    NOT_EXTERNAL_ASSESSOR = (
        "NOT_EXTERNAL_ASSESSOR",
        "The user is staff of an organisation, not an external assessor "
        "(NotExternalAssessorError).",
    )
    INELIGIBLE_ASSIGNEE = (
        "INELIGIBLE_ASSIGNEE",
        "The user cannot take this kind of assignment (IneligibleAssigneeError).",
    )
    EVIDENCE_LOCKED = (
        "EVIDENCE_LOCKED",
        "The evidence has been decided and can no longer change (EvidenceLockedError).",
    )
    POOL_EXHAUSTED = (
        "POOL_EXHAUSTED",
        "The licence pool has fewer seats left than the licences asked for; none were issued "
        "(PoolExhaustedError).",
    )
    RECORD_ARCHIVED = (
        "RECORD_ARCHIVED",
        "The apprentice record is archived, read-only until restored (RecordArchivedError, or "
        "a bulk item).",
    )

    # Bulk items only (ItemError.code).
    ALREADY_LICENSED = (
        "ALREADY_LICENSED",
        "Was a bulk item of `allocateLicences`: the learner already holds an active licence for "
        "the course. No longer answered: such a learner counts in `unchanged`.",
        "allocateLicences counts a learner licensed already in `unchanged`.",
    )
    LICENCE_IN_USE = (
        "LICENCE_IN_USE",
        "A bulk item: the licence was launched, or changed meanwhile, and cannot be recalled.",
    )
    LICENCE_NOT_ACTIVE = (
        "LICENCE_NOT_ACTIVE",
        "The licence is no longer active (recalled or expired): it cannot change this way "
        "(LicenceNotActiveError).",
    )

    # Top-level errors (`errors[].extensions.code`).
    UNAUTHENTICATED = (
        "UNAUTHENTICATED",
        "Credentials are missing, expired or forged, or name nobody who may sign in here "
        "(HTTP 401 with WWW-Authenticate).",
    )
    FORBIDDEN = (
        "FORBIDDEN",
        "The caller may not do this to an object they can see, or their roles never may; as a "
        "bulk item, to that item.",
    )
    GRAPHQL_VALIDATION_FAILED = (
        "GRAPHQL_VALIDATION_FAILED",
        "The document does not parse or validate against the schema, or a variable does not "
        "fit its type; nothing ran.",
    )
    MAX_DEPTH_EXCEEDED = (
        "MAX_DEPTH_EXCEEDED",
        "The document nests fields deeper than the depth limit; nothing ran.",
    )
    MAX_ALIASES_EXCEEDED = (
        "MAX_ALIASES_EXCEEDED",
        "The document uses more aliases than the alias limit; nothing ran.",
    )
    MAX_TOKENS_EXCEEDED = (
        "MAX_TOKENS_EXCEEDED",
        "The document holds more tokens than the token limit; it was not parsed further.",
    )
    MAX_COST_EXCEEDED = (
        "MAX_COST_EXCEEDED",
        "The request's node estimate is over the cost limit (`extensions.cost`, "
        "`extensions.limit`); nothing ran.",
    )
    RATE_LIMITED = (
        "RATE_LIMITED",
        "The credential has spent its cost points for the minute, or has too many requests "
        "running at once (HTTP 429 with Retry-After); nothing ran.",
    )
    IDEMPOTENCY_KEY_REUSED = (
        "IDEMPOTENCY_KEY_REUSED",
        "The Idempotency-Key was already used for another request body; nothing ran.",
    )
    TIMEOUT = (
        "TIMEOUT",
        "A statement ran past the statement timeout; nothing was kept (HTTP 504 when there is "
        "no data).",
    )
    UNAVAILABLE = (
        "UNAVAILABLE",
        "The database could not be reached or could not complete the request; nothing was "
        "changed, and the request may be retried.",
    )
    COMMIT_FAILED = (
        "COMMIT_FAILED",
        "The database refused to commit; nothing was changed, and the request may be retried.",
    )
    INTERNAL_SERVER_ERROR = (
        "INTERNAL_SERVER_ERROR",
        "An unexpected failure, logged by the server; nothing was changed.",
    )

    # The HTTP envelope: requests refused before GraphQL runs, in the same error shape.
    BAD_REQUEST = (
        "BAD_REQUEST",
        "HTTP 400: the body is not one JSON object of the GraphQL-over-HTTP shape, or its "
        "operation cannot be told (several and no operationName, or one it lacks).",
    )
    BODY_TOO_LARGE = ("BODY_TOO_LARGE", "HTTP 413: the body is over the size limit.")
    UNSUPPORTED_MEDIA_TYPE = (
        "UNSUPPORTED_MEDIA_TYPE",
        "HTTP 415: the body is not sent as Content-Type: application/json.",
    )
    METHOD_NOT_ALLOWED = (
        "METHOD_NOT_ALLOWED",
        "HTTP 405: the method is not one the path answers (Allow names those it does).",
    )
    PERSISTED_QUERY_NOT_FOUND = (
        "PERSISTED_QUERY_NOT_FOUND",
        "HTTP 200: the document's SHA-256 (`extensions.persistedQuery`) is not registered (yet): "
        "send it again with its document (`query`), as automatic persisted queries do.",
    )
    PERSISTED_QUERY_HASH_MISMATCH = (
        "PERSISTED_QUERY_HASH_MISMATCH",
        "HTTP 400: `extensions.persistedQuery.sha256Hash` is not the SHA-256 of the `query` "
        "sent with it; nothing ran or was registered.",
    )
    PERSISTED_QUERY_ONLY = (
        "PERSISTED_QUERY_ONLY",
        "HTTP 400: this server runs only its trusted documents: name one by `documentId` (or "
        "its SHA-256 in `extensions.persistedQuery`) instead of sending a document.",
    )
    TRUSTED_DOCUMENT_NOT_FOUND = (
        "TRUSTED_DOCUMENT_NOT_FOUND",
        "HTTP 400: the `documentId` (or SHA-256) names none of this server's trusted "
        "documents; nothing ran.",
    )
    CORS_REFUSED = (
        "CORS_REFUSED",
        "HTTP 400: a cross-origin preflight asked for an origin, method or header that is not "
        "allowed.",
    )

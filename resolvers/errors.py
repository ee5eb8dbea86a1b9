"""Failures that abort a whole operation (top-level GraphQL errors with extensions.code)."""

from __future__ import annotations


class OperationError(Exception):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: object) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class Unauthenticated(OperationError):
    code = "UNAUTHENTICATED"


class Forbidden(OperationError):
    """The object is visible to the caller but the caller may not change it."""

    code = "FORBIDDEN"


class InvalidInput(OperationError):
    """Bad arguments to a query field (mutations answer with ValidationError instead)."""

    code = "INVALID"


class CommitFailed(OperationError):
    """The database refused to commit; the operation was rolled back."""

    code = "COMMIT_FAILED"


class Unavailable(OperationError):
    """The database could not be reached or refused the statement; nothing was changed."""

    code = "UNAVAILABLE"


class Timeout(OperationError):
    """A statement ran past the statement timeout; nothing was changed."""

    code = "TIMEOUT"


class LimitExceeded(OperationError):
    """The request is over one of the query limits; nothing ran."""


class MaxCostExceeded(LimitExceeded):
    code = "MAX_COST_EXCEEDED"


class IdempotencyKeyReused(OperationError):
    """The Idempotency-Key was already used for another request body."""

    code = "IDEMPOTENCY_KEY_REUSED"

"""Failures that abort a whole operation (top-level GraphQL errors with extensions.code)."""

from __future__ import annotations

from typing import ClassVar

from resolvers.codes import ErrorCode


class OperationError(Exception):
    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, **extensions: object) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class Unauthenticated(OperationError):
    code = ErrorCode.UNAUTHENTICATED


class Forbidden(OperationError):
    """The object is visible to the caller but the caller may not change it."""

    code = ErrorCode.FORBIDDEN


class InvalidInput(OperationError):
    """Bad arguments to a query field (mutations answer with ValidationError instead)."""

    code = ErrorCode.INVALID


class CommitFailed(OperationError):
    """The database refused to commit; the operation was rolled back."""

    code = ErrorCode.COMMIT_FAILED


class Unavailable(OperationError):
    """The database could not be reached or refused the statement; nothing was changed."""

    code = ErrorCode.UNAVAILABLE


class Timeout(OperationError):
    """A statement ran past the statement timeout; nothing was changed."""

    code = ErrorCode.TIMEOUT


class LimitExceeded(OperationError):
    """The request is over one of the query limits; nothing ran."""


class MaxCostExceeded(LimitExceeded):
    code = ErrorCode.MAX_COST_EXCEEDED


class IdempotencyKeyReused(OperationError):
    """The Idempotency-Key was already used for another request body."""

    code = ErrorCode.IDEMPOTENCY_KEY_REUSED

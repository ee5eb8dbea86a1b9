"""The Error interface and the shared error types of mutation results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import strawberry

from resolvers import outcomes


@strawberry.interface(description="An expected failure of a mutation; nothing was changed.")
class Error:
    code: str = strawberry.field(description="Stable machine-readable code, e.g. NOT_FOUND.")
    message: str = strawberry.field(description="Human-readable explanation.")


@strawberry.type(description="The id does not exist, or the caller cannot see it.")
class NotFoundError(Error):
    id: strawberry.ID = strawberry.field(description="The id that was not found.")


@strawberry.type(description="The input is not acceptable.")
class ValidationError(Error):
    field: str | None = strawberry.field(description="The input field at fault, if one is.")


@strawberry.type(description="Something with the same identity already exists.")
class AlreadyExistsError(Error):
    field: str | None = strawberry.field(description="The input field that clashes.")


@strawberry.type(description="Why one item of a bulk mutation was rejected.")
class ItemError:
    id: strawberry.ID = strawberry.field(description="The offending id, as given.")
    code: str = strawberry.field(description="Why it was rejected, e.g. NOT_FOUND.")
    message: str = strawberry.field(description="Human-readable explanation.")


@strawberry.type(description="A bulk mutation was rejected whole; nothing was changed.")
class BulkRejectedError(Error):
    items: list[ItemError] = strawberry.field(description="Every offending item.")


@strawberry.type(description="The user is staff of an organisation, not an external assessor.")
class NotExternalAssessorError(Error):
    id: strawberry.ID = strawberry.field(description="The user id given as assessor.")


@strawberry.type(description="The user cannot take this kind of assignment.")
class IneligibleAssigneeError(Error):
    id: strawberry.ID = strawberry.field(description="The user id given as assignee.")


@strawberry.type(description="The evidence has been decided and can no longer change.")
class EvidenceLockedError(Error):
    id: strawberry.ID = strawberry.field(description="The evidence id.")


ErrorType = (
    NotFoundError
    | ValidationError
    | AlreadyExistsError
    | BulkRejectedError
    | NotExternalAssessorError
    | IneligibleAssigneeError
    | EvidenceLockedError
)


def from_problem(problem: outcomes.Problem) -> ErrorType:
    match problem:
        case outcomes.NotFound(id=id, message=message, code=code):
            return NotFoundError(code=code, message=message, id=strawberry.ID(id))
        case outcomes.Invalid(message=message, field=field, code=code):
            return ValidationError(code=code, message=message, field=field)
        case outcomes.AlreadyExists(message=message, field=field, code=code):
            return AlreadyExistsError(code=code, message=message, field=field)
        case outcomes.BulkRejected(items=items, message=message, code=code):
            return BulkRejectedError(
                code=code,
                message=message,
                items=[
                    ItemError(id=strawberry.ID(i.id), code=i.code, message=i.message) for i in items
                ],
            )
        case outcomes.NotExternalAssessor(id=id, message=message, code=code):
            return NotExternalAssessorError(code=code, message=message, id=strawberry.ID(id))
        case outcomes.IneligibleAssignee(id=id, message=message, code=code):
            return IneligibleAssigneeError(code=code, message=message, id=strawberry.ID(id))
        case outcomes.EvidenceLocked(id=id, message=message, code=code):
            return EvidenceLockedError(code=code, message=message, id=strawberry.ID(id))
    raise TypeError(f"not a problem: {problem!r}")


S = TypeVar("S")


def answer(outcome: S | outcomes.Problem, success: Callable[[S], object]) -> Any:
    """A mutation's result: its success type, or the error type of the problem.

    Typed Any: each mutation's declared union names which of the errors it can answer.
    """
    if isinstance(outcome, outcomes.PROBLEMS):
        return from_problem(outcome)
    return success(outcome)

"""Expected outcomes of mutations: errors as named values, never bare strings.

Each error is declared here once — its code, its GraphQL name, what it and each of its fields
mean. The schema derives the GraphQL type, the mapping from value to type, and every mutation's
result union (from the use case's return annotation) from these declarations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from db.models import LicenceStatus
from resolvers.codes import ErrorCode
from resolvers.ids import GlobalId


def doc(text: str, *, deprecated: str | None = None) -> dict[str, str]:
    """Field metadata: what the field means, shown in the schema (and, for a name kept only
    for older clients, what to use instead)."""
    return {"doc": text} if deprecated is None else {"doc": text, "deprecated": deprecated}


class Problem:
    """An expected failure of a mutation; nothing was changed."""

    code: ClassVar[ErrorCode]
    graphql_name: ClassVar[str]
    about: ClassVar[str]
    message: str


P = TypeVar("P", bound=type[Problem])

PROBLEMS: list[type[Problem]] = []


def problem(code: ErrorCode, graphql_name: str, about: str) -> Callable[[P], P]:
    """Declare an error: its stable code, its GraphQL type name and what it means."""

    def register(cls: P) -> P:
        cls.code = code
        cls.graphql_name = graphql_name
        cls.about = about
        PROBLEMS.append(cls)
        return cls

    return register


@problem(
    ErrorCode.NOT_FOUND, "NotFoundError", "The id does not exist, or the caller cannot see it."
)
@dataclass(frozen=True)
class NotFound(Problem):
    id: GlobalId = field(metadata=doc("The id that was not found."))
    message: str = "Not found."


@problem(ErrorCode.INVALID, "ValidationError", "The input is not acceptable.")
@dataclass(frozen=True)
class Invalid(Problem):
    message: str
    field: str | None = field(default=None, metadata=doc("The input field at fault, if one is."))


@problem(
    ErrorCode.ALREADY_EXISTS,
    "AlreadyExistsError",
    "Something with the same identity already exists.",
)
@dataclass(frozen=True)
class AlreadyExists(Problem):
    message: str
    field: str | None = field(default=None, metadata=doc("The input field that clashes."))


@dataclass(frozen=True)
class ItemProblem:
    """Why one item of a bulk mutation was rejected."""

    graphql_name: ClassVar[str] = "ItemError"
    id: GlobalId = field(metadata=doc("The offending id, as given."))
    code: ErrorCode = field(
        metadata=doc("Why it was rejected, e.g. NOT_FOUND (one of enum ErrorCode).")
    )
    message: str = field(metadata=doc("Human-readable explanation."))


@problem(
    ErrorCode.BULK_REJECTED,
    "BulkRejectedError",
    "A bulk mutation was rejected whole; nothing was changed.",
)
@dataclass(frozen=True)
class BulkRejected(Problem):
    items: list[ItemProblem] = field(default_factory=list, metadata=doc("Every offending item."))
    message: str = "No change was made: some items were rejected."


@problem(
    ErrorCode.NOT_EXTERNAL_ASSESSOR,
    "NotExternalAssessorError",
    "The user is staff of an organisation, not an external assessor.",
)
@dataclass(frozen=True)
class NotExternalAssessor(Problem):
    id: GlobalId = field(metadata=doc("The user id given as assessor."))
    message: str = "Only external assessors can be allocated to learners."


@problem(
    ErrorCode.INELIGIBLE_ASSIGNEE,
    "IneligibleAssigneeError",
    "The user cannot take this kind of assignment.",
)
@dataclass(frozen=True)
class IneligibleAssignee(Problem):
    id: GlobalId = field(metadata=doc("The user id given as assignee."))
    message: str


@problem(
    ErrorCode.EVIDENCE_LOCKED,
    "EvidenceLockedError",
    "The evidence has been decided and can no longer change.",
)
@dataclass(frozen=True)
class EvidenceLocked(Problem):
    id: GlobalId = field(metadata=doc("The evidence id."))
    message: str = "This evidence has already been decided."


@problem(
    ErrorCode.POOL_EXHAUSTED,
    "PoolExhaustedError",
    "The licence pool has fewer seats left than the licences asked for; none were issued.",
)
@dataclass(frozen=True)
class PoolExhausted(Problem):
    requested: int = field(metadata=doc("How many licences were asked for."))
    seats_available: int = field(metadata=doc("How many seats the pool has left."))
    message: str = "The licence pool has too few seats left; no licence was issued."


@problem(
    ErrorCode.RECORD_ARCHIVED,
    "RecordArchivedError",
    "The apprentice record is archived: it is read-only until it is restored.",
)
@dataclass(frozen=True)
class RecordArchived(Problem):
    id: GlobalId = field(metadata=doc("The archived record's id."))
    message: str = "This apprentice record is archived; restore it to change it."


@problem(
    ErrorCode.LICENCE_NOT_ACTIVE,
    "LicenceNotActiveError",
    "The licence is no longer active (recalled or expired): it cannot change this way.",
)
@dataclass(frozen=True)
class LicenceNotActive(Problem):
    id: GlobalId = field(metadata=doc("The licence's id."))
    status: LicenceStatus = field(metadata=doc("Where the licence stands: RECALLED or EXPIRED."))
    message: str = "This licence is no longer active: it was recalled or has expired."


def is_problem(value: Any) -> bool:
    return isinstance(value, Problem)

"""Expected outcomes of mutations: errors as named values, never bare strings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NotFound:
    id: str
    message: str = "Not found."
    code: str = "NOT_FOUND"


@dataclass(frozen=True)
class Invalid:
    message: str
    field: str | None = None
    code: str = "INVALID"


@dataclass(frozen=True)
class AlreadyExists:
    message: str
    field: str | None = None
    code: str = "ALREADY_EXISTS"


@dataclass(frozen=True)
class ItemProblem:
    id: str
    code: str
    message: str


@dataclass(frozen=True)
class BulkRejected:
    items: list[ItemProblem] = field(default_factory=list)
    message: str = "No change was made: some items were rejected."
    code: str = "BULK_REJECTED"


@dataclass(frozen=True)
class NotExternalAssessor:
    id: str
    message: str = "Only external assessors can be allocated to learners."
    code: str = "NOT_EXTERNAL_ASSESSOR"


@dataclass(frozen=True)
class IneligibleAssignee:
    id: str
    message: str
    code: str = "INELIGIBLE_ASSIGNEE"


@dataclass(frozen=True)
class EvidenceLocked:
    id: str
    message: str = "This evidence has already been decided."
    code: str = "EVIDENCE_LOCKED"


Problem = (
    NotFound
    | Invalid
    | AlreadyExists
    | BulkRejected
    | NotExternalAssessor
    | IneligibleAssignee
    | EvidenceLocked
)

PROBLEMS = (
    NotFound,
    Invalid,
    AlreadyExists,
    BulkRejected,
    NotExternalAssessor,
    IneligibleAssignee,
    EvidenceLocked,
)

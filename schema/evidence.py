"""Evidence: coursework on a record, its submission and sign-off, the assessor's work queue."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import capabilities
from resolvers import evidence as cases
from resolvers.evidence import EvidenceLoaders
from schema.capabilities import VIEWER_CAN, EvidenceCapabilities
from schema.connections import connection
from schema.context import Info
from schema.derive import input_of
from schema.enums import AuditAction, EvidenceStatus, describe_values
from schema.nodes import Node, node
from schema.people import User
from schema.permissions import changes, requires, signed_in
from schema.relations import relation
from schema.results import another, answers, mutation, unchanged

if TYPE_CHECKING:
    from schema.records import ApprenticeRecord

strawberry.enum(
    cases.Decision, name="EvidenceDecision", description="Sign the evidence off, or refer it back."
)
describe_values(
    cases.Decision,
    {"SIGN_OFF": "Accept the evidence.", "REFER": "Send it back to the learner with a comment."},
)


@node(models.Evidence, EvidenceLoaders.evidence)
@strawberry.type(description="Coursework a learner submitted on a record.")
class Evidence(Node):
    title: str = strawberry.field(description="What the evidence is.")
    status: EvidenceStatus = strawberry.field(description="Submitted, signed off or referred.")
    submitted_at: datetime = strawberry.field(description="When it was submitted.")
    decided_at: datetime | None = strawberry.field(description="When it was decided.")
    comment: str | None = strawberry.field(description="The assessor's comment.")
    row: strawberry.Private[models.Evidence]

    @strawberry.field(description=VIEWER_CAN, extensions=signed_in())
    async def viewer_can(self, info: Info) -> EvidenceCapabilities:
        return EvidenceCapabilities(**await capabilities.of(info.context, self.row))

    record: Annotated[ApprenticeRecord, strawberry.lazy("schema.records")] = relation(
        cases.RECORD_OF_EVIDENCE,
        description="The record.",
        extensions=requires(Resource.RECORD),
    )
    decided_by: User | None = relation(
        cases.DECIDED_BY, description="Who decided it.", extensions=requires(Resource.EVIDENCE)
    )


EvidenceFilter = input_of(cases.EvidenceFilter)


@strawberry.input(description="Submit evidence on a record.")
class SubmitEvidenceInput:
    record_id: strawberry.ID = strawberry.field(description="The apprentice record.")
    title: str = strawberry.field(description="What the evidence is.")


@strawberry.input(description="Decide a piece of evidence.")
class SignOffEvidenceInput:
    evidence_id: strawberry.ID = strawberry.field(description="The evidence.")
    decision: cases.Decision = strawberry.field(description="SIGN_OFF or REFER.")
    comment: str | None = strawberry.field(
        default=None, description="Required when referring back."
    )


@answers(cases.EvidenceSubmitted)
@strawberry.type(description="The evidence was submitted.")
class EvidenceSubmitted:
    evidence: Evidence = strawberry.field(description="The new evidence.")


@answers(cases.EvidenceDecided)
@strawberry.type(description="The evidence was decided; it is now locked.")
class EvidenceDecided:
    evidence: Evidence = strawberry.field(description="The decided evidence.")
    unchanged: bool = strawberry.field(
        description="True when it was decided so, with the same comment, already: nothing "
        "changed, no audit event was written."
    )


@strawberry.type
class EvidenceQuery:
    evidence = connection(
        cases.WORK_QUEUE,
        Evidence,
        order="Evidence",
        filter=cases.EvidenceFilter,
        description="The work queue: evidence on live records that the caller can see, oldest "
        "first (every status unless filtered; the queue asks for SUBMITTED).",
        extensions=requires(Resource.EVIDENCE),
    )


@strawberry.type
class EvidenceMutation:
    submit_evidence = mutation(
        cases.submit_evidence,
        audit=AuditAction.EVIDENCE_SUBMITTED,
        input=SubmitEvidenceInput,
        repeat=another("another piece of evidence"),
        description="Submit evidence on a live record (the learner themself, or an admin on "
        "their behalf).",
        extensions=changes(Resource.RECORD, Action.SUBMIT_EVIDENCE),
    )
    sign_off_evidence = mutation(
        cases.sign_off_evidence,
        audit=AuditAction.EVIDENCE_DECIDED,
        input=SignOffEvidenceInput,
        repeat=unchanged(
            "decided already by the caller with the same decision and comment: `unchanged: "
            "true`, no audit event; another decision or comment, or anyone else's decision: "
            "`EvidenceLockedError`"
        ),
        description="Sign evidence off or refer it back: the assessors and training "
        "coordinators assigned to its record, external assessors allocated to its learner, "
        "and the organisation's senior assessors and admins. Not on an archived record.",
        extensions=changes(Resource.EVIDENCE, Action.DECIDE),
    )

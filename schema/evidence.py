"""Evidence: submission and sign-off."""

from __future__ import annotations

from typing import Annotated, Self

import strawberry

from policies.vocabulary import Action, Resource
from resolvers import evidence as cases
from schema.context import Info
from schema.errors import EvidenceLockedError, NotFoundError, ValidationError, answer
from schema.permissions import changes
from schema.types import Evidence

EvidenceDecision = strawberry.enum(
    cases.Decision,
    name="EvidenceDecision",
    description="Sign the evidence off, or refer it back.",
)


@strawberry.input(description="Submit evidence on a record.")
class SubmitEvidenceInput:
    record_id: strawberry.ID = strawberry.field(description="The apprentice record.")
    title: str = strawberry.field(description="What the evidence is.")


@strawberry.input(description="Decide a piece of evidence.")
class SignOffEvidenceInput:
    evidence_id: strawberry.ID = strawberry.field(description="The evidence.")
    decision: EvidenceDecision = strawberry.field(description="SIGN_OFF or REFER.")  # type: ignore[valid-type]
    comment: str | None = strawberry.field(
        default=None, description="Required when referring back."
    )


@strawberry.type(description="The evidence was submitted.")
class EvidenceSubmitted:
    evidence: Evidence = strawberry.field(description="The new evidence.")

    @classmethod
    def from_outcome(cls, outcome: cases.EvidenceSubmitted) -> Self:
        return cls(evidence=Evidence.from_row(outcome.evidence))


@strawberry.type(description="The evidence was decided; it is now locked.")
class EvidenceDecided:
    evidence: Evidence = strawberry.field(description="The decided evidence.")

    @classmethod
    def from_outcome(cls, outcome: cases.EvidenceDecided) -> Self:
        return cls(evidence=Evidence.from_row(outcome.evidence))


SubmitEvidenceResult = Annotated[
    EvidenceSubmitted | ValidationError | NotFoundError,
    strawberry.union("SubmitEvidenceResult"),
]
SignOffEvidenceResult = Annotated[
    EvidenceDecided | ValidationError | NotFoundError | EvidenceLockedError,
    strawberry.union("SignOffEvidenceResult"),
]


@strawberry.type
class EvidenceMutation:
    @strawberry.mutation(
        description="Submit evidence on a record (the learner themself, or an admin).",
        extensions=changes(Resource.RECORD, Action.SUBMIT_EVIDENCE),
    )
    async def submit_evidence(self, info: Info, input: SubmitEvidenceInput) -> SubmitEvidenceResult:
        outcome = await cases.submit_evidence(
            info.context, record_id=input.record_id, title=input.title
        )
        return answer(outcome, EvidenceSubmitted.from_outcome)

    @strawberry.mutation(
        description="Sign evidence off or refer it back (its assessors, senior assessors, admins).",
        extensions=changes(Resource.EVIDENCE, Action.DECIDE),
    )
    async def sign_off_evidence(
        self, info: Info, input: SignOffEvidenceInput
    ) -> SignOffEvidenceResult:
        outcome = await cases.sign_off_evidence(
            info.context,
            evidence_id=input.evidence_id,
            decision=input.decision,
            comment=input.comment,
        )
        return answer(outcome, EvidenceDecided.from_outcome)

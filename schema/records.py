"""Apprentice records: the records view and creation."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Self

import strawberry

from policies.vocabulary import Action, Resource
from resolvers import records
from schema.connections import Connection
from schema.context import Info
from schema.errors import NotFoundError, ValidationError, answer
from schema.permissions import changes, requires
from schema.types import ApprenticeRecord


@strawberry.input(description="Narrow the records view.")
class RecordFilter:
    search: str | None = strawberry.field(
        default=None, description="Part of the programme or the learner's name."
    )
    assignee_id: strawberry.ID | None = strawberry.field(
        default=None, description="Actively assigned to this user."
    )
    unassigned: bool | None = strawberry.field(
        default=None, description="True: no active assessor; false: at least one."
    )
    status: str | None = strawberry.field(default=None, description="LIVE or ARCHIVED.")
    learner_id: strawberry.ID | None = strawberry.field(default=None, description="This learner's.")


@strawberry.input(description="A new apprentice record for a learner.")
class CreateApprenticeRecordInput:
    learner_id: strawberry.ID = strawberry.field(description="The learner.")
    programme: str = strawberry.field(description="The programme, e.g. a Level 3 diploma.")
    start_date: date | None = strawberry.field(default=None, description="When it starts.")


@strawberry.type(description="The apprentice record was created.")
class ApprenticeRecordCreated:
    record: ApprenticeRecord = strawberry.field(description="The new record.")

    @classmethod
    def from_outcome(cls, outcome: records.ApprenticeRecordCreated) -> Self:
        return cls(record=ApprenticeRecord.from_row(outcome.record))


CreateApprenticeRecordResult = Annotated[
    ApprenticeRecordCreated | ValidationError | NotFoundError,
    strawberry.union("CreateApprenticeRecordResult"),
]


@strawberry.type
class RecordQuery:
    @strawberry.field(
        description="Apprentice records the caller can see.", extensions=requires(Resource.RECORD)
    )
    async def apprentice_records(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: RecordFilter | None = None,
    ) -> Connection[ApprenticeRecord]:
        f = filter or RecordFilter()
        page = await records.apprentice_records(
            info.context,
            first=first,
            after=after,
            filter=records.RecordFilter(
                search=f.search,
                assignee_id=f.assignee_id,
                unassigned=f.unassigned,
                status=f.status,
                learner_id=f.learner_id,
            ),
        )
        return Connection.from_page(page, ApprenticeRecord.from_row)


@strawberry.type
class RecordMutation:
    @strawberry.mutation(
        description="Start a learner on a programme.",
        extensions=changes(Resource.RECORD, Action.CREATE),
    )
    async def create_apprentice_record(
        self, info: Info, input: CreateApprenticeRecordInput
    ) -> CreateApprenticeRecordResult:
        outcome = await records.create_apprentice_record(
            info.context,
            learner_id=input.learner_id,
            programme=input.programme,
            start_date=input.start_date,
        )
        return answer(outcome, ApprenticeRecordCreated.from_outcome)

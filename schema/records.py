"""Apprentice records: the records view and creation."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import assignments, evidence, records
from resolvers.records import RecordLoaders
from schema.connections import Connection
from schema.context import Info
from schema.derive import input_of, plain
from schema.nodes import Node, computed, node
from schema.permissions import changes, requires
from schema.relations import relation
from schema.results import answers, mutation

if TYPE_CHECKING:
    from schema.assignments import Assignment
    from schema.evidence import Evidence
    from schema.learners import Learner


@node(
    models.ApprenticeRecord,
    lambda ctx: ctx.loaders(RecordLoaders).record,
    status=computed(str, "status"),
)
@strawberry.type(description="A learner's programme, e.g. a Level 3 diploma.")
class ApprenticeRecord(Node):
    programme: str = strawberry.field(description="The programme followed.")
    status: str = strawberry.field(description="LIVE or ARCHIVED.")
    start_date: date | None = strawberry.field(description="When the programme started.")
    row: strawberry.Private[models.ApprenticeRecord]

    learner: Annotated[Learner, strawberry.lazy("schema.learners")] = relation(
        records.LEARNER_OF_RECORD,
        description="Whose record this is.",
        extensions=requires(Resource.LEARNER),
    )
    assignments: list[Annotated[Assignment, strawberry.lazy("schema.assignments")]] = relation(
        assignments.ACTIVE_ASSIGNMENTS_OF_RECORD,
        description="Active assignments on this record.",
        extensions=requires(Resource.ASSIGNMENT),
    )
    evidence: list[Annotated[Evidence, strawberry.lazy("schema.evidence")]] = relation(
        evidence.EVIDENCE_OF_RECORD,
        description="Evidence on this record.",
        extensions=requires(Resource.EVIDENCE),
    )


RecordFilter = input_of(records.RecordFilter)


@strawberry.input(description="A new apprentice record for a learner.")
class CreateApprenticeRecordInput:
    learner_id: strawberry.ID = strawberry.field(description="The learner.")
    programme: str = strawberry.field(description="The programme, e.g. a Level 3 diploma.")
    start_date: date | None = strawberry.field(default=None, description="When it starts.")


@answers(records.ApprenticeRecordCreated)
@strawberry.type(description="The apprentice record was created.")
class ApprenticeRecordCreated:
    record: ApprenticeRecord = strawberry.field(description="The new record.")


@strawberry.type
class RecordQuery:
    @strawberry.field(
        description="Apprentice records the caller can see.",
        extensions=requires(Resource.RECORD),
        metadata={"list": records.RECORDS, "filter": records.RecordFilter},
    )
    async def apprentice_records(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: RecordFilter | None = None,  # type: ignore[valid-type]
    ) -> Connection[ApprenticeRecord]:
        wanted = plain(filter, records.RecordFilter)
        page = await records.apprentice_records(
            info.context, first=first, after=after, filter=wanted
        )
        return Connection.from_page(page, ApprenticeRecord.from_row)


@strawberry.type
class RecordMutation:
    create_apprentice_record = mutation(
        records.create_apprentice_record,
        input=CreateApprenticeRecordInput,
        description="Start a learner on a programme.",
        extensions=changes(Resource.RECORD, Action.CREATE),
    )

"""Apprentice records: the records view, creation, archiving and restoring."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import assignments, capabilities, evidence, records
from resolvers.records import RecordLoaders
from resolvers.relations import related
from schema.capabilities import VIEWER_CAN, ApprenticeRecordCapabilities
from schema.connections import connection
from schema.context import Info
from schema.derive import input_of
from schema.enums import ApprenticeRecordStatus, AuditAction
from schema.nodes import Node, node, project_all
from schema.permissions import changes, requires, signed_in
from schema.relations import relation
from schema.results import another, answers, mutation, unchanged

if TYPE_CHECKING:
    from schema.assignments import Assignment
    from schema.evidence import Evidence
    from schema.learners import Learner


@node(models.ApprenticeRecord, RecordLoaders.record)
@strawberry.type(description="A learner's programme, e.g. a Level 3 diploma.")
class ApprenticeRecord(Node):
    programme: str = strawberry.field(description="The programme followed.")
    status: ApprenticeRecordStatus = strawberry.field(
        description="LIVE, or ARCHIVED: read-only (no assignment changes, no evidence submitted "
        "or decided) until restored."
    )
    start_date: date | None = strawberry.field(description="When the programme started.")
    row: strawberry.Private[models.ApprenticeRecord]

    @strawberry.field(description=VIEWER_CAN, extensions=signed_in())
    async def viewer_can(self, info: Info) -> ApprenticeRecordCapabilities:
        return ApprenticeRecordCapabilities(**await capabilities.of(info.context, self.row))

    learner: Annotated[Learner, strawberry.lazy("schema.learners")] = relation(
        records.LEARNER_OF_RECORD,
        description="Whose record this is.",
        extensions=requires(Resource.LEARNER),
    )
    evidence: list[Annotated[Evidence, strawberry.lazy("schema.evidence")]] = relation(
        evidence.EVIDENCE_OF_RECORD,
        description="Evidence on this record.",
        extensions=requires(Resource.EVIDENCE),
    )

    @strawberry.field(
        description="Assignments on this record that the caller can see: the active ones, or "
        "with includeEnded every one, ended too (endedAt, endedBy), newest first.",
        extensions=requires(Resource.ASSIGNMENT),
        metadata={"relation": assignments.ASSIGNMENTS_OF_RECORD},
    )
    async def assignments(
        self,
        info: Info,
        include_ended: Annotated[
            bool | None,
            strawberry.argument(
                description="Include ended ones too, newest history kept with who ended them and "
                "when; active ones only when not given (false)."
            ),
        ] = False,
    ) -> list[Annotated[Assignment, strawberry.lazy("schema.assignments")]]:
        relation = assignments.ASSIGNMENTS_OF_RECORD
        rows = await related(info.context, relation, self.row, include_ended=bool(include_ended))
        return project_all("Assignment", rows)


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


@strawberry.input(description="One apprentice record.")
class ApprenticeRecordIdInput:
    record_id: strawberry.ID = strawberry.field(description="The record.")


@answers(records.ApprenticeRecordArchived)
@strawberry.type(description="The record is archived: read-only, out of the live records view.")
class ApprenticeRecordArchived:
    record: ApprenticeRecord = strawberry.field(description="The archived record.")
    unchanged: bool = strawberry.field(
        description="True when it was archived already: nothing changed, no audit event was "
        "written."
    )


@answers(records.ApprenticeRecordRestored)
@strawberry.type(description="The record is live again.")
class ApprenticeRecordRestored:
    record: ApprenticeRecord = strawberry.field(description="The restored record.")
    unchanged: bool = strawberry.field(
        description="True when it was live already: nothing changed, no audit event was written."
    )


@strawberry.type
class RecordQuery:
    apprentice_records = connection(
        records.RECORDS,
        ApprenticeRecord,
        order="ApprenticeRecord",
        filter=records.RecordFilter,
        description="Apprentice records the caller can see: the live records view (LIVE ones "
        "unless the filter asks for ARCHIVED), oldest first.",
        extensions=requires(Resource.RECORD),
    )


@strawberry.type
class RecordMutation:
    create_apprentice_record = mutation(
        records.create_apprentice_record,
        audit=AuditAction.APPRENTICE_RECORD_CREATED,
        input=CreateApprenticeRecordInput,
        repeat=another("another record (a learner may take a programme twice)"),
        description="Start a learner on a programme (admins).",
        extensions=changes(Resource.RECORD, Action.CREATE),
    )
    archive_apprentice_record = mutation(
        records.archive_apprentice_record,
        audit=AuditAction.APPRENTICE_RECORD_ARCHIVED,
        input=ApprenticeRecordIdInput,
        repeat=unchanged("archived already: `unchanged: true`, no audit event"),
        description="Archive a record (admins): it leaves the live records view and becomes "
        "read-only (no assignment changes, no evidence submitted or decided); its assignees "
        "keep read access.",
        extensions=changes(Resource.RECORD, Action.ARCHIVE),
    )
    restore_apprentice_record = mutation(
        records.restore_apprentice_record,
        audit=AuditAction.APPRENTICE_RECORD_RESTORED,
        input=ApprenticeRecordIdInput,
        repeat=unchanged("live already: `unchanged: true`, no audit event"),
        description="Make an archived record live again (admins).",
        extensions=changes(Resource.RECORD, Action.ARCHIVE),
    )

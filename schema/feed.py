"""The change feed: every committed change the reader may see, oldest first in commit order.

(schema/changes.py is the other kind of change: what may change in the SDL between releases.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.utils.str_converters import to_camel_case

from db import models
from resolvers import api_keys, changes
from resolvers.errors import Unavailable
from resolvers.evidence import Decision
from schema.api_keys import ApiKey
from schema.connections import PageInfo
from schema.context import Info
from schema.derive import input_of, plain
from schema.enums import AssignmentRole, AuditAction, Role, RuleScope, described
from schema.nodes import LOOKUPS, Node, project
from schema.people import User
from schema.permissions import signed_in
from schema.relations import relation

described(
    changes.ChangeSubject,
    name="ChangeSubject",
    description="The kinds of object a change can be about.",
    values={
        "ORGANISATION": "An organisation.",
        "LOCATION": "A location.",
        "DEPARTMENT": "A department.",
        "USER": "A person: a staff member or an external assessor.",
        "LEARNER": "A learner.",
        "APPRENTICE_RECORD": "An apprentice record.",
        "ASSIGNMENT": "A record assignment.",
        "ALLOCATION": "An external assessor's allocation to a learner.",
        "EVIDENCE": "A piece of evidence.",
        "COURSE": "A course in the catalogue.",
        "LICENCE_POOL": "An organisation's licence pool for a course.",
        "LICENCE": "A course licence.",
        "AUTO_ALLOCATION_RULE": "An auto-allocation rule.",
        "API_KEY": "An API key.",
    },
)

ChangeFilter = input_of(changes.ChangeFilter)


# Details: one type per action whose change says more than its subject ------------------------


class _FromDetails:
    """Read from the stored details, whose keys are the fields' GraphQL names."""

    @classmethod
    def of(cls, details: dict[str, Any]) -> Any:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        return cls(**{n: details.get(to_camel_case(n)) for n in names})


@strawberry.type(description="What `createStaffMember` gave the new staff member.")
class StaffMemberCreatedDetails(_FromDetails):
    roles: list[Role] = strawberry.field(description="The roles given.")


@strawberry.type(description="What `updateStaffMember` changed.")
class StaffMemberUpdatedDetails(_FromDetails):
    fields: list[str] = strawberry.field(description="The fields changed (personal ones by name).")
    roles: list[Role] | None = strawberry.field(description="The new roles, if they changed.")
    location_id: strawberry.ID | None = strawberry.field(
        description="The new location, if it changed to one."
    )
    department_id: strawberry.ID | None = strawberry.field(
        description="The new department, if it changed to one."
    )


@strawberry.type(description="What `deactivateStaffMember` ended.")
class StaffMemberDeactivatedDetails(_FromDetails):
    ended_assignment_ids: list[strawberry.ID] = strawberry.field(
        description="The assignments that ended with the membership."
    )


@strawberry.type(description="What `updateExternalAssessor` changed.")
class ExternalAssessorUpdatedDetails(_FromDetails):
    fields: list[str] = strawberry.field(description="The fields changed, by name.")


@strawberry.type(description="What `updateLearner` changed.")
class LearnerUpdatedDetails(_FromDetails):
    fields: list[str] = strawberry.field(description="The fields changed (personal ones by name).")
    location_id: strawberry.ID | None = strawberry.field(
        description="The new location, if it changed to one."
    )
    department_id: strawberry.ID | None = strawberry.field(
        description="The new department, if it changed to one."
    )


@strawberry.type(description="The record `createApprenticeRecord` made.")
class ApprenticeRecordCreatedDetails(_FromDetails):
    learner_id: strawberry.ID = strawberry.field(description="The record's learner.")
    programme: str = strawberry.field(description="The programme.")


@strawberry.type(description="Whose record `archiveApprenticeRecord` archived.")
class ApprenticeRecordArchivedDetails(_FromDetails):
    learner_id: strawberry.ID = strawberry.field(description="The record's learner.")


@strawberry.type(description="Whose record `restoreApprenticeRecord` restored.")
class ApprenticeRecordRestoredDetails(_FromDetails):
    learner_id: strawberry.ID = strawberry.field(description="The record's learner.")


@strawberry.type(description="The allocation `allocateExternalAssessor` made.")
class AssessorAllocatedDetails(_FromDetails):
    learner_id: strawberry.ID = strawberry.field(description="The learner.")
    assessor_id: strawberry.ID = strawberry.field(description="The external assessor (a User).")
    expires_at: datetime | None = strawberry.field(description="When it ends, if it does.")


@strawberry.type(description="The allocation `deallocateExternalAssessor` ended.")
class AssessorDeallocatedDetails(_FromDetails):
    learner_id: strawberry.ID = strawberry.field(description="The learner.")
    assessor_id: strawberry.ID = strawberry.field(description="The external assessor (a User).")


@strawberry.type(description="One assignment `assignRecords` made (the change's subject).")
class RecordsAssignedDetails(_FromDetails):
    role: AssignmentRole = strawberry.field(description="What the assignee does on the record.")
    assignee_id: strawberry.ID = strawberry.field(description="The person assigned (a User).")


@strawberry.type(description="One assignment `unassignRecords` ended (the change's subject).")
class RecordsUnassignedDetails(_FromDetails):
    role: AssignmentRole | None = strawberry.field(
        description="The role unassigned; null when every role was."
    )
    assignee_id: strawberry.ID | None = strawberry.field(
        description="The person unassigned (a User); null when everyone was."
    )


@strawberry.type(description="The coordinator `assignTrainingCoordinator` gave a record.")
class TrainingCoordinatorAssignedDetails(_FromDetails):
    coordinator_id: strawberry.ID = strawberry.field(description="The coordinator (a User).")
    assignment_id: strawberry.ID = strawberry.field(description="The new assignment.")
    replaced_assignment_ids: list[strawberry.ID] = strawberry.field(
        description="The coordinator assignments it ended."
    )


@strawberry.type(description="Where `submitEvidence` submitted the evidence.")
class EvidenceSubmittedDetails(_FromDetails):
    record_id: strawberry.ID = strawberry.field(description="The apprentice record.")


@strawberry.type(description="The decision `signOffEvidence` recorded.")
class EvidenceDecidedDetails(_FromDetails):
    decision: Decision = strawberry.field(description="Signed off or referred back.")
    record_id: strawberry.ID = strawberry.field(description="The apprentice record.")

    @classmethod
    def of(cls, details: dict[str, Any]) -> Any:
        return cls(decision=Decision(details["decision"]), record_id=details["recordId"])


@strawberry.type(description="The seats `setLicencePool` set.")
class LicencePoolSetDetails(_FromDetails):
    course_id: strawberry.ID = strawberry.field(description="The course.")
    seats_total: int = strawberry.field(description="Seats bought, now.")
    previous_seats_total: int | None = strawberry.field(
        description="Seats bought before; null when the pool is new."
    )


@strawberry.type(description="How the licence (the change's subject) was issued.")
class LicencesAllocatedDetails(_FromDetails):
    course_id: strawberry.ID | None = strawberry.field(description="The course.")
    rule_id: strawberry.ID | None = strawberry.field(
        description="The auto-allocation rule that issued it; null when a person did."
    )
    expires_at: datetime | None = strawberry.field(description="When it expires, if it does.")


@strawberry.type(description="Why a rule withheld a licence from the learner (the subject).")
class LicencesWithheldDetails(_FromDetails):
    course_id: strawberry.ID = strawberry.field(description="The course.")
    rule_id: strawberry.ID = strawberry.field(description="The rule that could not issue it.")
    reason: str = strawberry.field(description="Why, e.g. the pool had no seat left.")


@strawberry.type(description="Whose licence `markLicenceLaunched` launched.")
class LicenceLaunchedDetails(_FromDetails):
    learner_id: strawberry.ID = strawberry.field(description="The licence's learner.")


@strawberry.type(description="Whose licence `markLicenceCompleted` completed.")
class LicenceCompletedDetails(_FromDetails):
    learner_id: strawberry.ID = strawberry.field(description="The licence's learner.")


@strawberry.type(description="The rule `createAutoAllocationRule` made.")
class AutoAllocationRuleCreatedDetails(_FromDetails):
    course_id: strawberry.ID = strawberry.field(description="The course it licenses.")
    scope: RuleScope = strawberry.field(description="Which learners it reaches.")
    location_id: strawberry.ID | None = strawberry.field(description="Its location, if any.")
    department_id: strawberry.ID | None = strawberry.field(description="Its department, if any.")
    apply_to_existing: bool = strawberry.field(description="Whether it licensed learners then.")
    licences_issued: int = strawberry.field(description="Licences it issued when created.")


@strawberry.type(description="The course of the rule `deleteAutoAllocationRule` deleted.")
class AutoAllocationRuleDeletedDetails(_FromDetails):
    course_id: strawberry.ID = strawberry.field(description="The course it licensed.")


@strawberry.type(description="The key `createApiKey` made (never the secret).")
class ApiKeyCreatedDetails(_FromDetails):
    name: str = strawberry.field(description="The key's name.")
    roles: list[Role] = strawberry.field(description="The roles it acts with.")
    rate_points_per_minute: int | None = strawberry.field(
        description="Its own budget of cost points per minute, if it has one."
    )


DETAILS: dict[models.AuditAction, type[_FromDetails]] = {
    models.AuditAction.STAFF_MEMBER_CREATED: StaffMemberCreatedDetails,
    models.AuditAction.STAFF_MEMBER_UPDATED: StaffMemberUpdatedDetails,
    models.AuditAction.STAFF_MEMBER_DEACTIVATED: StaffMemberDeactivatedDetails,
    models.AuditAction.EXTERNAL_ASSESSOR_UPDATED: ExternalAssessorUpdatedDetails,
    models.AuditAction.LEARNER_UPDATED: LearnerUpdatedDetails,
    models.AuditAction.APPRENTICE_RECORD_CREATED: ApprenticeRecordCreatedDetails,
    models.AuditAction.APPRENTICE_RECORD_ARCHIVED: ApprenticeRecordArchivedDetails,
    models.AuditAction.APPRENTICE_RECORD_RESTORED: ApprenticeRecordRestoredDetails,
    models.AuditAction.ASSESSOR_ALLOCATED: AssessorAllocatedDetails,
    models.AuditAction.ASSESSOR_DEALLOCATED: AssessorDeallocatedDetails,
    models.AuditAction.RECORDS_ASSIGNED: RecordsAssignedDetails,
    models.AuditAction.RECORDS_UNASSIGNED: RecordsUnassignedDetails,
    models.AuditAction.TRAINING_COORDINATOR_ASSIGNED: TrainingCoordinatorAssignedDetails,
    models.AuditAction.EVIDENCE_SUBMITTED: EvidenceSubmittedDetails,
    models.AuditAction.EVIDENCE_DECIDED: EvidenceDecidedDetails,
    models.AuditAction.LICENCE_POOL_SET: LicencePoolSetDetails,
    models.AuditAction.LICENCES_ALLOCATED: LicencesAllocatedDetails,
    models.AuditAction.LICENCES_WITHHELD: LicencesWithheldDetails,
    models.AuditAction.LICENCE_LAUNCHED: LicenceLaunchedDetails,
    models.AuditAction.LICENCE_COMPLETED: LicenceCompletedDetails,
    models.AuditAction.AUTO_ALLOCATION_RULE_CREATED: AutoAllocationRuleCreatedDetails,
    models.AuditAction.AUTO_ALLOCATION_RULE_DELETED: AutoAllocationRuleDeletedDetails,
    models.AuditAction.API_KEY_CREATED: ApiKeyCreatedDetails,
}

ChangeDetails = Annotated[
    StaffMemberCreatedDetails
    | StaffMemberUpdatedDetails
    | StaffMemberDeactivatedDetails
    | ExternalAssessorUpdatedDetails
    | LearnerUpdatedDetails
    | ApprenticeRecordCreatedDetails
    | ApprenticeRecordArchivedDetails
    | ApprenticeRecordRestoredDetails
    | AssessorAllocatedDetails
    | AssessorDeallocatedDetails
    | RecordsAssignedDetails
    | RecordsUnassignedDetails
    | TrainingCoordinatorAssignedDetails
    | EvidenceSubmittedDetails
    | EvidenceDecidedDetails
    | LicencePoolSetDetails
    | LicencesAllocatedDetails
    | LicencesWithheldDetails
    | LicenceLaunchedDetails
    | LicenceCompletedDetails
    | AutoAllocationRuleCreatedDetails
    | AutoAllocationRuleDeletedDetails
    | ApiKeyCreatedDetails,
    strawberry.union(
        "ChangeDetails",
        description="What a change says beyond its subject: one type per action, "
        + ", ".join(f"`{kind.__name__}` for {action.value}" for action, kind in DETAILS.items())
        + ". Other actions say nothing more (null).",
    ),
]


def details_of(action: models.AuditAction, details: dict[str, Any] | None) -> Any:
    kind = DETAILS.get(action)
    return None if kind is None or details is None else kind.of(details)


# The feed ---------------------------------------------------------------------------------


@strawberry.type(description="One committed change to one object.")
class Change:
    action: AuditAction = strawberry.field(description="What was done, object then verb.")
    at: datetime = strawberry.field(description="When the change was made (its request began).")
    details: ChangeDetails | None = strawberry.field(
        description="What the change says beyond its subject; null for actions that say nothing "
        "more."
    )
    row: strawberry.Private[models.Change]

    actor: User | None = relation(
        changes.ACTOR,
        description="The person who did it; null when an API key or the command line did, or "
        "the reader may not see that person.",
        extensions=signed_in(),
    )
    api_key: ApiKey | None = relation(
        api_keys.KEY_OF_ACCESS,
        description="The API key that did it, if one did and the reader may read API keys "
        "(super admins); otherwise null.",
        extensions=signed_in(),
    )

    @strawberry.field(
        description="The change's position in the feed (the same as its edge's `cursor`); "
        "store it and pass it as `after` to read on or to resume a subscription."
    )
    def cursor(self) -> str:
        return changes.cursor_of(self.row)

    @strawberry.field(
        description="The object changed, as the reader sees it now.", extensions=signed_in()
    )
    async def subject(self, info: Info) -> Node | None:
        lookup = LOOKUPS.get(self.row.subject_type)
        if lookup is None:
            return None
        found = await lookup(info.context).load(self.row.subject_id)
        return None if found is None else project(self.row.subject_type, found)

    @classmethod
    def from_row(cls, row: models.Change) -> Change:
        return cls(
            action=row.action, at=row.at, details=details_of(row.action, row.details), row=row
        )


@strawberry.type(description="One change, with its position in the feed.")
class ChangeEdge:
    cursor: str = strawberry.field(
        description="The change's position; store it and pass it as `after` to read on."
    )
    node: Change = strawberry.field(description="The change.")


@strawberry.type(description="A page of the change feed, oldest first.")
class ChangeConnection:
    edges: list[ChangeEdge] = strawberry.field(description="The changes, in commit order.")
    page_info: PageInfo = strawberry.field(
        description="Where the page stands; `endCursor` is the position to store, also when the "
        "page is empty."
    )


@strawberry.type
class ChangeQuery:
    @strawberry.field(
        description="Every committed change to the objects the reader can see, oldest first in "
        "commit order; follow it by storing the last cursor and passing it as `after`. A change "
        "whose object the reader cannot see now is not listed. A cursor older than the feed "
        "keeps (CASELOAD_CHANGES_RETENTION_DAYS) is INVALID: resync from the lists.",
        extensions=signed_in(),
    )
    async def changes(
        self,
        info: Info,
        after: Annotated[
            str | None,
            strawberry.argument(
                description="The cursor of the last change read; the feed's start when not given."
            ),
        ] = None,
        first: Annotated[
            int | None,
            strawberry.argument(
                description="How many changes to return: 0 to 500; when not given: 50."
            ),
        ] = None,
        filter: Annotated[
            ChangeFilter | None,  # type: ignore[valid-type]
            strawberry.argument(description="Narrow the feed; nothing narrowed when not given."),
        ] = None,
    ) -> ChangeConnection:
        page = await changes.feed(
            info.context, after=after, first=first, filter=plain(filter, changes.ChangeFilter)
        )
        edges = [
            ChangeEdge(cursor=c, node=Change.from_row(r))
            for r, c in zip(page.rows, page.cursors, strict=True)
        ]
        return ChangeConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=after is not None,
                start_cursor=page.cursors[0] if page.cursors else None,
                end_cursor=page.cursors[-1] if page.cursors else after,
            ),
        )


@strawberry.type
class ChangeSubscription:
    @strawberry.subscription(
        description="Each committed change to an object the subscriber can see, as it commits, "
        "in commit order (graphql-transport-ws on /graphql, `Authorization` in "
        "`connection_init`). Each change is read under the subscriber's scopes when it is "
        "delivered: one to an object they cannot see then is not sent. With `after`, the "
        "changes the feed holds since that cursor come first, then the live ones.",
        extensions=signed_in(),
    )
    async def changes(
        self,
        info: Info,
        filter: Annotated[
            ChangeFilter | None,  # type: ignore[valid-type]
            strawberry.argument(description="Narrow the changes; nothing narrowed when not given."),
        ] = None,
        after: Annotated[
            str | None,
            strawberry.argument(
                description="The cursor of the last change received: resume after it. When not "
                "given, from the changes that commit next."
            ),
        ] = None,
    ) -> AsyncGenerator[Change, None]:
        live = info.context.live
        if live is None:
            raise Unavailable("Subscriptions are served over the websocket on /graphql.")
        # Checked (cursor, filter, caps) before the stream begins: an error, not an event.
        rows = await live.follow(info.context, after, plain(filter, changes.ChangeFilter))
        return _events(rows)


async def _events(rows: AsyncIterator[models.Change]) -> AsyncGenerator[Change, None]:
    async for row in rows:
        yield Change.from_row(row)

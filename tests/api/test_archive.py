"""archiveApprenticeRecord / restoreApprenticeRecord: an archived record is read-only."""

from __future__ import annotations

import asyncio

import pytest

from db.models import RecordStatus
from tests.cast import ADMINS, OTHERS, cast
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import (
    Api,
    assert_denied,
    assert_error,
    assert_granted,
    audit_actions,
    database_state,
    gid,
)

ARCHIVE = """mutation($input: ApprenticeRecordIdInput!) {
  archiveApprenticeRecord(input: $input) {
    __typename
    ... on ApprenticeRecordArchived { record { id status } unchanged }
    ... on Error { code message }
    ... on RecordArchivedError { id }
  }
}"""
RESTORE = """mutation($input: ApprenticeRecordIdInput!) {
  restoreApprenticeRecord(input: $input) {
    __typename
    ... on ApprenticeRecordRestored { record { id status } unchanged }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""
RECORDS = """query($filter: RecordFilter) {
  apprenticeRecords(first: 100, filter: $filter) { totalCount edges { node { id status } } }
}"""
RECORD = """query($id: ID!) {
  node(id: $id) { ... on ApprenticeRecord { status learner { records { id status } } } }
}"""
ASSIGN = """mutation($input: AssignRecordsInput!) {
  assignRecords(input: $input) {
    __typename
    ... on BulkRejectedError { code items { id code message } }
    ... on Error { code message }
  }
}"""
UNASSIGN = """mutation($input: UnassignRecordsInput!) {
  unassignRecords(input: $input) {
    __typename
    ... on BulkRejectedError { code items { id code message } }
    ... on Error { code message }
  }
}"""
COORDINATE = """mutation($input: AssignTrainingCoordinatorInput!) {
  assignTrainingCoordinator(input: $input) {
    __typename ... on Error { code message } ... on RecordArchivedError { id }
  }
}"""
SUBMIT = """mutation($input: SubmitEvidenceInput!) {
  submitEvidence(input: $input) {
    __typename ... on Error { code message } ... on RecordArchivedError { id }
  }
}"""
DECIDE = """mutation($input: SignOffEvidenceInput!) {
  signOffEvidence(input: $input) {
    __typename ... on Error { code message } ... on RecordArchivedError { id }
  }
}"""


def rid(pk: int) -> str:
    return gid("ApprenticeRecord", pk)


@pytest.mark.parametrize("role", ADMINS)
async def test_admins_archive_and_restore(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    # given a live record assigned to an assessor
    c = await cast(world)
    admin, assessor = c.as_(api, role), c.as_(api, "ASSESSOR")
    record = rid(c.record.id)

    # when an admin archives it
    archived = assert_granted(
        await admin(ARCHIVE, input={"recordId": record}), "ApprenticeRecordArchived"
    )
    assert archived["record"] == {"id": record, "status": "ARCHIVED"}

    # then it leaves the live records view, for the admin and for its assessor, and a filter
    # finds it; by id and on its learner it still shows, with its status
    for caller in (admin, assessor):
        assert (await caller(RECORDS)).ok()["apprenticeRecords"]["totalCount"] == 0
        found = (await caller(RECORDS, filter={"status": "ARCHIVED"})).ok()["apprenticeRecords"]
        assert found["edges"] == [{"node": {"id": record, "status": "ARCHIVED"}}]
        shown = (await caller(RECORD, id=record)).ok()["node"]
        assert shown["status"] == "ARCHIVED"
        assert {"id": record, "status": "ARCHIVED"} in shown["learner"]["records"]

    # when it is restored, then it is live again
    restored = assert_granted(
        await admin(RESTORE, input={"recordId": record}), "ApprenticeRecordRestored"
    )
    assert restored["record"]["status"] == "LIVE"
    assert (await assessor(RECORDS)).ok()["apprenticeRecords"]["edges"] == [
        {"node": {"id": record, "status": "LIVE"}}
    ]
    actor = c.people[role].id
    assert (await audit_actions(backend.engine))[-2:] == [
        ("APPRENTICE_RECORD_ARCHIVED", "ApprenticeRecord", actor),
        ("APPRENTICE_RECORD_RESTORED", "ApprenticeRecord", actor),
    ]


@pytest.mark.parametrize("who", OTHERS)
@pytest.mark.parametrize("mutation", ["archive", "restore"])
async def test_nobody_else_archives_or_restores(
    api: Api, world: World, backend: Backend, who: str, mutation: str
) -> None:
    c = await cast(world)
    if mutation == "restore":
        c.record = await world.record(c.learner, status=RecordStatus.ARCHIVED)
        await world.assign(c.record, c.people["ASSESSOR"])
    before = await database_state(backend.engine)
    query = ARCHIVE if mutation == "archive" else RESTORE
    result = await c.as_(api, who)(query, input={"recordId": rid(c.record.id)})
    if who == "OTHER_ADMIN":
        assert_error(result, "NotFoundError", "NOT_FOUND")
    else:
        assert_denied(result)
        assert result.errors[0]["message"] == (
            "Your roles do not allow archiving or restoring apprentice records."
        )
    assert await database_state(backend.engine) == before


async def test_an_archived_record_is_read_only(api: Api, world: World, backend: Backend) -> None:
    # given an archived record with an assessor, a coordinator and submitted evidence
    c = await cast(world)
    record = rid(c.record.id)
    evidence = await world.evidence(c.record)
    live = await world.record(c.learner)
    admin = c.as_(api, "ADMIN")
    assert_granted(await admin(ARCHIVE, input={"recordId": record}), "ApprenticeRecordArchived")
    before = await database_state(backend.engine)
    assessor = gid("User", c.people["ASSESSOR"].id)
    coordinator = gid("User", c.people["TRAINING_COORDINATOR"].id)

    # then bulk assignment names it RECORD_ARCHIVED, and nothing else is done
    for query, given in (
        (ASSIGN, {"assigneeId": assessor, "recordIds": [rid(live.id), record]}),
        (UNASSIGN, {"recordIds": [record, rid(live.id)]}),
    ):
        rejected = assert_error(
            await admin(query, input=given), "BulkRejectedError", "BULK_REJECTED"
        )
        assert rejected["items"] == [
            {
                "id": record,
                "code": "RECORD_ARCHIVED",
                "message": "This apprentice record is archived.",
            }
        ]
    # and every other change answers RecordArchivedError
    archived_answers = [
        await admin(COORDINATE, input={"recordId": record, "coordinatorId": coordinator}),
        await admin(SUBMIT, input={"recordId": record, "title": "Late work"}),
        await c.as_(api, "LEARNER")(SUBMIT, input={"recordId": record, "title": "Late work"}),
        await c.as_(api, "ASSESSOR")(
            DECIDE, input={"evidenceId": gid("Evidence", evidence.id), "decision": "SIGN_OFF"}
        ),
        await c.as_(api, "EXTERNAL_ASSESSOR")(
            DECIDE, input={"evidenceId": gid("Evidence", evidence.id), "decision": "SIGN_OFF"}
        ),
    ]
    for result in archived_answers:
        payload = assert_error(result, "RecordArchivedError", "RECORD_ARCHIVED")
        assert payload["id"] == record
    # archiving it again, or restoring a live record, is already done: unchanged
    again = assert_granted(
        await admin(ARCHIVE, input={"recordId": record}), "ApprenticeRecordArchived"
    )
    assert again["record"]["status"] == "ARCHIVED" and again["unchanged"] is True
    live_already = assert_granted(
        await admin(RESTORE, input={"recordId": rid(live.id)}), "ApprenticeRecordRestored"
    )
    assert live_already["record"]["status"] == "LIVE" and live_already["unchanged"] is True
    assert await database_state(backend.engine) == before
    # and its assessor, coordinator, learner and external assessor still read it
    for who in ("ASSESSOR", "TRAINING_COORDINATOR", "LEARNER", "EXTERNAL_ASSESSOR"):
        shown = (await c.as_(api, who)(RECORD, id=record)).ok()["node"]
        assert shown["status"] == "ARCHIVED", who


async def test_archiving_while_evidence_is_submitted_never_leaves_evidence_after_it(
    api: Api, world: World, backend: Backend
) -> None:
    """Both orders are fine; evidence submitted after the archive is not."""
    c = await cast(world)
    record = rid(c.record.id)
    results = await asyncio.gather(
        c.as_(api, "LEARNER")(SUBMIT, input={"recordId": record, "title": "Unit 3"}),
        c.as_(api, "ADMIN")(ARCHIVE, input={"recordId": record}),
    )
    submitted, archived = (r.ok() for r in results)
    assert archived["archiveApprenticeRecord"]["__typename"] == "ApprenticeRecordArchived"
    kind = submitted["submitEvidence"]["__typename"]
    assert kind in ("EvidenceSubmitted", "RecordArchivedError")
    from sqlalchemy import select

    from db.models import AuditEvent

    async with world.maker() as session:
        order = (
            (await session.execute(select(AuditEvent.action).order_by(AuditEvent.id)))
            .scalars()
            .all()
        )
    if kind == "EvidenceSubmitted":
        assert order == ["EVIDENCE_SUBMITTED", "APPRENTICE_RECORD_ARCHIVED"]
    else:
        assert order == ["APPRENTICE_RECORD_ARCHIVED"]

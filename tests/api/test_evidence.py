"""Evidence: submitted by the learner or an admin; decided by those who assess the learner."""

from __future__ import annotations

import asyncio

import pytest

from db.models import ApprenticeRecord, Organisation, User
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import (
    Api,
    assert_denied,
    assert_error,
    assert_granted,
    audit_actions,
    gid,
    row_counts,
)

SUBMIT = """mutation($input: SubmitEvidenceInput!) {
  submitEvidence(input: $input) {
    __typename
    ... on EvidenceSubmitted { evidence { id title status submittedAt record { id } } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""

DECIDE = """mutation($input: SignOffEvidenceInput!) {
  signOffEvidence(input: $input) {
    __typename
    ... on EvidenceDecided { evidence { id status comment decidedAt decidedBy { id } } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""


async def _learner_with_sign_in(world: World, org: Organisation) -> tuple[User, ApprenticeRecord]:
    user = await world.staff(org, "LEARNER")
    learner = await world.learner(org, user=user)
    return user, await world.record(learner)


async def test_learner_submits_on_their_own_record(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    user, record = await _learner_with_sign_in(world, org)
    payload = assert_granted(
        await api.as_(user, org)(
            SUBMIT,
            input={"recordId": gid("ApprenticeRecord", record.id), "title": "Unit 1 account"},
        ),
        "EvidenceSubmitted",
    )
    assert payload["evidence"]["status"] == "SUBMITTED"
    assert payload["evidence"]["record"] == {"id": gid("ApprenticeRecord", record.id)}
    assert (await audit_actions(backend.engine))[-1] == ("EVIDENCE_SUBMITTED", "Evidence", user.id)


async def test_admin_submits_and_others_may_not(api: Api, world: World, backend: Backend) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    _user, record = await _learner_with_sign_in(world, org)
    other_user, _ = await _learner_with_sign_in(world, org)
    given = {"recordId": gid("ApprenticeRecord", record.id), "title": "Observation"}
    assert_granted(await api.as_(admin, org)(SUBMIT, input=given), "EvidenceSubmitted")
    senior, support = await world.staff(org, "SENIOR_ASSESSOR"), await world.support()
    before = await row_counts(backend.engine)
    # Another learner cannot see the record at all.
    assert_error(await api.as_(other_user, org)(SUBMIT, input=given), "NotFoundError", "NOT_FOUND")
    assert_denied(await api.as_(senior, org)(SUBMIT, input=given))
    assert_denied(await api.as_(support)(SUBMIT, input=given))
    assert_error(
        await api.as_(admin, org)(SUBMIT, input={**given, "title": " "}),
        "ValidationError",
        "INVALID",
    )
    assert await row_counts(backend.engine) == before


@pytest.mark.parametrize("how", ["assigned ASSESSOR", "SENIOR_ASSESSOR", "ADMIN", "external"])
async def test_who_may_sign_off(api: Api, world: World, backend: Backend, how: str) -> None:
    org = await world.organisation()
    learner = await world.learner(org)
    record = await world.record(learner)
    evidence = await world.evidence(record)
    if how == "assigned ASSESSOR":
        decider = await world.staff(org, "ASSESSOR")
        await world.assign(record, decider)
        caller = api.as_(decider, org)
    elif how == "external":
        decider = await world.external_assessor()
        await world.allocate(learner, decider)
        caller = api.as_(decider)
    else:
        decider = await world.staff(org, how)
        caller = api.as_(decider, org)
    payload = assert_granted(
        await caller(
            DECIDE, input={"evidenceId": gid("Evidence", evidence.id), "decision": "SIGN_OFF"}
        ),
        "EvidenceDecided",
    )
    assert payload["evidence"]["status"] == "SIGNED_OFF"
    assert payload["evidence"]["decidedBy"] == {"id": gid("User", decider.id)}
    assert payload["evidence"]["decidedAt"] is not None
    assert (await audit_actions(backend.engine))[-1] == ("EVIDENCE_DECIDED", "Evidence", decider.id)


async def test_who_may_not_sign_off(api: Api, world: World, backend: Backend) -> None:
    org = await world.organisation()
    learner_user, record = await _learner_with_sign_in(world, org)
    evidence = await world.evidence(record)
    given = {"evidenceId": gid("Evidence", evidence.id), "decision": "SIGN_OFF"}
    unassigned = await world.staff(org, "ASSESSOR")
    ended = await world.staff(org, "ASSESSOR")
    await world.assign(record, ended, ended=True)
    unallocated = await world.external_assessor()
    manager = await world.staff(org, "MANAGER", location=await world.location(org))
    support = await world.support()
    before = await row_counts(backend.engine)
    for caller in (api.as_(unassigned, org), api.as_(ended, org), api.as_(unallocated)):
        assert_error(await caller(DECIDE, input=given), "NotFoundError", "NOT_FOUND")
    assert_denied(await api.as_(learner_user, org)(DECIDE, input=given))
    assert_denied(await api.as_(manager, org)(DECIDE, input=given))
    assert_denied(await api.as_(support)(DECIDE, input=given))
    assert await row_counts(backend.engine) == before


async def test_refer_needs_a_comment_and_decided_evidence_is_locked(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    senior = await world.staff(org, "SENIOR_ASSESSOR")
    record = await world.record(await world.learner(org))
    evidence = await world.evidence(record)
    call = api.as_(senior, org)
    eid = gid("Evidence", evidence.id)
    error = assert_error(
        await call(DECIDE, input={"evidenceId": eid, "decision": "REFER"}),
        "ValidationError",
        "INVALID",
    )
    assert error["field"] == "comment"
    assert_error(
        await call(DECIDE, input={"evidenceId": eid, "decision": "REFER", "comment": "   "}),
        "ValidationError",
        "INVALID",
    )
    payload = assert_granted(
        await call(
            DECIDE,
            input={"evidenceId": eid, "decision": "REFER", "comment": "Add a witness statement."},
        ),
        "EvidenceDecided",
    )
    assert payload["evidence"]["status"] == "REFERRED"
    assert payload["evidence"]["comment"] == "Add a witness statement."
    before = await row_counts(backend.engine)
    for decision in ("SIGN_OFF", "REFER"):
        assert_error(
            await call(DECIDE, input={"evidenceId": eid, "decision": decision, "comment": "again"}),
            "EvidenceLockedError",
            "EVIDENCE_LOCKED",
        )
    assert await row_counts(backend.engine) == before
    assert_error(
        await call(DECIDE, input={"evidenceId": "x", "decision": "SIGN_OFF"}),
        "ValidationError",
        "INVALID",
    )
    assert_error(
        await call(DECIDE, input={"evidenceId": gid("Evidence", 10**9), "decision": "SIGN_OFF"}),
        "NotFoundError",
        "NOT_FOUND",
    )


async def test_two_assessors_deciding_at_once_one_wins(api: Api, world: World) -> None:
    org = await world.organisation()
    first, second = await world.staff(org, "SENIOR_ASSESSOR"), await world.staff(org, "ADMIN")
    record = await world.record(await world.learner(org))
    evidence = await world.evidence(record)
    given = {"evidenceId": gid("Evidence", evidence.id), "decision": "SIGN_OFF"}
    results = await asyncio.gather(
        api.as_(first, org)(DECIDE, input=given), api.as_(second, org)(DECIDE, input=given)
    )
    kinds = sorted(r.ok()["signOffEvidence"]["__typename"] for r in results)
    assert kinds == ["EvidenceDecided", "EvidenceLockedError"]

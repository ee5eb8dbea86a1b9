"""The audit trail: one event per change, written with the change; read newest first by the
organisation's admins, and by support for support users' own actions."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from db.base import utcnow
from db.models import AuditAction, AuditEvent, Learner, Organisation, RecordStatus, User
from resolvers.ids import MalformedId, decode_id
from schema import schema
from schema.results import USE_CASES
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import Api, Caller, assert_denied, gid

EVENTS = """query($first: Int, $after: String, $filter: AuditFilter) {
  auditEvents(first: $first, after: $after, filter: $filter) {
    totalCount
    edges { cursor node { id at action subjectType subjectId details client userAgent
                          actor { id } apiKey { id } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def events(caller: Caller, **variables: Any) -> list[dict[str, Any]]:
    return [e["node"] for e in (await caller(EVENTS, **variables)).ok()["auditEvents"]["edges"]]


async def event_count(backend: Backend) -> int:
    async with backend.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(AuditEvent))).scalar_one())


# Reading the trail ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["SUPER_ADMIN", "ADMIN"])
async def test_admins_read_their_organisations_trail_newest_first(
    api: Api, world: World, role: str
) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, role)
    learner = await world.learner(org)
    now = utcnow()
    same_time = now - timedelta(minutes=5)
    older = await world.audit_event(
        org, AuditAction.LEARNER_CREATED, learner, at=now - timedelta(hours=1)
    )
    tie_a = await world.audit_event(org, AuditAction.LEARNER_UPDATED, learner, at=same_time)
    tie_b = await world.audit_event(org, AuditAction.LEARNER_UPDATED, learner, at=same_time)
    await world.audit_event(other, AuditAction.LEARNER_CREATED, await world.learner(other))
    newest = await world.audit_event(org, AuditAction.APPRENTICE_RECORD_CREATED, Learner, at=now)
    call = api.as_(admin, org)

    page = (await call(EVENTS, first=2)).ok()["auditEvents"]
    assert page["totalCount"] == 4
    assert [e["node"]["id"] for e in page["edges"]] == [
        gid("AuditEvent", newest.id),
        gid("AuditEvent", tie_b.id),  # same time: the later id first
    ]
    rest = (await call(EVENTS, first=2, after=page["pageInfo"]["endCursor"])).ok()["auditEvents"]
    assert [e["node"]["id"] for e in rest["edges"]] == [
        gid("AuditEvent", tie_a.id),
        gid("AuditEvent", older.id),
    ]
    assert not rest["pageInfo"]["hasNextPage"]
    assert page["edges"][0]["node"]["subjectId"] is None  # a change to many rows
    assert rest["edges"][1]["node"]["subjectId"] == gid("Learner", learner.id)
    bad = await call(EVENTS, after="not-a-cursor")
    assert bad.codes == ["INVALID"]


@pytest.mark.parametrize(
    "role", ["SENIOR_ASSESSOR", "MANAGER", "ASSESSOR", "TRAINING_COORDINATOR", "LEARNER"]
)
async def test_other_roles_read_no_trail(api: Api, world: World, role: str) -> None:
    org = await world.organisation()
    person = await world.staff(org, role)
    event = await world.audit_event(org, AuditAction.LEARNER_CREATED, await world.learner(org))
    await _sees_nothing(api.as_(person, org), event)


async def test_external_assessors_and_other_organisations_read_no_trail(
    api: Api, world: World
) -> None:
    org, other = await world.organisation(), await world.organisation()
    event = await world.audit_event(org, AuditAction.LEARNER_CREATED, await world.learner(org))
    await _sees_nothing(api.as_(await world.external_assessor()), event)
    await _sees_nothing(api.as_(await world.staff(other, "SUPER_ADMIN"), other), event)


async def _sees_nothing(caller: Caller, event: AuditEvent) -> None:
    found = (await caller(EVENTS)).ok()["auditEvents"]
    assert found == {
        "totalCount": 0,
        "edges": [],
        "pageInfo": {"hasNextPage": False, "endCursor": None},
    }
    node = await caller("query($id: ID!) { node(id: $id) { id } }", id=gid("AuditEvent", event.id))
    assert node.ok() == {"node": None}


async def test_support_reads_what_support_users_did_and_nothing_else(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    me, colleague = await world.support(), await world.support()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    mine = await world.audit_event(org, AuditAction.STAFF_MEMBER_CREATED, admin, actor=me)
    theirs = await world.audit_event(
        None, AuditAction.EXTERNAL_ASSESSOR_CREATED, colleague, actor=colleague
    )
    await world.audit_event(org, AuditAction.LEARNER_CREATED, learner, actor=admin)
    key = await world.api_key(org, "ADMIN")
    await world.audit_event(org, AuditAction.LEARNER_UPDATED, learner, api_key=key)
    found = await events(api.as_(me))
    assert [e["id"] for e in found] == [gid("AuditEvent", theirs.id), gid("AuditEvent", mine.id)]
    assert found[1]["actor"] == {"id": gid("User", me.id)}


async def test_filters(api: Api, world: World) -> None:
    org = await world.organisation()
    admin, other_admin = await world.staff(org, "ADMIN"), await world.staff(org, "ADMIN")
    key = await world.api_key(org, "ADMIN")
    first, second = await world.learner(org), await world.learner(org)
    now = utcnow()
    a = await world.audit_event(
        org, AuditAction.LEARNER_CREATED, first, actor=admin, at=now - timedelta(days=2)
    )
    b = await world.audit_event(
        org, AuditAction.LEARNER_UPDATED, first, actor=other_admin, at=now - timedelta(hours=1)
    )
    c = await world.audit_event(org, AuditAction.LEARNER_CREATED, second, api_key=key, at=now)
    call = api.as_(admin, org)

    async def ids(**wanted: Any) -> list[int]:
        found = await events(call, filter=wanted)
        return [decode_id(e["id"])[1] for e in found]

    assert await ids(action="LEARNER_CREATED") == [c.id, a.id]
    assert await ids(actorId=gid("User", admin.id)) == [a.id]
    # an admin may not read API keys: naming one matches nothing, like a made-up key
    assert await ids(actorId=gid("ApiKey", key.id)) == []
    assert await ids(actorId=gid("ApiKey", 10**9)) == []
    boss = await world.staff(org, "SUPER_ADMIN")
    by_key = await events(api.as_(boss, org), filter={"actorId": gid("ApiKey", key.id)})
    assert [decode_id(e["id"])[1] for e in by_key] == [c.id]
    assert await ids(actorId=gid("User", key.user_id)) == []  # a key's identity is not a person
    assert await ids(subjectId=gid("Learner", first.id)) == [b.id, a.id]
    assert await ids(subjectId=gid("Organisation", first.id)) == []
    assert await ids(since=(now - timedelta(days=1)).isoformat()) == [c.id, b.id]
    assert await ids(action="LEARNER_CREATED", subjectId=gid("Learner", first.id)) == [a.id]
    for field in ("actorId", "subjectId"):
        refused = await call(EVENTS, filter={field: "%%"})
        assert refused.codes == ["INVALID"], refused.body
        assert refused.errors[0]["extensions"]["field"] == field


async def test_an_event_says_who_what_when_and_from_which_client(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    headers = {**api.as_(admin, org).headers, "User-Agent": "MIS/4.2"}
    before = utcnow()
    created = (
        await api.with_headers(headers)(
            'mutation { createLearner(input: {name: "Ada", email: "ada@example.org"}) '
            "{ ... on LearnerCreated { learner { id } } } }"
        )
    ).ok()
    (event,) = await events(api.as_(admin, org))
    assert event["action"] == "LEARNER_CREATED"
    assert event["subjectType"] == "Learner"
    assert event["subjectId"] == created["createLearner"]["learner"]["id"]
    assert event["actor"] == {"id": gid("User", admin.id)} and event["apiKey"] is None
    assert (event["client"], event["userAgent"]) == ("jwt", "MIS/4.2")
    assert event["at"] >= before.isoformat()
    assert "ada@example.org" not in json.dumps(event)


# Writing the trail: every mutation, one event per change, in the change's transaction ------


@dataclass
class Case:
    """A mutation run once by `actor`, expected to write one event with `action`."""

    action: str
    given: Callable[[World, Organisation], Awaitable[tuple[User, dict[str, Any]]]]
    events: int = 1  # a dry run (previewAutoAllocationRule) writes none


async def _admin(world: World, org: Organisation) -> User:
    return await world.staff(org, "ADMIN")


async def _record(world: World, org: Organisation) -> Any:
    return await world.record(await world.learner(org))


def _gid(row: Any, type_name: str | None = None) -> str:
    return gid(type_name or type(row).__name__, row.id)


async def _organisation(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    return await world.support(), {"name": "New", "slug": "new-org"}


async def _external(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    return await world.support(), {"name": "Ext", "email": "ext@example.org"}


async def _external_update(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    assessor = await world.external_assessor()
    return await world.support(), {"userId": gid("User", assessor.id), "name": "Ext Renamed"}


async def _staff(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    return await _admin(world, org), {"name": "S", "email": "s@example.org", "roles": ["ASSESSOR"]}


async def _unit(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    return await _admin(world, org), {"name": "Unit"}


async def _learner(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    return await _admin(world, org), {"name": "L", "email": "l@example.org"}


async def _new_record(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    learner = await world.learner(org)
    return await _admin(world, org), {"learnerId": _gid(learner), "programme": "Care L3"}


async def _allocate(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    learner, external = await world.learner(org), await world.external_assessor()
    return await _admin(world, org), {"learnerId": _gid(learner), "assessorId": _gid(external)}


async def _deallocate(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    learner, external = await world.learner(org), await world.external_assessor()
    await world.allocate(learner, external)
    return await _admin(world, org), {"learnerId": _gid(learner), "assessorId": _gid(external)}


async def _assign(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    record, assessor = await _record(world, org), await world.staff(org, "ASSESSOR")
    return await _admin(world, org), {"assigneeId": _gid(assessor), "recordIds": [_gid(record)]}


async def _unassign(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    record = await _record(world, org)
    await world.assign(record, await world.staff(org, "ASSESSOR"))
    return await _admin(world, org), {"recordIds": [_gid(record)]}


async def _coordinate(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    record, coordinator = await _record(world, org), await world.staff(org, "TRAINING_COORDINATOR")
    return await _admin(world, org), {"recordId": _gid(record), "coordinatorId": _gid(coordinator)}


async def _submit(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    return await _admin(world, org), {"recordId": _gid(await _record(world, org)), "title": "T"}


async def _decide(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    evidence = await world.evidence(await _record(world, org))
    return await _admin(world, org), {"evidenceId": _gid(evidence), "decision": "SIGN_OFF"}


async def _create_key(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    return await world.staff(org, "SUPER_ADMIN"), {"name": "Feed", "roles": ["ADMIN"]}


async def _revoke_key(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    key = await world.api_key(org, "ADMIN")
    return await world.staff(org, "SUPER_ADMIN"), {"apiKeyId": _gid(key)}


async def _create_webhook(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    url = "https://93.184.216.34/hooks"  # a public address: no name to resolve
    return await world.staff(org, "SUPER_ADMIN"), {"url": url, "events": ["LEARNER_CREATED"]}


async def _webhook(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    endpoint, _ = await world.webhook(org)
    return await world.staff(org, "SUPER_ADMIN"), {
        "webhookEndpointId": _gid(endpoint, "WebhookEndpoint")
    }


async def _update_webhook(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    actor, given = await _webhook(world, org)
    return actor, {**given, "description": "MIS"}


async def _redeliver(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    _, delivery = await world.webhook(org)
    return await world.staff(org, "SUPER_ADMIN"), {"deliveryId": _gid(delivery, "WebhookDelivery")}


async def _course(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    return await world.support(), {"title": "Safeguarding", "code": "SG-1"}


async def _bind(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    return await world.support(), {
        "organisationId": _gid(org),
        "issuer": "https://login.example.org/tenant",
        "audience": "caseload",
    }


async def _unbind(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    await world.identity_provider(org)
    return await world.support(), {"organisationId": _gid(org)}


async def _pool(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    course = await world.course()
    return await world.support(), {
        "organisationId": _gid(org),
        "courseId": _gid(course),
        "seatsTotal": 5,
    }


async def _allocate_licences(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    course = await world.course()
    await world.pool(org, course, 5)
    learner = await world.learner(org)
    return await _admin(world, org), {"courseId": _gid(course), "learnerIds": [_gid(learner)]}


async def _licence(world: World, org: Organisation) -> Any:
    course = await world.course()
    pool = await world.pool(org, course, 5, used=1)
    return await world.licence(pool, await world.learner(org))


async def _recall(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    licence = await _licence(world, org)
    return await _admin(world, org), {"licenceIds": [_gid(licence)]}


async def _launch(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    licence = await _licence(world, org)
    return await _admin(world, org), {"licenceId": _gid(licence)}


async def _rule(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    course = await world.course()
    await world.pool(org, course, 5)
    return await _admin(world, org), {"courseId": _gid(course), "scope": "ENTIRE_COMPANY"}


async def _delete_rule(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    course = await world.course()
    rule = await world.rule(org, course)
    return await _admin(world, org), {"ruleId": _gid(rule, "AutoAllocationRule")}


async def _import(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    return await _admin(world, org), {"learners": [{"name": "A"}, {"name": "B"}]}


async def _update_learner(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    learner = await world.learner(org)
    return await _admin(world, org), {"learnerId": _gid(learner), "name": "Renamed"}


async def _update_staff(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    assessor = await world.staff(org, "ASSESSOR")
    return await _admin(world, org), {"userId": _gid(assessor), "name": "Renamed"}


async def _deactivate(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    assessor = await world.staff(org, "ASSESSOR")
    return await _admin(world, org), {"userId": _gid(assessor)}


async def _archive(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    return await _admin(world, org), {"recordId": _gid(await _record(world, org))}


async def _restore(world: World, org: Organisation) -> tuple[User, dict[str, Any]]:
    record = await world.record(await world.learner(org), status=RecordStatus.ARCHIVED)
    return await _admin(world, org), {"recordId": _gid(record)}


CASES: dict[str, Case] = {
    "createCourse": Case("COURSE_CREATED", _course),
    "setLicencePool": Case("LICENCE_POOL_SET", _pool),
    "setOrganisationIdentityProvider": Case("IDENTITY_PROVIDER_SET", _bind),
    "removeOrganisationIdentityProvider": Case("IDENTITY_PROVIDER_REMOVED", _unbind),
    "allocateLicences": Case("LICENCES_ALLOCATED", _allocate_licences),
    "recallLicences": Case("LICENCES_RECALLED", _recall),
    "markLicenceLaunched": Case("LICENCE_LAUNCHED", _launch),
    "markLicenceCompleted": Case("LICENCE_COMPLETED", _launch),
    "createAutoAllocationRule": Case("AUTO_ALLOCATION_RULE_CREATED", _rule),
    "previewAutoAllocationRule": Case("", _rule, events=0),
    "deleteAutoAllocationRule": Case("AUTO_ALLOCATION_RULE_DELETED", _delete_rule),
    "importLearners": Case("LEARNERS_IMPORTED", _import),
    "createOrganisation": Case("ORGANISATION_CREATED", _organisation),
    "createExternalAssessor": Case("EXTERNAL_ASSESSOR_CREATED", _external),
    "updateExternalAssessor": Case("EXTERNAL_ASSESSOR_UPDATED", _external_update),
    "createStaffMember": Case("STAFF_MEMBER_CREATED", _staff),
    "createLocation": Case("LOCATION_CREATED", _unit),
    "createDepartment": Case("DEPARTMENT_CREATED", _unit),
    "createLearner": Case("LEARNER_CREATED", _learner),
    "createApprenticeRecord": Case("APPRENTICE_RECORD_CREATED", _new_record),
    "allocateAssessor": Case("ASSESSOR_ALLOCATED", _allocate),
    "deallocateAssessor": Case("ASSESSOR_DEALLOCATED", _deallocate),
    "assignRecords": Case("RECORDS_ASSIGNED", _assign),
    "unassignRecords": Case("RECORDS_UNASSIGNED", _unassign),
    "assignTrainingCoordinator": Case("TRAINING_COORDINATOR_ASSIGNED", _coordinate),
    "submitEvidence": Case("EVIDENCE_SUBMITTED", _submit),
    "signOffEvidence": Case("EVIDENCE_DECIDED", _decide),
    "createApiKey": Case("API_KEY_CREATED", _create_key),
    "revokeApiKey": Case("API_KEY_REVOKED", _revoke_key),
    "createWebhookEndpoint": Case("WEBHOOK_ENDPOINT_CREATED", _create_webhook),
    "updateWebhookEndpoint": Case("WEBHOOK_ENDPOINT_UPDATED", _update_webhook),
    "deleteWebhookEndpoint": Case("WEBHOOK_ENDPOINT_DELETED", _webhook),
    "rotateWebhookSecret": Case("WEBHOOK_SECRET_ROTATED", _webhook),
    "redeliverWebhook": Case("WEBHOOK_REDELIVERED", _redeliver),
    "updateLearner": Case("LEARNER_UPDATED", _update_learner),
    "updateStaffMember": Case("STAFF_MEMBER_UPDATED", _update_staff),
    "deactivateStaffMember": Case("STAFF_MEMBER_DEACTIVATED", _deactivate),
    "archiveApprenticeRecord": Case("APPRENTICE_RECORD_ARCHIVED", _archive),
    "restoreApprenticeRecord": Case("APPRENTICE_RECORD_RESTORED", _restore),
}


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.capitalize() for p in rest)


def test_every_mutation_has_a_case() -> None:
    """A new mutation needs its line in CASES: it, too, writes exactly one event."""
    assert set(CASES) == {_camel(name) for name in USE_CASES}


def _document(name: str) -> str:
    input_type = schema._schema.mutation_type.fields[name].args["input"].type
    return (
        f"mutation($input: {input_type}) {{ {name}(input: $input) "
        "{ __typename ... on Error { code message } } }"
    )


@pytest.mark.parametrize("name", sorted(CASES))
async def test_every_mutation_writes_exactly_one_event_naming_objects_by_global_id(
    api: Api, world: World, backend: Backend, name: str
) -> None:
    case = CASES[name]
    org = await world.organisation()
    actor, given = await case.given(world, org)
    before = await event_count(backend)
    answer = (
        await api.as_(actor, None if actor.kind.value == "SUPPORT" else org)(
            _document(name), input=given
        )
    ).ok()[name]
    assert "code" not in answer, answer
    assert await event_count(backend) == before + case.events
    if case.events == 0:
        return
    async with backend.engine.connect() as conn:
        event = (
            await conn.execute(
                select(
                    AuditEvent.action, AuditEvent.actor_id, AuditEvent.client, AuditEvent.details
                )
                .order_by(AuditEvent.id.desc())
                .limit(1)
            )
        ).one()
    assert event.action.value == case.action
    assert event.actor_id == actor.id and event.client == "jwt"
    text = json.dumps(event.details)
    assert "@" not in text and "ck_" not in text  # no emails, no keys
    for key, value in (event.details or {}).items():
        if key.endswith("Id") and value is not None:
            _is_global_id(value)
        if key.endswith("Ids"):
            for one in value:
                _is_global_id(one)


def _is_global_id(value: str) -> None:
    try:
        type_name, _ = decode_id(value)
    except MalformedId as exc:  # pragma: no cover - the assertion's message
        raise AssertionError(f"{value!r} is not a global id") from exc
    assert type_name in schema._schema.type_map, value


async def test_a_mutation_that_changes_nothing_leaves_no_event(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    invalid = (await call('mutation { createLearner(input: {name: " "}) { __typename } }')).ok()
    assert invalid == {"createLearner": {"__typename": "ValidationError"}}
    # the first mutation succeeded, the second was refused: the operation rolls back whole
    refused = await call(
        """mutation { a: createLearner(input: {name: "Ada"}) { __typename }
                      b: createOrganisation(input: {name: "X", slug: "x"}) { __typename } }"""
    )
    assert_denied(refused)
    assert await event_count(backend) == 0
    async with backend.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(Learner))).scalar_one() == 0

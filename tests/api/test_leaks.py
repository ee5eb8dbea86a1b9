"""Leaks found by trying the API from outside, each pinned by a test that failed before its fix.

1. Filters revealed assignments the caller cannot see.
2. An organisation admin could reach another organisation's people through an email.
3. Learner sign-ins were listed as staff.
8. The audit trail's client could be forged by a header.
9. A licence showed the auto-allocation rule that issued it (and the rule's author) to everyone
   who could see the licence; an audit event and a `Learner.access` entry showed their API key
   to everyone who could see them. Rules are admins' only, keys super admins' only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from db.models import AssignmentRole, AuditAction, RuleScope, User
from tests.conftest import AppFactory, Backend
from tests.factories import World
from tests.helpers import Api, Caller, assert_error, gid, row_counts

MADE_UP_USER = gid("User", 10**9)

LEARNERS = """query($filter: LearnerFilter) {
  learners(first: 50, filter: $filter) { totalCount edges { node { id } } }
}"""
RECORDS = """query($filter: RecordFilter) {
  apprenticeRecords(first: 50, filter: $filter) { totalCount edges { node { id } } }
}"""


async def raw(caller: Caller, query: str, variables: dict[str, object]) -> bytes:
    response = await caller.api.client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=caller.headers
    )
    assert response.status_code == 200
    return response.content


# 1. Filters apply the scopes of every table they read --------------------------------------


async def test_assigned_to_an_invisible_user_answers_like_a_made_up_id(
    api: Api, world: World
) -> None:
    # given a learner with two records: one assigned to me, one to a colleague I cannot see
    org = await world.organisation()
    me = await world.staff(org, "ASSESSOR")
    colleague = await world.staff(org, "ASSESSOR")
    learner = await world.learner(org)
    mine, theirs = await world.record(learner), await world.record(learner)
    await world.assign(mine, me)
    await world.assign(theirs, colleague)
    call = api.as_(me, org)

    # when I filter my learners and records by the colleague
    by_colleague = await raw(call, LEARNERS, {"filter": {"assignedTo": gid("User", colleague.id)}})
    by_nobody = await raw(call, LEARNERS, {"filter": {"assignedTo": MADE_UP_USER}})
    records_by_colleague = await raw(
        call, RECORDS, {"filter": {"assigneeId": gid("User", colleague.id)}}
    )
    records_by_nobody = await raw(call, RECORDS, {"filter": {"assigneeId": MADE_UP_USER}})

    # then the answers are exactly those for a made-up id: nothing
    assert by_colleague == by_nobody
    assert json.loads(by_nobody)["data"]["learners"]["totalCount"] == 0
    assert records_by_colleague == records_by_nobody
    # and filtering by myself still works
    by_me = (await call(LEARNERS, filter={"assignedTo": gid("User", me.id)})).ok()
    assert by_me["learners"]["totalCount"] == 1


async def test_unassigned_counts_only_assignments_the_caller_can_see(
    api: Api, world: World
) -> None:
    # given a learner I coordinate on one record, whose other record has an assessor I cannot see
    org = await world.organisation()
    me = await world.staff(org, "TRAINING_COORDINATOR")
    assessor = await world.staff(org, "ASSESSOR")
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    mine, theirs = await world.record(learner), await world.record(learner)
    await world.assign(mine, me, AssignmentRole.TRAINING_COORDINATOR)
    await world.assign(theirs, assessor)

    # when I ask for unassigned learners, then I see mine (no assessor I can see on them)
    mine_unassigned = (await api.as_(me, org)(LEARNERS, filter={"unassigned": True})).ok()
    assert mine_unassigned["learners"]["totalCount"] == 1
    # while the admin, who sees the assessor, does not
    admins = (await api.as_(admin, org)(LEARNERS, filter={"unassigned": True})).ok()
    assert admins["learners"]["totalCount"] == 0


async def test_unassigned_ignores_archived_records(api: Api, world: World) -> None:
    from db.models import RecordStatus

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    learner = await world.learner(org)
    archived = await world.record(learner, status=RecordStatus.ARCHIVED)
    await world.assign(archived, assessor)
    found = (await api.as_(admin, org)(LEARNERS, filter={"unassigned": True})).ok()
    assert found["learners"]["edges"] == [{"node": {"id": gid("Learner", learner.id)}}]


# 2. An admin never reaches a person of another organisation through an email -------------

CREATE_STAFF = """mutation($input: CreateStaffMemberInput!) {
  createStaffMember(input: $input) {
    __typename
    ... on StaffMemberCreated { user { id name } }
    ... on Error { code message }
    ... on AlreadyExistsError { field }
  }
}"""
CREATE_LEARNER = """mutation($input: CreateLearnerInput!) {
  createLearner(input: $input) {
    __typename
    ... on LearnerCreated { learner { id } }
    ... on Error { code message }
    ... on AlreadyExistsError { field }
  }
}"""


@pytest.mark.parametrize("mutation", ["staff", "learner"])
async def test_an_email_held_elsewhere_answers_the_same_and_changes_nothing(
    api: Api, world: World, backend: Backend, mutation: str
) -> None:
    # given accounts of every kind outside my organisation
    mine, other = await world.organisation(), await world.organisation()
    admin = await world.staff(mine, "ADMIN")
    others_staff = await world.staff(other, "ASSESSOR", name="Other Staff")
    others_learner = await world.staff(other, "LEARNER", name="Other Learner")
    await world.learner(other, user=others_learner)
    external = await world.external_assessor()
    support = await world.support()
    before = await row_counts(backend.engine)
    call = api.as_(admin, mine)

    answers = []
    for person in (others_staff, others_learner, external, support):
        if mutation == "staff":
            result = await call(
                CREATE_STAFF,
                input={"name": "New Name", "email": person.email.upper(), "roles": ["ASSESSOR"]},
            )
        else:
            result = await call(CREATE_LEARNER, input={"name": "New Name", "email": person.email})
        answers.append(assert_error(result, "AlreadyExistsError", "ALREADY_EXISTS"))

    # then every kind of account answers alike, names nobody, and nothing changed
    assert all(a == answers[0] for a in answers), answers
    assert answers[0]["field"] == "email"
    assert await row_counts(backend.engine) == before
    async with world.maker() as session:
        names = {u.name for u in (await session.execute(User.__table__.select())).all()}
    assert {"Other Staff", "Other Learner"} <= names and "New Name" not in names
    # and the other organisation's staff member still signs in without an `org` claim
    assert (await api.as_(others_staff)("{ viewer { roles } }")).ok()


async def test_an_email_of_someone_here_links_to_them(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR", name="Ann Assessor")
    created = (
        await api.as_(admin, org)(
            CREATE_LEARNER, input={"name": "Ignored", "email": assessor.email}
        )
    ).ok()["createLearner"]
    assert created["__typename"] == "LearnerCreated"
    roles = (await api.as_(assessor, org)("{ viewer { user { name } roles } }")).ok()
    assert roles["viewer"] == {"user": {"name": "Ann Assessor"}, "roles": ["ASSESSOR", "LEARNER"]}


async def test_a_learner_sign_in_here_can_become_staff(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    person = await world.staff(org, "LEARNER")
    await world.learner(org, user=person)
    created = (
        await api.as_(admin, org)(
            CREATE_STAFF, input={"name": "X", "email": person.email, "roles": ["ASSESSOR"]}
        )
    ).ok()["createStaffMember"]
    assert created["__typename"] == "StaffMemberCreated"
    roles = (await api.as_(person, org)("{ viewer { roles } }")).ok()
    assert roles["viewer"]["roles"] == ["ASSESSOR", "LEARNER"]
    again = await api.as_(admin, org)(
        CREATE_STAFF, input={"name": "X", "email": person.email, "roles": ["ASSESSOR"]}
    )
    assert_error(again, "AlreadyExistsError", "ALREADY_EXISTS")


# 3. A learner's sign-in is not staff ----------------------------------------------------

STAFF = "{ staff(first: 100) { totalCount edges { node { id } } } }"


async def test_learner_sign_ins_are_not_staff(api: Api, world: World) -> None:
    # given a learner with a sign-in, outside the team of a manager
    org = await world.organisation()
    here, there = await world.location(org), await world.location(org)
    manager = await world.staff(org, "MANAGER", location=here)
    sign_in = await world.staff(org, "LEARNER")
    await world.learner(org, location=there, user=sign_in)
    support = await world.support()
    learner_id = gid("User", sign_in.id)

    for caller in (api.as_(manager, org), api.as_(support)):
        listed = (await caller(STAFF)).ok()["staff"]
        ids = [e["node"]["id"] for e in listed["edges"]]
        # then neither the manager nor support finds them as staff, by list or by id
        assert learner_id not in ids
        assert listed["totalCount"] == len(ids)
        node = (await caller("query($id: ID!) { node(id: $id) { id } }", id=learner_id)).ok()
        assert node == {"node": None}
    # and the learner sees no staff at all
    assert (await api.as_(sign_in, org)(STAFF)).ok()["staff"]["totalCount"] == 0


# 8. The audit trail's client comes from the credential ----------------------------------

AUDIT = """query($id: ID!) { node(id: $id) { ... on AuditEvent { client userAgent } } }"""


async def test_the_audit_client_cannot_be_forged_by_a_header(
    api: Api, world: World, backend: Backend
) -> None:
    from sqlalchemy import select

    from db.models import AuditEvent

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    forged = {"X-Caseload-Client": "api-key:0123456789ab", "User-Agent": "api-key:feed"}
    caller = api.with_headers({**api.as_(admin, org).headers, **forged})
    created = await caller(CREATE_LEARNER, input={"name": "Jo Bloggs"})
    assert created.ok()["createLearner"]["__typename"] == "LearnerCreated"
    async with backend.engine.connect() as conn:
        event_id = (await conn.execute(select(AuditEvent.id))).scalar_one()
    shown = (await api.as_(admin, org)(AUDIT, id=gid("AuditEvent", event_id))).ok()["node"]
    assert shown == {"client": "jwt", "userAgent": "api-key:0123456789ab"}


# 9. Objects on a visible object go through their own scopes when DESIGN.md does not show them
# with it (it shows people, units, organisations and courses; not rules, not API keys) ------

LICENCE_RULES = """{ learners(first: 50) { edges { node { id licences {
  id source rule { id scope location { name } createdBy { name email } } } } } } }"""
LICENCE_RULE = """query($id: ID!) {
  node(id: $id) { ... on Licence { id rule { id createdBy { email } } } }
  licences(first: 50) { edges { node { id rule { id } } } }
}"""


async def test_a_licence_shows_its_rule_only_to_admins_on_both_read_paths(
    api_with: AppFactory, world: World
) -> None:
    # given a learner in a location, with a licence a location rule issued, and everyone who
    # can see that learner: admins, a senior assessor, their manager, assessor, coordinator,
    # external assessor, and the learner themself
    org = await world.organisation()
    here = await world.location(org)
    author = await world.staff(org, "SUPER_ADMIN", name="Rule Author")
    course = await world.course()
    pool = await world.pool(org, course, seats=5)
    rule = await world.rule(org, course, RuleScope.LOCATION, location=here)
    async with world.maker() as session, session.begin():
        stored = await session.get(type(rule), rule.id)
        assert stored is not None
        stored.created_by_id = author.id
    sign_in = await world.staff(org, "LEARNER")
    learner = await world.learner(org, location=here, user=sign_in)
    licence = await world.licence(pool, learner, rule=rule)
    record = await world.record(learner)
    assessor = await world.staff(org, "ASSESSOR")
    coordinator = await world.staff(org, "TRAINING_COORDINATOR")
    await world.assign(record, assessor)
    await world.assign(record, coordinator, AssignmentRole.TRAINING_COORDINATOR)
    external = await world.external_assessor()
    await world.allocate(learner, external)
    readers = {
        "SUPER_ADMIN": (author, org),
        "ADMIN": (await world.staff(org, "ADMIN"), org),
        "SENIOR_ASSESSOR": (await world.staff(org, "SENIOR_ASSESSOR"), org),
        "MANAGER": (await world.staff(org, "MANAGER", location=here), org),
        "ASSESSOR": (assessor, org),
        "TRAINING_COORDINATOR": (coordinator, org),
        "EXTERNAL_ASSESSOR": (external, None),
        "LEARNER": (sign_in, org),
    }
    rule_id, licence_id = gid("AutoAllocationRule", rule.id), gid("Licence", licence.id)
    shown = {
        "id": rule_id,
        "scope": "LOCATION",
        "location": {"name": here.name},
        "createdBy": {"name": "Rule Author", "email": author.email},
    }

    for compiled in (False, True):
        api = await api_with(compiled_reads=compiled)
        reads = api.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
        for role, (user, where) in readers.items():
            call = api.as_(user, where)
            before = reads.answered if compiled else 0
            # when they read the learner's licences, and the licence by id and in the list
            nested = (await call(LICENCE_RULES)).ok()["learners"]["edges"]
            if compiled:
                assert reads.answered == before + 1, "the compiled path answered"
            direct = (await call(LICENCE_RULE, id=licence_id)).ok()

            # then every one of them sees the licence, and only admins see its rule
            expected = shown if role in ("SUPER_ADMIN", "ADMIN") else None
            assert nested == [
                {
                    "node": {
                        "id": gid("Learner", learner.id),
                        "licences": [{"id": licence_id, "source": "RULE", "rule": expected}],
                    }
                }
            ], (role, compiled)
            expected_id = None if expected is None else {"id": rule_id}
            by_id = (
                None if expected is None else {"id": rule_id, "createdBy": {"email": author.email}}
            )
            assert direct["node"] == {"id": licence_id, "rule": by_id}, (role, compiled)
            assert direct["licences"]["edges"] == [
                {"node": {"id": licence_id, "rule": expected_id}}
            ], (role, compiled)


KEY_ON_EVENT = """query($id: ID!) {
  node(id: $id) { ... on AuditEvent { id client actor { id } apiKey { id name } } }
}"""
KEY_ON_ACCESS = """query($id: ID!) {
  learner(id: $id) { access { user { name } role reason apiKey { id name } } }
}"""


async def test_an_api_key_is_shown_only_to_super_admins(api: Api, world: World) -> None:
    # given an organisation's API key that can see its learners, and an event it wrote
    org = await world.organisation()
    super_admin = await world.staff(org, "SUPER_ADMIN")
    admin = await world.staff(org, "ADMIN")
    sign_in = await world.staff(org, "LEARNER")
    learner = await world.learner(org, user=sign_in)
    key = await world.api_key(org, "ADMIN", name="Payroll feed")
    event = await world.audit_event(org, AuditAction.LEARNER_CREATED, learner, api_key=key)
    key_id = gid("ApiKey", key.id)

    def key_entries(access: list[dict[str, Any]]) -> list[object]:
        """The entries of the key (its service identity carries the key's name)."""
        return [e["apiKey"] for e in access if e["user"]["name"] == "Payroll feed"]

    # when the super admin reads the event and who can see the learner, then they see the key
    mine = api.as_(super_admin, org)
    seen = (await mine(KEY_ON_EVENT, id=gid("AuditEvent", event.id))).ok()["node"]
    assert seen["apiKey"] == {"id": key_id, "name": "Payroll feed"}
    access = (await mine(KEY_ON_ACCESS, id=gid("Learner", learner.id))).ok()["learner"]["access"]
    assert key_entries(access) == [{"id": key_id, "name": "Payroll feed"}]

    # when an admin and the learner read the same, then the event and the entries are there
    # but the key is not: API keys are super admins' only
    shown = (await api.as_(admin, org)(KEY_ON_EVENT, id=gid("AuditEvent", event.id))).ok()
    assert shown["node"] == {
        "id": gid("AuditEvent", event.id),
        "client": f"api-key:{key.prefix}",
        "actor": None,
        "apiKey": None,
    }
    for caller in (api.as_(admin, org), api.as_(sign_in, org)):
        access = (await caller(KEY_ON_ACCESS, id=gid("Learner", learner.id))).ok()
        assert key_entries(access["learner"]["access"]) == [None]

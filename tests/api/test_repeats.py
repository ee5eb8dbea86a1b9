"""Repeating a completed action: every mutation declares what a repeat answers (`repeat=` on
its declaration), the README's table is printed from those declarations, and every repeat
that is not "another" is performed twice through the API: the second answer is the declared
one and changes nothing, audit trail included."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLNamedType, GraphQLNonNull, GraphQLObjectType, GraphQLUnionType

from db.models import (
    AssignmentRole,
    EvidenceStatus,
    LicenceStatus,
    Organisation,
    RecordStatus,
    RuleScope,
    User,
)
from schema import schema
from schema.results import (
    REPEATS,
    SUCCESS_TYPES,
    TABLE_END,
    TABLE_START,
    USE_CASES,
    outcomes_of,
    repeat_table,
)
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import Api, Caller, database_state, gid

README = Path(__file__).resolve().parents[2] / "README.md"
MUTATIONS = schema._schema.mutation_type.fields


def test_every_mutation_declares_its_repeat_answer() -> None:
    undeclared = [name for name in MUTATIONS if name not in REPEATS]
    assert undeclared == [], "declare repeat= on each mutation(...) in schema/"
    assert set(REPEATS) <= set(MUTATIONS)


def _success(name: str) -> GraphQLObjectType:
    (success,) = (o for o in outcomes_of(_use_case(name)) if o in SUCCESS_TYPES)
    graphql_name = SUCCESS_TYPES[success].__strawberry_definition__.name  # type: ignore[attr-defined]
    found = schema._schema.type_map[graphql_name]
    assert isinstance(found, GraphQLObjectType)
    return found


def _use_case(name: str) -> Any:
    (use_case,) = (u for u in USE_CASES.values() if _camel(u.__name__) == name)
    return use_case


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _members(name: str) -> set[str]:
    union = MUTATIONS[name].type
    assert isinstance(union, GraphQLNonNull) and isinstance(union.of_type, GraphQLUnionType)
    return {t.name for t in union.of_type.types}


def _unchanged_type(name: str) -> str | None:
    """`Boolean` or `Int` for `unchanged: Boolean!` / `Int!` on the success type, else None."""
    field = _success(name).fields.get("unchanged")
    if field is None:
        return None
    assert isinstance(field.type, GraphQLNonNull), name
    named = field.type.of_type
    assert isinstance(named, GraphQLNamedType)
    return named.name


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_declaration_fits_its_mutation(name: str) -> None:
    declared = REPEATS[name]
    if declared.unchanged:
        assert _unchanged_type(name) in ("Boolean", "Int"), f"{name} answers no `unchanged`"
    if declared.error is not None:
        assert declared.error.graphql_name in _members(name)


def test_the_readme_table_is_the_declarations() -> None:
    text = README.read_text()
    assert TABLE_START in text and TABLE_END in text, "the README has lost its repeat table"
    table = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    assert table == repeat_table(list(MUTATIONS)), (
        "README.md's repeat table differs from the declarations: `make schema` rewrites it"
    )


# Performing each repeat ---------------------------------------------------------------------


@dataclass
class Scene:
    """Who repeats what: the same input sent twice."""

    caller: Caller
    input: dict[str, Any]


Build = Callable[[World, Api], Awaitable[Scene]]
SCENES: dict[str, Build] = {}


def scene(name: str) -> Callable[[Build], Build]:
    def register(build: Build) -> Build:
        SCENES[name] = build
        return build

    return register


async def _admin(world: World, api: Api, role: str = "ADMIN") -> tuple[Organisation, User, Caller]:
    org = await world.organisation()
    admin = await world.staff(org, role)
    return org, admin, api.as_(admin, org)


@scene("createOrganisation")
async def _(world: World, api: Api) -> Scene:
    return Scene(api.as_(await world.support()), {"name": "Elm Trust", "slug": "elm-trust"})


@scene("createLocation")
async def _(world: World, api: Api) -> Scene:
    _, _, call = await _admin(world, api)
    return Scene(call, {"name": "Leeds"})


@scene("createDepartment")
async def _(world: World, api: Api) -> Scene:
    _, _, call = await _admin(world, api)
    return Scene(call, {"name": "Care"})


@scene("createStaffMember")
async def _(world: World, api: Api) -> Scene:
    _, _, call = await _admin(world, api)
    return Scene(call, {"name": "Ada Cole", "email": "ada@elm.example", "roles": ["ASSESSOR"]})


@scene("createExternalAssessor")
async def _(world: World, api: Api) -> Scene:
    return Scene(api.as_(await world.support()), {"name": "Ed Ray", "email": "ed@out.example"})


@scene("updateExternalAssessor")
async def _(world: World, api: Api) -> Scene:
    assessor = await world.external_assessor()
    given = {"userId": gid("User", assessor.id), "name": "Ed Ray", "email": "ed.ray@out.example"}
    return Scene(api.as_(await world.support()), {**given, "avatarUrl": "https://p.example/e.jpg"})


@scene("updateStaffMember")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    person = await world.staff(org, "ASSESSOR")
    leeds = await world.location(org)
    given = {"userId": gid("User", person.id), "roles": ["SENIOR_ASSESSOR"]}
    return Scene(call, {**given, "name": "Bea Lowe", "locationId": gid("Location", leeds.id)})


@scene("deactivateStaffMember")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    person = await world.staff(org, "ASSESSOR")
    await world.assign(await world.record(await world.learner(org)), person)
    return Scene(call, {"userId": gid("User", person.id)})


@scene("createLearner")
async def _(world: World, api: Api) -> Scene:
    _, _, call = await _admin(world, api)
    return Scene(call, {"name": "Cy Hart", "email": "cy@elm.example"})


@scene("importLearners")
async def _(world: World, api: Api) -> Scene:
    _, _, call = await _admin(world, api)
    rows = [{"name": "Di Moss", "email": "di@elm.example"}, {"name": "Ed Fry", "email": "e@e.uk"}]
    return Scene(call, {"learners": rows})


@scene("updateLearner")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    learner = await world.learner(org)
    care = await world.department(org)
    given = {"learnerId": gid("Learner", learner.id), "departmentId": gid("Department", care.id)}
    return Scene(call, {**given, "name": "Flo Dunn", "email": "flo@elm.example"})


@scene("archiveApprenticeRecord")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    record = await world.record(await world.learner(org))
    return Scene(call, {"recordId": gid("ApprenticeRecord", record.id)})


@scene("restoreApprenticeRecord")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    record = await world.record(await world.learner(org), status=RecordStatus.ARCHIVED)
    return Scene(call, {"recordId": gid("ApprenticeRecord", record.id)})


@scene("allocateAssessor")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    learner, external = await world.learner(org), await world.external_assessor()
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    given = {"learnerId": gid("Learner", learner.id), "assessorId": gid("User", external.id)}
    return Scene(call, {**given, "expiresAt": expires})


@scene("deallocateAssessor")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    learner, external = await world.learner(org), await world.external_assessor()
    await world.allocate(learner, external)
    return Scene(
        call, {"learnerId": gid("Learner", learner.id), "assessorId": gid("User", external.id)}
    )


@scene("signOffEvidence")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api, "SENIOR_ASSESSOR")
    evidence = await world.evidence(await world.record(await world.learner(org)))
    given = {"evidenceId": gid("Evidence", evidence.id), "decision": "REFER"}
    return Scene(call, {**given, "comment": "Add a witness statement."})


async def _records(world: World, org: Organisation, n: int = 2) -> list[str]:
    return [
        gid("ApprenticeRecord", (await world.record(await world.learner(org))).id) for _ in range(n)
    ]


@scene("assignRecords")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    assessor = await world.staff(org, "ASSESSOR")
    return Scene(
        call, {"assigneeId": gid("User", assessor.id), "recordIds": await _records(world, org)}
    )


@scene("unassignRecords")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    assessor = await world.staff(org, "ASSESSOR")
    learner = await world.learner(org)
    records = [await world.record(learner), await world.record(learner)]
    for record in records:
        await world.assign(record, assessor)
    given = [gid("ApprenticeRecord", r.id) for r in records]
    return Scene(call, {"recordIds": given, "assigneeId": gid("User", assessor.id)})


@scene("assignTrainingCoordinator")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    old = await world.staff(org, "TRAINING_COORDINATOR")
    coordinator = await world.staff(org, "TRAINING_COORDINATOR")
    record = await world.record(await world.learner(org))
    await world.assign(record, old, AssignmentRole.TRAINING_COORDINATOR)
    return Scene(
        call,
        {
            "recordId": gid("ApprenticeRecord", record.id),
            "coordinatorId": gid("User", coordinator.id),
        },
    )


@scene("createCourse")
async def _(world: World, api: Api) -> Scene:
    return Scene(api.as_(await world.support()), {"title": "Safeguarding", "code": "SAFE-1"})


@scene("setLicencePool")
async def _(world: World, api: Api) -> Scene:
    org, course = await world.organisation(), await world.course()
    await world.pool(org, course, 5)
    given = {"organisationId": gid("Organisation", org.id), "courseId": gid("Course", course.id)}
    return Scene(api.as_(await world.support()), {**given, "seatsTotal": 8})


@scene("setOrganisationIdentityProvider")
async def _(world: World, api: Api) -> Scene:
    org = await world.organisation()
    given = {"issuer": "https://login.example.org/tenant", "audience": "caseload"}
    return Scene(
        api.as_(await world.support()), {"organisationId": gid("Organisation", org.id), **given}
    )


@scene("removeOrganisationIdentityProvider")
async def _(world: World, api: Api) -> Scene:
    org = await world.organisation()
    await world.identity_provider(org)
    return Scene(api.as_(await world.support()), {"organisationId": gid("Organisation", org.id)})


@scene("allocateLicences")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    course = await world.course()
    await world.pool(org, course, 5)
    learners = [gid("Learner", (await world.learner(org)).id) for _ in range(2)]
    return Scene(call, {"courseId": gid("Course", course.id), "learnerIds": learners})


@scene("recallLicences")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    pool = await world.pool(org, await world.course(), 5)
    licences = [await world.licence(pool, await world.learner(org)) for _ in range(2)]
    return Scene(call, {"licenceIds": [gid("Licence", x.id) for x in licences]})


@scene("markLicenceLaunched")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    pool = await world.pool(org, await world.course(), 5)
    licence = await world.licence(pool, await world.learner(org))
    return Scene(call, {"licenceId": gid("Licence", licence.id)})


@scene("markLicenceCompleted")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    pool = await world.pool(org, await world.course(), 5)
    licence = await world.licence(pool, await world.learner(org))
    return Scene(call, {"licenceId": gid("Licence", licence.id)})


@scene("createAutoAllocationRule")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    course, leeds = await world.course(), await world.location(org)
    await world.pool(org, course, 5)
    given = {"courseId": gid("Course", course.id), "locationId": gid("Location", leeds.id)}
    return Scene(call, {**given, "scope": "LOCATION"})


@scene("deleteAutoAllocationRule")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api)
    rule = await world.rule(org, await world.course(), RuleScope.ENTIRE_COMPANY)
    return Scene(call, {"ruleId": gid("AutoAllocationRule", rule.id)})


@scene("revokeApiKey")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api, "SUPER_ADMIN")
    key = await world.api_key(org, "ADMIN")
    return Scene(call, {"apiKeyId": gid("ApiKey", key.id)})


@scene("updateWebhookEndpoint")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api, "SUPER_ADMIN")
    endpoint, _ = await world.webhook(org)
    return Scene(
        call, {"webhookEndpointId": gid("WebhookEndpoint", endpoint.id), "description": "MIS"}
    )


@scene("deleteWebhookEndpoint")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api, "SUPER_ADMIN")
    endpoint, _ = await world.webhook(org)
    return Scene(call, {"webhookEndpointId": gid("WebhookEndpoint", endpoint.id)})


@scene("redeliverWebhook")
async def _(world: World, api: Api) -> Scene:
    org, _, call = await _admin(world, api, "SUPER_ADMIN")
    _, delivery = await world.webhook(org)
    return Scene(call, {"deliveryId": gid("WebhookDelivery", delivery.id)})


def _document(name: str) -> str:
    input_type = MUTATIONS[name].args["input"].type
    selection = "__typename ... on Error { code message }"
    if _unchanged_type(name) is not None:
        selection += f" ... on {_success(name).name} {{ unchanged }}"
    return f"mutation($input: {input_type}) {{ {name}(input: $input) {{ {selection} }} }}"


def test_every_repeat_but_another_has_a_scene() -> None:
    """ "Another" (a new row each time) and reads are not repeats of a completed action."""
    wanted = {n for n, r in REPEATS.items() if r.unchanged or r.error is not None}
    assert wanted == set(SCENES)


@pytest.mark.parametrize("name", sorted(SCENES))
async def test_a_repeat_answers_as_declared_and_changes_nothing(
    name: str, api: Api, world: World, backend: Backend
) -> None:
    # given a mutation that succeeded
    given = await SCENES[name](world, api)
    document = _document(name)
    first = (await given.caller(document, input=given.input)).ok()[name]
    success = _success(name).name
    assert first["__typename"] == success, first
    declared = REPEATS[name]
    if declared.unchanged:
        assert first["unchanged"] in (False, 0), first  # `0 == False`: both mean "changed"
    before = await database_state(backend.engine)
    # when it is sent again with the same input
    second = (await given.caller(document, input=given.input)).ok()[name]
    # then it answers what its declaration says
    if declared.unchanged:
        assert second["__typename"] == success, second
        if _unchanged_type(name) == "Boolean":
            assert second["unchanged"] is True, second
        else:
            (items,) = (v for v in given.input.values() if isinstance(v, list))
            assert second["unchanged"] == len(items), second
    else:
        assert declared.error is not None
        assert second["__typename"] == declared.error.graphql_name, second
    # and changes nothing: no audit event, no row
    after = await database_state(backend.engine)
    assert after["audit_events"] == before["audit_events"], "a repeat wrote an audit event"
    assert after == before


async def test_an_identical_rule_is_refused_but_one_like_a_deleted_rule_is_made(
    api: Api, world: World
) -> None:
    org, _, call = await _admin(world, api)
    course = await world.course()
    await world.pool(org, course, 5)
    await world.rule(org, course, RuleScope.ENTIRE_COMPANY, deleted=True)
    document = _document("createAutoAllocationRule")
    given = {"courseId": gid("Course", course.id), "scope": "ENTIRE_COMPANY"}
    made = (await call(document, input=given)).ok()["createAutoAllocationRule"]
    assert made["__typename"] == "AutoAllocationRuleCreated", made
    again = (await call(document, input={**given, "applyToExisting": True})).ok()
    assert again["createAutoAllocationRule"]["__typename"] == "AlreadyExistsError"
    # another scope for the same course is another rule
    leeds = await world.location(org)
    other = {**given, "scope": "LOCATION", "locationId": gid("Location", leeds.id)}
    made = (await call(document, input=other)).ok()["createAutoAllocationRule"]
    assert made["__typename"] == "AutoAllocationRuleCreated", made


async def test_a_repeat_is_told_apart_from_an_id_never_issued_or_not_visible(
    api: Api, world: World, backend: Backend
) -> None:
    """A deleted rule or an ended allocation exists as history: deleting or deallocating
    again is unchanged. An id never issued, or one the caller cannot see, is NotFound, alike."""
    org, _, call = await _admin(world, api)
    other = await world.organisation()
    hidden = await world.rule(other, await world.course(), deleted=True)
    gone = await world.rule(org, await world.course(), deleted=True)
    delete = _document("deleteAutoAllocationRule")
    answers = {}
    for label, pk in (("gone", gone.id), ("hidden", hidden.id), ("never", 10**9)):
        target = gid("AutoAllocationRule", pk)
        answer = (await call(delete, input={"ruleId": target})).ok()["deleteAutoAllocationRule"]
        answers[label] = {**answer, "message": answer.get("message")}
        if label != "gone":
            assert answer == {
                "__typename": "NotFoundError",
                "code": "NOT_FOUND",
                "message": "Not found.",
            }
    assert answers["gone"]["unchanged"] is True
    # and an assessor never allocated to a learner answers like one that does not exist
    learner, ended, never = (
        await world.learner(org),
        *[await world.external_assessor() for _ in range(2)],
    )
    await world.allocate(learner, ended, ended=True)
    deallocate = _document("deallocateAssessor")
    before = await database_state(backend.engine)

    async def deallocating(assessor: str) -> dict[str, Any]:
        given = {"learnerId": gid("Learner", learner.id), "assessorId": assessor}
        return (await call(deallocate, input=given)).ok()["deallocateAssessor"]  # type: ignore[no-any-return]

    assert (await deallocating(gid("User", ended.id)))["unchanged"] is True
    unallocated = await deallocating(gid("User", never.id))
    missing = await deallocating(gid("User", 10**9))
    assert unallocated["__typename"] == missing["__typename"] == "NotFoundError"
    assert unallocated["message"] == missing["message"]
    assert await database_state(backend.engine) == before


async def test_another_expiry_or_another_decision_is_not_a_repeat(
    api: Api, world: World, backend: Backend
) -> None:
    org, _, call = await _admin(world, api)
    learner, external = await world.learner(org), await world.external_assessor()
    await world.allocate(learner, external)
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    allocate = _document("allocateAssessor")
    ids = {"learnerId": gid("Learner", learner.id), "assessorId": gid("User", external.id)}
    before = await database_state(backend.engine)
    same = (await call(allocate, input=ids)).ok()["allocateAssessor"]
    assert same == {"__typename": "AssessorAllocated", "unchanged": True}
    refused = (await call(allocate, input={**ids, "expiresAt": later})).ok()["allocateAssessor"]
    assert refused["__typename"] == "AlreadyExistsError"
    # evidence decided by someone else, or otherwise, stays locked
    evidence = await world.evidence(await world.record(learner))
    await world.decide(evidence, EvidenceStatus.SIGNED_OFF, await world.staff(org, "ASSESSOR"))
    before = await database_state(backend.engine)
    decide = _document("signOffEvidence")
    for decision in ("SIGN_OFF", "REFER"):
        given = {"evidenceId": gid("Evidence", evidence.id), "decision": decision, "comment": "x"}
        answer = (await call(decide, input=given)).ok()["signOffEvidence"]
        assert answer["__typename"] == "EvidenceLockedError", answer
    assert await database_state(backend.engine) == before


async def test_a_licence_held_already_uses_no_seat_and_a_recall_counts_only_what_it_did(
    api: Api, world: World, backend: Backend
) -> None:
    org, _, call = await _admin(world, api)
    pool = await world.pool(org, await world.course(), 2)
    holder, newcomer = await world.learner(org), await world.learner(org)
    held = await world.licence(pool, holder)
    recalled = await world.licence(pool, await world.learner(org), status=LicenceStatus.RECALLED)
    allocate = _document("allocateLicences").replace(
        "{ unchanged }", "{ unchanged licences { id } pool { seatsUsed } }"
    )
    given = {
        "courseId": gid("Course", pool.course_id),
        "learnerIds": [gid("Learner", holder.id), gid("Learner", newcomer.id)],
    }
    answer = (await call(allocate, input=given)).ok()["allocateLicences"]
    assert answer["unchanged"] == 1 and len(answer["licences"]) == 1, answer
    assert answer["pool"] == {"seatsUsed": 2}  # one seat for the newcomer, none for the holder
    recall = _document("recallLicences")
    both = {"licenceIds": [gid("Licence", held.id), gid("Licence", recalled.id)]}
    answer = (await call(recall, input=both)).ok()["recallLicences"]
    assert answer == {"__typename": "LicencesRecalled", "unchanged": 1}

"""Support changes an external assessor's profile (`updateExternalAssessor`): name, email,
picture. Nobody else may; a staff member's or learner's id is not an external assessor; bad
values change nothing."""

from __future__ import annotations

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

UPDATE = """mutation($input: UpdateExternalAssessorInput!) {
  updateExternalAssessor(input: $input) {
    __typename
    ... on ExternalAssessorUpdated { assessor { id name email avatarUrl } unchanged }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""
PICTURE = "https://pictures.example.org/people/jo.jpg"


async def test_support_changes_the_profile_and_a_repeat_changes_nothing(
    api: Api, world: World, backend: Backend
) -> None:
    assessor = await world.external_assessor("Jo Marsh")
    support = api.as_(await world.support())
    given = {"userId": gid("User", assessor.id), "name": " Jo  Marsh-Reid ", "avatarUrl": PICTURE}
    done = assert_granted(await support(UPDATE, input=given), "ExternalAssessorUpdated")
    assert done["assessor"]["name"] == "Jo Marsh-Reid"
    assert done["assessor"]["avatarUrl"] == PICTURE and done["unchanged"] is False
    events = await audit_actions(backend.engine)
    assert events[-1][0] == "EXTERNAL_ASSESSOR_UPDATED"
    again = assert_granted(await support(UPDATE, input=given), "ExternalAssessorUpdated")
    assert again["unchanged"] is True
    assert await audit_actions(backend.engine) == events
    cleared = assert_granted(
        await support(UPDATE, input={"userId": gid("User", assessor.id), "avatarUrl": None}),
        "ExternalAssessorUpdated",
    )
    assert cleared["assessor"]["avatarUrl"] is None


async def test_nobody_but_support_and_only_external_assessors(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    assessor = await world.external_assessor()
    target = {"userId": gid("User", assessor.id), "name": "Renamed"}
    staff = {role: await world.staff(org, role) for role in ("SUPER_ADMIN", "ADMIN", "MANAGER")}
    colleague = await world.staff(org, "ASSESSOR")
    support = api.as_(await world.support())
    before = await database_state(backend.engine)
    for person in staff.values():
        assert_denied(await api.as_(person, org)(UPDATE, input=target))
    assert_denied(await api.as_(assessor)(UPDATE, input=target))
    # a staff member's id is not an external assessor's: answered like a made-up id
    answers = []
    for other in (gid("User", colleague.id), gid("User", 999_999)):
        missing = assert_error(
            await support(UPDATE, input={"userId": other, "name": "X"}),
            "NotFoundError",
            "NOT_FOUND",
        )
        answers.append(missing["message"])
    assert answers[0] == answers[1]
    assert await database_state(backend.engine) == before


async def test_bad_values_change_nothing(api: Api, world: World, backend: Backend) -> None:
    assessor = await world.external_assessor()
    taken = await world.external_assessor()
    support = api.as_(await world.support())
    user = gid("User", assessor.id)
    before = await database_state(backend.engine)
    for given, field in (
        ({"name": "   "}, "name"),
        ({"email": "not-an-email"}, "email"),
        ({"avatarUrl": "http://pictures.example.org/jo.jpg"}, "avatarUrl"),
    ):
        refused = assert_error(
            await support(UPDATE, input={"userId": user, **given}), "ValidationError", "INVALID"
        )
        assert refused["field"] == field
    clash = assert_error(
        await support(UPDATE, input={"userId": user, "email": taken.email}),
        "AlreadyExistsError",
        "ALREADY_EXISTS",
    )
    assert clash["code"] == "ALREADY_EXISTS"
    assert_error(await support(UPDATE, input={"userId": user}), "ValidationError", "INVALID")
    assert await database_state(backend.engine) == before

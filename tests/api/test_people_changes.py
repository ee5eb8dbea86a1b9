"""Changing people: updateLearner and updateStaffMember, granted, refused, and what follows."""

from __future__ import annotations

import pytest

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

UPDATE_LEARNER = """mutation($input: UpdateLearnerInput!) {
  updateLearner(input: $input) {
    __typename
    ... on LearnerUpdated {
      learner { id name email location { id } department { id } organisation { id } }
    }
    ... on Error { code message }
    ... on ValidationError { field }
    ... on AlreadyExistsError { field }
  }
}"""

UPDATE_STAFF = """mutation($input: UpdateStaffMemberInput!) {
  updateStaffMember(input: $input) {
    __typename
    ... on StaffMemberUpdated { user { id name roles } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""

LEARNER_IDS = "{ learners(first: 100) { totalCount edges { node { id } } } }"
VIEWER = "{ viewer { user { name email } roles } }"


def lid(learner_id: int) -> str:
    return gid("Learner", learner_id)


# updateLearner ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ADMINS)
async def test_admins_change_a_learner(api: Api, world: World, backend: Backend, role: str) -> None:
    # given a learner who signs in and belongs to this organisation only
    c = await cast(world)
    care = await world.department(c.org)
    call = c.as_(api, role)

    # when an admin changes their name, email and units
    payload = assert_granted(
        await call(
            UPDATE_LEARNER,
            input={
                "learnerId": lid(c.learner.id),
                "name": "  Lee   Marsh ",
                "email": "Lee.Marsh@Example.org",
                "locationId": gid("Location", c.there.id),
                "departmentId": gid("Department", care.id),
            },
        ),
        "LearnerUpdated",
    )

    # then the learner and their sign-in changed together
    assert payload["learner"] == {
        "id": lid(c.learner.id),
        "name": "Lee Marsh",
        "email": "lee.marsh@example.org",
        "location": {"id": gid("Location", c.there.id)},
        "department": {"id": gid("Department", care.id)},
        "organisation": {"id": gid("Organisation", c.org.id)},
    }
    signed_in = api.with_headers(
        {"Authorization": f"Bearer {api.token_for_email('lee.marsh@example.org', c.org.slug)}"}
    )
    assert (await signed_in(VIEWER)).ok()["viewer"]["user"] == {
        "name": "Lee Marsh",
        "email": "lee.marsh@example.org",
    }
    # and a token for the old address no longer signs in
    assert_denied(await c.as_(api, "LEARNER")(VIEWER), "UNAUTHENTICATED")
    # and a field left out stays, an explicit null unit clears
    cleared = assert_granted(
        await call(UPDATE_LEARNER, input={"learnerId": lid(c.learner.id), "locationId": None}),
        "LearnerUpdated",
    )
    assert cleared["learner"]["location"] is None
    assert cleared["learner"]["department"] == {"id": gid("Department", care.id)}
    assert cleared["learner"]["name"] == "Lee Marsh"
    actor = c.people[role].id
    assert (await audit_actions(backend.engine))[-2:] == [
        ("LEARNER_UPDATED", "Learner", actor),
        ("LEARNER_UPDATED", "Learner", actor),
    ]


@pytest.mark.parametrize("who", OTHERS)
async def test_nobody_else_changes_a_learner(
    api: Api, world: World, backend: Backend, who: str
) -> None:
    c = await cast(world)
    before = await database_state(backend.engine)
    result = await c.as_(api, who)(
        UPDATE_LEARNER,
        input={
            "learnerId": lid(c.learner.id),
            "name": "Changed",
            "locationId": gid("Location", c.there.id),
        },
    )
    if who == "OTHER_ADMIN":  # another organisation's learner does not exist for them
        assert_error(result, "NotFoundError", "NOT_FOUND")
    else:
        assert_denied(result)
        assert result.errors[0]["message"] == "Your roles do not allow changing learners."
    assert await database_state(backend.engine) == before


async def test_a_learners_units_move_them_between_teams_at_once(api: Api, world: World) -> None:
    # given a learner in one manager's team
    c = await cast(world)
    inside, outside = c.as_(api, "MANAGER_IN_TEAM"), c.as_(api, "MANAGER_OUTSIDE_TEAM")
    assert (await inside(LEARNER_IDS)).ok()["learners"]["totalCount"] == 1
    assert (await outside(LEARNER_IDS)).ok()["learners"]["totalCount"] == 0

    # when an admin moves the learner to the other location
    assert_granted(
        await c.as_(api, "ADMIN")(
            UPDATE_LEARNER,
            input={"learnerId": lid(c.learner.id), "locationId": gid("Location", c.there.id)},
        ),
        "LearnerUpdated",
    )

    # then the next requests of both managers see the move
    assert (await inside(LEARNER_IDS)).ok()["learners"]["totalCount"] == 0
    assert (await outside(LEARNER_IDS)).ok()["learners"]["totalCount"] == 1


async def test_the_name_and_email_of_someone_who_belongs_elsewhere_are_supports(
    api: Api, world: World, backend: Backend
) -> None:
    # given a learner whose sign-in is also staff of another organisation
    c = await cast(world)
    await world.staff(c.other, "ASSESSOR", user=c.people["LEARNER"])
    admin = c.as_(api, "ADMIN")
    before = await database_state(backend.engine)

    # when an admin changes their name or email, then that is refused and nothing changes
    for given in ({"name": "Someone Else"}, {"email": "else@example.org"}):
        result = await admin(UPDATE_LEARNER, input={"learnerId": lid(c.learner.id), **given})
        assert_denied(result)
        assert result.errors[0]["message"] == (
            "This person also belongs elsewhere: only support can change their name or email."
        )
    assert await database_state(backend.engine) == before
    # but units, and the same name again, are the organisation's to change
    payload = assert_granted(
        await admin(
            UPDATE_LEARNER,
            input={
                "learnerId": lid(c.learner.id),
                "name": "Lee Learner",
                "locationId": gid("Location", c.there.id),
            },
        ),
        "LearnerUpdated",
    )
    assert payload["learner"]["location"] == {"id": gid("Location", c.there.id)}


async def test_an_email_gives_a_learner_without_a_sign_in_one(
    api: Api, world: World, backend: Backend
) -> None:
    c = await cast(world)
    plain = await world.learner(c.org, name="Pat Plain")
    elsewhere = await world.staff(c.other, "ASSESSOR")
    admin = c.as_(api, "ADMIN")
    before = await database_state(backend.engine)
    # an email held by someone of another organisation: the same answer as at creation
    taken = assert_error(
        await admin(UPDATE_LEARNER, input={"learnerId": lid(plain.id), "email": elsewhere.email}),
        "AlreadyExistsError",
        "ALREADY_EXISTS",
    )
    assert taken["field"] == "email"
    assert await database_state(backend.engine) == before

    assert_granted(
        await admin(UPDATE_LEARNER, input={"learnerId": lid(plain.id), "email": "pat@example.org"}),
        "LearnerUpdated",
    )
    signed_in = api.with_headers(
        {"Authorization": f"Bearer {api.token_for_email('pat@example.org', c.org.slug)}"}
    )
    assert (await signed_in(VIEWER)).ok()["viewer"]["roles"] == ["LEARNER"]
    mine = (await signed_in(LEARNER_IDS)).ok()["learners"]["edges"]
    assert mine == [{"node": {"id": lid(plain.id)}}]


async def test_a_sign_in_email_in_use_answers_already_exists(
    api: Api, world: World, backend: Backend
) -> None:
    c = await cast(world)
    before = await database_state(backend.engine)
    for email in (c.people["ADMIN"].email, c.people["SUPPORT"].email.upper()):
        error = assert_error(
            await c.as_(api, "ADMIN")(
                UPDATE_LEARNER, input={"learnerId": lid(c.learner.id), "email": email}
            ),
            "AlreadyExistsError",
            "ALREADY_EXISTS",
        )
        assert error == {
            "__typename": "AlreadyExistsError",
            "code": "ALREADY_EXISTS",
            "message": "This email is already in use.",
            "field": "email",
        }
    assert await database_state(backend.engine) == before


@pytest.mark.parametrize(
    ("given", "typename", "field"),
    [
        ({}, "ValidationError", None),
        ({"name": "   "}, "ValidationError", "name"),
        ({"email": "not-an-email"}, "ValidationError", "email"),
        ({"locationId": "%%"}, "ValidationError", "locationId"),
        ({"departmentId": "other-org"}, "NotFoundError", None),
    ],
)
async def test_bad_learner_changes_change_nothing(
    api: Api, world: World, backend: Backend, given: dict[str, str], typename: str, field: str
) -> None:
    c = await cast(world)
    if given.get("departmentId") == "other-org":
        given = {"departmentId": gid("Department", (await world.department(c.other)).id)}
    before = await database_state(backend.engine)
    result = await c.as_(api, "ADMIN")(
        UPDATE_LEARNER, input={"learnerId": lid(c.learner.id), **given}
    )
    payload = result.ok()["updateLearner"]
    assert payload["__typename"] == typename, payload
    if field is not None:
        assert payload["field"] == field
    assert await database_state(backend.engine) == before


# updateStaffMember -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ADMINS)
async def test_admins_change_a_staff_member_and_a_managers_team_follows(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    # given a manager whose team is the learner's location
    c = await cast(world)
    manager = c.people["MANAGER_IN_TEAM"]
    as_manager = c.as_(api, "MANAGER_IN_TEAM")
    assert (await as_manager(LEARNER_IDS)).ok()["learners"]["totalCount"] == 1

    # when an admin renames them, makes them an assessor too and moves them elsewhere
    payload = assert_granted(
        await c.as_(api, role)(
            UPDATE_STAFF,
            input={
                "userId": gid("User", manager.id),
                "name": "Morgan Hale",
                "roles": ["ASSESSOR", "MANAGER"],
                "locationId": gid("Location", c.there.id),
            },
        ),
        "StaffMemberUpdated",
    )

    # then the answer and their next request show it
    assert payload["user"] == {
        "id": gid("User", manager.id),
        "name": "Morgan Hale",
        "roles": ["MANAGER", "ASSESSOR"],
    }
    assert (await as_manager(VIEWER)).ok()["viewer"]["roles"] == ["MANAGER", "ASSESSOR"]
    assert (await as_manager(LEARNER_IDS)).ok()["learners"]["totalCount"] == 0
    assert (await audit_actions(backend.engine))[-1] == (
        "STAFF_MEMBER_UPDATED",
        "User",
        c.people[role].id,
    )


@pytest.mark.parametrize("who", [w for w in OTHERS if w != "SUPPORT"])
async def test_nobody_else_changes_a_staff_member(
    api: Api, world: World, backend: Backend, who: str
) -> None:
    c = await cast(world)
    target = c.people["ASSESSOR"]
    before = await database_state(backend.engine)
    caller = c.as_(api, who)
    given = {"userId": gid("User", target.id), "name": "Changed", "roles": ["ADMIN"]}
    result = await caller(UPDATE_STAFF, input=given)
    if who == "OTHER_ADMIN":
        assert_error(result, "NotFoundError", "NOT_FOUND")
    else:
        assert_denied(result)
        assert result.errors[0]["message"] == "Your roles do not allow changing staff members."
    if who == "ASSESSOR":  # not even themselves
        assert_denied(await caller(UPDATE_STAFF, input={**given, "roles": ["ASSESSOR"]}))
    assert await database_state(backend.engine) == before


async def test_support_changes_names_only(api: Api, world: World, backend: Backend) -> None:
    # given a person who is staff of two organisations
    c = await cast(world)
    person = c.people["ASSESSOR"]
    await world.staff(c.other, "MANAGER", user=person)
    support, admin = c.as_(api, "SUPPORT"), c.as_(api, "ADMIN")
    before = await database_state(backend.engine)

    # when their admin renames them, then only support may
    refused = await admin(UPDATE_STAFF, input={"userId": gid("User", person.id), "name": "X"})
    assert_denied(refused)
    assert refused.errors[0]["message"] == (
        "This person also belongs elsewhere: only support can change their name."
    )
    # and support may not change their roles or units in an organisation
    for given in ({"roles": ["ADMIN"]}, {"locationId": gid("Location", c.here.id)}):
        assert_denied(
            await support(UPDATE_STAFF, input={"userId": gid("User", person.id), **given})
        )
    assert await database_state(backend.engine) == before

    renamed = assert_granted(
        await support(UPDATE_STAFF, input={"userId": gid("User", person.id), "name": "Ren Amed"}),
        "StaffMemberUpdated",
    )
    assert renamed["user"]["name"] == "Ren Amed"
    assert (await audit_actions(backend.engine))[-1] == (
        "STAFF_MEMBER_UPDATED",
        "User",
        c.people["SUPPORT"].id,
    )
    # and support still cannot reach learners, or people who are not staff
    assert_denied(
        await support(UPDATE_LEARNER, input={"learnerId": lid(c.learner.id), "name": "Y"})
    )
    external = c.people["EXTERNAL_ASSESSOR"]
    assert_error(
        await support(UPDATE_STAFF, input={"userId": gid("User", external.id), "name": "Z"}),
        "NotFoundError",
        "NOT_FOUND",
    )


async def test_super_admin_rules(api: Api, world: World, backend: Backend) -> None:
    c = await cast(world)
    super_admin, admin = c.people["SUPER_ADMIN"], c.people["ADMIN"]
    as_super, as_admin = c.as_(api, "SUPER_ADMIN"), c.as_(api, "ADMIN")
    before = await database_state(backend.engine)

    # an admin neither gives nor takes away SUPER_ADMIN
    for user, roles in ((admin, ["SUPER_ADMIN"]), (super_admin, ["ADMIN"])):
        result = await as_admin(
            UPDATE_STAFF, input={"userId": gid("User", user.id), "roles": roles}
        )
        assert_denied(result)
        assert result.errors[0]["message"] == (
            "Only a super admin can give or take away the super admin role."
        )
    # the last active super admin keeps the role
    last = assert_error(
        await as_super(
            UPDATE_STAFF, input={"userId": gid("User", super_admin.id), "roles": ["ADMIN"]}
        ),
        "ValidationError",
        "INVALID",
    )
    assert last["field"] == "roles"
    assert await database_state(backend.engine) == before

    # a super admin makes another, who may then step down
    assert_granted(
        await as_super(
            UPDATE_STAFF, input={"userId": gid("User", admin.id), "roles": ["SUPER_ADMIN"]}
        ),
        "StaffMemberUpdated",
    )
    stepped_down = assert_granted(
        await as_super(
            UPDATE_STAFF, input={"userId": gid("User", super_admin.id), "roles": ["ADMIN"]}
        ),
        "StaffMemberUpdated",
    )
    assert stepped_down["user"]["roles"] == ["ADMIN"]


@pytest.mark.parametrize(
    ("roles", "field"),
    [
        ([], "roles"),
        (["LEARNER"], "roles"),
        (["SUPPORT"], "roles"),
        (["EXTERNAL_ASSESSOR"], "roles"),
    ],
)
async def test_roles_must_be_staff_roles(
    api: Api, world: World, backend: Backend, roles: list[str], field: str
) -> None:
    c = await cast(world)
    before = await database_state(backend.engine)
    error = assert_error(
        await c.as_(api, "ADMIN")(
            UPDATE_STAFF, input={"userId": gid("User", c.people["ASSESSOR"].id), "roles": roles}
        ),
        "ValidationError",
        "INVALID",
    )
    assert error["field"] == field
    assert await database_state(backend.engine) == before


async def test_a_learner_role_stays_with_the_learner_record(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    person = await world.staff(org, "ASSESSOR", "LEARNER")
    await world.learner(org, user=person)
    payload = assert_granted(
        await api.as_(admin, org)(
            UPDATE_STAFF,
            input={"userId": gid("User", person.id), "roles": ["TRAINING_COORDINATOR"]},
        ),
        "StaffMemberUpdated",
    )
    assert payload["user"]["roles"] == ["TRAINING_COORDINATOR", "LEARNER"]


ROLES_IN = """query($id: ID!, $org: ID) {
  node(id: $id) { ... on User { roles(organisationId: $org) } }
}"""
CREATE_STAFF = """mutation($input: CreateStaffMemberInput!) {
  createStaffMember(input: $input) {
    __typename
    ... on StaffMemberCreated { user { id roles mine: roles(organisationId: $org) } }
  }
}"""


async def test_roles_in_a_named_organisation(api: Api, world: World) -> None:
    # given support creating an organisation's first super admin
    c = await cast(world)
    support = c.as_(api, "SUPPORT")
    org_id = gid("Organisation", c.other.id)
    created = await support(
        CREATE_STAFF.replace("mutation($input", "mutation($org: ID, $input"),
        org=org_id,
        input={
            "organisationId": org_id,
            "name": "Sam Super",
            "email": "sam@example.org",
            "roles": ["SUPER_ADMIN"],
        },
    )
    user = created.ok()["createStaffMember"]["user"]
    # then support sees the roles in the organisation it names, and none without one
    assert user["mine"] == ["SUPER_ADMIN"] and user["roles"] == []
    # and staff see roles only in their own organisation
    person = c.people["ASSESSOR"]
    await world.staff(c.other, "MANAGER", user=person)
    as_admin = c.as_(api, "ADMIN")
    here, there = gid("Organisation", c.org.id), gid("Organisation", c.other.id)
    shown = await as_admin(ROLES_IN, id=gid("User", person.id), org=there)
    assert shown.ok() == {"node": {"roles": []}}
    assert (await as_admin(ROLES_IN, id=gid("User", person.id), org=here)).ok() == {
        "node": {"roles": ["ASSESSOR"]}
    }
    assert (await support(ROLES_IN, id=gid("User", person.id), org=there)).ok() == {
        "node": {"roles": ["MANAGER"]}
    }
    bad = await as_admin(ROLES_IN, id=gid("User", person.id), org="%%")
    assert bad.errors[0]["extensions"] == {"code": "INVALID", "field": "organisationId"}

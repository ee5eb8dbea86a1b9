"""Pictures: `avatarUrl` on users and learners. An https URL with a host, at most 1,000
characters, or ValidationError INVALID (field avatarUrl) with nothing changed; null or empty
clears it; left out keeps it. Both read paths show it."""

from __future__ import annotations

from typing import Any

import pytest

from db.models import Learner, User
from db.seed import seed_demo
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import (
    Api,
    assert_denied,
    assert_error,
    assert_granted,
    database_state,
    gid,
)

PICTURE = "https://pictures.example.org/people/ann.jpg"
REFUSED = [
    "http://pictures.example.org/ann.jpg",  # not https
    "https:///ann.jpg",  # no host
    "https://",
    "javascript:alert(1)",
    "//pictures.example.org/ann.jpg",
    "pictures.example.org/ann.jpg",
    "https://pictures example.org/ann.jpg",
    "https://user:secret@pictures.example.org/ann.jpg",
    "https://pictures.example.org:port/ann.jpg",
    "https://pictures_example.org/ann.jpg",
    "https://pictures.example.org/" + "a" * 972,  # 1,001 characters
]
LONGEST = "https://pictures.example.org/" + "a" * 971  # 1,000 characters

UPDATE_LEARNER = """mutation($input: UpdateLearnerInput!) {
  updateLearner(input: $input) {
    __typename
    ... on LearnerUpdated { learner { id avatarUrl } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""
CREATE_LEARNER = """mutation($input: CreateLearnerInput!) {
  createLearner(input: $input) {
    __typename
    ... on LearnerCreated { learner { id avatarUrl } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""
IMPORT_LEARNERS = """mutation($input: ImportLearnersInput!) {
  importLearners(input: $input) {
    __typename
    ... on LearnersImported { learners { name avatarUrl } }
    ... on BulkRejectedError { items { id code } }
    ... on Error { code message }
  }
}"""
UPDATE_STAFF = """mutation($input: UpdateStaffMemberInput!) {
  updateStaffMember(input: $input) {
    __typename
    ... on StaffMemberUpdated { user { id avatarUrl } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""
CREATE_EXTERNAL = """mutation($input: CreateExternalAssessorInput!) {
  createExternalAssessor(input: $input) {
    __typename
    ... on ExternalAssessorCreated { assessor { id name avatarUrl } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""
LEARNER_PICTURES = "{ learners(first: 50) { edges { node { id name avatarUrl } } } }"
ONE_LEARNER = "query($id: ID!) { learner(id: $id) { avatarUrl } }"


async def test_an_admin_sets_and_clears_a_learners_picture(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    ann = await world.learner(org, name="Ann Lee")
    call = api.as_(admin, org)
    a = gid("Learner", ann.id)

    async def shown() -> Any:
        listed = (await call(LEARNER_PICTURES)).ok()["learners"]["edges"]
        (on_list,) = [e["node"]["avatarUrl"] for e in listed if e["node"]["id"] == a]
        assert (await call(ONE_LEARNER, id=a)).ok()["learner"]["avatarUrl"] == on_list
        return on_list

    assert await shown() is None
    for value, kept in ((PICTURE, PICTURE), (f"  {LONGEST} ", LONGEST)):
        payload = assert_granted(
            await call(UPDATE_LEARNER, input={"learnerId": a, "avatarUrl": value}),
            "LearnerUpdated",
        )
        assert payload["learner"]["avatarUrl"] == kept
        assert await shown() == kept
    before = await database_state(backend.engine)
    for value in REFUSED:
        result = await call(UPDATE_LEARNER, input={"learnerId": a, "avatarUrl": value})
        payload = assert_error(result, "ValidationError", "INVALID")
        assert payload["field"] == "avatarUrl", (value, payload)
        # and a valid change given with it is not made either
        result = await call(
            UPDATE_LEARNER, input={"learnerId": a, "name": "Ann Other", "avatarUrl": value}
        )
        assert_error(result, "ValidationError", "INVALID")
    assert await database_state(backend.engine) == before
    # left out: kept; null and empty: cleared
    assert_granted(
        await call(UPDATE_LEARNER, input={"learnerId": a, "name": "Ann Lee"}), "LearnerUpdated"
    )
    assert await shown() == LONGEST
    assert_granted(
        await call(UPDATE_LEARNER, input={"learnerId": a, "avatarUrl": None}), "LearnerUpdated"
    )
    assert await shown() is None
    assert_granted(
        await call(UPDATE_LEARNER, input={"learnerId": a, "avatarUrl": PICTURE}), "LearnerUpdated"
    )
    assert_granted(
        await call(UPDATE_LEARNER, input={"learnerId": a, "avatarUrl": " "}), "LearnerUpdated"
    )
    assert await shown() is None


async def test_learners_are_created_with_a_picture(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    made = assert_granted(
        await call(CREATE_LEARNER, input={"name": "Bo Ray", "avatarUrl": PICTURE}),
        "LearnerCreated",
    )
    assert made["learner"]["avatarUrl"] == PICTURE
    before = await database_state(backend.engine)
    refused = await call(CREATE_LEARNER, input={"name": "Cy Ng", "avatarUrl": REFUSED[0]})
    assert assert_error(refused, "ValidationError", "INVALID")["field"] == "avatarUrl"
    rows: list[dict[str, str | None]] = [
        {"name": "Di Fox", "avatarUrl": PICTURE},
        {"name": "Ed Kay", "avatarUrl": REFUSED[1]},
    ]
    rejected = (await call(IMPORT_LEARNERS, input={"learners": rows})).ok()["importLearners"]
    assert rejected["items"] == [{"id": "1", "code": "INVALID"}]
    assert await database_state(backend.engine) == before
    rows[1]["avatarUrl"] = None
    imported = (await call(IMPORT_LEARNERS, input={"learners": rows})).ok()["importLearners"]
    assert imported["learners"] == [
        {"name": "Di Fox", "avatarUrl": PICTURE},
        {"name": "Ed Kay", "avatarUrl": None},
    ]


async def test_staff_pictures_are_set_by_admins_and_support(
    api: Api, world: World, backend: Backend
) -> None:
    org, elsewhere = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    shared = await world.staff(org, "ASSESSOR")
    await world.staff(elsewhere, "ASSESSOR", user=shared)  # belongs to two organisations
    support = await world.support()
    as_admin = api.as_(admin, org)

    payload = assert_granted(
        await as_admin(
            UPDATE_STAFF, input={"userId": gid("User", assessor.id), "avatarUrl": PICTURE}
        ),
        "StaffMemberUpdated",
    )
    assert payload["user"]["avatarUrl"] == PICTURE
    staff = "{ staff(first: 50) { edges { node { id avatarUrl } } } }"
    shown = {
        e["node"]["id"]: e["node"]["avatarUrl"]
        for e in (await as_admin(staff)).ok()["staff"]["edges"]
    }
    assert shown[gid("User", assessor.id)] == PICTURE

    before = await database_state(backend.engine)
    for value in REFUSED:
        result = await as_admin(
            UPDATE_STAFF, input={"userId": gid("User", assessor.id), "avatarUrl": value}
        )
        assert assert_error(result, "ValidationError", "INVALID")["field"] == "avatarUrl"
    # a person of two organisations: their picture is theirs everywhere, support's to change
    assert_denied(
        await as_admin(UPDATE_STAFF, input={"userId": gid("User", shared.id), "avatarUrl": PICTURE})
    )
    assert await database_state(backend.engine) == before
    payload = assert_granted(
        await api.as_(support)(
            UPDATE_STAFF, input={"userId": gid("User", shared.id), "avatarUrl": PICTURE}
        ),
        "StaffMemberUpdated",
    )
    assert payload["user"]["avatarUrl"] == PICTURE
    cleared = assert_granted(
        await as_admin(UPDATE_STAFF, input={"userId": gid("User", assessor.id), "avatarUrl": ""}),
        "StaffMemberUpdated",
    )
    assert cleared["user"]["avatarUrl"] is None


async def test_support_creates_an_external_assessor_with_a_picture(
    api: Api, world: World, backend: Backend
) -> None:
    call = api.as_(await world.support())
    before = await database_state(backend.engine)
    for value in REFUSED[:3]:
        given = {"name": "Jo Marsh", "email": "jo@college.example", "avatarUrl": value}
        result = await call(CREATE_EXTERNAL, input=given)
        assert assert_error(result, "ValidationError", "INVALID")["field"] == "avatarUrl"
    assert await database_state(backend.engine) == before
    given = {"name": "Jo Marsh", "email": "jo@college.example", "avatarUrl": PICTURE}
    made = assert_granted(await call(CREATE_EXTERNAL, input=given), "ExternalAssessorCreated")
    assert made["assessor"]["avatarUrl"] == PICTURE


@pytest.mark.parametrize("model", [User, Learner])
async def test_the_demo_has_pictures(backend: Backend, model: type[Any]) -> None:
    from sqlalchemy import select

    await seed_demo(backend.engine)
    async with backend.engine.connect() as conn:
        pictures = (
            (await conn.execute(select(model.avatar_url).where(model.avatar_url.is_not(None))))
            .scalars()
            .all()
        )
    assert len(pictures) >= 3
    assert all(p.startswith("https://") for p in pictures)

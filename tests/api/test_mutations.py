"""Each creating mutation: granted, denied, bad input (nothing written), audited."""

from __future__ import annotations

import pytest

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

CREATE_ORG = """mutation($name: String!, $slug: String!) {
  createOrganisation(input: {name: $name, slug: $slug}) {
    __typename
    ... on OrganisationCreated { organisation { id name slug } }
    ... on Error { code message }
    ... on ValidationError { field }
    ... on AlreadyExistsError { field }
  }
}"""

CREATE_EXTERNAL = """mutation($name: String!, $email: String!) {
  createExternalAssessor(input: {name: $name, email: $email}) {
    __typename
    ... on ExternalAssessorCreated { assessor { id email isExternalAssessor roles } }
    ... on Error { code message }
  }
}"""

CREATE_STAFF = """mutation($input: CreateStaffMemberInput!) {
  createStaffMember(input: $input) {
    __typename
    ... on StaffMemberCreated { user { id email roles } }
    ... on Error { code message }
    ... on ValidationError { field }
    ... on NotFoundError { id }
  }
}"""

CREATE_LOCATION = """mutation($input: CreateUnitInput!) {
  createLocation(input: $input) {
    __typename
    ... on LocationCreated { location { id name } }
    ... on Error { code message }
  }
}"""

CREATE_DEPARTMENT = """mutation($input: CreateUnitInput!) {
  createDepartment(input: $input) {
    __typename
    ... on DepartmentCreated { department { id name } }
    ... on Error { code message }
  }
}"""

CREATE_LEARNER = """mutation($input: CreateLearnerInput!) {
  createLearner(input: $input) {
    __typename
    ... on LearnerCreated { learner { id name email location { name } department { name } } }
    ... on Error { code message }
    ... on ValidationError { field }
    ... on NotFoundError { id }
  }
}"""

CREATE_RECORD = """mutation($input: CreateApprenticeRecordInput!) {
  createApprenticeRecord(input: $input) {
    __typename
    ... on ApprenticeRecordCreated { record { id programme status startDate learner { id } } }
    ... on Error { code message }
    ... on ValidationError { field }
    ... on NotFoundError { id }
  }
}"""


# createOrganisation ------------------------------------------------------------------


async def test_support_creates_an_organisation(api: Api, world: World, backend: Backend) -> None:
    support = await world.support()
    payload = assert_granted(
        await api.as_(support)(CREATE_ORG, name="  Oak   Care ", slug="oak-care"),
        "OrganisationCreated",
    )
    assert payload["organisation"]["name"] == "Oak Care"
    assert payload["organisation"]["slug"] == "oak-care"
    assert await audit_actions(backend.engine) == [
        ("ORGANISATION_CREATED", "Organisation", support.id)
    ]


@pytest.mark.parametrize("role", ["SUPER_ADMIN", "ADMIN", "MANAGER", "LEARNER"])
async def test_organisation_roles_cannot_create_organisations(
    api: Api, world: World, backend: Backend, role: str
) -> None:
    org = await world.organisation()
    person = await world.staff(org, role)
    before = await row_counts(backend.engine)
    assert_denied(await api.as_(person, org)(CREATE_ORG, name="Rogue", slug="rogue"))
    assert await row_counts(backend.engine) == before


async def test_external_assessor_cannot_create_organisations(api: Api, world: World) -> None:
    assert_denied(await api.as_(await world.external_assessor())(CREATE_ORG, name="X", slug="x"))


@pytest.mark.parametrize(
    ("name", "slug", "field"),
    [
        ("", "ok", "name"),
        ("   ", "ok", "name"),
        ("Fine", "Bad Slug", "slug"),
        ("Fine", "-x", "slug"),
        ("A" * 201, "ok", "name"),
    ],
)
async def test_bad_organisation_input_writes_nothing(
    api: Api, world: World, backend: Backend, name: str, slug: str, field: str
) -> None:
    support = await world.support()
    before = await row_counts(backend.engine)
    error = assert_error(
        await api.as_(support)(CREATE_ORG, name=name, slug=slug), "ValidationError", "INVALID"
    )
    assert error["field"] == field
    assert await row_counts(backend.engine) == before


async def test_duplicate_slug_already_exists(api: Api, world: World, backend: Backend) -> None:
    support = await world.support()
    await world.organisation(slug="taken")
    before = await row_counts(backend.engine)
    error = assert_error(
        await api.as_(support)(CREATE_ORG, name="Again", slug="taken"),
        "AlreadyExistsError",
        "ALREADY_EXISTS",
    )
    assert error["field"] == "slug"
    assert await row_counts(backend.engine) == before


# createExternalAssessor --------------------------------------------------------------


async def test_support_creates_an_external_assessor(
    api: Api, world: World, backend: Backend
) -> None:
    support = await world.support()
    payload = assert_granted(
        await api.as_(support)(CREATE_EXTERNAL, name="Jo Marsh", email="Jo@College.example"),
        "ExternalAssessorCreated",
    )
    assert payload["assessor"]["email"] == "jo@college.example"
    assert payload["assessor"]["isExternalAssessor"] is True
    assert payload["assessor"]["roles"] == ["EXTERNAL_ASSESSOR"]
    assert (await audit_actions(backend.engine))[-1][0] == "EXTERNAL_ASSESSOR_CREATED"


@pytest.mark.parametrize("role", ["SUPER_ADMIN", "ADMIN", "MANAGER", "SENIOR_ASSESSOR"])
async def test_only_support_creates_external_assessors(api: Api, world: World, role: str) -> None:
    org = await world.organisation()
    person = await world.staff(org, role)
    assert_denied(await api.as_(person, org)(CREATE_EXTERNAL, name="Jo", email="jo@x.example"))


async def test_external_assessor_email_in_use(api: Api, world: World, backend: Backend) -> None:
    support = await world.support()
    org = await world.organisation()
    staff = await world.staff(org, "ADMIN")
    before = await row_counts(backend.engine)
    for email in (staff.email, staff.email.upper(), support.email):
        assert_error(
            await api.as_(support)(CREATE_EXTERNAL, name="Jo", email=email),
            "AlreadyExistsError",
            "ALREADY_EXISTS",
        )
    assert_error(
        await api.as_(support)(CREATE_EXTERNAL, name="Jo", email="not-an-email"),
        "ValidationError",
        "INVALID",
    )
    assert await row_counts(backend.engine) == before


# createStaffMember -------------------------------------------------------------------


async def test_support_creates_the_first_super_admin(
    api: Api, world: World, backend: Backend
) -> None:
    support = await world.support()
    org = await world.organisation()
    payload = assert_granted(
        await api.as_(support)(
            CREATE_STAFF,
            input={
                "organisationId": gid("Organisation", org.id),
                "name": "Sue Perkins",
                "email": "sue@oak.example",
                "roles": ["SUPER_ADMIN"],
            },
        ),
        "StaffMemberCreated",
    )
    assert payload["user"]["email"] == "sue@oak.example"
    sue = await api.post(
        "{ viewer { roles organisation { slug } } }",
        headers={"Authorization": f"Bearer {api.token_for_email('sue@oak.example', org.slug)}"},
    )
    assert sue.ok()["viewer"] == {"roles": ["SUPER_ADMIN"], "organisation": {"slug": org.slug}}
    assert (await audit_actions(backend.engine))[-1] == ("STAFF_MEMBER_CREATED", "User", support.id)


async def test_admin_creates_staff_in_their_own_organisation(api: Api, world: World) -> None:
    org = await world.organisation()
    leeds = await world.location(org)
    admin = await world.staff(org, "ADMIN")
    payload = assert_granted(
        await api.as_(admin, org)(
            CREATE_STAFF,
            input={
                "name": "Maya Lowe",
                "email": "maya@oak.example",
                "roles": ["MANAGER", "ASSESSOR"],
                "locationId": gid("Location", leeds.id),
            },
        ),
        "StaffMemberCreated",
    )
    assert sorted(payload["user"]["roles"]) == ["ASSESSOR", "MANAGER"]


async def test_admin_cannot_create_staff_elsewhere_or_make_super_admins(
    api: Api, world: World, backend: Backend
) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    before = await row_counts(backend.engine)
    elsewhere = await api.as_(admin, org)(
        CREATE_STAFF,
        input={
            "organisationId": gid("Organisation", other.id),
            "name": "X",
            "email": "x@x.example",
            "roles": ["ADMIN"],
        },
    )
    # Another organisation is invisible to an admin: it does not exist for them.
    assert_error(elsewhere, "NotFoundError", "NOT_FOUND")
    assert_denied(
        await api.as_(admin, org)(
            CREATE_STAFF, input={"name": "X", "email": "x@x.example", "roles": ["SUPER_ADMIN"]}
        )
    )
    assert await row_counts(backend.engine) == before


@pytest.mark.parametrize(
    "role", ["SENIOR_ASSESSOR", "MANAGER", "ASSESSOR", "TRAINING_COORDINATOR", "LEARNER"]
)
async def test_other_roles_cannot_create_staff(api: Api, world: World, role: str) -> None:
    org = await world.organisation()
    person = await world.staff(org, role)
    assert_denied(
        await api.as_(person, org)(
            CREATE_STAFF, input={"name": "X", "email": "x@x.example", "roles": ["ASSESSOR"]}
        )
    )


async def test_staff_input_errors_write_nothing(api: Api, world: World, backend: Backend) -> None:
    org, other = await world.organisation(), await world.organisation()
    foreign_location = await world.location(other)
    admin = await world.staff(org, "ADMIN")
    colleague = await world.staff(org, "ASSESSOR")
    call = api.as_(admin, org)
    before = await row_counts(backend.engine)
    base = {"name": "New Person", "email": "new@oak.example", "roles": ["ASSESSOR"]}
    cases = [
        ({**base, "name": " "}, "ValidationError", "name"),
        ({**base, "email": "nope"}, "ValidationError", "email"),
        ({**base, "roles": []}, "ValidationError", "roles"),
        ({**base, "roles": ["EXTERNAL_ASSESSOR"]}, "ValidationError", "roles"),
        ({**base, "locationId": "%%%"}, "ValidationError", "locationId"),
        ({**base, "locationId": gid("Location", foreign_location.id)}, "NotFoundError", None),
        ({**base, "departmentId": gid("Learner", 1)}, "NotFoundError", None),
        ({**base, "email": colleague.email}, "AlreadyExistsError", None),
    ]
    for given, typename, field in cases:
        payload = (await call(CREATE_STAFF, input=given)).ok()["createStaffMember"]
        assert payload["__typename"] == typename, (given, payload)
        if field:
            assert payload["field"] == field, (given, payload)
    # An unknown role is rejected by the schema itself.
    unknown = await call(CREATE_STAFF, input={**base, "roles": ["WIZARD"]})
    assert unknown.errors and unknown.data is None
    assert await row_counts(backend.engine) == before


async def test_support_adds_a_staff_member_of_another_organisation(api: Api, world: World) -> None:
    first, second = await world.organisation(), await world.organisation()
    person = await world.staff(first, "ASSESSOR")
    support = await world.support()
    payload = assert_granted(
        await api.as_(support)(
            CREATE_STAFF,
            input={
                "organisationId": gid("Organisation", second.id),
                "name": "Ignored",
                "email": person.email,
                "roles": ["TRAINING_COORDINATOR"],
            },
        ),
        "StaffMemberCreated",
    )
    assert payload["user"]["id"] == gid("User", person.id)
    viewer = (await api.as_(person, second)("{ viewer { user { name } roles } }")).ok()
    assert viewer["viewer"] == {"user": {"name": person.name}, "roles": ["TRAINING_COORDINATOR"]}


async def test_external_assessor_email_cannot_become_staff(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    external = await world.external_assessor()
    assert_error(
        await api.as_(admin, org)(
            CREATE_STAFF, input={"name": "X", "email": external.email, "roles": ["ASSESSOR"]}
        ),
        "AlreadyExistsError",
        "ALREADY_EXISTS",
    )


# createLocation / createDepartment ---------------------------------------------------


@pytest.mark.parametrize(
    ("mutation", "typename", "field"),
    [
        (CREATE_LOCATION, "LocationCreated", "location"),
        (CREATE_DEPARTMENT, "DepartmentCreated", "department"),
    ],
)
async def test_units(
    api: Api, world: World, backend: Backend, mutation: str, typename: str, field: str
) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    support = await world.support()
    manager = await world.staff(org, "MANAGER")

    payload = assert_granted(await api.as_(admin, org)(mutation, input={"name": "Leeds"}), typename)
    assert payload[field]["name"] == "Leeds"
    assert_granted(
        await api.as_(support)(
            mutation, input={"organisationId": gid("Organisation", other.id), "name": "Leeds"}
        ),
        typename,
    )
    before = await row_counts(backend.engine)
    assert_error(
        await api.as_(admin, org)(mutation, input={"name": "Leeds"}),
        "AlreadyExistsError",
        "ALREADY_EXISTS",
    )
    assert_error(
        await api.as_(admin, org)(mutation, input={"name": ""}), "ValidationError", "INVALID"
    )
    assert_error(
        await api.as_(support)(mutation, input={"name": "Nowhere"}), "ValidationError", "INVALID"
    )
    assert_error(
        await api.as_(support)(
            mutation, input={"organisationId": gid("Organisation", 10**9), "name": "X"}
        ),
        "NotFoundError",
        "NOT_FOUND",
    )
    assert_denied(await api.as_(manager, org)(mutation, input={"name": "York"}))
    assert await row_counts(backend.engine) == before


# createLearner -----------------------------------------------------------------------


async def test_admin_creates_a_learner_without_sign_in(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    leeds, care = await world.location(org, "Leeds"), await world.department(org, "Care")
    admin = await world.staff(org, "ADMIN")
    payload = assert_granted(
        await api.as_(admin, org)(
            CREATE_LEARNER,
            input={
                "name": "Ben Jones",
                "locationId": gid("Location", leeds.id),
                "departmentId": gid("Department", care.id),
            },
        ),
        "LearnerCreated",
    )
    assert payload["learner"]["location"] == {"name": "Leeds"}
    assert payload["learner"]["department"] == {"name": "Care"}
    assert payload["learner"]["email"] is None
    assert (await audit_actions(backend.engine))[-1] == ("LEARNER_CREATED", "Learner", admin.id)


async def test_learner_with_email_signs_in_and_sees_only_themself(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    await world.learner(org, name="Someone Else")
    payload = assert_granted(
        await api.as_(admin, org)(
            CREATE_LEARNER, input={"name": "Amira Khan", "email": "amira@oak.example"}
        ),
        "LearnerCreated",
    )
    token = api.token_for_email("amira@oak.example", org.slug)
    seen = await api.post(
        "{ viewer { roles } learners { totalCount edges { node { id name } } } }",
        headers={"Authorization": f"Bearer {token}"},
    )
    data = seen.ok()
    assert data["viewer"]["roles"] == ["LEARNER"]
    assert data["learners"]["totalCount"] == 1
    assert data["learners"]["edges"][0]["node"]["id"] == payload["learner"]["id"]


async def test_learner_creation_denied(api: Api, world: World) -> None:
    org = await world.organisation()
    support = await world.support()
    assert_denied(await api.as_(support)(CREATE_LEARNER, input={"name": "X"}))
    for role in ("SENIOR_ASSESSOR", "MANAGER", "ASSESSOR", "LEARNER"):
        person = await world.staff(org, role)
        assert_denied(await api.as_(person, org)(CREATE_LEARNER, input={"name": "X"}))
    assert_denied(
        await api.as_(await world.external_assessor())(CREATE_LEARNER, input={"name": "X"})
    )


async def test_learner_input_errors_write_nothing(api: Api, world: World, backend: Backend) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    existing = await world.external_assessor()
    foreign = await world.department(other)
    before = await row_counts(backend.engine)
    for given, typename in [
        ({"name": ""}, "ValidationError"),
        ({"name": "X", "email": "bad"}, "ValidationError"),
        ({"name": "X", "locationId": "not-an-id"}, "ValidationError"),
        ({"name": "X", "departmentId": gid("Department", foreign.id)}, "NotFoundError"),
        ({"name": "X", "email": existing.email}, "AlreadyExistsError"),
    ]:
        payload = (await api.as_(admin, org)(CREATE_LEARNER, input=given)).ok()["createLearner"]
        assert payload["__typename"] == typename, (given, payload)
    assert await row_counts(backend.engine) == before


async def test_same_person_cannot_be_a_learner_twice_in_one_organisation(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    first = await api.as_(admin, org)(CREATE_LEARNER, input={"name": "A", "email": "a@oak.example"})
    assert_granted(first, "LearnerCreated")
    assert_error(
        await api.as_(admin, org)(CREATE_LEARNER, input={"name": "A", "email": "A@oak.example"}),
        "AlreadyExistsError",
        "ALREADY_EXISTS",
    )


# createApprenticeRecord --------------------------------------------------------------


async def test_admin_creates_a_record(api: Api, world: World, backend: Backend) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "SUPER_ADMIN")
    learner = await world.learner(org)
    payload = assert_granted(
        await api.as_(admin, org)(
            CREATE_RECORD,
            input={
                "learnerId": gid("Learner", learner.id),
                "programme": "Residential Childcare Level 3",
                "startDate": "2026-09-01",
            },
        ),
        "ApprenticeRecordCreated",
    )
    assert payload["record"]["status"] == "LIVE"
    assert payload["record"]["startDate"] == "2026-09-01"
    assert payload["record"]["learner"]["id"] == gid("Learner", learner.id)
    assert (await audit_actions(backend.engine))[-1] == (
        "APPRENTICE_RECORD_CREATED",
        "ApprenticeRecord",
        admin.id,
    )


async def test_record_for_an_invisible_learner_is_not_found(
    api: Api, world: World, backend: Backend
) -> None:
    org, other = await world.organisation(), await world.organisation()
    admin = await world.staff(org, "ADMIN")
    foreign = await world.learner(other)
    before = await row_counts(backend.engine)
    invisible = await api.as_(admin, org)(
        CREATE_RECORD, input={"learnerId": gid("Learner", foreign.id), "programme": "X"}
    )
    missing = await api.as_(admin, org)(
        CREATE_RECORD, input={"learnerId": gid("Learner", 10**9), "programme": "X"}
    )
    a = assert_error(invisible, "NotFoundError", "NOT_FOUND")
    b = assert_error(missing, "NotFoundError", "NOT_FOUND")
    assert a["message"] == b["message"]
    assert_error(
        await api.as_(admin, org)(CREATE_RECORD, input={"learnerId": "!!", "programme": "X"}),
        "ValidationError",
        "INVALID",
    )
    assert_error(
        await api.as_(admin, org)(
            CREATE_RECORD, input={"learnerId": gid("User", admin.id), "programme": "X"}
        ),
        "NotFoundError",
        "NOT_FOUND",
    )
    assert await row_counts(backend.engine) == before


async def test_record_creation_denied(api: Api, world: World) -> None:
    org = await world.organisation()
    learner = await world.learner(org)
    for role in ("SENIOR_ASSESSOR", "MANAGER", "ASSESSOR", "LEARNER"):
        person = await world.staff(org, role)
        assert_denied(
            await api.as_(person, org)(
                CREATE_RECORD, input={"learnerId": gid("Learner", learner.id), "programme": "X"}
            )
        )
    assert_denied(
        await api.as_(await world.support())(
            CREATE_RECORD, input={"learnerId": gid("Learner", learner.id), "programme": "X"}
        )
    )


async def test_failed_mutation_in_a_document_rolls_back_the_others(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    before = await row_counts(backend.engine)
    result = await api.as_(admin, org)(
        """mutation {
          a: createLocation(input: {name: "Leeds"}) { __typename }
          b: createOrganisation(input: {name: "X", slug: "x"}) { __typename }
        }"""
    )
    assert "FORBIDDEN" in result.codes
    assert await row_counts(backend.engine) == before

"""What an attacker or a careless client tries from outside, and what must come back.

Each test names the rule it holds (DESIGN.md, API.md); together with the reference model,
the statement budgets and the fuzzing, they cover the defects found from outside in the
authorisation issue (reaching into another organisation by email, anonymous introspection
as an amplifier, malformed input, two coordinators, a forged audit label).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from db.base import utcnow
from db.models import AssignmentRole, AuditEvent, RecordAssignment, UserKind
from server.app import create_app
from server.services import Services
from tests.conftest import Backend
from tests.factories import World
from tests.helpers import Api, gid, row_counts

CREATE_STAFF = """mutation($email: String!) {
  createStaffMember(input: {name: "Renamed Person", email: $email, roles: [ASSESSOR]}) {
    __typename ... on Error { code message } ... on AlreadyExistsError { field }
    ... on StaffMemberCreated { user { id name } } } }"""
CREATE_LEARNER = """mutation($email: String!) {
  createLearner(input: {name: "Renamed Person", email: $email}) {
    __typename ... on Error { code message } ... on AlreadyExistsError { field }
    ... on LearnerCreated { learner { id name } } } }"""


# --- One organisation never reaches into another through an email ---------------------------


async def test_an_email_held_elsewhere_answers_already_exists_and_changes_nothing(
    api: Api, world: World, backend: Backend
) -> None:
    """DESIGN.md: any existing account outside the caller's organisation answers
    AlreadyExistsError, whatever its kind; an admin never attaches, renames or reveals a
    person of another organisation."""
    here, there = await world.organisation(), await world.organisation()
    admin = await world.staff(here, "ADMIN")
    elsewhere = {
        "a staff member of another organisation": await world.staff(
            there, "ASSESSOR", name="Quentin Elsewhere"
        ),
        "an external assessor": await world.external_assessor(name="Quentin External"),
        "a support user": await world.user(UserKind.SUPPORT, name="Quentin Support"),
        "another organisation's learner": await world.staff(
            there, "LEARNER", name="Quentin Learner"
        ),
    }
    messages: set[str] = set()
    for kind, person in elsewhere.items():
        for mutation in (CREATE_STAFF, CREATE_LEARNER):
            before = await row_counts(backend.engine)
            result = await api.as_(admin, here)(mutation, email=person.email.upper())
            (payload,) = result.ok().values()
            assert payload["__typename"] == "AlreadyExistsError", (kind, payload)
            assert payload["field"] == "email", (kind, payload)
            assert "Quentin" not in json.dumps(result.body), (kind, result.body)
            assert gid("User", person.id) not in json.dumps(result.body), (kind, result.body)
            assert await row_counts(backend.engine) == before, kind
            messages.add(payload["message"])
    assert len(messages) == 1, f"the message tells kinds of account apart: {messages}"
    # and the other organisation's staff member still signs in without an `org` claim
    viewer = await api.as_(elsewhere["a staff member of another organisation"])(
        "{ viewer { user { name } } }"
    )
    assert viewer.ok() == {"viewer": {"user": {"name": "Quentin Elsewhere"}}}


# --- Anonymous introspection is not an amplifier ----------------------------------------------


async def test_anonymous_introspection_cannot_be_multiplied_by_aliases(api: Api) -> None:
    """Anonymous introspection: once per document (no aliases of __schema), or refused."""
    full = "{ types { name fields { name args { name } type { name } } } }"
    document = "query { " + " ".join(f"a{k}: __schema {full}" for k in range(5)) + " }"
    result = await api.post(document)
    assert result.status in (200, 400, 401), result.status  # 401: anonymous introspection off
    assert not result.data, "five anonymous __schema selections were answered"
    assert result.errors


# --- Malformed input answers null, INVALID or ValidationError, never a crash ------------------


@pytest.fixture
async def http(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sees the app's HTTP answer even when the app fails (500)."""
    transport = httpx.ASGITransport(app=create_app(services=services), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://caseload.test") as client:
        yield client


def cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


async def test_an_out_of_range_integer_in_a_cursor_is_invalid(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    for field, after in (
        ("learners", cursor(["Ann", 10**20])),
        ("apprenticeRecords", cursor([-(10**30)])),
        ("staff", cursor(["Ann", 2**63])),
    ):
        result = await api.as_(admin, org)(
            f"query($a: String) {{ {field}(first: 5, after: $a) {{ totalCount }} }}", a=after
        )
        assert result.codes == ["INVALID"], (field, result.body)


async def test_a_nul_character_in_a_string_is_no_crash(api: Api, world: World) -> None:
    """U+0000 cannot be stored by PostgreSQL: a filter or a name containing it is an input
    problem, not an unexpected error."""
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    searched = await call('{ learners(filter: {search: "a\\u0000b"}) { totalCount } }')
    assert "INTERNAL_SERVER_ERROR" not in searched.codes, searched.body
    created = await call(
        'mutation { createLearner(input: {name: "Nul\\u0000Name"}) { __typename } }'
    )
    assert "INTERNAL_SERVER_ERROR" not in created.codes, created.body


async def test_a_timestamp_that_overflows_is_invalid(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    external = await world.external_assessor()
    for moment in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
        result = await api.as_(admin, org)(
            """mutation($l: ID!, $a: ID!, $t: DateTime) {
              allocateAssessor(input: {learnerId: $l, assessorId: $a, expiresAt: $t}) {
                __typename ... on Error { code } } }""",
            l=gid("Learner", learner.id),
            a=gid("User", external.id),
            t=moment,
        )
        assert "INTERNAL_SERVER_ERROR" not in result.codes, (moment, result.body)
        if not result.errors:
            assert result.data["allocateAssessor"]["__typename"] == "ValidationError", result.body


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"42", 400),
        (b"[1, 2]", 400),
        (b'"query"', 400),
        (b"{not json", 400),
        (
            b'{"query": "{ viewer { user { id } } }", "variables": '
            + b"[" * 1000
            + b"]" * 1000
            + b"}",
            400,
        ),
    ],
    ids=["number", "array", "string", "not-json", "nested-1000"],
)
async def test_a_body_that_is_not_a_json_object_is_refused_before_authentication(
    http: httpx.AsyncClient, body: bytes, status: int
) -> None:
    """API.md: not valid JSON, not a JSON object, or nested deeper than 64 levels: HTTP 400
    with a JSON `errors` body, before authentication."""
    response = await http.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.json().get("errors"), response.text[:300]


async def test_a_huge_body_is_refused_with_413_before_authentication(
    http: httpx.AsyncClient,
) -> None:
    padding = "x" * (50 * 1024 * 1024)
    body = json.dumps({"query": "{ viewer { user { id } } }", "variables": {"p": padding}})
    response = await http.post(
        "/graphql", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.status_code
    assert response.json().get("errors"), response.text[:300]


async def test_concurrent_learners_with_one_email_never_crash(api: Api, world: World) -> None:
    """Check-then-insert must not surface as INTERNAL_SERVER_ERROR: one is created, the
    others answer AlreadyExistsError."""
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    for attempt in range(4):
        email = f"racer{attempt}@example.org"
        results = await asyncio.gather(*(call(CREATE_LEARNER, email=email) for _ in range(4)))
        kinds = sorted(
            (r.data or {}).get("createLearner", {}).get("__typename", str(r.codes)) for r in results
        )
        assert kinds.count("LearnerCreated") == 1, kinds
        assert set(kinds) == {"LearnerCreated", "AlreadyExistsError"}, kinds


# --- At most one active training coordinator per record ----------------------------------------


async def test_bulk_assignment_as_coordinator_replaces_the_coordinator(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    first, second = [await world.staff(org, "TRAINING_COORDINATOR") for _ in range(2)]
    record = await world.record(await world.learner(org))
    await world.assign(record, first, AssignmentRole.TRAINING_COORDINATOR)
    result = await api.as_(admin, org)(
        """mutation($u: ID!, $r: ID!) {
          assignRecords(input: {assigneeId: $u, recordIds: [$r], role: TRAINING_COORDINATOR}) {
            __typename } }""",
        u=gid("User", second.id),
        r=gid("ApprenticeRecord", record.id),
    )
    assert result.ok() == {"assignRecords": {"__typename": "RecordsAssigned"}}
    async with backend.engine.connect() as conn:
        active = await conn.scalar(
            select(func.count()).where(
                RecordAssignment.record_id == record.id,
                RecordAssignment.role == AssignmentRole.TRAINING_COORDINATOR,
                RecordAssignment.ended_at.is_(None),
            )
        )
    assert active == 1


async def test_the_database_refuses_a_second_active_coordinator(
    world: World, backend: Backend
) -> None:
    org = await world.organisation()
    first, second = [await world.staff(org, "TRAINING_COORDINATOR") for _ in range(2)]
    record = await world.record(await world.learner(org))
    await world.assign(record, first, AssignmentRole.TRAINING_COORDINATOR)
    with pytest.raises(IntegrityError):
        async with backend.engine.begin() as conn:
            await conn.execute(
                insert(RecordAssignment).values(
                    organisation_id=org.id,
                    record_id=record.id,
                    user_id=second.id,
                    role=AssignmentRole.TRAINING_COORDINATOR,
                    assigned_at=utcnow(),
                )
            )


# --- The audit `client` label comes from the credential -----------------------------------------


async def test_a_client_header_cannot_forge_the_audit_client(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    forged = "apikey:Payroll Partner"
    caller = api.with_headers(
        {"Authorization": f"Bearer {api.token(admin, org)}", "X-Caseload-Client": forged}
    )
    result = await caller('mutation { createLocation(input: {name: "Annex"}) { __typename } }')
    assert result.ok() == {"createLocation": {"__typename": "LocationCreated"}}
    async with backend.engine.connect() as conn:
        clients = list(
            await conn.scalars(select(AuditEvent.client).where(AuditEvent.actor_id == admin.id))
        )
    assert clients, "no audit event"
    assert all(c != forged and not (c or "").startswith("apikey:") for c in clients), clients

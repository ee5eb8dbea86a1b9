"""Malformed input answers a clear, typed error and changes nothing (never a 5xx, never
INTERNAL_SERVER_ERROR): ids, cursors, NUL characters, lone surrogates, dates out of range,
races, commits."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.conftest import AppFactory, Backend
from tests.factories import World
from tests.helpers import Api, gid, row_counts


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


SUPERSCRIPT_ID = b64("Learner:²")  # "²".isdigit() is True, int("²") fails

LEARNER = "query($id: ID!) { learner(id: $id) { id } node(id: $id) { id } }"
FILTERED = """query($filter: LearnerFilter, $after: String) {
  learners(first: 5, after: $after, filter: $filter) { totalCount }
}"""
CREATE_LEARNER = """mutation($input: CreateLearnerInput!) {
  createLearner(input: $input) { __typename ... on Error { code message } }
}"""
ALLOCATE = """mutation($input: AllocateAssessorInput!) {
  allocateAssessor(input: $input) { __typename ... on Error { code message } }
}"""


async def test_ids_with_non_ascii_digits_are_like_missing_or_invalid(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    assert (await call(LEARNER, id=SUPERSCRIPT_ID)).ok() == {"learner": None, "node": None}
    refused = await call(FILTERED, filter={"locationId": b64("Location:¹²")})
    assert refused.codes == ["INVALID"] and refused.errors[0]["extensions"]["field"] == "locationId"
    record = await call(
        "mutation($i: CreateApprenticeRecordInput!) { createApprenticeRecord(input: $i) "
        "{ __typename ... on ValidationError { field } } }",
        i={"learnerId": SUPERSCRIPT_ID, "programme": "X"},
    )
    assert record.ok()["createApprenticeRecord"] == {
        "__typename": "ValidationError",
        "field": "learnerId",
    }


@pytest.mark.parametrize("values", [["A", 10**30], ["A", -(10**30)], ["A\x00", 1], [1, 1]])
async def test_cursors_out_of_range_are_invalid(
    api: Api, world: World, values: list[object]
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    cursor = b64(json.dumps(values))
    refused = await api.as_(admin, org)(FILTERED, after=cursor)
    assert refused.status == 200
    assert refused.codes == ["INVALID"] and refused.errors[0]["extensions"]["field"] == "after"


async def test_nul_characters_are_invalid_and_change_nothing(
    api: Api, world: World, backend: Backend
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    before = await row_counts(backend.engine)
    for result in (
        await call(FILTERED, filter={"search": "a\x00b"}),
        await call('{ learners(filter: {search: "a\\u0000b"}) { totalCount } }'),
        await call(CREATE_LEARNER, input={"name": "Nul\x00Name"}),
        await call('mutation { createLearner(input: {name: "x\\u0000"}) { __typename } }'),
    ):
        assert result.status == 200, result.body
        assert result.codes == ["INVALID"], result.body
        assert result.data is None
    assert await row_counts(backend.engine) == before


# Bodies as a client's JSON encoder may write them: a lone surrogate escaped in the JSON text
# decodes to a Python string no database can store, nor any answer echo.
SURROGATES = [
    ('{"query": %s, "variables": {"filter": {"search": "\\ud800x"}}}', "filter.search"),
    ('{"query": %s, "variables": {"filter": {"search": "x\\udfff"}}}', "filter.search"),
    ('{"query": %s, "variables": {"input": {"name": "Bob \\udfff"}}}', "input.name"),
    ('{"query": %s, "variables": {"input": {"name": "Bob", "\\ud800": 1}}}', "input.\\ud800"),
]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "standard"])
async def test_lone_surrogates_are_invalid_and_change_nothing(
    api_with: AppFactory, world: World, backend: Backend, compiled: bool
) -> None:
    api = await api_with(compiled_reads=compiled)
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    headers = {"Authorization": f"Bearer {api.token(admin, org)}"}
    before = await row_counts(backend.engine)
    for body, field in SURROGATES:
        query = FILTERED if field.startswith("filter") else CREATE_LEARNER
        answer = await api.client.post(
            "/graphql",
            content=(body % json.dumps(query)).encode(),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        refused = answer.json()
        assert [e["extensions"]["code"] for e in refused["errors"]] == ["INVALID"], refused
        assert refused["errors"][0]["extensions"]["field"] == field, refused
        assert refused["data"] is None
    # In the document itself the parser refuses it; in the envelope, the HTTP layer does.
    for body, status, code in (
        (
            '{"query": "{ learners(filter: {search: \\"\\ud800\\"}) { totalCount } }"}',
            200,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        ('{"query": "{ learners { totalCount } } # \\ud800"}', 200, "GRAPHQL_VALIDATION_FAILED"),
        (
            '{"query": "{ learners { totalCount } }", "operationName": "\\ud800"}',
            400,
            "BAD_REQUEST",
        ),
        (
            '{"query": "{ learners { totalCount } }", "extensions": {"a": "\\udc00"}}',
            400,
            "BAD_REQUEST",
        ),
    ):
        answer = await api.client.post(
            "/graphql",
            content=body.encode(),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert answer.status_code == status, answer.text
        assert [e["extensions"]["code"] for e in answer.json()["errors"]] == [code], answer.text
    assert await row_counts(backend.engine) == before


@pytest.mark.parametrize(
    "expires_at", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "tomorrow", 42]
)
async def test_dates_out_of_range_are_invalid_and_change_nothing(
    api: Api, world: World, backend: Backend, expires_at: object
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    external = await world.external_assessor()
    before = await row_counts(backend.engine)
    result = await api.as_(admin, org)(
        ALLOCATE,
        input={
            "learnerId": gid("Learner", learner.id),
            "assessorId": gid("User", external.id),
            "expiresAt": expires_at,
        },
    )
    assert result.status == 200 and result.codes == ["INVALID"], result.body
    assert await row_counts(backend.engine) == before
    literal = await api.as_(admin, org)(
        'mutation { allocateAssessor(input: {learnerId: "x", assessorId: "y", '
        'expiresAt: "9999-12-31T23:59:59-05:00"}) { __typename } }'
    )
    assert literal.codes == ["INVALID"], literal.body


async def test_a_date_without_offset_is_utc(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    external = await world.external_assessor()
    when = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0, tzinfo=None)
    result = await api.as_(admin, org)(
        """mutation($input: AllocateAssessorInput!) { allocateAssessor(input: $input) {
          ... on AssessorAllocated { allocation { expiresAt } } } }""",
        input={
            "learnerId": gid("Learner", learner.id),
            "assessorId": gid("User", external.id),
            "expiresAt": when.isoformat(),
        },
    )
    shown = result.ok()["allocateAssessor"]["allocation"]["expiresAt"]
    assert datetime.fromisoformat(shown) == when.replace(tzinfo=UTC)


@pytest.mark.parametrize("whose", ["new", "staff member's"])
async def test_concurrent_learners_with_one_email_make_one_learner(
    api: Api, world: World, whose: str
) -> None:
    org = await world.organisation()
    admins = [await world.staff(org, "ADMIN") for _ in range(2)]
    email = "racer@example.org"
    if whose != "new":
        email = (await world.staff(org, "ASSESSOR")).email
    calls = [
        api.as_(admins[n % 2], org)(CREATE_LEARNER, input={"name": f"Racer {n}", "email": email})
        for n in range(8)
    ]
    answers = [r.ok()["createLearner"]["__typename"] for r in await asyncio.gather(*calls)]
    assert sorted(answers) == ["AlreadyExistsError"] * 7 + ["LearnerCreated"], answers


async def test_a_failing_commit_answers_a_code_and_leaves_nothing(
    api: Api, world: World, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    if backend.name == "postgresql":
        # A real refusal at COMMIT: a deferred constraint trigger rejects this learner.
        async with backend.engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION refuse_at_commit() RETURNS trigger AS $$ "
                    "BEGIN IF NEW.name = 'Refused At Commit' THEN "
                    "RAISE EXCEPTION 'secret driver detail'; END IF; RETURN NULL; END $$ "
                    "LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                text(
                    "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON learners "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"
                )
            )
    else:
        from sqlalchemy.exc import OperationalError

        from db.session import Database

        async def refuse(self: Database) -> None:
            raise OperationalError("COMMIT", {}, Exception("secret driver detail"))

        monkeypatch.setattr(Database, "commit", refuse)
    try:
        before = await row_counts(backend.engine)
        result = await api.as_(admin, org)(CREATE_LEARNER, input={"name": "Refused At Commit"})
        assert result.status == 200
        assert result.codes == ["COMMIT_FAILED"] and result.data is None, result.body
        assert "secret driver detail" not in json.dumps(result.body)
        assert await row_counts(backend.engine) == before
        monkeypatch.undo()
        again = await api.as_(admin, org)(CREATE_LEARNER, input={"name": "Accepted"})
        assert again.ok()["createLearner"]["__typename"] == "LearnerCreated"
    finally:
        if backend.name == "postgresql":
            async with backend.engine.begin() as conn:
                await conn.execute(text("DROP TRIGGER refuse_at_commit ON learners"))


async def test_validation_errors_carry_a_code(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    result = await api.as_(admin, org)("{ learners(first: 1) { nope } }")
    assert result.codes == ["GRAPHQL_VALIDATION_FAILED"]

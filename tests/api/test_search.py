"""A search term is at most `CASELOAD_MAX_SEARCH_LENGTH` (100) characters, counted without the
whitespace around it, wherever a list takes one; a longer one answers a top-level INVALID
naming `search`, the same on both read paths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.app import create_app
from server.services import Services
from server.tokens import mint_token
from tests.conftest import AppFactory, Backend, make_settings
from tests.factories import World
from tests.helpers import gid

# Every list that takes a search, asked with the term as a variable.
SEARCHED = {
    "learners": "query($s: String) { learners(first: 1, filter: {search: $s}) { totalCount } }",
    "apprenticeRecords": (
        "query($s: String) { apprenticeRecords(first: 1, filter: {search: $s}) { totalCount } }"
    ),
    "staff": "query($s: String) { staff(first: 1, filter: {search: $s}) { totalCount } }",
    "externalAssessors": (
        "query($s: String) { externalAssessors(first: 1, filter: {search: $s}) { totalCount } }"
    ),
    "licenceEligibleLearners": (
        "query($s: String, $c: ID!) { licenceEligibleLearners(courseId: $c, first: 1, "
        "filter: {search: $s}) { totalCount } }"
    ),
    # The former place of the term, deprecated.
    "externalAssessors(search:)": (
        "query($s: String) { externalAssessors(first: 1, search: $s) { totalCount } }"
    ),
    "licenceEligibleLearners(search:)": (
        "query($s: String, $c: ID!) { licenceEligibleLearners(courseId: $c, first: 1, "
        "search: $s) { totalCount } }"
    ),
}
LONGEST = "Ab" * 50


@pytest.fixture
async def apps(backend: Backend) -> AsyncIterator[dict[bool, tuple[httpx.AsyncClient, Any]]]:
    """The app with the compiled read path, and without it, on the same database."""
    found: dict[bool, tuple[httpx.AsyncClient, Any]] = {}
    built = []
    for compiled in (True, False):
        services = Services.build(make_settings(backend.url, compiled_reads=compiled))
        built.append(services)
        app = create_app(services=services)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://caseload.test"
        )
        found[compiled] = (client, app)
    yield found
    for client, _app in found.values():
        await client.aclose()
    for services in built:
        await services.aclose()


def _refused_as_invalid(body: dict[str, Any]) -> None:
    assert body["data"] is None, body
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "INVALID", "field": "search"}, body
    assert "100 characters" in error["message"], body


@pytest.mark.parametrize("field", list(SEARCHED))
async def test_a_search_longer_than_100_characters_is_invalid_everywhere(
    apps: dict[bool, tuple[httpx.AsyncClient, Any]], world: World, field: str
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org, name="Ab" * 60)
    await world.record(learner)
    course = await world.course()
    app = apps[True][1]
    token = mint_token(app.state.services.settings, email=admin.email, org=org.slug)
    headers = {"Authorization": f"Bearer {token}"}

    async def ask(search: str, path: bool = True) -> dict[str, Any]:
        variables = {"s": search, "c": gid("Course", course.id)}
        body = {"query": SEARCHED[field], "variables": variables}
        answer: dict[str, Any] = (
            await apps[path][0].post("/graphql", json=body, headers=headers)
        ).json()
        return answer

    for allowed in (LONGEST, f"  {LONGEST}\t ", "  ", "é" * 100):
        answer = await ask(allowed)
        assert "errors" not in answer, (allowed, answer)
    for refused in (LONGEST + "b", "é" * 101, " " + "a" * 101 + " "):
        answer = await ask(refused)
        _refused_as_invalid(answer)
        assert answer == await ask(refused, path=False)  # the same without the compiled path


@pytest.mark.parametrize("field", ["learners", "apprenticeRecords"])
async def test_the_compiled_path_refuses_as_the_standard_one_does(
    apps: dict[bool, tuple[httpx.AsyncClient, Any]], world: World, field: str
) -> None:
    """A term in the document itself as well as in a variable: the compiled path answers the
    term of 100 characters and leaves the longer one to the standard executor."""
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    await world.record(await world.learner(org, name=LONGEST))
    app = apps[True][1]
    reads = app.state.compiled_reads
    token = mint_token(app.state.services.settings, email=admin.email, org=org.slug)
    headers = {"Authorization": f"Bearer {token}"}
    written = "{ %s(first: 1, filter: {search: %s}) { totalCount edges { node { id } } } }"
    for term, answered in ((LONGEST, True), (LONGEST + "b", False)):
        for body in (
            {"query": written % (field, f'"{term}"')},
            {"query": SEARCHED[field], "variables": {"s": term}},
        ):
            before = reads.answered
            fast = await apps[True][0].post("/graphql", json=body, headers=headers)
            assert (reads.answered - before == 1) is answered, (term, body)
            slow = await apps[False][0].post("/graphql", json=body, headers=headers)
            assert fast.content == slow.content
            if answered:
                assert fast.json()["data"][field]["totalCount"] == 1
            else:
                _refused_as_invalid(fast.json())


async def test_the_longest_search_is_a_setting(api_with: AppFactory, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    api = await api_with(max_search_length=5)
    call = api.as_(admin, org)
    assert (await call(SEARCHED["learners"], s=" abcde ")).ok() == {"learners": {"totalCount": 0}}
    refused = await call(SEARCHED["learners"], s="abcdef")
    assert refused.codes == ["INVALID"] and refused.errors[0]["extensions"]["field"] == "search"
    assert "5 characters" in refused.errors[0]["message"]

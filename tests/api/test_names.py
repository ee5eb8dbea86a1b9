"""One name per concept: `assigneeId` on the learner and record filters, `search` inside
`filter` on every list, `Learner.licences(filter:)`. The former names keep working, deprecated;
giving a former name and its new one together is INVALID. Every answer is the same on both read
paths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from db.models import AssignmentRole, LicenceStatus, Organisation, User
from server.app import create_app
from server.services import Services
from server.tokens import mint_token
from tests.conftest import Backend, make_settings
from tests.factories import World
from tests.helpers import gid


class Paths:
    """The app with the compiled read path and the app without it, on the same database."""

    def __init__(self, clients: dict[bool, httpx.AsyncClient], apps: dict[bool, Any]) -> None:
        self.clients = clients
        self.apps = apps
        self.headers: dict[str, str] = {}

    def as_(self, user: User, org: Organisation | None = None) -> Paths:
        settings = self.apps[True].state.services.settings
        token = mint_token(settings, email=user.email, org=org.slug if org else None)
        self.headers = {"Authorization": f"Bearer {token}"}
        return self

    async def ask(self, query: str, **variables: Any) -> tuple[dict[str, Any], bool]:
        """The answer (the same on both paths) and whether the compiled path gave it."""
        reads = self.apps[True].state.compiled_reads
        body = {"query": query, "variables": variables}
        before = reads.answered
        fast = await self.clients[True].post("/graphql", json=body, headers=self.headers)
        compiled = reads.answered > before
        slow = await self.clients[False].post("/graphql", json=body, headers=self.headers)
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content), (
            query,
            fast.content,
            slow.content,
        )
        answer: dict[str, Any] = fast.json()
        return answer, compiled

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        answer, _ = await self.ask(query, **variables)
        assert "errors" not in answer, answer
        found: dict[str, Any] = answer["data"]
        return found

    async def invalid(self, query: str, field: str, **variables: Any) -> None:
        answer, compiled = await self.ask(query, **variables)
        assert not compiled
        assert [e["extensions"] for e in answer["errors"]] == [
            {"code": "INVALID", "field": field}
        ], answer


@pytest.fixture
async def paths(backend: Backend) -> AsyncIterator[Paths]:
    clients: dict[bool, httpx.AsyncClient] = {}
    apps: dict[bool, Any] = {}
    built = []
    for compiled in (True, False):
        services = Services.build(make_settings(backend.url, compiled_reads=compiled))
        built.append(services)
        apps[compiled] = create_app(services=services)
        clients[compiled] = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=apps[compiled]), base_url="http://caseload.test"
        )
    yield Paths(clients, apps)
    for client in clients.values():
        await client.aclose()
    for services in built:
        await services.aclose()


LEARNERS = """query($f: LearnerFilter) {
  learners(first: 50, filter: $f) { totalCount edges { node { name } } } }"""
RECORDS = """query($f: RecordFilter) {
  apprenticeRecords(first: 50, filter: $f) { totalCount edges { node { programme } } } }"""


async def test_assignee_id_filters_learners_as_assigned_to_did(paths: Paths, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assessor = await world.staff(org, "ASSESSOR")
    coordinator = await world.staff(org, "TRAINING_COORDINATOR")
    ann = await world.learner(org, name="Ann Lee")
    bob = await world.learner(org, name="Bob Ray")
    await world.learner(org, name="Cy Ng")
    await world.assign(await world.record(ann, programme="Care L3"), assessor)
    await world.assign(
        await world.record(bob, programme="Care L2"),
        coordinator,
        AssignmentRole.TRAINING_COORDINATOR,
    )
    paths.as_(admin, org)

    async def names(**f: Any) -> list[str]:
        answer, compiled = await paths.ask(LEARNERS, f=f)
        assert compiled and "errors" not in answer, answer
        return [e["node"]["name"] for e in answer["data"]["learners"]["edges"]]

    async def programmes(**f: Any) -> list[str]:
        found = (await paths.data(RECORDS, f=f))["apprenticeRecords"]["edges"]
        return [e["node"]["programme"] for e in found]

    for user, learner, programme in (
        (assessor, "Ann Lee", "Care L3"),
        (coordinator, "Bob Ray", "Care L2"),
    ):
        assert await names(assigneeId=gid("User", user.id)) == [learner]
        assert await names(assignedTo=gid("User", user.id)) == [learner]  # the former name
        assert await programmes(assigneeId=gid("User", user.id)) == [programme]
    assert await names(assigneeId=gid("User", 999_999)) == []
    assert await names(assigneeId=gid("Learner", ann.id)) == []  # another type: nothing
    both = {"assigneeId": gid("User", assessor.id), "assignedTo": gid("User", assessor.id)}
    await paths.invalid(LEARNERS, "assigneeId", f=both)
    await paths.invalid(LEARNERS, "assigneeId", f={"assigneeId": "%%"})
    await paths.invalid(LEARNERS, "assignedTo", f={"assignedTo": "%%"})
    one, other = gid("User", assessor.id), gid("User", coordinator.id)
    written = (
        f'{{ learners(filter: {{assigneeId: "{one}", assignedTo: "{other}"}}) {{ totalCount }} }}'
    )
    await paths.invalid(written, "assigneeId")


DIRECTORY = """query($f: ExternalAssessorFilter, $s: String) {
  externalAssessors(first: 50, filter: $f, search: $s) { totalCount edges { node { name } } } }"""
ELIGIBLE = """query($c: ID!, $f: EligibleLearnerFilter, $s: String) {
  licenceEligibleLearners(courseId: $c, first: 50, filter: $f, search: $s) {
    totalCount edges { node { name } } } }"""


async def test_search_is_inside_the_filter_on_every_list(paths: Paths, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    await world.external_assessor(name="Dana Ford")
    await world.external_assessor(name="Eli Marsh")
    await world.learner(org, name="Ann Lee")
    await world.learner(org, name="Bob Ray")
    course = await world.course()
    c = gid("Course", course.id)
    paths.as_(admin, org)

    async def directory(**given: Any) -> list[str]:
        found = (await paths.data(DIRECTORY, **given))["externalAssessors"]
        assert found["totalCount"] == len(found["edges"])
        return [e["node"]["name"] for e in found["edges"]]

    async def eligible(**given: Any) -> list[str]:
        found = (await paths.data(ELIGIBLE, c=c, **given))["licenceEligibleLearners"]
        assert found["totalCount"] == len(found["edges"])
        return [e["node"]["name"] for e in found["edges"]]

    assert await directory() == ["Dana Ford", "Eli Marsh"]
    assert await directory(f={"search": "mars"}) == ["Eli Marsh"]
    assert await directory(s="mars") == ["Eli Marsh"]  # the former place
    assert await directory(f={}, s="ford") == ["Dana Ford"]
    assert await eligible() == ["Ann Lee", "Bob Ray"]
    assert await eligible(f={"search": "ray"}) == ["Bob Ray"]
    assert await eligible(s="ray") == ["Bob Ray"]
    for query, more in ((DIRECTORY, {}), (ELIGIBLE, {"c": c})):
        await paths.invalid(query, "search", f={"search": "a"}, s="a", **more)
        await paths.invalid(query, "search", f={"search": "a" * 101}, **more)


LICENCES = "query($id: ID!) { learner(id: $id) { licences%s { id status course { title } } } }"


async def test_a_learners_licences_take_the_licence_filter(paths: Paths, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    ann = await world.learner(org, name="Ann Lee")
    bob = await world.learner(org, name="Bob Ray")
    first, second = await world.course(title="First aid"), await world.course(title="Safeguarding")
    pools = [await world.pool(org, c, 10) for c in (first, second)]
    active = await world.licence(pools[0], ann)
    recalled = await world.licence(pools[1], ann, status=LicenceStatus.RECALLED)
    await world.licence(pools[1], bob)
    a = gid("Learner", ann.id)
    paths.as_(admin, org)

    async def ids(arguments: str, compiled: bool = True, **variables: Any) -> list[str]:
        """The learner's licence ids, on the list and on the learner (both paths agree)."""
        header = "query($f: LicenceFilter)" if variables else "query"
        nested = f"licences{arguments} {{ id }}"
        everything = (
            f"{header} {{ learners(first: 50) {{ edges {{ node {{ name {nested} }} }} }} }}"
        )
        answer, was_compiled = await paths.ask(everything, **variables)
        assert "errors" not in answer, answer
        assert was_compiled is compiled, arguments
        (found,) = [
            e["node"]["licences"]
            for e in answer["data"]["learners"]["edges"]
            if e["node"]["name"] == "Ann Lee"
        ]
        declared = ", $f: LicenceFilter" if variables else ""
        single = f"query($id: ID!{declared}) {{ learner(id: $id) {{ {nested} }} }}"
        on_learner = (await paths.data(single, id=a, **variables))["learner"]["licences"]
        assert on_learner == found
        return [x["id"] for x in found]

    every = [gid("Licence", active.id), gid("Licence", recalled.id)]
    assert await ids("") == every
    assert await ids("(filter: {})") == every
    assert await ids("(filter: {status: ACTIVE})") == every[:1]
    assert await ids("(status: RECALLED)") == every[1:]  # the former argument
    assert await ids(f'(filter: {{courseId: "{gid("Course", second.id)}"}})') == every[1:]
    assert await ids(f'(filter: {{courseId: "{gid("Course", 999_999)}"}})') == []
    assert await ids(f'(filter: {{learnerId: "{a}"}})') == every
    assert await ids(f'(filter: {{learnerId: "{gid("Learner", bob.id)}"}})') == []
    assert await ids(f'(filter: {{learnerId: "{gid("Course", first.id)}"}})') == []
    # A filter from variables: the standard executor answers it, the same.
    assert await ids("(filter: $f)", compiled=False, f={"status": "RECALLED"}) == every[1:]
    for arguments, field in (
        ('(filter: {learnerId: "%%"})', "learnerId"),
        ('(filter: {courseId: "nope"})', "courseId"),
        ("(filter: {status: ACTIVE}, status: RECALLED)", "status"),
    ):
        answer, compiled = await paths.ask(LICENCES % arguments, id=a)
        assert not compiled
        assert [e["extensions"] for e in answer["errors"]] == [
            {"code": "INVALID", "field": field}
        ], answer
        answer, compiled = await paths.ask(
            f"{{ learners(first: 5) {{ edges {{ node {{ licences{arguments} {{ id }} }} }} }} }}"
        )
        assert not compiled and {e["extensions"]["code"] for e in answer["errors"]} == {"INVALID"}


async def test_a_course_filter_on_a_learners_licences_reads_the_course_scope(
    paths: Paths, world: World
) -> None:
    """An external assessor sees an allocated learner's licences but not the catalogue: a
    course filter matches nothing for them, as on the licences list."""
    org = await world.organisation()
    external = await world.external_assessor()
    ann = await world.learner(org, name="Ann Lee")
    await world.allocate(ann, external)
    course = await world.course()
    licence = await world.licence(await world.pool(org, course, 5), ann)
    c = gid("Course", course.id)
    paths.as_(external)
    for arguments, wanted in (
        ("", [gid("Licence", licence.id)]),
        (f'(filter: {{courseId: "{c}"}})', []),
    ):
        answer, compiled = await paths.ask(
            f"{{ learners(first: 5) {{ edges {{ node {{ licences{arguments} {{ id }} }} }} }} }}"
        )
        assert compiled and "errors" not in answer, answer
        (edge,) = answer["data"]["learners"]["edges"]
        assert [x["id"] for x in edge["node"]["licences"]] == wanted
        listed = await paths.data(f'{{ licences(filter: {{courseId: "{c}"}}) {{ totalCount }} }}')
        assert listed["licences"]["totalCount"] == 0


def test_the_screens_and_the_readme_use_no_deprecated_name() -> None:
    """The web client's screens and the README's examples are written with the current names
    (and are valid documents)."""
    import re
    from pathlib import Path

    from graphql import parse, specified_rules, validate
    from graphql.validation import NoDeprecatedCustomRule

    from schema import schema

    root = Path(__file__).resolve().parents[2]
    documents = [(root / "tests" / "screens.graphql").read_text()]
    readme = (root / "README.md").read_text()
    documents += re.findall(r"```graphql\n(.*?)```", readme, flags=re.DOTALL)
    assert len(documents) >= 3
    rules = [*specified_rules, NoDeprecatedCustomRule]
    for document in documents:
        found = validate(schema._schema, parse(document), rules)
        unused = "is never used"  # README examples may declare what a reader fills in
        assert not [e for e in found if unused not in e.message], (document, found)

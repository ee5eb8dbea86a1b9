"""The node estimate: every answer carries it; a request over a limit is refused, with the
limit's own code, before any resolver runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    OperationDefinitionNode,
    parse,
    print_ast,
)

from server.services import Services
from tests.conftest import AppFactory
from tests.factories import World
from tests.helpers import Api, counting, gid

HEAVY = (
    "{ "
    + " ".join(
        f"a{i}: learners(first: 500) {{ edges {{ node {{ records {{ "
        "assignments { user { id } } evidence { id } } } } }"
        for i in range(3)
    )
    + " }"
)
PAGE = """query($first: Int) {
  learners(first: $first) { totalCount edges { node { name records { programme
    assignments { role user { initials } } } } } }
}"""


async def test_every_answer_carries_its_cost(api: Api, world: World) -> None:
    org = await world.organisation()
    admin, manager = await world.staff(org, "ADMIN"), await world.staff(org, "MANAGER")
    viewer = await api.as_(admin, org)("{ viewer { user { name } } }")
    assert viewer.body["extensions"] == {"cost": 2}  # viewer, user
    # a page of 50 learners with their records, assignments and assignees, and their count:
    # 1 + 2,000 for the count + 50 edges + 50 nodes + 500 records + 5,000 assignments
    # + 5,000 users
    page = await api.as_(admin, org)(PAGE, first=50)
    assert page.body["extensions"] == {"cost": 12_601}
    assert (await api.as_(admin, org)(PAGE)).body["extensions"] == {"cost": 12_601}  # default 50
    assert (await api.as_(admin, org)(PAGE, first=5)).body["extensions"] == {"cost": 3_061}
    refused = await api.as_(manager, org)(
        'mutation { createLearner(input: {name: "A"}) { __typename } }'
    )
    assert refused.codes == ["FORBIDDEN"] and refused.body["extensions"] == {"cost": 1}
    anonymous = await api.post("{ viewer { roles } }")  # refused before its document is read
    assert anonymous.codes == ["UNAUTHENTICATED"] and anonymous.body["extensions"] == {"cost": 0}
    invalid = await api.as_(admin, org)("{ viewer { nothing } }")
    assert invalid.codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert invalid.body["extensions"] == {"cost": 0}


async def test_an_expensive_request_is_refused_before_anything_runs_for_it(
    api: Api, world: World, services: Services
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    with counting(services.engine) as statements:
        result = await call(HEAVY)
    assert result.codes == ["MAX_COST_EXCEEDED"] and result.data is None
    assert result.errors[0]["extensions"] == {
        "code": "MAX_COST_EXCEEDED",
        "cost": 468_003,
        "limit": 50_000,
    }
    assert result.body["extensions"] == {"cost": 468_003}
    # Signing in only: the document is then kept, and the next refusal does not parse it.
    assert len(statements) == 1 and "users.email" in statements[0]
    parsed = services.schema.documents.parsed
    assert (await call(HEAVY)).codes == ["MAX_COST_EXCEEDED"]
    assert services.schema.documents.parsed == parsed


async def test_variables_count_so_the_estimate_runs_with_each_request(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    (await call(PAGE, first=100)).ok()  # 23,201
    refused = await call(PAGE, first=500)  # the same document, now 107,001
    assert refused.codes == ["MAX_COST_EXCEEDED"]


async def test_authenticated_introspection_is_not_counted(
    api_with: AppFactory, world: World
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    api = await api_with(max_cost=1)
    result = await api.as_(admin, org)("{ __schema { types { name fields { name } } } }")
    assert result.ok()["__schema"]["types"] and result.body["extensions"] == {"cost": 0}
    assert (await api.as_(admin, org)(PAGE, first=1)).codes == ["MAX_COST_EXCEEDED"]


@pytest.mark.parametrize(
    ("setting", "value", "query", "code"),
    [
        ("max_cost", 121, "{ learners(first: 10) { edges { node { records { id } } } } }", None),
        (
            "max_cost",
            99,
            "{ learners(first: 10) { edges { node { records { id } } } } }",
            "MAX_COST_EXCEEDED",
        ),
        ("list_bound", 20, "{ learners(first: 5) { edges { node { records { id } } } } }", None),
        (
            "list_bound",
            20_000,
            "{ learners(first: 5) { edges { node { records { id } } } } }",
            "MAX_COST_EXCEEDED",
        ),
        ("max_query_depth", 2, "{ viewer { user { name } } }", None),
        ("max_query_depth", 1, "{ viewer { user { name } } }", "MAX_DEPTH_EXCEEDED"),
        ("max_aliases", 2, "{ a: viewer { roles } b: viewer { roles } }", None),
        ("max_aliases", 1, "{ a: viewer { roles } b: viewer { roles } }", "MAX_ALIASES_EXCEEDED"),
        ("max_tokens", 6, "{ viewer { roles } }", None),
        ("max_tokens", 5, "{ viewer { roles } }", "MAX_TOKENS_EXCEEDED"),
    ],
)
async def test_each_limit_is_a_setting_with_its_own_code(
    api_with: AppFactory, world: World, setting: str, value: int, query: str, code: str | None
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    api = await api_with(**{setting: value})
    result = await api.as_(admin, org)(query)
    if code is None:
        result.ok()
    else:
        assert result.codes == [code] and result.data is None, result.body


# Counts and searches: a totalCount costs CASELOAD_COUNT_COST (2,000) times the lists on its
# path; a connection searching (filter.search or search:, not blank) costs twice its subtree.
def _aliases(field: str, times: int = 30) -> str:
    return "{ " + " ".join(f"a{i}: {field}" for i in range(times)) + " }"


SEARCH_COUNTS = _aliases('apprenticeRecords(first: 0, filter: {search: "zqN"}) { totalCount }')
UNASSIGNED_COUNTS = _aliases(
    "apprenticeRecords(first: 0, filter: {unassigned: true}) { totalCount }"
)


def _peer(name: str, node: str, unassigned: bool) -> str:
    count = "unassigned: learners(first: 0, filter: {unassigned: true}) { totalCount } "
    page = "learners(first: 50) { edges { node { " + node + " } } }"
    return f"query {name} {{ {count if unassigned else ''}{page} }}"


# The peers' documents (tests/benchmarks/peers.patch: CL_Q1N, CL_Q2N, CL_Q1, CL_Q2).
PEER_NODE_N = "id name location { name } department { name } assessors { name }"
PEER_NODE = (
    "id name location { name } department { name } licences(status: ACTIVE) { course { title } } "
    "assessors { name }"
)
PEERS = {
    "q1n": _peer("Q1N", PEER_NODE_N, unassigned=False),
    "q2n": _peer("Q2N", PEER_NODE_N, unassigned=True),
    "q1": _peer("Q1", PEER_NODE, unassigned=False),
    "q2": _peer("Q2", PEER_NODE, unassigned=True),
}

# (document, variables, cost), each worked out by hand.
COSTS: dict[str, tuple[str, dict[str, Any], int]] = {
    "a count": ("{ learners(first: 0) { totalCount } }", {}, 1 + 2_000),
    "a page and its count": (
        "{ learners(first: 10) { totalCount edges { node { id } } } }",
        {},
        1 + 2_000 + 10 + 10,
    ),
    "a count in a fragment": (
        "{ learners(first: 0) { ...n } } fragment n on LearnerConnection { totalCount }",
        {},
        2_001,
    ),
    "a count selected twice": (
        "{ learners(first: 0) { totalCount n: totalCount } }",
        {},
        1 + 2 * 2_000,
    ),
    "a search": (
        '{ learners(first: 10, filter: {search: "Ann"}) { totalCount edges { node { id } } } }',
        {},
        2 * (1 + 2_000 + 10 + 10),
    ),
    "a search in a variable": (
        "query($s: String) { learners(first: 10, filter: {search: $s}) { edges { node { id } } } }",
        {"s": "Ann"},
        2 * (1 + 10 + 10),
    ),
    "a filter in a variable": (
        "query($f: RecordFilter) { apprenticeRecords(first: 10, filter: $f) { totalCount } }",
        {"f": {"search": "Care"}},
        2 * (1 + 2_000),
    ),
    "a blank search": (
        "query($s: String) { learners(first: 10, filter: {search: $s}) { totalCount } }",
        {"s": "  "},
        1 + 2_000,
    ),
    "no search": (
        "query($s: String) { learners(first: 10, filter: {search: $s}) { totalCount } }",
        {},
        1 + 2_000,
    ),
    "a search argument": (
        'query($c: ID!) { licenceEligibleLearners(courseId: $c, first: 5, search: "Ann") '
        "{ totalCount edges { node { id } } } }",
        {"c": gid("Course", 1)},
        2 * (1 + 2_000 + 5 + 5),
    ),
    "the search of 100 characters": (
        "{ learners(first: 1, filter: {search: " + json.dumps("a" * 100) + "}) { totalCount } }",
        {},
        2 * (1 + 2_000),
    ),
    # the page of test_every_answer_carries_its_cost, and its count
    "a page of 50 learners": (PAGE, {"first": 50}, 10_601 + 2_000),
    "the peers' q1n": (PEERS["q1n"], {}, 1 + 50 + 50 + 50 + 50 + 500),
    "the peers' q2n": (PEERS["q2n"], {}, 2_001 + 701),
    "the peers' q1": (PEERS["q1"], {}, 701 + 500 + 500),
    "the peers' q2": (PEERS["q2"], {}, 2_001 + 1_701),
    "30 searching counts of records": (SEARCH_COUNTS, {}, 30 * 2 * (1 + 2_000)),
    "30 counts of unassigned records": (UNASSIGNED_COUNTS, {}, 30 * (1 + 2_000)),
}


@pytest.mark.parametrize("name", list(COSTS))
async def test_counts_and_searches_cost_more(api: Api, world: World, name: str) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    query, variables, cost = COSTS[name]
    result = await api.as_(admin, org)(query, **variables)
    assert result.body["extensions"] == {"cost": cost}
    if cost > 50_000:
        assert result.codes == ["MAX_COST_EXCEEDED"] and result.data is None
    else:
        result.ok()


async def test_thirty_counted_searches_or_unassigned_counts_are_refused_before_they_run(
    api: Api, world: World, services: Services
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    for query, cost in ((SEARCH_COUNTS, 120_060), (UNASSIGNED_COUNTS, 60_030)):
        with counting(services.engine) as statements:
            result = await call(query)
        assert result.codes == ["MAX_COST_EXCEEDED"] and result.data is None
        assert result.errors[0]["extensions"] == {
            "code": "MAX_COST_EXCEEDED",
            "cost": cost,
            "limit": 50_000,
        }
        assert len(statements) == 1 and "users.email" in statements[0]  # signing in only


SCREENS = Path(__file__).resolve().parents[1] / "screens.graphql"
# Each screen's cost with every search it takes given (a search doubles its list), by hand.
SCREEN_COSTS = {
    # twice (learners 1 + count 2,000 + pageInfo 1 + 20 edges, nodes, locations, departments
    # + 200 allocations and their assessors)
    "ManagerLearners": 2 * (1 + 2_000 + 1 + 4 * 20 + 2 * 200),
    "LearnerProfile": 263,
    "PickExternal": 2 * (1 + 2_000 + 20 + 20),
    "Access": 31,
    # learners 1 + count + 20 edges, nodes, organisations + 200 records + 2,000 evidence;
    # evidence 1 + count + 20 edges, nodes, records, learners
    "ExternalAssessorHome": (1 + 2_000 + 3 * 20 + 200 + 2_000) + (1 + 2_000 + 4 * 20),
    # twice (records 1 + count + pageInfo 1 + 10 edges, nodes, learners, locations,
    # departments + 100 assignments and users); the unassigned count 1 + 2,000
    "RecordAssignment": 2 * (1 + 2_000 + 1 + 5 * 10 + 2 * 100) + 2_001,
    "Assignees": 2 * (1 + 2_000 + 50 + 50),
    "RecordHistory": 41,
    # courses 1 + count + 50 edges, nodes, pools; 10 rules with their course, units, author
    "CourseManagement": 1 + 2_000 + 3 * 50 + 5 * 10,
    # the course 1 and its pool 1; twice (learners 1 + count + pageInfo 1 + 20 edges, nodes,
    # locations, departments)
    "Eligible": 2 + 2 * (1 + 2_000 + 1 + 4 * 20),
    # licences 1 + count + 50 edges, nodes, learners, allocators, rules
    "RecallList": 1 + 2_000 + 5 * 50,
    # events 1 + count + pageInfo 1 + 5 edges, nodes, actors, keys
    "Audit": 1 + 2_000 + 1 + 4 * 5,
}


def screens() -> dict[str, str]:
    """The client's read screens, one operation each, by name."""
    document = parse(SCREENS.read_text())
    fragments = [d for d in document.definitions if isinstance(d, FragmentDefinitionNode)]
    return {
        d.name.value: print_ast(DocumentNode(definitions=(d, *fragments)))
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode) and d.name is not None
    }


def test_every_screen_has_its_cost_worked_out() -> None:
    assert sorted(screens()) == sorted(SCREEN_COSTS)


@pytest.mark.parametrize("screen", list(SCREEN_COSTS))
async def test_every_screen_stays_under_the_limit(api: Api, world: World, screen: str) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learner = await world.learner(org)
    record = await world.record(learner)
    course = await world.course()
    variables = {
        "search": "Ann",
        "filter": {"search": "Ann"},
        "id": gid("Learner", learner.id)
        if screen in ("LearnerProfile", "Access")
        else gid("ApprenticeRecord", record.id),
        "courseId": gid("Course", course.id),
    }
    query = screens()[screen]
    wanted = {k: v for k, v in variables.items() if f"${k}" in query}
    result = await api.as_(admin, org)(query, **wanted)
    result.ok()
    assert result.body["extensions"] == {"cost": SCREEN_COSTS[screen]}
    assert SCREEN_COSTS[screen] < 50_000


async def test_the_count_cost_is_a_setting_on_both_read_paths(
    api_with: AppFactory, world: World
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    searched = (
        '{ learners(first: 5, filter: {search: "Ann"}) { totalCount edges { node { id } } } }'
    )
    for compiled in (True, False):
        api = await api_with(count_cost=10, compiled_reads=compiled)
        call = api.as_(admin, org)
        reads = api.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
        before = reads.answered if compiled else 0
        assert (await call(PAGE, first=50)).body["extensions"] == {"cost": 10_611}
        assert (await call(searched)).body["extensions"] == {"cost": 2 * (1 + 10 + 5 + 5)}
        if compiled:
            assert reads.answered - before == 2  # the compiled path answered both

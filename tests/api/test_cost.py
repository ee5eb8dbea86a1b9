"""The node estimate: every answer carries it; a request over a limit is refused, with the
limit's own code, before any resolver runs."""

from __future__ import annotations

import pytest

from server.services import Services
from tests.api.test_statement_budget import counting
from tests.conftest import AppFactory
from tests.factories import World
from tests.helpers import Api

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
    # a page of 50 learners with their records, assignments and assignees:
    # 1 + 50 edges + 50 nodes + 500 records + 5,000 assignments + 5,000 users
    page = await api.as_(admin, org)(PAGE, first=50)
    assert page.body["extensions"] == {"cost": 10_601}
    assert (await api.as_(admin, org)(PAGE)).body["extensions"] == {"cost": 10_601}  # default 50
    assert (await api.as_(admin, org)(PAGE, first=5)).body["extensions"] == {"cost": 1_061}
    refused = await api.as_(manager, org)(
        'mutation { createLearner(input: {name: "A"}) { __typename } }'
    )
    assert refused.codes == ["FORBIDDEN"] and refused.body["extensions"] == {"cost": 1}
    anonymous = await api.post("{ viewer { roles } }")  # refused before its document is read
    assert anonymous.codes == ["UNAUTHENTICATED"] and anonymous.body["extensions"] == {"cost": 0}
    invalid = await api.as_(admin, org)("{ viewer { nothing } }")
    assert invalid.codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert invalid.body["extensions"] == {"cost": 0}


async def test_an_expensive_request_is_refused_before_any_statement(
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
    assert statements == []  # not even signing in: the estimate needs only the document


async def test_variables_count_so_the_estimate_runs_with_each_request(
    api: Api, world: World
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    call = api.as_(admin, org)
    (await call(PAGE, first=100)).ok()  # 21,201
    refused = await call(PAGE, first=500)  # the same document, now 105,001
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

"""Introspection: always for the signed-in; without credentials only when enabled, once, cached."""

from __future__ import annotations

from graphql import get_introspection_query

from schema.extensions import Operation
from schema.introspection import IntrospectionCache
from server.services import Services
from tests.conftest import AppFactory
from tests.factories import World
from tests.helpers import Api, assert_denied

SMALL = "{ __schema { queryType { name } } }"
FULL = get_introspection_query(descriptions=True)
_body, _, _fragments = FULL.partition("fragment")
_schema_selection = _body[_body.index("__schema") : _body.rindex("}")].strip()
# The amplifier: 29 aliased full selections of the schema in one document.
ATTACK = (
    "query A {\n"
    + "\n".join(f"a{i}: {_schema_selection}" for i in range(29))
    + "\n}\nfragment"
    + _fragments
)


def _cache(services: Services) -> IntrospectionCache:
    (operation,) = [e() for e in services.schema.extensions if isinstance(e(), Operation)]
    assert isinstance(operation.introspection, IntrospectionCache)
    return operation.introspection


async def test_off_outside_debug_unless_enabled(api: Api, world: World) -> None:
    assert api.settings.anonymous_introspection_enabled is False
    result = await api.post(SMALL)
    assert_denied(result, "UNAUTHENTICATED")
    assert "introspection needs credentials" in result.errors[0]["message"]

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    assert (await api.as_(admin, org)(SMALL)).ok() == {"__schema": {"queryType": {"name": "Query"}}}
    # Signed in, a document still selects the schema once: 29 full introspections would hold a
    # core for many seconds. An alias of one is fine.
    refused = await api.as_(admin, org)(ATTACK)
    assert_denied(refused, "INVALID")
    assert "select __schema once" in refused.errors[0]["message"]
    aliased = "{ s: __schema { queryType { name } } }"
    assert (await api.as_(admin, org)(aliased)).ok() == {"s": {"queryType": {"name": "Query"}}}
    assert (await api.as_(admin, org)(FULL)).ok()["__schema"]["queryType"]["name"] == "Query"


async def test_on_in_debug_and_when_set(api_with: AppFactory) -> None:
    for api in (await api_with(debug=True), await api_with(anonymous_introspection=True)):
        assert (await api.post(SMALL)).ok() == {"__schema": {"queryType": {"name": "Query"}}}
    off = await api_with(debug=True, anonymous_introspection=False)
    assert_denied(await off.post(SMALL), "UNAUTHENTICATED")


async def test_anonymous_documents_select_the_schema_once_without_aliases(
    api_with: AppFactory,
) -> None:
    api = await api_with(anonymous_introspection=True)
    assert (await api.post(FULL)).ok()["__schema"]["queryType"]["name"] == "Query"
    assert (await api.post('{ __type(name: "Learner") { name } }')).ok() == {
        "__type": {"name": "Learner"}
    }
    refused = [
        ATTACK,
        "{ s: __schema { queryType { name } } }",
        '{ t: __type(name: "Learner") { name } }',
        "{ __schema { queryType { name } } __schema { mutationType { name } } }",
        '{ __schema { queryType { name } } __type(name: "User") { s: name } '
        "__typename __schema { types { name } } }",
        "{ ...A ...B } fragment A on Query { __schema { queryType { name } } } "
        "fragment B on Query { __schema { types { name } } }",
    ]
    for document in refused:
        assert_denied(await api.post(document), "UNAUTHENTICATED")
    assert "Aliases of __schema" in (await api.post(ATTACK)).errors[0]["message"]
    twice = await api.post(refused[3])
    assert "select __schema once" in twice.errors[0]["message"]
    # Anything that is not introspection still needs credentials.
    assert_denied(await api.post("{ __typename viewer { roles } }"), "UNAUTHENTICATED")


async def test_answers_come_from_a_cache_per_schema(api_with: AppFactory) -> None:
    api = await api_with(anonymous_introspection=True)
    services = api.client._transport.app.state.services  # type: ignore[attr-defined]
    cache = _cache(services)
    first = (await api.post(FULL)).ok()
    assert (cache.hits, cache.misses) == (0, 1)
    for _ in range(3):
        assert (await api.post(FULL)).ok() == first
    assert (cache.hits, cache.misses) == (3, 1)
    # Refusals and errors are never cached.
    await api.post("{ s: __schema { queryType { name } } }")
    await api.post("{ __schema { nope } }")
    assert len(cache._answers) == 1
    other = await api_with(anonymous_introspection=True)
    other_services = other.client._transport.app.state.services  # type: ignore[attr-defined]
    assert _cache(other_services) is not cache

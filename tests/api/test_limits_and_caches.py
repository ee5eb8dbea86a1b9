"""Production settings of the GraphQL layer: caches that hit, limits that bite, no leaks."""

from __future__ import annotations

from server.services import Services
from tests.factories import World
from tests.helpers import Api

QUERY = "{ viewer { user { name } } learners(first: 5) { totalCount } }"
COMPILED = "{ learners(first: 5) { totalCount } }"  # answered by the compiled path


async def test_a_document_is_parsed_once_and_then_kept(
    api: Api, world: World, services: Services
) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    documents = services.schema.documents
    call = api.as_(admin, org)
    for query in (QUERY, COMPILED):
        parsed = documents.parsed
        (await call(query)).ok()  # parsed once, for whichever path answers
        assert documents.parsed == parsed + 1
        for _ in range(20):
            (await call(query)).ok()
        assert documents.parsed == parsed + 1  # then kept
        assert query in documents.kept


async def test_depth_limit(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    nested = "records { learner { " * 7 + "id" + " } }" * 7
    result = await api.as_(admin, org)(f"{{ learners {{ edges {{ node {{ {nested} }} }} }} }}")
    assert result.data is None
    assert "exceeds maximum operation depth" in result.errors[0]["message"]
    assert result.codes == ["MAX_DEPTH_EXCEEDED"]


async def test_alias_limit(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    aliases = " ".join(f"a{i}: viewer {{ roles }}" for i in range(31))
    result = await api.as_(admin, org)(f"{{ {aliases} }}")
    assert result.data is None
    assert "aliases" in result.errors[0]["message"]
    assert result.codes == ["MAX_ALIASES_EXCEEDED"]


async def test_token_limit(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    fields = " ".join("__typename" for _ in range(5000))
    result = await api.as_(admin, org)(f"{{ {fields} }}")
    assert result.data is None and result.codes == ["MAX_TOKENS_EXCEEDED"]


async def test_no_field_suggestions(api: Api, world: World) -> None:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    result = await api.as_(admin, org)("{ learnerz { totalCount } }")
    assert result.errors
    assert "Did you mean" not in result.errors[0]["message"]


async def test_unexpected_errors_are_masked(api: Api, world: World, monkeypatch: object) -> None:
    import resolvers.people

    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")

    async def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(resolvers.people, "viewer", explode)  # type: ignore[attr-defined]
    result = await api.as_(admin, org)("{ viewer { roles } }")
    assert result.status == 200
    assert result.errors[0]["message"] == "Unexpected error."
    assert result.errors[0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "hunter2" not in str(result.body) and "Traceback" not in str(result.body)

"""Every list sorts and pages both ways, in one place, on both read paths.

Every connection of the schema takes `first/after`, `last/before` and `orderBy` (at most one
sort, ties broken by id). Walking a list forward page by page and backward page by page gives
the same rows in the same order, for every sort and direction; a cursor belongs to the list and
order that issued it; the compiled path answers exactly what the standard executor answers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from graphql import GraphQLObjectType, Undefined, get_named_type
from sqlalchemy import update

from db.base import Base
from db.models import AuditAction, Learner
from resolvers.pagination import ListSource
from resolvers.rules import PREVIEW_LEARNERS
from schema import schema
from schema.compiled import _strawberry
from tests.conftest import AppFactory, Backend
from tests.factories import World
from tests.helpers import Caller, gid

LEARNERS = """query($first: Int, $after: String, $last: Int, $before: String,
    $order: [LearnerOrder!]) {
  learners(first: $first, after: $after, last: $last, before: $before, orderBy: $order) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id name } } } }"""

ELIGIBLE = """query($course: ID!, $after: String, $before: String) {
  licenceEligibleLearners(courseId: $course, first: 2, after: $after, before: $before) {
    edges { node { id } } } }"""

NAMES = ["Bea", "Ann", "Cal", "Bea", "Dot", "Ann", "Eve"]


# Connections that page one way only, and why.
ONE_WAY = {"Query.changes": "the change feed: oldest first in commit order, resumed by cursor"}


def connections() -> list[tuple[str, str, Any]]:
    """Every field of the schema whose type is a connection, but the feed: (type, field,
    definition)."""
    found = []
    for kind in schema._schema.type_map.values():
        if not isinstance(kind, GraphQLObjectType) or kind.name.startswith("__"):
            continue
        for name, field in kind.fields.items():
            target = get_named_type(field.type)
            if target.name.endswith("Connection") and f"{kind.name}.{name}" not in ONE_WAY:
                found.append((kind.name, name, field))
    return found


def test_every_connection_pages_both_ways_and_sorts() -> None:
    listed = connections()
    assert len(listed) >= 11, [f"{t}.{f}" for t, f, _ in listed]
    for type_name, name, field in listed:
        where = f"{type_name}.{name}"
        assert {"first", "after", "last", "before", "orderBy"} <= set(field.args), where
        for argument in ("first", "after", "last", "before", "orderBy"):
            default = field.args[argument].default_value
            assert default is Undefined, f"{where}({argument}): a default"
        order = get_named_type(field.args["orderBy"].type)
        assert order.name.endswith("Order"), where
        assert get_named_type(order.fields["field"].type).values, where


def test_every_order_is_backed_by_an_index() -> None:
    """Each sort of each list reads an index on (…, sort columns, id): a page costs the same
    however deep it is."""
    seen: set[str] = set()
    for _type, _name, field in connections():
        source = _strawberry(field).metadata.get("list") or PREVIEW_LEARNERS
        assert isinstance(source, ListSource)
        table = Base.metadata.tables[source.model.__tablename__]
        for sort in source.sorts:
            wanted = [c.key for c in source.keys(sort)]
            indexed = [[c.name for c in index.columns] for index in table.indexes]
            assert any(cols[-len(wanted) :] == wanted for cols in indexed) or wanted == ["id"], (
                f"{source.name} by {sort.field}: no index ends with {wanted}"
            )
            seen.add(f"{source.name}.{sort.field}")
    assert "learners.CREATED_AT" in seen


async def learners_world(world: World, backend: Backend) -> tuple[Any, Any, list[Learner]]:
    org = await world.organisation()
    admin = await world.staff(org, "ADMIN")
    learners = [await world.learner(org, name=name) for name in NAMES]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    async with backend.engine.begin() as conn:
        for k, learner in enumerate(learners):
            # two pairs share a time: ties are broken by id
            when = start + timedelta(minutes=(k // 2) * 7 + (k % 2) * (k % 3))
            learner.created_at = when
            await conn.execute(
                update(Learner).where(Learner.id == learner.id).values(created_at=when)
            )
    other = await world.organisation()
    await world.learner(other, name="Aaa")  # never listed
    return org, admin, learners


async def walk(call: Caller, order: Any, *, backward: bool, size: int) -> list[str]:
    """Every id of the list, page by page, forward from the start or backward from the end."""
    ids: list[str] = []
    cursor = None
    while True:
        if backward:
            page = (await call(LEARNERS, last=size, before=cursor, order=order)).ok()
        else:
            page = (await call(LEARNERS, first=size, after=cursor, order=order)).ok()
        connection = page["learners"]
        got = [e["node"]["id"] for e in connection["edges"]]
        assert [e["cursor"] for e in connection["edges"]][:1] == (
            [connection["pageInfo"]["startCursor"]] if got else []
        )
        ids = got + ids if backward else ids + got
        info = connection["pageInfo"]
        more = info["hasPreviousPage"] if backward else info["hasNextPage"]
        if not more:
            return ids
        cursor = info["startCursor"] if backward else info["endCursor"]


def expected(learners: list[Learner], field: str, descending: bool) -> list[str]:
    def key(row: Learner) -> tuple[Any, ...]:
        return (row.name, row.id) if field == "NAME" else (row.created_at, row.id)

    rows = sorted(learners, key=key, reverse=descending)
    return [gid("Learner", r.id) for r in rows]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "standard"])
async def test_learners_page_forward_and_backward_in_every_order(
    api_with: AppFactory, world: World, backend: Backend, compiled: bool
) -> None:
    _org, admin, learners = await learners_world(world, backend)
    app = await api_with(compiled_reads=compiled)
    call = app.as_(admin, _org)
    reads = app.client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
    before = reads.answered if compiled else 0
    for field in ("NAME", "CREATED_AT"):
        for direction in ("ASC", "DESC"):
            order = [{"field": field, "direction": direction}]
            want = expected(learners, field, direction == "DESC")
            for size in (1, 2, 3, 7):
                assert await walk(call, order, backward=False, size=size) == want, (order, size)
                assert await walk(call, order, backward=True, size=size) == want, (order, size)
    default = (await call(LEARNERS)).ok()["learners"]
    assert [e["node"]["id"] for e in default["edges"]] == expected(learners, "NAME", False)
    assert default["totalCount"] == len(NAMES)
    assert default["pageInfo"]["hasPreviousPage"] is False
    if compiled:
        assert reads.answered > before  # the compiled path answered


async def test_both_paths_answer_every_page_alike(
    api_with: AppFactory, world: World, backend: Backend
) -> None:
    org, admin, _learners = await learners_world(world, backend)
    apps = {c: (await api_with(compiled_reads=c)).as_(admin, org) for c in (True, False)}
    first = (await apps[False](LEARNERS, first=3)).ok()["learners"]["pageInfo"]
    asks: list[dict[str, Any]] = [
        {"last": 3},
        {"last": 0, "before": first["endCursor"]},
        {"first": 0, "after": first["endCursor"]},
        {"last": 2, "before": first["endCursor"]},
        {"first": 2, "after": first["startCursor"], "before": first["endCursor"]},
        {"last": 5, "order": [{"field": "CREATED_AT", "direction": "DESC"}]},
        {"first": 4, "order": [{"field": "NAME"}]},
        {"first": 1, "last": 1},
        {"last": 501},
        {"last": -1},
        {"order": [{"field": "NAME"}, {"field": "CREATED_AT"}]},
        {
            "first": 2,
            "after": first["endCursor"],
            "order": [{"field": "NAME", "direction": "DESC"}],
        },
        {"last": 2, "before": first["endCursor"], "order": [{"field": "CREATED_AT"}]},
    ]
    for ask in asks:
        answers = [(await apps[c](LEARNERS, **ask)).body for c in (True, False)]
        assert answers[0] == answers[1], ask


async def test_refused_paging_is_invalid_and_names_the_argument(
    api_with: AppFactory, world: World, backend: Backend
) -> None:
    org, admin, _learners = await learners_world(world, backend)
    call = (await api_with()).as_(admin, org)
    asc = (await call(LEARNERS, first=2)).ok()["learners"]["pageInfo"]["endCursor"]
    course = await world.course()
    cases: list[tuple[str, dict[str, Any], str]] = [
        (LEARNERS, {"first": 1, "last": 1}, "last"),
        (LEARNERS, {"last": 501}, "last"),
        (LEARNERS, {"first": -1}, "first"),
        (LEARNERS, {"order": [{"field": "NAME"}, {"field": "NAME"}]}, "orderBy"),
        # a cursor of another order, or of another list
        (LEARNERS, {"after": asc, "order": [{"field": "NAME", "direction": "DESC"}]}, "after"),
        (LEARNERS, {"before": asc, "order": [{"field": "CREATED_AT"}]}, "before"),
        (ELIGIBLE, {"course": gid("Course", course.id), "after": asc}, "after"),
        (ELIGIBLE, {"course": gid("Course", course.id), "before": asc}, "before"),
        (LEARNERS, {"after": "bm90IGEgY3Vyc29y"}, "after"),
    ]
    for query, variables, field in cases:
        result = await call(query, **variables)
        assert result.codes == ["INVALID"], (variables, result.body)
        assert result.errors[0]["extensions"]["field"] == field, (variables, result.body)
        assert result.data is None, variables


# Every list of the schema, with the arguments it needs and a node selection that compiles.
EVERY_LIST = {
    "learners": ("", "id name createdAt"),
    "apprenticeRecords": ("", "id programme"),
    "licences": ("", "id allocatedAt"),
    "licenceEligibleLearners": ("courseId: $course", "id name"),
    "staff": ("", "id name"),
    "externalAssessors": ("", "id name"),
    "courses": ("", "id title"),
    "evidence": ("", "id submittedAt"),
    "auditEvents": ("", "id at"),
    "organisations": ("", "id name"),
    "webhookDeliveries": ("", "id createdAt status"),
}


def walk_document(field: str, order: str) -> str:
    required, node = EVERY_LIST[field]
    arguments = ", ".join(
        a
        for a in (
            required,
            "first: $first, after: $after, last: $last, before: $before",
            f"orderBy: {order}" if order else "",
        )
        if a
    )
    return (
        "query($course: ID, $first: Int, $after: String, $last: Int, $before: String) { "
        f"list: {field}({arguments}) {{ totalCount "
        "pageInfo { hasNextPage hasPreviousPage startCursor endCursor } "
        f"edges {{ cursor node {{ {node} }} }} }} }}"
    ).replace("$course: ID,", "$course: ID!," if required else "")


async def every_list_world(world: World) -> tuple[Any, list[Any], str]:
    org = await world.organisation()
    admin = await world.staff(org, "SUPER_ADMIN")
    for k in range(2):
        await world.staff(org, "ASSESSOR", name=f"Assessor {k % 2}")
        await world.external_assessor(name=f"External {k % 2}")
    course = await world.course(title="Course A")
    await world.course(title="Course A")
    pool = await world.pool(org, course, 100)
    same = datetime(2026, 3, 1, tzinfo=UTC)
    for k in range(5):
        learner = await world.learner(org, name=f"Learner {k % 3}")
        record = await world.record(learner, programme=f"Programme {k % 2}")
        await world.evidence(record, title=f"Evidence {k}")
        if k % 2:
            await world.licence(pool, learner)
        await world.audit_event(org, AuditAction.LEARNER_CREATED, learner, at=same)
    for _ in range(5):
        await world.webhook(org)
    support = await world.support()
    await world.organisation()
    return org, [admin, support], gid("Course", course.id)


async def pages(call: Caller, document: str, course: str, *, backward: bool) -> list[Any]:
    """Every page of a list, size 2, forward or backward."""
    found = []
    cursor = None
    for _ in range(20):
        asked = {"last": 2, "before": cursor} if backward else {"first": 2, "after": cursor}
        page = (await call(document, course=course, **asked)).ok()["list"]
        found.append(page)
        info = page["pageInfo"]
        if not (info["hasPreviousPage"] if backward else info["hasNextPage"]):
            return found
        cursor = info["startCursor"] if backward else info["endCursor"]
    raise AssertionError("a list that does not end")


async def test_every_list_pages_alike_on_both_paths_in_every_order(
    api_with: AppFactory, world: World
) -> None:
    """Every list of the schema, in every sort and direction, walked forward and backward by two
    pages at a time on both read paths: the same pages, and backward the same rows as forward."""
    org, people, course = await every_list_world(world)
    apps = {c: await api_with(compiled_reads=c) for c in (True, False)}
    reads = apps[True].client._transport.app.state.compiled_reads  # type: ignore[attr-defined]
    before = reads.answered
    walked = 0
    for field in EVERY_LIST:
        root = schema._schema.query_type.fields[field]
        sorts = get_named_type(get_named_type(root.args["orderBy"].type).fields["field"].type)
        orders = [""] + [
            f"[{{field: {s}, direction: {d}}}]" for s in sorts.values for d in ("ASC", "DESC")
        ]
        for person in people:
            calls = {c: apps[c].as_(person, org if person is people[0] else None) for c in apps}
            for order in orders:
                document = walk_document(field, order)
                forward = {c: await pages(calls[c], document, course, backward=False) for c in apps}
                backward = {c: await pages(calls[c], document, course, backward=True) for c in apps}
                assert forward[True] == forward[False], (field, order)
                assert backward[True] == backward[False], (field, order)
                rows = [e["node"]["id"] for p in forward[False] for e in p["edges"]]
                back = [e["node"]["id"] for p in reversed(backward[False]) for e in p["edges"]]
                assert rows == back, (field, order)
                assert len(rows) == forward[False][0]["totalCount"], (field, order)
                walked += len(rows)
    assert walked > 100
    assert reads.answered - before > 100  # the compiled path answered the pages
